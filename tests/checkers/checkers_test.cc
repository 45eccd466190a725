#include "checkers/checkers.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "checkers/fenced_resource.h"
#include "checkers/test_history.h"

namespace latchkey::checkers {
namespace {

using testing::H;

// ---- history format ---------------------------------------------------------

TEST(HistoryTest, JsonRoundTripIncludingEscapes) {
  Event e;
  e.type = EventType::kInfo;
  e.process = 7;
  e.op = "cas";
  e.key = "a.b";
  e.value = "q\"uote\\ and\nnewline\x01";
  e.expect = "old";
  e.token = 18446744073709551ull;
  e.session = 42;
  e.time = 123456789012345;
  e.error = "MAYBE_APPLIED: leader lost";
  auto back = FromJson(ToJson(e));
  ASSERT_TRUE(back.has_value()) << ToJson(e);
  EXPECT_EQ(back->type, e.type);
  EXPECT_EQ(back->process, 7);
  EXPECT_EQ(back->op, "cas");
  EXPECT_EQ(back->key, "a.b");
  EXPECT_EQ(back->value, e.value);
  EXPECT_EQ(back->expect, "old");
  EXPECT_EQ(back->token, e.token);
  EXPECT_EQ(back->session, 42u);
  EXPECT_EQ(back->time, e.time);
  EXPECT_EQ(back->error, e.error);
}

TEST(HistoryTest, MalformedLinesAreRejected) {
  for (const char* bad : {"", "{}", "{\"type\":\"bogus\"}", "{\"type\":\"ok\"", "[1]",
                          "{\"type\":\"ok\",\"token\":-1}", "{\"type\":\"ok\"} trailing",
                          "{\"type\":\"ok\",\"value\":\"unterminated}"}) {
    EXPECT_FALSE(FromJson(bad).has_value()) << bad;
  }
  EXPECT_TRUE(FromJson("{\"type\":\"ok\",\"unknown\":\"x\",\"n\":5}").has_value());
}

TEST(HistoryTest, WriterAndReaderAndPairing) {
  const std::string path = ::testing::TempDir() + "/history-" + std::to_string(getpid());
  std::filesystem::remove(path);
  {
    HistoryWriter w(path);
    ASSERT_TRUE(w.ok());
    for (const Event& e : H().Invoke(1, "write", "r", 1, "a")
                              .Invoke(2, "read", "r", 2)
                              .Ok(1, "write", "r", 3)
                              .Info(2, "read", "r", 4, "UNAVAILABLE")
                              .Info(3, "session_lost", "", 5, "", 99)
                              .Invoke(1, "acquire", "l", 6)
                              .events()) {
      w.Append(e);
    }
  }
  std::vector<std::string> bad;
  auto events = ReadHistory(path, &bad);
  std::filesystem::remove(path);
  EXPECT_TRUE(bad.empty());
  ASSERT_EQ(events.size(), 6u);
  std::vector<Event> notes;
  auto ops = Pair(events, &notes);
  ASSERT_EQ(ops.size(), 3u);
  EXPECT_EQ(ops[0].outcome, EventType::kOk);
  EXPECT_EQ(ops[0].complete_time, 3'000'000);
  EXPECT_EQ(ops[1].outcome, EventType::kInfo);
  EXPECT_EQ(ops[1].complete_time, INT64_MAX);
  EXPECT_EQ(ops[2].outcome, EventType::kInfo);  // never completed
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_EQ(notes[0].session, 99u);
}

// ---- (a) mutual exclusion through the fenced resource -----------------------

TEST(MutualExclusionTest, SequentialHoldersPass) {
  FencedResource res;
  for (uint64_t t : {5, 9, 12}) {
    const int64_t p = static_cast<int64_t>(t % 3);
    EXPECT_TRUE(res.Apply(p, "k", t, "begin").accepted);
    EXPECT_TRUE(res.Apply(p, "k", t, "write", std::to_string(t)).accepted);
    EXPECT_TRUE(res.Apply(p, "k", t, "end").accepted);
  }
  EXPECT_TRUE(CheckMutualExclusion(res.Log()).ok());
}

TEST(MutualExclusionTest, StaleHolderIsRejectedByFencingAndLeavesNoOverlap) {
  FencedResource res;
  EXPECT_TRUE(res.Apply(1, "k", 10, "begin").accepted);
  // Holder 1 pauses; its lease ends; holder 2 gets a newer token.
  EXPECT_TRUE(res.Apply(2, "k", 11, "begin").accepted);
  EXPECT_TRUE(res.Apply(2, "k", 11, "write", "x").accepted);
  // Holder 1 wakes up and writes: refused.
  EXPECT_FALSE(res.Apply(1, "k", 10, "write", "y").accepted);
  EXPECT_TRUE(res.Apply(2, "k", 11, "end").accepted);
  EXPECT_EQ(res.Value("k"), "x");
  EXPECT_TRUE(CheckMutualExclusion(res.Log()).ok()) << CheckMutualExclusion(res.Log()).Summary();
}

TEST(MutualExclusionTest, BrokenResourceLetsStaleHolderInAndTheCheckerSaysSo) {
  FencedResource res(/*check_fencing=*/false);
  res.Apply(1, "k", 10, "begin");
  res.Apply(2, "k", 11, "begin");
  res.Apply(2, "k", 11, "write", "x");
  EXPECT_TRUE(res.Apply(1, "k", 10, "write", "y").accepted);
  res.Apply(2, "k", 11, "end");
  CheckResult r = CheckMutualExclusion(res.Log());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.violations[0].find("process 2 token 11"), std::string::npos) << r.Summary();
  EXPECT_NE(r.violations[0].find("process 1 token 10"), std::string::npos) << r.Summary();
}

TEST(MutualExclusionTest, SameTokenTwoProcessesInterleavedIsAViolation) {
  // Fencing cannot tell two holders with the same token apart; the checker can.
  FencedResource res;
  res.Apply(1, "k", 7, "begin");
  res.Apply(2, "k", 7, "begin");
  res.Apply(1, "k", 7, "end");
  res.Apply(2, "k", 7, "end");
  EXPECT_FALSE(CheckMutualExclusion(res.Log()).ok());
}

TEST(MutualExclusionTest, KeysAreIndependent) {
  FencedResource res;
  res.Apply(1, "a", 1, "begin");
  res.Apply(2, "b", 2, "begin");
  res.Apply(1, "a", 1, "end");
  res.Apply(2, "b", 2, "end");
  EXPECT_TRUE(CheckMutualExclusion(res.Log()).ok());
}

TEST(FencedResourceTest, ServerAndClientOverUnixSocket) {
  FencedResource res;
  ResourceServer server(&res);
  const std::string path = ::testing::TempDir() + "/res-" + std::to_string(getpid()) + ".sock";
  ASSERT_TRUE(server.Start(path));
  ResourceClient c1, c2;
  ASSERT_TRUE(c1.Connect(path));
  ASSERT_TRUE(c2.Connect(path));
  auto r = c1.Call(1, "counter", 5, "write", "41");
  ASSERT_TRUE(r && r->accepted);
  r = c2.Call(2, "counter", 6, "read");
  ASSERT_TRUE(r && r->accepted);
  EXPECT_EQ(r->value, "41");
  r = c1.Call(1, "counter", 5, "write", "42");
  ASSERT_TRUE(r.has_value());
  EXPECT_FALSE(r->accepted);
  EXPECT_EQ(r->highest, 6u);
  r = c2.Call(2, "counter", 6, "read");
  EXPECT_EQ(r->value, "41");
  server.Stop();
  EXPECT_FALSE(c1.Call(1, "counter", 7, "read").has_value());
  std::filesystem::remove(path);
}

// ---- (a') mutual exclusion as the clients saw it -------------------------------

TEST(LockOverlapTest, SequentialAndConcurrentlyWaitingHoldersPass) {
  H h;
  h.Op(1, "acquire", "l", 0, 10, "", 5).Invoke(2, "acquire", "l", 5);  // 2 waits
  h.Op(1, "release", "l", 20, 25).Ok(2, "acquire", "l", 24, "", 6);    // granted on release
  h.Op(2, "release", "l", 30, 31);
  h.Op(3, "write", "l", 40, 41, "v", 7).Op(3, "release", "l", 50, 51);
  EXPECT_TRUE(CheckLockOverlap(h.ops()).ok()) << CheckLockOverlap(h.ops()).Summary();
}

TEST(LockOverlapTest, DoubleGrantIsRejected) {
  // 2 is granted while 1, whose release later succeeds, still holds.
  H h;
  h.Op(1, "acquire", "l", 0, 10, "", 5).Op(2, "acquire", "l", 12, 15, "", 6);
  h.Op(2, "release", "l", 16, 17).Op(1, "release", "l", 20, 21);
  CheckResult r = CheckLockOverlap(h.ops());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.violations[0].find("process 2 acquire l token=6"), std::string::npos) << r.Summary();
}

TEST(LockOverlapTest, HolderThatLostItsLockIsExcused) {
  // 1's session expired while it believed it held the lock: its release
  // fails, so its interval is not certain; the fenced resource covers it.
  H h;
  h.Op(1, "acquire", "l", 0, 10, "", 5).Op(2, "acquire", "l", 12, 15, "", 6);
  h.Op(2, "release", "l", 16, 17);
  h.Invoke(1, "release", "l", 20).Fail(1, "release", "l", 21, "SESSION_EXPIRED");
  EXPECT_TRUE(CheckLockOverlap(h.ops()).ok());
  // Other locks are independent.
  H k;
  k.Op(1, "acquire", "a", 0, 1, "", 1).Op(2, "acquire", "b", 0, 1, "", 2);
  k.Op(1, "release", "a", 5, 6).Op(2, "release", "b", 5, 6);
  EXPECT_TRUE(CheckLockOverlap(k.ops()).ok());
}

// ---- (b) fencing monotonic in real time --------------------------------------

TEST(FencingMonotonicTest, IncreasingTokensPass) {
  H h;
  h.Op(1, "acquire", "l", 0, 1, "", 5).Op(2, "acquire", "l", 2, 3, "", 8);
  // Concurrent acquires may complete in either token order.
  h.Invoke(1, "acquire", "l", 4).Invoke(2, "acquire", "l", 5);
  h.Ok(2, "acquire", "l", 6, "", 12).Ok(1, "acquire", "l", 7, "", 10);
  h.Op(3, "acquire", "other", 8, 9, "", 1);  // other locks have their own order
  EXPECT_TRUE(CheckFencingMonotonic(h.ops()).ok()) << CheckFencingMonotonic(h.ops()).Summary();
}

TEST(FencingMonotonicTest, LowerTokenAfterCompletedGrantIsRejected) {
  H h;
  h.Op(1, "acquire", "l", 0, 1, "", 9).Op(2, "acquire", "l", 2, 3, "", 7);
  CheckResult r = CheckFencingMonotonic(h.ops());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.violations[0].find("token=7"), std::string::npos) << r.Summary();
}

TEST(FencingMonotonicTest, SameTokenToTwoProcessesIsRejected) {
  H h;
  h.Invoke(1, "acquire", "l", 0).Invoke(2, "acquire", "l", 0);
  h.Ok(1, "acquire", "l", 1, "", 4).Ok(2, "acquire", "l", 1, "", 4);
  EXPECT_FALSE(CheckFencingMonotonic(h.ops()).ok());
}

TEST(FencingMonotonicTest, FailedAndUnknownGrantsAreIgnored) {
  H h;
  h.Op(1, "acquire", "l", 0, 1, "", 9);
  h.Invoke(2, "acquire", "l", 2).Fail(2, "acquire", "l", 3, "TIMEOUT");
  h.Invoke(3, "acquire", "l", 2).Info(3, "acquire", "l", 3, "UNAVAILABLE");
  EXPECT_TRUE(CheckFencingMonotonic(h.ops()).ok());
}

// ---- (c) no lost acknowledged writes ----------------------------------------

TEST(CounterTest, AllAcknowledgedIncrementsPresent) {
  H h;
  h.Op(1, "incr", "c", 0, 1, "1").Op(2, "incr", "c", 2, 3, "2").Op(1, "incr", "c", 4, 5, "3");
  h.Invoke(2, "incr", "c", 6).Info(2, "incr", "c", 7, "MAYBE_APPLIED");
  h.Invoke(1, "incr", "c", 8).Fail(1, "incr", "c", 9, "NOT_HELD");
  EXPECT_TRUE(CheckCounter(h.ops(), "c", 3).ok());
  EXPECT_TRUE(CheckCounter(h.ops(), "c", 4).ok());  // the unknown one applied
}

TEST(CounterTest, LostUpdateFromOverlappingHoldersIsRejected) {
  // Both read 1 and wrote 2: one increment vanished.
  H h;
  h.Op(1, "incr", "c", 0, 1, "1").Op(2, "incr", "c", 2, 5, "2").Op(3, "incr", "c", 3, 6, "2");
  CheckResult r = CheckCounter(h.ops(), "c", 2);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.Summary().find("wrote 2"), std::string::npos) << r.Summary();
}

TEST(CounterTest, FinalValueBelowAcknowledgedIsRejected) {
  // A failover that lost acknowledged writes: the final value went back.
  H h;
  h.Op(1, "incr", "c", 0, 1, "1").Op(1, "incr", "c", 2, 3, "2").Op(1, "incr", "c", 4, 5, "3");
  EXPECT_FALSE(CheckCounter(h.ops(), "c", 2).ok());
  EXPECT_FALSE(CheckCounter(h.ops(), "c", 0).ok());
}

TEST(CounterTest, PhantomIncrementsAreRejected) {
  H h;
  h.Op(1, "incr", "c", 0, 1, "1");
  EXPECT_FALSE(CheckCounter(h.ops(), "c", 5).ok());
  EXPECT_TRUE(CheckCounter(h.ops(), "c", std::nullopt).ok());
}

// ---- (e) session expiry -------------------------------------------------------

const std::set<std::string> kWrites = {"acquire", "release", "write", "cas", "incr"};

TEST(SessionExpiryTest, NothingAcknowledgedAfterExpiryPasses) {
  H h;
  h.Invoke(1, "acquire", "l", 0, "", "", 7).Ok(1, "acquire", "l", 1, "", 3, 7);
  h.Info(1, "session_lost", "", 5, "lease expired", 7);
  h.Invoke(1, "release", "l", 6, "", "", 7).Fail(1, "release", "l", 7, "SESSION_EXPIRED", 7);
  // A new session of the same process may go on.
  h.Invoke(1, "acquire", "l", 8, "", "", 8).Ok(1, "acquire", "l", 9, "", 4, 8);
  std::vector<Event> notes;
  auto ops = Pair(h.events(), &notes);
  EXPECT_TRUE(CheckSessionExpiry(ops, notes, kWrites).ok());
}

TEST(SessionExpiryTest, WriteAcknowledgedAfterExpiryIsRejected) {
  H h;
  h.Invoke(1, "acquire", "l", 0, "", "", 7).Fail(1, "acquire", "l", 1, "SESSION_EXPIRED: gone", 7);
  h.Invoke(2, "write", "l", 5, "v", "", 7).Ok(2, "write", "l", 6, "", 0, 7);
  std::vector<Event> notes;
  auto ops = Pair(h.events(), &notes);
  CheckResult r = CheckSessionExpiry(ops, notes, kWrites);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.violations[0].find("session 7"), std::string::npos) << r.Summary();
}

TEST(SessionExpiryTest, ExpiryNoteCountsAndOperationsInFlightAreExcused) {
  H h;
  // Invoked before the note: may legitimately complete (it raced the expiry).
  h.Invoke(1, "release", "l", 0, "", "", 7);
  h.Info(2, "session_lost", "", 1, "", 7);
  h.Ok(1, "release", "l", 2, "", 0, 7);
  h.Invoke(1, "cas", "l", 3, "b", "a", 7).Ok(1, "cas", "l", 4, "", 0, 7);
  std::vector<Event> notes;
  auto ops = Pair(h.events(), &notes);
  CheckResult r = CheckSessionExpiry(ops, notes, kWrites);
  ASSERT_EQ(r.violations.size(), 1u) << r.Summary();
  EXPECT_NE(r.violations[0].find("cas"), std::string::npos);
}

}  // namespace
}  // namespace latchkey::checkers
