// Watches, pub/sub, configuration mirrors and Lua scripts through the real
// server, client library and CLI (design 0012).
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "latchkey/client.h"
#include "latchkey/objects.h"
#include "latchkey/pubsub.h"
#include "latchkey/synchronized_object.h"
#include "latchkey/watch.h"
#include "testlib/server_process.h"

namespace latchkey {
namespace {

using namespace std::chrono_literals;
using testing::LatchkeyBinary;
using testing::RunCommand;
using testing::ServerProcess;
using testing::TempDir;
using testing::WaitFor;

class WatchIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.Start()); }
  std::unique_ptr<Client> Connect(const std::string& name) {
    ClientOptions o;
    o.endpoint = server_.endpoint();
    o.client_name = name;
    auto c = Client::Connect(o);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c.value()) : nullptr;
  }
  WatchOptions Opts(const std::string& key, bool prefix, uint64_t from = 0) {
    WatchOptions o;
    o.endpoint = server_.endpoint();
    o.key = key;
    o.prefix = prefix;
    o.from_revision = from;
    return o;
  }

  TempDir dir_;
  ServerProcess server_{dir_.File("data"),
                        {"--object-retain-revisions", "0", "--object-retain-ms", "0"}};
};

// A lock watch gets the lock's whole state at once and after every change:
// grant, value write, a waiter, the hand-over; a dropped connection
// reconnects and starts again from the state at that time.
TEST_F(WatchIntegrationTest, LockWatchPushesEveryStateOfTheLock) {
  auto a = Connect("a"), b = Connect("b");
  ASSERT_TRUE(a && b);
  LockWatchOptions o;
  o.endpoint = server_.endpoint();
  o.name = "lw.lock";
  auto w = LockWatch::Open(o);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  auto next = [&] {
    Result<LockInfo> s = (*w)->Next(5s);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? *s : LockInfo{};
  };
  EXPECT_FALSE(next().held);  // the state when the watch started
  auto g = a->Acquire("lw.lock");
  ASSERT_TRUE(g.ok());
  LockInfo s = next();
  EXPECT_TRUE(s.held);
  EXPECT_EQ(s.holder.session_id, a->session_id());
  EXPECT_EQ(s.holder.fencing_token, g->fencing_token);
  ASSERT_TRUE(a->SetLockValue("lw.lock", "v1").ok());
  s = next();
  EXPECT_EQ(s.value, "v1");
  std::atomic<bool> b_granted{false};
  std::thread waiter([&] { b_granted = b->Acquire("lw.lock").ok(); });
  s = next();
  EXPECT_EQ(s.waiters, 1u);
  EXPECT_EQ(s.holder.session_id, a->session_id());
  ASSERT_TRUE(a->Release("lw.lock").ok());
  s = next();  // released and granted to b in one entry: one state
  EXPECT_TRUE(s.held);
  EXPECT_EQ(s.holder.session_id, b->session_id());
  EXPECT_GT(s.holder.fencing_token, g->fencing_token);
  EXPECT_EQ(s.waiters, 0u);
  waiter.join();
  EXPECT_TRUE(b_granted);
  EXPECT_EQ((*w)->Next(200ms).status().code(), Code::kTimeout);  // nothing else changed

  (*w)->DropConnectionForTesting();
  ASSERT_TRUE(b->Release("lw.lock").ok());
  s = next();  // after the reconnect: the state now
  EXPECT_FALSE(s.held);
  EXPECT_GE((*w)->reconnects(), 1u);
}

TEST_F(WatchIntegrationTest, LockWatchRefusesABadName) {
  LockWatchOptions o;
  o.endpoint = server_.endpoint();
  o.name = "bad name with spaces";
  auto w = LockWatch::Open(o);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), Code::kInvalidArgument) << w.status().ToString();
}

// Concurrent writers on several keys; the watch drops its connection twice
// in the middle. Every write must come out exactly once, in revision order.
TEST_F(WatchIntegrationTest, GapFreeUnderConcurrentWritersAndReconnects) {
  auto w = Watch::Open(Opts("w/", true));
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  constexpr int kWriters = 3, kPerWriter = 60;
  std::mutex mu;
  std::map<uint64_t, std::string> written;  // revision -> key=value
  std::vector<std::thread> writers;
  for (int t = 0; t < kWriters; ++t) {
    writers.emplace_back([&, t] {
      auto c = Connect("writer");
      Objects objs(*c);
      for (int i = 0; i < kPerWriter; ++i) {
        const std::string key = "w/" + std::to_string(t) + "/" + std::to_string(i % 5);
        const std::string value = std::to_string(i);
        auto rev = objs.Put(key, value);
        ASSERT_TRUE(rev.ok()) << rev.status().ToString();
        std::lock_guard lk(mu);
        written[*rev] = key + "=" + value;
      }
    });
  }
  std::map<uint64_t, std::string> seen;
  uint64_t last = 0;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (seen.size() < static_cast<size_t>(kWriters * kPerWriter) &&
         std::chrono::steady_clock::now() < deadline) {
    if (seen.size() == 40 || seen.size() == 120) (*w)->DropConnectionForTesting();
    auto ev = (*w)->Next(5s);
    if (!ev.ok()) {
      ASSERT_EQ(ev.status().code(), Code::kTimeout) << ev.status().ToString();
      continue;
    }
    ASSERT_GT(ev->mod_revision, last) << "out of order or duplicate";
    last = ev->mod_revision;
    seen[ev->mod_revision] = ev->key + "=" + ev->value;
  }
  for (auto& t : writers) t.join();
  EXPECT_EQ(seen, written);
  EXPECT_GE((*w)->reconnects(), 2u);
}

TEST_F(WatchIntegrationTest, HistoryReplayAndTransactionsKeepKeyOrder) {
  auto c = Connect("c");
  Objects objs(*c);
  auto r1 = objs.Put("k/a", "1");
  ASSERT_TRUE(r1.ok());
  TxnRequest t;
  t.then_ops = {TxnOp::Put("k/c", "3"), TxnOp::Put("k/b", "2"), TxnOp::Delete("k/a")};
  auto tr = objs.Txn(t);
  ASSERT_TRUE(tr.ok()) << tr.status().ToString();
  auto w = Watch::Open(Opts("k/", true, *r1));
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  std::vector<std::string> got;
  for (int i = 0; i < 4; ++i) {
    auto ev = (*w)->Next(5s);
    ASSERT_TRUE(ev.ok()) << ev.status().ToString();
    got.push_back(std::to_string(ev->mod_revision) + " " + ev->key + " " +
                  std::string(ObjectStateName(ev->state)));
  }
  const std::string rt = std::to_string(tr->revision);
  EXPECT_EQ(got,
            (std::vector<std::string>{std::to_string(*r1) + " k/a available", rt + " k/a absent",
                                      rt + " k/b available", rt + " k/c available"}));
  EXPECT_EQ((*w)->Next(200ms).status().code(), Code::kTimeout);
}

TEST_F(WatchIntegrationTest, WatchBehindCompactionGetsCompacted) {
  auto c = Connect("c");
  Objects objs(*c);
  auto r1 = objs.Put("x", "1");
  auto r2 = objs.Put("x", "2");
  ASSERT_TRUE(r1.ok() && r2.ok());
  ASSERT_TRUE(objs.Compact(*r2).ok());
  auto w = Watch::Open(Opts("x", false, *r1));
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), Code::kCompacted) << w.status().ToString();
  // From just above the compaction point it works.
  auto ok = Watch::Open(Opts("x", false, *r2 + 1));
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  // A watcher that was disconnected while history it needs was compacted
  // learns it on resume.
  auto lagging = Watch::Open(Opts("x", false, 0));
  ASSERT_TRUE(lagging.ok());
  auto r3 = objs.Put("x", "3");
  ASSERT_TRUE(r3.ok());
  auto ev = (*lagging)->Next(5s);
  ASSERT_TRUE(ev.ok());
  // Disconnected (frames no longer delivered) while 4 and 5 are written and
  // compacted away: the resume from r3 + 1 must fail, not skip them.
  (*lagging)->DropConnectionForTesting();
  ASSERT_TRUE(objs.Put("x", "4").ok());
  ASSERT_TRUE(objs.Put("x", "5").ok());
  ASSERT_TRUE(objs.Compact(0).ok());
  Status end = Status::Ok();
  for (int i = 0; i < 5 && end.ok(); ++i) {
    auto e = (*lagging)->Next(5s);
    if (!e.ok()) end = e.status();
  }
  EXPECT_EQ(end.code(), Code::kCompacted) << end.ToString();
}

TEST_F(WatchIntegrationTest, TwoSubscribersReceiveEveryMessageInOrder) {
  SubscribeOptions so;
  so.endpoint = server_.endpoint();
  so.namespace_name = "news";
  auto s1 = Subscription::Open(so);
  auto s2 = Subscription::Open(so);
  ASSERT_TRUE(s1.ok() && s2.ok());
  auto c1 = Connect("p1");
  auto c2 = Connect("p2");
  std::thread other([&] {
    for (int i = 0; i < 50; ++i) ASSERT_TRUE(Publish(*c2, "news", "b" + std::to_string(i)).ok());
  });
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(Publish(*c1, "news", "a" + std::to_string(i)).ok());
  ASSERT_TRUE(Publish(*c1, "other", "ignored").ok());
  other.join();
  std::vector<std::string> got1, got2;
  uint64_t last = 0;
  for (int i = 0; i < 100; ++i) {
    auto m1 = (*s1)->Next(5s);
    auto m2 = (*s2)->Next(5s);
    ASSERT_TRUE(m1.ok() && m2.ok());
    EXPECT_GT(m1->revision, last);
    last = m1->revision;
    got1.push_back(m1->payload);
    got2.push_back(m2->payload);
  }
  EXPECT_EQ(got1, got2);
  EXPECT_EQ((*s1)->Next(200ms).status().code(), Code::kTimeout);
}

class InvalidationCache : public SynchronizedObject {
 public:
  using SynchronizedObject::SynchronizedObject;
  ~InvalidationCache() override { Stop(); }
  std::vector<std::string> received() {
    std::lock_guard lk(mu_);
    return got_;
  }

 protected:
  void receive(const std::string& cmd) override {
    std::lock_guard lk(mu_);
    got_.push_back(cmd);
  }
  void resynchronize() override { ++resyncs; }

 public:
  std::atomic<int> resyncs{0};

 private:
  std::mutex mu_;
  std::vector<std::string> got_;
};

TEST_F(WatchIntegrationTest, SynchronizedObjectsSeeEachOthersCommands) {
  auto c1 = Connect("n1");
  auto c2 = Connect("n2");
  InvalidationCache a(*c1, server_.endpoint(), "cache"), b(*c2, server_.endpoint(), "cache");
  ASSERT_TRUE(a.Start().ok());
  ASSERT_TRUE(b.Start().ok());
  ASSERT_TRUE(a.send("drop 1").ok());
  ASSERT_TRUE(b.send("drop 2").ok());
  ASSERT_TRUE(WaitFor([&] { return a.received().size() == 2 && b.received().size() == 2; }, 10s));
  EXPECT_EQ(a.received(), b.received());
  EXPECT_EQ(a.received(), (std::vector<std::string>{"drop 1", "drop 2"}));
  // A lost subscription comes back and says it may have missed commands.
  a.DropConnectionForTesting();
  ASSERT_TRUE(WaitFor([&] { return a.resyncs.load() == 1; }, 10s));
  ASSERT_TRUE(b.send("drop 3").ok());
  ASSERT_TRUE(WaitFor([&] { return a.received().size() == 3 && b.received().size() == 3; }, 10s));
  EXPECT_EQ(a.received().back(), "drop 3");
}

TEST_F(WatchIntegrationTest, MirrorFollowsAPrefix) {
  auto c = Connect("c");
  Objects objs(*c);
  ASSERT_TRUE(objs.Put("cfg/a", "1").ok());
  std::mutex mu;
  std::vector<std::string> changes;
  auto m = ObjectMirror::Start(*c, Opts("cfg/", true), [&](const Object& o) {
    std::lock_guard lk(mu);
    changes.push_back(o.key + "=" + o.value);
  });
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ((*m)->Values(), (std::map<std::string, std::string>{{"cfg/a", "1"}}));
  ASSERT_TRUE(objs.Put("cfg/b", "2").ok());
  ASSERT_TRUE(objs.Put("other", "x").ok());
  auto last = objs.Remove("cfg/a");
  ASSERT_TRUE(last.ok());
  auto r = objs.Put("cfg/c", "3");
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE((*m)->WaitForRevision(*r, 10s));
  EXPECT_EQ((*m)->Values(), (std::map<std::string, std::string>{{"cfg/b", "2"}, {"cfg/c", "3"}}));
  std::lock_guard lk(mu);
  EXPECT_EQ(changes, (std::vector<std::string>{"cfg/b=2", "cfg/a=", "cfg/c=3"}));
}

TEST_F(WatchIntegrationTest, ScriptsRunWithBudgetAndSandboxErrors) {
  auto c = Connect("c");
  Objects objs(*c);
  ASSERT_TRUE(objs.PutScript("incr",
                             "return function(o, a)\n"
                             "  local n = (tonumber(o.value) or 0) + tonumber(a[1])\n"
                             "  return tostring(n), n\n"
                             "end")
                  .ok());
  auto r = objs.ExecuteMethod("n", "incr", {"4"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, "4");
  EXPECT_EQ(objs.Get("n")->value, "4");

  ASSERT_TRUE(objs.PutScript("spin", "return function() while true do end end").ok());
  auto spin = objs.ExecuteMethod("n", "spin");
  ASSERT_FALSE(spin.ok());
  EXPECT_NE(spin.status().message().find("instruction budget"), std::string::npos)
      << spin.status().ToString();
  ASSERT_TRUE(objs.PutScript("clock", "return function() return nil, os.time() end").ok());
  auto clock = objs.ExecuteMethod("n", "clock");
  ASSERT_FALSE(clock.ok());
  EXPECT_NE(clock.status().message().find("os"), std::string::npos) << clock.status().ToString();
  auto bad = objs.PutScript("bad", "return function(");
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(objs.Get("n")->value, "4");  // failed calls wrote nothing
}

TEST_F(WatchIntegrationTest, Cli) {
  const std::string bin = LatchkeyBinary(), ep = server_.endpoint();
  std::string out;
  ASSERT_EQ(RunCommand({bin, "put", "-e", ep, "cli/a", "hello"}, &out), 0) << out;
  ASSERT_EQ(RunCommand({bin, "watch", "-e", ep, "--prefix", "cli/", "--from", "1", "--count", "1",
                        "--json"},
                       &out),
            0)
      << out;
  EXPECT_NE(out.find("\"key\":\"cli/a\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"value\":\"hello\""), std::string::npos) << out;
  ASSERT_EQ(RunCommand({bin, "publish", "-e", ep, "ns", "hi"}, &out), 0) << out;
  const std::string file = dir_.File("s.lua");
  std::ofstream(file) << "return function(o, a) return o.value .. a[1], #o.value end\n";
  ASSERT_EQ(RunCommand({bin, "script", "put", "-e", ep, "suffix", file}, &out), 0) << out;
  ASSERT_EQ(RunCommand({bin, "exec", "-e", ep, "cli/a", "suffix", "!"}, &out), 0) << out;
  EXPECT_NE(out.find("5"), std::string::npos) << out;
  ASSERT_EQ(RunCommand({bin, "get", "-e", ep, "cli/a"}, &out), 0) << out;
  EXPECT_NE(out.find("hello!"), std::string::npos) << out;
}

}  // namespace
}  // namespace latchkey
