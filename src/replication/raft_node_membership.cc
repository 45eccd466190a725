// RaftNode barriers, membership changes and leadership transfer. Part of the
// adapter (raft_node_impl.h).

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/log.h"
#include "replication/raft_node_impl.h"

namespace latchkey::replication {

using raft_detail::RaftError;

Status RaftNode::Impl::ChangeError(int rv, const std::string& what) const {
  std::string msg = what + ": " + RaftError(rv);
  switch (rv) {
    case RAFT_NOTLEADER: return Status(Code::kNotLeader, msg);
    case RAFT_CANTCHANGE:
      return Status(Code::kFailedPrecondition,
                    msg + " (another membership change is in progress; retry when it is done)");
    case RAFT_DUPLICATEID:
    case RAFT_DUPLICATEADDRESS: return Status(Code::kAlreadyExists, msg);
    case RAFT_BADID:
    case RAFT_NOTFOUND: return Status(Code::kNotFound, msg);
    case RAFT_BADROLE: return InvalidArgument(msg);
    case RAFT_LEADERSHIPLOST: return Status(Code::kMaybeApplied, msg);
    case RAFT_SHUTDOWN: return Unavailable(msg);
    default: return Unavailable(msg);
  }
}

bool RaftNode::Impl::CheckRunning(const DoneCallback& cb) {
  LATCHKEY_CHECK(OnLoopThread());
  if (!raft_running || closing) {
    cb(Unavailable("raft node is not running"));
    return false;
  }
  return true;
}

void RaftNode::Impl::Barrier(DoneCallback cb) {
  if (!CheckRunning(cb)) return;
  auto req = std::make_unique<BarrierRequest>();
  req->cb = std::move(cb);
  req->req.data = req.get();
  int rv = raft_barrier(&raft, &req->req, [](struct raft_barrier* raw, int status) {
    std::unique_ptr<BarrierRequest> r(static_cast<BarrierRequest*>(raw->data));
    DoneCallback done = std::move(r->cb);
    r.reset();
    if (status == 0) {
      done(Status::Ok());
    } else if (status == RAFT_LEADERSHIPLOST || status == RAFT_NOTLEADER) {
      done(Status(Code::kNotLeader,
                  "leadership lost before the read barrier applied: " + RaftError(status)));
    } else {
      done(Unavailable("read barrier failed: " + RaftError(status)));
    }
  });
  if (rv != 0) {
    DoneCallback done = std::move(req->cb);
    done(rv == RAFT_NOTLEADER ? Status(Code::kNotLeader, "raft_barrier: " + RaftError(rv))
                              : Unavailable("raft_barrier: " + RaftError(rv)));
    return;
  }
  req.release();
}

void RaftNode::Impl::OnChanged(struct raft_change* raw, int status) {
  std::unique_ptr<ChangeRequest> r(static_cast<ChangeRequest*>(raw->data));
  DoneCallback done = std::move(r->cb);
  if (status == 0) {
    LK_LOG_INFO("raft membership change done: %s", r->what.c_str());
    done(Status::Ok());
    return;
  }
  std::string msg = r->what + ": " + RaftError(status);
  r.reset();
  done(status == RAFT_LEADERSHIPLOST
           ? Status(Code::kMaybeApplied, msg + " (leadership lost; check `member list`)")
           : Unavailable(msg));
}

template <typename Fn>
void RaftNode::Impl::Change(std::string what, DoneCallback cb, Fn call) {
  if (!CheckRunning(cb)) return;
  auto req = std::make_unique<ChangeRequest>();
  req->cb = std::move(cb);
  req->what = std::move(what);
  req->req.data = req.get();
  int rv = call(&req->req);
  if (rv != 0) {
    DoneCallback done = std::move(req->cb);
    Status st = ChangeError(rv, req->what);
    req.reset();
    done(std::move(st));
    return;
  }
  req.release();
}

void RaftNode::Impl::TransferLeadership(uint64_t id, DoneCallback cb) {
  if (!CheckRunning(cb)) return;
  auto req = std::make_unique<TransferRequest>();
  req->cb = std::move(cb);
  req->impl = this;
  req->target = id;
  req->req.data = req.get();
  int rv = raft_transfer(&raft, &req->req, id, [](struct raft_transfer* raw) {
    std::unique_ptr<TransferRequest> r(static_cast<TransferRequest*>(raw->data));
    DoneCallback done = std::move(r->cb);
    Impl* self = r->impl;
    // Its TimeoutNow may still be in the io: it must not reach libraft
    // through this request once it is freed (raft_transfer_send.h).
    self->transfer_sends.Detach(raw);
    raft_id leader = 0;
    const char* address = nullptr;
    if (self->raft_running) raft_leader(&self->raft, &leader, &address);
    const bool ok =
        leader != 0 && leader != self->options.node_id && (r->target == 0 || leader == r->target);
    r.reset();
    done(ok ? Status::Ok()
            : Status(Code::kTimeout,
                     "leadership transfer did not complete within an "
                     "election timeout; the leader is now node " +
                         std::to_string(leader)));
  });
  if (rv != 0) {
    DoneCallback done = std::move(req->cb);
    req.reset();
    done(ChangeError(rv, "transfer leadership to node " + std::to_string(id)));
    return;
  }
  req.release();
}

// -------------------------------------------------------------------------
// RaftNode

void RaftNode::Barrier(DoneCallback cb) {
  impl_->Barrier(std::move(cb));
}

void RaftNode::ReadBarrier(DoneCallback cb) {
  impl_->ReadBarrier(std::move(cb));
}

bool RaftNode::Impl::SoleVoterLeader() const {
  if (raft.state != RAFT_LEADER || VoterCount() != 1) return false;
  for (unsigned i = 0; i < raft.configuration.n; ++i) {
    const struct raft_server& s = raft.configuration.servers[i];
    if (s.role == RAFT_VOTER) return s.id == raft.id;
  }
  return false;
}

void RaftNode::Impl::ReadBarrier(DoneCallback cb) {
  if (!CheckRunning(cb)) return;
  if (SoleVoterLeader() && raft_last_applied(&raft) == raft.commit_index) {
    cb(Status::Ok());
    return;
  }
  read_barrier_waiters.push_back(std::move(cb));
  if (read_barrier_in_flight) return;
  read_barrier_in_flight = true;
  Barrier([this](Status st) {
    read_barrier_in_flight = false;
    std::vector<DoneCallback> waiters = std::move(read_barrier_waiters);
    read_barrier_waiters.clear();
    for (DoneCallback& w : waiters) w(st);
  });
}

void RaftNode::AddMember(uint64_t id, const std::string& address, DoneCallback cb) {
  Impl& d = *impl_;
  if (id == 0 || address.empty()) {
    cb(InvalidArgument("member id must be > 0 and its raft address non-empty"));
    return;
  }
  d.Change("add node " + std::to_string(id) + " at " + address, std::move(cb),
           [&d, id, &address](struct raft_change* req) {
             return raft_add(&d.raft, req, id, address.c_str(), &Impl::OnChanged);
           });
}

void RaftNode::Assign(uint64_t id, RaftMember::Role role, DoneCallback cb) {
  Impl& d = *impl_;
  const int raft_role = role == RaftMember::Role::kVoter     ? RAFT_VOTER
                        : role == RaftMember::Role::kStandby ? RAFT_STANDBY
                                                             : RAFT_SPARE;
  d.Change("assign node " + std::to_string(id) + " the role " + std::string(MemberRoleName(role)),
           std::move(cb), [&d, id, raft_role](struct raft_change* req) {
             return raft_assign(&d.raft, req, id, raft_role, &Impl::OnChanged);
           });
}

void RaftNode::RemoveMember(uint64_t id, DoneCallback cb) {
  Impl& d = *impl_;
  d.Change("remove node " + std::to_string(id), std::move(cb), [&d, id](struct raft_change* req) {
    return raft_remove(&d.raft, req, id, &Impl::OnChanged);
  });
}

void RaftNode::TransferLeadership(uint64_t id, DoneCallback cb) {
  impl_->TransferLeadership(id, std::move(cb));
}

std::vector<RaftMember> RaftNode::Members() const {
  Impl& d = *impl_;
  LATCHKEY_CHECK(d.OnLoopThread());
  std::vector<RaftMember> out;
  if (!d.raft_running) return out;
  for (unsigned i = 0; i < d.raft.configuration.n; ++i) {
    const struct raft_server& s = d.raft.configuration.servers[i];
    RaftMember m;
    m.id = s.id;
    m.address = s.address != nullptr ? s.address : "";
    m.role = s.role == RAFT_VOTER     ? RaftMember::Role::kVoter
             : s.role == RAFT_STANDBY ? RaftMember::Role::kStandby
                                      : RaftMember::Role::kSpare;
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace latchkey::replication
