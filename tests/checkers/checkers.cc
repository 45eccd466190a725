#include "checkers/checkers.h"

#include <algorithm>
#include <climits>
#include <map>
#include <sstream>

namespace latchkey::checkers {

namespace {

constexpr size_t kMaxViolations = 20;

std::string Secs(int64_t ns) {
  if (ns == INT64_MAX) return "?";
  std::ostringstream o;
  o.setf(std::ios::fixed);
  o.precision(3);
  o << static_cast<double>(ns) / 1e9 << "s";
  return o.str();
}

std::string Describe(const Operation& op) {
  std::ostringstream o;
  o << "process " << op.process << " " << op.op << " " << op.key;
  if (!op.value.empty()) o << " value=" << op.value;
  if (op.token != 0) o << " token=" << op.token;
  if (op.session != 0) o << " session=" << op.session;
  o << " [" << Secs(op.invoke_time) << ".." << Secs(op.complete_time) << "]";
  return o.str();
}

void Add(CheckResult* r, std::string line) {
  if (r->violations.size() < kMaxViolations) r->violations.push_back(std::move(line));
}

}  // namespace

std::string CheckResult::Summary(size_t max_lines) const {
  if (ok()) return checker + ": ok";
  std::string out = checker + ": " + std::to_string(violations.size()) + " violation(s)";
  for (size_t i = 0; i < violations.size() && i < max_lines; ++i) out += "\n  " + violations[i];
  return out;
}

CheckResult CheckMutualExclusion(const std::vector<ResourceEntry>& log) {
  CheckResult r{"mutual-exclusion", {}};
  struct Interval {
    int64_t process = 0;
    uint64_t token = 0;
    uint64_t first = 0, last = 0;
    int64_t first_time = 0, last_time = 0;
  };
  // key -> (process, token) -> interval
  std::map<std::string, std::map<std::pair<int64_t, uint64_t>, Interval>> by_key;
  for (const ResourceEntry& e : log) {
    if (!e.accepted) continue;
    auto [it, fresh] = by_key[e.key].try_emplace({e.process, e.token});
    Interval& iv = it->second;
    if (fresh) {
      iv.process = e.process;
      iv.token = e.token;
      iv.first = e.seq;
      iv.first_time = e.time;
    }
    iv.last = std::max(iv.last, e.seq);
    iv.last_time = std::max(iv.last_time, e.time);
  }
  for (auto& [key, holders] : by_key) {
    std::vector<Interval> ivs;
    for (auto& [id, iv] : holders) ivs.push_back(iv);
    std::sort(ivs.begin(), ivs.end(),
              [](const Interval& a, const Interval& b) { return a.first < b.first; });
    const Interval* open = nullptr;  // the interval reaching furthest so far
    for (const Interval& iv : ivs) {
      if (open != nullptr && iv.first < open->last) {
        std::ostringstream o;
        o << "key " << key << ": holder process " << iv.process << " token " << iv.token
          << " (requests #" << iv.first << "..#" << iv.last << ", " << Secs(iv.first_time) << ".."
          << Secs(iv.last_time) << ") was let in while process " << open->process << " token "
          << open->token << " (#" << open->first << "..#" << open->last << ", "
          << Secs(open->first_time) << ".." << Secs(open->last_time) << ") was inside";
        Add(&r, o.str());
      }
      if (open == nullptr || iv.last > open->last) open = &iv;
    }
  }
  return r;
}

CheckResult CheckLockOverlap(const std::vector<Operation>& ops) {
  CheckResult r{"lock-exclusive", {}};
  struct Held {
    const Operation* acquire;
    const Operation* release;
  };
  std::map<std::string, std::vector<Held>> by_key;
  std::map<std::pair<int64_t, std::string>, const Operation*> open;  // (process, key)
  for (const Operation& op : ops) {  // in invoke order, so per process in program order
    if ((op.op == "acquire" || op.op == "write") && op.outcome == EventType::kOk) {
      open[{op.process, op.key}] = &op;
      continue;
    }
    if (op.op != "release") continue;
    auto it = open.find({op.process, op.key});
    if (it == open.end()) continue;
    if (op.outcome == EventType::kOk && op.session == it->second->session &&
        op.invoke_time >= it->second->complete_time) {
      by_key[op.key].push_back({it->second, &op});
    }
    open.erase(it);
  }
  for (auto& [key, held] : by_key) {
    std::sort(held.begin(), held.end(), [](const Held& a, const Held& b) {
      return a.acquire->complete_time < b.acquire->complete_time;
    });
    const Held* reach = nullptr;  // the interval reaching furthest so far
    for (const Held& h : held) {
      if (reach != nullptr && h.acquire->complete_time < reach->release->invoke_time) {
        Add(&r, "lock " + key + ": " + Describe(*h.acquire) + " was granted while " +
                    Describe(*reach->acquire) + " held it until its release at " +
                    Secs(reach->release->invoke_time));
      }
      if (reach == nullptr || h.release->invoke_time > reach->release->invoke_time) reach = &h;
    }
  }
  return r;
}

CheckResult CheckFencingMonotonic(const std::vector<Operation>& ops) {
  CheckResult r{"fencing-monotonic", {}};
  std::map<std::string, std::vector<const Operation*>> by_key;
  for (const Operation& op : ops) {
    // A register write is an acquire with a value: a grant too.
    if ((op.op == "acquire" || op.op == "write") && op.outcome == EventType::kOk && op.token != 0) {
      by_key[op.key].push_back(&op);
    }
  }
  for (auto& [key, grants] : by_key) {
    std::map<uint64_t, const Operation*> owner_of;
    for (const Operation* g : grants) {
      auto [it, fresh] = owner_of.emplace(g->token, g);
      if (!fresh && it->second->process != g->process) {
        Add(&r, "token " + std::to_string(g->token) + " granted twice: " + Describe(*it->second) +
                    " and " + Describe(*g));
      }
    }
    std::vector<const Operation*> by_invoke = grants, by_complete = grants;
    std::sort(by_invoke.begin(), by_invoke.end(),
              [](auto* a, auto* b) { return a->invoke_time < b->invoke_time; });
    std::sort(by_complete.begin(), by_complete.end(),
              [](auto* a, auto* b) { return a->complete_time < b->complete_time; });
    size_t done = 0;
    const Operation* max_before = nullptr;  // highest token completed before now
    for (const Operation* b : by_invoke) {
      while (done < by_complete.size() && by_complete[done]->complete_time < b->invoke_time) {
        const Operation* a = by_complete[done++];
        if (max_before == nullptr || a->token > max_before->token) max_before = a;
      }
      if (max_before != nullptr && max_before->token >= b->token) {
        Add(&r, "lock " + key + ": " + Describe(*b) + " was granted after " +
                    Describe(*max_before) + " completed, with a token not above it");
      }
    }
  }
  return r;
}

CheckResult CheckCounter(const std::vector<Operation>& ops, const std::string& key,
                         std::optional<int64_t> final_value) {
  CheckResult r{"no-lost-writes(" + key + ")", {}};
  std::map<int64_t, const Operation*> acked;
  int64_t unknown = 0, max_acked = 0;
  for (const Operation& op : ops) {
    if (op.op != "incr" || op.key != key) continue;
    if (op.outcome == EventType::kInfo) {
      ++unknown;
      continue;
    }
    if (op.outcome != EventType::kOk) continue;
    int64_t v = 0;
    try {
      v = std::stoll(op.value);
    } catch (...) {
      Add(&r, "acknowledged increment without a numeric value: " + Describe(op));
      continue;
    }
    auto [it, fresh] = acked.emplace(v, &op);
    if (!fresh) {
      Add(&r, "two acknowledged increments wrote " + std::to_string(v) +
                  " (one of them is lost): " + Describe(*it->second) + " and " + Describe(op));
    }
    max_acked = std::max(max_acked, v);
  }
  const int64_t n = static_cast<int64_t>(acked.size());
  if (!final_value) return r;
  if (*final_value < max_acked) {
    Add(&r, "final value " + std::to_string(*final_value) + " is below acknowledged write " +
                std::to_string(max_acked) + " (" + Describe(*acked[max_acked]) + ")");
  }
  int64_t acked_total = 0;
  for (const Operation& op : ops) {
    if (op.op == "incr" && op.key == key && op.outcome == EventType::kOk) ++acked_total;
  }
  if (*final_value < acked_total) {
    Add(&r, "final value " + std::to_string(*final_value) + " but " + std::to_string(acked_total) +
                " increments were acknowledged (" + std::to_string(acked_total - *final_value) +
                " lost)");
  }
  if (*final_value > n + unknown) {
    Add(&r, "final value " + std::to_string(*final_value) + " exceeds " + std::to_string(n) +
                " acknowledged + " + std::to_string(unknown) + " unknown increments");
  }
  return r;
}

CheckResult CheckSessionExpiry(const std::vector<Operation>& ops, const std::vector<Event>& notes,
                               const std::set<std::string>& write_ops) {
  CheckResult r{"session-expiry", {}};
  std::map<uint64_t, int64_t> expired_at;  // session -> earliest time a process learned it
  auto learn = [&](uint64_t session, int64_t t) {
    if (session == 0) return;
    auto [it, fresh] = expired_at.emplace(session, t);
    if (!fresh) it->second = std::min(it->second, t);
  };
  for (const Event& e : notes) {
    if (e.op == "session_lost") learn(e.session, e.time);
  }
  for (const Operation& op : ops) {
    if (op.outcome != EventType::kOk && op.error.rfind("SESSION_EXPIRED", 0) == 0 &&
        op.complete_time != INT64_MAX) {
      learn(op.session, op.complete_time);
    }
  }
  for (const Operation& op : ops) {
    if (op.outcome != EventType::kOk || !write_ops.count(op.op)) continue;
    auto it = expired_at.find(op.session);
    if (it != expired_at.end() && op.invoke_time > it->second) {
      Add(&r, "session " + std::to_string(op.session) + " was reported expired at " +
                  Secs(it->second) + ", yet " + Describe(op) + " was acknowledged");
    }
  }
  return r;
}

}  // namespace latchkey::checkers
