// One simulated replica (the core state machine behind the replication
// hooks) and the Ledger every replica reports to: per log index, what was
// applied, what it returned and the state digest after it. The first replica
// to apply an index records it; every other replica must match.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "core/state_machine.h"
#include "replication/raft_node.h"
#include "sim/sim_checkers.h"

namespace latchkey::sim {

// Test-only faults planted into the system under test, to prove the
// checkers catch them (tests/sim/sim_test.cc).
enum class PlantedBug {
  kNone,
  kCorruptReplica,   // replica 1 silently skips every Release command
  kAckBeforeCommit,  // the client is told "done" as soon as the entry is appended
};

uint64_t Fnv1a(std::string_view bytes, uint64_t h = 14695981039346656037ull);
// Hash of everything a client could observe from applying one entry.
uint64_t ResultHash(const core::ApplyResult& r);

struct IndexRecord {
  uint64_t entry_hash = 0;
  uint64_t result_hash = 0;
  uint64_t digest = 0;
  unsigned first_replica = 0;
  log::v1::LogEntry entry;
  core::ApplyResult result;
};

class Ledger {
 public:
  // Returns the record of `index`, creating it from the arguments if this
  // is the first replica to apply it; otherwise compares and fails on a
  // mismatch.
  void Record(unsigned replica, uint64_t index, uint64_t entry_hash, uint64_t digest,
              const log::v1::LogEntry& entry, const core::ApplyResult& result);
  // Records the first violation (later ones are usually consequences).
  void Fail(uint64_t index, std::string what);
  bool failed() const { return !failure_.empty(); }
  const std::string& failure() const { return failure_; }
  const std::map<uint64_t, IndexRecord>& records() const { return records_; }
  const IndexRecord* Find(uint64_t index) const {
    auto it = records_.find(index);
    return it == records_.end() ? nullptr : &it->second;
  }

 private:
  std::map<uint64_t, IndexRecord> records_;
  std::string failure_;
};

class Replica : public replication::StateMachineHooks {
 public:
  // Every `restore_every` entries (at a different index on each replica) the
  // replica replaces its state by Restore(Snapshot()), as a restart would.
  Replica(unsigned id, Ledger* ledger, PlantedBug bug, uint64_t restore_every)
      : id_(id), ledger_(ledger), bug_(bug), restore_every_(restore_every) {}

  struct Output : replication::ApplyOutput {
    core::ApplyResult result;
    uint64_t entry_hash = 0;
  };

  std::unique_ptr<replication::ApplyOutput> Apply(uint64_t index, std::string_view data) override;
  Result<std::string> TakeSnapshot() override { return sm_.Snapshot(); }
  Status Restore(std::string_view data) override { return sm_.Restore(data); }

  const core::StateMachine& sm() const { return sm_; }

 private:
  unsigned id_;
  Ledger* ledger_;
  PlantedBug bug_;
  uint64_t restore_every_;
  core::StateMachine sm_;
  FencingTracker fencing_;
};

}  // namespace latchkey::sim
