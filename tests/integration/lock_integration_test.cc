// The lock service end to end: real server process, real client library.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <fstream>
#include <future>
#include <mutex>
#include <sstream>
#include <thread>

#include "latchkey/client.h"
#include "latchkey/mutex.h"
#include "testlib/server_fixture.h"
#include "testlib/server_process.h"

namespace latchkey {
namespace {

using namespace std::chrono_literals;
using testing::ServerProcess;
using testing::TempDir;
using testing::WaitFor;

using LockIntegrationTest = testing::SingleServerTest;

TEST_F(LockIntegrationTest, TwoClientsContend) {
  auto a = Connect("a"), b = Connect("b");
  auto ga = a->Acquire("res");
  ASSERT_TRUE(ga.ok()) << ga.status().ToString();
  AcquireOptions try_only;
  try_only.try_only = true;
  auto busy = b->Acquire("res", try_only);
  ASSERT_FALSE(busy.ok());
  EXPECT_EQ(busy.status().code(), Code::kLockBusy);

  auto pending = std::async(std::launch::async, [&] { return b->Acquire("res"); });
  ASSERT_TRUE(WaitFor([&] { return Waiters(*a, "res") == 1; }));
  EXPECT_EQ(pending.wait_for(0ms), std::future_status::timeout);
  ASSERT_TRUE(a->Release("res").ok());
  auto gb = pending.get();
  ASSERT_TRUE(gb.ok()) << gb.status().ToString();
  EXPECT_GT(gb->fencing_token, ga->fencing_token);
  // a no longer holds it.
  EXPECT_EQ(a->Release("res").code(), Code::kNotHeld);
}

TEST_F(LockIntegrationTest, WaitersAreGrantedInFifoOrder) {
  auto holder = Connect("holder");
  ASSERT_TRUE(holder->Acquire("fifo").ok());
  constexpr int kWaiters = 5;
  std::vector<std::unique_ptr<Client>> clients;
  std::vector<std::future<Result<Grant>>> grants;
  std::mutex mu;
  std::vector<int> order;
  for (int i = 0; i < kWaiters; ++i) {
    clients.push_back(Connect("w" + std::to_string(i)));
    Client* c = clients.back().get();
    grants.push_back(std::async(std::launch::async, [&, c, i] {
      auto g = c->Acquire("fifo");
      {
        std::lock_guard<std::mutex> l(mu);
        order.push_back(i);
      }
      if (g.ok()) (void)c->Release("fifo");
      return g;
    }));
    // Each waiter is queued before the next one asks.
    ASSERT_TRUE(WaitFor([&] { return Waiters(*holder, "fifo") == size_t(i + 1); }));
  }
  ASSERT_TRUE(holder->Release("fifo").ok());
  uint64_t last = 0;
  for (auto& g : grants) {
    auto r = g.get();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_GT(r->fencing_token, last);
    last = r->fencing_token;
  }
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4}));
}

TEST_F(LockIntegrationTest, WaitTimeoutWithdrawsTheRequest) {
  auto a = Connect("a"), b = Connect("b");
  ASSERT_TRUE(a->Acquire("t").ok());
  AcquireOptions o;
  o.wait_timeout = 300ms;
  auto r = b->Acquire("t", o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kTimeout);
  EXPECT_TRUE(WaitFor([&] { return Waiters(*a, "t") == 0; }));
  // The lock is still a's, and b can queue again later.
  ASSERT_TRUE(a->Release("t").ok());
  EXPECT_TRUE(b->Acquire("t", o).ok());
}

TEST_F(LockIntegrationTest, MutexWorksWithStdLockGuard) {
  auto a = Connect("a"), b = Connect("b");
  Mutex ma(*a, "guarded"), mb(*b, "guarded");
  {
    std::lock_guard<Mutex> g(ma);
    EXPECT_GT(ma.fencing_token(), 0u);
    EXPECT_FALSE(mb.try_lock());
    EXPECT_FALSE(mb.try_lock_for(100ms));
  }
  EXPECT_EQ(ma.fencing_token(), 0u);
  std::unique_lock<Mutex> ul(mb, std::try_to_lock);
  EXPECT_TRUE(ul.owns_lock());
}

TEST_F(LockIntegrationTest, MutualExclusionUnderConcurrency) {
  // Four clients, each with two threads, increment a shared counter under the
  // lock with a non-atomic read-modify-write; fencing tokens must increase.
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 4; ++i) clients.push_back(Connect("c" + std::to_string(i)));
  int counter = 0;
  std::atomic<int> inside{0};
  std::atomic<bool> overlap{false};
  std::atomic<uint64_t> last_token{0};
  std::atomic<bool> token_regressed{false};
  std::vector<std::thread> threads;
  constexpr int kIters = 25;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      Mutex m(*clients[static_cast<size_t>(i % 4)], "counter");
      for (int k = 0; k < kIters; ++k) {
        std::lock_guard<Mutex> g(m);
        if (inside.fetch_add(1) != 0) overlap = true;
        uint64_t t = m.fencing_token();
        if (t <= last_token.load()) token_regressed = true;
        last_token = t;
        int v = counter;
        std::this_thread::yield();
        counter = v + 1;
        inside.fetch_sub(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_FALSE(overlap);
  EXPECT_FALSE(token_regressed);
  EXPECT_EQ(counter, 8 * kIters);
}

TEST_F(LockIntegrationTest, ExpiredSessionReleasesAfterLeaseNotBefore) {
  auto observer = Connect("observer");
  // A client process that takes the lock and then vanishes (SIGKILL).
  const auto ttl = 1500ms;
  pid_t holder =
      testing::SpawnCommand({testing::LatchkeyBinary(), "lock", "-e", server_.endpoint(),
                             "--session-ttl", "1500ms", "-q", "vanish", "--", "sleep", "600"},
                            dir_.File("holder.log"));
  ASSERT_TRUE(WaitFor([&] {
    auto i = observer->GetLock("vanish");
    return i.ok() && i->held;
  }));
  // The command (sleep) is the holder's child; kill both.
  std::string children;
  {
    std::ifstream f("/proc/" + std::to_string(holder) + "/task/" + std::to_string(holder) +
                    "/children");
    std::getline(f, children);
  }
  kill(holder, SIGKILL);
  for (std::istringstream in(children); in;) {
    pid_t child = 0;
    if (in >> child) kill(child, SIGKILL);
  }
  const auto killed_at = std::chrono::steady_clock::now();
  testing::WaitPid(holder);
  auto g = observer->Acquire("vanish");
  const auto waited = std::chrono::steady_clock::now() - killed_at;
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  // The last keepalive was at most ttl/3 before the kill, so the lease could
  // not have run out before 2/3 of the ttl.
  EXPECT_GE(waited, ttl * 2 / 3);
}

TEST_F(LockIntegrationTest, StateSurvivesSigkillAndRestart) {
  auto a = Connect("a", 20s);
  auto g = a->Acquire("durable");
  ASSERT_TRUE(g.ok());
  const uint64_t sid = a->session_id();
  server_.Kill9();
  ASSERT_TRUE(server_.Restart());
  // The same session (reconnected within its lease) still holds the lock
  // with the same fencing token.
  auto again = a->Acquire("durable");
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->fencing_token, g->fencing_token);
  EXPECT_EQ(a->session_id(), sid);
  auto b = Connect("b");
  AcquireOptions try_only;
  try_only.try_only = true;
  auto busy = b->Acquire("durable", try_only);
  EXPECT_EQ(busy.status().code(), Code::kLockBusy);
  auto info = b->GetLock("durable");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->holder.session_id, sid);
  // And a release before the kill stays released.
  ASSERT_TRUE(a->Release("durable").ok());
  server_.Kill9();
  ASSERT_TRUE(server_.Restart());
  EXPECT_TRUE(b->Acquire("durable", try_only).ok());
}

TEST_F(LockIntegrationTest, GracefulStopKeepsStateToo) {
  auto a = Connect("a", 20s);
  auto g = a->Acquire("kept");
  ASSERT_TRUE(g.ok());
  ASSERT_TRUE(server_.Terminate());
  ASSERT_TRUE(server_.Restart());
  auto b = Connect("b");
  auto info = b->GetLock("kept");
  ASSERT_TRUE(info.ok());
  EXPECT_TRUE(info->held);
  EXPECT_EQ(info->holder.fencing_token, g->fencing_token);
}

TEST_F(LockIntegrationTest, LockTtlReleasesAndTellsTheHolder) {
  auto a = Connect("a"), b = Connect("b");
  AcquireOptions o;
  o.lock_ttl = 400ms;
  auto g = a->Acquire("ttl", o);
  ASSERT_TRUE(g.ok());
  auto gb = b->Acquire("ttl");  // granted once the TTL runs out
  ASSERT_TRUE(gb.ok()) << gb.status().ToString();
  EXPECT_GT(gb->fencing_token, g->fencing_token);
  EXPECT_EQ(a->Release("ttl").code(), Code::kNotHeld);
}

TEST_F(LockIntegrationTest, StatusCountsSessionsAndLocks) {
  auto a = Connect("a");
  ASSERT_TRUE(a->Acquire("s1").ok());
  ASSERT_TRUE(a->Acquire("s2").ok());
  auto st = a->GetStatus();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->raft_state, "leader");
  EXPECT_EQ(st->locks_held, 2u);
  EXPECT_EQ(st->sessions, 1u);
  EXPECT_EQ(st->voters, 1u);
}

TEST_F(LockIntegrationTest, InvalidNamesAreRejectedClearly) {
  auto a = Connect("a");
  auto r = a->Acquire("bad name");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("contains"), std::string::npos);
}

}  // namespace
}  // namespace latchkey
