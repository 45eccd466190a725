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
  // On a single node whose log write is in progress, the batch keeps
  // gathering until that write is done (RaftNode::DeferUntilWriteDone): it
  // could not reach the disk sooner, and one entry costs less log memory
  // and loop time than many.
  //
  // A lazy command (an acquire that would wait behind a holder anyway,
  // Server::AcquireWouldWait) does not start a proposal by itself: it joins
  // the next one that something else starts, or the one ScheduleFlush()
  // starts (the server calls it every tick and whenever an applied entry
  // means a lazy command might not wait any more). In a queue of waiters
  // each handoff then costs one log write (the release, with the previous
  // holder's next acquire) instead of two.
  void Add(log::v1::Command cmd, Done done, bool lazy = false);
  // Proposes what is queued once the loop thread's work in hand is done.
  void ScheduleFlush();
  // Proposes everything queued now.
  void Flush();
  // Commands are queued and only lazy ones: nothing will propose them until
  // ScheduleFlush() or a command that is not lazy.
  bool only_lazy_queued() const { return !pending_done_.empty() && !flush_scheduled_; }
  const log::v1::LogEntry& queued() const { return pending_; }
  // For the apply hook: the callbacks of this entry if this process proposed
  // it (then removed from the in-flight set), else empty.
  std::vector<Done> TakeBatch(const log::v1::LogEntry& entry);
  // Fails everything queued with `status`, and everything already proposed
  // with MAYBE_APPLIED (shutdown, lost leadership).
  void FailAll(const Status& status);

  size_t in_flight_entries() const { return in_flight_.size(); }

 private:
  // The deferred flush: now, or once the log write in progress is done.
  void FlushAfterWrite();

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
