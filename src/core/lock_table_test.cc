#include "core/lock_table.h"

#include <gtest/gtest.h>

namespace latchkey::core {
namespace {

using Kind = AcquireOutcome::Kind;

AcquireRequest Req(uint64_t s, const std::string& name, Mode m, bool try_only) {
  AcquireRequest r;
  r.who = OwnerId{s, ""};
  r.name = name;
  r.mode = m;
  r.try_only = try_only;
  return r;
}

class LockTableTest : public ::testing::Test {
 protected:
  AcquireOutcome Acq(uint64_t s, const std::string& name, Mode m, bool try_only = false,
                     bool reentrant = false, const std::string& owner = "") {
    AcquireRequest r;
    r.who = OwnerId{s, owner};
    r.name = name;
    r.mode = m;
    r.try_only = try_only;
    r.reentrant = reentrant;
    return t_.Acquire(r, 100, &rev_);
  }
  Status Rel(uint64_t s, const std::string& name, bool all = false) {
    return t_.Release(OwnerId{s, ""}, name, all, &rev_);
  }
  std::vector<GrantEvent> Grants() { return t_.TakeGrantEvents(); }
  bool Holds(uint64_t s, const std::string& name) {
    return t_.FindGrant(OwnerId{s, ""}, name) != nullptr;
  }

  LockTable t_;
  uint64_t rev_ = 0;
};

TEST_F(LockTableTest, ModeMatrixThroughTheEngine) {
  for (int a = 0; a < kModeCount; ++a) {
    for (int b = 0; b < kModeCount; ++b) {
      LockTable t;
      uint64_t rev = 0;
      AcquireRequest r1 = Req(1, "x", Mode(a), false);
      AcquireRequest r2 = Req(2, "x", Mode(b), true);
      ASSERT_EQ(t.Acquire(r1, 0, &rev).kind, Kind::kGranted);
      EXPECT_EQ(t.Acquire(r2, 0, &rev).kind == Kind::kGranted, Compatible(Mode(a), Mode(b)))
          << ModeName(Mode(a)) << " vs " << ModeName(Mode(b));
    }
  }
}

TEST_F(LockTableTest, ParentLockBlocksChildrenAndTheReverse) {
  ASSERT_EQ(Acq(1, "a", Mode::kPR).kind, Kind::kGranted);
  EXPECT_EQ(Acq(2, "a.b.c", Mode::kEX, true).kind, Kind::kBusy);     // IX on a vs PR
  EXPECT_EQ(Acq(2, "a.b.c", Mode::kPR, true).kind, Kind::kGranted);  // IS on a is fine
  ASSERT_TRUE(Rel(1, "a").ok());
  ASSERT_EQ(Acq(3, "a.x", Mode::kEX).kind, Kind::kGranted);
  EXPECT_EQ(Acq(4, "a", Mode::kPR, true).kind, Kind::kBusy);     // a child holds EX
  EXPECT_EQ(Acq(4, "a", Mode::kCR, true).kind, Kind::kGranted);  // IS vs IX: compatible
  EXPECT_EQ(Acq(5, "a", Mode::kEX, true).kind, Kind::kBusy);
  EXPECT_EQ(Acq(6, "ab", Mode::kEX, true).kind, Kind::kGranted);  // not a child of "a"
}

TEST_F(LockTableTest, WaitingParentIsNotStarvedByChildren) {
  ASSERT_EQ(Acq(1, "a.x", Mode::kEX).kind, Kind::kGranted);
  ASSERT_EQ(Acq(2, "a", Mode::kEX).kind, Kind::kQueued);
  // A new child lock would be compatible with the holders, but the parent
  // waits first.
  EXPECT_EQ(Acq(3, "a.y", Mode::kEX).kind, Kind::kQueued);
  ASSERT_TRUE(Rel(1, "a.x").ok());
  auto g = Grants();
  ASSERT_EQ(g.size(), 1u);
  EXPECT_EQ(g[0].who.session, 2u);
  ASSERT_TRUE(Rel(2, "a").ok());
  g = Grants();
  ASSERT_EQ(g.size(), 1u);
  EXPECT_EQ(g[0].who.session, 3u);
}

TEST_F(LockTableTest, WriterIsNotStarvedByReaders) {
  ASSERT_EQ(Acq(1, "x", Mode::kPR).kind, Kind::kGranted);
  ASSERT_EQ(Acq(2, "x", Mode::kEX).kind, Kind::kQueued);
  EXPECT_EQ(Acq(3, "x", Mode::kPR).kind, Kind::kQueued);  // behind the writer
  ASSERT_TRUE(Rel(1, "x").ok());
  auto g = Grants();
  ASSERT_EQ(g.size(), 1u);
  EXPECT_EQ(g[0].who.session, 2u);
}

TEST_F(LockTableTest, CompatibleRequestsBehindTheHeadAreGrantedTogether) {
  ASSERT_EQ(Acq(1, "x", Mode::kEX).kind, Kind::kGranted);
  Acq(2, "x", Mode::kPR);
  Acq(3, "x", Mode::kPR);
  Acq(4, "x", Mode::kEX);
  Acq(5, "x", Mode::kPR);  // behind the EX: stays
  ASSERT_TRUE(Rel(1, "x").ok());
  auto g = Grants();
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(g[0].who.session, 2u);
  EXPECT_EQ(g[1].who.session, 3u);
  EXPECT_EQ(t_.waiter_count(), 2u);
}

TEST_F(LockTableTest, ConversionsGoFirstAndGetANewTokenForWrite) {
  auto r = Acq(1, "x", Mode::kPR);
  Acq(2, "x", Mode::kPR);
  Acq(3, "x", Mode::kEX);  // new request queued
  // 1 upgrades: waits for 2 only, ahead of 3.
  ASSERT_EQ(Acq(1, "x", Mode::kEX).kind, Kind::kQueued);
  ASSERT_TRUE(Rel(2, "x").ok());
  auto g = Grants();
  ASSERT_EQ(g.size(), 1u);
  EXPECT_EQ(g[0].who.session, 1u);
  EXPECT_EQ(g[0].grant.mode, Mode::kEX);
  EXPECT_GT(g[0].grant.fencing_token, r.grant.fencing_token);
  // Downgrade lets nobody in yet (3 wants EX), release does.
  ASSERT_TRUE(t_.Downgrade(OwnerId{1, ""}, "x", Mode::kPR, &rev_).ok());
  EXPECT_TRUE(Grants().empty());
  EXPECT_FALSE(t_.Downgrade(OwnerId{1, ""}, "x", Mode::kEX, &rev_).ok());
}

TEST_F(LockTableTest, UpgradeJoinsModes) {
  Acq(1, "x", Mode::kCW);
  auto r = Acq(1, "x", Mode::kPR);
  ASSERT_EQ(r.kind, Kind::kGranted);
  EXPECT_EQ(r.grant.mode, Mode::kPW);
}

TEST_F(LockTableTest, ReentrancyCountsAndIdempotentRetriesDoNot) {
  Acq(1, "x", Mode::kEX, false, /*reentrant=*/true);
  auto again = Acq(1, "x", Mode::kPR, false, true);  // covered by EX
  ASSERT_EQ(again.kind, Kind::kGranted);
  EXPECT_EQ(again.grant.count, 2u);
  Acq(1, "x", Mode::kEX);  // not reentrant: idempotent, no count
  EXPECT_EQ(t_.FindGrant(OwnerId{1, ""}, "x")->count, 2u);
  ASSERT_TRUE(Rel(1, "x").ok());
  EXPECT_TRUE(Holds(1, "x"));
  ASSERT_TRUE(Rel(1, "x").ok());
  EXPECT_FALSE(Holds(1, "x"));
  Acq(1, "y", Mode::kEX, false, true);
  Acq(1, "y", Mode::kEX, false, true);
  ASSERT_TRUE(Rel(1, "y", /*all=*/true).ok());
  EXPECT_FALSE(Holds(1, "y"));
}

TEST_F(LockTableTest, DeadlockCyclesOfLength2ToNFailTheClosingRequest) {
  for (uint64_t n = 2; n <= 6; ++n) {
    LockTable t;
    uint64_t rev = 0;
    auto acq = [&](uint64_t s, const std::string& name) {
      AcquireRequest r = Req(s, name, Mode::kEX, false);
      return t.Acquire(r, 0, &rev);
    };
    for (uint64_t i = 1; i <= n; ++i)
      ASSERT_EQ(acq(i, "r" + std::to_string(i)).kind, Kind::kGranted);
    for (uint64_t i = 1; i < n; ++i) {
      ASSERT_EQ(acq(i, "r" + std::to_string(i + 1)).kind, Kind::kQueued) << n;
    }
    auto closing = acq(n, "r1");
    ASSERT_EQ(closing.kind, Kind::kDeadlock) << n;
    EXPECT_NE(closing.message.find("session 1"), std::string::npos) << closing.message;
    EXPECT_NE(closing.message.find("session " + std::to_string(n)), std::string::npos);
    EXPECT_EQ(t.waiter_count(), n - 1);  // nothing changed
    EXPECT_EQ(t.WaitForGraph().size(), n - 1);
  }
}

TEST_F(LockTableTest, ConversionDeadlockIsDetected) {
  Acq(1, "x", Mode::kPR);
  Acq(2, "x", Mode::kPR);
  ASSERT_EQ(Acq(1, "x", Mode::kEX).kind, Kind::kQueued);
  EXPECT_EQ(Acq(2, "x", Mode::kEX).kind, Kind::kDeadlock);
}

TEST_F(LockTableTest, ReleaseWithAPendingConversionKeepsThePlaceInLine) {
  Acq(1, "x", Mode::kPR);
  Acq(2, "x", Mode::kPR);
  ASSERT_EQ(Acq(1, "x", Mode::kEX).kind, Kind::kQueued);
  ASSERT_TRUE(Rel(1, "x").ok());  // gives up PR, still wants EX
  EXPECT_TRUE(t_.IsWaiting(OwnerId{1, ""}, "x"));
  ASSERT_TRUE(Rel(2, "x").ok());
  auto g = Grants();
  ASSERT_EQ(g.size(), 1u);
  EXPECT_EQ(g[0].grant.mode, Mode::kEX);
}

TEST_F(LockTableTest, TransferMovesTheGrantWithANewToken) {
  auto r = Acq(1, "x", Mode::kEX);
  ASSERT_TRUE(t_.Transfer(OwnerId{1, ""}, OwnerId{2, "job"}, "x", 200, &rev_).ok());
  const HeldGrant* g = t_.FindGrant(OwnerId{2, "job"}, "x");
  ASSERT_NE(g, nullptr);
  EXPECT_GT(g->fencing_token, r.grant.fencing_token);
  EXPECT_FALSE(Holds(1, "x"));
  EXPECT_EQ(t_.Transfer(OwnerId{1, ""}, OwnerId{3, ""}, "x", 200, &rev_).code(), Code::kNotHeld);
}

TEST_F(LockTableTest, DropSessionGrantsTheNextInLine) {
  Acq(1, "a.b", Mode::kEX);
  Acq(2, "a", Mode::kPR);
  t_.DropSession(1, &rev_);
  auto g = Grants();
  ASSERT_EQ(g.size(), 1u);
  EXPECT_EQ(g[0].who.session, 2u);
  EXPECT_EQ(t_.grant_count(), 1u);
  EXPECT_EQ(t_.resources().count("a.b"), 0u);  // idle entries are dropped
}

TEST_F(LockTableTest, AcquireManyIsAllOrNothing) {
  Acq(1, "b", Mode::kEX);
  std::vector<LockPart> parts = {{"a", Mode::kEX}, {"b", Mode::kEX}, {"c", Mode::kPR}};
  auto r = t_.AcquireMany(OwnerId{2, ""}, parts, false, 0, 100, &rev_);
  ASSERT_EQ(r.kind, Kind::kQueued);
  EXPECT_FALSE(Holds(2, "a"));  // nothing taken while one part is busy
  // The group holds nothing yet, but later conflicting requests queue behind
  // it rather than jump ahead.
  EXPECT_EQ(Acq(3, "a", Mode::kEX, true).kind, Kind::kBusy);
  ASSERT_TRUE(Rel(1, "b").ok());
  auto g = Grants();
  EXPECT_EQ(g.size(), 3u);
  EXPECT_TRUE(Holds(2, "a") && Holds(2, "b") && Holds(2, "c"));
  // Try form fails without side effects.
  auto busy =
      t_.AcquireMany(OwnerId{4, ""}, {{"x", Mode::kEX}, {"a", Mode::kEX}}, true, 0, 100, &rev_);
  EXPECT_EQ(busy.kind, Kind::kBusy);
  EXPECT_EQ(t_.Find("x"), nullptr);
}

TEST_F(LockTableTest, CancellingOnePartWithdrawsTheGroup) {
  Acq(1, "b", Mode::kEX);
  ASSERT_EQ(
      t_.AcquireMany(OwnerId{2, ""}, {{"a", Mode::kEX}, {"b", Mode::kEX}}, false, 0, 100, &rev_)
          .kind,
      Kind::kQueued);
  EXPECT_TRUE(t_.CancelWait(OwnerId{2, ""}, "b", &rev_));
  EXPECT_EQ(t_.waiter_count(), 0u);
}

TEST_F(LockTableTest, LockOrderingFailsFast) {
  ASSERT_TRUE(t_.DeclareRank("db", 10).ok());
  ASSERT_TRUE(t_.DeclareRank("cache", 20).ok());
  ASSERT_EQ(Acq(1, "db.users", Mode::kEX).kind, Kind::kGranted);
  EXPECT_EQ(Acq(1, "cache.x", Mode::kEX).kind, Kind::kGranted);  // 10 then 20: fine
  ASSERT_EQ(Acq(2, "cache.y", Mode::kEX).kind, Kind::kGranted);
  auto bad = Acq(2, "db.orders", Mode::kEX);  // holds 20, asks for 10
  EXPECT_EQ(bad.kind, Kind::kOrder);
  EXPECT_NE(bad.message.find("rank 20"), std::string::npos) << bad.message;
  EXPECT_EQ(Acq(2, "misc", Mode::kEX).kind, Kind::kGranted);  // unranked: no rule
}

TEST_F(LockTableTest, LockValueIsWrittenByWritersAndOutlivesTheGrant) {
  AcquireRequest r = Req(1, "leader", Mode::kEX, false);
  r.set_value = true;
  r.value = "node-1";
  ASSERT_EQ(t_.Acquire(r, 100, &rev_).kind, Kind::kGranted);
  EXPECT_EQ(t_.Find("leader")->value(), "node-1");
  ASSERT_TRUE(Rel(1, "leader").ok());
  ASSERT_NE(t_.Find("leader"), nullptr);
  EXPECT_EQ(t_.Find("leader")->value(), "node-1");
  Acq(2, "leader", Mode::kPR);
  EXPECT_EQ(t_.SetValue(OwnerId{2, ""}, "leader", "x", &rev_).code(), Code::kNotHeld);
}

}  // namespace
}  // namespace latchkey::core
