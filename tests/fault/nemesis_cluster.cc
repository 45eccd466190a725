#include "fault/nemesis_cluster.h"

#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <utility>

#include "testlib/cluster_process.h"

namespace latchkey::testing {

namespace {

constexpr int kNsClientPort = 7411;
constexpr int kNsRaftPort = 7412;

std::string IpBinary() {
  for (const char* p : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}) {
    if (access(p, X_OK) == 0) return p;
  }
  return "";
}

}  // namespace

NemesisCluster::NemesisCluster(int nodes, bool netns, std::vector<std::string> extra_args)
    : nodes_(nodes),
      netns_(netns),
      extra_args_(std::move(extra_args)),
      pids_(static_cast<size_t>(nodes), -1) {}

NemesisCluster::~NemesisCluster() {
  for (uint64_t id = 1; id <= static_cast<uint64_t>(nodes_); ++id) Kill9(id);
  if (net_created_) CleanupNet();
}

int NemesisCluster::Ip(std::vector<std::string> args, std::string* out) {
  args.insert(args.begin(), ip_);
  return RunCommand(args, out);
}

void NemesisCluster::CleanupNet() {
  for (size_t i = 0; i < ns_.size(); ++i) {
    Ip({"netns", "del", ns_[i]});
    Ip({"link", "del", veth_[i]});
  }
  if (!bridge_.empty()) Ip({"link", "del", bridge_});
}

// LATCHKEY_NEMESIS_LOG_LEVEL (debug, info, warn, error) for the servers.
static std::string ServerLogLevel() {
  const char* l = std::getenv("LATCHKEY_NEMESIS_LOG_LEVEL");
  return l != nullptr ? l : "warn";
}

bool NemesisCluster::Init() {
  if (netns_) {
    ip_ = IpBinary();
    if (geteuid() != 0) {
      fallback_reason_ = "not root";
    } else if (ip_.empty()) {
      fallback_reason_ = "iproute2 `ip` not found";
    }
    if (!fallback_reason_.empty()) netns_ = false;
  }
  if (netns_) {
    const std::string tag = "nm" + std::to_string(getpid());
    bridge_ = tag + "br";
    for (int i = 0; i < nodes_; ++i) {
      ns_.push_back(tag + "n" + std::to_string(i + 1));
      veth_.push_back(tag + "v" + std::to_string(i + 1));
    }
    // A private /24 inside the test's own namespaces; skip routed ones.
    for (int k = 0; k < 200 && subnet_.empty(); ++k) {
      const std::string s = "10.214." + std::to_string((getpid() + k) % 200 + 20);
      std::string out;
      Ip({"-4", "route", "show", "to", "match", s + ".1"}, &out);
      if (out.find(s + ".0/24") == std::string::npos) subnet_ = s;
    }
    std::string err;
    if (subnet_.empty()) {
      fallback_reason_ = "no free 10.214.x.0/24 subnet";
      netns_ = false;
    } else if (Ip({"netns", "add", ns_[0]}, &err) != 0) {
      fallback_reason_ = "cannot create network namespaces: " + err;
      netns_ = false;
    }
  }
  if (netns_) {
    net_created_ = true;
    auto must = [&](const std::vector<std::string>& a) {
      std::string out;
      if (Ip(a, &out) == 0) return true;
      fallback_reason_ = "ip command failed: " + out;
      return false;
    };
    if (!must({"link", "add", bridge_, "type", "bridge"}) ||
        !must({"addr", "add", subnet_ + ".254/24", "dev", bridge_}) ||
        !must({"link", "set", bridge_, "up"})) {
      return false;
    }
    for (int i = 0; i < nodes_; ++i) {
      const std::string inside = "nm" + std::to_string(getpid()) + "i" + std::to_string(i + 1);
      const std::string host = subnet_ + "." + std::to_string(i + 1);
      if ((i > 0 && !must({"netns", "add", ns_[static_cast<size_t>(i)]})) ||
          !must({"link", "add", veth_[static_cast<size_t>(i)], "type", "veth", "peer", "name",
                 inside}) ||
          !must({"link", "set", inside, "netns", ns_[static_cast<size_t>(i)]}) ||
          !must({"link", "set", veth_[static_cast<size_t>(i)], "master", bridge_}) ||
          !must({"link", "set", veth_[static_cast<size_t>(i)], "up"}) ||
          !must({"-n", ns_[static_cast<size_t>(i)], "addr", "add", host + "/24", "dev", inside}) ||
          !must({"-n", ns_[static_cast<size_t>(i)], "link", "set", inside, "up"}) ||
          !must({"-n", ns_[static_cast<size_t>(i)], "link", "set", "lo", "up"})) {
        return false;
      }
    }
  } else {
    for (int i = 0; i < nodes_; ++i) {
      client_ports_.push_back(PickFreePort());
      raft_ports_.push_back(PickFreePort());
    }
  }
  if (!Start()) return false;
  if (!netns_) return true;
  // Some sandboxes create the namespaces and the bridge but do not forward
  // between them: then run on loopback rather than fail (the report names
  // the reason, and the schedule has no partitions).
  const bool reachable = WaitFor(
      [&] {
        for (uint64_t id = 1; id <= static_cast<uint64_t>(nodes_); ++id) {
          if (QueryStatus(ClientAddr(id), std::chrono::milliseconds(300))) return true;
        }
        return false;
      },
      std::chrono::seconds(10));
  if (reachable) return true;
  for (uint64_t id = 1; id <= static_cast<uint64_t>(nodes_); ++id) Kill9(id);
  CleanupNet();
  net_created_ = false;
  ns_.clear();
  veth_.clear();
  bridge_.clear();
  netns_ = false;
  fallback_reason_ = "the host could not reach the nodes inside their network namespaces";
  std::error_code ec;
  for (uint64_t id = 1; id <= static_cast<uint64_t>(nodes_); ++id) {
    std::filesystem::remove_all(dir_.File("node" + std::to_string(id)), ec);
  }
  for (int i = 0; i < nodes_; ++i) {
    client_ports_.push_back(PickFreePort());
    raft_ports_.push_back(PickFreePort());
  }
  return Start();
}

std::string NemesisCluster::ClientAddr(uint64_t id) const {
  if (netns_) return subnet_ + "." + std::to_string(id) + ":" + std::to_string(kNsClientPort);
  return "127.0.0.1:" + std::to_string(client_ports_.at(id - 1));
}

std::string NemesisCluster::RaftAddr(uint64_t id) const {
  if (netns_) return subnet_ + "." + std::to_string(id) + ":" + std::to_string(kNsRaftPort);
  return "127.0.0.1:" + std::to_string(raft_ports_.at(id - 1));
}

std::string NemesisCluster::Endpoints() const {
  std::string out;
  for (uint64_t id = 1; id <= static_cast<uint64_t>(nodes_); ++id) {
    out += (out.empty() ? "" : ",") + ClientAddr(id);
  }
  return out;
}

bool NemesisCluster::Start() {
  for (uint64_t id = 1; id <= static_cast<uint64_t>(nodes_); ++id) {
    if (!StartNode(id)) return false;
  }
  return true;
}

bool NemesisCluster::StartNode(uint64_t id) {
  if (running(id)) return true;
  std::string peers;
  for (uint64_t p = 1; p <= static_cast<uint64_t>(nodes_); ++p) {
    peers +=
        (peers.empty() ? "" : ",") + std::to_string(p) + "=" + RaftAddr(p) + "@" + ClientAddr(p);
  }
  const std::string data = dir_.File("node" + std::to_string(id));
  const std::string ready = data + ".ready";
  std::remove(ready.c_str());
  std::vector<std::string> argv;
  if (netns_) argv = {ip_, "netns", "exec", ns_[id - 1]};  // execs in place: same pid
  std::vector<std::string> server = {
      LatchkeyBinary(), "server", "--node-id",   std::to_string(id), "--peers",        peers,
      "--data-dir",     data,     "--listen",    ClientAddr(id),     "--raft-address", RaftAddr(id),
      "--ready-file",   ready,    "--log-level", ServerLogLevel()};
  argv.insert(argv.end(), server.begin(), server.end());
  if (joining_.count(id)) argv.push_back("--join");  // its data dir was wiped
  argv.insert(argv.end(), extra_args_.begin(), extra_args_.end());
  pids_[id - 1] = SpawnCommand(argv, data + ".log");
  return WaitFor([&] { return std::ifstream(ready).good(); }, std::chrono::seconds(15));
}

bool NemesisCluster::ReapIfDead(uint64_t id) {
  pid_t& p = pids_[id - 1];
  const std::optional<std::string> how = ReapIfExited(p);
  if (!how) return false;
  deaths_.push_back("node " + std::to_string(id) + " " + *how);
  p = -1;
  stopped_.erase(id);
  return true;
}

std::vector<std::string> NemesisCluster::TakeDeaths() {
  for (uint64_t id = 1; id <= static_cast<uint64_t>(nodes_); ++id) ReapIfDead(id);
  return std::exchange(deaths_, {});
}

void NemesisCluster::Kill9(uint64_t id) {
  if (ReapIfDead(id)) return;  // it crashed meanwhile: say so rather than hide it
  pid_t& p = pids_[id - 1];
  if (p <= 0) return;
  kill(p, SIGKILL);
  WaitPid(p);
  p = -1;
  stopped_.erase(id);
}

void NemesisCluster::Stop(uint64_t id) {
  if (pids_[id - 1] <= 0) return;
  kill(pids_[id - 1], SIGSTOP);
  stopped_.insert(id);
}

void NemesisCluster::Cont(uint64_t id) {
  if (pids_[id - 1] <= 0) return;
  kill(pids_[id - 1], SIGCONT);
  stopped_.erase(id);
}

bool NemesisCluster::Partition(const std::vector<std::vector<uint64_t>>& groups, bool cut_clients) {
  if (!netns_) return false;
  bool ok = true;
  constexpr uint64_t kBridgeHost = 254;
  if (cut_clients && !groups.empty()) {
    for (uint64_t a : groups[0]) {
      if (!blackholes_.insert({a, kBridgeHost}).second) continue;
      ok &= Ip({"-n", ns_[a - 1], "route", "add", "blackhole",
                subnet_ + "." + std::to_string(kBridgeHost) + "/32"}) == 0;
    }
  }
  for (size_t g = 0; g < groups.size(); ++g) {
    for (size_t h = 0; h < groups.size(); ++h) {
      if (g == h) continue;
      for (uint64_t a : groups[g]) {
        for (uint64_t b : groups[h]) {
          if (!blackholes_.insert({a, b}).second) continue;
          ok &= Ip({"-n", ns_[a - 1], "route", "add", "blackhole",
                    subnet_ + "." + std::to_string(b) + "/32"}) == 0;
        }
      }
    }
  }
  return ok;
}

bool NemesisCluster::Heal() {
  bool ok = true;
  for (auto [a, b] : blackholes_) {
    ok &= Ip({"-n", ns_[a - 1], "route", "del", "blackhole",
              subnet_ + "." + std::to_string(b) + "/32"}) == 0;
  }
  blackholes_.clear();
  return ok;
}

int NemesisCluster::TransferLeader(uint64_t to, std::chrono::milliseconds deadline) {
  return MemberCli({"transfer-leader", "--id", std::to_string(to)}, deadline);
}

std::string NemesisCluster::RemoveAndRejoin(uint64_t id, std::chrono::milliseconds deadline) {
  const std::string node = "node " + std::to_string(id);
  int rc = MemberCli({"remove", "--id", std::to_string(id)}, deadline);
  if (rc != 0) {
    return "member remove " + node + ": exit " + std::to_string(rc) +
           " (kept): " + last_member_output_;
  }
  Kill9(id);
  std::error_code ec;
  std::filesystem::remove_all(dir_.File("node" + std::to_string(id)), ec);
  joining_.insert(id);
  if (!StartNode(id)) return "removed " + node + ", which did not start again with --join";
  rc = MemberCli({"add", "--id", std::to_string(id), "--raft-address", RaftAddr(id),
                  "--client-address", ClientAddr(id)},
                 deadline);
  if (rc != 0) {
    return "removed " + node + ", wiped; member add: exit " + std::to_string(rc) + ": " +
           last_member_output_;
  }
  return "removed " + node + ", wiped it, added it back empty";
}

std::string NemesisCluster::RemoveOnly(uint64_t id, std::chrono::milliseconds deadline) {
  const int rc = MemberCli({"remove", "--id", std::to_string(id)}, deadline);
  return "exit " + std::to_string(rc) + ": " + last_member_output_;
}

std::optional<std::set<uint64_t>> NemesisCluster::Voters() {
  const std::string out = dir_.File("member-list.out");
  std::remove(out.c_str());
  if (MemberCli({"list"}, std::chrono::seconds(5), out) != 0) return std::nullopt;
  std::ifstream f(out);
  std::string line;
  std::set<uint64_t> voters;
  while (std::getline(f, line)) {
    std::istringstream in(line);
    uint64_t id = 0;
    std::string role;
    if (in >> id >> role && role == "voter") voters.insert(id);
  }
  return voters;
}

bool NemesisCluster::Rejoin(std::chrono::milliseconds deadline) {
  // Ask the leader which nodes vote: a remove answered MAYBE_APPLIED may
  // have taken effect, and an add may have left a spare behind.
  const auto end = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < end) {
    auto voters = Voters();
    if (!voters) {
      rejoin_log_.push_back("member list: " + last_member_output_);
      continue;
    }
    std::vector<uint64_t> missing;
    for (uint64_t id = 1; id <= static_cast<uint64_t>(nodes_); ++id) {
      if (!voters->count(id)) missing.push_back(id);
    }
    if (missing.empty()) return true;
    for (uint64_t id : missing) {
      MemberCli({"remove", "--id", std::to_string(id)}, std::chrono::seconds(10));
      rejoin_log_.push_back("node " + std::to_string(id) +
                            " is not a voter; remove: " + last_member_output_);
      Kill9(id);
      std::error_code ec;
      std::filesystem::remove_all(dir_.File("node" + std::to_string(id)), ec);
      joining_.insert(id);
      StartNode(id);
      const int rc = MemberCli({"add", "--id", std::to_string(id), "--raft-address", RaftAddr(id),
                                "--client-address", ClientAddr(id)},
                               std::chrono::seconds(20));
      rejoin_log_.push_back("add node " + std::to_string(id) + ": exit " + std::to_string(rc) +
                            ": " + last_member_output_);
    }
  }
  return false;
}

int NemesisCluster::MemberCli(const std::vector<std::string>& args,
                              std::chrono::milliseconds deadline, std::string out) {
  std::vector<std::string> argv = {LatchkeyBinary(), "member", "-e", Endpoints()};
  argv.insert(argv.end(), args.begin(), args.end());
  if (out.empty()) out = dir_.File("member.out");
  std::remove(out.c_str());
  pid_t pid = SpawnCommand(argv, out);
  int status = 0;
  const bool exited = WaitFor([&] { return waitpid(pid, &status, WNOHANG) == pid; }, deadline);
  int rc = -1;
  if (!exited) {
    kill(pid, SIGKILL);
    WaitPid(pid);
  } else {
    rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  std::ifstream f(out);
  std::string text(std::istreambuf_iterator<char>(f), {});
  while (!text.empty() && text.back() == '\n') text.pop_back();
  last_member_output_ =
      text.substr(text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1);
  if (!exited) last_member_output_ += " (killed after the deadline)";
  return rc;
}

uint64_t NemesisCluster::Leader() {
  uint64_t leader = 0;
  for (uint64_t id = 1; id <= static_cast<uint64_t>(nodes_); ++id) {
    if (!running(id) || stopped(id) || blackholes_.count({id, 254})) continue;
    auto st = QueryStatus(ClientAddr(id), std::chrono::milliseconds(300));
    if (st && st->raft_state() == "leader") leader = id;
  }
  return leader;
}

// The scheduler state of a live process ("S (sleeping)", "R (running)", ...)
// from /proc, or "" if it cannot be read.
static std::string ProcState(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("State:", 0) == 0) {
      const size_t v = line.find_first_not_of(" \t", 6);
      return v == std::string::npos ? "" : line.substr(v);
    }
  }
  return "";
}

void NemesisCluster::DumpStacks(uint64_t id) {
  const pid_t pid = pids_[id - 1];
  if (pid <= 0) return;
  const std::string log = dir_.File("node" + std::to_string(id)) + ".log";
  std::ofstream(log, std::ios::app) << "---- nemesis: node silent at convergence, process state "
                                    << ProcState(pid) << "; thread stacks (gdb):\n";
  for (const char* gdb : {"/usr/bin/gdb", "/usr/local/bin/gdb"}) {
    if (access(gdb, X_OK) != 0) continue;
    const pid_t g = SpawnCommand(
        {gdb, "-p", std::to_string(pid), "-batch", "-nx", "-ex", "thread apply all bt 30"}, log);
    int status = 0;
    if (!WaitFor([&] { return waitpid(g, &status, WNOHANG) == g; }, std::chrono::seconds(30))) {
      kill(g, SIGKILL);
      WaitPid(g);
    }
    return;
  }
  std::ofstream(log, std::ios::app) << "(no gdb)\n";
}

bool NemesisCluster::WaitConverged(std::chrono::milliseconds deadline, std::string* why) {
  // Per node: polls that reached it, polls it did not answer, and when it
  // last answered, so a silent node's report says whether it was silent for
  // the whole wait or stopped answering during it.
  const auto start = std::chrono::steady_clock::now();
  const size_t n = static_cast<size_t>(nodes_);
  std::vector<int> asked(n, 0), silent(n, 0);
  std::vector<std::optional<std::chrono::steady_clock::time_point>> answered(n);
  uint64_t silent_node = 0;
  const bool ok = WaitFor(
      [&] {
        silent_node = 0;
        std::optional<v1::GetStatusReply> first;
        for (uint64_t id = 1; id <= static_cast<uint64_t>(nodes_); ++id) {
          if (!running(id) || stopped(id)) {
            *why = "node " + std::to_string(id) + " is not running";
            return false;
          }
          ++asked[id - 1];
          auto st = QueryStatus(ClientAddr(id), std::chrono::milliseconds(500));
          if (!st) {
            ++silent[id - 1];
            silent_node = id;
            *why = "node " + std::to_string(id) + " does not answer";
            // Dead (crashed) or alive but silent?
            int status = 0;
            pid_t& pid = pids_[id - 1];
            if (waitpid(pid, &status, WNOHANG) == pid) {
              *why += WIFSIGNALED(status)
                          ? " (it died of signal " + std::to_string(WTERMSIG(status)) + ")"
                          : " (it exited with status " + std::to_string(WEXITSTATUS(status)) + ")";
              deaths_.push_back("node " + std::to_string(id) + why->substr(why->find(" (")));
              pid = -1;
              stopped_.erase(id);
              silent_node = 0;
            } else {
              *why += " (its process is alive, state " + ProcState(pid) + ")";
            }
            return false;
          }
          answered[id - 1] = std::chrono::steady_clock::now();
          if (st->leader_id() == 0) {
            *why = "node " + std::to_string(id) + " knows no leader";
            return false;
          }
          if (!first) {
            first = st;
            continue;
          }
          if (st->leader_id() != first->leader_id() ||
              st->core_applied_index() != first->core_applied_index() ||
              st->state_digest() != first->state_digest()) {
            *why = "node " + std::to_string(id) + " leader=" + std::to_string(st->leader_id()) +
                   " applied=" + std::to_string(st->core_applied_index()) +
                   " digest=" + std::to_string(st->state_digest()) +
                   " vs node 1 leader=" + std::to_string(first->leader_id()) +
                   " applied=" + std::to_string(first->core_applied_index()) +
                   " digest=" + std::to_string(first->state_digest());
            return false;
          }
        }
        return true;
      },
      deadline);
  if (ok) {
    why->clear();
    return true;
  }
  // Which nodes were silent, and for how long (the last poll's reason alone
  // does not say).
  std::string detail;
  for (size_t i = 0; i < n; ++i) {
    if (silent[i] == 0) continue;
    detail += "; node " + std::to_string(i + 1) + " silent in " + std::to_string(silent[i]) +
              " of " + std::to_string(asked[i]) + " polls, ";
    if (!answered[i]) {
      detail += "never answered during the wait";
    } else {
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(*answered[i] - start);
      detail += "last answered " + std::to_string(ms.count()) + " ms into the wait";
    }
  }
  *why += detail;
  if (silent_node != 0) {
    DumpStacks(silent_node);
    *why += " (its thread stacks are at the end of node" + std::to_string(silent_node) + ".log)";
  }
  return false;
}

std::string NemesisCluster::NodeLog(uint64_t id) const {
  std::ifstream f(dir_.File("node" + std::to_string(id)) + ".log");
  return std::string(std::istreambuf_iterator<char>(f), {});
}

}  // namespace latchkey::testing
