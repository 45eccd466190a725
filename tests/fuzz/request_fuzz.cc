// libFuzzer target: a client's byte stream through the request path. The
// input is decoded as frames (transport::FrameDecoder), each frame as a
// ClientFrame; every request passes the checks the server handlers make
// (names, owners, client names, modes, values, TTLs, part counts) and, if
// valid, becomes the log command the server would propose and is applied to
// a core StateMachine. After every command the state must keep mutual
// exclusion and semaphore bounds, and every few commands a snapshot round
// trip must keep the digest. Mirrors src/server/server_handlers.cc and
// server_sync.cc (the handlers are Server members bound to raft and asio).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/names.h"
#include "core/state_machine.h"
#include "latchkey.pb.h"
#include "sim/sim_checkers.h"
#include "transport/frame.h"

namespace {

namespace lv = latchkey::log::v1;
namespace core = latchkey::core;
using latchkey::Status;

void Require(bool cond) {
  if (!cond) std::abort();
}

constexpr uint64_t kMaxLockTtlMs = 7 * 24 * 3'600'000ull;  // ServerOptions default

bool ValidLock(const std::string& name, const std::string& owner) {
  return core::ValidateLockName(name).ok() && core::ValidateOwner(owner).ok();
}

// The command the server proposes for `req`, or false if it would refuse it.
bool Translate(const latchkey::v1::Request& req, lv::Command* cmd) {
  using R = latchkey::v1::Request;
  switch (req.body_case()) {
    case R::kOpenSession: {
      const auto& o = req.open_session();
      uint64_t ttl = o.ttl_ms() == 0 ? 10'000 : o.ttl_ms();
      if (ttl < 500 || ttl > 3'600'000 || !core::ValidateClientName(o.client_name()).ok()) {
        return false;
      }
      cmd->mutable_open_session()->set_ttl_ms(ttl);
      cmd->mutable_open_session()->set_client_name(o.client_name());
      return true;
    }
    case R::kCloseSession:
      cmd->mutable_close_session()->set_session_id(req.close_session().session_id());
      return true;
    case R::kAcquire: {
      const auto& a = req.acquire();
      if (!ValidLock(a.name(), a.owner()) || a.lock_ttl_ms() > kMaxLockTtlMs ||
          !latchkey::v1::LockMode_IsValid(a.mode()) ||
          a.value().size() > core::kMaxLockValueBytes) {
        return false;
      }
      auto* c = cmd->mutable_acquire();
      c->set_session_id(a.session_id());
      c->set_owner(a.owner());
      c->set_name(a.name());
      c->set_try_only(a.try_only());
      c->set_lock_ttl_ms(a.lock_ttl_ms());
      c->set_mode(static_cast<uint32_t>(a.mode()));
      c->set_reentrant(a.reentrant());
      c->set_request_id(req.id());
      c->set_set_value(a.set_value());
      c->set_value(a.value());
      return true;
    }
    case R::kRelease: {
      const auto& r = req.release();
      if (!ValidLock(r.name(), r.owner())) return false;
      auto* c = cmd->mutable_release();
      c->set_session_id(r.session_id());
      c->set_owner(r.owner());
      c->set_name(r.name());
      return true;
    }
    case R::kDowngrade: {
      const auto& d = req.downgrade();
      if (!ValidLock(d.name(), d.owner()) || !latchkey::v1::LockMode_IsValid(d.mode())) {
        return false;
      }
      auto* c = cmd->mutable_downgrade();
      c->set_session_id(d.session_id());
      c->set_owner(d.owner());
      c->set_name(d.name());
      c->set_mode(static_cast<uint32_t>(d.mode()));
      return true;
    }
    case R::kAcquireMany: {
      const auto& a = req.acquire_many();
      if (a.parts_size() == 0 || a.parts_size() > core::kMaxAcquireManyParts ||
          !core::ValidateOwner(a.owner()).ok() || a.lock_ttl_ms() > kMaxLockTtlMs) {
        return false;
      }
      auto* c = cmd->mutable_acquire_many();
      c->set_session_id(a.session_id());
      c->set_owner(a.owner());
      c->set_try_only(a.try_only());
      c->set_lock_ttl_ms(a.lock_ttl_ms());
      for (const auto& p : a.parts()) {
        if (!core::ValidateLockName(p.name()).ok() || !latchkey::v1::LockMode_IsValid(p.mode())) {
          return false;
        }
        auto* part = c->add_parts();
        part->set_name(p.name());
        part->set_mode(static_cast<uint32_t>(p.mode()));
      }
      return true;
    }
    case R::kSetLockValue: {
      const auto& v = req.set_lock_value();
      if (!ValidLock(v.name(), v.owner()) || v.value().size() > core::kMaxLockValueBytes) {
        return false;
      }
      auto* c = cmd->mutable_set_value();
      c->set_session_id(v.session_id());
      c->set_owner(v.owner());
      c->set_name(v.name());
      c->set_value(v.value());
      return true;
    }
    case R::kSemaphoreAcquire: {
      const auto& s = req.semaphore_acquire();
      if (!ValidLock(s.name(), s.owner())) return false;
      auto* c = cmd->mutable_semaphore_acquire();
      c->set_session_id(s.session_id());
      c->set_owner(s.owner());
      c->set_name(s.name());
      c->set_permits(s.permits() == 0 ? 1 : s.permits());
      c->set_limit(s.limit());
      c->set_try_only(s.try_only());
      return true;
    }
    case R::kSemaphoreRelease: {
      const auto& s = req.semaphore_release();
      if (!ValidLock(s.name(), s.owner())) return false;
      auto* c = cmd->mutable_semaphore_release();
      c->set_session_id(s.session_id());
      c->set_owner(s.owner());
      c->set_name(s.name());
      return true;
    }
    case R::kLatchAwait: {
      const auto& l = req.latch_await();
      if (!ValidLock(l.name(), l.owner())) return false;
      auto* c = cmd->mutable_latch_await();
      c->set_session_id(l.session_id());
      c->set_owner(l.owner());
      c->set_name(l.name());
      c->set_initial(l.initial());
      return true;
    }
    case R::kLatchCountDown: {
      const auto& l = req.latch_count_down();
      if (!core::ValidateLockName(l.name()).ok()) return false;
      auto* c = cmd->mutable_latch_count_down();
      c->set_name(l.name());
      c->set_by(l.by() == 0 ? 1 : l.by());
      c->set_initial(l.initial());
      return true;
    }
    case R::kBarrierAwait: {
      const auto& b = req.barrier_await();
      if (!ValidLock(b.name(), b.owner())) return false;
      auto* c = cmd->mutable_barrier_await();
      c->set_session_id(b.session_id());
      c->set_owner(b.owner());
      c->set_name(b.name());
      c->set_parties(b.parties());
      return true;
    }
    // Records (server_records.cc): the core validates the rest.
    case R::kRecordCreate: {
      const auto& r = req.record_create();
      if (!core::ValidateTableName(r.table()).ok()) return false;
      auto* c = cmd->mutable_rec_create();
      c->set_session_id(r.session_id());
      c->set_table(r.table());
      for (const auto& f : r.fields()) {
        auto* o = c->add_fields();
        o->set_name(f.name());
        o->set_value(f.value());
      }
      for (const auto& k : r.key_fields()) c->add_key_fields(k);
      return true;
    }
    case R::kRecordUpdate: {
      const auto& r = req.record_update();
      if (!core::ValidateTableName(r.table()).ok() || r.number() == 0) return false;
      auto* c = cmd->mutable_rec_update();
      c->set_session_id(r.session_id());
      c->set_owner(r.owner());
      c->set_table(r.table());
      c->set_number(r.number());
      for (const auto& f : r.fields()) {
        auto* o = c->add_fields();
        o->set_name(f.name());
        o->set_value(f.value());
      }
      return true;
    }
    case R::kRecordDelete: {
      const auto& r = req.record_delete();
      if (!core::ValidateTableName(r.table()).ok() || r.number() == 0) return false;
      auto* c = cmd->mutable_rec_delete();
      c->set_session_id(r.session_id());
      c->set_owner(r.owner());
      c->set_table(r.table());
      c->set_number(r.number());
      return true;
    }
    case R::kRecordLock: {
      const auto& r = req.record_lock();
      if (!core::ValidateTableName(r.table()).ok() || r.number() == 0 ||
          !core::ValidateOwner(r.owner()).ok() || !latchkey::v1::LockMode_IsValid(r.mode()) ||
          r.lock_ttl_ms() > kMaxLockTtlMs) {
        return false;
      }
      auto* c = cmd->mutable_rec_lock();
      c->set_session_id(r.session_id());
      c->set_owner(r.owner());
      c->set_table(r.table());
      c->set_number(r.number());
      c->set_if_unchanged_since(r.if_unchanged_since());
      c->set_mode(static_cast<uint32_t>(r.mode()));
      c->set_try_only(r.try_only());
      c->set_lock_ttl_ms(r.lock_ttl_ms());
      return true;
    }
    case R::kRecordUnlock: {
      const auto& r = req.record_unlock();
      if (!core::ValidateTableName(r.table()).ok() || r.number() == 0) return false;
      auto* c = cmd->mutable_rec_unlock();
      c->set_session_id(r.session_id());
      c->set_owner(r.owner());
      c->set_table(r.table());
      c->set_number(r.number());
      return true;
    }
    default: return false;  // reads, membership, hello: no state change
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  latchkey::transport::FrameDecoder dec(64 * 1024);
  dec.Feed(reinterpret_cast<const char*>(data), size);
  core::StateMachine sm;
  uint64_t index = 0;
  uint64_t now_ms = 1000;
  // Two sessions exist from the start so short inputs reach the lock engine.
  {
    lv::LogEntry e = core::MakeEntry(now_ms);
    e.add_commands()->mutable_open_session()->set_ttl_ms(10'000);
    e.add_commands()->mutable_open_session()->set_ttl_ms(10'000);
    sm.Apply(++index, e);
  }
  for (int frames = 0; frames < 256; ++frames) {
    std::string_view payload;
    auto r = dec.Next(&payload);
    if (!r.ok() || !*r) break;  // the server closes the connection on a bad frame
    latchkey::v1::ClientFrame f;
    if (!f.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) break;
    if (!f.has_request()) break;
    lv::Command cmd;
    if (!Translate(f.request(), &cmd)) continue;  // refused with an error reply
    now_ms += f.request().id() % 4096;            // the leader's clock moves on
    lv::LogEntry e = core::MakeEntry(now_ms);
    *e.add_commands() = cmd;
    // Through bytes, as a follower would see it.
    auto applied = sm.ApplyBytes(++index, core::EncodeEntry(e));
    Require(applied.ok());
    Require(applied->results.size() == 1);
    Require(latchkey::sim::CheckMutualExclusion(sm.locks()).empty());
    Require(latchkey::sim::CheckSemaphores(sm.sync()).empty());
    if (index % 8 == 0) {
      core::StateMachine copy;
      Require(copy.Restore(sm.Snapshot()).ok());
      Require(copy.Digest() == sm.Digest());
    }
  }
  return 0;
}
