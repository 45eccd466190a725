// Leader-side, off-log state of the object store (design record 0008):
// sliding TTL clocks, wait_for waiters and retention samples. Like session
// leases, none of it is replicated: a new leader rebuilds the clocks at a
// full TTL and starts sampling afresh, so it never expires or compacts
// earlier than the old leader would have.
//
// Thread-safety: none (raft loop thread).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace latchkey::server {

// Sliding TTLs: key -> deadline (monotonic ms), restarted by Touch.
class SlidingClocks {
 public:
  // Starts (or restarts) the clock of `key` at a full ttl.
  void Set(const std::string& key, uint64_t ttl_ms, uint64_t ttl_revision, uint64_t now_ms);
  // Restarts the clock if `key` has one.
  void Touch(const std::string& key, uint64_t now_ms);
  void Erase(const std::string& key);
  void Clear();
  // (key, ttl revision) whose deadline is <= now_ms; they stay until erased.
  std::vector<std::pair<std::string, uint64_t>> Due(uint64_t now_ms) const;
  size_t size() const { return clocks_.size(); }

 private:
  struct Clock {
    uint64_t ttl_ms = 0;
    uint64_t ttl_revision = 0;
    uint64_t deadline_ms = 0;
  };
  std::map<std::string, Clock, std::less<>> clocks_;
  std::set<std::pair<uint64_t, std::string>> by_time_;
};

// A wait_for blocked on a reserved key.
struct ObjectWaiter {
  uint64_t conn_id = 0;
  uint64_t request_id = 0;
  uint64_t deadline_mono_ms = 0;  // 0 = none
};

struct ObjectServerState {
  SlidingClocks sliding;
  std::set<std::string> expiring;  // ObjExpire proposed, not applied
  std::multimap<std::string, ObjectWaiter> waiters;
  // (monotonic ms, revision) samples for age-based retention.
  std::deque<std::pair<uint64_t, uint64_t>> samples;
  bool compacting = false;
  uint64_t last_compact_mono_ms = 0;
};

// Retention: the highest revision that may be compacted, keeping the last
// retain_revisions revisions and everything younger than retain_ms (0
// disables that bound; both 0 = never compact automatically). `samples`
// are (mono ms, revision) in ascending order.
uint64_t RetentionTarget(uint64_t revision, uint64_t now_mono_ms, uint64_t retain_revisions,
                         uint64_t retain_ms,
                         const std::deque<std::pair<uint64_t, uint64_t>>& samples);

}  // namespace latchkey::server
