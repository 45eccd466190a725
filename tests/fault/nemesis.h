// The nemesis driver (design record 0011): a cluster of real `latchkey`
// server processes (NemesisCluster), worker client processes
// (nemesis_worker) recording JSONL histories, the fenced resource they write
// through, and a randomized fault schedule derived from one seed. After the
// schedule it heals, waits for convergence, reads the final values and runs
// every checker.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "checkers/checkers.h"

namespace latchkey::testing {

struct NemesisOptions {
  uint64_t seed = 1;
  int seconds = 20;  // length of the fault schedule
  int nodes = 3;
  int workers = 4;
  int session_ttl_ms = 1500;  // of the workers' sessions
  bool netns = true;          // namespaces if root (partitions), else loopback
  // Faults to draw from: kill (kill -9 + restart), pause (SIGSTOP a server
  // past the lease, then SIGCONT), partition, transfer (leader transfer),
  // client-pause (SIGSTOP a worker past its lease), holder-pause (SIGSTOP a
  // worker inside the fenced resource, between reading the counter and
  // writing it back, until its lease ran out and another holder wrote it,
  // then SIGCONT).
  // member (remove a follower, wipe it, add it back empty with --join).
  std::set<std::string> faults = {"kill",         "pause",        "partition", "transfer",
                                  "client-pause", "holder-pause", "member"};
  bool fencing = true;          // false: the resource accepts stale tokens (broken mode)
  std::string keep_dir{};       // where to keep histories ("" = a dir under /tmp on failure)
  bool keep_on_failure = true;  // false: a run expected to fail leaves nothing behind
  // Object store workload (issue 7): the workers also get / put / txn-cas a
  // few keys, and `watchers` nemesis_watcher processes watch their prefix.
  bool objects = true;
  int watchers = 2;
  // Extra `latchkey server` arguments for every node (e.g. a planted bug:
  // --test-only-bug=NAME, with LATCHKEY_ALLOW_TEST_BUGS=1 in the environment).
  std::vector<std::string> server_args{};
  // The harness's own check: the nemesis SIGABRTs worker 1 once the workload
  // runs, as if the client library had aborted; the run must then fail.
  bool test_only_abort_a_worker = false;
};

struct NemesisReport {
  uint64_t seed = 0;
  std::string setup_error{};            // the run could not start
  std::string network{};                // "netns" or "loopback (why)"
  std::vector<std::string> schedule{};  // what the nemesis did, with times
  std::vector<checkers::CheckResult> results{};
  std::string convergence{};  // "" when the replicas converged
  // Node processes that died without the nemesis killing them (a crash):
  // "node N died of signal S", stamped. Any makes the run fail.
  std::vector<std::string> node_deaths{};
  // Client processes (workers, watchers) that exited before the nemesis
  // stopped them, or not cleanly when it did (a crash in the client library,
  // an exit on an error, a hang on SIGTERM): "worker K died of signal S".
  // Any makes the run fail. Each runs in its own directory under the
  // histories (worker-K/, watcher-K/), where its core file lands.
  std::vector<std::string> client_deaths{};
  uint64_t ok_acquires = 0, ok_increments = 0, ok_register_ops = 0, sessions_lost = 0;
  uint64_t rejected_by_fencing = 0;              // resource requests refused for a stale token
  uint64_t holder_pauses = 0;                    // holder-pause faults that caught a holder inside
  uint64_t ok_object_ops = 0, watch_events = 0;  // object get/put/txn-cas acknowledged; delivered
  double seconds = 0;
  std::string history_dir{};  // where the histories were kept ("" = removed)

  bool checkers_ok() const;
  bool ok() const {
    return setup_error.empty() && convergence.empty() && node_deaths.empty() &&
           client_deaths.empty() && checkers_ok();
  }
  // Seed, what ran, every checker's summary: the text a failing test prints.
  std::string Explain() const;
};

NemesisReport RunNemesis(const NemesisOptions& options);

// LATCHKEY_NEMESIS_SEED (default: from the clock) and
// LATCHKEY_NEMESIS_SECONDS (default: default_seconds).
uint64_t SeedFromEnv();
int SecondsFromEnv(int default_seconds);

}  // namespace latchkey::testing
