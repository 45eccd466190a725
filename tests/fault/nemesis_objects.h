// The object-store part of the nemesis (issue 7): watcher processes
// (nemesis_watcher) on the object prefix, the final read of every object
// key, and the object checkers (per-key register linearizability of
// get / put / txn-cas, gap-free watches).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "checkers/checkers.h"
#include "checkers/history.h"
#include "checkers/watch_checker.h"

namespace latchkey::testing {

class NemesisWatchers {
 public:
  // Starts `count` watchers (process numbers 101, 102, ...) on the object
  // prefix from revision 1, writing history-watch-N.jsonl under dir.
  void Start(int count, const std::string& endpoints, const std::string& dir, uint64_t seed);
  // Waits until every watcher has returned an event at or past `revision`.
  bool WaitCaughtUp(uint64_t revision, std::chrono::milliseconds deadline, std::string* why);
  // Notes (in *deaths) and forgets every watcher that has exited: none
  // should before StopAll.
  void Reap(std::vector<std::string>* deaths);
  // SIGTERM (then SIGKILL after a bound) and reap; a watcher that does not
  // exit with status 0 is noted in *deaths if given.
  void StopAll(std::vector<std::string>* deaths = nullptr);
  ~NemesisWatchers() { StopAll(); }
  std::vector<checkers::WatchStream> Streams(int64_t base_ns) const;
  // Events returned in all, reconnects and resumes noted.
  uint64_t events() const;

 private:
  std::vector<pid_t> pids_;
  std::vector<std::string> files_;
};

// Every object key's value and mod_revision, read (linearizably) after the
// workers stopped; an empty map if it could not be read within the deadline.
std::map<std::string, checkers::FinalObject> ReadFinalObjects(const std::string& endpoints,
                                                              std::chrono::milliseconds deadline);

// linearizable(KEY) for every object key, and gap-free-watches.
std::vector<checkers::CheckResult> CheckObjects(
    const std::vector<checkers::Operation>& ops, const std::vector<checkers::WatchStream>& streams,
    const std::map<std::string, checkers::FinalObject>& final_state);

}  // namespace latchkey::testing
