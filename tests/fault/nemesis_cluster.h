// NemesisCluster: N real `latchkey server` processes for the nemesis
// (design record 0011), each in its own network namespace when the test runs
// as root (partitions then work, with blackhole routes as in
// partition_fault_test), otherwise on 127.0.0.1 (no partitions). Faults:
// kill -9 + restart, SIGSTOP / SIGCONT, partitions, leader transfer through
// the `latchkey member transfer-leader` CLI. Every wait polls with a
// deadline.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "latchkey.pb.h"
#include "testlib/server_process.h"

namespace latchkey::testing {

class NemesisCluster {
 public:
  // netns=true asks for namespaces; Init() falls back to loopback (and says
  // why in fallback_reason()) when they cannot be made.
  NemesisCluster(int nodes, bool netns, std::vector<std::string> extra_args = {});
  ~NemesisCluster();

  bool Init();  // namespaces (if any), ports; then Start()
  bool Start();
  bool partitions_supported() const { return netns_; }
  const std::string& fallback_reason() const { return fallback_reason_; }
  int size() const { return nodes_; }

  std::string ClientAddr(uint64_t id) const;
  std::string RaftAddr(uint64_t id) const;
  std::string Endpoints() const;  // every node, running or not

  bool running(uint64_t id) const { return pids_[id - 1] > 0; }
  bool stopped(uint64_t id) const { return stopped_.count(id) > 0; }
  bool StartNode(uint64_t id);
  void Kill9(uint64_t id);
  void Stop(uint64_t id);  // SIGSTOP
  void Cont(uint64_t id);  // SIGCONT
  // Cuts the nodes into groups: nodes of different groups cannot talk to
  // each other (both directions). The test and the workers (on the bridge)
  // still reach every node, unless cut_clients: then the nodes of groups[0]
  // cannot reach the bridge either (their clients' connections stall).
  bool Partition(const std::vector<std::vector<uint64_t>>& groups, bool cut_clients = false);
  bool Heal();
  // `latchkey member transfer-leader --id to` against every endpoint, bounded
  // by a deadline. Returns the CLI's exit code (or -1 if it had to be killed).
  int TransferLeader(uint64_t to, std::chrono::milliseconds deadline);
  // Membership change: `latchkey member remove` of node id (not the
  // leader), kill it, wipe its data dir, start it empty with --join and
  // `latchkey member add` it back (it becomes a voter once caught up).
  // Returns what happened; a node left out (e.g. a remove answered
  // MAYBE_APPLIED that did apply) is re-added by Rejoin().
  std::string RemoveAndRejoin(uint64_t id, std::chrono::milliseconds deadline);
  // `latchkey member remove` only (the node keeps running, outside the
  // configuration); returns the CLI's last line.
  std::string RemoveOnly(uint64_t id, std::chrono::milliseconds deadline);
  // Makes every node a voter again per `latchkey member list` (wipe, --join,
  // add; bounded). True if all are voters.
  bool Rejoin(std::chrono::milliseconds deadline);
  // What the member CLI said while Rejoin() retried.
  const std::vector<std::string>& rejoin_log() const { return rejoin_log_; }

  // The leader as the running, unpaused nodes agree; 0 if none yet.
  uint64_t Leader();
  // Waits until every node runs, they agree on a leader, and all report the
  // same applied index and state digest.
  // On failure, why names the last poll's reason, then which nodes did not
  // answer in how many polls and when each last answered; a node alive but
  // silent at the end gets its thread stacks (gdb) appended to its log.
  bool WaitConverged(std::chrono::milliseconds deadline, std::string* why);
  std::string NodeLog(uint64_t id) const;
  // Nodes found dead that nobody killed ("node N died of signal S"), since
  // the last call. Checked by Kill9 (before it kills), and here for all.
  std::vector<std::string> TakeDeaths();

 private:
  int Ip(std::vector<std::string> args, std::string* out = nullptr);
  void CleanupNet();
  void DumpStacks(uint64_t id);  // gdb backtraces of a live node, into its log

  int nodes_;
  bool netns_;
  std::vector<std::string> extra_args_;
  std::string fallback_reason_;
  std::string ip_, bridge_, subnet_;
  std::vector<std::string> ns_, veth_;
  std::vector<int> client_ports_, raft_ports_;
  std::vector<pid_t> pids_;
  std::vector<std::string> deaths_;
  bool ReapIfDead(uint64_t id);  // true (and noted in deaths_) if it had exited
  // Runs `latchkey member ARGS` bounded by deadline; its output goes to out
  // (default: a scratch file), its last line to last_member_output_.
  int MemberCli(const std::vector<std::string>& args, std::chrono::milliseconds deadline,
                std::string out = {});
  std::optional<std::set<uint64_t>> Voters();  // per `member list`

  std::set<uint64_t> stopped_;
  std::set<uint64_t> joining_;      // started with --join (after a wipe)
  std::string last_member_output_;  // last line the member CLI printed
  std::vector<std::string> rejoin_log_;
  std::set<std::pair<uint64_t, uint64_t>> blackholes_;  // (in ns of a, route to host b)
  bool net_created_ = false;
  TempDir dir_;
};

}  // namespace latchkey::testing
