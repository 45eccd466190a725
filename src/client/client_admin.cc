// latchkey::Client: introspection (locks, wait graph, status) and
// cluster membership.
#include "client/client_impl.h"
#include "latchkey/client.h"

namespace latchkey {

Result<std::vector<LockInfo>> Client::ListLocks(std::string_view prefix, uint32_t limit) {
  pb::Request req;
  req.mutable_list_locks()->set_prefix(std::string(prefix));
  req.mutable_list_locks()->set_limit(limit);
  Outcome o = impl_->Call(std::move(req), impl_->DefaultDeadline());
  if (!o.status.ok()) return o.status;
  std::vector<LockInfo> out;
  for (const auto& l : o.response.list_locks().locks()) out.push_back(ToLockInfo(l, l.name()));
  return out;
}

Result<std::vector<WaitEdgeInfo>> Client::GetWaitGraph() {
  pb::Request req;
  req.mutable_get_wait_graph();
  Outcome o = impl_->Call(std::move(req), impl_->DefaultDeadline());
  if (!o.status.ok()) return o.status;
  std::vector<WaitEdgeInfo> out;
  for (const auto& e : o.response.get_wait_graph().edges()) {
    out.push_back({e.waiter_session_id(), e.waiter_owner(), e.name(), ApiMode(e.mode()),
                   e.blocker_session_id(), e.blocker_owner()});
  }
  return out;
}

Result<LockInfo> Client::GetLock(std::string_view name, ReadConsistency consistency) {
  pb::Request req;
  req.mutable_get_lock()->set_name(std::string(name));
  req.mutable_get_lock()->set_serializable(consistency == ReadConsistency::kSerializable);
  Outcome o = impl_->Call(std::move(req), impl_->DefaultDeadline());
  if (!o.status.ok()) return o.status;
  return ToLockInfo(o.response.get_lock(), name);
}

Result<ServerStatus> Client::GetStatus() {
  pb::Request req;
  req.mutable_get_status();
  Outcome o = impl_->Call(std::move(req), impl_->DefaultDeadline());
  if (!o.status.ok()) return o.status;
  const auto& r = o.response.get_status();
  ServerStatus s;
  s.server_version = r.server_version();
  s.node_id = r.node_id();
  s.listen_address = r.listen_address();
  s.raft_state = r.raft_state();
  s.raft_term = r.raft_term();
  s.commit_index = r.commit_index();
  s.applied_index = r.applied_index();
  s.sessions = r.sessions();
  s.locks_held = r.locks_held();
  s.waiters = r.waiters();
  s.revision = r.revision();
  s.uptime_ms = r.uptime_ms();
  s.data_dir = r.data_dir();
  s.connections = r.connections();
  s.voters = r.voters();
  s.state_digest = r.state_digest();
  s.core_applied_index = r.core_applied_index();
  s.leader_id = r.leader_id();
  s.leader_endpoint = r.leader_endpoint();
  s.metrics_address = r.metrics_address();
  s.log_appends = r.log_appends();
  s.log_append_micros = r.log_append_micros();
  return s;
}

Result<std::vector<MemberInfo>> Client::ListMembers() {
  pb::Request req;
  req.mutable_list_members();
  Outcome o = impl_->Call(std::move(req), impl_->DefaultDeadline());
  if (!o.status.ok()) return o.status;
  std::vector<MemberInfo> out;
  for (const auto& m : o.response.list_members().members()) {
    out.push_back(
        MemberInfo{m.node_id(), m.raft_address(), m.client_address(), m.role(), m.leader()});
  }
  return out;
}

Status Client::AddMember(uint64_t node_id, std::string_view raft_address,
                         std::string_view client_address) {
  pb::Request req;
  auto* a = req.mutable_add_member();
  a->set_node_id(node_id);
  a->set_raft_address(std::string(raft_address));
  a->set_client_address(std::string(client_address));
  return impl_->Call(std::move(req), impl_->DefaultDeadline()).status;
}

Status Client::RemoveMember(uint64_t node_id) {
  pb::Request req;
  req.mutable_remove_member()->set_node_id(node_id);
  return impl_->Call(std::move(req), impl_->DefaultDeadline()).status;
}

Result<uint64_t> Client::TransferLeadership(uint64_t node_id) {
  pb::Request req;
  req.mutable_transfer_leader()->set_node_id(node_id);
  Outcome o = impl_->Call(std::move(req), impl_->DefaultDeadline());
  if (!o.status.ok()) return o.status;
  return o.response.transfer_leader().leader_id();
}

}  // namespace latchkey
