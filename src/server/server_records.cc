// Record requests (seed 004, design 0013), loop thread. Writes and record
// locks go through the log; Get/Find are linearizable reads (read barrier).
// RecordLock is an Acquire of the derived lock name: a queued request is an
// ordinary pending wait (timeouts, cancel, late grant answered with an
// AcquireReply), failed by the core's kWaitFailed event if the record is
// deleted or changed meanwhile.
#include "core/names.h"
#include "server/server.h"

namespace latchkey::server {

namespace lv = log::v1;

namespace {

void CopyFields(const google::protobuf::RepeatedPtrField<v1::RecordField>& in,
                google::protobuf::RepeatedPtrField<lv::RecField>* out) {
  for (const v1::RecordField& f : in) {
    auto* o = out->Add();
    o->set_name(f.name());
    o->set_value(f.value());
  }
}

void FillRecord(const core::RecView& v, v1::Record* out) {
  out->set_table(v.table);
  out->set_number(v.number);
  for (const auto& [name, value] : v.fields) {
    auto* f = out->add_fields();
    f->set_name(name);
    f->set_value(value);
  }
  out->set_create_revision(v.create_revision);
  out->set_mod_revision(v.mod_revision);
  out->set_version(v.version);
  out->set_lock_name(core::RecordLockName(v.table, v.number));
}

// Cheap checks before proposing (the core checks everything again).
Status CheckTarget(const std::string& table, uint64_t number) {
  LATCHKEY_RETURN_IF_ERROR(core::ValidateTableName(table));
  if (number == 0) return InvalidArgument("record numbers start at 1");
  return Status::Ok();
}

}  // namespace

void Server::OnRecordCreate(ConnState& cs, const Request& req) {
  const auto& c = req.record_create();
  const uint64_t conn_id = cs.conn->id();
  if (Status s = core::ValidateTableName(c.table()); !s.ok())
    return ReplyError(conn_id, req.id(), s);
  if (static_cast<size_t>(c.fields_size()) > core::kMaxRecordFields ||
      static_cast<size_t>(c.key_fields_size()) > core::kMaxRecordKeyFields) {
    return ReplyError(conn_id, req.id(), InvalidArgument("too many fields"));
  }
  if (c.session_id() != 0 && !TouchSession(conn_id, req.id(), c.session_id())) return;
  lv::Command cmd;
  auto* o = cmd.mutable_rec_create();
  o->set_session_id(c.session_id());
  o->set_table(c.table());
  CopyFields(c.fields(), o->mutable_fields());
  for (const std::string& k : c.key_fields()) o->add_key_fields(k);
  ProposeAndReply(std::move(cmd), conn_id, req.id(),
                  [](const core::CommandResult& res, v1::Response* r) {
                    auto* out = r->mutable_record_create();
                    out->set_revision(res.revision);
                    if (!res.records.empty()) FillRecord(res.records[0], out->mutable_record());
                  });
}

void Server::OnRecordUpdate(ConnState& cs, const Request& req) {
  const auto& u = req.record_update();
  const uint64_t conn_id = cs.conn->id();
  if (Status s = CheckTarget(u.table(), u.number()); !s.ok())
    return ReplyError(conn_id, req.id(), s);
  if (static_cast<size_t>(u.fields_size()) > core::kMaxRecordFields) {
    return ReplyError(conn_id, req.id(), InvalidArgument("too many fields"));
  }
  if (!TouchSession(conn_id, req.id(), u.session_id())) return;
  lv::Command cmd;
  auto* o = cmd.mutable_rec_update();
  o->set_session_id(u.session_id());
  o->set_owner(u.owner());
  o->set_table(u.table());
  o->set_number(u.number());
  CopyFields(u.fields(), o->mutable_fields());
  ProposeAndReply(std::move(cmd), conn_id, req.id(),
                  [](const core::CommandResult& res, v1::Response* r) {
                    auto* out = r->mutable_record_update();
                    out->set_revision(res.revision);
                    if (!res.records.empty()) FillRecord(res.records[0], out->mutable_record());
                  });
}

void Server::OnRecordDelete(ConnState& cs, const Request& req) {
  const auto& d = req.record_delete();
  const uint64_t conn_id = cs.conn->id();
  if (Status s = CheckTarget(d.table(), d.number()); !s.ok())
    return ReplyError(conn_id, req.id(), s);
  if (!TouchSession(conn_id, req.id(), d.session_id())) return;
  lv::Command cmd;
  auto* o = cmd.mutable_rec_delete();
  o->set_session_id(d.session_id());
  o->set_owner(d.owner());
  o->set_table(d.table());
  o->set_number(d.number());
  ProposeAndReply(std::move(cmd), conn_id, req.id(),
                  [](const core::CommandResult& res, v1::Response* r) {
                    r->mutable_record_delete()->set_revision(res.revision);
                  });
}

void Server::OnRecordLock(ConnState& cs, const Request& req) {
  const auto& l = req.record_lock();
  const uint64_t conn_id = cs.conn->id();
  const uint64_t rid = req.id();
  if (Status s = CheckTarget(l.table(), l.number()); !s.ok()) return ReplyError(conn_id, rid, s);
  if (Status s = core::ValidateOwner(l.owner()); !s.ok()) return ReplyError(conn_id, rid, s);
  if (!v1::LockMode_IsValid(l.mode())) {
    return ReplyError(conn_id, rid, InvalidArgument("unknown lock mode"));
  }
  if (l.lock_ttl_ms() > options_.max_lock_ttl_ms) {
    return ReplyError(conn_id, rid,
                      InvalidArgument("lock ttl exceeds the limit of " +
                                      std::to_string(options_.max_lock_ttl_ms) + "ms"));
  }
  if (!TouchSession(conn_id, rid, l.session_id())) return;
  const std::string name = core::RecordLockName(l.table(), l.number());
  WaitKey key{l.session_id(), l.owner(), name, static_cast<int>(core::Event::Object::kLock)};
  lv::Command cmd;
  auto* o = cmd.mutable_rec_lock();
  o->set_session_id(l.session_id());
  o->set_owner(l.owner());
  o->set_table(l.table());
  o->set_number(l.number());
  o->set_if_unchanged_since(l.if_unchanged_since());
  o->set_mode(static_cast<uint32_t>(l.mode()));  // wire and log share Mode + 1
  o->set_try_only(l.try_only());
  o->set_lock_ttl_ms(l.lock_ttl_ms());
  ProposeWait(std::move(cmd), key, conn_id, rid, WaitDeadline(l.try_only(), l.wait_timeout_ms()),
              [](const core::CommandResult& res, v1::Response* r) {
                auto* a = r->mutable_acquire();
                a->set_fencing_token(res.grant.fencing_token);
                a->set_granted_at_ms(res.grant.granted_at_ms);
                a->set_mode(static_cast<v1::LockMode>(core::ModeToLog(res.grant.mode)));
                a->set_count(res.grant.count);
              });
}

void Server::OnRecordUnlock(ConnState& cs, const Request& req) {
  const auto& u = req.record_unlock();
  const uint64_t conn_id = cs.conn->id();
  if (Status s = CheckTarget(u.table(), u.number()); !s.ok())
    return ReplyError(conn_id, req.id(), s);
  if (!TouchSession(conn_id, req.id(), u.session_id())) return;
  lv::Command cmd;
  auto* o = cmd.mutable_rec_unlock();
  o->set_session_id(u.session_id());
  o->set_owner(u.owner());
  o->set_table(u.table());
  o->set_number(u.number());
  ProposeAndReply(std::move(cmd), conn_id, req.id(),
                  [](const core::CommandResult&, v1::Response* r) { r->mutable_record_unlock(); });
}

void Server::OnRecordGet(ConnState& cs, const Request& req) {
  AfterReadBarrier(cs, req, &Server::ReadRecord);
}

void Server::ReadRecord(ConnState& cs, const Request& req) {
  const auto& g = req.record_get();
  Result<core::RecView> v = sm_.records().Get(g.table(), g.number(), g.revision(), sm_.revision());
  if (!v.ok()) return ReplyError(cs.conn->id(), req.id(), v.status());
  v1::Response resp;
  resp.set_id(req.id());
  auto* out = resp.mutable_record_get();
  FillRecord(*v, out->mutable_record());
  out->set_revision(g.revision() != 0 ? g.revision() : sm_.revision());
  Reply(cs.conn->id(), resp);
}

void Server::OnRecordFind(ConnState& cs, const Request& req) {
  AfterReadBarrier(cs, req, &Server::ReadRecordFind);
}

void Server::ReadRecordFind(ConnState& cs, const Request& req) {
  const auto& f = req.record_find();
  if (f.criteria_size() > core::kMaxRecordCriteria) {
    return ReplyError(cs.conn->id(), req.id(), InvalidArgument("too many criteria"));
  }
  std::vector<core::RecCriterion> criteria;
  for (const auto& c : f.criteria()) criteria.push_back({c.field(), c.value(), c.exact()});
  Result<core::RecPage> page = sm_.records().Find(f.table(), criteria, f.revision(), sm_.revision(),
                                                  f.start_after(), f.limit());
  if (!page.ok()) return ReplyError(cs.conn->id(), req.id(), page.status());
  v1::Response resp;
  resp.set_id(req.id());
  auto* out = resp.mutable_record_find();
  for (const core::RecView& v : page->items) FillRecord(v, out->add_records());
  out->set_revision(page->revision);
  out->set_truncated(page->truncated);
  Reply(cs.conn->id(), resp);
}

}  // namespace latchkey::server
