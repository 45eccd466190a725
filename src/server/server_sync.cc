// Multi-lock, lock values, lock ordering, semaphores, latches and barriers
// (loop thread). Waiting requests share the pending-wait machinery of locks
// (server_locks.cc): queued -> PendingAcquire -> answered by a Granted event.
#include "core/names.h"
#include "server/server.h"

namespace latchkey::server {

namespace lv = log::v1;
using Object = core::Event::Object;

void Server::ProposeAndReply(lv::Command cmd, uint64_t conn_id, uint64_t rid, FillFn fill) {
  proposer_->Add(std::move(cmd), [this, conn_id, rid, fill = std::move(fill)](
                                     const Status& st, const core::CommandResult* res) {
    if (!st.ok() || !res->status.ok()) return ReplyError(conn_id, rid, st.ok() ? res->status : st);
    v1::Response resp;
    resp.set_id(rid);
    fill(*res, &resp);
    Reply(conn_id, resp);
  });
}

void Server::ProposeWait(lv::Command cmd, WaitKey key, uint64_t conn_id, uint64_t rid,
                         uint64_t deadline, FillFn fill, std::vector<std::string> parts,
                         bool lazy) {
  if (Status s = CheckWaitLimit(cmd, key); !s.ok()) return ReplyError(conn_id, rid, s);
  proposer_->Add(
      std::move(cmd),
      [this, key = std::move(key), conn_id, rid, deadline, fill = std::move(fill),
       parts = std::move(parts)](const Status& st, const core::CommandResult* res) {
        if (!st.ok() || !res->status.ok())
          return ReplyError(conn_id, rid, st.ok() ? res->status : st);
        if (res->queued) {
          AddPending(key, conn_id, rid, deadline).parts = parts;
          return;
        }
        v1::Response resp;
        resp.set_id(rid);
        fill(*res, &resp);
        Reply(conn_id, resp);
      },
      lazy);
}

void Server::OnAcquireMany(ConnState& cs, const Request& req) {
  const auto& a = req.acquire_many();
  const uint64_t conn_id = cs.conn->id();
  const uint64_t rid = req.id();
  if (a.parts_size() == 0 || a.parts_size() > core::kMaxAcquireManyParts) {
    return ReplyError(conn_id, rid, InvalidArgument("AcquireMany takes 1 to 64 locks"));
  }
  lv::Command cmd;
  auto* c = cmd.mutable_acquire_many();
  std::vector<std::string> names;
  for (const auto& p : a.parts()) {
    if (Status s = core::ValidateLockName(p.name()); !s.ok()) return ReplyError(conn_id, rid, s);
    if (!v1::LockMode_IsValid(p.mode())) {
      return ReplyError(conn_id, rid, InvalidArgument("unknown lock mode"));
    }
    auto* part = c->add_parts();
    part->set_name(p.name());
    part->set_mode(static_cast<uint32_t>(p.mode()));
    names.push_back(p.name());
  }
  if (Status s = core::ValidateOwner(a.owner()); !s.ok()) return ReplyError(conn_id, rid, s);
  if (!TouchSession(conn_id, rid, a.session_id())) return;
  c->set_session_id(a.session_id());
  c->set_owner(a.owner());
  c->set_try_only(a.try_only());
  c->set_lock_ttl_ms(a.lock_ttl_ms());
  WaitKey key{a.session_id(), a.owner(), names.front(), static_cast<int>(Object::kLock)};
  const uint64_t sid = a.session_id();
  const std::string owner = a.owner();
  ProposeWait(
      std::move(cmd), key, conn_id, rid, WaitDeadline(a.try_only(), a.wait_timeout_ms()),
      [this, sid, owner, names](const core::CommandResult&, v1::Response* resp) {
        FillAcquireManyReply(sid, owner, names, resp->mutable_acquire_many());
      },
      names);
}

void Server::OnSetLockValue(ConnState& cs, const Request& req) {
  const auto& v = req.set_lock_value();
  const uint64_t conn_id = cs.conn->id();
  if (Status s = core::ValidateLockName(v.name()); !s.ok()) {
    return ReplyError(conn_id, req.id(), s);
  }
  if (Status s = CheckValueSize(v.value().size()); !s.ok()) return ReplyError(conn_id, req.id(), s);
  if (!TouchSession(conn_id, req.id(), v.session_id())) return;
  lv::Command cmd;
  auto* c = cmd.mutable_set_value();
  c->set_session_id(v.session_id());
  c->set_owner(v.owner());
  c->set_name(v.name());
  c->set_value(v.value());
  ProposeAndReply(std::move(cmd), conn_id, req.id(),
                  [](const core::CommandResult&, v1::Response* r) { r->mutable_set_lock_value(); });
}

void Server::OnDeclareLockRank(ConnState& cs, const Request& req) {
  const auto& d = req.declare_lock_rank();
  if (Status s = core::ValidateLockName(d.prefix()); !s.ok()) {
    return ReplyError(cs.conn->id(), req.id(), s);
  }
  lv::Command cmd;
  cmd.mutable_declare_rank()->set_prefix(d.prefix());
  cmd.mutable_declare_rank()->set_rank(d.rank());
  ProposeAndReply(
      std::move(cmd), cs.conn->id(), req.id(),
      [](const core::CommandResult&, v1::Response* r) { r->mutable_declare_lock_rank(); });
}

void Server::OnSemaphoreAcquire(ConnState& cs, const Request& req) {
  const auto& a = req.semaphore_acquire();
  const uint64_t conn_id = cs.conn->id();
  const uint64_t rid = req.id();
  if (Status s = core::ValidateLockName(a.name()); !s.ok()) return ReplyError(conn_id, rid, s);
  if (Status s = core::ValidateOwner(a.owner()); !s.ok()) return ReplyError(conn_id, rid, s);
  if (!TouchSession(conn_id, rid, a.session_id())) return;
  lv::Command cmd;
  auto* c = cmd.mutable_semaphore_acquire();
  c->set_session_id(a.session_id());
  c->set_owner(a.owner());
  c->set_name(a.name());
  c->set_permits(a.permits());
  c->set_limit(a.limit());
  c->set_try_only(a.try_only());
  ProposeWait(std::move(cmd),
              WaitKey{a.session_id(), a.owner(), a.name(), static_cast<int>(Object::kSemaphore)},
              conn_id, rid, WaitDeadline(a.try_only(), a.wait_timeout_ms()),
              [](const core::CommandResult& res, v1::Response* r) {
                r->mutable_semaphore_acquire()->set_fencing_token(res.grant.fencing_token);
                r->mutable_semaphore_acquire()->set_permits(res.permits);
              });
}

void Server::OnSemaphoreRelease(ConnState& cs, const Request& req) {
  const auto& a = req.semaphore_release();
  if (!TouchSession(cs.conn->id(), req.id(), a.session_id())) return;
  lv::Command cmd;
  auto* c = cmd.mutable_semaphore_release();
  c->set_session_id(a.session_id());
  c->set_owner(a.owner());
  c->set_name(a.name());
  ProposeAndReply(
      std::move(cmd), cs.conn->id(), req.id(),
      [](const core::CommandResult&, v1::Response* r) { r->mutable_semaphore_release(); });
}

void Server::OnLatchAwait(ConnState& cs, const Request& req) {
  const auto& a = req.latch_await();
  const uint64_t conn_id = cs.conn->id();
  const uint64_t rid = req.id();
  if (Status s = core::ValidateLockName(a.name()); !s.ok()) return ReplyError(conn_id, rid, s);
  if (!TouchSession(conn_id, rid, a.session_id())) return;
  lv::Command cmd;
  auto* c = cmd.mutable_latch_await();
  c->set_session_id(a.session_id());
  c->set_owner(a.owner());
  c->set_name(a.name());
  c->set_initial(a.initial());
  ProposeWait(std::move(cmd),
              WaitKey{a.session_id(), a.owner(), a.name(), static_cast<int>(Object::kLatch)},
              conn_id, rid, WaitDeadline(false, a.wait_timeout_ms()),
              [](const core::CommandResult&, v1::Response* r) { r->mutable_latch_await(); });
}

void Server::OnLatchCountDown(ConnState& cs, const Request& req) {
  const auto& a = req.latch_count_down();
  if (Status s = core::ValidateLockName(a.name()); !s.ok()) {
    return ReplyError(cs.conn->id(), req.id(), s);
  }
  lv::Command cmd;
  auto* c = cmd.mutable_latch_count_down();
  c->set_name(a.name());
  c->set_by(a.by());
  c->set_initial(a.initial());
  ProposeAndReply(std::move(cmd), cs.conn->id(), req.id(),
                  [](const core::CommandResult& res, v1::Response* r) {
                    r->mutable_latch_count_down()->set_remaining(res.count);
                  });
}

void Server::OnBarrierAwait(ConnState& cs, const Request& req) {
  const auto& a = req.barrier_await();
  const uint64_t conn_id = cs.conn->id();
  const uint64_t rid = req.id();
  if (Status s = core::ValidateLockName(a.name()); !s.ok()) return ReplyError(conn_id, rid, s);
  if (!TouchSession(conn_id, rid, a.session_id())) return;
  lv::Command cmd;
  auto* c = cmd.mutable_barrier_await();
  c->set_session_id(a.session_id());
  c->set_owner(a.owner());
  c->set_name(a.name());
  c->set_parties(a.parties());
  ProposeWait(std::move(cmd),
              WaitKey{a.session_id(), a.owner(), a.name(), static_cast<int>(Object::kBarrier)},
              conn_id, rid, WaitDeadline(false, a.wait_timeout_ms()),
              [](const core::CommandResult& res, v1::Response* r) {
                r->mutable_barrier_await()->set_generation(res.generation);
              });
}

}  // namespace latchkey::server
