// LockCache: node-level cached grants shared by local threads, answered
// callbacks, and the lock value block kept with the grant. See
// include/latchkey/cached_lock.h for the contract and
// docs/design/0007-cached-locks.md for the protocol.
//
// Threads: callers (Lock/Unlock/...), the client's io thread (callback
// pushes: record and queue only, never block) and one worker thread per
// cache that sends hand-backs (downgrade/release), so no caller and no io
// thread ever waits on a hand-back's reply.
#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include "common/log.h"
#include "core/modes.h"
#include "latchkey/cached_lock.h"

namespace latchkey {

namespace {

using core::Mode;
using SteadyClock = std::chrono::steady_clock;

Mode M(LockMode m) {
  return static_cast<Mode>(static_cast<uint8_t>(m));
}
LockMode L(Mode m) {
  return static_cast<LockMode>(static_cast<uint8_t>(m));
}

}  // namespace

struct LockCache::Res {
  std::string name;
  Mode grantable = Mode::kNL;
  bool requesting = false;
  Mode requested = Mode::kNL;
  std::array<uint32_t, core::kModeCount> local{};
  uint32_t users = 0;
  std::optional<Mode> callback_to;  // hand back down to this once users allow
  uint64_t callback_token = 0;
  bool returning = false;  // a hand-back is in flight
  uint32_t waiting = 0;    // callers blocked on this name
  uint64_t token = 0;
  std::string value;
  uint64_t value_token = 0;
  bool dirty = false;  // value changed locally, not yet on the server

  bool LocalCompatible(Mode mode, Mode replacing) const {
    for (int m = 1; m < core::kModeCount; ++m) {
      uint32_t n = local[static_cast<size_t>(m)];
      if (replacing != Mode::kNL && m == static_cast<int>(replacing)) --n;
      if (n > 0 && !core::Compatible(mode, static_cast<Mode>(m))) return false;
    }
    return true;
  }
  Mode LocalJoin() const {
    Mode j = Mode::kNL;
    for (int m = 1; m < core::kModeCount; ++m) {
      if (local[static_cast<size_t>(m)] > 0) j = core::Join(j, static_cast<Mode>(m));
    }
    return j;
  }
  // A callback asks for less than `mode`: new local users of it must wait.
  bool HeldBackByCallback(Mode mode) const {
    return callback_to && !core::Covers(*callback_to, mode);
  }
};

struct LockCache::Impl {
  LockCacheOptions options;
  mutable std::mutex mu;
  std::condition_variable cv;  // state changes of any Res (waiters filter)
  std::unordered_map<std::string, std::unique_ptr<Res>> res;
  std::deque<Res*> work;  // hand-backs to send
  std::condition_variable work_cv;
  bool stopping = false;
  std::thread worker;
  std::atomic<uint64_t> messages{0};
  LockCacheStats stats;  // guarded by mu (messages_sent filled on read)

  // REQUIRES: mu. Queues a hand-back when one is due and allowed.
  void MaybeHandBack(Res* r) {
    if (r->returning || r->requesting || r->grantable == Mode::kNL) return;
    Mode target;
    if (r->callback_to) {
      target = *r->callback_to;
    } else if (options.policy == CachePolicy::kReleaseOnIdle && r->users == 0) {
      target = Mode::kNL;
    } else {
      return;
    }
    // Local users first: every mode still in use must survive the downgrade.
    for (int m = 1; m < core::kModeCount; ++m) {
      if (r->local[static_cast<size_t>(m)] > 0 && !core::Covers(target, static_cast<Mode>(m))) {
        return;
      }
    }
    r->returning = true;
    work.push_back(r);
    work_cv.notify_one();
  }
};

LockCache::LockCache(Client& client, LockCacheOptions options)
    : client_(client), impl_(std::make_shared<Impl>()) {
  impl_->options = std::move(options);
  Impl* impl = impl_.get();
  Client* c = &client_;
  impl->worker = std::thread([impl, c] {
    std::unique_lock<std::mutex> lk(impl->mu);
    for (;;) {
      impl->work_cv.wait(lk, [&] { return impl->stopping || !impl->work.empty(); });
      if (impl->work.empty()) return;  // stopping
      Res* r = impl->work.front();
      impl->work.pop_front();
      const Mode target = r->callback_to.value_or(Mode::kNL);
      const bool with_value = r->dirty && core::IsWriteMode(r->grantable);
      const std::string value = with_value ? r->value : std::string();
      const std::string owner = impl->options.owner;
      lk.unlock();
      Status st;
      if (target == Mode::kNL) {
        st = with_value ? c->ReleaseWithValue(r->name, value, owner)
                        : c->Release(r->name, owner, /*all=*/true);
      } else {
        st = with_value ? c->DowngradeWithValue(r->name, L(target), value, owner)
                        : c->Downgrade(r->name, L(target), owner);
      }
      impl->messages.fetch_add(1, std::memory_order_relaxed);
      lk.lock();
      ++impl->stats.handbacks;
      r->returning = false;
      if (st.ok() || st.code() == Code::kNotHeld || st.code() == Code::kSessionExpired) {
        r->grantable = st.ok() ? target : Mode::kNL;
        if (with_value) r->dirty = false;
        r->callback_to.reset();
      } else {
        LK_LOG_WARN("latchkey lock cache: handing back '%s' failed: %s", r->name.c_str(),
                    st.ToString().c_str());
        r->callback_to.reset();  // the server will not call again for this need
      }
      impl->cv.notify_all();
    }
  });
  std::weak_ptr<Impl> weak = impl_;
  client_.SetBlockingCallbackHandler([weak](const BlockingCallback& cb) {
    std::shared_ptr<Impl> impl = weak.lock();
    if (!impl) return;
    std::lock_guard<std::mutex> lk(impl->mu);
    if (impl->stopping) return;
    if (cb.owner != impl->options.owner) return;
    auto it = impl->res.find(cb.name);
    if (it == impl->res.end()) return;
    Res* r = it->second.get();
    ++impl->stats.callbacks;
    if (cb.fencing_token < r->token) return;  // for a grant already given back
    const Mode to = M(cb.downgrade_to);
    if (!r->callback_to || core::Covers(*r->callback_to, to)) r->callback_to = to;
    r->callback_token = cb.fencing_token;
    impl->MaybeHandBack(r);
  });
}

LockCache::~LockCache() {
  client_.SetBlockingCallbackHandler(nullptr);
  {
    std::lock_guard<std::mutex> lk(impl_->mu);
    impl_->stopping = true;
    impl_->work_cv.notify_all();
  }
  impl_->worker.join();
  // Give the cached grants back (best effort; the session's end would too).
  if (client_.session_gone()) return;
  for (auto& [name, r] : impl_->res) {
    if (r->grantable == Mode::kNL) continue;
    Status st = r->dirty && core::IsWriteMode(r->grantable)
                    ? client_.ReleaseWithValue(name, r->value, impl_->options.owner)
                    : client_.Release(name, impl_->options.owner, true);
    if (!st.ok() && st.code() != Code::kNotHeld) break;  // connection trouble: stop
  }
}

LockCache::Res* LockCache::Resolve(std::string_view name) {
  std::lock_guard<std::mutex> lk(impl_->mu);
  auto it = impl_->res.find(std::string(name));
  if (it == impl_->res.end()) {
    auto r = std::make_unique<Res>();
    r->name = std::string(name);
    it = impl_->res.emplace(r->name, std::move(r)).first;
  }
  return it->second.get();
}

Status LockCache::LockRes(Res* r, LockMode wanted, std::chrono::milliseconds timeout, bool try_only,
                          LockMode replacing_mode) {
  const Mode mode = M(wanted);
  const Mode replacing = M(replacing_mode);
  // (A plain time point and a flag: gcc 12 -O2 warns on optional<time_point>.)
  const bool has_deadline = timeout.count() > 0;
  const SteadyClock::time_point deadline =
      has_deadline ? SteadyClock::now() + timeout : SteadyClock::time_point();
  Impl& im = *impl_;
  std::unique_lock<std::mutex> lk(im.mu);
  for (;;) {
    if (client_.session_gone()) {
      r->grantable = Mode::kNL;
      return client_.session_status();
    }
    const bool free_now = !r->returning && !r->HeldBackByCallback(mode);
    if (free_now && core::Covers(r->grantable, mode) && r->LocalCompatible(mode, replacing)) {
      if (replacing != Mode::kNL)
        --r->local[static_cast<size_t>(replacing)];
      else
        ++r->users;
      ++r->local[static_cast<size_t>(mode)];
      ++im.stats.local_grants;
      return Status::Ok();
    }
    if (free_now && !r->requesting && !core::Covers(r->grantable, mode)) {
      // Ask the server for the join of the cached grant and the new need.
      r->requesting = true;
      r->requested = core::Join(r->grantable, mode);
      AcquireOptions ao;
      ao.mode = L(r->requested);
      ao.owner = im.options.owner;
      ao.cacheable = true;
      ao.try_only = try_only;
      if (has_deadline) {
        ao.wait_timeout = std::max(
            std::chrono::milliseconds(1),
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now()));
      }
      lk.unlock();
      Result<Grant> g = client_.Acquire(r->name, ao);
      im.messages.fetch_add(1, std::memory_order_relaxed);
      lk.lock();
      r->requesting = false;
      r->requested = Mode::kNL;
      im.cv.notify_all();
      if (!g.ok()) {
        im.MaybeHandBack(r);
        return g.status();
      }
      r->grantable = M(g->mode);
      if (g->fencing_token > r->token) r->token = g->fencing_token;
      r->value = g->value;
      r->value_token = g->value_token;
      r->dirty = false;
      if (r->callback_to && r->callback_token < r->token) r->callback_to.reset();  // stale
      // The caller that asked gets its turn even if the grant was already
      // called back (it hands back after this use): progress for everyone.
      if (core::Covers(r->grantable, mode) && r->LocalCompatible(mode, replacing)) {
        if (replacing != Mode::kNL)
          --r->local[static_cast<size_t>(replacing)];
        else
          ++r->users;
        ++r->local[static_cast<size_t>(mode)];
        return Status::Ok();
      }
      im.MaybeHandBack(r);
      continue;
    }
    if (try_only) return Status(Code::kLockBusy, "'" + r->name + "' is in use on this node");
    ++r->waiting;
    if (has_deadline) {
      if (im.cv.wait_until(lk, deadline) == std::cv_status::timeout) {
        --r->waiting;
        return Status(Code::kTimeout, "local wait for '" + r->name + "' ran out");
      }
    } else {
      im.cv.wait(lk);
    }
    --r->waiting;
  }
}

void LockCache::UnlockRes(Res* r, LockMode mode) {
  DowngradeRes(r, mode, LockMode::kNL);
}

void LockCache::DowngradeRes(Res* r, LockMode from, LockMode to) {
  const Mode m = M(from);
  std::lock_guard<std::mutex> lk(impl_->mu);
  if (m == Mode::kNL || r->local[static_cast<size_t>(m)] == 0) return;  // not held
  --r->local[static_cast<size_t>(m)];
  if (M(to) == Mode::kNL) {
    --r->users;
  } else {
    ++r->local[static_cast<size_t>(M(to))];
  }
  impl_->MaybeHandBack(r);
  if (r->waiting > 0) impl_->cv.notify_all();
}

Status LockCache::Lock(std::string_view name, LockMode mode, std::chrono::milliseconds timeout) {
  return LockRes(Resolve(name), mode, timeout);
}

void LockCache::Unlock(std::string_view name, LockMode mode) {
  UnlockRes(Resolve(name), mode);
}

Status LockCache::Uncache(std::string_view name, std::chrono::milliseconds timeout) {
  Res* r = Resolve(name);
  // (A plain time point and a flag: gcc 12 -O2 warns on optional<time_point>.)
  const bool has_deadline = timeout.count() > 0;
  const SteadyClock::time_point deadline =
      has_deadline ? SteadyClock::now() + timeout : SteadyClock::time_point();
  std::unique_lock<std::mutex> lk(impl_->mu);
  if (r->grantable == Mode::kNL && !r->requesting) return Status::Ok();
  r->callback_to = Mode::kNL;
  r->callback_token = r->token;
  impl_->MaybeHandBack(r);
  ++r->waiting;
  auto done = [&] { return r->grantable == Mode::kNL && !r->returning && !r->requesting; };
  bool ok = true;
  if (has_deadline) {
    ok = impl_->cv.wait_until(lk, deadline, done);
  } else {
    impl_->cv.wait(lk, done);
  }
  --r->waiting;
  if (!ok) return Status(Code::kTimeout, "local users of '" + r->name + "' did not finish in time");
  return Status::Ok();
}

LockMode LockCache::Grantable(std::string_view name) const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  auto it = impl_->res.find(std::string(name));
  return it == impl_->res.end() ? LockMode::kNL : L(it->second->grantable);
}

CachedLockState LockCache::State(std::string_view name) const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  CachedLockState s;
  auto it = impl_->res.find(std::string(name));
  if (it == impl_->res.end()) return s;
  const Res& r = *it->second;
  s.granted_locally = L(r.LocalJoin());
  s.grantable = L(r.grantable);
  s.requested = L(r.requested);
  s.local_users = r.users;
  s.called_back = r.callback_to.has_value();
  s.fencing_token = r.token;
  s.value_token = r.value_token;
  return s;
}

Result<std::string> LockCache::Value(std::string_view name) const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  auto it = impl_->res.find(std::string(name));
  if (it == impl_->res.end() || it->second->users == 0) {
    std::string msg("'");  // (built by append: gcc 12 -O3 -Wrestrict false positive)
    msg.append(name).append("' is not held on this node");
    return Status(Code::kNotHeld, std::move(msg));
  }
  return it->second->value;
}

Status LockCache::WriteValueLocal(std::string_view name, std::string_view value) {
  Res* r = Resolve(name);
  std::lock_guard<std::mutex> lk(impl_->mu);
  if (!core::IsWriteMode(r->LocalJoin())) {
    return Status(Code::kNotHeld, "writing the value of '" + r->name + "' needs a local CW/PW/EX");
  }
  if (value.size() > 64 * 1024) {
    return Status(Code::kValueTooLarge, "lock value is " + std::to_string(value.size()) +
                                            " bytes; the limit is 65536 bytes");
  }
  r->value = std::string(value);
  r->dirty = true;
  return Status::Ok();
}

Status LockCache::WriteValue(std::string_view name, std::string_view value) {
  LATCHKEY_RETURN_IF_ERROR(WriteValueLocal(name, value));
  return FlushValue(name);
}

Status LockCache::FlushValue(std::string_view name) {
  Res* r = Resolve(name);
  std::string value;
  {
    std::lock_guard<std::mutex> lk(impl_->mu);
    if (!r->dirty) return Status::Ok();
    value = r->value;
  }
  Status st = client_.SetLockValue(name, value, impl_->options.owner);
  impl_->messages.fetch_add(1, std::memory_order_relaxed);
  if (st.ok()) {
    std::lock_guard<std::mutex> lk(impl_->mu);
    if (r->value == value) r->dirty = false;
  }
  return st;
}

uint64_t LockCache::messages_sent() const {
  return impl_->messages.load(std::memory_order_relaxed);
}

LockCacheStats LockCache::stats() const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  LockCacheStats s = impl_->stats;
  s.messages_sent = messages_sent();
  return s;
}

// ---- CachedLock -------------------------------------------------------------

CachedLock::CachedLock(LockCache& cache, std::string_view name, LockMode mode)
    : cache_(cache), name_(name), res_(cache.Resolve(name)), mode_(mode) {}

CachedLock::~CachedLock() {
  Downgrade(LockMode::kNL);
}

Status CachedLock::Upgrade(LockMode mode, std::chrono::milliseconds timeout) {
  const LockMode target = L(core::Join(M(level_), M(mode)));
  if (target == level_) return Status::Ok();
  LATCHKEY_RETURN_IF_ERROR(cache_.LockRes(res_, target, timeout, false, level_));
  level_ = target;
  return Status::Ok();
}

std::future<Status> CachedLock::UpgradeAsync(LockMode mode, std::chrono::milliseconds timeout) {
  return std::async(std::launch::async, [this, mode, timeout] { return Upgrade(mode, timeout); });
}

void CachedLock::Downgrade(LockMode mode) {
  if (level_ == LockMode::kNL || core::Covers(M(mode), M(level_))) return;
  // Swap the level for the weaker one in place (no message).
  cache_.DowngradeRes(res_, level_, mode);
  level_ = mode;
}

Status CachedLock::Uncache(std::chrono::milliseconds timeout) {
  return cache_.Uncache(name_, timeout);
}

LockMode CachedLock::Grantable() const {
  return cache_.Grantable(name_);
}

void CachedLock::lock() {
  Status st = Upgrade(mode_);
  if (!st.ok()) throw std::runtime_error("latchkey CachedLock::lock: " + st.ToString());
}

bool CachedLock::try_lock() {
  if (level_ != LockMode::kNL) return true;
  if (!cache_.LockRes(res_, mode_, {}, /*try_only=*/true).ok()) return false;
  level_ = mode_;
  return true;
}

}  // namespace latchkey
