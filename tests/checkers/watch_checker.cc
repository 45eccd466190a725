#include "checkers/watch_checker.h"

#include <set>
#include <sstream>
#include <utility>

namespace latchkey::checkers {

namespace {

std::string Secs(int64_t ns) {
  if (ns == INT64_MAX) return "?";
  std::ostringstream o;
  o.setf(std::ios::fixed);
  o.precision(3);
  o << static_cast<double>(ns) / 1e9 << "s";
  return o.str();
}

std::string Quote(const std::string& s) {
  return "\"" + s + "\"";
}

std::string DescribeWrite(const Operation& op) {
  std::ostringstream o;
  o << "process " << op.process << " " << op.op << " " << op.key << "=" << Quote(op.value);
  if (op.outcome == EventType::kOk) {
    o << " (acknowledged, revision " << op.revision << ")";
  } else if (op.outcome == EventType::kInfo) {
    o << " (outcome unknown)";
  } else {
    o << " (failed: " << op.error << ")";
  }
  o << " [" << Secs(op.invoke_time) << ".." << Secs(op.complete_time) << "]";
  return o.str();
}

class Checker {
 public:
  Checker(const WatchCheckOptions& o, CheckResult* r) : o_(o), r_(r) {}

  void Add(const std::string& line) {
    ++total_;
    if (r_->violations.size() < o_.max_violations) r_->violations.push_back(line);
  }
  void Finish() {
    if (total_ > r_->violations.size()) {
      r_->violations.push_back("... " + std::to_string(total_ - r_->violations.size()) +
                               " more violation(s)");
    }
  }
  bool InPrefix(const std::string& key) const {
    return key.compare(0, o_.prefix.size(), o_.prefix) == 0;
  }

  // (revision, key) -> value, and (key, value) -> revision, each with who said so.
  void Commit(uint64_t rev, const std::string& key, const std::string& value,
              const std::string& who) {
    auto [it, fresh] = at_.emplace(std::make_pair(rev, key), std::make_pair(value, who));
    if (!fresh && it->second.first != value) {
      Add("revision " + std::to_string(rev) + " of " + key +
          " holds two values: " + Quote(it->second.first) + " (" + it->second.second + ") and " +
          Quote(value) + " (" + who + ")");
      return;
    }
    auto [vt, vfresh] = rev_of_.emplace(std::make_pair(key, value), std::make_pair(rev, who));
    if (!vfresh && vt->second.first != rev) {
      Add(key + "=" + Quote(value) + " seen at two revisions: " + std::to_string(vt->second.first) +
          " (" + vt->second.second + ") and " + std::to_string(rev) + " (" + who + ")");
    }
  }

  const WatchCheckOptions& o_;
  CheckResult* r_;
  size_t total_ = 0;
  std::map<std::pair<uint64_t, std::string>, std::pair<std::string, std::string>> at_;
  std::map<std::pair<std::string, std::string>, std::pair<uint64_t, std::string>> rev_of_;
};

}  // namespace

CheckResult CheckWatches(const std::vector<Operation>& ops, const std::vector<WatchStream>& streams,
                         const WatchCheckOptions& options) {
  CheckResult result{"gap-free-watches(" + options.prefix + ")", {}};
  Checker c(options, &result);

  // Every write of the prefix by (key, value).
  std::map<std::pair<std::string, std::string>, std::vector<const Operation*>> writes;
  for (const Operation& op : ops) {
    if (!c.InPrefix(op.key)) continue;
    if (op.op == options.write_op || op.op == options.cas_op) {
      writes[{op.key, op.value}].push_back(&op);
    }
  }
  for (const auto& [kv, list] : writes) {
    if (list.size() > 1) {
      c.Add(kv.first + "=" + Quote(kv.second) + " written twice (values must be unique): " +
            DescribeWrite(*list[0]) + " and " + DescribeWrite(*list[1]));
    }
  }
  // What certainly was committed, and where.
  for (const Operation& op : ops) {
    if (!c.InPrefix(op.key) || op.outcome != EventType::kOk) continue;
    if (op.op == options.write_op || op.op == options.cas_op) {
      if (op.revision == 0) {
        c.Add(DescribeWrite(op) + " was acknowledged without a revision");
        continue;
      }
      c.Commit(op.revision, op.key, op.value,
               "acknowledged to process " + std::to_string(op.process) + " at " +
                   Secs(op.complete_time));
    } else if (op.op == options.read_op && op.revision != 0) {
      c.Commit(op.revision, op.key, op.value,
               "read by process " + std::to_string(op.process) + " at " + Secs(op.complete_time));
    }
  }
  for (const auto& [key, f] : options.final_state) {
    if (f.mod_revision != 0) c.Commit(f.mod_revision, key, f.value, "final read");
  }
  // Watch events: a value must come from a write that did not fail.
  for (const WatchStream& s : streams) {
    for (const Event& e : s.events) {
      if (e.op != "event") continue;
      const std::string who = "watcher " + std::to_string(s.watcher) + " at " + Secs(e.time);
      auto it = writes.find({e.key, e.value});
      bool possible = false;
      if (it != writes.end()) {
        for (const Operation* w : it->second) possible |= w->outcome != EventType::kFail;
      }
      if (!possible) {
        c.Add(who + " got " + e.key + "=" + Quote(e.value) + " at revision " +
              std::to_string(e.revision) + ", which no write that did not fail wrote" +
              (it != writes.end() ? ": " + DescribeWrite(*it->second[0]) : std::string()));
        continue;
      }
      c.Commit(e.revision, e.key, e.value, who);
    }
  }
  uint64_t final_rev = 0;
  for (const auto& [key, f] : options.final_state) final_rev = std::max(final_rev, f.mod_revision);

  // Each stream: ordered, no duplicates, no gaps up to where it got.
  for (const WatchStream& s : streams) {
    const std::string name = "watcher " + std::to_string(s.watcher);
    std::set<std::pair<uint64_t, std::string>> seen;
    std::pair<uint64_t, std::string> last{0, ""};
    bool any = false;
    for (const Event& e : s.events) {
      if (e.op != "event") continue;
      const std::pair<uint64_t, std::string> at{e.revision, e.key};
      if (e.revision < s.from_revision) {
        c.Add(name + " got revision " + std::to_string(e.revision) + " of " + e.key +
              " below its start revision " + std::to_string(s.from_revision));
      }
      if (!seen.insert(at).second) {
        c.Add(name + " got revision " + std::to_string(e.revision) + " of " + e.key +
              " twice (again at " + Secs(e.time) + ")");
      } else if (any && at < last) {
        c.Add(name + " got revision " + std::to_string(e.revision) + " of " + e.key +
              " after revision " + std::to_string(last.first) + " of " + last.second +
              " (out of order, at " + Secs(e.time) + ")");
      }
      if (!any || at > last) last = at;
      any = true;
    }
    const uint64_t end = any ? last.first : 0;
    for (const auto& [at, vw] : c.at_) {
      if (at.first < s.from_revision || at.first > end || !c.InPrefix(at.second)) continue;
      if (!seen.count(at)) {
        c.Add(name + " missed revision " + std::to_string(at.first) + ": " + at.second + "=" +
              Quote(vw.first) + " (" + vw.second + ")");
      }
    }
    if (final_rev != 0 && end < final_rev) {
      c.Add(name + " stopped at revision " + std::to_string(end) +
            ", before the final revision of its prefix " + std::to_string(final_rev));
    }
  }
  c.Finish();
  return result;
}

}  // namespace latchkey::checkers
