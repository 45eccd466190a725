// Watches, pub/sub and Lua methods in a 3-node cluster (design 0012): a
// watch and a subscription served by a follower see the leader's writes and
// messages in order; scripts (with sorted pairs and string work) leave every
// replica with the same state digest.
#include <gtest/gtest.h>

#include "latchkey/client.h"
#include "latchkey/objects.h"
#include "latchkey/pubsub.h"
#include "latchkey/watch.h"
#include "testlib/cluster_process.h"

namespace latchkey {
namespace {

using namespace std::chrono_literals;
using testing::ClusterProcess;

// A 3-node cluster, a client of it and a follower's id.
class WatchClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cluster_.Start());
    const uint64_t leader = cluster_.WaitForLeader();
    ASSERT_NE(leader, 0u);
    follower_ = leader == 1 ? 2 : 1;
    ClientOptions co;
    co.endpoint = cluster_.Endpoints();
    auto c = Client::Connect(co);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    cl_ = std::move(c).value();
  }
  ClusterProcess cluster_{3};
  uint64_t follower_ = 0;
  std::unique_ptr<Client> cl_;
};

TEST_F(WatchClusterTest, FollowerServesWatchesAndScriptsAreDeterministic) {
  ClusterProcess& cluster = cluster_;
  const uint64_t follower = follower_;
  auto& cl = cl_;
  Objects o(*cl);

  WatchOptions wo;
  wo.endpoint = cluster.client_address(follower);
  wo.key = "s/";
  wo.prefix = true;
  auto w = Watch::Open(wo);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  SubscribeOptions so;
  so.endpoint = cluster.client_address(follower);
  so.namespace_name = "ns";
  auto sub = Subscription::Open(so);
  ASSERT_TRUE(sub.ok()) << sub.status().ToString();

  ASSERT_TRUE(o.PutScript("mix", R"lua(
return function(obj, args)
  local t = {}
  for i, a in ipairs(args) do t[a] = i; t[#a + 100] = a:upper() end
  local parts = {}
  for k, v in pairs(t) do parts[#parts + 1] = tostring(k) .. "=" .. tostring(v) end
  local s = obj.value .. "|" .. table.concat(parts, ",") .. string.format("%.3f", math.sqrt(#parts))
  return s, #s
end)lua")
                  .ok());
  for (int i = 0; i < 10; ++i) {
    auto r = o.ExecuteMethod("s/" + std::to_string(i % 3), "mix", {"zz", "a", "mm", "b"});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_TRUE(Publish(*cl, "ns", std::to_string(i)).ok());
  }
  for (int i = 0; i < 10; ++i) {
    auto ev = (*w)->Next(10s);
    ASSERT_TRUE(ev.ok()) << ev.status().ToString();
    EXPECT_EQ(ev->key, "s/" + std::to_string(i % 3));
    auto m = (*sub)->Next(10s);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    EXPECT_EQ(m->payload, std::to_string(i));
  }
  EXPECT_TRUE(cluster.WaitForEqualDigests(20s));
}

// A lock watch on a follower follows the leader's grants in order, one
// state per change, as the follower applies them.
TEST_F(WatchClusterTest, FollowerServesLockWatches) {
  auto& cl = cl_;
  LockWatchOptions lo;
  lo.endpoint = cluster_.client_address(follower_);
  lo.name = "fw.lock";
  auto w = LockWatch::Open(lo);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  auto first = (*w)->Next(10s);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_FALSE(first->held);
  uint64_t last_token = 0;
  for (int i = 0; i < 5; ++i) {
    auto g = cl->Acquire("fw.lock");
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    ASSERT_TRUE(cl->Release("fw.lock").ok());
    auto held = (*w)->Next(10s);
    ASSERT_TRUE(held.ok()) << held.status().ToString();
    EXPECT_TRUE(held->held);
    EXPECT_EQ(held->holder.fencing_token, g->fencing_token);
    EXPECT_GT(g->fencing_token, last_token);
    last_token = g->fencing_token;
    auto freed = (*w)->Next(10s);
    ASSERT_TRUE(freed.ok()) << freed.status().ToString();
    EXPECT_FALSE(freed->held);
  }
}

}  // namespace
}  // namespace latchkey
