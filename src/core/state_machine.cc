#include "core/state_machine.h"

#include <algorithm>

#include "core/names.h"

namespace latchkey::core {

namespace lv = log::v1;

namespace {

Status SessionGone(uint64_t id) {
  return {Code::kSessionExpired,
          "session " + std::to_string(id) + " does not exist or has expired; open a new session"};
}

uint64_t Fnv1a(std::string_view bytes) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace

lv::LogEntry MakeEntry(uint64_t time_ms) {
  lv::LogEntry e;
  e.set_version(kLogEntryVersion);
  e.set_time_ms(time_ms);
  return e;
}

std::string EncodeEntry(const lv::LogEntry& entry) {
  std::string out;
  entry.SerializeToString(&out);
  return out;
}

Result<ApplyResult> StateMachine::ApplyBytes(uint64_t index, std::string_view entry_bytes) {
  lv::LogEntry entry;
  if (!entry.ParseFromArray(entry_bytes.data(), static_cast<int>(entry_bytes.size()))) {
    return Status(Code::kInternal, "log entry " + std::to_string(index) + " is not decodable");
  }
  if (entry.version() != kLogEntryVersion) {
    return Status(Code::kUnsupportedVersion,
                  "log entry " + std::to_string(index) + " has format version " +
                      std::to_string(entry.version()) + "; this binary reads version " +
                      std::to_string(kLogEntryVersion) + " (upgrade the binary)");
  }
  return Apply(index, entry);
}

ApplyResult StateMachine::Apply(uint64_t index, const lv::LogEntry& entry) {
  ApplyResult out;
  out.index = index;
  applied_index_ = std::max(applied_index_, index);
  time_ms_ = std::max(time_ms_, entry.time_ms());
  out.results.reserve(static_cast<size_t>(entry.commands_size()));
  for (const auto& cmd : entry.commands()) {
    out.results.push_back(ApplyCommand(cmd, &out.events));
  }
  return out;
}

CommandResult StateMachine::ApplyCommand(const lv::Command& cmd, std::vector<Event>* events) {
  switch (cmd.op_case()) {
    case lv::Command::kOpenSession: return OpenSession(cmd.open_session());
    case lv::Command::kCloseSession:
      return EndSession(cmd.close_session().session_id(), "closed", events);
    case lv::Command::kExpireSession:
      return EndSession(cmd.expire_session().session_id(), "lease expired", events);
    case lv::Command::kAcquire: return Acquire(cmd.acquire());
    case lv::Command::kRelease: return Release(cmd.release(), events);
    case lv::Command::kCancelWait: return CancelWait(cmd.cancel_wait());
    case lv::Command::kExpireLock: return ExpireLock(cmd.expire_lock(), events);
    case lv::Command::OP_NOT_SET: break;
  }
  CommandResult r;
  r.status = InvalidArgument("empty or unknown command");
  return r;
}

CommandResult StateMachine::OpenSession(const lv::OpenSessionCmd& c) {
  CommandResult r;
  if (Status s = ValidateClientName(c.client_name()); !s.ok()) {
    r.status = s;
    return r;
  }
  if (c.ttl_ms() == 0) {
    r.status = InvalidArgument("session ttl must be positive");
    return r;
  }
  Session s;
  s.id = ++revision_;
  s.ttl_ms = c.ttl_ms();
  s.client_name = c.client_name();
  s.opened_at_ms = time_ms_;
  r.session_id = s.id;
  sessions_.emplace(s.id, std::move(s));
  return r;
}

CommandResult StateMachine::EndSession(uint64_t session_id, std::string_view reason,
                                       std::vector<Event>* events) {
  CommandResult r;
  auto it = sessions_.find(session_id);
  if (it == sessions_.end()) {
    r.status = SessionGone(session_id);
    return r;
  }
  ++revision_;
  Session& s = it->second;
  // Withdraw waits first so that releases below never grant to this session.
  for (const auto& wait : s.waiting) {
    const std::string& owner = wait.second;
    auto lit = locks_.find(wait.first);
    LATCHKEY_CHECK(lit != locks_.end());
    auto& q = lit->second.waiters;
    auto w = std::find_if(q.begin(), q.end(), [&](const Waiter& x) {
      return x.session_id == session_id && x.owner == owner;
    });
    LATCHKEY_CHECK(w != q.end());
    q.erase(w);
    --waiter_count_;
  }
  std::vector<std::string> waited;
  for (const auto& [name, owner] : s.waiting) waited.push_back(name);
  s.waiting.clear();
  const std::set<std::string> held = std::move(s.held);
  s.held.clear();
  for (const std::string& name : held) {
    auto lit = locks_.find(name);
    LATCHKEY_CHECK(lit != locks_.end() && lit->second.holder &&
                   lit->second.holder->session_id == session_id);
    ReleaseHolder(name, lit->second, events);
  }
  for (const std::string& name : waited) EraseIfIdle(name);
  Event e;
  e.kind = Event::Kind::kSessionEnded;
  e.session_id = session_id;
  e.reason = std::string(reason);
  events->push_back(std::move(e));
  sessions_.erase(session_id);
  return r;
}

GrantInfo StateMachine::GrantTo(const std::string& name, Lock& lock, uint64_t session_id,
                                const std::string& owner, uint64_t lock_ttl_ms) {
  LATCHKEY_CHECK(!lock.holder.has_value());
  Holder h;
  h.session_id = session_id;
  h.owner = owner;
  h.fencing_token = ++revision_;
  h.granted_at_ms = time_ms_;
  h.lock_ttl_ms = lock_ttl_ms;
  lock.holder = h;
  ++locks_held_;
  sessions_.at(session_id).held.insert(name);
  if (lock_ttl_ms > 0) ttl_deadlines_.emplace(time_ms_ + lock_ttl_ms, name);
  GrantInfo g;
  g.session_id = session_id;
  g.owner = owner;
  g.name = name;
  g.fencing_token = h.fencing_token;
  g.granted_at_ms = h.granted_at_ms;
  g.lock_ttl_ms = lock_ttl_ms;
  return g;
}

void StateMachine::ReleaseHolder(const std::string& name, Lock& lock, std::vector<Event>* events) {
  LATCHKEY_CHECK(lock.holder.has_value());
  const Holder& h = *lock.holder;
  if (h.lock_ttl_ms > 0) ttl_deadlines_.erase({h.granted_at_ms + h.lock_ttl_ms, name});
  auto sit = sessions_.find(h.session_id);
  if (sit != sessions_.end()) sit->second.held.erase(name);
  lock.holder.reset();
  --locks_held_;
  ++revision_;
  if (!lock.waiters.empty()) {
    Waiter w = std::move(lock.waiters.front());
    lock.waiters.pop_front();
    --waiter_count_;
    sessions_.at(w.session_id).waiting.erase({name, w.owner});
    Event e;
    e.kind = Event::Kind::kGranted;
    e.session_id = w.session_id;
    e.grant = GrantTo(name, lock, w.session_id, w.owner, w.lock_ttl_ms);
    events->push_back(std::move(e));
  } else {
    EraseIfIdle(name);
  }
}

void StateMachine::EraseIfIdle(const std::string& name) {
  auto it = locks_.find(name);
  if (it != locks_.end() && !it->second.holder && it->second.waiters.empty()) locks_.erase(it);
}

CommandResult StateMachine::Acquire(const lv::AcquireCmd& c) {
  CommandResult r;
  if (Status s = ValidateLockName(c.name()); !s.ok()) {
    r.status = s;
    return r;
  }
  if (Status s = ValidateOwner(c.owner()); !s.ok()) {
    r.status = s;
    return r;
  }
  auto sit = sessions_.find(c.session_id());
  if (sit == sessions_.end()) {
    r.status = SessionGone(c.session_id());
    return r;
  }
  Lock& lock = locks_[c.name()];
  if (lock.holder && lock.holder->session_id == c.session_id() && lock.holder->owner == c.owner()) {
    // Idempotent retry of a granted acquire.
    r.granted = true;
    r.grant.session_id = c.session_id();
    r.grant.owner = c.owner();
    r.grant.name = c.name();
    r.grant.fencing_token = lock.holder->fencing_token;
    r.grant.granted_at_ms = lock.holder->granted_at_ms;
    r.grant.lock_ttl_ms = lock.holder->lock_ttl_ms;
    return r;
  }
  if (!lock.holder && lock.waiters.empty()) {
    r.granted = true;
    r.grant = GrantTo(c.name(), lock, c.session_id(), c.owner(), c.lock_ttl_ms());
    return r;
  }
  Session& s = sit->second;
  if (s.waiting.count({c.name(), c.owner()})) {
    r.queued = true;  // idempotent retry of a waiting acquire
    return r;
  }
  if (c.try_only()) {
    std::string msg = "lock '" + c.name() + "' is held";
    if (lock.holder) {
      const Holder& h = *lock.holder;
      msg += " by session " + std::to_string(h.session_id);
      auto hs = sessions_.find(h.session_id);
      if (hs != sessions_.end() && !hs->second.client_name.empty()) {
        msg += " (" + hs->second.client_name + ")";
      }
    }
    if (!lock.waiters.empty()) msg += ", " + std::to_string(lock.waiters.size()) + " waiting";
    r.status = Status(Code::kLockBusy, msg);
    EraseIfIdle(c.name());
    return r;
  }
  Waiter w;
  w.session_id = c.session_id();
  w.owner = c.owner();
  w.queued_at_ms = time_ms_;
  w.lock_ttl_ms = c.lock_ttl_ms();
  lock.waiters.push_back(std::move(w));
  ++waiter_count_;
  s.waiting.insert({c.name(), c.owner()});
  ++revision_;
  r.queued = true;
  return r;
}

CommandResult StateMachine::Release(const lv::ReleaseCmd& c, std::vector<Event>* events) {
  CommandResult r;
  if (!sessions_.count(c.session_id())) {
    r.status = SessionGone(c.session_id());
    return r;
  }
  auto it = locks_.find(c.name());
  if (it == locks_.end() || !it->second.holder || it->second.holder->session_id != c.session_id() ||
      it->second.holder->owner != c.owner()) {
    r.status = Status(Code::kNotHeld, "lock '" + c.name() + "' is not held by session " +
                                          std::to_string(c.session_id()) + " owner '" + c.owner() +
                                          "' (released already, or its TTL ended)");
    return r;
  }
  ReleaseHolder(c.name(), it->second, events);
  return r;
}

CommandResult StateMachine::CancelWait(const lv::CancelWaitCmd& c) {
  CommandResult r;
  auto sit = sessions_.find(c.session_id());
  if (sit == sessions_.end()) {
    r.status = SessionGone(c.session_id());
    return r;
  }
  auto it = locks_.find(c.name());
  if (it == locks_.end()) {
    r.status = NotFound("not waiting for lock '" + c.name() + "'");
    return r;
  }
  Lock& lock = it->second;
  auto& q = lock.waiters;
  auto w = std::find_if(q.begin(), q.end(), [&](const Waiter& x) {
    return x.session_id == c.session_id() && x.owner == c.owner();
  });
  if (w == q.end()) {
    if (lock.holder && lock.holder->session_id == c.session_id() &&
        lock.holder->owner == c.owner()) {
      r.granted = true;  // the grant won the race against the cancel
      r.grant.session_id = c.session_id();
      r.grant.owner = c.owner();
      r.grant.name = c.name();
      r.grant.fencing_token = lock.holder->fencing_token;
      r.grant.granted_at_ms = lock.holder->granted_at_ms;
      r.grant.lock_ttl_ms = lock.holder->lock_ttl_ms;
    }
    r.status = NotFound("not waiting for lock '" + c.name() + "'");
    return r;
  }
  q.erase(w);
  --waiter_count_;
  sit->second.waiting.erase({c.name(), c.owner()});
  ++revision_;
  EraseIfIdle(c.name());
  return r;
}

CommandResult StateMachine::ExpireLock(const lv::ExpireLockCmd& c, std::vector<Event>* events) {
  CommandResult r;
  auto it = locks_.find(c.name());
  if (it == locks_.end() || !it->second.holder ||
      it->second.holder->fencing_token != c.fencing_token()) {
    r.status = NotFound("grant " + std::to_string(c.fencing_token()) + " of lock '" + c.name() +
                        "' is no longer held");
    return r;
  }
  const Holder h = *it->second.holder;
  if (h.lock_ttl_ms == 0 || h.granted_at_ms + h.lock_ttl_ms > time_ms_) {
    r.status = Status(Code::kFailedPrecondition, "lock TTL has not run out");
    return r;
  }
  Event lost;
  lost.kind = Event::Kind::kLockLost;
  lost.session_id = h.session_id;
  lost.grant.session_id = h.session_id;
  lost.grant.owner = h.owner;
  lost.grant.name = c.name();
  lost.grant.fencing_token = h.fencing_token;
  lost.grant.granted_at_ms = h.granted_at_ms;
  lost.grant.lock_ttl_ms = h.lock_ttl_ms;
  lost.reason = "lock TTL expired";
  events->push_back(std::move(lost));
  ReleaseHolder(c.name(), it->second, events);
  return r;
}

// ---- Queries ---------------------------------------------------------------

const Session* StateMachine::FindSession(uint64_t id) const {
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : &it->second;
}

const Lock* StateMachine::FindLock(std::string_view name) const {
  auto it = locks_.find(name);
  return it == locks_.end() ? nullptr : &it->second;
}

std::vector<GrantInfo> StateMachine::HeldBy(uint64_t session_id) const {
  std::vector<GrantInfo> out;
  const Session* s = FindSession(session_id);
  if (!s) return out;
  for (const std::string& name : s->held) {
    const Holder& h = *locks_.find(name)->second.holder;
    out.push_back({h.session_id, h.owner, name, h.fencing_token, h.granted_at_ms, h.lock_ttl_ms});
  }
  return out;
}

std::vector<std::pair<std::string, uint64_t>> StateMachine::ExpiredLocks(uint64_t now_ms) const {
  std::vector<std::pair<std::string, uint64_t>> out;
  for (const auto& [deadline, name] : ttl_deadlines_) {
    if (deadline > now_ms) break;
    out.emplace_back(name, locks_.find(name)->second.holder->fencing_token);
  }
  return out;
}

// ---- Snapshots -------------------------------------------------------------

lv::Snapshot StateMachine::ToProto() const {
  lv::Snapshot snap;
  snap.set_version(kSnapshotVersion);
  snap.set_revision(revision_);
  snap.set_time_ms(time_ms_);
  for (const auto& [id, s] : sessions_) {
    auto* p = snap.add_sessions();
    p->set_id(id);
    p->set_ttl_ms(s.ttl_ms);
    p->set_client_name(s.client_name);
    p->set_opened_at_ms(s.opened_at_ms);
  }
  for (const auto& [name, lock] : locks_) {
    auto* p = snap.add_locks();
    p->set_name(name);
    if (lock.holder) {
      auto* h = p->mutable_holder();
      h->set_session_id(lock.holder->session_id);
      h->set_owner(lock.holder->owner);
      h->set_fencing_token(lock.holder->fencing_token);
      h->set_granted_at_ms(lock.holder->granted_at_ms);
      h->set_lock_ttl_ms(lock.holder->lock_ttl_ms);
    }
    for (const Waiter& w : lock.waiters) {
      auto* pw = p->add_waiters();
      pw->set_session_id(w.session_id);
      pw->set_owner(w.owner);
      pw->set_queued_at_ms(w.queued_at_ms);
      pw->set_lock_ttl_ms(w.lock_ttl_ms);
    }
  }
  return snap;
}

uint64_t StateMachine::Digest() const {
  lv::Snapshot snap = ToProto();
  std::string bytes;
  snap.SerializeToString(&bytes);
  return Fnv1a(bytes);
}

std::string StateMachine::Snapshot() const {
  lv::Snapshot snap = ToProto();
  std::string bytes;
  snap.SerializeToString(&bytes);
  snap.set_digest(Fnv1a(bytes));
  bytes.clear();
  snap.SerializeToString(&bytes);
  return bytes;
}

Status StateMachine::Restore(std::string_view bytes) {
  lv::Snapshot snap;
  if (!snap.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return Status(Code::kInternal, "snapshot is not decodable");
  }
  if (snap.version() != kSnapshotVersion) {
    return Status(Code::kUnsupportedVersion,
                  "snapshot has format version " + std::to_string(snap.version()) +
                      "; this binary reads version " + std::to_string(kSnapshotVersion));
  }
  const uint64_t want = snap.digest();
  snap.clear_digest();
  std::string canon;
  snap.SerializeToString(&canon);
  if (Fnv1a(canon) != want) return Status(Code::kInternal, "snapshot digest mismatch");

  StateMachine fresh;
  fresh.revision_ = snap.revision();
  fresh.time_ms_ = snap.time_ms();
  for (const auto& p : snap.sessions()) {
    Session s;
    s.id = p.id();
    s.ttl_ms = p.ttl_ms();
    s.client_name = p.client_name();
    s.opened_at_ms = p.opened_at_ms();
    if (!fresh.sessions_.emplace(s.id, std::move(s)).second) {
      return Status(Code::kInternal, "snapshot repeats session " + std::to_string(p.id()));
    }
  }
  for (const auto& p : snap.locks()) {
    Lock lock;
    if (p.has_holder()) {
      const auto& h = p.holder();
      auto sit = fresh.sessions_.find(h.session_id());
      if (sit == fresh.sessions_.end()) {
        return Status(Code::kInternal, "snapshot lock '" + p.name() + "' held by unknown session");
      }
      lock.holder =
          Holder{h.session_id(), h.owner(), h.fencing_token(), h.granted_at_ms(), h.lock_ttl_ms()};
      sit->second.held.insert(p.name());
      ++fresh.locks_held_;
      if (h.lock_ttl_ms() > 0) {
        fresh.ttl_deadlines_.emplace(h.granted_at_ms() + h.lock_ttl_ms(), p.name());
      }
    }
    for (const auto& w : p.waiters()) {
      auto sit = fresh.sessions_.find(w.session_id());
      if (sit == fresh.sessions_.end()) {
        return Status(Code::kInternal, "snapshot waiter on '" + p.name() + "' has unknown session");
      }
      lock.waiters.push_back({w.session_id(), w.owner(), w.queued_at_ms(), w.lock_ttl_ms()});
      sit->second.waiting.insert({p.name(), w.owner()});
      ++fresh.waiter_count_;
    }
    fresh.locks_.emplace(p.name(), std::move(lock));
  }
  *this = std::move(fresh);
  return Status::Ok();
}

}  // namespace latchkey::core
