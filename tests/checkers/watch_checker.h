// Gap-free watches (issue 7, design records 0011 and 0012): each watcher's
// events are exactly the committed writes of its prefix, in revision order,
// with no gap and no duplicate, across reconnects and resumes.
//
// The truth is built from the writers' histories, not from the server:
// - an acknowledged put / cas (outcome ok) was committed at the revision its
//   reply reported;
// - a linearizable read (ok) that returned a value with mod_revision R says
//   that value was committed at R, and so does the final read of each key;
// - a write of unknown outcome (info) was committed if anyone saw its value
//   (a read, a watcher, the final read), at the revision they saw; otherwise
//   it may or may not have been.
// Written values must be unique per key (the workload makes them so): a value
// then names its write.
//
// Violations:
// - two values committed at one (revision, key), or one write's value seen
//   at two revisions;
// - a watch event whose value no put / cas of that key ever wrote (phantom);
// - within one stream: an event out of (revision, key) order or repeated, or
//   below the stream's start revision;
// - a committed write of the prefix with a revision between the stream's
//   start and its last event that the stream lacks (gap);
// - when final values are given: a stream that never reached a key's final
//   mod_revision (the watcher fell behind for good).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "checkers/checkers.h"
#include "checkers/history.h"

namespace latchkey::checkers {

// One watcher's events in delivery order (events of op "event": key, value,
// revision; other events, e.g. notes about reconnects, are ignored).
struct WatchStream {
  int64_t watcher = 0;
  uint64_t from_revision = 0;  // the first revision it asked for
  std::vector<Event> events{};
};

struct FinalObject {
  std::string value{};
  uint64_t mod_revision = 0;  // 0 = absent (never written)
};

struct WatchCheckOptions {
  std::string prefix{};  // the watched prefix; writes of other keys are ignored
  std::string read_op = "get", write_op = "put", cas_op = "txn-cas";
  // key -> its value read after the heal (every writer stopped); empty = no
  // final read (no liveness check).
  std::map<std::string, FinalObject> final_state{};
  size_t max_violations = 20;
};

CheckResult CheckWatches(const std::vector<Operation>& ops, const std::vector<WatchStream>& streams,
                         const WatchCheckOptions& options);

}  // namespace latchkey::checkers
