// Cluster-mode parts of the Server (loop thread): leader routing (NOT_LEADER
// with the leader's client address), linearizable reads through a raft
// barrier, the client-address table, and membership requests.
// See docs/design/0005-cluster-redirects-and-reads.md.
#include "common/log.h"
#include "server/server.h"

namespace latchkey::server {

namespace lv = log::v1;

std::string Server::LeaderEndpoint() const {
  const replication::RaftInfo info = raft_->Info();
  if (info.leader_id == 0) return "";
  auto it = client_endpoints_.find(info.leader_id);
  return it == client_endpoints_.end() ? "" : it->second;
}

void Server::ReplyNotLeader(uint64_t conn_id, uint64_t request_id, const std::string& what) {
  const std::string hint = is_leader_ ? "" : LeaderEndpoint();
  v1::Response resp;
  resp.set_id(request_id);
  auto* err = resp.mutable_error();
  err->set_code(v1::NOT_LEADER);
  std::string msg = what + " needs the leader and node " + std::to_string(options_.node_id) +
                    (is_leader_ ? " lost leadership" : " is not it");
  msg += hint.empty() ? "; no leader known yet (election in progress?): retry another node"
                      : "; the leader is at " + hint;
  err->set_message(msg);
  err->set_leader_endpoint(hint);
  Reply(conn_id, resp);
}

void Server::StartLeaderBarrier(uint64_t epoch) {
  raft_->Barrier([this, epoch](Status st) {
    if (epoch != leader_epoch_ || !is_leader_ || stopped_) return;  // leadership changed
    if (st.ok()) return OnLeaderReady();
    if (st.code() == Code::kUnavailable) return;  // shutting down
    // Not (yet) seen as a leadership loss by the poll: retry on the next
    // loop iteration (never recursively: the failure may be synchronous).
    LK_LOG_WARN("leader barrier failed (%s); retrying", st.ToString().c_str());
    raft_->Post([this, epoch] {
      if (epoch == leader_epoch_ && is_leader_) StartLeaderBarrier(epoch);
    });
  });
}

void Server::OnLeaderReady() {
  leader_ready_ = true;
  LK_LOG_INFO("node %llu: leader barrier applied at index %llu; serving",
              static_cast<unsigned long long>(options_.node_id),
              static_cast<unsigned long long>(raft_->Info().last_applied));
  AnnounceEndpoints();
  std::vector<std::pair<uint64_t, std::shared_ptr<Request>>> deferred;
  deferred.swap(deferred_);
  for (auto& [conn_id, req] : deferred) HandleRequest(conn_id, std::move(req));
}

void Server::AnnounceEndpoints() {
  // A single node has nobody to redirect to: keep its log free of these.
  if (!is_leader_ || (options_.peers.size() <= 1 && raft_->Members().size() <= 1)) return;
  lv::LogEntry entry;
  entry.set_version(core::kLogEntryVersion);
  entry.set_time_ms(clock_->WallMs());
  for (const auto& [id, addr] : client_endpoints_) {
    auto* e = entry.add_client_endpoints();
    e->set_node_id(id);
    e->set_address(addr);
  }
  raft_->Propose(entry.SerializeAsString(), [](Status st, uint64_t, auto) {
    // Best effort: the next leader change or membership change re-announces.
    if (!st.ok()) LK_LOG_DEBUG("client-address announcement failed: %s", st.ToString().c_str());
  });
}

void Server::ApplyClusterFields(const lv::LogEntry& entry) {
  for (const lv::ClientEndpoint& e : entry.client_endpoints()) {
    if (e.node_id() != 0 && !e.address().empty()) client_endpoints_[e.node_id()] = e.address();
  }
}

void Server::OnGetLockRead(ConnState& cs, const Request& req) {
  if (req.get_lock().serializable()) return OnGetLock(cs, req);  // local, possibly stale
  const uint64_t conn_id = cs.conn->id();
  if (!is_leader_) return ReplyNotLeader(conn_id, req.id(), "a linearizable GetLock");
  if (!leader_ready_) {
    deferred_.emplace_back(conn_id, std::make_shared<Request>(req));
    return;
  }
  // Read barrier: the barrier entry commits only while this node is still
  // the leader of its term, and it is applied after every entry committed
  // before the read arrived, so the state read in the callback reflects every
  // write acknowledged before the read (Raft thesis section 6.4). A lone
  // voter needs none, and concurrent reads share one (RaftNode::ReadBarrier).
  auto copy = std::make_shared<Request>(req);
  raft_->ReadBarrier([this, conn_id, copy](Status st) {
    auto it = conns_.find(conn_id);
    if (it == conns_.end()) return;
    if (st.code() == Code::kNotLeader) return ReplyNotLeader(conn_id, copy->id(), "GetLock");
    if (!st.ok()) return ReplyError(conn_id, copy->id(), st);
    OnGetLock(it->second, *copy);
  });
}

void Server::OnListMembers(ConnState& cs, const Request& req) {
  const replication::RaftInfo info = raft_->Info();
  v1::Response resp;
  resp.set_id(req.id());
  auto* out = resp.mutable_list_members();
  out->set_leader_id(info.leader_id);
  for (const replication::RaftMember& m : raft_->Members()) {
    auto* pm = out->add_members();
    pm->set_node_id(m.id);
    pm->set_raft_address(m.address);
    auto it = client_endpoints_.find(m.id);
    if (it != client_endpoints_.end()) pm->set_client_address(it->second);
    pm->set_role(std::string(replication::MemberRoleName(m.role)));
    pm->set_leader(m.id == info.leader_id);
  }
  Reply(cs.conn->id(), resp);
}

void Server::OnAddMember(ConnState& cs, const Request& req) {
  const auto& a = req.add_member();
  const uint64_t conn_id = cs.conn->id();
  const uint64_t rid = req.id();
  if (a.node_id() == 0 || a.raft_address().empty()) {
    return ReplyError(conn_id, rid,
                      InvalidArgument("AddMember needs node_id > 0 and a raft_address"));
  }
  if (!a.client_address().empty()) client_endpoints_[a.node_id()] = a.client_address();
  const uint64_t id = a.node_id();
  // Add as a spare (no vote, so quorum is unchanged while it is empty), then
  // promote: libraft first catches its log up (snapshot install if needed)
  // and only then makes it a voter.
  auto promote = [this, conn_id, rid, id]() {
    raft_->Assign(id, replication::RaftMember::Role::kVoter, [this, conn_id, rid](Status st2) {
      if (!st2.ok()) {
        return ReplyError(
            conn_id, rid,
            Status(st2.code(), "node was added as a spare but not promoted: " + st2.message() +
                                   " (retry: latchkey member promote --id)"));
      }
      AnnounceEndpoints();
      v1::Response resp;
      resp.set_id(rid);
      resp.mutable_add_member();
      Reply(conn_id, resp);
    });
  };
  // Adding a node that is already a spare or standby at this address only
  // promotes it: the way out of an add whose promotion failed.
  for (const replication::RaftMember& m : raft_->Members()) {
    if (m.id == id && m.address == a.raft_address() &&
        m.role != replication::RaftMember::Role::kVoter) {
      return promote();
    }
  }
  raft_->AddMember(id, a.raft_address(), [this, conn_id, rid, promote](Status st) {
    if (!st.ok()) return ReplyError(conn_id, rid, st);
    AnnounceEndpoints();
    promote();
  });
}

void Server::OnRemoveMember(ConnState& cs, const Request& req) {
  const uint64_t conn_id = cs.conn->id();
  const uint64_t rid = req.id();
  const uint64_t id = req.remove_member().node_id();
  if (id == options_.node_id) {
    return ReplyError(
        conn_id, rid,
        Status(Code::kFailedPrecondition, "node " + std::to_string(id) +
                                              " is the leader; move leadership first "
                                              "(latchkey member transfer-leader), then remove it"));
  }
  raft_->RemoveMember(id, [this, conn_id, rid](Status st) {
    if (!st.ok()) return ReplyError(conn_id, rid, st);
    v1::Response resp;
    resp.set_id(rid);
    resp.mutable_remove_member();
    Reply(conn_id, resp);
  });
}

void Server::OnTransferLeader(ConnState& cs, const Request& req) {
  const uint64_t conn_id = cs.conn->id();
  const uint64_t rid = req.id();
  raft_->TransferLeadership(req.transfer_leader().node_id(), [this, conn_id, rid](Status st) {
    if (!st.ok()) return ReplyError(conn_id, rid, st);
    v1::Response resp;
    resp.set_id(rid);
    resp.mutable_transfer_leader()->set_leader_id(raft_->Info().leader_id);
    Reply(conn_id, resp);
  });
}

}  // namespace latchkey::server
