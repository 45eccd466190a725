// Part of the replication adapter (includes raft.h): only raft_node*.cc and
// raft_sim.cc include this header.
//
// AppendReplyGuard works around a libraft 0.15 follower bug that both the
// real node (uv io) and the simulation (fixture io) would otherwise hit.
//
// A follower that accepts an AppendEntries whose entries it already has (a
// heartbeat, or a resend) answers at once with last_log_index = its
// last_stored, i.e. the end of its whole log. If its log goes on past the
// request with entries of an older term (a deposed leader's uncommitted
// suffix), the leader (recvAppendEntriesResult -> replicationUpdate) takes
// min(that, its own last index) as the follower's match index: it then
// believes the follower holds entries it does not (they differ in term),
// ignores every later rejection at or below that index as stale
// (progressMaybeDecrement, pipeline mode) and never sends the follower the
// right entries. The follower stays behind for the whole term, and the
// leader counts it towards the quorum of entries it does not store.
// Raft's rule is that a success only vouches for the log up to
// prev_log_index + n_entries of the request it answers.
//
// The guard is told which AppendEntries libraft is processing (BeginRecv /
// EndRecv around the io's receive callback) and clamps the last_log_index of
// a successful result libraft sends while processing it (the synchronous
// reply; a reply sent after a disk write follows a truncation of any
// conflicting suffix and is already right). Clamping only lowers the
// leader's idea of the follower's log, which is always safe: the leader then
// probes down to the real match point.
#pragma once

#include <cstdint>

extern "C" {
#include <raft.h>
}

namespace latchkey::replication {

class AppendReplyGuard {
 public:
  void BeginRecv(const struct raft_message& msg) {
    active_ = msg.type == RAFT_IO_APPEND_ENTRIES;
    if (active_) limit_ = msg.append_entries.prev_log_index + msg.append_entries.n_entries;
  }
  void EndRecv() { active_ = false; }

  // For every message libraft sends: returns true (and fixes `out`, a copy
  // of the message) when the message must be sent as `out` instead.
  bool Fix(const struct raft_message& in, struct raft_message* out) {
    if (!active_ || in.type != RAFT_IO_APPEND_ENTRIES_RESULT) return false;
    const struct raft_append_entries_result& res = in.append_entries_result;
    if (res.rejected != 0 || res.last_log_index <= limit_) return false;
    *out = in;
    out->append_entries_result.last_log_index = limit_;
    ++clamped_;
    return true;
  }

  // How many replies were clamped (for logs and tests).
  uint64_t clamped() const { return clamped_; }

 private:
  bool active_ = false;
  raft_index limit_ = 0;
  uint64_t clamped_ = 0;
};

}  // namespace latchkey::replication
