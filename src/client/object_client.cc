// latchkey::Objects (include/latchkey/objects.h): encodes object store
// requests and sends them through the Client's session connection.
#include <utility>

#include "client/call_proto.h"
#include "latchkey.pb.h"
#include "latchkey/objects.h"

namespace latchkey {

namespace pb = ::latchkey::v1;

namespace {

Result<pb::Response> Send(Client& c, const pb::Request& req,
                          std::optional<std::chrono::milliseconds> within = std::nullopt) {
  return client_internal::CallProto(c, req, within);
}

Object FromWire(const pb::Object& o) {
  Object out;
  out.key = o.key();
  out.state = static_cast<ObjectState>(o.state());
  out.value = o.value();
  out.create_revision = o.create_revision();
  out.mod_revision = o.mod_revision();
  out.version = o.version();
  out.reserved_by = o.reserved_by();
  out.ttl_ms = o.ttl_ms();
  out.ttl_sliding = o.ttl_sliding();
  out.expires_at_ms = o.expires_at_ms();
  return out;
}

Object FromRead(const pb::GetObjectReply& r) {
  Object o = FromWire(r.object());
  o.read_revision = r.revision();
  return o;
}

}  // namespace

std::string_view ObjectStateName(ObjectState s) {
  switch (s) {
    case ObjectState::kAbsent: return "absent";
    case ObjectState::kReserved: return "reserved";
    case ObjectState::kAvailable: return "available";
  }
  return "unknown";
}

// ---- Compare / TxnOp builders ----------------------------------------------------

Compare Compare::Value(std::string key, Op op, std::string value) {
  Compare c;
  c.target = Target::kValue;
  c.op = op;
  c.key = std::move(key);
  c.value = std::move(value);
  return c;
}

namespace {
Compare Numeric(Compare::Target t, std::string key, Compare::Op op, uint64_t n) {
  Compare c;
  c.target = t;
  c.op = op;
  c.key = std::move(key);
  c.number = n;
  return c;
}
}  // namespace

Compare Compare::Version(std::string key, Op op, uint64_t version) {
  return Numeric(Target::kVersion, std::move(key), op, version);
}
Compare Compare::ModRevision(std::string key, Op op, uint64_t revision) {
  return Numeric(Target::kModRevision, std::move(key), op, revision);
}
Compare Compare::CreateRevision(std::string key, Op op, uint64_t revision) {
  return Numeric(Target::kCreateRevision, std::move(key), op, revision);
}
Compare Compare::State(std::string key, ObjectState state) {
  return Numeric(Target::kState, std::move(key), Op::kEq, static_cast<uint64_t>(state));
}
Compare Compare::HoldsLock(std::string name, LockMode at_least, std::string owner) {
  Compare c = Numeric(Target::kLockMode, std::move(name), Op::kGe, 0);
  c.mode = at_least;
  c.owner = std::move(owner);
  return c;
}
Compare Compare::LockToken(std::string name, Op op, uint64_t token) {
  return Numeric(Target::kLockToken, std::move(name), op, token);
}

TxnOp TxnOp::Put(std::string key, std::string value) {
  return TxnOp{Kind::kPut, std::move(key), std::move(value), {}};
}
TxnOp TxnOp::Delete(std::string key) {
  return TxnOp{Kind::kDelete, std::move(key), {}, {}};
}
TxnOp TxnOp::Get(std::string key) {
  return TxnOp{Kind::kGet, std::move(key), {}, {}};
}
TxnOp TxnOp::ReleaseLock(std::string name, std::string owner) {
  return TxnOp{Kind::kReleaseLock, std::move(name), {}, std::move(owner)};
}

// ---- Objects ---------------------------------------------------------------------

Result<Object> Objects::Get(std::string_view key, uint64_t revision) {
  pb::Request req;
  req.mutable_get_object()->set_key(std::string(key));
  req.mutable_get_object()->set_revision(revision);
  Result<pb::Response> r = Send(client_, req);
  if (!r.ok()) return r.status();
  return FromRead(r->get_object());
}

Result<uint64_t> Objects::Put(std::string_view key, std::string_view value) {
  pb::Request req;
  req.mutable_put_object()->set_key(std::string(key));
  req.mutable_put_object()->set_value(std::string(value));
  Result<pb::Response> r = Send(client_, req);
  if (!r.ok()) return r.status();
  return r->put_object().revision();
}

Result<Object> Objects::Reserve(std::string_view key) {
  pb::Request req;
  req.mutable_reserve_object()->set_session_id(client_.session_id());
  req.mutable_reserve_object()->set_key(std::string(key));
  Result<pb::Response> r = Send(client_, req);
  if (!r.ok()) return r.status();
  return FromRead(r->reserve_object());
}

Result<Object> Objects::WaitFor(std::string_view key, std::chrono::milliseconds timeout) {
  pb::Request req;
  req.mutable_wait_object()->set_key(std::string(key));
  req.mutable_wait_object()->set_timeout_ms(static_cast<uint64_t>(timeout.count()));
  // The server answers TIMEOUT itself; wait a little longer than that for it.
  const auto within = timeout.count() == 0 ? std::chrono::milliseconds{0}
                                           : timeout + std::chrono::milliseconds{5'000};
  Result<pb::Response> r = Send(client_, req, within);
  if (!r.ok()) return r.status();
  return FromRead(r->wait_object());
}

Result<bool> Objects::Remove(std::string_view key) {
  pb::Request req;
  req.mutable_remove_object()->set_key(std::string(key));
  Result<pb::Response> r = Send(client_, req);
  if (!r.ok()) return r.status();
  return r->remove_object().existed();
}

Status Objects::SetTtl(std::string_view key, uint64_t ttl_ms, bool sliding, bool use_default) {
  pb::Request req;
  auto* t = req.mutable_set_object_ttl();
  t->set_key(std::string(key));
  t->set_ttl_ms(ttl_ms);
  t->set_sliding(sliding);
  t->set_use_default(use_default);
  return Send(client_, req).status();
}

Status Objects::SetTimeout(std::string_view key, std::chrono::milliseconds ttl) {
  if (ttl.count() <= 0) return InvalidArgument("a timeout must be positive; use ClearTimeout");
  return SetTtl(key, static_cast<uint64_t>(ttl.count()), false, false);
}
Status Objects::SetTimeoutAfterRequest(std::string_view key, std::chrono::milliseconds ttl) {
  if (ttl.count() <= 0) return InvalidArgument("a timeout must be positive; use ClearTimeout");
  return SetTtl(key, static_cast<uint64_t>(ttl.count()), true, false);
}
Status Objects::SetDefaultTimeout(std::string_view key) {
  return SetTtl(key, 0, false, true);
}
Status Objects::SetDefaultTimeoutAfterRequest(std::string_view key) {
  return SetTtl(key, 0, true, true);
}
Status Objects::ClearTimeout(std::string_view key) {
  return SetTtl(key, 0, false, false);
}

Result<TxnResult> Objects::Txn(const TxnRequest& txn) {
  pb::Request req;
  auto* t = req.mutable_txn();
  bool needs_session = false;
  for (const Compare& c : txn.compares) {
    auto* o = t->add_compares();
    o->set_target(static_cast<pb::CompareTarget>(c.target));
    o->set_op(static_cast<pb::CompareOp>(c.op));
    o->set_key(c.key);
    o->set_value(c.value);
    o->set_number(c.target == Compare::Target::kLockMode ? static_cast<uint64_t>(c.mode) + 1
                                                         : c.number);
    o->set_owner(c.owner);
    needs_session |= c.target == Compare::Target::kLockMode;
  }
  auto ops = [&](const std::vector<TxnOp>& from, auto* to) {
    for (const TxnOp& op : from) {
      auto* o = to->Add();
      o->set_kind(static_cast<pb::TxnOpKind>(op.kind));
      o->set_key(op.key);
      o->set_value(op.value);
      o->set_owner(op.owner);
      needs_session |= op.kind == TxnOp::Kind::kReleaseLock;
    }
  };
  ops(txn.then_ops, t->mutable_then_ops());
  ops(txn.else_ops, t->mutable_else_ops());
  if (needs_session) t->set_session_id(client_.session_id());
  Result<pb::Response> r = Send(client_, req);
  if (!r.ok()) return r.status();
  TxnResult out;
  out.succeeded = r->txn().succeeded();
  out.revision = r->txn().revision();
  for (const auto& o : r->txn().gets()) out.gets.push_back(FromWire(o));
  return out;
}

Result<ObjectPage> Objects::History(std::string_view key, uint64_t from_revision, uint32_t limit) {
  pb::Request req;
  auto* h = req.mutable_object_history();
  h->set_key(std::string(key));
  h->set_from_revision(from_revision);
  h->set_limit(limit);
  Result<pb::Response> r = Send(client_, req);
  if (!r.ok()) return r.status();
  ObjectPage page;
  for (const auto& o : r->object_history().versions()) page.objects.push_back(FromWire(o));
  page.revision = r->object_history().compact_revision();
  page.truncated = r->object_history().truncated();
  return page;
}

Result<ObjectPage> Objects::Find(std::string_view prefix, uint64_t revision,
                                 std::string_view start_after, uint32_t limit) {
  pb::Request req;
  auto* f = req.mutable_find_objects();
  f->set_prefix(std::string(prefix));
  f->set_revision(revision);
  f->set_start_after(std::string(start_after));
  f->set_limit(limit);
  Result<pb::Response> r = Send(client_, req);
  if (!r.ok()) return r.status();
  ObjectPage page;
  for (const auto& o : r->find_objects().objects()) page.objects.push_back(FromWire(o));
  page.revision = r->find_objects().revision();
  page.truncated = r->find_objects().truncated();
  return page;
}

Result<std::string> Objects::ExecuteMethod(std::string_view key, std::string_view method,
                                           const std::vector<std::string>& args) {
  pb::Request req;
  auto* e = req.mutable_exec_method();
  e->set_key(std::string(key));
  e->set_method(std::string(method));
  for (const std::string& a : args) e->add_args(a);
  Result<pb::Response> r = Send(client_, req);
  if (!r.ok()) return r.status();
  return r->exec_method().result();
}

Result<uint64_t> Objects::Compact(uint64_t revision) {
  pb::Request req;
  req.mutable_compact_objects()->set_revision(revision);
  Result<pb::Response> r = Send(client_, req);
  if (!r.ok()) return r.status();
  return r->compact_objects().compact_revision();
}

Result<uint64_t> Objects::PutScript(std::string_view name, std::string_view source) {
  pb::Request req;
  req.mutable_put_script()->set_name(std::string(name));
  req.mutable_put_script()->set_source(std::string(source));
  auto resp = Send(client_, req);
  if (!resp.ok()) return resp.status();
  return resp->put_script().revision();
}

}  // namespace latchkey
