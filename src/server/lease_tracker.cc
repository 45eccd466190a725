#include "server/lease_tracker.h"

namespace latchkey::server {

void LeaseTracker::Renew(uint64_t session, uint64_t ttl_ms, uint64_t now_ms) {
  const uint64_t deadline = now_ms + ttl_ms;
  auto [it, inserted] = deadline_.try_emplace(session, deadline);
  if (!inserted) {
    if (it->second == deadline) return;
    by_time_.erase({it->second, session});
    it->second = deadline;
  }
  by_time_.emplace(deadline, session);
}

void LeaseTracker::Remove(uint64_t session) {
  auto it = deadline_.find(session);
  if (it == deadline_.end()) return;
  by_time_.erase({it->second, session});
  deadline_.erase(it);
}

void LeaseTracker::Clear() {
  deadline_.clear();
  by_time_.clear();
}

std::vector<uint64_t> LeaseTracker::Expired(uint64_t now_ms) const {
  std::vector<uint64_t> out;
  for (const auto& [deadline, session] : by_time_) {
    if (deadline > now_ms) break;
    out.push_back(session);
  }
  return out;
}

}  // namespace latchkey::server
