#include "sim/sim_replica.h"

#include <utility>

namespace latchkey::sim {

uint64_t Fnv1a(std::string_view bytes, uint64_t h) {
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

namespace {

void Mix(uint64_t* h, uint64_t v) {
  *h = Fnv1a(std::string_view(reinterpret_cast<const char*>(&v), sizeof v), *h);
}
void Mix(uint64_t* h, std::string_view s) {
  Mix(h, s.size());
  *h = Fnv1a(s, *h);
}

}  // namespace

uint64_t ResultHash(const core::ApplyResult& r) {
  uint64_t h = Fnv1a("result");
  for (const core::CommandResult& c : r.results) {
    Mix(&h, static_cast<uint64_t>(c.status.code()));
    Mix(&h, c.session_id);
    Mix(&h, (c.queued ? 1u : 0u) | (c.granted ? 2u : 0u));
    Mix(&h, c.grant.fencing_token);
    Mix(&h, static_cast<uint64_t>(c.grant.mode));
    Mix(&h, c.permits);
    Mix(&h, c.count);
    Mix(&h, c.generation);
  }
  for (const core::Event& e : r.events) {
    Mix(&h, static_cast<uint64_t>(e.kind) * 16 + static_cast<uint64_t>(e.object));
    Mix(&h, e.session_id);
    Mix(&h, e.grant.name);
    Mix(&h, e.grant.owner);
    Mix(&h, e.grant.fencing_token);
  }
  return h;
}

void Ledger::Record(unsigned replica, uint64_t index, uint64_t entry_hash, uint64_t digest,
                    const log::v1::LogEntry& entry, const core::ApplyResult& result) {
  const uint64_t result_hash = ResultHash(result);
  auto it = records_.find(index);
  if (it == records_.end()) {
    IndexRecord rec;
    rec.entry_hash = entry_hash;
    rec.result_hash = result_hash;
    rec.digest = digest;
    rec.first_replica = replica;
    rec.entry = entry;
    rec.result = result;
    records_.emplace(index, std::move(rec));
    return;
  }
  const IndexRecord& rec = it->second;
  const std::string who = "replica " + std::to_string(replica) + " vs replica " +
                          std::to_string(rec.first_replica) + " at index " + std::to_string(index) +
                          ": ";
  if (rec.entry_hash != entry_hash) Fail(index, who + "applied a different entry");
  if (rec.result_hash != result_hash) Fail(index, who + "different results");
  if (rec.digest != digest) Fail(index, who + "state digests differ");
}

void Ledger::Fail(uint64_t index, std::string what) {
  if (!failure_.empty()) return;
  failure_ = "index " + std::to_string(index) + ": " + std::move(what);
}

std::unique_ptr<replication::ApplyOutput> Replica::Apply(uint64_t index, std::string_view data) {
  log::v1::LogEntry entry;
  if (!entry.ParseFromArray(data.data(), static_cast<int>(data.size()))) {
    ledger_->Fail(index, "replica " + std::to_string(id_) + ": undecodable entry");
    return nullptr;
  }
  const uint64_t entry_hash = Fnv1a(data);
  log::v1::LogEntry applied = entry;
  if (bug_ == PlantedBug::kCorruptReplica && id_ == 1) {
    // Planted bug: this replica drops Release commands.
    for (auto& cmd : *applied.mutable_commands()) {
      if (cmd.has_release()) cmd.mutable_release()->set_owner("<dropped by planted bug>");
    }
  }
  core::ApplyResult r = sm_.Apply(index, applied);
  const uint64_t digest = sm_.Digest();
  ledger_->Record(id_, index, entry_hash, digest, entry, r);
  if (restore_every_ != 0 && index % restore_every_ == id_ % restore_every_) {
    core::StateMachine fresh;
    Status st = fresh.Restore(sm_.Snapshot());
    if (!st.ok() || fresh.Digest() != digest) {
      ledger_->Fail(index, "replica " + std::to_string(id_) + ": snapshot round trip " +
                               (st.ok() ? "changed the digest" : st.ToString()));
    }
    sm_ = std::move(fresh);
  }
  const std::string where = "replica " + std::to_string(id_) + ": ";
  if (std::string e = CheckMutualExclusion(sm_.locks()); !e.empty())
    ledger_->Fail(index, where + e);
  if (std::string e = CheckSemaphores(sm_.sync()); !e.empty()) ledger_->Fail(index, where + e);
  if (std::string e = fencing_.Observe(sm_.locks()); !e.empty()) ledger_->Fail(index, where + e);
  auto out = std::make_unique<Output>();
  out->result = std::move(r);
  out->entry_hash = entry_hash;
  return out;
}

}  // namespace latchkey::sim
