#include "core/modes.h"

#include <gtest/gtest.h>

namespace latchkey::core {
namespace {

TEST(ModesTest, MatrixIsSymmetricAndMatchesTheDlm) {
  for (int a = 0; a < kModeCount; ++a) {
    for (int b = 0; b < kModeCount; ++b) {
      EXPECT_EQ(Compatible(Mode(a), Mode(b)), Compatible(Mode(b), Mode(a)));
    }
  }
  EXPECT_TRUE(Compatible(Mode::kPR, Mode::kPR));
  EXPECT_FALSE(Compatible(Mode::kPR, Mode::kCW));
  EXPECT_TRUE(Compatible(Mode::kCW, Mode::kCW));
  EXPECT_TRUE(Compatible(Mode::kPW, Mode::kCR));
  EXPECT_FALSE(Compatible(Mode::kPW, Mode::kPR));
  EXPECT_FALSE(Compatible(Mode::kEX, Mode::kCR));
  EXPECT_TRUE(Compatible(Mode::kEX, Mode::kNL));
}

TEST(ModesTest, CoverAndJoin) {
  EXPECT_TRUE(Covers(Mode::kEX, Mode::kPR));
  EXPECT_TRUE(Covers(Mode::kPW, Mode::kPR));
  EXPECT_FALSE(Covers(Mode::kPR, Mode::kCW));
  EXPECT_FALSE(Covers(Mode::kCW, Mode::kPR));
  EXPECT_EQ(Join(Mode::kCW, Mode::kPR), Mode::kPW);
  EXPECT_EQ(Join(Mode::kCR, Mode::kPR), Mode::kPR);
  EXPECT_EQ(Join(Mode::kNL, Mode::kEX), Mode::kEX);
}

TEST(ModesTest, IntentionsAndNames) {
  EXPECT_EQ(IntentionFor(Mode::kPR), Mode::kCR);
  EXPECT_EQ(IntentionFor(Mode::kEX), Mode::kCW);
  EXPECT_EQ(ParseMode("x"), Mode::kEX);
  EXPECT_EQ(ParseMode("SIX"), Mode::kPW);
  EXPECT_EQ(ParseMode("is"), Mode::kCR);
  EXPECT_EQ(ParseMode("pr"), Mode::kPR);
  EXPECT_FALSE(ParseMode("write").has_value());
  for (int m = 0; m < kModeCount; ++m) EXPECT_EQ(ParseMode(ModeName(Mode(m))), Mode(m));
}

}  // namespace
}  // namespace latchkey::core
