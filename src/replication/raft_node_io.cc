// What passes between libraft and its io: RaftNode::Impl sits between them to
// hold back an InstallSnapshot that libraft 0.15 would drop, and to fix
// AppendEntries results (raft_reply_guard.h). Part of the adapter
// (raft_node_impl.h).
//
// libraft 0.15 drops an InstallSnapshot that arrives while the node takes a
// snapshot of its own (fsm->snapshot returned, the snapshot file is still
// being written) or installs another one: replicationInstallSnapshot
// returns RAFT_BUSY, and recvCb (disassembled from the Debian 0.15 libraft.a)
// frees the message and answers nothing. The leader keeps the follower in
// snapshot mode, ignores the rejections of its heartbeats (their index is
// not the snapshot's; progressMaybeDecrement upstream) and sends again only
// after install_snapshot_timeout (30 s by default; RaftNodeOptions lowers it
// to 10 s as a backstop). A follower catching up by appends runs into this:
// the append that crosses the snapshot threshold makes it snapshot, and the
// leader, which has compacted the next entries, sends its snapshot in answer
// to that append. This is the cause of the restarted follower that stayed at
// index 16 (docs/testing.md, "Restarted follower").
// The adapter sits between libraft and its io's receive callback and holds
// such a message back until the snapshot is done, then hands it to libraft
// (which installs it, or answers "have more recent snapshot").
//
// It also gives a leadership transfer's TimeoutNow a send request of its own
// (raft_transfer_send.h): libraft 0.15 frees the transfer, which holds the
// request it passes, while the io may still complete it.
//
// Before an AppendEntries, it rolls back an uncommitted configuration itself
// when libraft would need a committed configuration entry that a snapshot
// has dropped from its in-memory log (raft_config_rollback.h).
//
// It times each log append (LogAppendStats, RaftInfo::log_appends): libraft's request
// passes through with the adapter's record in req->data, which the uv io
// never reads (src/uv_append.c keeps its own struct append), and gets its
// own data back before its callback runs.
//
// And it refuses a send to no address. libraft 0.15's follower answers an
// AppendEntries once the entries are on disk (appendFollowerCb ->
// sendAppendEntriesResult, disassembled from the Debian libraft.a) to
// follower_state.current_leader without checking that a leader is known. If,
// while the write was in flight, a RequestVote of a higher term made the node
// a follower of a term whose leader it has not heard from, that is {id 0,
// address NULL}, and the uv io (UvSend), which finds no connection for id 0,
// copies the address with strlen(NULL): SIGSEGV on the loop thread. This was
// the unexplained crash of nemesis seed 7305 (5 nodes; docs/testing.md): a
// node restarted 3 s earlier, catching up with appends in flight, died when
// another node won an election. Refused, the send fails the way a send to an
// unreachable peer does: libraft frees the request, and the leader of the new
// term learns the follower's log from its next AppendEntries result.

#include <chrono>
#include <memory>
#include <new>
#include <string>
#include <utility>

#include "common/log.h"
#include "replication/raft_node_impl.h"

namespace latchkey::replication {

RaftNode::Impl* RaftNode::Impl::FromIo(struct raft_io* io) {
  Impl* self = static_cast<Impl*>(static_cast<struct raft*>(io->data)->data);
  LATCHKEY_CHECK(&self->io == io);
  return self;
}

int RaftNode::Impl::IoLoad(struct raft_io* io, raft_term* term, raft_id* voted_for,
                           struct raft_snapshot** snapshot, raft_index* start_index,
                           struct raft_entry* entries[], size_t* n_entries) {
  Impl* self = FromIo(io);
  const int rv = self->io_load(io, term, voted_for, snapshot, start_index, entries, n_entries);
  if (rv == 0 && *snapshot != nullptr && (*snapshot)->configuration_index != 0) {
    self->config_rollback.Seed((*snapshot)->configuration, (*snapshot)->configuration_index);
  }
  return rv;
}

namespace {

// One append while the io has it: libraft's req->data and callback, and
// when it was handed over. `self` is the RaftNode::Impl.
struct TimedAppend {
  void* self;
  void* data;
  raft_io_append_cb cb;
  std::chrono::steady_clock::time_point start;
};

}  // namespace

int RaftNode::Impl::IoAppend(struct raft_io* io, struct raft_io_append* req,
                             const struct raft_entry entries[], unsigned n, raft_io_append_cb cb) {
  Impl* self = FromIo(io);
  auto* timed =
      new (std::nothrow) TimedAppend{self, req->data, cb, std::chrono::steady_clock::now()};
  if (timed == nullptr) return self->io_append(io, req, entries, n, cb);  // untimed
  req->data = timed;
  const int rv = self->io_append(io, req, entries, n, &Impl::IoAppendDone);
  if (rv != 0) {
    req->data = timed->data;
    delete timed;
    return rv;
  }
  ++self->appends_in_flight;
  self->log_appends.entries += n;
  for (unsigned i = 0; i < n; ++i) self->log_appends.bytes += entries[i].buf.len;
  return 0;
}

void RaftNode::Impl::IoAppendDone(struct raft_io_append* req, int status) {
  std::unique_ptr<TimedAppend> timed(static_cast<TimedAppend*>(req->data));
  Impl* self = static_cast<Impl*>(timed->self);
  req->data = timed->data;
  if (status == 0) {
    self->log_appends.latency.Record(std::chrono::steady_clock::now() - timed->start);
  }
  LATCHKEY_CHECK(self->appends_in_flight > 0);
  --self->appends_in_flight;
  timed->cb(req, status);  // may append again (a commit's apply proposes)
  if (self->appends_in_flight == 0 && !self->after_write.empty()) {
    std::vector<std::function<void()>> ready;
    ready.swap(self->after_write);
    for (std::function<void()>& fn : ready) self->AddDeferred(std::move(fn));
  }
}

int RaftNode::Impl::IoStart(struct raft_io* io, unsigned msecs, raft_io_tick_cb tick,
                            raft_io_recv_cb recv) {
  Impl* self = FromIo(io);
  self->raft_recv = recv;
  return self->io_start(io, msecs, tick, &Impl::IoRecv);
}

bool RaftNode::Impl::SnapshotBusy() const {
  return raft.snapshot.pending.term != 0 || raft.snapshot.put.data != nullptr;
}

void RaftNode::Impl::IoRecv(struct raft_io* io, struct raft_message* msg) {
  Impl* self = FromIo(io);
  if (msg->type == RAFT_IO_INSTALL_SNAPSHOT && self->SnapshotBusy()) {
    self->DeferSnapshot(msg);
    return;
  }
  if (msg->type == RAFT_IO_APPEND_ENTRIES) {
    self->GuardSnapshotOverlap(msg);
    self->GuardConfigRollback(*msg);
  }
  self->reply_guard.BeginRecv(*msg);
  self->raft_recv(io, msg);
  self->reply_guard.EndRecv();
}

void RaftNode::Impl::GuardSnapshotOverlap(struct raft_message* msg) {
  const raft_index prev = msg->append_entries.prev_log_index;
  const unsigned n = msg->append_entries.n_entries;
  const SnapshotOverlap done = SkipEntriesInSnapshot(raft, &msg->append_entries);
  if (done == SnapshotOverlap::kNone) return;
  // A leader resends such a message every heartbeat until it hears back:
  // one line a second is enough.
  ++overlaps_unlogged;
  const auto now = std::chrono::steady_clock::now();
  if (now - overlap_logged_at < std::chrono::seconds(1)) return;
  overlap_logged_at = now;
  LK_LOG_INFO(
      "raft node %llu: AppendEntries from node %llu after index %llu with %u entries starts "
      "inside this node's snapshot (up to %llu); %s (raft_snapshot_overlap.h; %llu such "
      "message(s) since the last report)",
      static_cast<unsigned long long>(options.node_id),
      static_cast<unsigned long long>(msg->server_id), static_cast<unsigned long long>(prev), n,
      static_cast<unsigned long long>(raft.log.snapshot.last_index),
      done == SnapshotOverlap::kTrimmed ? "kept only the entries after it"
                                        : "handled as an empty AppendEntries at its last index",
      static_cast<unsigned long long>(overlaps_unlogged));
  overlaps_unlogged = 0;
}

void RaftNode::Impl::GuardConfigRollback(const struct raft_message& msg) {
  const raft_index committed = raft.configuration_index;
  const raft_index uncommitted = raft.configuration_uncommitted_index;
  switch (config_rollback.BeforeAppendEntries(&raft, msg.append_entries)) {
    case ConfigRollbackGuard::Outcome::kNotNeeded: return;
    case ConfigRollbackGuard::Outcome::kRolledBack:
      LK_LOG_INFO(
          "raft node %llu: AppendEntries from node %llu replaces the uncommitted configuration "
          "at index %llu; rolled back to the committed one (index %llu, no longer in the "
          "in-memory log) from the adapter's copy",
          static_cast<unsigned long long>(options.node_id),
          static_cast<unsigned long long>(msg.server_id),
          static_cast<unsigned long long>(uncommitted), static_cast<unsigned long long>(committed));
      return;
    case ConfigRollbackGuard::Outcome::kNoCopy:
      LK_LOG_ERROR(
          "raft node %llu: AppendEntries from node %llu rolls back the uncommitted configuration "
          "at index %llu to the committed one at index %llu, which is no longer in the in-memory "
          "log and of which the adapter kept no copy (it has index %llu); libraft 0.15 may crash "
          "here (raft_config_rollback.h)",
          static_cast<unsigned long long>(options.node_id),
          static_cast<unsigned long long>(msg.server_id),
          static_cast<unsigned long long>(uncommitted), static_cast<unsigned long long>(committed),
          static_cast<unsigned long long>(config_rollback.committed_index()));
      return;
  }
}

int RaftNode::Impl::IoSend(struct raft_io* io, struct raft_io_send* req,
                           const struct raft_message* msg, raft_io_send_cb cb) {
  Impl* self = FromIo(io);
  if (msg->server_address == nullptr) {
    LK_LOG_INFO(
        "raft node %llu: dropped a message of type %d to node %llu, whose address is "
        "not known (no leader known yet in term %llu)",
        static_cast<unsigned long long>(self->options.node_id), msg->type,
        static_cast<unsigned long long>(msg->server_id),
        static_cast<unsigned long long>(self->raft.current_term));
    return RAFT_NOCONNECTION;
  }
  if (msg->type == RAFT_IO_TIMEOUT_NOW && self->raft.transfer != nullptr &&
      req == &self->raft.transfer->send) {
    // The request lives inside the transfer, which libraft may end (and we
    // free) before the io is done with it (raft_transfer_send.h).
    return self->transfer_sends.Send(self->raft.transfer, req, cb,
                                     [&](struct raft_io_send* own, raft_io_send_cb own_cb) {
                                       return self->io_send(io, own, msg, own_cb);
                                     });
  }
  struct raft_message fixed;
  if (self->reply_guard.Fix(*msg, &fixed)) {
    LK_LOG_DEBUG(
        "raft node %llu: AppendEntries result to node %llu: last_log_index %llu -> %llu "
        "(log suffix beyond the request not verified by the leader)",
        static_cast<unsigned long long>(self->options.node_id),
        static_cast<unsigned long long>(msg->server_id),
        static_cast<unsigned long long>(msg->append_entries_result.last_log_index),
        static_cast<unsigned long long>(fixed.append_entries_result.last_log_index));
    return self->io_send(io, req, &fixed, cb);
  }
  return self->io_send(io, req, msg, cb);
}

void RaftNode::Impl::FreeInstallSnapshot(struct raft_message* msg) {
  raft_configuration_close(&msg->install_snapshot.conf);
  raft_free(msg->install_snapshot.data.base);
  msg->install_snapshot.data.base = nullptr;
}

void RaftNode::Impl::DeferSnapshot(struct raft_message* msg) {
  const struct raft_install_snapshot& in = msg->install_snapshot;
  LK_LOG_INFO(
      "raft node %llu: InstallSnapshot (index %llu, term %llu, %zu bytes) from node %llu "
      "arrived while a snapshot is being %s; held until it is done",
      static_cast<unsigned long long>(options.node_id),
      static_cast<unsigned long long>(in.last_index), static_cast<unsigned long long>(in.last_term),
      in.data.len, static_cast<unsigned long long>(msg->server_id),
      raft.snapshot.pending.term != 0 ? "taken" : "installed");
  if (deferred_snapshot != nullptr) {
    // Keep only the newest: libraft would answer an older one with "have
    // more recent snapshot" anyway.
    const struct raft_install_snapshot& old = deferred_snapshot->msg.install_snapshot;
    const bool newer =
        in.term > old.term || (in.term == old.term && in.last_index >= old.last_index);
    if (!newer) {
      FreeInstallSnapshot(msg);
      return;
    }
    DropDeferredSnapshot();
  }
  auto d = std::make_unique<DeferredSnapshot>();
  d->msg = *msg;  // takes over conf and data
  d->address = msg->server_address != nullptr ? msg->server_address : "";
  d->msg.server_address = d->address.c_str();
  deferred_snapshot = std::move(d);
}

void RaftNode::Impl::MaybeDeliverDeferredSnapshot() {
  if (deferred_snapshot == nullptr || !raft_running || closing || SnapshotBusy()) return;
  std::unique_ptr<DeferredSnapshot> d = std::move(deferred_snapshot);
  LK_LOG_INFO("raft node %llu: delivering the held InstallSnapshot (index %llu)",
              static_cast<unsigned long long>(options.node_id),
              static_cast<unsigned long long>(d->msg.install_snapshot.last_index));
  d->msg.server_address = d->address.c_str();
  raft_recv(&io, &d->msg);  // libraft owns (or frees) conf and data from here
}

void RaftNode::Impl::DropDeferredSnapshot() {
  if (deferred_snapshot == nullptr) return;
  FreeInstallSnapshot(&deferred_snapshot->msg);
  deferred_snapshot.reset();
}

// -------------------------------------------------------------------------
// RaftNode

}  // namespace latchkey::replication
