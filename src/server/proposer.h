// Proposer: batches commands from many requests into one log entry and routes
// each command's result back to its request once the entry is applied.
//
// Every entry carries (proposer nonce, sequence). The apply hook hands each
// applied entry to TakeBatch(); entries proposed by this process get their
// callbacks back in command order. Entries from a replay or another leader
// match nothing.
//
// Thread-safety: loop thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "core/state_machine.h"
#include "replication/raft_node.h"

namespace latchkey::server {

class Proposer {
 public:
  // status OK: result points at the command's outcome (which may itself carry
  // an error such as LOCK_BUSY). status non-OK: the command's entry failed
  // (NOT_LEADER, UNAVAILABLE, MAYBE_APPLIED) and result is null.
  using Done = std::function<void(const Status& status, const core::CommandResult* result)>;

  Proposer(replication::RaftNode* raft, const Clock* clock, uint64_t nonce, size_t max_batch);

  // Queues a command; the batch is proposed once the loop thread has handled
  // the requests in hand (RaftNode::Defer), so one entry carries them all.
  void Add(log::v1::Command cmd, Done done);
  // Proposes everything queued now.
  void Flush();
  // For the apply hook: the callbacks of this entry if this process proposed
  // it (then removed from the in-flight set), else empty.
  std::vector<Done> TakeBatch(const log::v1::LogEntry& entry);
  // Fails everything queued with `status`, and everything already proposed
  // with MAYBE_APPLIED (shutdown, lost leadership).
  void FailAll(const Status& status);

  size_t in_flight_entries() const { return in_flight_.size(); }

 private:
  replication::RaftNode* raft_;
  const Clock* clock_;
  uint64_t nonce_;
  size_t max_batch_;
  uint64_t next_seq_ = 1;
  bool flush_scheduled_ = false;
  log::v1::LogEntry pending_;
  std::vector<Done> pending_done_;
  std::map<uint64_t, std::vector<Done>> in_flight_;  // seq -> callbacks
};

}  // namespace latchkey::server
