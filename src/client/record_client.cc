// latchkey::Records (include/latchkey/records.h): encodes record requests
// and sends them through the Client's session connection.
#include <utility>

#include "client/call_proto.h"
#include "latchkey.pb.h"
#include "latchkey/records.h"

namespace latchkey {

namespace pb = ::latchkey::v1;

namespace {

Result<pb::Response> Send(Client& c, const pb::Request& req,
                          std::optional<std::chrono::milliseconds> within = std::nullopt) {
  return client_internal::CallProto(c, req, within);
}

Record FromWire(const pb::Record& r) {
  Record out;
  out.table = r.table();
  out.number = r.number();
  for (const pb::RecordField& f : r.fields()) out.fields[f.name()] = f.value();
  out.create_revision = r.create_revision();
  out.mod_revision = r.mod_revision();
  out.version = r.version();
  out.lock_name = r.lock_name();
  return out;
}

void ToWire(const RecordFields& fields, google::protobuf::RepeatedPtrField<pb::RecordField>* out) {
  for (const auto& [name, value] : fields) {
    auto* f = out->Add();
    f->set_name(name);
    f->set_value(value);
  }
}

}  // namespace

Result<Record> Records::Create(const RecordFields& fields,
                               const std::vector<std::string>& key_fields) {
  pb::Request req;
  auto* c = req.mutable_record_create();
  c->set_session_id(client_.session_id());
  c->set_table(table_);
  ToWire(fields, c->mutable_fields());
  for (const std::string& k : key_fields) c->add_key_fields(k);
  Result<pb::Response> r = Send(client_, req);
  if (!r.ok()) return r.status();
  return FromWire(r->record_create().record());
}

Result<Record> Records::Get(uint64_t number, uint64_t revision) {
  pb::Request req;
  auto* g = req.mutable_record_get();
  g->set_table(table_);
  g->set_number(number);
  g->set_revision(revision);
  Result<pb::Response> r = Send(client_, req);
  if (!r.ok()) return r.status();
  return FromWire(r->record_get().record());
}

Result<Record> Records::Update(uint64_t number, const RecordFields& fields,
                               std::string_view owner) {
  pb::Request req;
  auto* u = req.mutable_record_update();
  u->set_session_id(client_.session_id());
  u->set_owner(std::string(owner));
  u->set_table(table_);
  u->set_number(number);
  ToWire(fields, u->mutable_fields());
  Result<pb::Response> r = Send(client_, req);
  if (!r.ok()) return r.status();
  return FromWire(r->record_update().record());
}

Result<uint64_t> Records::Delete(uint64_t number, std::string_view owner) {
  pb::Request req;
  auto* d = req.mutable_record_delete();
  d->set_session_id(client_.session_id());
  d->set_owner(std::string(owner));
  d->set_table(table_);
  d->set_number(number);
  Result<pb::Response> r = Send(client_, req);
  if (!r.ok()) return r.status();
  return r->record_delete().revision();
}

Result<Grant> Records::Lock(uint64_t number, const RecordLockOptions& options) {
  pb::Request req;
  auto* l = req.mutable_record_lock();
  l->set_session_id(client_.session_id());
  l->set_owner(options.owner);
  l->set_table(table_);
  l->set_number(number);
  l->set_if_unchanged_since(options.if_unchanged_since);
  l->set_mode(static_cast<pb::LockMode>(static_cast<int>(options.mode) + 1));
  l->set_try_only(options.try_only);
  l->set_wait_timeout_ms(static_cast<uint64_t>(options.wait_timeout.count()));
  l->set_lock_ttl_ms(static_cast<uint64_t>(options.lock_ttl.count()));
  // The server answers TIMEOUT itself; wait a little longer than that for it.
  std::optional<std::chrono::milliseconds> within;
  if (!options.try_only) {
    within = options.wait_timeout.count() == 0
                 ? std::chrono::milliseconds{0}
                 : options.wait_timeout + std::chrono::milliseconds{5'000};
  }
  Result<pb::Response> r = Send(client_, req, within);
  if (!r.ok()) return r.status();
  const pb::AcquireReply& a = r->acquire();
  Grant g;
  g.name = "records." + table_ + "." + std::to_string(number);
  g.owner = options.owner;
  g.fencing_token = a.fencing_token();
  g.granted_at_ms = a.granted_at_ms();
  const int m = static_cast<int>(a.mode());
  g.mode = (m <= 0 || m > 6) ? LockMode::kEX : static_cast<LockMode>(m - 1);
  g.count = a.count();
  return g;
}

Status Records::Unlock(uint64_t number, std::string_view owner) {
  pb::Request req;
  auto* u = req.mutable_record_unlock();
  u->set_session_id(client_.session_id());
  u->set_owner(std::string(owner));
  u->set_table(table_);
  u->set_number(number);
  Result<pb::Response> r = Send(client_, req);
  return r.ok() ? Status::Ok() : r.status();
}

Result<RecordPage> Records::Find(const std::vector<RecordCriterion>& criteria, uint64_t revision,
                                 uint64_t start_after, uint32_t limit) {
  pb::Request req;
  auto* f = req.mutable_record_find();
  f->set_table(table_);
  for (const RecordCriterion& c : criteria) {
    auto* pc = f->add_criteria();
    pc->set_field(c.field);
    pc->set_value(c.value);
    pc->set_exact(c.exact);
  }
  f->set_revision(revision);
  f->set_start_after(start_after);
  f->set_limit(limit);
  Result<pb::Response> r = Send(client_, req);
  if (!r.ok()) return r.status();
  RecordPage page;
  for (const pb::Record& rec : r->record_find().records()) page.records.push_back(FromWire(rec));
  page.revision = r->record_find().revision();
  page.truncated = r->record_find().truncated();
  return page;
}

// ---- RecordLockGuard -----------------------------------------------------------

Result<RecordLockGuard> RecordLockGuard::Acquire(Records& records, uint64_t number,
                                                 const RecordLockOptions& options) {
  Result<Grant> g = records.Lock(number, options);
  if (!g.ok()) return g.status();
  return RecordLockGuard(&records, number, options.owner, std::move(*g));
}

RecordLockGuard::RecordLockGuard(RecordLockGuard&& other) noexcept
    : records_(std::exchange(other.records_, nullptr)),
      number_(other.number_),
      owner_(std::move(other.owner_)),
      grant_(std::move(other.grant_)) {}

RecordLockGuard& RecordLockGuard::operator=(RecordLockGuard&& other) noexcept {
  if (this != &other) {
    (void)Unlock();
    records_ = std::exchange(other.records_, nullptr);
    number_ = other.number_;
    owner_ = std::move(other.owner_);
    grant_ = std::move(other.grant_);
  }
  return *this;
}

RecordLockGuard::~RecordLockGuard() {
  (void)Unlock();
}

Status RecordLockGuard::Unlock() {
  if (records_ == nullptr) return Status::Ok();
  Records* r = std::exchange(records_, nullptr);
  return r->Unlock(number_, owner_);
}

}  // namespace latchkey
