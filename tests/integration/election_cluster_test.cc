// Leader election and ListSync on a 3-node cluster: a leadership survives
// the failover of the server leader (same term), a resign still hands over,
// and followers answer serializable ListSync from their own applied state.
#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "latchkey/election.h"
#include "latchkey/sync_info.h"
#include "testlib/cluster_process.h"

namespace latchkey {
namespace {

using namespace std::chrono_literals;
using testing::ClusterProcess;
using testing::QueryNode;
using testing::WaitFor;

std::unique_ptr<Client> ConnectTo(const std::string& endpoints, const std::string& name) {
  ClientOptions o;
  o.endpoint = endpoints;
  o.client_name = name;
  auto c = Client::Connect(o);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? std::move(c.value()) : nullptr;
}

std::optional<v1::Response> ListSyncOn(ClusterProcess& cluster, uint64_t id, bool serializable) {
  v1::Request req;
  req.mutable_list_sync()->set_prefix("pool");
  req.mutable_list_sync()->set_serializable(serializable);
  return QueryNode(cluster.client_address(id), req);
}

TEST(ElectionClusterTest, LeadershipSurvivesServerFailoverAndFollowersListSync) {
  ClusterProcess cluster(3);
  ASSERT_TRUE(cluster.Start());
  const uint64_t leader = cluster.WaitForLeader();
  ASSERT_NE(leader, 0u);
  auto a = ConnectTo(cluster.Endpoints(), "a"), b = ConnectTo(cluster.Endpoints(), "b");
  ASSERT_TRUE(a && b);
  Election ea(*a, "svc"), eb(*b, "svc");
  auto term = ea.Campaign("a:1");
  ASSERT_TRUE(term.ok()) << term.status().ToString();
  auto pending = std::async(std::launch::async, [&] { return eb.Campaign("b:1"); });
  ASSERT_TRUE(a->AcquireSemaphore("pool", 1, 2).ok());

  // Followers: serializable ListSync from their own state; linearizable
  // ones are redirected.
  ASSERT_TRUE(cluster.WaitForEqualDigests());
  for (uint64_t id = 1; id <= 3; ++id) {
    if (id == leader) continue;
    auto stale = ListSyncOn(cluster, id, true);
    ASSERT_TRUE(stale.has_value());
    ASSERT_TRUE(stale->has_list_sync()) << stale->DebugString();
    ASSERT_EQ(stale->list_sync().objects_size(), 1);
    EXPECT_EQ(stale->list_sync().objects(0).used(), 1u);
    EXPECT_EQ(stale->list_sync().objects(0).holders(0).session_id(), a->session_id());
    auto fresh = ListSyncOn(cluster, id, false);
    ASSERT_TRUE(fresh.has_value());
    EXPECT_EQ(fresh->error().code(), v1::NOT_LEADER) << fresh->DebugString();
  }

  // The server leader dies: the sessions move to the new leader and the
  // election keeps its leader and term.
  cluster.node(leader).Kill9();
  std::vector<uint64_t> rest;
  for (uint64_t id = 1; id <= 3; ++id) {
    if (id != leader) rest.push_back(id);
  }
  ASSERT_NE(cluster.WaitForLeader(15s, rest), 0u);
  ASSERT_TRUE(WaitFor([&] { return ea.Verify().ok(); }, 20s)) << ea.Verify().ToString();
  auto now = eb.Leader();
  ASSERT_TRUE(now.ok()) << now.status().ToString();
  EXPECT_EQ(now->term, *term);
  EXPECT_EQ(now->value, "a:1");
  EXPECT_EQ(pending.wait_for(0s), std::future_status::timeout);  // b still waits its turn
  auto listed = ListSync(*b, ListSyncOptions{.prefix = "pool"});
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  ASSERT_EQ(listed->objects.size(), 1u);

  ASSERT_TRUE(ea.Resign().ok());
  ASSERT_EQ(pending.wait_for(10s), std::future_status::ready);
  auto tb = pending.get();
  ASSERT_TRUE(tb.ok()) << tb.status().ToString();
  EXPECT_GT(*tb, *term);
}

}  // namespace
}  // namespace latchkey
