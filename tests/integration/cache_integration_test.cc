// Cached locks with callbacks, lock value blocks and owned-state migration,
// end to end: real server process, real client library (issue 4).
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include "latchkey/cached_lock.h"
#include "latchkey/client.h"
#include "latchkey/state_store.h"
#include "testlib/server_fixture.h"
#include "testlib/server_process.h"

namespace latchkey {
namespace {

using namespace std::chrono_literals;
using testing::ServerProcess;
using testing::TempDir;
using testing::WaitFor;

class CacheIntegrationTest : public testing::SingleServerTest {
 protected:
  // Pushes made before a reply on one connection arrive before it: after
  // this round trip every callback already applied has been handled.
  void Sync(Client& c) { ASSERT_TRUE(c.GetLock("sync").ok()); }
};

TEST_F(CacheIntegrationTest, CachedReacquireSendsNoMessage) {
  auto a = Connect("a");
  LockCache cache(*a);
  ASSERT_TRUE(cache.Lock("c.x", LockMode::kEX).ok());
  cache.Unlock("c.x", LockMode::kEX);
  EXPECT_EQ(cache.messages_sent(), 1u);
  const uint64_t sent = a->requests_sent();
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(cache.Lock("c.x", i % 2 ? LockMode::kPR : LockMode::kEX).ok());
    cache.Unlock("c.x", i % 2 ? LockMode::kPR : LockMode::kEX);
  }
  {
    CachedLock l(cache, "c.x");
    std::lock_guard<CachedLock> g(l);  // Lockable
    EXPECT_EQ(cache.State("c.x").granted_locally, LockMode::kEX);
  }
  EXPECT_EQ(cache.messages_sent(), 1u);
  EXPECT_EQ(a->requests_sent(), sent);
  EXPECT_EQ(cache.Grantable("c.x"), LockMode::kEX);
  EXPECT_EQ(cache.State("c.x").local_users, 0u);
  // The server still shows the node's cached grant.
  auto info = a->GetLock("c.x");
  ASSERT_TRUE(info.ok());
  EXPECT_TRUE(info->held);
  EXPECT_EQ(info->holder.session_id, a->session_id());
}

TEST_F(CacheIntegrationTest, ConflictCallsBackOnceAndLocalUsersFinishFirst) {
  auto a = Connect("a"), b = Connect("b"), c = Connect("c");
  LockCache cache(*a);
  ASSERT_TRUE(cache.Lock("c.y", LockMode::kEX).ok());  // a local user holds it
  auto fb = std::async(std::launch::async, [&] { return b->Acquire("c.y"); });
  ASSERT_TRUE(WaitFor([&] { return cache.stats().callbacks == 1; }));
  EXPECT_TRUE(cache.State("c.y").called_back);
  auto seen = c->GetLock("c.y");  // introspection shows the cached grant called back
  ASSERT_TRUE(seen.ok());
  EXPECT_TRUE(seen->holder.cacheable);
  EXPECT_TRUE(seen->holder.called_back);
  EXPECT_EQ(seen->holder.callback_to, LockMode::kNL);
  auto fc = std::async(std::launch::async, [&] { return c->Acquire("c.y"); });
  ASSERT_TRUE(WaitFor([&] { return Waiters(*a, "c.y") == 2; }));
  Sync(*a);
  EXPECT_EQ(cache.stats().callbacks, 1u);  // one per (grant, need), not per waiter
  // The local user is not interrupted: b still waits.
  EXPECT_EQ(fb.wait_for(0ms), std::future_status::timeout);
  cache.Unlock("c.y", LockMode::kEX);  // last local user: hand back now
  auto gb = fb.get();
  ASSERT_TRUE(gb.ok()) << gb.status().ToString();
  ASSERT_TRUE(WaitFor([&] { return cache.Grantable("c.y") == LockMode::kNL; }));
  ASSERT_TRUE(b->Release("c.y").ok());
  ASSERT_TRUE(fc.get().ok());
  EXPECT_TRUE(WaitFor([&] { return cache.stats().handbacks == 1; }));
  Sync(*a);
  EXPECT_EQ(cache.stats().handbacks, 1u);
}

TEST_F(CacheIntegrationTest, CallbackDowngradesForReadersAndReleasesForWriters) {
  auto a = Connect("a"), b = Connect("b");
  LockCache cache(*a);
  ASSERT_TRUE(cache.Lock("c.z", LockMode::kEX).ok());
  cache.Unlock("c.z", LockMode::kEX);
  AcquireOptions pr;
  pr.mode = LockMode::kPR;
  auto gb = b->Acquire("c.z", pr);  // a is asked down to PR, not to release
  ASSERT_TRUE(gb.ok()) << gb.status().ToString();
  ASSERT_TRUE(WaitFor([&] { return cache.Grantable("c.z") == LockMode::kPR; }));
  const uint64_t before = cache.messages_sent();
  ASSERT_TRUE(cache.Lock("c.z", LockMode::kPR).ok());  // still cached: no message
  EXPECT_EQ(cache.messages_sent(), before);
  cache.Unlock("c.z", LockMode::kPR);
  ASSERT_TRUE(b->Release("c.z").ok());
  AcquireOptions ex;
  auto gb2 = b->Acquire("c.z", ex);  // a writer: a must release
  ASSERT_TRUE(gb2.ok()) << gb2.status().ToString();
  // (a learns its release is done from its own reply, which may come later)
  EXPECT_TRUE(WaitFor([&] { return cache.Grantable("c.z") == LockMode::kNL; }));
  auto info = b->GetLock("c.z");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->holders.size(), 1u);
}

TEST_F(CacheIntegrationTest, CallbackReachesAHolderThatReconnects) {
  auto a = Connect("a"), b = Connect("b");
  LockCache cache(*a);
  ASSERT_TRUE(cache.Lock("c.r", LockMode::kEX).ok());
  cache.Unlock("c.r", LockMode::kEX);
  // The callback may hit the dropped connection; re-attaching re-sends it.
  a->DropConnectionForTesting();
  AcquireOptions o;
  o.wait_timeout = 8s;
  auto g = b->Acquire("c.r", o);
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_TRUE(WaitFor([&] { return cache.Grantable("c.r") == LockMode::kNL; }));
}

TEST_F(CacheIntegrationTest, UncacheAndReleaseOnIdleGiveTheGrantBack) {
  auto a = Connect("a");
  LockCache keep(*a);
  ASSERT_TRUE(keep.Lock("c.u", LockMode::kEX).ok());
  keep.Unlock("c.u", LockMode::kEX);
  ASSERT_TRUE(keep.Uncache("c.u", 5s).ok());
  EXPECT_EQ(keep.Grantable("c.u"), LockMode::kNL);
  auto info = a->GetLock("c.u");
  ASSERT_TRUE(info.ok());
  EXPECT_FALSE(info->held);

  auto b = Connect("b");
  LockCacheOptions idle;
  idle.policy = CachePolicy::kReleaseOnIdle;
  LockCache cache(*b, idle);
  ASSERT_TRUE(cache.Lock("c.i", LockMode::kEX).ok());
  EXPECT_TRUE(b->GetLock("c.i")->held);
  cache.Unlock("c.i", LockMode::kEX);
  EXPECT_TRUE(WaitFor([&] { return !b->GetLock("c.i")->held; }));
}

TEST_F(CacheIntegrationTest, LocalUsersShareTheGrantUnderTheMatrix) {
  auto a = Connect("a");
  LockCache cache(*a);
  CachedLock r1(cache, "c.l", LockMode::kPR), r2(cache, "c.l", LockMode::kPR);
  ASSERT_TRUE(r1.Upgrade(LockMode::kPR).ok());
  ASSERT_TRUE(r2.Upgrade(LockMode::kPR).ok());  // readers share
  EXPECT_EQ(cache.State("c.l").local_users, 2u);
  // r1 wants EX: it waits for the other local reader, asynchronously.
  auto up = r1.UpgradeAsync(LockMode::kEX, 5s);
  EXPECT_EQ(up.wait_for(100ms), std::future_status::timeout);
  r2.Downgrade(LockMode::kNL);
  ASSERT_TRUE(up.get().ok());
  EXPECT_EQ(r1.level(), LockMode::kEX);
  EXPECT_EQ(cache.State("c.l").granted_locally, LockMode::kEX);
  EXPECT_FALSE(r2.try_lock());  // a local EX excludes it
  r1.Downgrade(LockMode::kPR);  // in place, no message
  EXPECT_TRUE(r2.try_lock());
  r2.unlock();
  EXPECT_EQ(cache.messages_sent(), 2u);  // PR, then the upgrade to EX
}

TEST_F(CacheIntegrationTest, HandBackCarriesTheLocallyWrittenValue) {
  auto a = Connect("a"), b = Connect("b");
  LockCache cache(*a);
  ASSERT_TRUE(cache.Lock("c.v", LockMode::kEX).ok());
  ASSERT_TRUE(cache.WriteValueLocal("c.v", "from-a").ok());
  const std::string big(64 * 1024 + 1, 'x');
  EXPECT_EQ(cache.WriteValueLocal("c.v", big).code(), Code::kValueTooLarge);
  EXPECT_EQ(a->SetLockValue("c.v", big).code(), Code::kValueTooLarge);
  cache.Unlock("c.v", LockMode::kEX);
  auto g = b->Acquire("c.v");  // callback -> release with the value -> grant
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_EQ(g->value, "from-a");
  EXPECT_GT(g->value_token, 0u);
  EXPECT_LT(g->value_token, g->fencing_token);
}

std::vector<std::string> Lines(const std::string& path) {
  std::ifstream f(path);
  std::vector<std::string> out;
  for (std::string l; std::getline(f, l);) out.push_back(l);
  return out;
}

TEST_F(CacheIntegrationTest, HolderThatNeverAnswersKeepsTheLockUntilItsLeaseEnds) {
  // A helper process owns the key (cached) and is then frozen: it neither
  // answers the callback nor renews its 2 s lease.
  const std::string out = dir_.File("holder.out");
  pid_t holder =
      testing::SpawnCommand({STATE_WORKER_BIN, server_.endpoint(), "k", "1", "2000", "hold"}, out);
  ASSERT_GT(holder, 0);
  ASSERT_TRUE(WaitFor([&] {
    auto l = Lines(out);
    return !l.empty() && l.back() == "holding";
  }));
  kill(holder, SIGSTOP);
  auto b = Connect("b");
  StateStore sb(*b);
  const auto start = std::chrono::steady_clock::now();
  AcquireOptions quick;
  quick.wait_timeout = 300ms;
  EXPECT_EQ(b->Acquire(sb.LockName("k"), quick).status().code(), Code::kTimeout);
  auto v = sb.Read("k");  // waits for the lease to end, then gets the state
  const auto waited = std::chrono::steady_clock::now() - start;
  kill(holder, SIGKILL);
  testing::WaitPid(holder);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->value_or("absent"), "1");
  EXPECT_GE(waited, 600ms);  // never less than what was left of the lease
}

TEST_F(CacheIntegrationTest, ThreeClientsMigrateOneCounterWithoutLosingAnIncrement) {
  constexpr int kClients = 3, kEach = 25;
  std::vector<std::unique_ptr<Client>> clients;
  std::vector<std::unique_ptr<StateStore>> stores;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(Connect("node" + std::to_string(i)));
    stores.push_back(std::make_unique<StateStore>(*clients.back()));
  }
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      for (int n = 0; n < kEach; ++n) {
        auto r = stores[static_cast<size_t>(i)]->Update(
            "counter", [](const std::optional<std::string>& cur) {
              return std::to_string((cur ? std::stoll(*cur) : 0) + 1);
            });
        if (!r.ok()) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  auto v = stores[0]->Read("counter");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(*v, std::to_string(kClients * kEach));
  // Introspection: the bucket and the owner (node0 just read it).
  auto owner = stores[1]->Owner("counter");
  ASSERT_TRUE(owner.ok());
  EXPECT_EQ(owner->bucket, stores[1]->BucketOf("counter"));
  EXPECT_EQ(owner->lock_name, "state." + std::to_string(owner->bucket) + ".counter");
  EXPECT_TRUE(owner->owned);
  EXPECT_EQ(owner->session_id, clients[0]->session_id());
  EXPECT_TRUE(owner->present);
  auto listed = clients[2]->ListLocks("state." + std::to_string(owner->bucket));
  ASSERT_TRUE(listed.ok());
  ASSERT_FALSE(listed->empty());
  // The owner reads again without a message (session affinity fast path).
  const uint64_t sent = stores[0]->cache().messages_sent();
  ASSERT_TRUE(stores[0]->Read("counter").ok());
  EXPECT_EQ(stores[0]->cache().messages_sent(), sent);
  // Absent key: the first toucher becomes its owner.
  auto absent = stores[2]->Read("fresh-key");
  ASSERT_TRUE(absent.ok());
  EXPECT_FALSE(absent->has_value());
  auto fresh = stores[0]->Owner("fresh-key");
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(fresh->session_id, clients[2]->session_id());
  EXPECT_FALSE(fresh->present);
}

TEST_F(CacheIntegrationTest, AcknowledgedIncrementsSurviveAnOwnerKilledMidRun) {
  constexpr int kEach = 20;
  const std::string out = dir_.File("worker.out");
  pid_t worker = testing::SpawnCommand(
      {STATE_WORKER_BIN, server_.endpoint(), "counter", "100000", "1000"}, out);
  ASSERT_GT(worker, 0);
  auto acks = [&] {
    int n = 0;
    for (const std::string& l : Lines(out)) n += l.rfind("ack ", 0) == 0 ? 1 : 0;
    return n;
  };
  ASSERT_TRUE(WaitFor([&] { return acks() >= 5; }, 30s)) << "worker made no progress";
  auto a = Connect("a"), b = Connect("b");
  StateStore sa(*a), sb(*b);
  std::atomic<int> failures{0};
  auto run = [&](StateStore& s) {
    for (int n = 0; n < kEach; ++n) {
      auto r = s.Update("counter", [](const std::optional<std::string>& cur) {
        return std::to_string((cur ? std::stoll(*cur) : 0) + 1);
      });
      if (!r.ok()) ++failures;
    }
  };
  std::thread ta([&] { run(sa); });
  std::thread tb([&] { run(sb); });
  // Kill the worker while the three of them pass the key around.
  ASSERT_TRUE(WaitFor([&] { return acks() >= 10; }, 30s));
  kill(worker, SIGKILL);
  testing::WaitPid(worker);
  ta.join();
  tb.join();
  EXPECT_EQ(failures.load(), 0);
  const int acked = acks();
  auto v = sa.Read("counter");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  ASSERT_TRUE(v->has_value());
  const long long final_count = std::stoll(**v);
  // Every acknowledged increment is there; at most one more (acknowledged by
  // the server while the worker was killed before printing it).
  EXPECT_GE(final_count, acked + 2 * kEach);
  EXPECT_LE(final_count, acked + 2 * kEach + 1);
}

TEST_F(CacheIntegrationTest, ValueBlocksSurviveAServerRestart) {
  {
    auto a = Connect("a");
    StateStore s(*a);
    ASSERT_TRUE(s.Write("session-42", "cart=3").ok());
    ASSERT_TRUE(a->Close().ok());
  }
  server_.Kill9();  // acknowledged means durable: no clean shutdown needed
  ASSERT_TRUE(server_.Restart());
  auto b = Connect("b");
  StateStore s(*b);
  auto v = s.Read("session-42");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  ASSERT_TRUE(v->has_value());
  EXPECT_EQ(**v, "cart=3");
}

// Across the name hierarchy: a cached EX on `a` blocks a request on `a.b`
// (its implied CW). The holder is called back down to CW and hands it over
// as soon as its local user is done, long before its 30 s lease would end
// (b gives up after 10 s, so a missing callback fails the test).
TEST_F(CacheIntegrationTest, RequestBelowACachedAncestorIsGrantedAfterLocalUsersFinish) {
  auto a = Connect("a", 30s), b = Connect("b");
  LockCache cache(*a);
  ASSERT_TRUE(cache.Lock("h", LockMode::kEX).ok());  // a local user holds it
  AcquireOptions o;
  o.wait_timeout = 10s;
  auto fb = std::async(std::launch::async, [&] { return b->Acquire("h.b", o); });
  ASSERT_TRUE(WaitFor([&] { return cache.stats().callbacks == 1; }));
  auto seen = b->GetLock("h");
  ASSERT_TRUE(seen.ok());
  EXPECT_TRUE(seen->holder.called_back);
  EXPECT_EQ(seen->holder.callback_to, LockMode::kCW);        // the intention a.b needs
  EXPECT_EQ(fb.wait_for(0ms), std::future_status::timeout);  // local user first
  const auto released = std::chrono::steady_clock::now();
  cache.Unlock("h", LockMode::kEX);
  auto gb = fb.get();
  ASSERT_TRUE(gb.ok()) << gb.status().ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - released, 5s);
  // a went down to CW, not further: it still may write below `h` itself.
  EXPECT_TRUE(WaitFor([&] { return cache.Grantable("h") == LockMode::kCW; }));
  EXPECT_EQ(cache.stats().callbacks, 1u);
}

// And the other way: cached grants below `p` are called back when another
// client wants `p` itself.
TEST_F(CacheIntegrationTest, RequestAboveCachedDescendantsCallsThemBack) {
  auto a = Connect("a", 30s), b = Connect("b");
  LockCache cache(*a);
  ASSERT_TRUE(cache.Lock("p.x", LockMode::kEX).ok());
  cache.Unlock("p.x", LockMode::kEX);
  ASSERT_TRUE(cache.Lock("p.y", LockMode::kPR).ok());
  cache.Unlock("p.y", LockMode::kPR);
  AcquireOptions pr;
  pr.mode = LockMode::kPR;
  pr.wait_timeout = 10s;
  auto g = b->Acquire("p", pr);  // p.x must go down to PR; p.y may stay
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_TRUE(WaitFor([&] { return cache.Grantable("p.x") == LockMode::kPR; }));
  EXPECT_EQ(cache.Grantable("p.y"), LockMode::kPR);
  ASSERT_TRUE(b->Release("p").ok());
  AcquireOptions ex;
  ex.wait_timeout = 10s;
  ASSERT_TRUE(b->Acquire("p", ex).ok());  // now both must go
  EXPECT_TRUE(WaitFor([&] {
    return cache.Grantable("p.x") == LockMode::kNL && cache.Grantable("p.y") == LockMode::kNL;
  }));
}

// AcquireMany replies (immediate and after a wait) and the AttachSession
// list carry each lock's value block and value token.
TEST_F(CacheIntegrationTest, AcquireManyAndReattachCarryValueBlocks) {
  auto a = Connect("a"), b = Connect("b");
  ASSERT_TRUE(a->Acquire("mv.1").ok());
  ASSERT_TRUE(a->SetLockValue("mv.1", "one").ok());
  ASSERT_TRUE(a->Release("mv.1").ok());
  auto g = b->AcquireManyGrants({{"mv.1", LockMode::kEX}, {"mv.2", LockMode::kPR}});
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  ASSERT_EQ(g->size(), 2u);
  EXPECT_EQ((*g)[0].value, "one");
  EXPECT_GT((*g)[0].value_token, 0u);
  EXPECT_LT((*g)[0].value_token, (*g)[0].fencing_token);
  EXPECT_EQ((*g)[1].value, "");
  EXPECT_EQ((*g)[1].value_token, 0u);
  EXPECT_EQ((*g)[1].mode, LockMode::kPR);
  // Granted after a wait: b writes mv.1 and releases, a's reply has it.
  auto fa = std::async(std::launch::async, [&] {
    return a->AcquireManyGrants({{"mv.3", LockMode::kEX}, {"mv.1", LockMode::kEX}});
  });
  ASSERT_TRUE(WaitFor([&] { return Waiters(*b, "mv.1") == 1; }));
  ASSERT_TRUE(b->SetLockValue("mv.1", "two").ok());
  ASSERT_TRUE(b->Release("mv.1").ok());
  auto ga = fa.get();
  ASSERT_TRUE(ga.ok()) << ga.status().ToString();
  EXPECT_EQ((*ga)[1].value, "two");
  EXPECT_GT((*ga)[1].fencing_token, (*g)[0].fencing_token);
  // After a reconnect, the re-attached session's locks come with values.
  EXPECT_TRUE(a->held_at_attach().empty());
  a->DropConnectionForTesting();
  ASSERT_TRUE(WaitFor([&] { return !a->held_at_attach().empty(); }));
  bool saw = false;
  for (const Grant& h : a->held_at_attach()) {
    if (h.name != "mv.1") continue;
    saw = true;
    EXPECT_EQ(h.value, "two");
    EXPECT_EQ(h.fencing_token, (*ga)[1].fencing_token);
  }
  EXPECT_TRUE(saw);
}

// `latchkey state owner KEY` / `state bucket B` show the bucket and owner.
TEST_F(CacheIntegrationTest, StateOwnerIsVisibleThroughTheCli) {
  auto a = Connect("owner-a");
  StateStoreOptions so;
  so.buckets = 8;
  StateStore s(*a, so);
  ASSERT_TRUE(s.Write("cart-7", "3 items").ok());
  const std::string bucket = std::to_string(s.BucketOf("cart-7"));
  std::string out;
  ASSERT_EQ(testing::RunCommand({testing::LatchkeyBinary(), "state", "owner", "cart-7", "--buckets",
                                 "8", "--json", "-e", server_.endpoint()},
                                &out),
            0)
      << out;
  EXPECT_NE(out.find("\"bucket\":" + bucket + ","), std::string::npos) << out;
  EXPECT_NE(out.find("\"owned\":true"), std::string::npos) << out;
  EXPECT_NE(out.find("\"owner_session_id\":" + std::to_string(a->session_id()) + ","),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("\"present\":true"), std::string::npos) << out;
  out.clear();
  ASSERT_EQ(
      testing::RunCommand(
          {testing::LatchkeyBinary(), "state", "bucket", bucket, "-e", server_.endpoint()}, &out),
      0);
  EXPECT_NE(out.find("key 'cart-7' bucket " + bucket), std::string::npos) << out;
  EXPECT_NE(out.find("owned by session " + std::to_string(a->session_id()) + " (owner-a)"),
            std::string::npos)
      << out;
  // Reading ownership does not move the key: a still owns it, no message.
  const uint64_t sent = a->requests_sent();
  ASSERT_TRUE(s.Read("cart-7").ok());
  EXPECT_EQ(a->requests_sent(), sent);
  out.clear();
  EXPECT_EQ(testing::RunCommand({testing::LatchkeyBinary(), "state", "owner", "absent-key", "-e",
                                 server_.endpoint()},
                                &out),
            0);
  EXPECT_NE(out.find("no owner, no state stored"), std::string::npos) << out;
}

}  // namespace
}  // namespace latchkey
