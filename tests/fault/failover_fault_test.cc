// kill -9 of the leader of a 3-node cluster under a contended lock workload:
// no two holders (a fenced resource rejects stale tokens and overlapping
// holders), no acknowledged grant or release lost, the new leader serves.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "latchkey/client.h"
#include "testlib/cluster_process.h"

namespace latchkey {
namespace {

using namespace std::chrono_literals;
using testing::ClusterProcess;
using testing::WaitFor;

// The resource a lock guards, as a careful user writes it: it remembers the
// highest fencing token it saw and refuses older ones; it also notices two
// holders inside at once (which fencing alone would not reveal to it).
class FencedCounter {
 public:
  bool Enter(uint64_t token) {
    std::lock_guard<std::mutex> lk(mu_);
    if (token < highest_) {
      ++stale_;
      return false;
    }
    if (inside_) ++overlaps_;
    inside_ = true;
    highest_ = token;
    ++count_;
    return true;
  }
  void Exit() {
    std::lock_guard<std::mutex> lk(mu_);
    inside_ = false;
  }
  uint64_t count() {
    std::lock_guard<std::mutex> lk(mu_);
    return count_;
  }
  uint64_t stale() {
    std::lock_guard<std::mutex> lk(mu_);
    return stale_;
  }
  uint64_t overlaps() {
    std::lock_guard<std::mutex> lk(mu_);
    return overlaps_;
  }

 private:
  std::mutex mu_;
  uint64_t highest_ = 0, count_ = 0, stale_ = 0, overlaps_ = 0;
  bool inside_ = false;
};

TEST(FailoverFaultTest, KillLeaderUnderLoadKeepsMutualExclusion) {
  ClusterProcess cluster(3);
  ASSERT_TRUE(cluster.Start());
  const uint64_t leader = cluster.WaitForLeader();
  ASSERT_NE(leader, 0u);

  constexpr int kClients = 4;
  FencedCounter resource;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> grants{0}, releases{0}, errors{0};
  std::vector<std::string> failures;
  std::mutex failures_mu;
  auto fail = [&](const std::string& what) {
    std::lock_guard<std::mutex> lk(failures_mu);
    failures.push_back(what);
  };
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < kClients; ++i) {
    ClientOptions o;
    o.endpoint = cluster.Endpoints();
    o.client_name = "worker-" + std::to_string(i);
    auto c = Client::Connect(o);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    clients.push_back(std::move(c.value()));
  }
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      Client& c = *clients[static_cast<size_t>(i)];
      AcquireOptions ao;
      ao.wait_timeout = 15s;
      while (!stop) {
        auto g = c.Acquire("fenced.counter", ao);
        if (!g.ok()) {
          ++errors;
          if (g.status().code() == Code::kSessionExpired) {
            fail("worker " + std::to_string(i) + " lost its session: " + g.status().ToString());
            return;
          }
          continue;
        }
        ++grants;
        if (!resource.Enter(g->fencing_token)) {
          fail("stale token " + std::to_string(g->fencing_token));
        } else {
          resource.Exit();
        }
        // A release whose outcome is unknown is retried: NOT_HELD then means
        // the first attempt applied.
        Status r = c.Release("fenced.counter");
        while (r.code() == Code::kMaybeApplied || r.code() == Code::kUnavailable) {
          ++errors;
          r = c.Release("fenced.counter");
          if (r.code() == Code::kNotHeld) r = Status();
        }
        if (!r.ok()) {
          fail("release: " + r.ToString());
          return;
        }
        ++releases;
      }
    });
  }
  ASSERT_TRUE(WaitFor([&] { return grants >= 50; }, 20s));
  const uint64_t before_kill = grants;
  cluster.node(leader).Kill9();
  const uint64_t new_leader = cluster.WaitForLeader(15s);
  EXPECT_NE(new_leader, 0u);
  EXPECT_NE(new_leader, leader);
  // The new leader serves: the workload goes on.
  EXPECT_TRUE(WaitFor([&] { return grants >= before_kill + 50; }, 30s))
      << "grants stalled at " << grants.load();
  stop = true;
  for (auto& t : threads) t.join();

  EXPECT_TRUE(failures.empty()) << failures.front();
  EXPECT_EQ(resource.overlaps(), 0u) << "two holders at once";
  EXPECT_EQ(resource.stale(), 0u) << "a stale fencing token was granted";
  EXPECT_EQ(resource.count(), grants.load());
  // Every acknowledged release is reflected: nobody holds the lock now.
  auto info = clients[0]->GetLock("fenced.counter");
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_FALSE(info->held);
  EXPECT_EQ(info->waiters, 0u);
  // The surviving replicas agree on the state.
  EXPECT_TRUE(cluster.WaitForEqualDigests());
  std::printf("grants %llu releases %llu errors(retried) %llu\n",
              static_cast<unsigned long long>(grants.load()),
              static_cast<unsigned long long>(releases.load()),
              static_cast<unsigned long long>(errors.load()));
}

}  // namespace
}  // namespace latchkey
