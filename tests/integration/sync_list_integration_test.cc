// Introspection of semaphores, latches and barriers (ListSync and
// `latchkey sync list`) through a real server.
#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "latchkey/sync_info.h"
#include "testlib/server_fixture.h"
#include "testlib/server_process.h"

namespace latchkey {
namespace {

using namespace std::chrono_literals;
using testing::LatchkeyBinary;
using testing::RunCommand;
using testing::WaitFor;

using SyncListTest = testing::SingleServerTest;

const SyncObjectInfo* Find(const SyncListing& l, const std::string& name, SyncKind kind) {
  for (const SyncObjectInfo& o : l.objects) {
    if (o.name == name && o.kind == kind) return &o;
  }
  return nullptr;
}

TEST_F(SyncListTest, ListsHoldersCountsPartiesAndWaiters) {
  auto a = Connect("alpha"), b = Connect("beta"), w = Connect("watcher");
  auto token = a->AcquireSemaphore("jobs.pool", 2, 3);
  ASSERT_TRUE(token.ok()) << token.status().ToString();
  auto sem_wait =
      std::async(std::launch::async, [&] { return b->AcquireSemaphore("jobs.pool", 2, 3); });
  ASSERT_EQ(*w->LatchCountDown("jobs.boot", 1, 3), 2u);
  auto latch_wait = std::async(std::launch::async, [&] { return b->LatchAwait("jobs.boot", 3); });
  WaitOptions as_owner;
  as_owner.owner = "worker-1";
  auto barrier_wait =
      std::async(std::launch::async, [&] { return a->BarrierAwait("jobs.step", 2, as_owner); });
  ASSERT_TRUE(w->AcquireSemaphore("jobsx", 1, 1).ok());  // outside the prefix "jobs"

  ListSyncOptions opts;
  opts.prefix = "jobs";
  SyncListing l;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto r = ListSync(*w, opts);
        if (!r.ok()) return false;
        l = std::move(*r);
        const SyncObjectInfo* s = Find(l, "jobs.pool", SyncKind::kSemaphore);
        const SyncObjectInfo* la = Find(l, "jobs.boot", SyncKind::kLatch);
        const SyncObjectInfo* ba = Find(l, "jobs.step", SyncKind::kBarrier);
        return s && la && ba && s->waiters.size() == 1 && la->waiters.size() == 1 &&
               ba->waiters.size() == 1;
      },
      5s));
  ASSERT_EQ(l.objects.size(), 3u);
  EXPECT_FALSE(l.truncated);
  EXPECT_GT(l.server_time_ms, 0u);
  // (name, kind) order.
  EXPECT_EQ(l.objects[0].name, "jobs.boot");
  EXPECT_EQ(l.objects[1].name, "jobs.pool");
  EXPECT_EQ(l.objects[2].name, "jobs.step");

  const SyncObjectInfo& s = *Find(l, "jobs.pool", SyncKind::kSemaphore);
  EXPECT_EQ(s.limit, 3u);
  EXPECT_EQ(s.used, 2u);
  ASSERT_EQ(s.holders.size(), 1u);
  EXPECT_EQ(s.holders[0].session_id, a->session_id());
  EXPECT_EQ(s.holders[0].client_name, "alpha");
  EXPECT_EQ(s.holders[0].permits, 2u);
  EXPECT_EQ(s.holders[0].fencing_token, *token);
  EXPECT_GT(s.holders[0].since_ms, 0u);
  EXPECT_EQ(s.waiters[0].session_id, b->session_id());
  EXPECT_EQ(s.waiters[0].permits, 2u);

  const SyncObjectInfo& la = *Find(l, "jobs.boot", SyncKind::kLatch);
  EXPECT_EQ(la.initial, 3u);
  EXPECT_EQ(la.count, 2u);
  EXPECT_EQ(la.waiters[0].client_name, "beta");

  const SyncObjectInfo& ba = *Find(l, "jobs.step", SyncKind::kBarrier);
  EXPECT_EQ(ba.parties, 2u);
  EXPECT_EQ(ba.generation, 0u);
  EXPECT_EQ(ba.waiters[0].owner, "worker-1");

  // Serializable reads, limits, and the whole space.
  opts.consistency = ReadConsistency::kSerializable;
  opts.limit = 2;
  auto two = ListSync(*w, opts);
  ASSERT_TRUE(two.ok()) << two.status().ToString();
  EXPECT_EQ(two->objects.size(), 2u);
  EXPECT_TRUE(two->truncated);
  auto all = ListSync(*w);
  ASSERT_TRUE(all.ok());
  EXPECT_NE(Find(*all, "jobsx", SyncKind::kSemaphore), nullptr);
  ListSyncOptions bad;
  bad.prefix = "no spaces allowed";
  EXPECT_EQ(ListSync(*w, bad).status().code(), Code::kInvalidArgument);

  // The CLI shows the same, as a table and as JSON.
  std::string out;
  ASSERT_EQ(RunCommand({LatchkeyBinary(), "sync", "list", "-e", server_.endpoint(), "jobs"}, &out),
            0)
      << out;
  EXPECT_NE(out.find("2 of 3 permits used"), std::string::npos) << out;
  EXPECT_NE(out.find("count 2 of 3"), std::string::npos) << out;
  EXPECT_NE(out.find("1 of 2 parties waiting"), std::string::npos) << out;
  EXPECT_NE(out.find("holder  session " + std::to_string(a->session_id()) + " (alpha)"),
            std::string::npos)
      << out;
  EXPECT_EQ(out.find("jobsx"), std::string::npos) << out;
  ASSERT_EQ(RunCommand(
                {LatchkeyBinary(), "sync", "list", "--json", "-e", server_.endpoint(), "jobs.pool"},
                &out),
            0);
  EXPECT_NE(out.find("\"kind\":\"semaphore\",\"limit\":3,\"used\":2"), std::string::npos) << out;
  EXPECT_NE(out.find("\"fencing_token\":" + std::to_string(*token)), std::string::npos) << out;

  // Release everything; the waiters complete and the listing follows.
  ASSERT_TRUE(a->ReleaseSemaphore("jobs.pool").ok());
  EXPECT_TRUE(sem_wait.get().ok());
  ASSERT_TRUE(w->LatchCountDown("jobs.boot", 2).ok());
  EXPECT_TRUE(latch_wait.get().ok());
  auto tripped = w->BarrierAwait("jobs.step", 2);
  ASSERT_TRUE(tripped.ok());
  EXPECT_TRUE(barrier_wait.get().ok());
  opts = ListSyncOptions{};
  opts.prefix = "jobs";
  auto after = ListSync(*w, opts);
  ASSERT_TRUE(after.ok());
  const SyncObjectInfo* s2 = Find(*after, "jobs.pool", SyncKind::kSemaphore);
  ASSERT_NE(s2, nullptr);
  EXPECT_EQ(s2->holders.size(), 1u);
  EXPECT_EQ(s2->holders[0].session_id, b->session_id());
  EXPECT_EQ(Find(*after, "jobs.boot", SyncKind::kLatch)->count, 0u);
  EXPECT_EQ(Find(*after, "jobs.step", SyncKind::kBarrier)->generation, 1u);
}

TEST_F(SyncListTest, EmptyListingSaysSo) {
  std::string out;
  ASSERT_EQ(RunCommand({LatchkeyBinary(), "sync", "list", "-e", server_.endpoint()}, &out), 0);
  EXPECT_NE(out.find("no semaphores, latches or barriers"), std::string::npos) << out;
  ASSERT_EQ(
      RunCommand({LatchkeyBinary(), "sync", "list", "--json", "-e", server_.endpoint()}, &out), 0);
  EXPECT_NE(out.find("{\"objects\":[],\"truncated\":false"), std::string::npos) << out;
}

}  // namespace
}  // namespace latchkey
