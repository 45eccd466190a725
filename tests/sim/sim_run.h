// The deterministic simulation: one seed = one run of a random workload
// (sessions, locks in all six modes on hierarchical names, try-locks, waits
// with timeouts, lock TTLs, semaphores) against 3 or 5 replicas on libraft's
// in-memory fixture, under random faults (kill/revive, partitions, dropped
// messages, slow disks and networks, leader churn). Everything, including
// the faults, derives from the seed: a failing seed replays exactly.
//
// Invariants (checked after every applied entry on every replica, and at the
// end after healing every fault):
// - replicas apply the same entry, return the same results and reach the
//   same state digest at every index;
// - mutual exclusion (modes and hierarchy), semaphore permits;
// - fencing tokens strictly increase per lock;
// - no acknowledged operation lost: every acknowledged entry is in the final
//   log of every replica at its index with the result the client was given,
//   acknowledged grants and sessions nothing later removed are still there.
#pragma once

#include <cstdint>
#include <string>

#include "sim/sim_replica.h"

namespace latchkey::sim {

struct SimConfig {
  uint64_t seed = 1;
  int steps = 150;  // workload steps (each: some virtual time, maybe a fault, some ops)
  PlantedBug bug = PlantedBug::kNone;
  bool verbose = false;  // trace every op and fault to stderr
  // The adapter's AppendReplyGuard (src/replication/raft_reply_guard.h). Off
  // replays libraft 0.15's own behaviour, where a deposed leader can stay
  // behind forever; the run then only needs a caught-up majority.
  bool reply_guard = true;
};

struct SimReport {
  bool ok = true;
  std::string failure;
  uint64_t final_index = 0;
  uint64_t acked = 0;
  uint64_t faults = 0;
  uint64_t leader_changes = 0;
  uint64_t virtual_ms = 0;
  unsigned voters = 0;
  unsigned lagging = 0;  // replicas libraft left behind at the end (see Settle)
  std::string Summary() const;
};

SimReport RunSeed(const SimConfig& config);

}  // namespace latchkey::sim
