// Replicated cluster end to end: 3 real `latchkey server` processes on
// 127.0.0.1 (ports picked free), the client library and the CLI.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <stop_token>
#include <thread>

#include "latchkey/client.h"
#include "testlib/cluster_process.h"

namespace latchkey {
namespace {

using namespace std::chrono_literals;
using testing::ClusterProcess;
using testing::QueryStatus;
using testing::WaitFor;

std::unique_ptr<Client> ConnectTo(const std::string& endpoints, const std::string& name) {
  ClientOptions o;
  o.endpoint = endpoints;
  o.client_name = name;
  auto c = Client::Connect(o);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? std::move(c.value()) : nullptr;
}

uint64_t AnyFollower(ClusterProcess& cluster, uint64_t leader) {
  for (uint64_t id = 1; id <= static_cast<uint64_t>(cluster.size()); ++id) {
    if (id != leader && cluster.node(id).running()) return id;
  }
  return 0;
}

TEST(ClusterIntegrationTest, FollowerRedirectsToTheLeaderAndReadsAreLinearizable) {
  ClusterProcess cluster(3);
  ASSERT_TRUE(cluster.Start());
  const uint64_t leader = cluster.WaitForLeader();
  ASSERT_NE(leader, 0u);
  const uint64_t follower = AnyFollower(cluster, leader);
  // Only a follower's address: the session is opened on the leader.
  auto a = ConnectTo(cluster.client_address(follower), "a");
  ASSERT_NE(a, nullptr);
  auto g = a->Acquire("redirect.me");
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  auto b = ConnectTo(cluster.client_address(follower), "b");
  auto info = b->GetLock("redirect.me");  // linearizable: sees a's grant
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_TRUE(info->held);
  EXPECT_EQ(info->holder.fencing_token, g->fencing_token);
  auto stale_ok = b->GetLock("redirect.me", ReadConsistency::kSerializable);
  ASSERT_TRUE(stale_ok.ok()) << stale_ok.status().ToString();

  // A follower names the leader in its status.
  auto st = QueryStatus(cluster.client_address(follower));
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->raft_state(), "follower");
  EXPECT_EQ(st->leader_id(), leader);
  EXPECT_EQ(st->leader_endpoint(), cluster.client_address(leader));

  auto members = a->ListMembers();
  ASSERT_TRUE(members.ok()) << members.status().ToString();
  ASSERT_EQ(members->size(), 3u);
  for (const MemberInfo& m : *members) {
    EXPECT_EQ(m.role, "voter");
    EXPECT_EQ(m.client_address, cluster.client_address(m.node_id));
    EXPECT_EQ(m.leader, m.node_id == leader);
  }
  // The leader cannot remove itself; an unknown node cannot be removed.
  EXPECT_EQ(a->RemoveMember(leader).code(), Code::kFailedPrecondition);
  EXPECT_EQ(a->RemoveMember(42).code(), Code::kNotFound);

  // Leadership transfer: the session and its lock move along.
  auto moved = a->TransferLeadership(follower);
  ASSERT_TRUE(moved.ok()) << moved.status().ToString();
  EXPECT_EQ(*moved, follower);
  EXPECT_EQ(cluster.WaitForLeader(), follower);
  EXPECT_TRUE(a->Release("redirect.me").ok());
  EXPECT_TRUE(cluster.WaitForEqualDigests());
}

TEST(ClusterIntegrationTest, RestartedFollowerCatchesUpBySnapshotInstall) {
  // Snapshot every 16 entries, keep 4: the follower's missing entries are
  // compacted away on the leader while it is down.
  ClusterProcess cluster(3, {"--snapshot-threshold", "16", "--snapshot-trailing", "4"});
  ASSERT_TRUE(cluster.Start());
  const uint64_t leader = cluster.WaitForLeader();
  ASSERT_NE(leader, 0u);
  const uint64_t follower = AnyFollower(cluster, leader);
  auto c = ConnectTo(cluster.Endpoints(), "load");
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Acquire("held.across.restart").ok());
  cluster.node(follower).Kill9();
  auto before = QueryStatus(cluster.client_address(leader));
  ASSERT_TRUE(before.has_value());
  for (int i = 0; i < 150; ++i) {
    const std::string name = "snap.lock" + std::to_string(i % 7);
    ASSERT_TRUE(c->Acquire(name).ok());
    ASSERT_TRUE(c->Release(name).ok());
  }
  auto after = QueryStatus(cluster.client_address(leader));
  ASSERT_TRUE(after.has_value());
  ASSERT_GT(after->applied_index(), before->applied_index() + 16 + 4);
  ASSERT_TRUE(cluster.node(follower).Restart());
  EXPECT_TRUE(cluster.WaitForEqualDigests(20s)) << "follower did not converge";
  auto f = QueryStatus(cluster.client_address(follower));
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->locks_held(), 1u);
  EXPECT_GE(f->applied_index(), after->applied_index());
}

TEST(ClusterIntegrationTest, GrowFromOneToFiveAndShrinkBackUnderLoad) {
  ClusterProcess cluster(1, {}, /*spares=*/4);
  ASSERT_TRUE(cluster.Start());
  ASSERT_EQ(cluster.WaitForLeader(), 1u);
  auto c = ConnectTo(cluster.client_address(1), "admin");
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Acquire("grow.lock").ok());
  // Load: acquire+release pairs on another session while membership changes.
  auto load = ConnectTo(cluster.client_address(1), "load");
  ASSERT_NE(load, nullptr);
  std::atomic<uint64_t> pairs{0}, load_errors{0};
  // A jthread: a failed ASSERT below returns with the loader stopped and
  // joined instead of terminating the test binary.
  std::jthread loader([&](std::stop_token stop) {
    while (!stop.stop_requested()) {
      auto g = load->Acquire("grow.load");
      Status r = g.ok() ? load->Release("grow.load") : g.status();
      if (r.ok()) {
        ++pairs;
      } else {
        ++load_errors;
      }
    }
  });
  for (uint64_t id = 2; id <= 5; ++id) {
    ASSERT_TRUE(cluster.StartJoiner(id));
    Status st = c->AddMember(id, cluster.raft_address(id), cluster.client_address(id));
    ASSERT_TRUE(st.ok()) << "add " << id << ": " << st.ToString();
    if (id == 2) {
      EXPECT_EQ(c->AddMember(2, cluster.raft_address(2), "").code(), Code::kAlreadyExists);
    }
  }
  auto members = c->ListMembers();
  ASSERT_TRUE(members.ok());
  ASSERT_EQ(members->size(), 5u);
  for (const MemberInfo& m : *members) EXPECT_EQ(m.role, "voter") << m.node_id;
  ASSERT_TRUE(c->Acquire("grow.lock2").ok());
  EXPECT_TRUE(cluster.WaitForEqualDigests());
  auto joined = QueryStatus(cluster.client_address(5));
  ASSERT_TRUE(joined.has_value());
  EXPECT_EQ(joined->voters(), 5u);
  EXPECT_EQ(joined->leader_endpoint(), cluster.client_address(1));

  for (uint64_t id = 5; id >= 2; --id) {
    Status st = c->RemoveMember(id);
    ASSERT_TRUE(st.ok()) << "remove " << id << ": " << st.ToString();
    cluster.node(id).Terminate();
  }
  members = c->ListMembers();
  ASSERT_TRUE(members.ok());
  EXPECT_EQ(members->size(), 1u);
  const uint64_t pairs_before = pairs;
  EXPECT_TRUE(WaitFor([&] { return pairs > pairs_before + 5; }));  // one voter commits alone
  loader.request_stop();
  loader.join();
  EXPECT_EQ(load_errors.load(), 0u);
  EXPECT_GT(pairs.load(), 0u);
  ASSERT_TRUE(c->Release("grow.lock").ok());

  // The CLI sees the same membership.
  std::string out;
  EXPECT_EQ(
      testing::RunCommand(
          {testing::LatchkeyBinary(), "member", "list", "-e", cluster.client_address(1)}, &out),
      0)
      << out;
  EXPECT_NE(out.find(cluster.raft_address(1)), std::string::npos) << out;
  EXPECT_EQ(testing::RunCommand({testing::LatchkeyBinary(), "member", "remove", "--id", "1", "-e",
                                 cluster.client_address(1)},
                                &out),
            64)
      << out;
  EXPECT_NE(out.find("transfer"), std::string::npos) << out;
}

TEST(ClusterIntegrationTest, MemberPromoteMakesAStrandedSpareAVoter) {
  ClusterProcess cluster(1, {}, /*spares=*/1);
  ASSERT_TRUE(cluster.Start());
  ASSERT_EQ(cluster.WaitForLeader(), 1u);
  auto c = ConnectTo(cluster.client_address(1), "admin");
  ASSERT_NE(c, nullptr);
  // Node 2 is not running: the add commits it as a spare, the promotion
  // cannot catch it up and fails (as in the nemesis run).
  Status st = c->AddMember(2, cluster.raft_address(2), cluster.client_address(2));
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("spare"), std::string::npos) << st.ToString();
  auto role_of_2 = [&]() -> std::string {
    auto members = c->ListMembers();
    if (!members.ok()) return "";
    for (const MemberInfo& m : *members) {
      if (m.node_id == 2) return m.role;
    }
    return "";
  };
  EXPECT_EQ(role_of_2(), "spare");
  ASSERT_TRUE(cluster.StartJoiner(2));
  std::string out;
  EXPECT_EQ(testing::RunCommand({testing::LatchkeyBinary(), "member", "promote", "--id", "2", "-e",
                                 cluster.client_address(1)},
                                &out),
            0)
      << out;
  EXPECT_EQ(role_of_2(), "voter");
  EXPECT_EQ(testing::RunCommand({testing::LatchkeyBinary(), "member", "promote", "--id", "2", "-e",
                                 cluster.client_address(1)},
                                &out),
            0)
      << out;
  EXPECT_NE(out.find("already a voter"), std::string::npos) << out;
  ASSERT_TRUE(c->Acquire("promote.lock").ok());
  EXPECT_TRUE(cluster.WaitForEqualDigests());
  EXPECT_EQ(testing::RunCommand({testing::LatchkeyBinary(), "member", "promote", "--id", "9", "-e",
                                 cluster.client_address(1)},
                                &out),
            64)
      << out;
}

// Another process listening on a joiner's picked port (as a parallel test
// can, between the pick and the start) moves the joiner to fresh ports.
TEST(ClusterIntegrationTest, JoinerWhosePortWasTakenStartsOnFreshPorts) {
  ClusterProcess cluster(1, {}, /*spares=*/1);
  ASSERT_TRUE(cluster.Start());
  const std::string picked = cluster.client_address(2);
  const int port = std::stoi(picked.substr(picked.rfind(':') + 1));
  int squatter = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(squatter, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  ASSERT_EQ(bind(squatter, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(squatter, 1), 0);
  const bool started = cluster.StartJoiner(2);
  close(squatter);
  ASSERT_TRUE(started);
  EXPECT_NE(cluster.client_address(2), picked);
  ASSERT_EQ(cluster.WaitForLeader(15s, {1}), 1u);  // the joiner knows no leader yet
  auto c = ConnectTo(cluster.client_address(1), "admin");
  ASSERT_NE(c, nullptr);
  Status st = c->AddMember(2, cluster.raft_address(2), cluster.client_address(2));
  ASSERT_TRUE(st.ok()) << st.ToString();
  ASSERT_TRUE(c->Acquire("moved.lock").ok());
  EXPECT_TRUE(cluster.WaitForEqualDigests());
}

}  // namespace
}  // namespace latchkey
