// Lock-engine requests beyond acquire/release (loop thread): downgrade,
// ownership transfer, and introspection (locks by prefix, wait-for graph).
#include "core/names.h"
#include "server/server.h"

namespace latchkey::server {

namespace lv = log::v1;

namespace {

v1::LockMode WireMode(core::Mode m) {
  return static_cast<v1::LockMode>(core::ModeToLog(m));
}

constexpr uint32_t kDefaultListLimit = 1000;
constexpr uint32_t kMaxListLimit = 100'000;

}  // namespace

bool Server::AcquireWouldWait(const lv::AcquireCmd& a) const {
  if (a.try_only()) return false;  // answered at once either way
  const core::Resource* res = sm_.locks().Find(a.name());
  if (res == nullptr || res->holders.empty()) return false;
  const core::Mode mode = core::ModeFromLog(a.mode());
  bool conflict = !res->waiters().empty();  // FIFO: it would queue behind them
  for (const auto& [who, grant] : res->holders) {
    // A reentrant acquire or a conversion by a holder, or a holder that
    // must be called back to give the lock up: propose now.
    if (who.session == a.session_id() || grant.cacheable) return false;
    conflict = conflict || !core::Compatible(grant.mode, mode);
  }
  return conflict;
}

void Server::RecheckLazyAcquires() {
  if (!proposer_->only_lazy_queued()) return;
  for (const lv::Command& c : proposer_->queued().commands()) {
    if (!c.has_acquire() || !AcquireWouldWait(c.acquire())) {
      proposer_->ScheduleFlush();
      return;
    }
  }
}

void Server::FillLock(const std::string& name, v1::GetLockReply* out) const {
  out->set_name(name);
  out->set_server_time_ms(std::max(clock_->WallMs(), sm_.time_ms()));
  const core::Resource* res = sm_.locks().Find(name);
  if (res == nullptr) return;
  out->set_value(res->value());
  out->set_value_token(res->value_token());
  auto client_name = [this](uint64_t sid) {
    const core::Session* s = sm_.FindSession(sid);
    return s ? s->client_name : std::string();
  };
  for (const auto& [who, g] : res->holders) {
    auto* h = out->add_holders();
    h->set_session_id(who.session);
    h->set_owner(who.owner);
    h->set_client_name(client_name(who.session));
    h->set_fencing_token(g.fencing_token);
    h->set_granted_at_ms(g.granted_at_ms);
    h->set_lock_ttl_ms(g.lock_ttl_ms);
    h->set_mode(WireMode(g.mode));
    h->set_count(g.count);
    h->set_cacheable(g.cacheable);
    if (g.callback_sent) {
      h->set_called_back(true);
      h->set_callback_to(WireMode(*g.callback_sent));
    }
  }
  if (out->holders_size() > 0) {
    out->set_held(true);
    *out->mutable_holder() = out->holders(0);
  }
  for (const core::WaitEntry& w : res->waiters()) {
    auto* pw = out->add_waiters();
    pw->set_session_id(w.who.session);
    pw->set_owner(w.who.owner);
    pw->set_client_name(client_name(w.who.session));
    pw->set_queued_at_ms(w.queued_at_ms);
    pw->set_mode(WireMode(w.mode));
    pw->set_conversion(w.conversion);
  }
}

void Server::OnDowngrade(ConnState& cs, const Request& req) {
  const auto& d = req.downgrade();
  const uint64_t conn_id = cs.conn->id();
  const uint64_t rid = req.id();
  if (Status s = core::ValidateLockName(d.name()); !s.ok()) return ReplyError(conn_id, rid, s);
  if (!v1::LockMode_IsValid(d.mode()) || d.mode() == v1::MODE_DEFAULT) {
    return ReplyError(conn_id, rid, InvalidArgument("downgrade needs an explicit mode"));
  }
  if (!TouchSession(conn_id, rid, d.session_id())) return;
  lv::Command cmd;
  auto* c = cmd.mutable_downgrade();
  c->set_session_id(d.session_id());
  c->set_owner(d.owner());
  c->set_name(d.name());
  c->set_mode(static_cast<uint32_t>(d.mode()));
  c->set_set_value(d.set_value());
  c->set_value(d.value());
  ProposeAndReply(std::move(cmd), conn_id, rid,
                  [](const core::CommandResult&, v1::Response* r) { r->mutable_downgrade(); });
}

void Server::OnTransfer(ConnState& cs, const Request& req) {
  const auto& t = req.transfer();
  const uint64_t conn_id = cs.conn->id();
  const uint64_t rid = req.id();
  if (Status s = core::ValidateLockName(t.name()); !s.ok()) return ReplyError(conn_id, rid, s);
  if (Status s = core::ValidateOwner(t.to_owner()); !s.ok()) return ReplyError(conn_id, rid, s);
  if (!TouchSession(conn_id, rid, t.session_id())) return;
  lv::Command cmd;
  auto* c = cmd.mutable_transfer();
  c->set_session_id(t.session_id());
  c->set_owner(t.owner());
  c->set_name(t.name());
  c->set_to_session_id(t.to_session_id());
  c->set_to_owner(t.to_owner());
  ProposeAndReply(std::move(cmd), conn_id, rid,
                  [](const core::CommandResult& res, v1::Response* r) {
                    r->mutable_transfer()->set_fencing_token(res.grant.fencing_token);
                  });
}

void Server::OnListLocks(ConnState& cs, const Request& req) {
  const std::string& prefix = req.list_locks().prefix();
  if (!prefix.empty()) {
    if (Status s = core::ValidateLockName(prefix); !s.ok()) {
      return ReplyError(cs.conn->id(), req.id(), s);
    }
  }
  uint32_t limit = req.list_locks().limit() == 0 ? kDefaultListLimit : req.list_locks().limit();
  limit = std::min(limit, kMaxListLimit);
  v1::Response resp;
  resp.set_id(req.id());
  auto* out = resp.mutable_list_locks();
  out->set_server_time_ms(std::max(clock_->WallMs(), sm_.time_ms()));
  const auto& all = sm_.locks().resources();
  for (auto it = all.lower_bound(prefix); it != all.end(); ++it) {
    const std::string& name = it->first;
    const bool inside = prefix.empty() || name == prefix ||
                        (name.size() > prefix.size() &&
                         name.compare(0, prefix.size(), prefix) == 0 && name[prefix.size()] == '.');
    if (!inside) {
      if (name.compare(0, prefix.size(), prefix) != 0) break;  // past the prefix range
      continue;                                                // e.g. "ab" while listing "a"
    }
    if (it->second.holders.empty() && it->second.waiters().empty()) continue;  // ancestors only
    if (static_cast<uint32_t>(out->locks_size()) == limit) {
      out->set_truncated(true);
      break;
    }
    FillLock(name, out->add_locks());
  }
  Reply(cs.conn->id(), resp);
}

void Server::OnGetWaitGraph(ConnState& cs, const Request& req) {
  v1::Response resp;
  resp.set_id(req.id());
  auto* out = resp.mutable_get_wait_graph();
  for (const core::WaitEdge& e : sm_.locks().WaitForGraph()) {
    auto* pe = out->add_edges();
    pe->set_waiter_session_id(e.waiter.session);
    pe->set_waiter_owner(e.waiter.owner);
    pe->set_name(e.name);
    pe->set_mode(WireMode(e.mode));
    pe->set_blocker_session_id(e.blocker.session);
    pe->set_blocker_owner(e.blocker.owner);
  }
  Reply(cs.conn->id(), resp);
}

}  // namespace latchkey::server

namespace latchkey::server {

// ---- Pending waits (shared by locks, semaphores, latches, barriers) --------

uint64_t Server::WaitDeadline(bool try_only, uint64_t wait_timeout_ms) const {
  if (try_only || wait_timeout_ms == 0) return 0;
  return clock_->MonoMs() + std::min<uint64_t>(wait_timeout_ms, 1ull << 40);
}

Server::PendingAcquire& Server::AddPending(const WaitKey& key, uint64_t conn_id,
                                           uint64_t request_id, uint64_t deadline_mono_ms) {
  // A re-sent request (after a reconnect) replaces the earlier reply target
  // but keeps its place in line.
  auto [it, inserted] = pending_.try_emplace(key);
  PendingAcquire& p = it->second;
  if (!inserted && p.conn_id != 0 && (p.conn_id != conn_id || p.request_id != request_id)) {
    ReplyError(p.conn_id, p.request_id,
               Status(Code::kCancelled, "superseded by a newer request of the same owner"));
  }
  p.conn_id = conn_id;
  p.request_id = request_id;
  if (!p.cancelling) p.deadline_mono_ms = deadline_mono_ms;
  return p;
}

void Server::CancelPending(const WaitKey& key, Code code) {
  auto pit = pending_.find(key);
  if (pit == pending_.end() || pit->second.cancelling) return;
  pit->second.cancelling = true;
  pit->second.cancel_code = code;
  lv::Command cmd;
  auto* c = cmd.mutable_cancel_wait();
  c->set_session_id(std::get<0>(key));
  c->set_owner(std::get<1>(key));
  c->set_name(std::get<2>(key));
  c->set_kind(static_cast<uint32_t>(std::get<3>(key)));
  proposer_->Add(std::move(cmd), [this, key](const Status&, const core::CommandResult* res) {
    auto it = pending_.find(key);
    if (it == pending_.end()) return;  // granted first: already answered
    if (res != nullptr && res->status.ok()) {
      const Code code = it->second.cancel_code;
      ReplyError(
          it->second.conn_id, it->second.request_id,
          Status(code, code == Code::kTimeout
                           ? "'" + std::get<2>(key) + "' was not granted within the wait timeout"
                           : "request cancelled by the client"));
      pending_.erase(it);
    } else {
      it->second.cancelling = false;  // retry at the next tick or cancel
    }
  });
}

void Server::FillWaitReply(const core::Event& e, const PendingAcquire& p,
                           v1::Response* resp) const {
  switch (e.object) {
    case core::Event::Object::kLock: {
      if (!p.parts.empty()) {  // AcquireMany: every part was granted at once
        FillAcquireManyReply(e.session_id, e.grant.owner, p.parts, resp->mutable_acquire_many());
        return;
      }
      auto* a = resp->mutable_acquire();
      a->set_fencing_token(e.grant.fencing_token);
      a->set_granted_at_ms(e.grant.granted_at_ms);
      a->set_mode(WireMode(e.grant.mode));
      a->set_count(e.grant.count);
      a->set_value(e.grant.value);
      a->set_value_token(e.grant.value_token);
      return;
    }
    case core::Event::Object::kSemaphore:
      resp->mutable_semaphore_acquire()->set_fencing_token(e.grant.fencing_token);
      resp->mutable_semaphore_acquire()->set_permits(e.permits);
      return;
    case core::Event::Object::kLatch: resp->mutable_latch_await(); return;
    case core::Event::Object::kBarrier:
      resp->mutable_barrier_await()->set_generation(e.generation);
      return;
  }
}

}  // namespace latchkey::server
