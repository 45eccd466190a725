// Session lease deadlines, kept by the leader only and never replicated:
// renewals stay off the log (etcd's lessor pattern). A node that becomes
// leader (or restarts) gives every session a full TTL before expiring any.
//
// Thread-safety: none (used on the raft loop thread).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <utility>
#include <vector>

namespace latchkey::server {

class LeaseTracker {
 public:
  // Sets the deadline of `session` to now_ms + ttl_ms (adds it if unknown).
  void Renew(uint64_t session, uint64_t ttl_ms, uint64_t now_ms);
  void Remove(uint64_t session);
  void Clear();
  bool Contains(uint64_t session) const { return deadline_.count(session) != 0; }
  // Sessions whose deadline is <= now_ms, oldest first. They stay tracked
  // (with their deadline) until Remove()d, so callers must remember which
  // expiries they already proposed.
  std::vector<uint64_t> Expired(uint64_t now_ms) const;
  size_t size() const { return deadline_.size(); }

 private:
  std::map<uint64_t, uint64_t> deadline_;            // session -> deadline
  std::set<std::pair<uint64_t, uint64_t>> by_time_;  // (deadline, session)
};

}  // namespace latchkey::server
