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
  locks_.set_time(time_ms_);
  for (const auto& cmd : entry.commands()) {
    out.results.push_back(ApplyCommand(cmd, &out.events));
    DrainGrants(&out.events);
    for (ObjChange& ch : objects_.TakeChanges()) out.object_changes.push_back(std::move(ch));
    for (Published& m : published_) out.published.push_back(std::move(m));
    published_.clear();
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
    case lv::Command::kRelease: return Release(cmd.release());
    case lv::Command::kDowngrade: return Downgrade(cmd.downgrade());
    case lv::Command::kTransfer: return Transfer(cmd.transfer());
    case lv::Command::kAcquireMany: return AcquireMany(cmd.acquire_many());
    case lv::Command::kSetValue: return SetValue(cmd.set_value());
    case lv::Command::kDeclareRank: return DeclareRank(cmd.declare_rank());
    case lv::Command::kSemaphoreAcquire: return SemaphoreAcquire(cmd.semaphore_acquire());
    case lv::Command::kSemaphoreRelease: return SemaphoreRelease(cmd.semaphore_release());
    case lv::Command::kLatchAwait: return LatchAwait(cmd.latch_await());
    case lv::Command::kLatchCountDown: return LatchCountDown(cmd.latch_count_down());
    case lv::Command::kBarrierAwait: return BarrierAwait(cmd.barrier_await());
    case lv::Command::kCancelWait: return CancelWait(cmd.cancel_wait());
    case lv::Command::kExpireLock: return ExpireLock(cmd.expire_lock(), events);
    case lv::Command::kObjReserve:
    case lv::Command::kObjPut:
    case lv::Command::kObjDelete:
    case lv::Command::kObjSetTtl:
    case lv::Command::kObjExpire:
    case lv::Command::kObjCompact:
    case lv::Command::kTxn:
    case lv::Command::kObjMethod:
    case lv::Command::kPublish:
    case lv::Command::kScriptPut: return ApplyObjectCommand(cmd);
    case lv::Command::kRecCreate:
    case lv::Command::kRecUpdate:
    case lv::Command::kRecDelete:
    case lv::Command::kRecLock:
    case lv::Command::kRecUnlock: return ApplyRecordCommand(cmd, events);
    case lv::Command::OP_NOT_SET: break;
  }
  CommandResult r;
  r.status = InvalidArgument("empty or unknown command");
  return r;
}

Mode ModeFromLog(uint32_t v) {
  if (v == 0 || v > static_cast<uint32_t>(kModeCount)) return Mode::kEX;
  return static_cast<Mode>(v - 1);
}

uint32_t ModeToLog(Mode m) {
  return static_cast<uint32_t>(m) + 1;
}

namespace {

GrantInfo ToInfo(const OwnerId& who, const std::string& name, const HeldGrant& g) {
  GrantInfo i;
  i.session_id = who.session;
  i.owner = who.owner;
  i.name = name;
  i.fencing_token = g.fencing_token;
  i.granted_at_ms = g.granted_at_ms;
  i.lock_ttl_ms = g.lock_ttl_ms;
  i.mode = g.mode;
  i.count = g.count;
  i.cacheable = g.cacheable;
  return i;
}

Status ValueTooLarge(size_t size) {
  return Status(Code::kValueTooLarge, "lock value is " + std::to_string(size) +
                                          " bytes; the limit is " +
                                          std::to_string(kMaxLockValueBytes) + " bytes");
}

Status ValidateLockRequest(std::string_view name, std::string_view owner) {
  LATCHKEY_RETURN_IF_ERROR(ValidateLockName(name));
  return ValidateOwner(owner);
}

}  // namespace

Status StateMachine::CheckSession(uint64_t id) const {
  return sessions_.count(id) ? Status::Ok() : SessionGone(id);
}

std::string StateMachine::ClientNameOf(uint64_t session) const {
  const Session* s = FindSession(session);
  return s ? s->client_name : std::string();
}

void StateMachine::DrainGrants(std::vector<Event>* events) {
  for (GrantEvent& g : locks_.TakeGrantEvents()) {
    // A granted record lock request no longer waits: its condition is done.
    if (!records_.lock_conds().empty()) {
      records_.lock_conds().erase({g.name, g.who.session, g.who.owner});
    }
    Event e;
    e.kind = Event::Kind::kGranted;
    e.session_id = g.who.session;
    e.grant = ToInfo(g.who, g.name, g.grant);
    if (const Resource* res = locks_.Find(g.name)) {
      e.grant.value = res->value();
      e.grant.value_token = res->value_token();
    }
    events->push_back(std::move(e));
  }
  for (CallbackEvent& c : locks_.TakeCallbackEvents()) {
    Event e;
    e.kind = Event::Kind::kCallback;
    e.session_id = c.holder.session;
    e.grant = ToInfo(c.holder, c.name, c.grant);
    e.wanted = c.wanted;
    e.downgrade_to = c.downgrade_to;
    events->push_back(std::move(e));
  }
  for (SyncEvent& s : sync_.TakeEvents()) {
    Event e;
    e.kind = Event::Kind::kGranted;
    e.session_id = s.who.session;
    e.grant.session_id = s.who.session;
    e.grant.owner = s.who.owner;
    e.grant.name = s.name;
    switch (s.kind) {
      case SyncEvent::Kind::kSemaphoreGranted:
        e.object = Event::Object::kSemaphore;
        e.grant.fencing_token = s.grant.fencing_token;
        e.grant.granted_at_ms = s.grant.granted_at_ms;
        e.permits = s.grant.permits;
        break;
      case SyncEvent::Kind::kLatchOpened: e.object = Event::Object::kLatch; break;
      case SyncEvent::Kind::kBarrierTripped:
        e.object = Event::Object::kBarrier;
        e.generation = s.generation;
        break;
    }
    events->push_back(std::move(e));
  }
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
  if (r.status = CheckSession(session_id); !r.status.ok()) return r;
  ++revision_;
  locks_.set_time(time_ms_);
  locks_.DropSession(session_id, &revision_);
  sync_.DropSession(session_id, time_ms_, &revision_);
  objects_.DropSession(session_id, time_ms_, &revision_);
  DropRecordConds(session_id);
  DrainGrants(events);
  Event e;
  e.kind = Event::Kind::kSessionEnded;
  e.session_id = session_id;
  e.reason = std::string(reason);
  events->push_back(std::move(e));
  sessions_.erase(session_id);
  return r;
}

CommandResult StateMachine::Acquire(const lv::AcquireCmd& c) {
  CommandResult r;
  if (r.status = ValidateLockRequest(c.name(), c.owner()); !r.status.ok()) return r;
  if (r.status = CheckSession(c.session_id()); !r.status.ok()) return r;
  AcquireRequest req;
  req.who = OwnerId{c.session_id(), c.owner()};
  req.name = c.name();
  req.mode = ModeFromLog(c.mode());
  req.try_only = c.try_only();
  req.reentrant = c.reentrant();
  req.lock_ttl_ms = c.lock_ttl_ms();
  // Request ids of reentrant acquires and of acquires with a value are kept,
  // so a retry neither counts again nor rewrites the value.
  if ((req.reentrant || c.set_value()) && c.request_id() != 0) {
    auto& recent = sessions_.at(c.session_id()).recent_reentrant;
    if (std::find(recent.begin(), recent.end(), c.request_id()) != recent.end()) {
      req.reentrant = false;  // a retry of a request already counted
      req.retry = true;
    } else {
      recent.push_back(c.request_id());
      if (recent.size() > kRecentReentrantIds) recent.pop_front();
    }
  }
  if (c.set_value()) {
    if (c.value().size() > kMaxLockValueBytes) {
      r.status = ValueTooLarge(c.value().size());
      return r;
    }
    req.set_value = true;
    req.value = c.value();
  }
  req.cacheable = c.cacheable();
  AcquireOutcome out = locks_.Acquire(req, time_ms_, &revision_);
  FillOutcome(out, req.who, req.name, &r);
  return r;
}

void StateMachine::FillOutcome(const AcquireOutcome& out, const OwnerId& who,
                               const std::string& name, CommandResult* r) const {
  switch (out.kind) {
    case AcquireOutcome::Kind::kGranted:
      r->granted = true;
      r->grant = ToInfo(who, name, out.grant);
      if (const Resource* res = locks_.Find(name)) {
        r->grant.value = res->value();
        r->grant.value_token = res->value_token();
      }
      break;
    case AcquireOutcome::Kind::kQueued: r->queued = true; break;
    case AcquireOutcome::Kind::kBusy: {
      // Name the holders with their client names: that is what a user sees.
      std::string msg = "lock '" + name + "' is held";
      if (const Resource* res = locks_.Find(name); res && !res->holders.empty()) {
        msg += " by";
        int n = 0;
        for (const auto& [holder, g] : res->holders) {
          if (n++ == 3) {
            msg += " and " + std::to_string(res->holders.size() - 3) + " more";
            break;
          }
          msg += (n > 1 ? ", " : " ") + DescribeOwner(holder);
          const std::string cn = ClientNameOf(holder.session);
          if (!cn.empty()) msg += " (" + cn + ")";
          msg += " in " + std::string(ModeName(g.mode));
        }
        if (!res->waiters().empty())
          msg += "; " + std::to_string(res->waiters().size()) + " waiting";
      } else {
        msg = out.message;
      }
      r->status = Status(Code::kLockBusy, msg);
      break;
    }
    case AcquireOutcome::Kind::kDeadlock: r->status = Status(Code::kDeadlock, out.message); break;
    case AcquireOutcome::Kind::kOrder:
      r->status = Status(Code::kFailedPrecondition, out.message);
      break;
  }
}

CommandResult StateMachine::AcquireMany(const lv::AcquireManyCmd& c) {
  CommandResult r;
  if (r.status = CheckSession(c.session_id()); !r.status.ok()) return r;
  if (r.status = ValidateOwner(c.owner()); !r.status.ok()) return r;
  if (c.parts_size() == 0 || c.parts_size() > kMaxAcquireManyParts) {
    r.status = InvalidArgument("acquire-many takes 1 to " + std::to_string(kMaxAcquireManyParts) +
                               " locks");
    return r;
  }
  std::vector<LockPart> parts;
  for (const auto& p : c.parts()) {
    if (r.status = ValidateLockName(p.name()); !r.status.ok()) return r;
    parts.push_back({p.name(), ModeFromLog(p.mode())});
  }
  const OwnerId who{c.session_id(), c.owner()};
  AcquireOutcome out =
      locks_.AcquireMany(who, parts, c.try_only(), c.lock_ttl_ms(), time_ms_, &revision_);
  if (out.kind == AcquireOutcome::Kind::kBusy) {
    r.status = Status(Code::kLockBusy, out.message);
    return r;
  }
  FillOutcome(out, who, parts.front().name, &r);
  return r;
}

CommandResult StateMachine::SetValue(const lv::SetValueCmd& c) {
  CommandResult r;
  if (r.status = CheckSession(c.session_id()); !r.status.ok()) return r;
  if (c.value().size() > kMaxLockValueBytes) {
    r.status = ValueTooLarge(c.value().size());
    return r;
  }
  r.status = locks_.SetValue(OwnerId{c.session_id(), c.owner()}, c.name(), c.value(), &revision_);
  return r;
}

CommandResult StateMachine::DeclareRank(const lv::DeclareRankCmd& c) {
  CommandResult r;
  if (r.status = ValidateLockName(c.prefix()); !r.status.ok()) return r;
  r.status = locks_.DeclareRank(c.prefix(), c.rank());
  ++revision_;
  return r;
}

CommandResult StateMachine::Release(const lv::ReleaseCmd& c) {
  CommandResult r;
  if (r.status = CheckSession(c.session_id()); !r.status.ok()) return r;
  locks_.set_time(time_ms_);
  if (r.status = WriteValueFirst(c.session_id(), c.owner(), c.name(), c.set_value(), c.value());
      !r.status.ok()) {
    return r;
  }
  r.status = locks_.Release(OwnerId{c.session_id(), c.owner()}, c.name(), c.all(), &revision_);
  return r;
}

Status StateMachine::WriteValueFirst(uint64_t session, const std::string& owner,
                                     const std::string& name, bool set_value,
                                     const std::string& value) {
  if (!set_value) return Status::Ok();
  if (value.size() > kMaxLockValueBytes) return ValueTooLarge(value.size());
  return locks_.SetValue(OwnerId{session, owner}, name, value, &revision_);
}

CommandResult StateMachine::Downgrade(const lv::DowngradeCmd& c) {
  CommandResult r;
  if (r.status = CheckSession(c.session_id()); !r.status.ok()) return r;
  locks_.set_time(time_ms_);
  if (r.status = WriteValueFirst(c.session_id(), c.owner(), c.name(), c.set_value(), c.value());
      !r.status.ok()) {
    return r;
  }
  r.status = locks_.Downgrade(OwnerId{c.session_id(), c.owner()}, c.name(), ModeFromLog(c.mode()),
                              &revision_);
  return r;
}

CommandResult StateMachine::Transfer(const lv::TransferCmd& c) {
  CommandResult r;
  if (r.status = CheckSession(c.session_id()); !r.status.ok()) return r;
  // Not SESSION_EXPIRED: that code tells the caller its own session is gone.
  if (FindSession(c.to_session_id()) == nullptr) {
    r.status = NotFound("cannot transfer '" + c.name() + "': session " +
                        std::to_string(c.to_session_id()) + " does not exist or has expired");
    return r;
  }
  if (r.status = ValidateOwner(c.to_owner()); !r.status.ok()) return r;
  const OwnerId to{c.to_session_id(), c.to_owner()};
  r.status =
      locks_.Transfer(OwnerId{c.session_id(), c.owner()}, to, c.name(), time_ms_, &revision_);
  if (r.status.ok()) {
    r.granted = true;
    r.grant = ToInfo(to, c.name(), *locks_.FindGrant(to, c.name()));
  }
  return r;
}

CommandResult StateMachine::CancelWait(const lv::CancelWaitCmd& c) {
  CommandResult r;
  if (r.status = CheckSession(c.session_id()); !r.status.ok()) return r;
  const OwnerId who{c.session_id(), c.owner()};
  if (c.kind() != 0) {
    if (!sync_.Cancel(static_cast<int>(c.kind()), who, c.name(), time_ms_, &revision_)) {
      r.status = NotFound("not waiting for '" + c.name() + "'");
    }
    return r;
  }
  locks_.set_time(time_ms_);
  if (locks_.CancelWait(who, c.name(), &revision_)) return r;
  if (const HeldGrant* g = locks_.FindGrant(who, c.name())) {
    r.granted = true;  // the grant won the race against the cancel
    r.grant = ToInfo(who, c.name(), *g);
  }
  r.status = NotFound("not waiting for lock '" + c.name() + "'");
  return r;
}

CommandResult StateMachine::ExpireLock(const lv::ExpireLockCmd& c, std::vector<Event>* events) {
  CommandResult r;
  // Find the grant before it goes, to tell its holder what it lost.
  GrantInfo lost_grant;
  if (const Resource* res = locks_.Find(c.name())) {
    for (const auto& [who, g] : res->holders) {
      if (g.fencing_token == c.fencing_token()) lost_grant = ToInfo(who, c.name(), g);
    }
  }
  locks_.set_time(time_ms_);
  Result<OwnerId> lost = locks_.ExpireGrant(c.name(), c.fencing_token(), time_ms_, &revision_);
  if (!lost.ok()) {
    r.status = lost.status();
    return r;
  }
  Event e;
  e.kind = Event::Kind::kLockLost;
  e.session_id = lost->session;
  e.grant = lost_grant;
  e.reason = "lock TTL expired";
  events->push_back(std::move(e));
  return r;
}

namespace {
void FromSync(const Result<SyncOutcome>& out, CommandResult* r) {
  if (!out.ok()) {
    r->status = out.status();
    return;
  }
  switch (out->kind) {
    case SyncOutcome::Kind::kDone:
      r->granted = true;
      r->grant.fencing_token = out->grant.fencing_token;
      r->grant.granted_at_ms = out->grant.granted_at_ms;
      r->permits = out->grant.permits;
      r->generation = out->generation;
      break;
    case SyncOutcome::Kind::kQueued: r->queued = true; break;
    case SyncOutcome::Kind::kBusy:
      r->status = Status(Code::kLockBusy, "not enough free permits");
      break;
  }
}
}  // namespace

CommandResult StateMachine::SemaphoreAcquire(const lv::SemaphoreAcquireCmd& c) {
  CommandResult r;
  if (r.status = ValidateLockRequest(c.name(), c.owner()); !r.status.ok()) return r;
  if (r.status = CheckSession(c.session_id()); !r.status.ok()) return r;
  FromSync(sync_.SemaphoreAcquire(OwnerId{c.session_id(), c.owner()}, c.name(), c.permits(),
                                  c.limit(), c.try_only(), time_ms_, &revision_),
           &r);
  return r;
}

CommandResult StateMachine::SemaphoreRelease(const lv::SemaphoreReleaseCmd& c) {
  CommandResult r;
  if (r.status = CheckSession(c.session_id()); !r.status.ok()) return r;
  r.status =
      sync_.SemaphoreRelease(OwnerId{c.session_id(), c.owner()}, c.name(), time_ms_, &revision_);
  return r;
}

CommandResult StateMachine::LatchAwait(const lv::LatchAwaitCmd& c) {
  CommandResult r;
  if (r.status = ValidateLockRequest(c.name(), c.owner()); !r.status.ok()) return r;
  if (r.status = CheckSession(c.session_id()); !r.status.ok()) return r;
  FromSync(sync_.LatchAwait(OwnerId{c.session_id(), c.owner()}, c.name(), c.initial()), &r);
  if (r.status.ok()) ++revision_;
  return r;
}

CommandResult StateMachine::LatchCountDown(const lv::LatchCountDownCmd& c) {
  CommandResult r;
  if (r.status = ValidateLockName(c.name()); !r.status.ok()) return r;
  Result<uint64_t> left = sync_.LatchCountDown(c.name(), c.by(), c.initial());
  if (!left.ok()) {
    r.status = left.status();
    return r;
  }
  r.count = *left;
  ++revision_;
  return r;
}

CommandResult StateMachine::BarrierAwait(const lv::BarrierAwaitCmd& c) {
  CommandResult r;
  if (r.status = ValidateLockRequest(c.name(), c.owner()); !r.status.ok()) return r;
  if (r.status = CheckSession(c.session_id()); !r.status.ok()) return r;
  FromSync(sync_.BarrierAwait(OwnerId{c.session_id(), c.owner()}, c.name(), c.parties()), &r);
  if (r.status.ok()) ++revision_;
  return r;
}

// ---- Queries ---------------------------------------------------------------

const Session* StateMachine::FindSession(uint64_t id) const {
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : &it->second;
}

std::vector<GrantInfo> StateMachine::HeldBy(uint64_t session_id) const {
  std::vector<GrantInfo> out;
  for (const auto& [name, held] : locks_.HeldBySession(session_id)) {
    out.push_back(ToInfo(held.first, name, held.second));
  }
  return out;
}

// ---- Snapshots -------------------------------------------------------------

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
  const uint64_t applied_index = snap.applied_index();
  snap.clear_digest();
  snap.clear_applied_index();
  std::string canon;
  snap.SerializeToString(&canon);
  if (Fnv1a(canon) != want) return Status(Code::kInternal, "snapshot digest mismatch");

  StateMachine fresh;
  fresh.revision_ = snap.revision();
  fresh.applied_index_ = applied_index;
  fresh.time_ms_ = snap.time_ms();
  fresh.locks_.set_next_seq(snap.next_seq());
  for (const auto& p : snap.sessions()) {
    Session s;
    s.id = p.id();
    s.ttl_ms = p.ttl_ms();
    s.client_name = p.client_name();
    s.opened_at_ms = p.opened_at_ms();
    s.recent_reentrant.assign(p.recent_reentrant().begin(), p.recent_reentrant().end());
    if (!fresh.sessions_.emplace(s.id, std::move(s)).second) {
      return Status(Code::kInternal, "snapshot repeats session " + std::to_string(p.id()));
    }
  }
  for (const auto& p : snap.locks()) {
    if (!ValidateLockName(p.name()).ok()) {
      return Status(Code::kInternal, "snapshot has an invalid lock name");
    }
    for (const auto& h : p.holders()) {
      if (!fresh.sessions_.count(h.session_id())) {
        return Status(Code::kInternal, "snapshot lock '" + p.name() + "' held by unknown session");
      }
      const OwnerId who{h.session_id(), h.owner()};
      if (fresh.locks_.FindGrant(who, p.name()) || h.count() == 0) {
        return Status(Code::kInternal, "snapshot lock '" + p.name() + "' has a bad grant");
      }
      HeldGrant g;
      g.mode = ModeFromLog(h.mode());
      g.count = h.count();
      g.fencing_token = h.fencing_token();
      g.granted_at_ms = h.granted_at_ms();
      g.lock_ttl_ms = h.lock_ttl_ms();
      g.cacheable = h.cacheable();
      if (h.callback_sent() != 0) g.callback_sent = ModeFromLog(h.callback_sent());
      fresh.locks_.RestoreGrant(p.name(), who, g);
    }
    for (const auto& w : p.waiters()) {
      const OwnerId who{w.session_id(), w.owner()};
      if (!fresh.sessions_.count(w.session_id()) || fresh.locks_.IsWaiting(who, p.name()) ||
          w.seq() >= snap.next_seq()) {
        return Status(Code::kInternal, "snapshot waiter on '" + p.name() + "' is inconsistent");
      }
      WaitEntry e;
      e.who = who;
      e.mode = ModeFromLog(w.mode());
      e.seq = w.seq();
      e.conversion = w.conversion();
      e.reentrant = w.reentrant();
      e.queued_at_ms = w.queued_at_ms();
      e.lock_ttl_ms = w.lock_ttl_ms();
      e.group = w.group();
      e.set_value = w.set_value();
      e.value = w.value();
      e.cacheable = w.cacheable();
      if (e.conversion != (fresh.locks_.FindGrant(who, p.name()) != nullptr)) {
        return Status(Code::kInternal, "snapshot waiter on '" + p.name() + "' is inconsistent");
      }
      fresh.locks_.RestoreWaiter(p.name(), e);
    }
    if (!p.value().empty() || p.value_token() != 0) {
      fresh.locks_.RestoreValue(p.name(), p.value(), p.value_token());
    }
  }
  for (const auto& rk : snap.ranks()) {
    if (!ValidateLockName(rk.prefix()).ok()) {
      return Status(Code::kInternal, "snapshot has an invalid rank prefix");
    }
    (void)fresh.locks_.DeclareRank(rk.prefix(), rk.rank());
  }
  LATCHKEY_RETURN_IF_ERROR(fresh.sync_.FromProto(snap));
  std::set<uint64_t> live;
  for (const auto& [id, sess] : fresh.sessions_) live.insert(id);
  LATCHKEY_RETURN_IF_ERROR(fresh.objects_.FromProto(snap, live));
  LATCHKEY_RETURN_IF_ERROR(fresh.records_.FromProto(snap));
  *this = std::move(fresh);
  return Status::Ok();
}

}  // namespace latchkey::core
