#include "core/sync_objects.h"

#include <gtest/gtest.h>

namespace latchkey::core {
namespace {

using K = SyncOutcome::Kind;

class SyncObjectsTest : public ::testing::Test {
 protected:
  SyncObjects s_;
  uint64_t rev_ = 0;
};

TEST_F(SyncObjectsTest, SemaphoreGrantsUpToItsLimitThenFifo) {
  auto a = s_.SemaphoreAcquire({1, ""}, "pool", 2, 3, false, 0, &rev_);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->kind, K::kDone);
  auto b = s_.SemaphoreAcquire({2, ""}, "pool", 2, 3, false, 0, &rev_);
  EXPECT_EQ(b->kind, K::kQueued);
  // Only one permit is free, but the head (2 permits) is not overtaken.
  auto c = s_.SemaphoreAcquire({3, ""}, "pool", 1, 0, false, 0, &rev_);
  EXPECT_EQ(c->kind, K::kQueued);
  EXPECT_EQ(s_.SemaphoreAcquire({4, ""}, "pool", 1, 0, true, 0, &rev_)->kind, K::kBusy);
  ASSERT_TRUE(s_.SemaphoreRelease({1, ""}, "pool", 0, &rev_).ok());
  auto ev = s_.TakeEvents();
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0].who.session, 2u);
  EXPECT_EQ(ev[1].who.session, 3u);
  EXPECT_GT(ev[1].grant.fencing_token, ev[0].grant.fencing_token);
  EXPECT_FALSE(s_.SemaphoreAcquire({5, ""}, "pool", 1, 7, false, 0, &rev_).ok());  // wrong limit
  EXPECT_FALSE(s_.SemaphoreAcquire({5, ""}, "none", 1, 0, false, 0, &rev_).ok());  // unknown
}

TEST_F(SyncObjectsTest, SessionEndReturnsPermits) {
  ASSERT_TRUE(s_.SemaphoreAcquire({1, ""}, "p", 1, 1, false, 0, &rev_).ok());
  ASSERT_EQ(s_.SemaphoreAcquire({2, ""}, "p", 1, 1, false, 0, &rev_)->kind, K::kQueued);
  s_.DropSession(1, 0, &rev_);
  auto ev = s_.TakeEvents();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].who.session, 2u);
}

TEST_F(SyncObjectsTest, LatchOpensAtZeroAndStaysOpen) {
  ASSERT_EQ(s_.LatchAwait({1, ""}, "ready", 2)->kind, K::kQueued);
  EXPECT_EQ(*s_.LatchCountDown("ready", 1, 0), 1u);
  EXPECT_TRUE(s_.TakeEvents().empty());
  EXPECT_EQ(*s_.LatchCountDown("ready", 1, 0), 0u);
  EXPECT_EQ(s_.TakeEvents().size(), 1u);
  EXPECT_EQ(s_.LatchAwait({2, ""}, "ready", 0)->kind, K::kDone);
  EXPECT_FALSE(s_.LatchAwait({2, ""}, "unknown", 0).ok());
}

TEST_F(SyncObjectsTest, BarrierTripsWhenAllPartiesArrive) {
  EXPECT_EQ(s_.BarrierAwait({1, ""}, "b", 3)->kind, K::kQueued);
  EXPECT_EQ(s_.BarrierAwait({2, ""}, "b", 3)->kind, K::kQueued);
  EXPECT_FALSE(s_.BarrierAwait({3, ""}, "b", 4).ok());  // wrong party count
  auto last = s_.BarrierAwait({3, ""}, "b", 3);
  EXPECT_EQ(last->kind, K::kDone);
  EXPECT_EQ(s_.TakeEvents().size(), 2u);
  // Next generation.
  EXPECT_EQ(s_.BarrierAwait({1, ""}, "b", 3)->kind, K::kQueued);
  EXPECT_EQ(s_.barriers().at("b").generation, 1u);
}

TEST_F(SyncObjectsTest, SnapshotRoundTrip) {
  ASSERT_TRUE(s_.SemaphoreAcquire({1, "a"}, "p", 1, 2, false, 5, &rev_).ok());
  ASSERT_TRUE(s_.LatchAwait({1, ""}, "l", 3).ok());
  ASSERT_TRUE(s_.BarrierAwait({2, ""}, "b", 2).ok());
  log::v1::Snapshot snap;
  s_.ToProto(&snap);
  SyncObjects copy;
  ASSERT_TRUE(copy.FromProto(snap).ok());
  log::v1::Snapshot again;
  copy.ToProto(&again);
  EXPECT_EQ(again.SerializeAsString(), snap.SerializeAsString());
}

}  // namespace
}  // namespace latchkey::core
