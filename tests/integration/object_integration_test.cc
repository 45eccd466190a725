// The object store through the real server, client library and CLI:
// reserve/wait_for (owner closes or dies), sliding and absolute TTLs,
// compaction vs pinned reads, retention, transactions guarded by locks, the
// seed-001 lock object and the CLI.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/types.h>

#include <future>
#include <thread>

#include "latchkey/client.h"
#include "latchkey/objects.h"
#include "testlib/server_process.h"

namespace latchkey {
namespace {

using namespace std::chrono_literals;
using testing::LatchkeyBinary;
using testing::RunCommand;
using testing::ServerProcess;
using testing::TempDir;
using testing::WaitFor;

class ObjectIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.Start()); }
  std::unique_ptr<Client> Connect(const std::string& name,
                                  std::chrono::milliseconds ttl = 10'000ms) {
    ClientOptions o;
    o.endpoint = server_.endpoint();
    o.client_name = name;
    o.session_ttl = ttl;
    auto c = Client::Connect(o);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c.value()) : nullptr;
  }
  // The latest state without sending the object (History does not restart
  // sliding TTL clocks; Get would).
  ObjectState PeekState(Objects& objs, const std::string& key) {
    auto h = objs.History(key, 0, 1000);
    if (!h.ok() || h->objects.empty()) return ObjectState::kAbsent;
    return h->objects.back().state;
  }

  TempDir dir_;
  ServerProcess server_{dir_.File("data"),
                        {"--object-default-ttl-ms", "700", "--object-retain-revisions", "0",
                         "--object-retain-ms", "0"}};
};

TEST_F(ObjectIntegrationTest, ReserveThenWaitersGetTheValue) {
  auto producer = Connect("producer");
  auto consumer = Connect("consumer");
  Objects p(*producer), c(*consumer);
  auto r = p.Reserve("report");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->state, ObjectState::kReserved);
  EXPECT_EQ(c.Reserve("report").status().code(), Code::kAlreadyExists);
  auto seen = c.Get("report");
  ASSERT_TRUE(seen.ok());
  EXPECT_EQ(seen->state, ObjectState::kReserved);
  auto waiter = std::async(std::launch::async, [&] { return c.WaitFor("report", 10'000ms); });
  EXPECT_EQ(waiter.wait_for(200ms), std::future_status::timeout);  // blocked while reserved
  ASSERT_TRUE(p.Put("report", "done").ok());
  auto got = waiter.get();
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->state, ObjectState::kAvailable);
  EXPECT_EQ(got->value, "done");
  // Not reserved: wait_for answers at once.
  auto now = c.WaitFor("report", 50ms);
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(now->value, "done");
  // Still reserved at the timeout: TIMEOUT.
  ASSERT_TRUE(p.Reserve("slow").ok());
  EXPECT_EQ(c.WaitFor("slow", 300ms).status().code(), Code::kTimeout);
}

TEST_F(ObjectIntegrationTest, WaitForReturnsWhenTheReserverClosesOrDies) {
  auto consumer = Connect("consumer");
  Objects c(*consumer);
  {
    auto owner = Connect("owner");
    ASSERT_TRUE(Objects(*owner).Reserve("a").ok());
    auto waiter = std::async(std::launch::async, [&] { return c.WaitFor("a", 10'000ms); });
    EXPECT_EQ(waiter.wait_for(100ms), std::future_status::timeout);
    ASSERT_TRUE(owner->Close().ok());
    auto got = waiter.get();
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(got->state, ObjectState::kAbsent);  // told: nobody will publish it
  }
  // A CLI process reserves, then is SIGKILLed: its lease runs out (1 s).
  const std::string out = dir_.File("reserve.out");
  pid_t pid = testing::SpawnCommand({LatchkeyBinary(), "reserve", "-e", server_.endpoint(),
                                     "--session-ttl", "1s", "b", "--", "sleep", "60"},
                                    out);
  ASSERT_TRUE(WaitFor([&] {
    auto o = c.Get("b");
    return o.ok() && o->state == ObjectState::kReserved;
  }));
  auto waiter = std::async(std::launch::async, [&] { return c.WaitFor("b", 20'000ms); });
  const auto killed_at = std::chrono::steady_clock::now();
  ::kill(pid, SIGKILL);
  testing::WaitPid(pid);
  auto got = waiter.get();
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->state, ObjectState::kAbsent);
  EXPECT_LT(std::chrono::steady_clock::now() - killed_at, 10s);
}

TEST_F(ObjectIntegrationTest, SlidingTtlIsRefreshedByReads) {
  auto cl = Connect("ttl");
  Objects o(*cl);
  ASSERT_TRUE(o.Put("hot", "v").ok());
  ASSERT_TRUE(o.SetTimeoutAfterRequest("hot", 600ms).ok());
  // Read every 150 ms for well over the TTL: it never expires.
  const auto until = std::chrono::steady_clock::now() + 1800ms;
  auto last_read = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() < until) {
    last_read = std::chrono::steady_clock::now();  // the clock restarts after this
    auto g = o.Get("hot");
    ASSERT_TRUE(g.ok());
    ASSERT_EQ(g->state, ObjectState::kAvailable) << "expired although read recently";
    EXPECT_TRUE(g->ttl_sliding);
    std::this_thread::sleep_for(150ms);  // the read cadence under test, not a wait
  }
  // Without reads it expires (polled without sending the object).
  ASSERT_TRUE(WaitFor([&] { return PeekState(o, "hot") == ObjectState::kAbsent; }, 10s));
  EXPECT_GE(std::chrono::steady_clock::now() - last_read, 600ms);
  // The server default (700 ms here), absolute: reads do not extend it.
  ASSERT_TRUE(o.Put("cold", "v").ok());
  ASSERT_TRUE(o.SetDefaultTimeout("cold").ok());
  auto g = o.Get("cold");
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->ttl_ms, 700u);
  EXPECT_FALSE(g->ttl_sliding);
  ASSERT_TRUE(WaitFor(
      [&] {
        auto x = o.Get("cold");
        return x.ok() && x->state == ObjectState::kAbsent;
      },
      10s));
}

TEST_F(ObjectIntegrationTest, CompactionKeepsReadsPinnedAtOrAbove) {
  auto cl = Connect("mvcc");
  Objects o(*cl);
  uint64_t first = 0;
  for (int i = 0; i < 5; ++i) {
    auto r = o.Put("cfg/k" + std::to_string(i), "v0");
    ASSERT_TRUE(r.ok());
    if (i == 0) first = *r;
  }
  auto page1 = o.Find("cfg/", 0, "", 2);  // pin the revision of the first page
  ASSERT_TRUE(page1.ok());
  ASSERT_TRUE(page1->truncated);
  const uint64_t pinned = page1->revision;
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(o.Put("cfg/k" + std::to_string(i), "v1").ok());
  auto c = o.Compact(pinned);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(*c, pinned);
  // The rest of the pinned scan still reads the old values, consistently.
  auto page2 = o.Find("cfg/", pinned, page1->objects.back().key, 10);
  ASSERT_TRUE(page2.ok()) << page2.status().ToString();
  ASSERT_EQ(page2->objects.size(), 3u);
  for (const Object& x : page2->objects) EXPECT_EQ(x.value, "v0");
  // Below the compaction point: an explicit error.
  auto old = o.Get("cfg/k0", first);
  EXPECT_EQ(old.status().code(), Code::kCompacted);
  auto latest = o.Get("cfg/k0");
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ(latest->value, "v1");
  EXPECT_EQ(latest->version, 2u);
}

TEST_F(ObjectIntegrationTest, TxnGuardedByLockWritesAndReleasesAtomically) {
  auto a = Connect("writer");
  auto b = Connect("next");
  Objects oa(*a), ob(*b);
  auto g = a->Acquire("job.lock");
  ASSERT_TRUE(g.ok());
  auto next = std::async(std::launch::async, [&] { return b->Acquire("job.lock"); });
  // b does not hold the lock: its guarded write takes the else branch.
  TxnRequest tb;
  tb.compares.push_back(Compare::HoldsLock("job.lock", LockMode::kEX));
  tb.then_ops.push_back(TxnOp::Put("job/result", "from b"));
  auto rb = ob.Txn(tb);
  ASSERT_TRUE(rb.ok()) << rb.status().ToString();
  EXPECT_FALSE(rb->succeeded);
  // a holds it with this token: write the result and release in one step.
  TxnRequest ta;
  ta.compares.push_back(Compare::HoldsLock("job.lock", LockMode::kPW));
  ta.compares.push_back(Compare::LockToken("job.lock", Compare::Op::kEq, g->fencing_token));
  ta.then_ops.push_back(TxnOp::Put("job/result", "from a"));
  ta.then_ops.push_back(TxnOp::ReleaseLock("job.lock"));
  auto ra = oa.Txn(ta);
  ASSERT_TRUE(ra.ok()) << ra.status().ToString();
  EXPECT_TRUE(ra->succeeded);
  auto gb = next.get();  // the release in the txn handed the lock over
  ASSERT_TRUE(gb.ok()) << gb.status().ToString();
  EXPECT_GT(gb->fencing_token, ra->revision);
  auto v = ob.Get("job/result");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->value, "from a");
  EXPECT_EQ(v->mod_revision, ra->revision);
}

TEST_F(ObjectIntegrationTest, Seed001MethodsCountersAndLockObject) {
  auto c1 = Connect("n1");
  auto c2 = Connect("n2");
  Objects o1(*c1), o2(*c2);
  auto holder = o1.ExecuteMethod("flow", "get_lock_holder");
  ASSERT_TRUE(holder.ok());
  EXPECT_EQ(*holder, "");
  EXPECT_EQ(*o1.ExecuteMethod("flow", "lock_for", {"n1"}), "n1");
  EXPECT_EQ(*o2.ExecuteMethod("flow", "lock_for", {"n2"}), "n1");  // taken
  EXPECT_EQ(*o2.ExecuteMethod("flow", "unlock", {"n2"}), "false");
  EXPECT_EQ(*o1.ExecuteMethod("flow", "unlock", {"n1"}), "true");
  EXPECT_EQ(*o2.ExecuteMethod("flow", "lock_for", {"n2"}), "n2");
  // Concurrent counter adds never lose an update.
  std::vector<std::thread> ts;
  for (auto* o : {&o1, &o2}) {
    ts.emplace_back([o] {
      for (int i = 0; i < 50; ++i) ASSERT_TRUE(o->ExecuteMethod("hits", "counter.add").ok());
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(*o1.ExecuteMethod("hits", "counter.get"), "100");
  EXPECT_EQ(o1.ExecuteMethod("hits", "no.such").status().code(), Code::kNotFound);
}

TEST_F(ObjectIntegrationTest, CliCommands) {
  const std::string bin = LatchkeyBinary(), ep = server_.endpoint();
  std::string out;
  ASSERT_EQ(RunCommand({bin, "put", "-e", ep, "cli/a", "hello"}, &out), 0) << out;
  ASSERT_EQ(RunCommand({bin, "get", "-e", ep, "--json", "cli/a"}, &out), 0) << out;
  EXPECT_NE(out.find("\"value\":\"hello\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"state\":\"available\""), std::string::npos) << out;
  EXPECT_EQ(RunCommand({bin, "get", "-e", ep, "cli/none"}, &out), 1) << out;
  ASSERT_EQ(RunCommand({bin, "reserve", "-e", ep, "cli/job", "--", "echo", "computed"}, &out), 0)
      << out;
  ASSERT_EQ(RunCommand({bin, "wait", "-e", ep, "--timeout", "5s", "cli/job"}, &out), 0) << out;
  EXPECT_NE(out.find("computed"), std::string::npos) << out;
  ASSERT_EQ(RunCommand({bin, "exec", "-e", ep, "cli/n", "counter.add", "5"}, &out), 0) << out;
  EXPECT_EQ(out, "5\n");
  ASSERT_EQ(RunCommand({bin, "txn", "-e", ep, "--if", "value(cli/a) == hello", "--then",
                        "put cli/a bye", "--then", "get cli/a"},
                       &out),
            0)
      << out;
  EXPECT_NE(out.find("then branch"), std::string::npos) << out;
  EXPECT_NE(out.find("bye"), std::string::npos) << out;
  ASSERT_EQ(RunCommand({bin, "history", "-e", ep, "--json", "cli/a"}, &out), 0) << out;
  EXPECT_NE(out.find("hello"), std::string::npos) << out;
  ASSERT_EQ(RunCommand({bin, "find", "-e", ep, "--all", "--limit", "1", "cli/"}, &out), 0) << out;
  EXPECT_NE(out.find("3 objects"), std::string::npos) << out;
  ASSERT_EQ(RunCommand({bin, "ttl", "-e", ep, "cli/a", "1h", "--sliding"}, &out), 0) << out;
  EXPECT_NE(out.find("(sliding)"), std::string::npos) << out;
  ASSERT_EQ(RunCommand({bin, "rm", "-e", ep, "cli/a"}, &out), 0) << out;
  EXPECT_NE(out.find("removed"), std::string::npos) << out;
  ASSERT_EQ(RunCommand({bin, "compact", "-e", ep, "--json"}, &out), 0) << out;
  EXPECT_NE(out.find("compact_revision"), std::string::npos) << out;
  EXPECT_EQ(RunCommand({bin, "get", "-e", ep, "--revision", "1", "cli/a"}, &out), 70) << out;
  EXPECT_NE(out.find("COMPACTED"), std::string::npos) << out;
  EXPECT_EQ(RunCommand({bin, "put", "-e", ep, "", "x"}, &out), 64) << out;
}

// Retention by count: the leader compacts on its own.
TEST(ObjectRetentionTest, LeaderCompactsByRevisionCount) {
  TempDir dir;
  ServerProcess server(dir.File("data"),
                       {"--object-retain-revisions", "5", "--object-retain-ms", "0"});
  ASSERT_TRUE(server.Start());
  ClientOptions co;
  co.endpoint = server.endpoint();
  auto cl = Client::Connect(co);
  ASSERT_TRUE(cl.ok());
  Objects o(**cl);
  const uint64_t first = *o.Put("r", "0");
  for (int i = 1; i < 20; ++i) ASSERT_TRUE(o.Put("r", std::to_string(i)).ok());
  ASSERT_TRUE(WaitFor([&] { return o.Get("r", first).status().code() == Code::kCompacted; }, 10s));
  // Compactions run at most once a second; the last ones keep only the
  // versions of the last 5 revisions plus the one visible at the point.
  ASSERT_TRUE(WaitFor(
      [&] {
        auto h = o.History("r");
        return h.ok() && h->objects.size() <= 6u;
      },
      10s));
  auto h = o.History("r");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->objects.back().value, "19");
}

}  // namespace
}  // namespace latchkey
