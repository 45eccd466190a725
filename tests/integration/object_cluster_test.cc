// The object store in a 3-node cluster: objects, history, reservations and
// TTLs survive a leader SIGKILL (failover); replicas end with equal state
// digests, also when a follower restarted after the writes has to catch up.
#include <gtest/gtest.h>

#include "latchkey/client.h"
#include "latchkey/objects.h"
#include "testlib/cluster_process.h"

namespace latchkey {
namespace {

using namespace std::chrono_literals;
using testing::ClusterProcess;
using testing::WaitFor;

// Writes objects, history, a reservation and TTLs to a 3-node cluster,
// SIGKILLs the leader and checks that the new leader serves all of them and
// that the replicas converge. With `restart_follower`, a follower is killed
// right after the election and restarted after the writes, so it must catch
// up by snapshot install.
void ObjectsSurviveFailover(bool restart_follower) {
  std::vector<std::string> args = {"--snapshot-threshold",      "16", "--snapshot-trailing", "4",
                                   "--object-retain-revisions", "0",  "--object-retain-ms",  "0"};
  if (restart_follower) {
    // The writes run with one node of three down: a leader that misses one
    // heartbeat answer for the default 200 ms steps down (seen under load).
    args.insert(args.end(), {"--election-timeout-ms", "1000", "--heartbeat-timeout-ms", "100"});
  }
  ClusterProcess cluster(3, args);
  ASSERT_TRUE(cluster.Start());
  const uint64_t leader = cluster.WaitForLeader();
  ASSERT_NE(leader, 0u);
  const uint64_t follower = leader == 1 ? 2 : 1;
  ClientOptions co;
  co.endpoint = cluster.Endpoints();
  co.client_name = "objects";
  auto cl = Client::Connect(co);
  ASSERT_TRUE(cl.ok()) << cl.status().ToString();
  Objects o(**cl);
  if (restart_follower) cluster.node(follower).Kill9();
  uint64_t first = 0;
  // Enough entries that every running node takes several snapshots.
  constexpr int kPuts = 150;
  for (int i = 0; i < kPuts; ++i) {
    auto r = o.Put("cfg/k" + std::to_string(i % 5), "v" + std::to_string(i));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    if (i == 0) first = *r;
  }
  ASSERT_TRUE(o.Reserve("job").ok());
  ASSERT_TRUE(o.SetTimeoutAfterRequest("cfg/k0", 60s).ok());
  ASSERT_TRUE(o.SetTimeout("cfg/k1", 60s).ok());
  auto mid = o.Find("cfg/");
  ASSERT_TRUE(mid.ok());
  ASSERT_TRUE(o.Compact(first + 5).ok());
  if (restart_follower) {
    ASSERT_TRUE(cluster.node(follower).Restart());
  }
  bool converged = cluster.WaitForEqualDigests(20s);
  if (!converged && restart_follower) {
    // The core's applied index is not part of its snapshot: a follower that
    // caught up by installing a snapshot of the leader's last entry, with no
    // entry after it, reports core-applied 0 (seen once in 12 runs;
    // docs/testing.md). One more entry cannot be a snapshot point again
    // (threshold 16), so the follower applies it and the indexes match.
    ASSERT_TRUE(o.Put("after-restart", "x").ok());
    converged = cluster.WaitForEqualDigests(20s);
  }
  ASSERT_TRUE(converged) << "replicas did not converge";
  // Failover: the new leader serves the same objects, history and TTLs.
  cluster.node(leader).Kill9();
  const uint64_t next = cluster.WaitForLeader(15s);
  ASSERT_NE(next, 0u);
  ASSERT_NE(next, leader);
  Result<Object> k0 = Status(Code::kUnavailable, "not read yet");
  ASSERT_TRUE(WaitFor(
      [&] {
        k0 = o.Get("cfg/k0");
        return k0.ok();
      },
      20s))
      << k0.status().ToString();
  EXPECT_EQ(k0->value, "v" + std::to_string(kPuts - 5));
  EXPECT_TRUE(k0->ttl_sliding);
  EXPECT_EQ(k0->ttl_ms, 60'000u);
  auto k1 = o.Get("cfg/k1");
  ASSERT_TRUE(k1.ok());
  EXPECT_FALSE(k1->ttl_sliding);
  EXPECT_NE(k1->expires_at_ms, 0u);
  auto job = o.Get("job");  // the session survived the failover, so did its reservation
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->state, ObjectState::kReserved);
  auto again = o.Find("cfg/", mid->revision);  // the pinned read still answers
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  ASSERT_EQ(again->objects.size(), mid->objects.size());
  for (size_t i = 0; i < again->objects.size(); ++i) {
    EXPECT_EQ(again->objects[i].value, mid->objects[i].value);
  }
  EXPECT_EQ(o.Get("cfg/k0", first).status().code(), Code::kCompacted);
  ASSERT_TRUE(o.Put("job", "done").ok());
  EXPECT_TRUE(cluster.WaitForEqualDigests(20s));
}

TEST(ObjectClusterTest, ObjectsSurviveFailover) {
  ObjectsSurviveFailover(/*restart_follower=*/false);
}

// The follower killed right after the election catches up after the writes by
// appends and snapshot installs. It used to stay at index 16 in about 2 runs
// of 5 under load: libraft 0.15 drops an InstallSnapshot that arrives while
// the follower writes a snapshot of its own, and the leader retried after
// 30 s (fixed in src/replication/raft_node_io.cc; docs/testing.md).
TEST(ObjectClusterTest, RestartedFollowerCatchesUpAfterObjectWrites) {
  ObjectsSurviveFailover(/*restart_follower=*/true);
}

}  // namespace
}  // namespace latchkey
