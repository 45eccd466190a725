// Semaphores, latches, barriers, multi-lock, lock ordering and lock values
// (leader election) through the real server and client library.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

#include "latchkey/client.h"
#include "testlib/server_fixture.h"
#include "testlib/server_process.h"

namespace latchkey {
namespace {

using namespace std::chrono_literals;
using testing::ServerProcess;
using testing::TempDir;
using testing::WaitFor;

using SyncIntegrationTest = testing::SingleServerTest;

TEST_F(SyncIntegrationTest, SemaphoreAdmitsAtMostItsLimit) {
  constexpr int kClients = 6;
  constexpr uint32_t kLimit = 2;
  std::vector<std::unique_ptr<Client>> cs;
  for (int i = 0; i < kClients; ++i) cs.push_back(Connect("s" + std::to_string(i)));
  std::atomic<int> inside{0}, peak{0}, done{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < kClients; ++i) {
    ts.emplace_back([&, i] {
      for (int k = 0; k < 5; ++k) {
        auto t = cs[i]->AcquireSemaphore("pool", 1, kLimit);
        ASSERT_TRUE(t.ok()) << t.status().ToString();
        int now = ++inside;
        int p = peak.load();
        while (now > p && !peak.compare_exchange_weak(p, now)) {
        }
        std::this_thread::yield();
        --inside;
        ASSERT_TRUE(cs[i]->ReleaseSemaphore("pool").ok());
        ++done;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(done.load(), kClients * 5);
  EXPECT_LE(peak.load(), static_cast<int>(kLimit));
  WaitOptions try_only;
  try_only.try_only = true;
  auto a = cs[0]->AcquireSemaphore("pool", 2, kLimit, try_only);
  ASSERT_TRUE(a.ok());
  auto busy = cs[1]->AcquireSemaphore("pool", 1, kLimit, try_only);
  EXPECT_EQ(busy.status().code(), Code::kLockBusy);
  auto wrong = cs[1]->AcquireSemaphore("pool", 1, 5);
  EXPECT_EQ(wrong.status().code(), Code::kFailedPrecondition);
}

TEST_F(SyncIntegrationTest, SemaphorePermitsReturnWhenTheSessionCloses) {
  auto a = Connect("a"), b = Connect("b");
  ASSERT_TRUE(a->AcquireSemaphore("one", 1, 1).ok());
  auto waiting = std::async(std::launch::async, [&] { return b->AcquireSemaphore("one", 1, 1); });
  EXPECT_EQ(waiting.wait_for(100ms), std::future_status::timeout);
  ASSERT_TRUE(a->Close().ok());
  auto t = waiting.get();
  EXPECT_TRUE(t.ok()) << t.status().ToString();
}

TEST_F(SyncIntegrationTest, LatchReleasesWaitersAtZero) {
  auto a = Connect("a"), b = Connect("b");
  auto waiter = std::async(std::launch::async, [&] { return a->LatchAwait("boot", 3); });
  EXPECT_EQ(*b->LatchCountDown("boot", 1, 3), 2u);
  EXPECT_EQ(*b->LatchCountDown("boot", 1, 3), 1u);
  EXPECT_EQ(waiter.wait_for(50ms), std::future_status::timeout);
  EXPECT_EQ(*b->LatchCountDown("boot", 1, 3), 0u);
  EXPECT_TRUE(waiter.get().ok());
  EXPECT_TRUE(b->LatchAwait("boot", 3).ok());  // stays open
  WaitOptions quick;
  quick.wait_timeout = 200ms;
  EXPECT_EQ(b->LatchAwait("never", 1, quick).code(), Code::kTimeout);
}

TEST_F(SyncIntegrationTest, BarrierTripsWhenAllArrive) {
  std::vector<std::unique_ptr<Client>> cs;
  for (int i = 0; i < 3; ++i) cs.push_back(Connect("b" + std::to_string(i)));
  std::vector<std::future<Result<uint64_t>>> fs;
  for (int i = 0; i < 3; ++i) {
    fs.push_back(std::async(std::launch::async, [&, i] { return cs[i]->BarrierAwait("step", 3); }));
  }
  for (auto& f : fs) {
    auto g = f.get();
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    EXPECT_EQ(*g, 0u);
  }
}

TEST_F(SyncIntegrationTest, AcquireManyIsAllOrNothing) {
  auto a = Connect("a"), b = Connect("b");
  ASSERT_TRUE(a->Acquire("acct.2").ok());
  auto many = std::async(std::launch::async, [&] {
    return b->AcquireMany({{"acct.1", LockMode::kEX}, {"acct.2", LockMode::kEX}});
  });
  ASSERT_TRUE(WaitFor([&] {
    auto i = a->GetLock("acct.2");
    return i.ok() && i->waiters == 1;
  }));
  auto one = a->GetLock("acct.1");
  ASSERT_TRUE(one.ok());
  EXPECT_FALSE(one->held);  // nothing taken while acct.2 is busy
  ASSERT_TRUE(a->Release("acct.2").ok());
  auto tokens = many.get();
  ASSERT_TRUE(tokens.ok()) << tokens.status().ToString();
  ASSERT_EQ(tokens->size(), 2u);
  EXPECT_GT((*tokens)[0], 0u);
  EXPECT_GT((*tokens)[1], 0u);
}

TEST_F(SyncIntegrationTest, LockOrderingFailsFast) {
  auto a = Connect("a");
  ASSERT_TRUE(a->DeclareLockRank("db", 10).ok());
  ASSERT_TRUE(a->DeclareLockRank("cache", 20).ok());
  ASSERT_TRUE(a->Acquire("cache.x").ok());
  auto bad = a->Acquire("db.users");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(bad.status().message().find("lock order"), std::string::npos);
}

TEST_F(SyncIntegrationTest, ElectionCampaignObserveResign) {
  auto n1 = Connect("node-1"), n2 = Connect("node-2"), observer = Connect("observer");
  AcquireOptions campaign;
  campaign.value = "10.0.0.1:8080";
  auto lead = n1->Acquire("service.leader", campaign);
  ASSERT_TRUE(lead.ok());
  auto seen = observer->GetLock("service.leader");
  ASSERT_TRUE(seen.ok());
  EXPECT_EQ(seen->value, "10.0.0.1:8080");
  EXPECT_EQ(seen->value_token, lead->fencing_token);
  EXPECT_EQ(seen->holder.session_id, n1->session_id());
  AcquireOptions campaign2;
  campaign2.value = "10.0.0.2:8080";
  auto next =
      std::async(std::launch::async, [&] { return n2->Acquire("service.leader", campaign2); });
  ASSERT_TRUE(n1->SetLockValue("service.leader", "10.0.0.1:9090").ok());  // proclaim
  EXPECT_EQ(observer->GetLock("service.leader")->value, "10.0.0.1:9090");
  ASSERT_TRUE(n1->Release("service.leader").ok());  // resign
  auto g2 = next.get();
  ASSERT_TRUE(g2.ok());
  EXPECT_GT(g2->fencing_token, lead->fencing_token);
  EXPECT_EQ(observer->GetLock("service.leader")->value, "10.0.0.2:8080");
}

TEST_F(SyncIntegrationTest, LockValuesAndSemaphoresSurviveRestart) {
  ClientOptions o;
  o.endpoint = server_.endpoint();
  o.session_ttl = 20s;
  auto c = Client::Connect(o);
  ASSERT_TRUE(c.ok());
  AcquireOptions v;
  v.value = "state-42";
  ASSERT_TRUE((*c)->Acquire("lvb", v).ok());
  ASSERT_TRUE((*c)->Release("lvb").ok());
  ASSERT_TRUE((*c)->AcquireSemaphore("sem", 1, 1).ok());
  server_.Kill9();
  ASSERT_TRUE(server_.Restart());
  auto other = Connect("other");
  auto info = other->GetLock("lvb");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->value, "state-42");
  WaitOptions try_only;
  try_only.try_only = true;
  EXPECT_EQ(other->AcquireSemaphore("sem", 1, 1, try_only).status().code(), Code::kLockBusy);
}

}  // namespace
}  // namespace latchkey
