// SimCluster: N replicas of a StateMachineHooks application on libraft's
// in-memory test fixture (raft/fixture.h): one process, one thread, virtual
// time, deterministic (the same calls produce the same run). Used by the
// deterministic simulation (tests/sim); raft-free so the simulation never
// includes raft.h.
//
// Time: fixture time starts at 0 and advances only inside Step*(), by the
// smallest amount that lets something happen (a message, a disk write, a
// tick). Faults are the fixture's knobs: kill/revive (a killed server neither
// ticks nor receives; its memory, log and state survive, like a paused
// process), disconnect (sends fail), saturate (sends silently dropped),
// per-server network and disk latency.
//
// Thread-safety: none. Hooks and callbacks run inside Step*() or Propose().
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "replication/raft_node.h"

namespace latchkey::replication {

struct SimClusterOptions {
  unsigned voters = 3;  // 1..8 (RAFT_FIXTURE_MAX_SERVERS)
  uint32_t heartbeat_timeout_ms = 100;
  uint32_t election_timeout_ms = 1000;
  // Low by default so snapshots and snapshot installs happen in short runs.
  uint32_t snapshot_threshold = 64;
  uint32_t snapshot_trailing = 16;
  bool pre_vote = true;
  // Turns off the AppendReplyGuard (raft_reply_guard.h) to replay libraft
  // 0.15's own behaviour (a deposed leader that never catches up).
  bool no_reply_guard = false;
};

class SimCluster {
 public:
  // One hooks object per voter, index i = server i. REQUIRES: hooks outlive
  // the cluster.
  static Result<std::unique_ptr<SimCluster>> Create(const SimClusterOptions& options,
                                                    std::vector<StateMachineHooks*> hooks);
  // Closes every raft instance: proposals still pending complete with
  // UNAVAILABLE ("may or may not be applied").
  ~SimCluster();
  SimCluster(const SimCluster&) = delete;
  SimCluster& operator=(const SimCluster&) = delete;

  unsigned size() const;
  uint64_t now_ms() const;

  // Advances the cluster by one event.
  void Step();
  // Steps until at least `ms` of virtual time have passed.
  void StepFor(uint64_t ms);

  // Proposes an entry on server i. Errors (cb called synchronously):
  // NOT_LEADER if i is not a live leader. Otherwise cb runs once the entry
  // is applied on i (OK with its index and output) or failed (MAYBE_APPLIED
  // when leadership was lost after appending, UNAVAILABLE on close).
  void Propose(unsigned i, std::string data, ProposeCallback cb);

  // Role as server i sees itself (a killed leader still thinks it leads).
  RaftInfo::Role RoleOf(unsigned i) const;
  uint64_t TermOf(unsigned i) const;
  uint64_t LastApplied(unsigned i) const;
  uint64_t LastIndex(unsigned i) const;
  uint64_t CommitIndex(unsigned i) const;
  // A live server in leader state with the highest term, or -1.
  int LiveLeader() const;

  // Messages sent/received per server, for traces.
  std::string DebugCounters() const;

  // ---- Faults ----
  void Kill(unsigned i);
  void Revive(unsigned i);
  bool Alive(unsigned i) const;
  void Disconnect(unsigned i, unsigned j);  // both directions
  void Reconnect(unsigned i, unsigned j);
  void Saturate(unsigned i, unsigned j);  // i -> j messages dropped
  void Desaturate(unsigned i, unsigned j);
  void SetNetworkLatency(unsigned i, uint32_t ms);
  // A lower disk latency takes effect once server i's queued writes are done
  // (so writes still complete in order).
  void SetDiskLatency(unsigned i, uint32_t ms);
  // The election timeout server i will draw next (fixture default 1000 + 100 i).
  void SetRandomizedElectionTimeout(unsigned i, uint32_t ms);

  struct Impl;  // internal (raft_sim.cc)

 private:
  explicit SimCluster(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace latchkey::replication
