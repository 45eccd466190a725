#include "sim/sim_checkers.h"

#include <string_view>
#include <vector>

namespace latchkey::sim {

namespace {

struct Held {
  std::string_view name;
  const core::OwnerId* who;
  core::Mode mode;
  uint64_t token;
};

bool IsStrictAncestor(std::string_view a, std::string_view b) {
  return b.size() > a.size() && b.substr(0, a.size()) == a && b[a.size()] == '.';
}

std::string Describe(const Held& h) {
  return std::string(h.name) + " " + std::string(core::ModeName(h.mode)) + " by " +
         core::DescribeOwner(*h.who) + " (token " + std::to_string(h.token) + ")";
}

}  // namespace

std::string CheckMutualExclusion(const core::LockTable& locks) {
  std::vector<Held> held;
  for (const auto& [name, res] : locks.resources()) {
    for (const auto& [who, g] : res.holders) held.push_back({name, &who, g.mode, g.fencing_token});
  }
  for (size_t i = 0; i < held.size(); ++i) {
    for (size_t j = i + 1; j < held.size(); ++j) {
      const Held& a = held[i];
      const Held& b = held[j];
      if (*a.who == *b.who) continue;  // an owner never conflicts with itself
      bool ok = true;
      if (a.name == b.name) {
        ok = core::Compatible(a.mode, b.mode);
      } else if (IsStrictAncestor(a.name, b.name)) {
        ok = core::Compatible(a.mode, core::IntentionFor(b.mode));
      } else if (IsStrictAncestor(b.name, a.name)) {
        ok = core::Compatible(b.mode, core::IntentionFor(a.mode));
      }
      if (!ok) return "mutual exclusion violated: " + Describe(a) + " and " + Describe(b);
    }
  }
  return {};
}

std::string CheckSemaphores(const core::SyncObjects& sync) {
  for (const auto& [name, sem] : sync.semaphores()) {
    uint64_t sum = 0;
    for (const auto& [who, g] : sem.holders) sum += g.permits;
    if (sum > sem.limit || sum != sem.used) {
      return "semaphore " + name + ": holders have " + std::to_string(sum) + " permits, used " +
             std::to_string(sem.used) + ", limit " + std::to_string(sem.limit);
    }
  }
  return {};
}

std::string FencingTracker::Observe(const core::LockTable& locks) {
  for (const auto& [name, res] : locks.resources()) {
    if (res.holders.empty()) continue;
    auto it = names_.find(name);
    if (it == names_.end()) it = names_.emplace(name, PerName{}).first;
    PerName& p = it->second;
    uint64_t new_max = p.max_token;
    for (const auto& [who, g] : res.holders) {
      auto cur = p.current.find(who);
      if (cur != p.current.end() && cur->second == g.fencing_token) continue;  // seen
      if (g.fencing_token <= p.max_token) {
        return "fencing token did not increase on " + name + ": " + core::DescribeOwner(who) +
               " holds token " + std::to_string(g.fencing_token) + " after token " +
               std::to_string(p.max_token) + " was seen";
      }
      new_max = std::max(new_max, g.fencing_token);
    }
    p.max_token = new_max;
    p.current.clear();
    for (const auto& [who, g] : res.holders) p.current[who] = g.fencing_token;
  }
  // Names with no holders now: forget who held them (keep the max).
  for (auto& [name, p] : names_) {
    const core::Resource* r = locks.Find(name);
    if (r == nullptr || r->holders.empty()) p.current.clear();
  }
  return {};
}

}  // namespace latchkey::sim
