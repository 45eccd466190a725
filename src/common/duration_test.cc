#include "common/duration.h"

#include <gtest/gtest.h>

namespace latchkey {
namespace {

TEST(DurationTest, ParsesUnits) {
  EXPECT_EQ(*ParseDurationMs("250ms"), 250u);
  EXPECT_EQ(*ParseDurationMs("10s"), 10'000u);
  EXPECT_EQ(*ParseDurationMs("10"), 10'000u);
  EXPECT_EQ(*ParseDurationMs("5m"), 300'000u);
  EXPECT_EQ(*ParseDurationMs("1h30m"), 5'400'000u);
  EXPECT_EQ(*ParseDurationMs("0"), 0u);
}

TEST(DurationTest, RejectsGarbageWithHint) {
  for (const char* bad : {"", "ms", "10x", "1m30", "-5s", "1.5s", "99999999999999999999h"}) {
    auto r = ParseDurationMs(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    EXPECT_NE(r.status().message().find("500ms"), std::string::npos);
  }
}

TEST(DurationTest, Formats) {
  EXPECT_EQ(FormatDurationMs(850), "850ms");
  EXPECT_EQ(FormatDurationMs(12'300), "12.3s");
  EXPECT_EQ(FormatDurationMs(245'000), "4m05s");
  EXPECT_EQ(FormatDurationMs(7'800'000), "2h10m");
}

}  // namespace
}  // namespace latchkey
