// Cached locks in the core: blocking callbacks (exactly one per grant and
// need), values written with release/downgrade, the value delivered with
// every grant, bounded size, and snapshot round trips of the new state.
#include <gtest/gtest.h>

#include "core/state_machine.h"
#include "core/test_util.h"

namespace latchkey::core {
namespace {

using testing::EntryBuilder;
namespace lv = log::v1;

class CallbackTest : public ::testing::Test {
 protected:
  ApplyResult Apply(const EntryBuilder& b) { return sm_.Apply(++index_, b.entry()); }
  ApplyResult Apply(const lv::LogEntry& e) { return sm_.Apply(++index_, e); }
  uint64_t Open() { return Apply(EntryBuilder(++now_).Open(10'000)).results[0].session_id; }

  // An acquire command with the cached-lock options.
  lv::LogEntry AcquireCmd(uint64_t sid, const std::string& name, Mode mode, bool cacheable = true) {
    lv::LogEntry e = MakeEntry(++now_);
    auto* c = e.add_commands()->mutable_acquire();
    c->set_session_id(sid);
    c->set_name(name);
    c->set_mode(ModeToLog(mode));
    c->set_cacheable(cacheable);
    return e;
  }
  lv::LogEntry ValueAcquireCmd(uint64_t sid, const std::string& name, const std::string& value,
                               uint64_t request_id) {
    lv::LogEntry e = AcquireCmd(sid, name, Mode::kEX, /*cacheable=*/false);
    auto* c = e.mutable_commands(0)->mutable_acquire();
    c->set_set_value(true);
    c->set_value(value);
    c->set_request_id(request_id);
    return e;
  }
  lv::LogEntry ReleaseCmd(uint64_t sid, const std::string& name, const std::string* value) {
    lv::LogEntry e = MakeEntry(++now_);
    auto* c = e.add_commands()->mutable_release();
    c->set_session_id(sid);
    c->set_name(name);
    if (value) {
      c->set_set_value(true);
      c->set_value(*value);
    }
    return e;
  }
  lv::LogEntry DowngradeCmd(uint64_t sid, const std::string& name, Mode mode,
                            const std::string* value) {
    lv::LogEntry e = MakeEntry(++now_);
    auto* c = e.add_commands()->mutable_downgrade();
    c->set_session_id(sid);
    c->set_name(name);
    c->set_mode(ModeToLog(mode));
    if (value) {
      c->set_set_value(true);
      c->set_value(*value);
    }
    return e;
  }
  static std::vector<Event> Callbacks(const ApplyResult& r) {
    std::vector<Event> out;
    for (const Event& e : r.events) {
      if (e.kind == Event::Kind::kCallback) out.push_back(e);
    }
    return out;
  }

  StateMachine sm_;
  uint64_t index_ = 0;
  uint64_t now_ = 1000;
};

TEST(DowngradeTargetTest, StrongestCompatibleCoveredMode) {
  EXPECT_EQ(DowngradeTarget(Mode::kEX, Mode::kPR), Mode::kPR);
  EXPECT_EQ(DowngradeTarget(Mode::kEX, Mode::kEX), Mode::kNL);
  EXPECT_EQ(DowngradeTarget(Mode::kEX, Mode::kCW), Mode::kCW);
  EXPECT_EQ(DowngradeTarget(Mode::kPR, Mode::kCW), Mode::kCR);
  EXPECT_EQ(DowngradeTarget(Mode::kPW, Mode::kCR), Mode::kPW);
}

TEST_F(CallbackTest, ConflictingRequestCallsTheCachedHolderBackExactlyOnce) {
  const uint64_t a = Open(), b = Open(), c = Open();
  ApplyResult g = Apply(AcquireCmd(a, "state.1.k", Mode::kEX));
  ASSERT_TRUE(g.results[0].granted);
  EXPECT_TRUE(Callbacks(g).empty());
  ApplyResult wb = Apply(AcquireCmd(b, "state.1.k", Mode::kEX));
  ASSERT_TRUE(wb.results[0].queued);
  auto cb = Callbacks(wb);
  ASSERT_EQ(cb.size(), 1u);
  EXPECT_EQ(cb[0].session_id, a);
  EXPECT_EQ(cb[0].grant.name, "state.1.k");
  EXPECT_EQ(cb[0].grant.fencing_token, g.results[0].grant.fencing_token);
  EXPECT_EQ(cb[0].wanted, Mode::kEX);
  EXPECT_EQ(cb[0].downgrade_to, Mode::kNL);
  // A second waiter with the same need: no second callback.
  EXPECT_TRUE(Callbacks(Apply(AcquireCmd(c, "state.1.k", Mode::kEX))).empty());
  // Release hands the lock to b (FIFO); c now waits behind b's cacheable
  // grant, so b (a new grant) gets its own callback in the same entry.
  ApplyResult rel = Apply(ReleaseCmd(a, "state.1.k", nullptr));
  auto cb2 = Callbacks(rel);
  ASSERT_EQ(cb2.size(), 1u);
  EXPECT_EQ(cb2[0].session_id, b);
}

TEST_F(CallbackTest, NonCacheableHoldersAreNeverCalledBack) {
  const uint64_t a = Open(), b = Open();
  ASSERT_TRUE(Apply(AcquireCmd(a, "x", Mode::kEX, false)).results[0].granted);
  EXPECT_TRUE(Callbacks(Apply(AcquireCmd(b, "x", Mode::kEX))).empty());
}

TEST_F(CallbackTest, WeakerNeedSendsAgainDowngradeAnswersIt) {
  const uint64_t a = Open(), b = Open(), c = Open();
  ASSERT_TRUE(Apply(AcquireCmd(a, "x", Mode::kEX)).results[0].granted);
  auto cb = Callbacks(Apply(AcquireCmd(b, "x", Mode::kPR)));
  ASSERT_EQ(cb.size(), 1u);
  EXPECT_EQ(cb[0].downgrade_to, Mode::kPR);
  // A writer behind the reader needs more: the need changed, one more.
  auto cb2 = Callbacks(Apply(AcquireCmd(c, "x", Mode::kEX)));
  ASSERT_EQ(cb2.size(), 1u);
  EXPECT_EQ(cb2[0].downgrade_to, Mode::kNL);
  // a downgrades to PR with its value: b (PR) is granted with that value.
  const std::string v = "state-v1";
  ApplyResult d = Apply(DowngradeCmd(a, "x", Mode::kPR, &v));
  ASSERT_TRUE(d.results[0].status.ok()) << d.results[0].status.ToString();
  bool granted_b = false;
  for (const Event& e : d.events) {
    if (e.kind == Event::Kind::kGranted && e.session_id == b) {
      granted_b = true;
      EXPECT_EQ(e.grant.value, v);
      EXPECT_GT(e.grant.value_token, 0u);
    }
  }
  EXPECT_TRUE(granted_b);
  // a was already asked for NL; b's new PR grant blocks c's EX: b is asked.
  auto cb3 = Callbacks(d);
  ASSERT_EQ(cb3.size(), 1u);
  EXPECT_EQ(cb3[0].session_id, b);
  EXPECT_EQ(cb3[0].downgrade_to, Mode::kNL);
}

// Modes are only partly ordered: asked down to PR, then a CW waiter needs
// CR (the meet of PR and CW), and a second PR waiter needs nothing new.
TEST_F(CallbackTest, IncomparableNeedsAskForTheirMeetOnce) {
  const uint64_t a = Open(), b = Open(), c = Open(), d = Open();
  ASSERT_TRUE(Apply(AcquireCmd(a, "x", Mode::kPW)).results[0].granted);
  auto c1 = Callbacks(Apply(AcquireCmd(b, "x", Mode::kPR)));
  ASSERT_EQ(c1.size(), 1u);
  EXPECT_EQ(c1[0].downgrade_to, Mode::kPR);
  auto c2 = Callbacks(Apply(AcquireCmd(c, "x", Mode::kCW)));
  ASSERT_EQ(c2.size(), 1u);
  EXPECT_EQ(c2[0].downgrade_to, Mode::kCR);
  EXPECT_TRUE(Callbacks(Apply(AcquireCmd(d, "x", Mode::kPR))).empty());
}

TEST_F(CallbackTest, ReleaseWithValueHandsTheStateToTheNextGrant) {
  const uint64_t a = Open(), b = Open();
  ASSERT_TRUE(Apply(AcquireCmd(a, "s", Mode::kEX)).results[0].granted);
  ASSERT_TRUE(Apply(AcquireCmd(b, "s", Mode::kEX)).results[0].queued);
  const std::string v = "counter=7";
  ApplyResult rel = Apply(ReleaseCmd(a, "s", &v));
  ASSERT_TRUE(rel.results[0].status.ok());
  const Event* grant = nullptr;
  for (const Event& e : rel.events) {
    if (e.kind == Event::Kind::kGranted) grant = &e;
  }
  ASSERT_NE(grant, nullptr);
  EXPECT_EQ(grant->grant.value, v);
  // The value token is from the fencing-token counter, older than the grant.
  EXPECT_LT(grant->grant.value_token, grant->grant.fencing_token);
  // An immediate grant carries the value too.
  ASSERT_TRUE(Apply(ReleaseCmd(b, "s", nullptr)).results[0].status.ok());
  ApplyResult again = Apply(AcquireCmd(a, "s", Mode::kEX));
  EXPECT_EQ(again.results[0].grant.value, v);
}

TEST_F(CallbackTest, ValueWritesAreBoundedAndNeedAWriteMode) {
  const uint64_t a = Open();
  ASSERT_TRUE(Apply(AcquireCmd(a, "s", Mode::kPR)).results[0].granted);
  const std::string small = "x";
  EXPECT_EQ(Apply(ReleaseCmd(a, "s", &small)).results[0].status.code(), Code::kNotHeld);
  // The failed release-with-value changed nothing: a still holds it.
  EXPECT_NE(sm_.locks().FindGrant(OwnerId{a, ""}, "s"), nullptr);
  ASSERT_TRUE(Apply(AcquireCmd(a, "s", Mode::kEX)).results[0].granted);
  const std::string big(kMaxLockValueBytes + 1, 'b');
  EXPECT_EQ(Apply(ReleaseCmd(a, "s", &big)).results[0].status.code(), Code::kValueTooLarge);
  EXPECT_EQ(Apply(DowngradeCmd(a, "s", Mode::kPR, &big)).results[0].status.code(),
            Code::kValueTooLarge);
  EXPECT_NE(sm_.locks().FindGrant(OwnerId{a, ""}, "s"), nullptr);
}

TEST_F(CallbackTest, SnapshotKeepsCacheableAndCallbackState) {
  const uint64_t a = Open(), b = Open(), c = Open();
  ASSERT_TRUE(Apply(AcquireCmd(a, "s", Mode::kEX)).results[0].granted);
  ASSERT_EQ(Callbacks(Apply(AcquireCmd(b, "s", Mode::kEX))).size(), 1u);
  StateMachine restored;
  ASSERT_TRUE(restored.Restore(sm_.Snapshot()).ok());
  EXPECT_EQ(restored.Digest(), sm_.Digest());
  const HeldGrant* g = restored.locks().FindGrant(OwnerId{a, ""}, "s");
  ASSERT_NE(g, nullptr);
  EXPECT_TRUE(g->cacheable);
  ASSERT_TRUE(g->callback_sent.has_value());
  // The restored replica does not call back again for the same need.
  lv::LogEntry e = AcquireCmd(c, "s", Mode::kEX);
  ApplyResult r = restored.Apply(++index_, e);
  EXPECT_TRUE(Callbacks(r).empty());
  EXPECT_TRUE(restored.locks().FindWait("s", OwnerId{b, ""})->cacheable);
}

TEST_F(CallbackTest, HolderAcquiringAgainWithAValueWritesItOnceAndRetriesDoNot) {
  const uint64_t a = Open();
  ApplyResult first = Apply(ValueAcquireCmd(a, "elect.1", "first", 1));
  ASSERT_TRUE(first.results[0].granted);
  const uint64_t token = first.results[0].grant.fencing_token;
  EXPECT_EQ(first.results[0].grant.value, "first");
  // The holder campaigns again (say after an unknown outcome) with a new value.
  ApplyResult second = Apply(ValueAcquireCmd(a, "elect.1", "second", 2));
  ASSERT_TRUE(second.results[0].granted);
  EXPECT_EQ(second.results[0].grant.fencing_token, token);  // same grant
  EXPECT_EQ(second.results[0].grant.value, "second");
  EXPECT_GT(second.results[0].grant.value_token, first.results[0].grant.value_token);
  EXPECT_EQ(sm_.locks().Find("elect.1")->value(), "second");
  // A late retry of request 1 reports the grant and leaves the newer value.
  ApplyResult retry = Apply(ValueAcquireCmd(a, "elect.1", "first", 1));
  ASSERT_TRUE(retry.results[0].granted);
  EXPECT_EQ(retry.results[0].grant.value, "second");
  EXPECT_EQ(retry.results[0].grant.value_token, second.results[0].grant.value_token);
  // A retry of request 2 writes nothing either: the value token stays.
  ApplyResult retry2 = Apply(ValueAcquireCmd(a, "elect.1", "second", 2));
  EXPECT_EQ(retry2.results[0].grant.value_token, second.results[0].grant.value_token);
  // The grant was not counted twice: one release frees it.
  ASSERT_TRUE(Apply(ReleaseCmd(a, "elect.1", nullptr)).results[0].status.ok());
  EXPECT_TRUE(sm_.locks().Find("elect.1") == nullptr ||
              sm_.locks().Find("elect.1")->holders.empty());
}

// ---- Across the name hierarchy (issue 4) ---------------------------------

// A cached EX on `a` blocks a request on `a.b` (its implied CW conflicts
// with EX): the holder of `a` is called back, down to CW (the intention
// the waiter needs there), and only once.
TEST_F(CallbackTest, CachedAncestorIsCalledBackForADescendantRequest) {
  const uint64_t a = Open(), b = Open(), c = Open();
  ApplyResult g = Apply(AcquireCmd(a, "a", Mode::kEX));
  ASSERT_TRUE(g.results[0].granted);
  ApplyResult wb = Apply(AcquireCmd(b, "a.b", Mode::kEX));
  ASSERT_TRUE(wb.results[0].queued);
  auto cb = Callbacks(wb);
  ASSERT_EQ(cb.size(), 1u);
  EXPECT_EQ(cb[0].session_id, a);
  EXPECT_EQ(cb[0].grant.name, "a");
  EXPECT_EQ(cb[0].grant.fencing_token, g.results[0].grant.fencing_token);
  EXPECT_EQ(cb[0].wanted, Mode::kCW);
  EXPECT_EQ(cb[0].downgrade_to, Mode::kCW);
  // Another writer below needs the same: nothing new.
  EXPECT_TRUE(Callbacks(Apply(AcquireCmd(c, "a.c", Mode::kPW))).empty());
  // a follows the callback: b and c are granted, nobody is called back.
  ApplyResult d = Apply(DowngradeCmd(a, "a", Mode::kCW, nullptr));
  ASSERT_TRUE(d.results[0].status.ok());
  int granted = 0;
  for (const Event& e : d.events) granted += e.kind == Event::Kind::kGranted;
  EXPECT_EQ(granted, 2);
  EXPECT_TRUE(Callbacks(d).empty());
}

// A reader below a cached EX on the ancestor needs only CR there, so the
// holder may keep PW (SIX): it still reads everything below.
TEST_F(CallbackTest, AncestorDowngradeTargetFollowsTheWaitersIntention) {
  const uint64_t a = Open(), b = Open();
  ASSERT_TRUE(Apply(AcquireCmd(a, "a", Mode::kEX)).results[0].granted);
  auto cb = Callbacks(Apply(AcquireCmd(b, "a.b.c", Mode::kPR)));
  ASSERT_EQ(cb.size(), 1u);
  EXPECT_EQ(cb[0].wanted, Mode::kCR);
  EXPECT_EQ(cb[0].downgrade_to, Mode::kPW);  // strongest covered by EX compatible with CR
}

// Cached grants on descendants block a request on the parent: each is called
// back, to what the parent's mode leaves them (PR for a PR request, NL for EX).
TEST_F(CallbackTest, CachedDescendantsAreCalledBackForAnAncestorRequest) {
  const uint64_t a = Open(), b = Open(), c = Open(), d = Open();
  ASSERT_TRUE(Apply(AcquireCmd(a, "a.x", Mode::kEX)).results[0].granted);
  ASSERT_TRUE(Apply(AcquireCmd(b, "a.y.z", Mode::kPW)).results[0].granted);
  ASSERT_TRUE(Apply(AcquireCmd(c, "a.r", Mode::kPR)).results[0].granted);
  ApplyResult w = Apply(AcquireCmd(d, "a", Mode::kPR));
  ASSERT_TRUE(w.results[0].queued);
  auto cb = Callbacks(w);
  ASSERT_EQ(cb.size(), 2u);  // the reader on a.r does not block a PR on a
  for (const Event& e : cb) {
    EXPECT_TRUE(e.session_id == a || e.session_id == b);
    EXPECT_EQ(e.downgrade_to, Mode::kPR);
    EXPECT_EQ(e.wanted, Mode::kPR);
  }
  // A writer on `a` needs every descendant gone, the reader on a.r too.
  const uint64_t e2 = Open();
  auto cb2 = Callbacks(Apply(AcquireCmd(e2, "a", Mode::kEX)));
  ASSERT_EQ(cb2.size(), 3u);
  for (const Event& e : cb2) EXPECT_EQ(e.downgrade_to, Mode::kNL);
}

// A grant on `a` made by releasing `a.b` blocks a waiter on the sibling
// `a.c`: the new holder is called back in the same entry.
TEST_F(CallbackTest, GrantMadeElsewhereInTheTreeIsCalledBack) {
  const uint64_t x = Open(), y = Open(), z = Open();
  ASSERT_TRUE(Apply(AcquireCmd(x, "a.b", Mode::kEX, false)).results[0].granted);
  ASSERT_TRUE(Apply(AcquireCmd(y, "a", Mode::kEX)).results[0].queued);
  ASSERT_TRUE(Apply(AcquireCmd(z, "a.c", Mode::kEX)).results[0].queued);  // behind y (FIFO)
  ApplyResult rel = Apply(ReleaseCmd(x, "a.b", nullptr));
  bool y_granted = false;
  for (const Event& e : rel.events) {
    y_granted |= e.kind == Event::Kind::kGranted && e.session_id == y;
  }
  ASSERT_TRUE(y_granted);
  auto cb = Callbacks(rel);
  ASSERT_EQ(cb.size(), 1u);
  EXPECT_EQ(cb[0].session_id, y);
  EXPECT_EQ(cb[0].grant.name, "a");
  EXPECT_EQ(cb[0].downgrade_to, Mode::kCW);
}

// An AcquireMany waiting behind a cached grant calls it back too.
TEST_F(CallbackTest, AcquireManyWaitingBehindACachedGrantCallsItBack) {
  const uint64_t a = Open(), b = Open();
  ASSERT_TRUE(Apply(AcquireCmd(a, "m", Mode::kEX)).results[0].granted);
  lv::LogEntry e = MakeEntry(++now_);
  auto* c = e.add_commands()->mutable_acquire_many();
  c->set_session_id(b);
  for (const char* n : {"m.1", "q"}) {
    auto* p = c->add_parts();
    p->set_name(n);
    p->set_mode(ModeToLog(Mode::kEX));
  }
  ApplyResult r = Apply(e);
  ASSERT_TRUE(r.results[0].queued);
  auto cb = Callbacks(r);
  ASSERT_EQ(cb.size(), 1u);
  EXPECT_EQ(cb[0].grant.name, "m");
  EXPECT_EQ(cb[0].downgrade_to, Mode::kCW);
}

}  // namespace
}  // namespace latchkey::core
