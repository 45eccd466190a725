// The lock engine end to end (issue 3): lock modes, hierarchical names,
// fairness, conversions, deadlock detection, reentrancy, transfer and
// introspection through a real server process, the client library, the
// SharedMutex adapter and the CLI.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <mutex>
#include <shared_mutex>
#include <thread>

#include "latchkey/client.h"
#include "latchkey/shared_mutex.h"
#include "testlib/server_process.h"

namespace latchkey {
namespace {

using namespace std::chrono_literals;
using testing::LatchkeyBinary;
using testing::RunCommand;
using testing::ServerProcess;
using testing::TempDir;
using testing::WaitFor;

AcquireOptions Mode(LockMode mode, bool try_only = false) {
  AcquireOptions o;
  o.mode = mode;
  o.try_only = try_only;
  return o;
}
AcquireOptions Try(LockMode mode) {
  return Mode(mode, true);
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

class LockEngineIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.Start()) << "server did not start";
    observer_ = Connect("observer");
    ASSERT_NE(observer_, nullptr);
  }

  std::unique_ptr<Client> Connect(const std::string& name) {
    ClientOptions o;
    o.endpoint = server_.endpoint();
    o.client_name = name;
    auto c = Client::Connect(o);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c.value()) : nullptr;
  }
  // Waiting requests on `name` (seen through a separate observer session).
  size_t Waiters(const std::string& name) {
    auto info = observer_->GetLock(name);
    return info.ok() ? info->waiter_list.size() : 0;
  }
  std::vector<LockHolderInfo> Holders(const std::string& name) {
    auto info = observer_->GetLock(name);
    return info.ok() ? info->holders : std::vector<LockHolderInfo>{};
  }
  static std::future<Result<Grant>> AcquireAsync(Client& c, const std::string& name,
                                                 AcquireOptions o) {
    return std::async(std::launch::async, [&c, name, o] { return c.Acquire(name, o); });
  }
  static bool Pending(std::future<Result<Grant>>& f) {
    return f.wait_for(0ms) == std::future_status::timeout;
  }
  // `latchkey SUBCOMMAND -e ENDPOINT ARGS...`
  std::vector<std::string> Cli(std::vector<std::string> args) {
    std::vector<std::string> argv = {LatchkeyBinary(), args.front(), "-e", server_.endpoint()};
    argv.insert(argv.end(), args.begin() + 1, args.end());
    return argv;
  }

  TempDir dir_;
  ServerProcess server_{dir_.File("data")};
  std::unique_ptr<Client> observer_;
};

TEST_F(LockEngineIntegrationTest, ReadersShareWhileWriterWaitsThenGetsExclusive) {
  auto r1 = Connect("r1"), r2 = Connect("r2"), w = Connect("w");
  auto g1 = r1->Acquire("doc", Mode(LockMode::kPR));
  auto g2 = r2->Acquire("doc", Mode(LockMode::kPR));
  ASSERT_TRUE(g1.ok()) << g1.status().ToString();
  ASSERT_TRUE(g2.ok()) << g2.status().ToString();
  EXPECT_EQ(g1->mode, LockMode::kPR);
  EXPECT_EQ(Holders("doc").size(), 2u);

  auto writer = AcquireAsync(*w, "doc", Mode(LockMode::kEX));
  ASSERT_TRUE(WaitFor([&] { return Waiters("doc") == 1; }));
  ASSERT_TRUE(r1->Release("doc").ok());
  // One reader is still in: the writer keeps waiting.
  ASSERT_EQ(Holders("doc").size(), 1u);
  EXPECT_TRUE(Pending(writer));
  ASSERT_TRUE(r2->Release("doc").ok());
  auto gw = writer.get();
  ASSERT_TRUE(gw.ok()) << gw.status().ToString();
  EXPECT_EQ(gw->mode, LockMode::kEX);
  EXPECT_GT(gw->fencing_token, std::max(g1->fencing_token, g2->fencing_token));
}

TEST_F(LockEngineIntegrationTest, WaitingWriterBlocksNewReaders) {
  auto r1 = Connect("r1"), w = Connect("w"), r2 = Connect("r2");
  ASSERT_TRUE(r1->Acquire("feed", Mode(LockMode::kPR)).ok());
  auto writer = AcquireAsync(*w, "feed", Mode(LockMode::kEX));
  ASSERT_TRUE(WaitFor([&] { return Waiters("feed") == 1; }));
  // PR is compatible with the holder, but a writer is waiting: no overtaking.
  auto busy = r2->Acquire("feed", Try(LockMode::kPR));
  ASSERT_FALSE(busy.ok());
  EXPECT_EQ(busy.status().code(), Code::kLockBusy);
  auto reader = AcquireAsync(*r2, "feed", Mode(LockMode::kPR));
  ASSERT_TRUE(WaitFor([&] { return Waiters("feed") == 2; }));

  ASSERT_TRUE(r1->Release("feed").ok());
  auto gw = writer.get();
  ASSERT_TRUE(gw.ok()) << gw.status().ToString();
  EXPECT_TRUE(Pending(reader));
  ASSERT_TRUE(w->Release("feed").ok());
  auto gr = reader.get();
  ASSERT_TRUE(gr.ok()) << gr.status().ToString();
  EXPECT_GT(gr->fencing_token, gw->fencing_token);
}

TEST_F(LockEngineIntegrationTest, SharedParentBlocksExclusiveChild) {
  auto a = Connect("a"), b = Connect("b");
  ASSERT_TRUE(a->Acquire("a", Mode(LockMode::kPR)).ok());
  auto busy = b->Acquire("a.b.c", Try(LockMode::kEX));
  ASSERT_FALSE(busy.ok());
  EXPECT_EQ(busy.status().code(), Code::kLockBusy);
  // Readers below a shared parent are fine (IS is compatible with PR).
  ASSERT_TRUE(b->Acquire("a.b.c", Try(LockMode::kPR)).ok());
  ASSERT_TRUE(b->Release("a.b.c").ok());
  // A waiting child is granted once the parent goes.
  auto child = AcquireAsync(*b, "a.b.c", Mode(LockMode::kEX));
  ASSERT_TRUE(WaitFor([&] { return Waiters("a.b.c") == 1; }));
  ASSERT_TRUE(a->Release("a").ok());
  auto g = child.get();
  ASSERT_TRUE(g.ok()) << g.status().ToString();
}

TEST_F(LockEngineIntegrationTest, ExclusiveChildBlocksSharedParentButNotSiblings) {
  auto a = Connect("a"), b = Connect("b");
  ASSERT_TRUE(b->Acquire("a.b.c", Mode(LockMode::kEX)).ok());
  for (const char* name : {"a", "a.b"}) {
    for (LockMode m : {LockMode::kPR, LockMode::kEX}) {
      auto r = a->Acquire(name, Try(m));
      ASSERT_FALSE(r.ok()) << name << " " << LockModeName(m);
      EXPECT_EQ(r.status().code(), Code::kLockBusy);
    }
  }
  EXPECT_TRUE(a->Acquire("a.b.d", Try(LockMode::kEX)).ok());  // a sibling
  EXPECT_TRUE(a->Acquire("a", Try(LockMode::kCW)).ok());      // intention modes mix
  ASSERT_TRUE(a->Release("a").ok());
  ASSERT_TRUE(a->Release("a.b.d").ok());
  auto parent = AcquireAsync(*a, "a", Mode(LockMode::kPR));
  ASSERT_TRUE(WaitFor([&] { return Waiters("a") == 1; }));
  ASSERT_TRUE(b->Release("a.b.c").ok());
  EXPECT_TRUE(parent.get().ok());
}

TEST_F(LockEngineIntegrationTest, WaitingParentBlocksNewChildren) {
  auto c1 = Connect("c1"), c2 = Connect("c2"), c3 = Connect("c3");
  ASSERT_TRUE(c1->Acquire("p.x", Mode(LockMode::kPR)).ok());
  auto parent = AcquireAsync(*c2, "p", Mode(LockMode::kEX));
  ASSERT_TRUE(WaitFor([&] { return Waiters("p") == 1; }));
  // Without the waiting parent this would be granted (IS next to IS).
  auto busy = c3->Acquire("p.y", Try(LockMode::kPR));
  ASSERT_FALSE(busy.ok());
  EXPECT_EQ(busy.status().code(), Code::kLockBusy);
  auto child = AcquireAsync(*c3, "p.y", Mode(LockMode::kPR));
  ASSERT_TRUE(WaitFor([&] { return Waiters("p.y") == 1; }));

  ASSERT_TRUE(c1->Release("p.x").ok());
  auto gp = parent.get();
  ASSERT_TRUE(gp.ok()) << gp.status().ToString();
  EXPECT_TRUE(Pending(child));
  ASSERT_TRUE(c2->Release("p").ok());
  EXPECT_TRUE(child.get().ok());
}

TEST_F(LockEngineIntegrationTest, UpgradeGetsHigherTokenAndGoesAheadOfNewRequests) {
  auto a = Connect("a"), b = Connect("b"), c = Connect("c");
  auto ga = a->Acquire("u", Mode(LockMode::kPR));
  ASSERT_TRUE(ga.ok());
  ASSERT_TRUE(b->Acquire("u", Mode(LockMode::kPR)).ok());
  auto newcomer = AcquireAsync(*c, "u", Mode(LockMode::kEX));
  ASSERT_TRUE(WaitFor([&] { return Waiters("u") == 1; }));
  auto upgrade = AcquireAsync(*a, "u", Mode(LockMode::kEX));
  ASSERT_TRUE(WaitFor([&] { return Waiters("u") == 2; }));
  {
    auto info = observer_->GetLock("u");
    ASSERT_TRUE(info.ok());
    bool conversion_seen = false;
    for (const auto& w : info->waiter_list) {
      if (w.session_id == a->session_id()) conversion_seen = w.conversion;
    }
    EXPECT_TRUE(conversion_seen);
  }
  // b leaves: the conversion wins over the earlier new request.
  ASSERT_TRUE(b->Release("u").ok());
  auto gu = upgrade.get();
  ASSERT_TRUE(gu.ok()) << gu.status().ToString();
  EXPECT_EQ(gu->mode, LockMode::kEX);
  EXPECT_GT(gu->fencing_token, ga->fencing_token);
  EXPECT_TRUE(Pending(newcomer));
  ASSERT_TRUE(a->Release("u").ok());
  auto gc = newcomer.get();
  ASSERT_TRUE(gc.ok()) << gc.status().ToString();
  EXPECT_GT(gc->fencing_token, gu->fencing_token);
}

TEST_F(LockEngineIntegrationTest, FailedUpgradeKeepsTheSharedGrant) {
  auto a = Connect("a"), b = Connect("b");
  auto ga = a->Acquire("conv", Mode(LockMode::kPR));
  ASSERT_TRUE(ga.ok());
  ASSERT_TRUE(b->Acquire("conv", Mode(LockMode::kPR)).ok());
  auto busy = a->Acquire("conv", Try(LockMode::kEX));  // no-queue conversion
  ASSERT_FALSE(busy.ok());
  EXPECT_EQ(busy.status().code(), Code::kLockBusy);
  AcquireOptions timed = Mode(LockMode::kEX);
  timed.wait_timeout = 200ms;
  auto late = a->Acquire("conv", timed);
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.status().code(), Code::kTimeout);
  ASSERT_TRUE(WaitFor([&] { return Waiters("conv") == 0; }));
  auto holders = Holders("conv");
  ASSERT_EQ(holders.size(), 2u);
  for (const auto& h : holders) {
    EXPECT_EQ(h.mode, LockMode::kPR);
    if (h.session_id == a->session_id()) {
      EXPECT_EQ(h.fencing_token, ga->fencing_token);
    }
  }
}

TEST_F(LockEngineIntegrationTest, DowngradeLetsQueuedReadersIn) {
  auto w = Connect("w"), r1 = Connect("r1"), r2 = Connect("r2");
  ASSERT_TRUE(w->Acquire("d", Mode(LockMode::kEX)).ok());
  auto f1 = AcquireAsync(*r1, "d", Mode(LockMode::kPR));
  auto f2 = AcquireAsync(*r2, "d", Mode(LockMode::kPR));
  ASSERT_TRUE(WaitFor([&] { return Waiters("d") == 2; }));
  ASSERT_TRUE(w->Downgrade("d", LockMode::kPR).ok());
  ASSERT_TRUE(f1.get().ok());
  ASSERT_TRUE(f2.get().ok());
  auto holders = Holders("d");
  ASSERT_EQ(holders.size(), 3u);
  for (const auto& h : holders) EXPECT_EQ(h.mode, LockMode::kPR);
  // Downgrading to a stronger mode is refused.
  EXPECT_EQ(w->Downgrade("d", LockMode::kEX).code(), Code::kInvalidArgument);
}

TEST_F(LockEngineIntegrationTest, TwoClientDeadlockFailsTheClosingRequest) {
  auto a = Connect("a"), b = Connect("b");
  ASSERT_TRUE(a->Acquire("x").ok());
  ASSERT_TRUE(b->Acquire("y").ok());
  auto a_wants_y = AcquireAsync(*a, "y", {});
  ASSERT_TRUE(WaitFor([&] { return Waiters("y") == 1; }));
  auto r = b->Acquire("x");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kDeadlock);
  const std::string msg = r.status().message();
  EXPECT_TRUE(Contains(msg, "'x'")) << msg;
  EXPECT_TRUE(Contains(msg, "session " + std::to_string(a->session_id()))) << msg;
  EXPECT_TRUE(Contains(msg, "session " + std::to_string(b->session_id()))) << msg;
  EXPECT_EQ(Waiters("x"), 0u);  // the failed request left no trace
  // The victim gives up its lock; the other side proceeds.
  EXPECT_TRUE(Pending(a_wants_y));
  ASSERT_TRUE(b->Release("y").ok());
  auto g = a_wants_y.get();
  ASSERT_TRUE(g.ok()) << g.status().ToString();
}

TEST_F(LockEngineIntegrationTest, ThreeClientCycleIsDetected) {
  auto a = Connect("a"), b = Connect("b"), c = Connect("c");
  ASSERT_TRUE(a->Acquire("l1").ok());
  ASSERT_TRUE(b->Acquire("l2").ok());
  ASSERT_TRUE(c->Acquire("l3").ok());
  auto a_wants_l2 = AcquireAsync(*a, "l2", {});
  ASSERT_TRUE(WaitFor([&] { return Waiters("l2") == 1; }));
  auto b_wants_l3 = AcquireAsync(*b, "l3", {});
  ASSERT_TRUE(WaitFor([&] { return Waiters("l3") == 1; }));
  auto r = c->Acquire("l1");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kDeadlock);
  const std::string msg = r.status().message();
  for (const auto* cl : {a.get(), b.get(), c.get()}) {
    EXPECT_TRUE(Contains(msg, "session " + std::to_string(cl->session_id()))) << msg;
  }
  ASSERT_TRUE(c->Release("l3").ok());
  ASSERT_TRUE(b_wants_l3.get().ok());
  ASSERT_TRUE(b->Release("l2").ok());
  ASSERT_TRUE(a_wants_l2.get().ok());
}

TEST_F(LockEngineIntegrationTest, ReentrantAcquireIsCountedAndPlainReacquireIsIdempotent) {
  auto a = Connect("a"), b = Connect("b");
  AcquireOptions re;
  re.reentrant = true;
  auto g1 = a->Acquire("re", re);
  auto g2 = a->Acquire("re", re);
  ASSERT_TRUE(g1.ok() && g2.ok());
  EXPECT_EQ(g2->count, 2u);
  EXPECT_EQ(g2->fencing_token, g1->fencing_token);
  ASSERT_TRUE(a->Release("re").ok());
  ASSERT_EQ(Holders("re").size(), 1u);  // one release keeps it
  EXPECT_FALSE(b->Acquire("re", Try(LockMode::kEX)).ok());
  ASSERT_TRUE(a->Release("re").ok());
  EXPECT_TRUE(Holders("re").empty());

  // Without `reentrant`, acquiring again returns the same grant, uncounted.
  auto p1 = a->Acquire("plain");
  auto p2 = a->Acquire("plain");
  ASSERT_TRUE(p1.ok() && p2.ok());
  EXPECT_EQ(p2->fencing_token, p1->fencing_token);
  EXPECT_EQ(p2->count, 1u);
  ASSERT_TRUE(a->Release("plain").ok());
  EXPECT_TRUE(Holders("plain").empty());
  EXPECT_EQ(a->Release("plain").code(), Code::kNotHeld);
}

TEST_F(LockEngineIntegrationTest, TransferMovesTheGrantToAnotherSession) {
  auto a = Connect("a"), b = Connect("b");
  auto g = a->Acquire("job");
  ASSERT_TRUE(g.ok());
  auto token = a->Transfer("job", b->session_id(), "worker");
  ASSERT_TRUE(token.ok()) << token.status().ToString();
  EXPECT_GT(*token, g->fencing_token);
  auto holders = Holders("job");
  ASSERT_EQ(holders.size(), 1u);
  EXPECT_EQ(holders[0].session_id, b->session_id());
  EXPECT_EQ(holders[0].owner, "worker");
  EXPECT_EQ(holders[0].fencing_token, *token);
  EXPECT_EQ(a->Release("job").code(), Code::kNotHeld);
  EXPECT_EQ(b->Release("job").code(), Code::kNotHeld);  // held by owner "worker"
  ASSERT_TRUE(b->Release("job", "worker").ok());
  EXPECT_TRUE(Holders("job").empty());
}

// Regression: a transfer to a session that does not exist answered
// SESSION_EXPIRED, which the client takes to mean its *own* session is gone,
// so the caller lost its session (and every lock) for good.
TEST_F(LockEngineIntegrationTest, TransferToAGoneSessionKeepsTheCallersSession) {
  auto a = Connect("a");
  ASSERT_TRUE(a->Acquire("keep").ok());
  auto r = a->Transfer("keep", 999'999'999);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kNotFound) << r.status().ToString();
  EXPECT_TRUE(a->session_status().ok()) << a->session_status().ToString();
  auto holders = Holders("keep");
  ASSERT_EQ(holders.size(), 1u);
  EXPECT_EQ(holders[0].session_id, a->session_id());
  EXPECT_TRUE(a->Release("keep").ok());
}

TEST_F(LockEngineIntegrationTest, ListLocksByPrefixAndWaitGraph) {
  auto a = Connect("alice"), b = Connect("bob");
  ASSERT_TRUE(a->Acquire("app.db", Mode(LockMode::kPR)).ok());
  ASSERT_TRUE(a->Acquire("app.cache").ok());
  ASSERT_TRUE(a->Acquire("apple").ok());
  ASSERT_TRUE(a->Acquire("other").ok());
  auto waiting = AcquireAsync(*b, "app.db", Mode(LockMode::kEX));
  ASSERT_TRUE(WaitFor([&] { return Waiters("app.db") == 1; }));

  auto locks = observer_->ListLocks("app");
  ASSERT_TRUE(locks.ok()) << locks.status().ToString();
  ASSERT_EQ(locks->size(), 2u);  // not "apple", not "other"
  EXPECT_EQ((*locks)[0].name, "app.cache");
  EXPECT_EQ((*locks)[1].name, "app.db");
  const LockInfo& db = (*locks)[1];
  ASSERT_EQ(db.holders.size(), 1u);
  EXPECT_EQ(db.holders[0].mode, LockMode::kPR);
  EXPECT_EQ(db.holders[0].client_name, "alice");
  ASSERT_EQ(db.waiter_list.size(), 1u);
  EXPECT_EQ(db.waiter_list[0].session_id, b->session_id());
  EXPECT_EQ(db.waiter_list[0].mode, LockMode::kEX);
  EXPECT_EQ(db.waiter_list[0].client_name, "bob");
  auto all = observer_->ListLocks();
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 4u);
  EXPECT_EQ(observer_->ListLocks("bad..name").status().code(), Code::kInvalidArgument);

  auto graph = observer_->GetWaitGraph();
  ASSERT_TRUE(graph.ok()) << graph.status().ToString();
  ASSERT_EQ(graph->size(), 1u);
  const WaitEdgeInfo& e = (*graph)[0];
  EXPECT_EQ(e.waiter_session_id, b->session_id());
  EXPECT_EQ(e.name, "app.db");
  EXPECT_EQ(e.mode, LockMode::kEX);
  EXPECT_EQ(e.blocker_session_id, a->session_id());

  ASSERT_TRUE(a->Release("app.db").ok());
  ASSERT_TRUE(waiting.get().ok());
  auto empty = observer_->GetWaitGraph();
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST_F(LockEngineIntegrationTest, SharedMutexReadersOverlapAndWriterExcludesThem) {
  auto readers_client = Connect("readers"), writer_client = Connect("writer");
  SharedMutex readers(*readers_client, "rw"), writer(*writer_client, "rw");
  std::atomic<int> readers_inside{0}, writers_inside{0};
  std::atomic<int> max_readers{0};
  std::atomic<bool> violation{false};
  int counter = 0;  // written only under the exclusive lock

  auto enter_reader = [&] {
    int now = readers_inside.fetch_add(1) + 1;
    for (int m = max_readers.load(); now > m && !max_readers.compare_exchange_weak(m, now);) {
    }
    if (writers_inside.load() != 0) violation = true;
  };
  // Phase 1: three threads hold it shared at the same time (each stays until
  // it has seen all three inside).
  {
    std::vector<std::thread> ts;
    std::atomic<bool> all_three{true};
    for (int i = 0; i < 3; ++i) {
      ts.emplace_back([&] {
        std::shared_lock<SharedMutex> l(readers);
        enter_reader();
        if (!WaitFor([&] { return max_readers.load() == 3; })) all_three = false;
        readers_inside.fetch_sub(1);
      });
    }
    for (auto& t : ts) t.join();
    EXPECT_TRUE(all_three) << "readers did not overlap";
  }
  // Phase 2: readers and a writer run together; the writer never overlaps.
  constexpr int kRounds = 10;
  std::vector<std::thread> ts;
  for (int i = 0; i < 3; ++i) {
    ts.emplace_back([&] {
      for (int k = 0; k < kRounds; ++k) {
        std::shared_lock<SharedMutex> l(readers);
        EXPECT_GT(readers.fencing_token(), 0u);
        enter_reader();
        std::this_thread::yield();
        if (writers_inside.load() != 0) violation = true;
        readers_inside.fetch_sub(1);
      }
    });
  }
  ts.emplace_back([&] {
    for (int k = 0; k < kRounds; ++k) {
      std::unique_lock<SharedMutex> l(writer);
      if (writers_inside.fetch_add(1) != 0 || readers_inside.load() != 0) violation = true;
      int v = counter;
      std::this_thread::yield();
      counter = v + 1;
      if (readers_inside.load() != 0) violation = true;
      writers_inside.fetch_sub(1);
    }
  });
  for (auto& t : ts) t.join();
  EXPECT_FALSE(violation);
  EXPECT_EQ(counter, kRounds);
  EXPECT_TRUE(WaitFor([&] { return Holders("rw").empty(); }));
}

// ---- CLI ------------------------------------------------------------------

TEST_F(LockEngineIntegrationTest, CliLocksShowsHoldersModesAndJson) {
  auto a = Connect("alice"), b = Connect("bob");
  ASSERT_TRUE(a->Acquire("svc.db", Mode(LockMode::kPR)).ok());
  ASSERT_TRUE(b->Acquire("svc.db", Mode(LockMode::kPR)).ok());
  AcquireOptions ttl;
  ttl.lock_ttl = 5min;
  ASSERT_TRUE(a->Acquire("svc.cache", ttl).ok());
  ASSERT_TRUE(a->Acquire("elsewhere").ok());

  std::string out;
  ASSERT_EQ(RunCommand(Cli({"locks", "svc"}), &out), 0) << out;
  EXPECT_TRUE(Contains(out, "NAME")) << out;
  EXPECT_TRUE(Contains(out, "svc.db")) << out;
  EXPECT_TRUE(Contains(out, "svc.cache")) << out;
  EXPECT_TRUE(Contains(out, "PR")) << out;
  EXPECT_TRUE(Contains(out, "alice")) << out;
  EXPECT_TRUE(Contains(out, "bob")) << out;
  EXPECT_TRUE(Contains(out, "5m")) << out;
  EXPECT_FALSE(Contains(out, "elsewhere")) << out;

  ASSERT_EQ(RunCommand(Cli({"locks", "--json"}), &out), 0) << out;
  EXPECT_TRUE(Contains(out, "\"name\":\"svc.db\"")) << out;
  EXPECT_TRUE(Contains(out, "\"mode\":\"PR\"")) << out;
  EXPECT_TRUE(Contains(out, "\"client_name\":\"bob\"")) << out;
  EXPECT_TRUE(Contains(out, "\"name\":\"elsewhere\"")) << out;
  EXPECT_TRUE(Contains(out, "\"lock_ttl_ms\":300000")) << out;

  ASSERT_EQ(RunCommand(Cli({"locks", "nothing.here"}), &out), 0) << out;
  EXPECT_TRUE(Contains(out, "no locks")) << out;
  EXPECT_EQ(RunCommand(Cli({"locks", "bad..prefix"}), &out), 64) << out;
}

TEST_F(LockEngineIntegrationTest, CliWaitsShowsTheWaitForGraph) {
  std::string out;
  ASSERT_EQ(RunCommand(Cli({"waits"}), &out), 0) << out;
  EXPECT_TRUE(Contains(out, "no one is waiting")) << out;

  auto a = Connect("alice"), b = Connect("bob");
  ASSERT_TRUE(a->Acquire("a", Mode(LockMode::kPR)).ok());
  AcquireOptions o = Mode(LockMode::kEX);
  o.owner = "x";
  auto waiting = AcquireAsync(*b, "a.b", o);
  ASSERT_TRUE(WaitFor([&] { return Waiters("a.b") == 1; }));
  ASSERT_EQ(RunCommand(Cli({"waits"}), &out), 0) << out;
  const std::string expected = "session " + std::to_string(b->session_id()) +
                               " (bob) owner 'x' waits for 'a.b' in EX held by session " +
                               std::to_string(a->session_id()) + " (alice) in PR on 'a'";
  EXPECT_TRUE(Contains(out, expected)) << out;
  ASSERT_EQ(RunCommand(Cli({"waits", "--json"}), &out), 0) << out;
  EXPECT_TRUE(Contains(out, "\"waiter_owner\":\"x\"")) << out;
  EXPECT_TRUE(Contains(out, "\"blocker_client_name\":\"alice\"")) << out;
  ASSERT_TRUE(a->Release("a").ok());
  ASSERT_TRUE(waiting.get().ok());
}

TEST_F(LockEngineIntegrationTest, CliSharedModeHoldersRunTogether) {
  // Each command leaves a marker and waits (polling, with a deadline) until
  // it sees the other's: that only succeeds if both hold PR at once.
  const std::string dir = dir_.path();
  const std::string body =
      "touch " + dir + "/in.$$; i=0; while [ $(ls " + dir +
      " | grep -c '^in\\.') -lt 2 ]; do i=$((i+1)); [ $i -gt 1000 ] && exit 9; sleep 0.01; done";
  auto lock = Cli({"lock", "--mode", "PR", "-q", "shared.res", "--", "sh", "-c", body});
  pid_t p1 = testing::SpawnCommand(lock, dir_.File("p1.log"));
  pid_t p2 = testing::SpawnCommand(lock, dir_.File("p2.log"));
  EXPECT_EQ(testing::WaitPid(p1), 0);
  EXPECT_EQ(testing::WaitPid(p2), 0);
  EXPECT_TRUE(WaitFor([&] { return Holders("shared.res").empty(); }));
  // The command sees the mode it holds.
  std::string out;
  ASSERT_EQ(RunCommand(Cli({"lock", "-m", "S", "-q", "shared.res", "--", "sh", "-c",
                            "echo mode=$LATCHKEY_LOCK_MODE"}),
                       &out),
            0)
      << out;
  EXPECT_TRUE(Contains(out, "mode=PR")) << out;
}

TEST_F(LockEngineIntegrationTest, CliExclusiveWaitsForSharedHolder) {
  auto a = Connect("a");
  ASSERT_TRUE(a->Acquire("excl", Mode(LockMode::kPR)).ok());
  std::string out;
  EXPECT_EQ(RunCommand(Cli({"lock", "--no-wait", "excl", "--", "true"}), &out), 75) << out;
  EXPECT_EQ(RunCommand(Cli({"lock", "--no-wait", "--mode", "pr", "excl", "--", "true"}), &out), 0)
      << out;
}

TEST_F(LockEngineIntegrationTest, CliRejectsAnUnknownMode) {
  std::string out;
  EXPECT_EQ(RunCommand(Cli({"lock", "--mode", "READ", "x", "--", "true"}), &out), 64);
  EXPECT_TRUE(Contains(out, "unknown lock mode 'READ'")) << out;
  EXPECT_TRUE(Contains(out, "NL CR CW PR PW EX")) << out;
}

}  // namespace
}  // namespace latchkey
