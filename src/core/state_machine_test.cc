#include "core/state_machine.h"

#include <gtest/gtest.h>

#include "core/test_util.h"

namespace latchkey::core {
namespace {

using testing::EntryBuilder;

class StateMachineTest : public ::testing::Test {
 protected:
  ApplyResult Apply(const EntryBuilder& b) { return sm_.Apply(++index_, b.entry()); }
  uint64_t Open(std::string name = "") {
    auto r = Apply(EntryBuilder(now_).Open(10'000, std::move(name)));
    EXPECT_TRUE(r.results[0].status.ok());
    return r.results[0].session_id;
  }
  CommandResult AcquireOne(uint64_t sid, const std::string& name, bool try_only = false,
                           uint64_t ttl = 0) {
    return Apply(EntryBuilder(now_).Acquire(sid, "", name, try_only, ttl)).results[0];
  }

  StateMachine sm_;
  uint64_t index_ = 0;
  uint64_t now_ = 5'000;
};

TEST_F(StateMachineTest, GrantsFreeLockWithToken) {
  uint64_t s = Open("alice");
  CommandResult r = AcquireOne(s, "a.b");
  ASSERT_TRUE(r.status.ok());
  EXPECT_TRUE(r.granted);
  EXPECT_GT(r.grant.fencing_token, s);
  EXPECT_EQ(r.grant.granted_at_ms, now_);
  EXPECT_EQ(sm_.locks_held(), 1u);
}

TEST_F(StateMachineTest, TryLockOnHeldLockIsBusyAndNamesHolder) {
  uint64_t a = Open("alice"), b = Open("bob");
  ASSERT_TRUE(AcquireOne(a, "x").granted);
  CommandResult r = AcquireOne(b, "x", /*try_only=*/true);
  EXPECT_EQ(r.status.code(), Code::kLockBusy);
  EXPECT_NE(r.status.message().find("alice"), std::string::npos);
  EXPECT_EQ(sm_.waiter_count(), 0u);
}

TEST_F(StateMachineTest, FifoHandoffWithIncreasingTokens) {
  uint64_t a = Open(), b = Open(), c = Open();
  uint64_t t1 = AcquireOne(a, "x").grant.fencing_token;
  EXPECT_TRUE(AcquireOne(b, "x").queued);
  EXPECT_TRUE(AcquireOne(c, "x").queued);
  EXPECT_EQ(sm_.waiter_count(), 2u);
  auto r = Apply(EntryBuilder(now_).Release(a, "", "x"));
  ASSERT_TRUE(r.results[0].status.ok());
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0].kind, Event::Kind::kGranted);
  EXPECT_EQ(r.events[0].session_id, b);
  uint64_t t2 = r.events[0].grant.fencing_token;
  EXPECT_GT(t2, t1);
  r = Apply(EntryBuilder(now_).Release(b, "", "x"));
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0].session_id, c);
  EXPECT_GT(r.events[0].grant.fencing_token, t2);
}

TEST_F(StateMachineTest, AcquireIsIdempotent) {
  uint64_t a = Open(), b = Open();
  CommandResult g1 = AcquireOne(a, "x");
  CommandResult g2 = AcquireOne(a, "x");
  EXPECT_TRUE(g2.granted);
  EXPECT_EQ(g1.grant.fencing_token, g2.grant.fencing_token);
  EXPECT_TRUE(AcquireOne(b, "x").queued);
  EXPECT_TRUE(AcquireOne(b, "x").queued);
  EXPECT_EQ(sm_.waiter_count(), 1u);
}

TEST_F(StateMachineTest, OwnersInOneSessionExcludeEachOther) {
  uint64_t a = Open();
  auto r = Apply(EntryBuilder(now_).Acquire(a, "t1", "x").Acquire(a, "t2", "x"));
  EXPECT_TRUE(r.results[0].granted);
  EXPECT_TRUE(r.results[1].queued);
  EXPECT_EQ(Apply(EntryBuilder(now_).Release(a, "t2", "x")).results[0].status.code(),
            Code::kNotHeld);
}

TEST_F(StateMachineTest, ReleaseOfUnheldLockIsNotHeld) {
  uint64_t a = Open(), b = Open();
  AcquireOne(a, "x");
  EXPECT_EQ(Apply(EntryBuilder(now_).Release(b, "", "x")).results[0].status.code(), Code::kNotHeld);
  EXPECT_EQ(Apply(EntryBuilder(now_).Release(a, "", "y")).results[0].status.code(), Code::kNotHeld);
}

TEST_F(StateMachineTest, SessionEndReleasesHeldAndWithdrawsWaits) {
  uint64_t a = Open(), b = Open(), c = Open();
  AcquireOne(a, "x");
  AcquireOne(b, "y");
  AcquireOne(a, "y");  // a waits for y
  AcquireOne(c, "x");  // c waits for x
  auto r = Apply(EntryBuilder(now_).Expire(a));
  ASSERT_TRUE(r.results[0].status.ok());
  ASSERT_EQ(r.events.size(), 2u);
  EXPECT_EQ(r.events[0].kind, Event::Kind::kGranted);
  EXPECT_EQ(r.events[0].session_id, c);
  EXPECT_EQ(r.events[1].kind, Event::Kind::kSessionEnded);
  EXPECT_EQ(r.events[1].reason, "lease expired");
  EXPECT_EQ(sm_.waiter_count(), 0u);
  EXPECT_EQ(sm_.FindSession(a), nullptr);
  // The expired session can do nothing any more.
  EXPECT_EQ(AcquireOne(a, "z").status.code(), Code::kSessionExpired);
  // b releasing y leaves nobody waiting: the lock disappears.
  Apply(EntryBuilder(now_).Release(b, "", "y"));
  EXPECT_EQ(sm_.locks().Find("y"), nullptr);
}

TEST_F(StateMachineTest, CancelWaitRemovesFromQueueOrReportsGrant) {
  uint64_t a = Open(), b = Open();
  AcquireOne(a, "x");
  AcquireOne(b, "x");
  auto r = Apply(EntryBuilder(now_).Cancel(b, "", "x"));
  EXPECT_TRUE(r.results[0].status.ok());
  EXPECT_EQ(sm_.waiter_count(), 0u);
  // Cancel after the grant won the race: NOT_FOUND with the grant attached.
  r = Apply(EntryBuilder(now_).Cancel(a, "", "x"));
  EXPECT_EQ(r.results[0].status.code(), Code::kNotFound);
  EXPECT_TRUE(r.results[0].granted);
}

TEST_F(StateMachineTest, LockTtlExpiresOnlyThroughTheLogAndOnlyWhenDue) {
  uint64_t a = Open(), b = Open();
  CommandResult g = AcquireOne(a, "x", false, /*ttl=*/1'000);
  AcquireOne(b, "x");
  EXPECT_TRUE(sm_.ExpiredLocks(now_ + 999).empty());
  auto due = sm_.ExpiredLocks(now_ + 1'000);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].second, g.grant.fencing_token);
  // An early expiry entry (time not advanced) is refused.
  auto r = Apply(EntryBuilder(now_ + 10).ExpireLock("x", g.grant.fencing_token));
  EXPECT_EQ(r.results[0].status.code(), Code::kFailedPrecondition);
  r = Apply(EntryBuilder(now_ + 1'000).ExpireLock("x", g.grant.fencing_token));
  ASSERT_TRUE(r.results[0].status.ok());
  ASSERT_EQ(r.events.size(), 2u);
  EXPECT_EQ(r.events[0].kind, Event::Kind::kLockLost);
  EXPECT_EQ(r.events[0].session_id, a);
  EXPECT_EQ(r.events[1].kind, Event::Kind::kGranted);
  EXPECT_EQ(r.events[1].session_id, b);
  // A stale expiry (old token) does nothing.
  r = Apply(EntryBuilder(now_ + 5'000).ExpireLock("x", g.grant.fencing_token));
  EXPECT_EQ(r.results[0].status.code(), Code::kNotFound);
  EXPECT_EQ(sm_.locks().Find("x")->holders.begin()->first.session, b);
}

TEST_F(StateMachineTest, TimeNeverGoesBackwards) {
  Apply(EntryBuilder(10'000));
  Apply(EntryBuilder(9'000));
  EXPECT_EQ(sm_.time_ms(), 10'000u);
}

TEST_F(StateMachineTest, RejectsInvalidInputWithoutChangingState) {
  uint64_t a = Open();
  uint64_t rev = sm_.revision();
  EXPECT_EQ(AcquireOne(a, "bad name").status.code(), Code::kInvalidArgument);
  EXPECT_EQ(AcquireOne(a, "").status.code(), Code::kInvalidArgument);
  EXPECT_EQ(Apply(EntryBuilder(now_).Open(0)).results[0].status.code(), Code::kInvalidArgument);
  EXPECT_EQ(sm_.revision(), rev);
  EXPECT_EQ(sm_.locks().Find(""), nullptr);
}

TEST_F(StateMachineTest, UndecodableOrFutureEntriesAreRefused) {
  EXPECT_FALSE(sm_.ApplyBytes(1, "\xff\xff\xff").ok());
  auto e = MakeEntry(1);
  e.set_version(kLogEntryVersion + 1);
  auto r = sm_.ApplyBytes(1, EncodeEntry(e));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnsupportedVersion);
}

TEST_F(StateMachineTest, SnapshotRoundTripPreservesStateAndDigest) {
  uint64_t a = Open("a"), b = Open("b");
  AcquireOne(a, "x", false, 500);
  AcquireOne(b, "x");
  AcquireOne(b, "y");
  std::string snap = sm_.Snapshot();
  StateMachine copy;
  ASSERT_TRUE(copy.Restore(snap).ok());
  EXPECT_EQ(copy.Digest(), sm_.Digest());
  EXPECT_EQ(copy.Snapshot(), snap);
  EXPECT_EQ(copy.waiter_count(), 1u);
  EXPECT_EQ(copy.locks_held(), 2u);
  EXPECT_EQ(copy.ExpiredLocks(now_ + 500).size(), 1u);
  // Behaviour continues identically on both.
  auto e = EntryBuilder(now_).Release(a, "", "x");
  auto r1 = sm_.Apply(100, e.entry());
  auto r2 = copy.Apply(100, e.entry());
  ASSERT_EQ(r1.events.size(), 1u);
  ASSERT_EQ(r2.events.size(), 1u);
  EXPECT_EQ(r1.events[0].grant.fencing_token, r2.events[0].grant.fencing_token);
  EXPECT_EQ(copy.Digest(), sm_.Digest());
}

// Found by log_entry_fuzz: a lock value block set to the empty string still
// carries a token, and the snapshot must keep it.
TEST_F(StateMachineTest, SnapshotKeepsEmptyLockValueAndItsToken) {
  uint64_t a = Open("a");
  ASSERT_TRUE(Apply(EntryBuilder(now_).Acquire(a, "", "x.y").WithValue("")).results[0].status.ok());
  std::string snap = sm_.Snapshot();
  StateMachine copy;
  ASSERT_TRUE(copy.Restore(snap).ok());
  EXPECT_EQ(copy.Snapshot(), snap);
  EXPECT_EQ(copy.Digest(), sm_.Digest());
}

// A follower caught up only by installing a snapshot reports the index it
// covers; the index is outside the digest, so replicas still compare equal.
TEST_F(StateMachineTest, SnapshotCarriesAppliedIndexOutsideTheDigest) {
  Open("a");
  Open("b");
  ASSERT_EQ(sm_.applied_index(), 2u);
  StateMachine copy;
  ASSERT_TRUE(copy.Restore(sm_.Snapshot()).ok());
  EXPECT_EQ(copy.applied_index(), 2u);
  EXPECT_EQ(copy.Digest(), sm_.Digest());
}

TEST_F(StateMachineTest, CorruptSnapshotIsRejectedAndStateKept) {
  Open();
  std::string snap = sm_.Snapshot();
  snap[snap.size() / 2] ^= 0x5a;
  StateMachine other;
  uint64_t before = other.Digest();
  EXPECT_FALSE(other.Restore(snap).ok());
  EXPECT_EQ(other.Digest(), before);
  EXPECT_FALSE(other.Restore("garbage").ok());
}

}  // namespace
}  // namespace latchkey::core
