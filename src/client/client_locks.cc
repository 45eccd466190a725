// latchkey::Client: lock requests (acquire, release, downgrade, transfer,
// multi-lock, value blocks, ranks).
#include "client/client_impl.h"
#include "latchkey/client.h"

namespace latchkey {

Result<Grant> Client::Acquire(std::string_view name, const AcquireOptions& options) {
  if (options.wait_timeout.count() < 0 || options.lock_ttl.count() < 0) {
    return InvalidArgument("wait_timeout and lock_ttl must not be negative");
  }
  pb::Request req;
  auto* a = req.mutable_acquire();
  a->set_session_id(session_id());
  a->set_owner(options.owner);
  a->set_name(std::string(name));
  a->set_try_only(options.try_only);
  a->set_mode(WireMode(options.mode));
  a->set_reentrant(options.reentrant);
  if (options.value) {
    a->set_set_value(true);
    a->set_value(*options.value);
  }
  a->set_cacheable(options.cacheable);
  a->set_wait_timeout_ms(static_cast<uint64_t>(options.wait_timeout.count()));
  a->set_lock_ttl_ms(static_cast<uint64_t>(options.lock_ttl.count()));
  Outcome o = impl_->Call(std::move(req), WaitDeadline(options.try_only, options.wait_timeout));
  if (!o.status.ok()) return o.status;
  Grant g;
  g.name = std::string(name);
  g.owner = options.owner;
  g.fencing_token = o.response.acquire().fencing_token();
  g.granted_at_ms = o.response.acquire().granted_at_ms();
  g.mode = ApiMode(o.response.acquire().mode());
  g.count = std::max<uint32_t>(1, o.response.acquire().count());
  g.value = o.response.acquire().value();
  g.value_token = o.response.acquire().value_token();
  return g;
}

Status Client::ReleaseWithValue(std::string_view name, std::string_view value,
                                std::string_view owner) {
  pb::Request req;
  auto* r = req.mutable_release();
  r->set_session_id(session_id());
  r->set_owner(std::string(owner));
  r->set_name(std::string(name));
  r->set_set_value(true);
  r->set_value(std::string(value));
  return impl_->Call(std::move(req), impl_->DefaultDeadline()).status;
}

Status Client::DowngradeWithValue(std::string_view name, LockMode mode, std::string_view value,
                                  std::string_view owner) {
  pb::Request req;
  auto* d = req.mutable_downgrade();
  d->set_session_id(session_id());
  d->set_owner(std::string(owner));
  d->set_name(std::string(name));
  d->set_mode(WireMode(mode));
  d->set_set_value(true);
  d->set_value(std::string(value));
  return impl_->Call(std::move(req), impl_->DefaultDeadline()).status;
}

Status Client::Release(std::string_view name, std::string_view owner, bool all) {
  pb::Request req;
  auto* r = req.mutable_release();
  r->set_session_id(session_id());
  r->set_owner(std::string(owner));
  r->set_name(std::string(name));
  r->set_all(all);
  return impl_->Call(std::move(req), impl_->DefaultDeadline()).status;
}

Status Client::Downgrade(std::string_view name, LockMode mode, std::string_view owner) {
  pb::Request req;
  auto* d = req.mutable_downgrade();
  d->set_session_id(session_id());
  d->set_owner(std::string(owner));
  d->set_name(std::string(name));
  d->set_mode(WireMode(mode));
  return impl_->Call(std::move(req), impl_->DefaultDeadline()).status;
}

Result<uint64_t> Client::Transfer(std::string_view name, uint64_t to_session_id,
                                  std::string_view to_owner, std::string_view owner) {
  pb::Request req;
  auto* t = req.mutable_transfer();
  t->set_session_id(session_id());
  t->set_owner(std::string(owner));
  t->set_name(std::string(name));
  t->set_to_session_id(to_session_id);
  t->set_to_owner(std::string(to_owner));
  Outcome o = impl_->Call(std::move(req), impl_->DefaultDeadline());
  if (!o.status.ok()) return o.status;
  return o.response.transfer().fencing_token();
}

Result<std::vector<uint64_t>> Client::AcquireMany(
    const std::vector<std::pair<std::string, LockMode>>& parts, const AcquireOptions& options) {
  auto grants = AcquireManyGrants(parts, options);
  if (!grants.ok()) return grants.status();
  std::vector<uint64_t> tokens;
  for (const Grant& g : *grants) tokens.push_back(g.fencing_token);
  return tokens;
}

Result<std::vector<Grant>> Client::AcquireManyGrants(
    const std::vector<std::pair<std::string, LockMode>>& parts, const AcquireOptions& options) {
  pb::Request req;
  auto* a = req.mutable_acquire_many();
  a->set_session_id(session_id());
  a->set_owner(options.owner);
  for (const auto& [name, mode] : parts) {
    auto* p = a->add_parts();
    p->set_name(name);
    p->set_mode(WireMode(mode));
  }
  a->set_try_only(options.try_only);
  a->set_wait_timeout_ms(static_cast<uint64_t>(options.wait_timeout.count()));
  a->set_lock_ttl_ms(static_cast<uint64_t>(options.lock_ttl.count()));
  Outcome o = impl_->Call(std::move(req), WaitDeadline(options.try_only, options.wait_timeout));
  if (!o.status.ok()) return o.status;
  const pb::AcquireManyReply& r = o.response.acquire_many();
  std::vector<Grant> out;
  for (size_t i = 0; i < parts.size(); ++i) {
    Grant g;
    g.name = parts[i].first;
    g.owner = options.owner;
    g.mode = parts[i].second;
    const int k = static_cast<int>(i);
    if (k < r.fencing_tokens_size()) g.fencing_token = r.fencing_tokens(k);
    if (k < r.values_size()) g.value = r.values(k);
    if (k < r.value_tokens_size()) g.value_token = r.value_tokens(k);
    out.push_back(std::move(g));
  }
  return out;
}

Status Client::SetLockValue(std::string_view name, std::string_view value, std::string_view owner) {
  pb::Request req;
  auto* v = req.mutable_set_lock_value();
  v->set_session_id(session_id());
  v->set_owner(std::string(owner));
  v->set_name(std::string(name));
  v->set_value(std::string(value));
  return impl_->Call(std::move(req), impl_->DefaultDeadline()).status;
}

Status Client::DeclareLockRank(std::string_view prefix, uint32_t rank) {
  pb::Request req;
  req.mutable_declare_lock_rank()->set_prefix(std::string(prefix));
  req.mutable_declare_lock_rank()->set_rank(rank);
  return impl_->Call(std::move(req), impl_->DefaultDeadline()).status;
}

}  // namespace latchkey
