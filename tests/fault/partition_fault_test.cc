// Network partition of a 3-node cluster with real network namespaces (needs
// root; skips with a message where namespaces cannot be created). Each node
// runs in its own namespace, wired by a veth pair to a bridge in the root
// namespace, which carries the test's private /24 (.254 = the test, the
// client side). The leader is cut off from its peers with blackhole routes
// on both sides, so the test can still reach it as a client:
// - a client that only knows the old (minority) leader cannot acquire;
// - the majority elects a new leader that grants with a higher fencing token;
// - after healing, every node reports the same state digest at the same
//   applied index and the old leader is a follower.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <csignal>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "latchkey/client.h"
#include "testlib/cluster_process.h"
#include "testlib/server_process.h"

namespace latchkey {
namespace {

using namespace std::chrono_literals;
using testing::QueryStatus;
using testing::RunCommand;
using testing::SpawnCommand;
using testing::TempDir;
using testing::WaitFor;

constexpr int kNodes = 3;
constexpr int kClientPort = 7411;
constexpr int kRaftPort = 7412;

std::string IpBinary() {
  for (const char* p : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}) {
    if (access(p, X_OK) == 0) return p;
  }
  return "";
}

class PartitionFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "partition test needs root (network namespaces)";
    ip_ = IpBinary();
    if (ip_.empty()) GTEST_SKIP() << "iproute2 `ip` not found";
    const std::string tag = "lk" + std::to_string(getpid());
    bridge_ = tag + "br";
    for (int i = 0; i < kNodes; ++i) {
      ns_[i] = tag + "n" + std::to_string(i + 1);
      veth_[i] = tag + "v" + std::to_string(i + 1);
    }
    // The test's own /24: skip subnets that are already routed here.
    for (int k = 0; k < 200 && subnet_.empty(); ++k) {
      const std::string s = "10.213." + std::to_string((getpid() + k) % 200 + 20);
      std::string out;
      Ip({"-4", "route", "show", "to", "match", s + ".1"}, &out);
      if (out.find(s + ".0/24") == std::string::npos) subnet_ = s;
    }
    if (subnet_.empty()) GTEST_SKIP() << "no free 10.213.x.0/24 subnet";
    Cleanup();
    std::string err;
    if (Ip({"netns", "add", ns_[0]}, &err) != 0) {
      GTEST_SKIP() << "cannot create network namespaces (" << err << ")";
    }
    created_ = true;
    ASSERT_TRUE(MustIp({"link", "add", bridge_, "type", "bridge"}));
    ASSERT_TRUE(MustIp({"addr", "add", Host(254) + "/24", "dev", bridge_}));
    ASSERT_TRUE(MustIp({"link", "set", bridge_, "up"}));
    for (int i = 0; i < kNodes; ++i) {
      const std::string inside =
          bridge_.substr(0, bridge_.size() - 2) + "i" + std::to_string(i + 1);
      if (i > 0) {
        ASSERT_TRUE(MustIp({"netns", "add", ns_[i]}));
      }
      ASSERT_TRUE(MustIp({"link", "add", veth_[i], "type", "veth", "peer", "name", inside}));
      ASSERT_TRUE(MustIp({"link", "set", inside, "netns", ns_[i]}));
      ASSERT_TRUE(MustIp({"link", "set", veth_[i], "master", bridge_}));
      ASSERT_TRUE(MustIp({"link", "set", veth_[i], "up"}));
      ASSERT_TRUE(MustIp({"-n", ns_[i], "addr", "add", Host(i + 1) + "/24", "dev", inside}));
      ASSERT_TRUE(MustIp({"-n", ns_[i], "link", "set", inside, "up"}));
      ASSERT_TRUE(MustIp({"-n", ns_[i], "link", "set", "lo", "up"}));
    }
  }

  void TearDown() override {
    for (int i = 0; i < kNodes; ++i) KillNode(i + 1);
    if (created_) Cleanup();
  }

  // ---- network --------------------------------------------------------------

  int Ip(std::vector<std::string> args, std::string* out = nullptr) {
    args.insert(args.begin(), ip_);
    return RunCommand(args, out);
  }
  bool MustIp(const std::vector<std::string>& args) {
    std::string out;
    const int rc = Ip(args, &out);
    if (rc != 0) {
      std::string cmd = "ip";
      for (const auto& a : args) cmd += " " + a;
      ADD_FAILURE() << cmd << " -> " << rc << ": " << out;
    }
    return rc == 0;
  }
  void Cleanup() {
    for (int i = 0; i < kNodes; ++i) {
      if (!ns_[i].empty()) Ip({"netns", "del", ns_[i]});  // takes its veth end along
      if (!veth_[i].empty()) Ip({"link", "del", veth_[i]});
    }
    if (!bridge_.empty()) Ip({"link", "del", bridge_});
  }
  std::string Host(int n) const { return subnet_ + "." + std::to_string(n); }
  std::string ClientAddr(uint64_t id) const {
    return Host(static_cast<int>(id)) + ":" + std::to_string(kClientPort);
  }
  std::string RaftAddr(uint64_t id) const {
    return Host(static_cast<int>(id)) + ":" + std::to_string(kRaftPort);
  }

  // Blackhole routes on both sides between node `id` and every other node;
  // the bridge address (the test) stays reachable.
  bool Isolate(uint64_t id, bool on) {
    const char* verb = on ? "add" : "del";
    bool ok = true;
    for (uint64_t other = 1; other <= kNodes; ++other) {
      if (other == id) continue;
      ok &= MustIp(
          {"-n", ns_[id - 1], "route", verb, "blackhole", Host(static_cast<int>(other)) + "/32"});
      ok &= MustIp(
          {"-n", ns_[other - 1], "route", verb, "blackhole", Host(static_cast<int>(id)) + "/32"});
    }
    return ok;
  }

  // ---- nodes ----------------------------------------------------------------

  bool StartNodes() {
    std::string peers;
    for (uint64_t id = 1; id <= kNodes; ++id) {
      if (!peers.empty()) peers += ",";
      peers += std::to_string(id) + "=" + RaftAddr(id) + "@" + ClientAddr(id);
    }
    for (uint64_t id = 1; id <= kNodes; ++id) {
      const std::string data = dir_.File("node" + std::to_string(id));
      const std::string ready = data + ".ready";
      // `ip netns exec` execs the command in place: the pid is the server's.
      pids_[id - 1] =
          SpawnCommand({ip_, "netns", "exec", ns_[id - 1], testing::LatchkeyBinary(), "server",
                        "--node-id", std::to_string(id), "--peers", peers, "--data-dir", data,
                        "--ready-file", ready, "--log-level", "warn"},
                       data + ".log");
    }
    for (uint64_t id = 1; id <= kNodes; ++id) {
      const std::string ready = dir_.File("node" + std::to_string(id)) + ".ready";
      if (!WaitFor([&] { return std::ifstream(ready).good(); }, 15s)) {
        ADD_FAILURE() << "node " << id << " not ready; log:\n" << NodeLog(id);
        return false;
      }
    }
    return true;
  }
  void KillNode(uint64_t id) {
    pid_t& p = pids_[id - 1];
    if (p > 0) {
      kill(p, SIGKILL);
      testing::WaitPid(p);
      p = -1;
    }
  }
  std::string NodeLog(uint64_t id) {
    std::ifstream f(dir_.File("node" + std::to_string(id)) + ".log");
    return std::string(std::istreambuf_iterator<char>(f), {});
  }

  // The leader every node of `among` agrees on and that says it leads; 0 if
  // none before the deadline.
  uint64_t WaitForLeader(const std::vector<uint64_t>& among, std::chrono::milliseconds deadline) {
    uint64_t leader = 0;
    const bool ok = WaitFor(
        [&] {
          leader = 0;
          for (uint64_t id : among) {
            auto st = QueryStatus(ClientAddr(id), 500ms);
            if (!st || st->leader_id() == 0) return false;
            if (leader != 0 && st->leader_id() != leader) return false;
            leader = st->leader_id();
          }
          if (std::find(among.begin(), among.end(), leader) == among.end()) return false;
          auto st = QueryStatus(ClientAddr(leader), 500ms);
          return st && st->raft_state() == "leader";
        },
        deadline);
    return ok ? leader : 0;
  }

  std::string Endpoints(const std::vector<uint64_t>& ids) const {
    std::string out;
    for (uint64_t id : ids) out += (out.empty() ? "" : ",") + ClientAddr(id);
    return out;
  }

  std::string ip_, bridge_, subnet_;
  std::array<std::string, kNodes> ns_, veth_;
  std::array<pid_t, kNodes> pids_{-1, -1, -1};
  bool created_ = false;
  TempDir dir_;
};

TEST_F(PartitionFaultTest, MinorityLeaderStopsMajorityContinuesHealConverges) {
  ASSERT_TRUE(StartNodes());
  const std::vector<uint64_t> all = {1, 2, 3};
  const uint64_t leader = WaitForLeader(all, 15s);
  ASSERT_NE(leader, 0u) << "no leader; node 1 log:\n" << NodeLog(1);
  std::vector<uint64_t> majority;
  for (uint64_t id : all) {
    if (id != leader) majority.push_back(id);
  }

  // Healthy cluster: a client with every endpoint takes and releases the lock.
  uint64_t highest_token = 0;
  {
    ClientOptions o;
    o.endpoint = Endpoints(all);
    o.client_name = "before-partition";
    auto c = Client::Connect(o);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    AcquireOptions ao;
    ao.wait_timeout = 5s;
    auto g = (*c)->Acquire("part.lock", ao);
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    highest_token = g->fencing_token;
    ASSERT_TRUE((*c)->Release("part.lock").ok());
    ASSERT_TRUE((*c)->Close().ok());
  }

  // A client that only knows the leader, with its session opened before the
  // partition (short bounds: each try fails within ttl + connect_timeout).
  ClientOptions mo;
  mo.endpoint = ClientAddr(leader);
  mo.client_name = "minority";
  mo.session_ttl = 2s;
  mo.connect_timeout = 1s;
  auto minority = Client::Connect(mo);
  ASSERT_TRUE(minority.ok()) << minority.status().ToString();

  ASSERT_TRUE(Isolate(leader, true));

  // The old leader cannot grant: nothing it proposes can commit. Two tries,
  // each bounded by the client's own deadline.
  for (int i = 0; i < 2; ++i) {
    AcquireOptions ao;
    ao.try_only = true;
    auto g = (*minority)->Acquire("part.lock", ao);
    EXPECT_FALSE(g.ok()) << "minority leader granted token " << g->fencing_token;
    if (!g.ok()) std::printf("minority acquire: %s\n", g.status().ToString().c_str());
  }
  // ... and it stops claiming leadership once it cannot hear a majority.
  EXPECT_TRUE(WaitFor(
      [&] {
        auto st = QueryStatus(ClientAddr(leader), 500ms);
        return st && st->raft_state() != "leader";
      },
      10s))
      << "isolated node " << leader << " still reports itself leader";
  minority->reset();  // its session is gone with the partition; closing is bounded

  // The majority elects a new leader and grants with a higher token.
  const uint64_t new_leader = WaitForLeader(majority, 15s);
  ASSERT_NE(new_leader, 0u) << "majority did not elect a leader";
  EXPECT_NE(new_leader, leader);
  {
    ClientOptions o;
    o.endpoint = Endpoints(majority);
    o.client_name = "majority";
    auto c = Client::Connect(o);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    AcquireOptions ao;
    ao.wait_timeout = 10s;  // the minority session's lease may still run out first
    auto g = (*c)->Acquire("part.lock", ao);
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    EXPECT_GT(g->fencing_token, highest_token);
    highest_token = g->fencing_token;
    EXPECT_TRUE((*c)->Release("part.lock").ok());
    EXPECT_TRUE((*c)->Close().ok());
  }

  // Heal: all three converge and the old leader follows.
  ASSERT_TRUE(Isolate(leader, false));
  const bool converged = WaitFor(
      [&] {
        std::optional<v1::GetStatusReply> first;
        for (uint64_t id : all) {
          auto st = QueryStatus(ClientAddr(id), 500ms);
          if (!st || st->leader_id() == 0 || st->leader_id() == leader) return false;
          if (id == leader && st->raft_state() != "follower") return false;
          if (!first) {
            first = st;
          } else if (st->leader_id() != first->leader_id() ||
                     st->core_applied_index() != first->core_applied_index() ||
                     st->state_digest() != first->state_digest()) {
            return false;
          }
        }
        return true;
      },
      20s);
  EXPECT_TRUE(converged) << "replicas did not converge after healing";
  for (uint64_t id : all) {
    auto st = QueryStatus(ClientAddr(id), 1s);
    if (!st) continue;
    std::printf("node %llu: %s leader=%llu applied=%llu digest=%llx\n",
                static_cast<unsigned long long>(id), st->raft_state().c_str(),
                static_cast<unsigned long long>(st->leader_id()),
                static_cast<unsigned long long>(st->core_applied_index()),
                static_cast<unsigned long long>(st->state_digest()));
  }
}

}  // namespace
}  // namespace latchkey
