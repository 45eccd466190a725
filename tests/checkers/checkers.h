// History checkers for the nemesis (design record 0011). Each returns a
// CheckResult naming the checker and, for every violation found (up to a
// bound), one line explaining it with the processes, tokens and times
// involved.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "checkers/fenced_resource.h"
#include "checkers/history.h"

namespace latchkey::checkers {

struct CheckResult {
  std::string checker;
  std::vector<std::string> violations;
  bool ok() const { return violations.empty(); }
  // "checker: ok" or "checker: N violation(s): first; second; ..."
  std::string Summary(size_t max_lines = 5) const;
};

// (a) Mutual exclusion through the fenced resource: among ACCEPTED requests
// (in the resource's arrival order), the requests of one holder (process,
// token) on a key form an interval [first, last]; no two holders' intervals
// of the same key overlap. A stale holder whose requests are rejected leaves
// no trace; one whose requests are accepted while another holder is inside
// is a violation.
CheckResult CheckMutualExclusion(const std::vector<ResourceEntry>& log);

// (a') Mutual exclusion as the lock service's clients saw it: a process
// certainly held an exclusive lock from the moment its acquire (op
// "acquire" or "write", outcome ok) completed until it invoked the release
// that followed, when that release was acknowledged on its first attempt
// (the session was alive, so the grant was never lost in between). Two such
// intervals of one lock must not overlap in real time. Unlike (a) this
// catches a double grant even when fencing hides it from the resource.
CheckResult CheckLockOverlap(const std::vector<Operation>& ops);

// (b) Fencing tokens are monotonic in real-time order: for two acknowledged
// grants A and B of the same lock (op "acquire" or "write", outcome ok,
// token set) where A
// completed before B was invoked, token(A) < token(B). Also: one token is
// never granted to two different processes.
CheckResult CheckFencingMonotonic(const std::vector<Operation>& ops);

// (c) No lost acknowledged writes for a counter incremented under a lock:
// every ok "incr" of `key` reports the value it wrote (previous + 1). Its
// acknowledged values must be distinct, none may exceed the final value (a
// write that was later undone), and the final value must lie between the
// number of acknowledged increments and that plus the unknown (info) ones.
// final_value nullopt = the final read failed: only the distinctness check.
CheckResult CheckCounter(const std::vector<Operation>& ops, const std::string& key,
                         std::optional<int64_t> final_value);

// (e) Session-expiry semantics: once a process learned that session S
// expired (a "session_lost" note for S, or an operation of S failing with an
// error starting "SESSION_EXPIRED"), no operation of S whose op is in
// `write_ops` and that was invoked after that moment may be acknowledged.
CheckResult CheckSessionExpiry(const std::vector<Operation>& ops, const std::vector<Event>& notes,
                               const std::set<std::string>& write_ops);

}  // namespace latchkey::checkers
