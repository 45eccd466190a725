#include "server/server_objects.h"

#include <gtest/gtest.h>

namespace latchkey::server {
namespace {

TEST(SlidingClocksTest, TouchRestartsAndDueListsExpired) {
  SlidingClocks c;
  c.Set("a", 100, 7, 1'000);
  c.Set("b", 300, 8, 1'000);
  EXPECT_TRUE(c.Due(1'099).empty());
  c.Touch("a", 1'050);  // a read restarts the clock
  EXPECT_TRUE(c.Due(1'149).empty());
  auto due = c.Due(1'150);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0], std::make_pair(std::string("a"), uint64_t{7}));
  c.Touch("nope", 2'000);  // no clock: nothing happens
  c.Erase("a");
  EXPECT_EQ(c.Due(1'300).size(), 1u);
  c.Set("b", 50, 9, 1'300);  // a new TTL replaces the clock
  EXPECT_EQ(c.Due(1'350)[0].second, 9u);
  c.Clear();
  EXPECT_EQ(c.size(), 0u);
}

TEST(RetentionTargetTest, KeepsWhicheverBoundIsLarger) {
  std::deque<std::pair<uint64_t, uint64_t>> samples = {{0, 10}, {1'000, 50}, {2'000, 90}};
  EXPECT_EQ(RetentionTarget(100, 2'500, 0, 0, samples), 0u);       // disabled
  EXPECT_EQ(RetentionTarget(100, 2'500, 20, 0, samples), 80u);     // count only
  EXPECT_EQ(RetentionTarget(100, 2'500, 0, 1'000, samples), 50u);  // age only
  EXPECT_EQ(RetentionTarget(100, 2'500, 20, 1'000, samples), 50u);
  EXPECT_EQ(RetentionTarget(100, 2'500, 80, 1'000, samples), 20u);
  EXPECT_EQ(RetentionTarget(10, 2'500, 20, 0, samples), 0u);
  EXPECT_EQ(RetentionTarget(100, 500, 0, 1'000, samples), 0u);  // nothing old enough yet
}

}  // namespace
}  // namespace latchkey::server
