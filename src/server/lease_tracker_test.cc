#include "server/lease_tracker.h"

#include <gtest/gtest.h>

namespace latchkey::server {
namespace {

TEST(LeaseTrackerTest, ExpiresOnlyAfterFullTtl) {
  LeaseTracker t;
  t.Renew(1, 1'000, 10'000);
  t.Renew(2, 5'000, 10'000);
  EXPECT_TRUE(t.Expired(10'999).empty());
  EXPECT_EQ(t.Expired(11'000), std::vector<uint64_t>{1});
  EXPECT_EQ(t.Expired(15'000), (std::vector<uint64_t>{1, 2}));
}

TEST(LeaseTrackerTest, RenewalPushesDeadlineOut) {
  LeaseTracker t;
  t.Renew(1, 1'000, 10'000);
  t.Renew(1, 1'000, 10'900);
  EXPECT_TRUE(t.Expired(11'500).empty());
  EXPECT_EQ(t.Expired(11'900), std::vector<uint64_t>{1});
  EXPECT_EQ(t.size(), 1u);
}

TEST(LeaseTrackerTest, RemovedSessionsNeverExpire) {
  LeaseTracker t;
  t.Renew(1, 10, 0);
  t.Remove(1);
  t.Remove(42);  // unknown: no-op
  EXPECT_TRUE(t.Expired(1'000'000).empty());
  EXPECT_FALSE(t.Contains(1));
}

}  // namespace
}  // namespace latchkey::server
