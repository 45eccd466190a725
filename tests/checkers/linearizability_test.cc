#include "checkers/linearizability.h"

#include <gtest/gtest.h>

#include "checkers/test_history.h"

namespace latchkey::checkers {
namespace {

using testing::H;

CheckResult Check(const H& h) {
  return CheckRegisterLinearizable(h.ops(), "r");
}

TEST(LinearizabilityTest, EmptyAndSequentialHistoriesAreLinearizable) {
  EXPECT_TRUE(Check(H()).ok());
  H h;
  h.Op(1, "read", "r", 0, 1, "").Op(1, "write", "r", 2, 3, "a").Op(2, "read", "r", 4, 5, "a");
  h.Cas(2, "r", 6, 7, "a", "b", true).Op(1, "read", "r", 8, 9, "b");
  EXPECT_TRUE(Check(h).ok()) << Check(h).Summary();
}

TEST(LinearizabilityTest, StaleReadAfterCompletedWriteIsRejected) {
  H h;
  h.Op(1, "write", "r", 0, 10, "a").Op(2, "read", "r", 20, 30, "");
  CheckResult r = Check(h);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.violations[0].find("process 2 read \"\""), std::string::npos) << r.Summary();
}

TEST(LinearizabilityTest, ConcurrentReadMaySeeEitherValue) {
  for (const char* seen : {"", "a"}) {
    H h;
    h.Invoke(1, "write", "r", 0, "a").Invoke(2, "read", "r", 5);
    h.Ok(2, "read", "r", 8, seen).Ok(1, "write", "r", 10);
    EXPECT_TRUE(Check(h).ok()) << seen;
  }
}

TEST(LinearizabilityTest, ReadsMustNotGoBackInTime) {
  // Two sequential reads during one long write: once "a" was read, a later
  // read must not return the old value (the classic non-linearizable
  // register a stale follower produces).
  H h;
  h.Invoke(1, "write", "r", 0, "a");
  h.Op(2, "read", "r", 1, 2, "a").Op(3, "read", "r", 3, 4, "");
  h.Ok(1, "write", "r", 10);
  EXPECT_FALSE(Check(h).ok());
}

TEST(LinearizabilityTest, ValueNobodyWroteIsRejected) {
  H h;
  h.Op(1, "write", "r", 0, 1, "a").Op(2, "read", "r", 2, 3, "z");
  EXPECT_FALSE(Check(h).ok());
}

TEST(LinearizabilityTest, CasSemantics) {
  H ok;
  ok.Op(1, "write", "r", 0, 1, "a").Cas(2, "r", 2, 3, "a", "b", true);
  ok.Cas(3, "r", 4, 5, "a", "c", false).Op(1, "read", "r", 6, 7, "b");
  EXPECT_TRUE(Check(ok).ok()) << Check(ok).Summary();
  // Two sequential cas from the same expected value cannot both succeed.
  H bad;
  bad.Op(1, "write", "r", 0, 1, "a").Cas(2, "r", 2, 3, "a", "b", true);
  bad.Cas(3, "r", 4, 5, "a", "c", true);
  EXPECT_FALSE(Check(bad).ok());
}

TEST(LinearizabilityTest, UnknownWriteMayTakeEffectLateOrNever) {
  // The write's outcome is unknown: reads may see it later...
  H late;
  late.Invoke(1, "write", "r", 0, "a").Info(1, "write", "r", 5, "MAYBE_APPLIED");
  late.Op(2, "read", "r", 10, 11, "").Op(2, "read", "r", 20, 21, "a");
  EXPECT_TRUE(Check(late).ok()) << Check(late).Summary();
  // ... or never.
  H never;
  never.Invoke(1, "write", "r", 0, "a").Info(1, "write", "r", 5, "MAYBE_APPLIED");
  never.Op(2, "read", "r", 10, 11, "");
  EXPECT_TRUE(Check(never).ok());
  // But not before it was invoked.
  H early;
  early.Op(2, "read", "r", 0, 1, "a");
  early.Invoke(1, "write", "r", 5, "a").Info(1, "write", "r", 6, "UNAVAILABLE");
  EXPECT_FALSE(Check(early).ok());
}

TEST(LinearizabilityTest, FailedOperationsHaveNoEffect) {
  H h;
  h.Invoke(1, "write", "r", 0, "a").Fail(1, "write", "r", 1, "TIMEOUT");
  h.Op(2, "read", "r", 2, 3, "a");
  EXPECT_FALSE(Check(h).ok());
}

TEST(LinearizabilityTest, OtherKeysAreIgnored) {
  H h;
  h.Op(1, "write", "other", 0, 1, "a").Op(2, "read", "r", 2, 3, "");
  EXPECT_TRUE(Check(h).ok());
}

TEST(LinearizabilityTest, ManyConcurrentProcessesStayTractable) {
  // 6 processes x 60 rounds of overlapping writes and reads that each see
  // the value of the round: the memoised search must answer quickly.
  H h;
  int64_t t = 0;
  for (int round = 0; round < 60; ++round) {
    const std::string v = std::to_string(round);
    for (int p = 1; p <= 3; ++p) h.Invoke(p, "write", "r", t + p, v);
    for (int p = 1; p <= 3; ++p) h.Ok(p, "write", "r", t + 10 + p);
    for (int p = 4; p <= 6; ++p) h.Op(p, "read", "r", t + 20 + p, t + 30, v);
    t += 40;
  }
  CheckResult r = Check(h);
  EXPECT_TRUE(r.ok()) << r.Summary();
}

TEST(LinearizabilityTest, BudgetExhaustionIsReportedAsUnknown) {
  H h;
  for (int p = 1; p <= 8; ++p) h.Invoke(p, "write", "r", p, std::to_string(p));
  for (int p = 1; p <= 8; ++p) h.Ok(p, "write", "r", 100 + p);
  h.Op(9, "read", "r", 200, 201, "nobody");
  LinearizabilityOptions o;
  o.max_steps = 10;
  CheckResult r = CheckRegisterLinearizable(h.ops(), "r", o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.violations[0].rfind("unknown:", 0), 0u) << r.Summary();
}

}  // namespace
}  // namespace latchkey::checkers
