// RaftNode: the one adapter between Latchkey and libraft (Canonical raft 0.15,
// libuv backend, TCP transport). Outside src/replication, nothing includes raft.h.
//
// Threading: the node owns a libuv loop running on its own thread (the "loop
// thread"). Every libraft call happens there, and so do all hook and callback
// invocations. Other threads talk to it only through Post(), which is
// thread-safe (mutex-guarded queue + an eventfd the loop polls). Methods marked LOOP
// THREAD ONLY must be called from code already running on the loop thread
// (a Post()ed closure, a hook, a callback or a tick handler).
//
// Durability: an entry is durable on a majority (for one voter: fsynced
// locally) before Apply() sees it. Restart = latest snapshot + log replay
// through Restore() and Apply().
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/latency_histogram.h"
#include "common/reactor.h"
#include "common/status.h"

namespace latchkey::replication {

// Opaque result of applying one entry; handed to the proposer's callback.
class ApplyOutput {
 public:
  virtual ~ApplyOutput() = default;
};

// What the replicated application implements. Called on the loop thread only.
class StateMachineHooks {
 public:
  virtual ~StateMachineHooks() = default;
  // Applies one committed entry, in log order. A non-null return value is
  // passed to the ProposeCallback of the proposal that created the entry (if
  // it was proposed by this process and is still pending); otherwise dropped.
  virtual std::unique_ptr<ApplyOutput> Apply(uint64_t index, std::string_view data) = 0;
  // Serializes the full state (including the applied index the app tracks).
  virtual Result<std::string> TakeSnapshot() = 0;
  // Replaces the state with a snapshot produced by TakeSnapshot().
  virtual Status Restore(std::string_view data) = 0;
};

struct RaftPeer {
  uint64_t id = 0;
  std::string address;  // "127.0.0.1:7412"
};

struct RaftNodeOptions {
  uint64_t node_id = 1;
  std::string raft_address = "127.0.0.1:7412";  // libraft TCP transport address
  std::string data_dir;                         // must exist
  // Initial configuration, used only on first boot (no state in data_dir).
  // Empty = a single voter: this node.
  std::vector<RaftPeer> initial_voters;
  // Join an existing cluster: never bootstrap. The node starts with no
  // configuration and waits for the leader to add it (AddMember + Assign).
  bool join = false;
  uint32_t election_timeout_ms = 1000;
  uint32_t heartbeat_timeout_ms = 100;
  // Large threshold avoids the segment-close loop stalls (libraft-notes.md).
  uint32_t snapshot_threshold = 65536;
  uint32_t snapshot_trailing = 8192;
  // Idle compaction: once nothing was applied for this long and at least
  // idle_compaction_min_entries entries were applied since the last
  // snapshot, take a snapshot now and keep only idle_compaction_trailing
  // entries (none when the node is the configuration's only member), then
  // return freed heap to the OS. The log held in memory between snapshots
  // (up to snapshot_threshold entries) is freed while the node is idle
  // instead of staying until the next threshold snapshot. The leader
  // appends a barrier to trigger it; followers that are idle too snapshot
  // when they apply it. 0 = off.
  uint32_t idle_compaction_ms = 2000;
  uint32_t idle_compaction_min_entries = 1024;
  uint32_t idle_compaction_trailing = 128;
  bool pre_vote = true;
  // How long a leader waits for a follower to answer an InstallSnapshot
  // before sending it again (libraft's default is 30 s). A snapshot that is
  // lost (connection dropped) stalls that follower this long. Each timeout
  // costs the leader a snapshot read and send: while a follower is down the
  // leader sends one per timeout (its transport queues them), and a transfer
  // slower than this is sent again meanwhile (the first install completes).
  uint32_t install_snapshot_timeout_ms = 10000;
};

// This node's Raft log appends since it started (leader and follower
// alike). `latency`: from the io's append call to its callback on the loop
// thread, so the time an append waits behind the write in progress counts
// too: what a request's durability costs here (docs/operations.md).
struct LogAppendStats {
  LatencyHistogram latency;
  uint64_t entries = 0;
  uint64_t bytes = 0;  // entry payloads
};

struct RaftInfo {
  enum class Role { kUnavailable, kFollower, kCandidate, kLeader };
  Role role = Role::kUnavailable;
  uint64_t term = 0;
  uint64_t leader_id = 0;
  std::string leader_address;
  uint64_t commit_index = 0;
  uint64_t last_applied = 0;
  uint32_t voters = 0;
  // Entries libraft keeps in memory (since the last snapshot, plus its
  // trailing count); each holds its payload until a snapshot drops it.
  uint64_t log_entries_in_memory = 0;
  // Pages of libraft's log index (its entry reference table, never shrunk
  // by libraft) given back to the OS after idle compactions, in all.
  uint64_t idle_pages_released = 0;
  LogAppendStats log_appends;
};

std::string_view RoleName(RaftInfo::Role role);

// One server of the Raft configuration.
struct RaftMember {
  enum class Role { kVoter, kStandby, kSpare };
  uint64_t id = 0;
  std::string address;  // raft transport address
  Role role = Role::kVoter;
};

std::string_view MemberRoleName(RaftMember::Role role);

// Completion of a barrier or a membership change (loop thread, exactly once).
using DoneCallback = std::function<void(Status status)>;

// status: OK when the entry was committed and applied; otherwise the error
// (NOT_LEADER, UNAVAILABLE when shutting down, MAYBE_APPLIED when leadership
// was lost after the entry was appended). index is 0 on failure.
using ProposeCallback =
    std::function<void(Status status, uint64_t index, std::unique_ptr<ApplyOutput> output)>;

class RaftNode final : public Reactor {
 public:
  // REQUIRES: hooks outlives the node.
  static Result<std::unique_ptr<RaftNode>> Create(RaftNodeOptions options,
                                                  StateMachineHooks* hooks);
  ~RaftNode();  // calls Stop()

  RaftNode(const RaftNode&) = delete;
  RaftNode& operator=(const RaftNode&) = delete;

  // Starts the loop thread and raft. Returns once raft_start succeeded (the
  // snapshot and log have been loaded and replayed through the hooks) or
  // failed (with a message naming the cause: port in use, bad data dir...).
  Status Start();

  // Closes raft, drains callbacks (pending proposals fail with UNAVAILABLE),
  // joins the loop thread. Idempotent. Must not be called from the loop thread.
  void Stop();

  // Thread-safe. Runs fn on the loop thread soon, in FIFO order. After Stop()
  // the closure is dropped without running.
  void Post(std::function<void()> fn) override;

  // LOOP THREAD ONLY. Runs fn on the loop thread once the work in hand is
  // done: after the rest of the Post()ed closures being run now, or at the
  // end of the current loop iteration, before the loop waits again. Unlike
  // a Post() from the loop thread it costs no wake-up (no eventfd write, no
  // extra poll). FIFO among deferred closures; dropped once closing.
  void Defer(std::function<void()> fn) override;

  // The rest of the Reactor interface (common/reactor.h): client sockets on
  // the loop thread (transport::LoopListener). Watches and timers still open
  // when raft closes are closed with it, their callbacks dropped.
  bool InLoop() const override;
  Result<WatchId> WatchFd(int fd, int events, FdCallback cb) override;  // LOOP THREAD ONLY
  void UpdateFd(WatchId id, int events) override;                       // LOOP THREAD ONLY
  void UnwatchFd(WatchId id) override;                                  // LOOP THREAD ONLY
  void RunAfter(uint32_t ms, std::function<void()> fn) override;        // LOOP THREAD ONLY

  // LOOP THREAD ONLY. Group commit for a single node. When this node is the
  // only voter and a log write is in progress, queues fn to run (as by
  // Defer) once no append is in flight any more, and returns true; otherwise
  // returns false and drops fn. libraft's io has one write in progress at a
  // time and puts every append that arrives meanwhile into the next one, so
  // a proposal held back until then reaches the disk no later, and what is
  // gathered meanwhile goes into one entry instead of one entry per
  // proposal. With other voters it returns false: their acknowledgements,
  // not this node's disk, may decide the commit. Dropped once closing.
  bool DeferUntilWriteDone(std::function<void()> fn);

  // LOOP THREAD ONLY. Proposes an entry; cb runs on the loop thread exactly
  // once (possibly synchronously if the proposal fails immediately).
  void Propose(std::string data, ProposeCallback cb);

  // LOOP THREAD ONLY. Appends a barrier; cb(OK) runs once every entry before
  // it (all entries committed before the call) has been applied on this node.
  // Used for linearizable reads: a leader whose barrier commits was still the
  // leader after the read arrived. Errors: NOT_LEADER, MAYBE_APPLIED when
  // leadership was lost meanwhile, UNAVAILABLE when shutting down.
  void Barrier(DoneCallback cb);
  // LOOP THREAD ONLY. cb(OK) once a read of this node's applied state is
  // linearizable. On a leader that is the only voter of its configuration
  // and has applied everything committed: at once (every acknowledged write
  // is applied, and no other node can lead). Otherwise after a Barrier,
  // shared by every read that arrives while one proposed for reads is still
  // pending (its commit comes after their arrival, and every write
  // acknowledged before them precedes it in the log). Errors as Barrier.
  void ReadBarrier(DoneCallback cb);

  // LOOP THREAD ONLY. Membership (leader only; one change at a time: a second
  // change while one is in flight fails with FAILED_PRECONDITION).
  // AddMember adds `id` as a spare (no log, no vote); Assign gives it a role;
  // promoting to voter first catches its log up (libraft does this). Errors:
  // NOT_LEADER, FAILED_PRECONDITION (change in progress), ALREADY_EXISTS (id
  // or address taken), NOT_FOUND (unknown id), INVALID_ARGUMENT (same role).
  void AddMember(uint64_t id, const std::string& address, DoneCallback cb);
  void Assign(uint64_t id, RaftMember::Role role, DoneCallback cb);
  void RemoveMember(uint64_t id, DoneCallback cb);
  // Hands leadership to voter `id` (0 = any up-to-date voter). cb(OK) once
  // the target is the leader; TIMEOUT if it did not win within an election
  // timeout.
  void TransferLeadership(uint64_t id, DoneCallback cb);

  // LOOP THREAD ONLY.
  RaftInfo Info() const;
  bool IsLeader() const;
  // The current configuration (the latest appended one, possibly uncommitted).
  std::vector<RaftMember> Members() const;

  // LOOP THREAD ONLY. Called on the loop thread whenever this node gains or
  // loses leadership (polled after every loop iteration). Set before Start().
  void SetLeadershipHandler(std::function<void(bool is_leader)> fn);

  // Set before Start(). fn runs on the loop thread every period_ms.
  void SetTickHandler(uint32_t period_ms, std::function<void()> fn);

 private:
  struct Impl;
  friend struct RaftNodeTestAccess;  // adapter tests (raft_node_test.cc)
  explicit RaftNode(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace latchkey::replication
