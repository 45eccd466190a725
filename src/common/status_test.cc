#include "common/status.h"

#include <gtest/gtest.h>

namespace latchkey {
namespace {

TEST(StatusTest, OkAndErrorStrings) {
  EXPECT_TRUE(Status().ok());
  EXPECT_EQ(Status().ToString(), "OK");
  Status s(Code::kLockBusy, "held by session 7");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.ToString(), "LOCK_BUSY: held by session 7");
}

TEST(StatusTest, EveryCodeHasAName) {
  for (uint8_t c = 0; c <= kMaxCode; ++c) {
    if (c == 19) continue;  // unassigned: codes are allocated in ranges per feature
    EXPECT_NE(CodeName(static_cast<Code>(c)), "UNKNOWN") << int(c);
  }
}

TEST(StatusTest, CodesAfterTheFirstRangeAreKnown) {
  EXPECT_EQ(CodeName(Code::kValueTooLarge), "VALUE_TOO_LARGE");
  EXPECT_TRUE(IsKnownCode(40));
  EXPECT_TRUE(IsKnownCode(18));
  EXPECT_FALSE(IsKnownCode(200));
  EXPECT_FALSE(IsKnownCode(100000));
}

TEST(ResultTest, HoldsValueOrStatus) {
  Result<int> good = 42;
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, 42);
  EXPECT_TRUE(good.status().ok());
  Result<int> bad = NotFound("no such lock");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::kNotFound);
}

}  // namespace
}  // namespace latchkey
