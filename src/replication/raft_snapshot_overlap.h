// Part of the replication adapter (includes raft.h): only raft_node*.cc,
// raft_sim.cc and the adapter's tests include this header.
//
// SkipEntriesInSnapshot works around a libraft 0.15 follower bug: an
// AppendEntries whose entries start at or below the follower's snapshot.
// libraft's deleteConflictingEntries asks logTermOf for each entry's index;
// for an index that a snapshot compacted out of the in-memory log (at or
// below `log.offset`, other than the snapshot's last index) that is 0,
// "we don't have this entry", so libraft appends the whole batch after its
// last entry, at the wrong indexes. logAcquire then finds nothing at the
// first index ("No log entries found"), and the error path truncates the
// log from there, below its start: refsDecr walks off its hash chain and
// the loop thread dies of SIGSEGV. Seen in nemesis seed 9013 (5 nodes,
// session 12): a follower restarted after kill -9 had applied, snapshotted
// and compacted (idle compaction) up to 31761 when the leader, which had no
// snapshot, sent it the whole log from index 1 (32 125 entries); the core
// showed 32 748 entries in a log whose offset was 31633. Reproduced on
// libraft's fixture: CompactedFollowerTest in raft_snapshot_overlap_test.cc.
//
// Entries at or below the snapshot's last index are committed (a snapshot
// only covers applied entries), so the leader's entries there are the ones
// the snapshot holds. The guard drops them from the message and moves its
// previous entry up to the snapshot's last index, where libraft's check
// finds the snapshot's term. If nothing is left, the message becomes a
// heartbeat at that index with its commit index clamped to it: libraft
// commits min(leader_commit, its last index) on a heartbeat, and entries
// after the snapshot have not been matched against this leader. Callers run
// it before AppendReplyGuard::BeginRecv, so that a success reply vouches for
// the rewritten message only (the snapshot's last index plus what is left).
#pragma once

#include <algorithm>
#include <cstddef>
#include <unordered_set>

extern "C" {
#include <raft.h>
}

namespace latchkey::replication {

enum class SnapshotOverlap {
  kNone,       // the message starts after the snapshot: left as it is
  kTrimmed,    // entries in the snapshot dropped, the rest kept
  kHeartbeat,  // every entry was in the snapshot: now an empty AppendEntries
};

// REQUIRES: `args` came from the io (libraft frees its entries array and
// its first entry's batch after handling it, as it does for every received
// AppendEntries).
inline SnapshotOverlap SkipEntriesInSnapshot(const struct raft& r,
                                             struct raft_append_entries* args) {
  const raft_index snap = r.log.snapshot.last_index;
  if (snap == 0 || args->prev_log_index >= snap || args->term < r.current_term) {
    return SnapshotOverlap::kNone;
  }
  const raft_index prev = args->prev_log_index;
  const unsigned n = args->n_entries;
  const unsigned drop = static_cast<unsigned>(std::min<raft_index>(n, snap - prev));
  const bool keep_some = drop < n;
  // Keep [drop, n): the entry before them is the snapshot's last.
  struct raft_entry* kept = nullptr;
  if (keep_some) {
    kept = static_cast<struct raft_entry*>(raft_malloc((n - drop) * sizeof(struct raft_entry)));
    if (kept == nullptr) return SnapshotOverlap::kNone;  // out of memory: libraft as before
    std::copy(args->entries + drop, args->entries + n, kept);
  }
  // Free the dropped entries' batches that no kept entry shares, each once
  // (batches only, as libraft's entryBatchesDestroy does).
  std::unordered_set<void*> kept_or_freed;
  for (unsigned i = drop; i < n; ++i) kept_or_freed.insert(args->entries[i].batch);
  for (unsigned i = 0; i < drop; ++i) {
    void* batch = args->entries[i].batch;
    if (batch != nullptr && kept_or_freed.insert(batch).second) raft_free(batch);
  }
  if (keep_some) {
    args->prev_log_term = args->entries[drop - 1].term;
  } else {
    // Nothing after the snapshot: an empty AppendEntries at its last index.
    args->prev_log_term = r.log.snapshot.last_term;
    args->leader_commit = std::min(args->leader_commit, snap);
  }
  if (args->entries != nullptr) raft_free(args->entries);
  args->entries = kept;
  args->n_entries = n - drop;
  args->prev_log_index = snap;
  return keep_some ? SnapshotOverlap::kTrimmed : SnapshotOverlap::kHeartbeat;
}

}  // namespace latchkey::replication
