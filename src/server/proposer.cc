#include "server/proposer.h"

#include <utility>

namespace latchkey::server {

Proposer::Proposer(replication::RaftNode* raft, const Clock* clock, uint64_t nonce,
                   size_t max_batch)
    : raft_(raft), clock_(clock), nonce_(nonce), max_batch_(max_batch) {}

void Proposer::Add(log::v1::Command cmd, Done done, bool lazy) {
  *pending_.add_commands() = std::move(cmd);
  pending_done_.push_back(std::move(done));
  if (pending_done_.size() >= max_batch_) {
    Flush();
    return;
  }
  if (!lazy) ScheduleFlush();
}

void Proposer::ScheduleFlush() {
  if (flush_scheduled_ || pending_done_.empty()) return;
  flush_scheduled_ = true;
  raft_->Defer([this] { FlushAfterWrite(); });
}

void Proposer::FlushAfterWrite() {
  // flush_scheduled_ stays set while waiting, so what arrives meanwhile joins.
  if (raft_->DeferUntilWriteDone([this] { FlushAfterWrite(); })) return;
  flush_scheduled_ = false;
  Flush();
}

void Proposer::Flush() {
  if (pending_done_.empty()) return;
  log::v1::LogEntry entry = std::move(pending_);
  pending_.Clear();
  entry.set_version(core::kLogEntryVersion);
  entry.set_time_ms(clock_->WallMs());
  entry.set_proposer(nonce_);
  const uint64_t seq = next_seq_++;
  entry.set_proposal_seq(seq);
  in_flight_.emplace(seq, std::move(pending_done_));
  pending_done_.clear();
  raft_->Propose(core::EncodeEntry(entry),
                 [this, seq](Status status, uint64_t, std::unique_ptr<replication::ApplyOutput>) {
                   auto it = in_flight_.find(seq);
                   if (it == in_flight_.end()) return;  // applied and answered
                   std::vector<Done> dones = std::move(it->second);
                   in_flight_.erase(it);
                   if (status.ok()) {
                     status = Internal("entry committed but its results were not routed");
                   }
                   for (Done& d : dones) d(status, nullptr);
                 });
}

std::vector<Proposer::Done> Proposer::TakeBatch(const log::v1::LogEntry& entry) {
  if (entry.proposer() != nonce_) return {};
  auto it = in_flight_.find(entry.proposal_seq());
  if (it == in_flight_.end()) return {};
  std::vector<Done> dones = std::move(it->second);
  in_flight_.erase(it);
  return dones;
}

void Proposer::FailAll(const Status& status) {
  std::vector<Done> all = std::move(pending_done_);
  pending_done_.clear();
  pending_.Clear();
  for (Done& d : all) d(status, nullptr);
  // Entries already handed to raft may still commit (e.g. after a restart).
  const Status maybe(Code::kMaybeApplied,
                     status.message() + "; the request may or may not have taken effect");
  auto in_flight = std::move(in_flight_);
  in_flight_.clear();
  for (auto& [seq, dones] : in_flight) {
    for (Done& d : dones) d(maybe, nullptr);
  }
}

}  // namespace latchkey::server
