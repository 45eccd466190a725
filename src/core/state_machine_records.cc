// Record commands of the state machine (record_store.h, design 0013): the
// record store holds the data; this file ties each record to its ordinary
// lock "records.<table>.<number>" (fencing, leases, FIFO, deadlock
// detection all apply) and enforces the seed-004 rules.
#include "core/names.h"
#include "core/state_machine.h"

namespace latchkey::core {

namespace lv = log::v1;

namespace {

std::string Describe(const std::string& table, uint64_t number) {
  return "record " + table + "/" + std::to_string(number);
}

bool WriteMode(Mode m) {
  return m == Mode::kPW || m == Mode::kEX;
}

}  // namespace

CommandResult StateMachine::ApplyRecordCommand(const lv::Command& cmd, std::vector<Event>* events) {
  CommandResult r;
  switch (cmd.op_case()) {
    case lv::Command::kRecCreate: {
      const auto& c = cmd.rec_create();
      if (c.session_id() != 0) {
        if (r.status = CheckSession(c.session_id()); !r.status.ok()) return r;
      }
      Result<RecFields> fields = FieldsFromProto(c.fields());
      if (!fields.ok()) {
        r.status = fields.status();
        return r;
      }
      std::vector<std::string> key_fields(c.key_fields().begin(), c.key_fields().end());
      Result<RecView> v =
          records_.Create(c.table(), std::move(*fields), key_fields, time_ms_, &revision_);
      if (!v.ok()) {
        r.status = v.status();
        return r;
      }
      r.revision = v->mod_revision;
      r.records.push_back(std::move(*v));
      return r;
    }
    case lv::Command::kRecLock: return RecordLock(cmd.rec_lock());
    case lv::Command::kRecUnlock: {
      const auto& c = cmd.rec_unlock();
      if (r.status = CheckSession(c.session_id()); !r.status.ok()) return r;
      if (r.status = ValidateTableName(c.table()); !r.status.ok()) return r;
      locks_.set_time(time_ms_);
      r.status = locks_.Release(OwnerId{c.session_id(), c.owner()},
                                RecordLockName(c.table(), c.number()), true, &revision_);
      return r;
    }
    case lv::Command::kRecUpdate:
    case lv::Command::kRecDelete: return RecordWrite(cmd, events);
    default: break;
  }
  r.status = InvalidArgument("not a record command");
  return r;
}

Status StateMachine::CheckRecordLock(uint64_t session, const std::string& owner,
                                     const std::string& table, uint64_t number) const {
  LATCHKEY_RETURN_IF_ERROR(CheckSession(session));
  LATCHKEY_RETURN_IF_ERROR(ValidateTableName(table));
  if (records_.Live(table, number) == nullptr) {
    return NotFound(Describe(table, number) + " does not exist");
  }
  const std::string name = RecordLockName(table, number);
  const HeldGrant* g = locks_.FindGrant(OwnerId{session, owner}, name);
  if (g == nullptr || !WriteMode(g->mode)) {
    return Status(Code::kNotHeld,
                  "writing " + Describe(table, number) + " needs its lock '" + name +
                      "' held by this owner in PW or EX" +
                      (g ? " (held in " + std::string(ModeName(g->mode)) + ")" : std::string()));
  }
  return Status::Ok();
}

CommandResult StateMachine::RecordWrite(const lv::Command& cmd, std::vector<Event>* events) {
  CommandResult r;
  if (cmd.has_rec_update()) {
    const auto& c = cmd.rec_update();
    if (r.status = CheckRecordLock(c.session_id(), c.owner(), c.table(), c.number());
        !r.status.ok()) {
      return r;
    }
    Result<RecFields> fields = FieldsFromProto(c.fields());
    if (!fields.ok()) {
      r.status = fields.status();
      return r;
    }
    Result<RecView> v = records_.Update(c.table(), c.number(), *fields, time_ms_, &revision_);
    if (!v.ok()) {
      r.status = v.status();
      return r;
    }
    r.revision = v->mod_revision;
    locks_.set_time(time_ms_);
    FailChangedWaiters(RecordLockName(c.table(), c.number()), r.revision, events);
    r.records.push_back(std::move(*v));
    return r;
  }
  const auto& c = cmd.rec_delete();
  if (r.status = CheckRecordLock(c.session_id(), c.owner(), c.table(), c.number());
      !r.status.ok()) {
    return r;
  }
  if (r.status = records_.Delete(c.table(), c.number(), time_ms_, &revision_); !r.status.ok()) {
    return r;
  }
  r.revision = revision_;
  r.succeeded = true;
  locks_.set_time(time_ms_);
  RevokeRecordLocks(RecordLockName(c.table(), c.number()), c.session_id(), c.owner(),
                    Describe(c.table(), c.number()) + " was deleted", events);
  return r;
}

CommandResult StateMachine::RecordLock(const lv::RecLockCmd& c) {
  CommandResult r;
  if (r.status = CheckSession(c.session_id()); !r.status.ok()) return r;
  if (r.status = ValidateOwner(c.owner()); !r.status.ok()) return r;
  if (r.status = ValidateTableName(c.table()); !r.status.ok()) return r;
  const RecVersion* live = records_.Live(c.table(), c.number());
  if (live == nullptr) {
    r.status = NotFound(Describe(c.table(), c.number()) + " does not exist");
    return r;
  }
  if (c.if_unchanged_since() != 0 && live->mod_revision > c.if_unchanged_since()) {
    r.status = Status(Code::kRecordChanged,
                      Describe(c.table(), c.number()) + " was written at revision " +
                          std::to_string(live->mod_revision) + ", after revision " +
                          std::to_string(c.if_unchanged_since()) + "; read it again");
    return r;
  }
  const std::string name = RecordLockName(c.table(), c.number());
  FailChangedWaiters(name, live->mod_revision, nullptr);  // forget stale conditions
  AcquireRequest req;
  req.who = OwnerId{c.session_id(), c.owner()};
  req.name = name;
  req.mode = ModeFromLog(c.mode());
  req.try_only = c.try_only();
  req.lock_ttl_ms = c.lock_ttl_ms();
  locks_.set_time(time_ms_);
  AcquireOutcome out = locks_.Acquire(req, time_ms_, &revision_);
  FillOutcome(out, req.who, name, &r);
  const RecordStore::CondKey key{name, c.session_id(), c.owner()};
  if (r.queued && c.if_unchanged_since() != 0) {
    records_.lock_conds()[key] = c.if_unchanged_since();
  } else {
    records_.lock_conds().erase(key);
  }
  return r;
}

void StateMachine::FailChangedWaiters(const std::string& name, uint64_t mod_revision,
                                      std::vector<Event>* events) {
  auto& conds = records_.lock_conds();
  for (auto it = conds.lower_bound({name, 0, std::string()});
       it != conds.end() && std::get<0>(it->first) == name;) {
    const OwnerId who{std::get<1>(it->first), std::get<2>(it->first)};
    if (!locks_.IsWaiting(who, name)) {
      it = conds.erase(it);
      continue;
    }
    if (events == nullptr || it->second >= mod_revision) {
      ++it;
      continue;
    }
    const uint64_t since = it->second;
    it = conds.erase(it);
    locks_.CancelWait(who, name, &revision_);
    Event e;
    e.kind = Event::Kind::kWaitFailed;
    e.session_id = who.session;
    e.grant.session_id = who.session;
    e.grant.owner = who.owner;
    e.grant.name = name;
    e.failure = Status(Code::kRecordChanged,
                       "the record behind lock '" + name + "' was written at revision " +
                           std::to_string(mod_revision) + ", after revision " +
                           std::to_string(since) + "; read it again");
    events->push_back(std::move(e));
  }
}

void StateMachine::RevokeRecordLocks(const std::string& name, uint64_t session,
                                     const std::string& owner, const std::string& reason,
                                     std::vector<Event>* events) {
  const Resource* res = locks_.Find(name);
  if (res == nullptr) return;
  // Waiters first: releasing the grants must not hand the lock to them.
  std::vector<OwnerId> waiters;
  for (const WaitEntry& w : res->waiters()) waiters.push_back(w.who);
  for (const OwnerId& who : waiters) {
    records_.lock_conds().erase({name, who.session, who.owner});
    locks_.CancelWait(who, name, &revision_);
    Event e;
    e.kind = Event::Kind::kWaitFailed;
    e.session_id = who.session;
    e.grant.session_id = who.session;
    e.grant.owner = who.owner;
    e.grant.name = name;
    e.failure = NotFound(reason);
    events->push_back(std::move(e));
  }
  res = locks_.Find(name);
  if (res == nullptr) return;
  std::vector<std::pair<OwnerId, HeldGrant>> holders;
  for (const auto& h : res->holders) holders.emplace_back(h.first, h.second);
  for (const auto& [who, g] : holders) {
    (void)locks_.Release(who, name, true, &revision_);
    if (who == OwnerId{session, owner}) continue;  // the deleter knows
    Event e;
    e.kind = Event::Kind::kLockLost;
    e.session_id = who.session;
    e.grant.session_id = who.session;
    e.grant.owner = who.owner;
    e.grant.name = name;
    e.grant.fencing_token = g.fencing_token;
    e.grant.granted_at_ms = g.granted_at_ms;
    e.grant.mode = g.mode;
    e.reason = reason;
    events->push_back(std::move(e));
  }
}

void StateMachine::DropRecordConds(uint64_t session) {
  auto& conds = records_.lock_conds();
  for (auto it = conds.begin(); it != conds.end();) {
    it = std::get<1>(it->first) == session ? conds.erase(it) : std::next(it);
  }
}

}  // namespace latchkey::core
