// Invariant checkers of the deterministic simulation. Pure functions over the
// core's state; each returns an empty string when the invariant holds, or a
// description of the violation.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "core/lock_table.h"
#include "core/sync_objects.h"

namespace latchkey::sim {

// Mutual exclusion: no two owners hold incompatible modes on one name, and
// no owner holds a name in a mode incompatible with the intention mode that a
// grant below it (held by another owner) implies.
std::string CheckMutualExclusion(const core::LockTable& locks);

// Semaphores never hand out more permits than their limit.
std::string CheckSemaphores(const core::SyncObjects& sync);

// Fencing tokens strictly increase per lock, as one replica sees its state
// over time: every (owner, token) that appears on a name must carry a token
// larger than every token that name showed before.
class FencingTracker {
 public:
  std::string Observe(const core::LockTable& locks);

 private:
  struct PerName {
    uint64_t max_token = 0;
    std::map<core::OwnerId, uint64_t> current;  // holder -> token last seen
  };
  std::map<std::string, PerName, std::less<>> names_;
};

}  // namespace latchkey::sim
