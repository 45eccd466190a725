// Request handlers of the Server (loop thread). See server.h for the path of
// a request and the command table in server.cc for their properties.
#include <algorithm>

#include "common/log.h"
#include "core/names.h"
#include "server/server.h"

namespace latchkey::server {

namespace lv = log::v1;

namespace {

void FillGrant(v1::AcquireReply* out, const core::GrantInfo& g) {
  out->set_fencing_token(g.fencing_token);
  out->set_granted_at_ms(g.granted_at_ms);
  out->set_mode(static_cast<v1::LockMode>(core::ModeToLog(g.mode)));
  out->set_count(g.count);
  out->set_value(g.value);
  out->set_value_token(g.value_token);
}

}  // namespace

bool Server::TouchSession(uint64_t conn_id, uint64_t request_id, uint64_t session_id) {
  auto it = sessions_.find(session_id);
  if (it == sessions_.end() || expiring_.count(session_id)) {
    ReplyError(conn_id, request_id,
               Status(Code::kSessionExpired, "session " + std::to_string(session_id) +
                                                 " does not exist or has expired; open a new one"));
    return false;
  }
  leases_.Renew(session_id, it->second.ttl_ms, clock_->MonoMs());
  return true;
}

void Server::OnOpenSession(ConnState& cs, const Request& req) {
  const auto& r = req.open_session();
  uint64_t ttl = r.ttl_ms() == 0 ? options_.default_session_ttl_ms : r.ttl_ms();
  if (ttl < options_.min_session_ttl_ms || ttl > options_.max_session_ttl_ms) {
    ReplyError(cs.conn->id(), req.id(),
               InvalidArgument("session ttl " + std::to_string(ttl) + "ms is outside [" +
                               std::to_string(options_.min_session_ttl_ms) + ", " +
                               std::to_string(options_.max_session_ttl_ms) + "] ms"));
    return;
  }
  if (Status s = core::ValidateClientName(r.client_name()); !s.ok()) {
    ReplyError(cs.conn->id(), req.id(), s);
    return;
  }
  if (Status s = CheckSessionLimits(cs); !s.ok()) {
    ReplyError(cs.conn->id(), req.id(), s);
    return;
  }
  lv::Command cmd;
  cmd.mutable_open_session()->set_ttl_ms(ttl);
  cmd.mutable_open_session()->set_client_name(r.client_name());
  const uint64_t conn_id = cs.conn->id();
  const uint64_t rid = req.id();
  ++cs.opening;
  ++opening_sessions_;
  proposer_->Add(std::move(cmd),
                 [this, conn_id, rid, ttl](const Status& st, const core::CommandResult* res) {
                   --opening_sessions_;
                   auto c = conns_.find(conn_id);
                   if (c != conns_.end()) {
                     --c->second.opening;
                     if (st.ok() && res->status.ok()) c->second.sessions.insert(res->session_id);
                   }
                   if (!st.ok() || !res->status.ok()) {
                     ReplyError(conn_id, rid, st.ok() ? res->status : st);
                     return;
                   }
                   // sessions_/leases_ were filled when the entry applied; bind the conn.
                   auto it = sessions_.find(res->session_id);
                   if (it != sessions_.end() && conns_.count(conn_id)) it->second.conn_id = conn_id;
                   v1::Response resp;
                   resp.set_id(rid);
                   resp.mutable_open_session()->set_session_id(res->session_id);
                   resp.mutable_open_session()->set_ttl_ms(static_cast<uint32_t>(ttl));
                   Reply(conn_id, resp);
                 });
}

void Server::OnAttachSession(ConnState& cs, const Request& req) {
  const uint64_t sid = req.attach_session().session_id();
  if (!cs.sessions.count(sid)) {
    if (Status st = CheckSessionLimits(cs); !st.ok())
      return ReplyError(cs.conn->id(), req.id(), st);
  }
  if (!TouchSession(cs.conn->id(), req.id(), sid)) return;
  SessionState& s = sessions_.at(sid);
  s.conn_id = cs.conn->id();
  cs.sessions.insert(sid);
  v1::Response resp;
  resp.set_id(req.id());
  auto* out = resp.mutable_attach_session();
  out->set_ttl_ms(static_cast<uint32_t>(s.ttl_ms));
  for (const core::GrantInfo& g : sm_.HeldBy(sid)) FillHeldLock(g, out->add_held());
  // Pending acquires of this session now answer on this connection.
  for (auto& [key, p] : pending_) {
    if (std::get<0>(key) == sid && p.conn_id == 0) p.conn_id = cs.conn->id();
  }
  Reply(cs.conn->id(), resp);
  RepushCallbacks(sid);
}

void Server::OnKeepAlive(ConnState& cs, const Request& req) {
  const uint64_t sid = req.keep_alive().session_id();
  if (!TouchSession(cs.conn->id(), req.id(), sid)) return;
  v1::Response resp;
  resp.set_id(req.id());
  resp.mutable_keep_alive()->set_ttl_ms(static_cast<uint32_t>(sessions_.at(sid).ttl_ms));
  Reply(cs.conn->id(), resp);
}

void Server::OnCloseSession(ConnState& cs, const Request& req) {
  const uint64_t sid = req.close_session().session_id();
  if (!TouchSession(cs.conn->id(), req.id(), sid)) return;
  lv::Command cmd;
  cmd.mutable_close_session()->set_session_id(sid);
  ProposeAndReply(std::move(cmd), cs.conn->id(), req.id(),
                  [](const core::CommandResult&, v1::Response* r) { r->mutable_close_session(); });
}

void Server::OnAcquire(ConnState& cs, const Request& req) {
  const auto& a = req.acquire();
  const uint64_t conn_id = cs.conn->id();
  const uint64_t rid = req.id();
  if (Status s = core::ValidateLockName(a.name()); !s.ok()) return ReplyError(conn_id, rid, s);
  if (Status s = core::ValidateOwner(a.owner()); !s.ok()) return ReplyError(conn_id, rid, s);
  if (a.lock_ttl_ms() > options_.max_lock_ttl_ms) {
    return ReplyError(
        conn_id, rid,
        InvalidArgument("lock ttl " + std::to_string(a.lock_ttl_ms()) + "ms exceeds the limit of " +
                        std::to_string(options_.max_lock_ttl_ms) + "ms"));
  }
  if (!v1::LockMode_IsValid(a.mode())) {
    return ReplyError(conn_id, rid,
                      InvalidArgument("unknown lock mode " + std::to_string(a.mode()) +
                                      "; use NL, CR, CW, PR, PW or EX"));
  }
  if (Status s = CheckValueSize(a.value().size()); !s.ok()) return ReplyError(conn_id, rid, s);
  if (!TouchSession(conn_id, rid, a.session_id())) return;
  WaitKey key{a.session_id(), a.owner(), a.name(), static_cast<int>(core::Event::Object::kLock)};
  const uint64_t deadline = WaitDeadline(a.try_only(), a.wait_timeout_ms());
  lv::Command cmd;
  auto* c = cmd.mutable_acquire();
  c->set_session_id(a.session_id());
  c->set_owner(a.owner());
  c->set_name(a.name());
  c->set_try_only(a.try_only());
  c->set_lock_ttl_ms(a.lock_ttl_ms());
  c->set_mode(static_cast<uint32_t>(a.mode()));  // wire and log share Mode + 1
  c->set_reentrant(a.reentrant());
  c->set_request_id(rid);
  c->set_set_value(a.set_value());
  c->set_value(a.value());
  c->set_cacheable(a.cacheable());
  const bool lazy = AcquireWouldWait(*c);
  ProposeWait(
      std::move(cmd), key, conn_id, rid, deadline,
      [](const core::CommandResult& res, v1::Response* r) {
        FillGrant(r->mutable_acquire(), res.grant);
      },
      {}, lazy);
}

void Server::OnRelease(ConnState& cs, const Request& req) {
  const auto& r = req.release();
  const uint64_t conn_id = cs.conn->id();
  const uint64_t rid = req.id();
  if (Status s = core::ValidateLockName(r.name()); !s.ok()) return ReplyError(conn_id, rid, s);
  if (!TouchSession(conn_id, rid, r.session_id())) return;
  lv::Command cmd;
  auto* c = cmd.mutable_release();
  c->set_session_id(r.session_id());
  c->set_owner(r.owner());
  c->set_name(r.name());
  c->set_all(r.all());
  c->set_set_value(r.set_value());
  c->set_value(r.value());
  ProposeAndReply(std::move(cmd), conn_id, rid,
                  [](const core::CommandResult&, v1::Response* resp) { resp->mutable_release(); });
}

void Server::OnCancel(ConnState& cs, const Request& req) {
  const uint64_t conn_id = cs.conn->id();
  const uint64_t target = req.cancel().request_id();
  for (const auto& [key, p] : pending_) {
    if (p.conn_id != conn_id || p.request_id != target) continue;
    if (!p.cancelling) CancelPending(key, Code::kCancelled);
    break;
  }
  v1::Response resp;
  resp.set_id(req.id());
  resp.mutable_cancel();
  Reply(conn_id, resp);
}

void Server::OnGetLock(ConnState& cs, const Request& req) {
  const std::string& name = req.get_lock().name();
  if (Status s = core::ValidateLockName(name); !s.ok()) {
    return ReplyError(cs.conn->id(), req.id(), s);
  }
  v1::Response resp;
  resp.set_id(req.id());
  FillLock(name, resp.mutable_get_lock());
  Reply(cs.conn->id(), resp);
}

void Server::OnGetStatus(ConnState& cs, const Request& req) {
  v1::Response resp;
  resp.set_id(req.id());
  auto* out = resp.mutable_get_status();
  replication::RaftInfo info = raft_->Info();
  out->set_server_version(LATCHKEY_VERSION);
  out->set_node_id(options_.node_id);
  out->set_listen_address(listen_address());
  out->set_raft_state(std::string(replication::RoleName(info.role)));
  out->set_raft_term(info.term);
  out->set_commit_index(info.commit_index);
  out->set_applied_index(info.last_applied);
  out->set_sessions(sm_.sessions().size());
  out->set_locks_held(sm_.locks_held());
  out->set_waiters(sm_.waiter_count());
  out->set_revision(sm_.revision());
  out->set_uptime_ms(clock_->MonoMs() - started_mono_ms_);
  out->set_data_dir(options_.data_dir);
  out->set_connections(conns_.size());
  out->set_voters(info.voters);
  out->set_state_digest(sm_.Digest());
  out->set_core_applied_index(sm_.applied_index());
  out->set_leader_id(info.leader_id);
  out->set_leader_endpoint(LeaderEndpoint());
  out->set_metrics_address(metrics_address());
  out->set_log_appends(info.log_appends.latency.count());
  out->set_log_append_micros(static_cast<uint64_t>(info.log_appends.latency.sum_seconds() * 1e6));
  Reply(cs.conn->id(), resp);
}

}  // namespace latchkey::server
