#include "checkers/watch_checker.h"

#include <gtest/gtest.h>

#include "checkers/linearizability.h"
#include "checkers/test_history.h"

namespace latchkey::checkers {
namespace {

using testing::H;

constexpr const char* kP = "obj/";

// An acknowledged put of key=value at revision rev, from..to ms.
H& Put(H& h, int64_t p, const std::string& key, int64_t from, int64_t to, const std::string& v,
       uint64_t rev) {
  return h.Invoke(p, "put", key, from, v).Ok(p, "put", key, to).Rev(rev);
}

Event Ev(const std::string& key, const std::string& value, uint64_t rev, int64_t ms = 0) {
  Event e;
  e.type = EventType::kInfo;
  e.op = "event";
  e.key = key;
  e.value = value;
  e.revision = rev;
  e.time = ms * 1'000'000;
  return e;
}

WatchStream Stream(int64_t id, uint64_t from, std::vector<Event> events) {
  return WatchStream{id, from, std::move(events)};
}

WatchCheckOptions Opts(std::map<std::string, FinalObject> final_state = {}) {
  WatchCheckOptions o;
  o.prefix = kP;
  o.final_state = std::move(final_state);
  return o;
}

// Two acknowledged puts and a cas; one put of unknown outcome that nobody
// saw (it may or may not have been applied: here it was not).
H Valid() {
  H h;
  Put(h, 1, "obj/a", 0, 10, "a1", 5);
  Put(h, 2, "obj/b", 2, 12, "b1", 7);
  h.Invoke(1, "txn-cas", "obj/a", 20, "a2", "a1").Ok(1, "txn-cas", "obj/a", 30).Rev(9);
  h.Invoke(2, "put", "obj/b", 40, "b-lost").Info(2, "put", "obj/b", 50, "UNAVAILABLE");
  h.Invoke(3, "put", "other/x", 0, "x").Ok(3, "put", "other/x", 1).Rev(6);  // not in the prefix
  return h;
}

TEST(WatchCheckerTest, CompleteOrderedStreamsPass) {
  const H h = Valid();
  Event note = Ev("", "", 0);
  note.op = "watch-open";  // notes (reconnects, resumes) are ignored
  std::vector<WatchStream> s = {
      Stream(1, 1, {Ev("obj/a", "a1", 5), note, Ev("obj/b", "b1", 7), Ev("obj/a", "a2", 9)}),
      Stream(2, 8, {Ev("obj/a", "a2", 9)}),  // started later: only what follows its start
  };
  CheckResult r = CheckWatches(h.ops(), s, Opts({{"obj/a", {"a2", 9}}, {"obj/b", {"b1", 7}}}));
  EXPECT_TRUE(r.ok()) << r.Summary();
}

TEST(WatchCheckerTest, AnUnknownWriteThatOneWatcherSawMustBeInEveryStreamCoveringIt) {
  H h = Valid();
  std::vector<WatchStream> s = {
      Stream(1, 1,
             {Ev("obj/a", "a1", 5), Ev("obj/b", "b1", 7), Ev("obj/a", "a2", 9),
              Ev("obj/b", "b-lost", 11)}),
      Stream(2, 1,
             {Ev("obj/a", "a1", 5), Ev("obj/b", "b1", 7), Ev("obj/a", "a2", 9),
              Ev("obj/b", "b-lost", 11)}),
  };
  EXPECT_TRUE(CheckWatches(h.ops(), s, Opts()).ok());
  s[1].events.erase(s[1].events.begin() + 3);  // watcher 2 lacks it but got no further: fine
  EXPECT_TRUE(CheckWatches(h.ops(), s, Opts()).ok());
  Put(h, 3, "obj/a", 60, 70, "a3", 12);
  s[1].events.push_back(Ev("obj/a", "a3", 12));  // now it went past revision 11
  CheckResult r = CheckWatches(h.ops(), s, Opts());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.Summary().find("watcher 2 missed revision 11: obj/b=\"b-lost\" (watcher 1"),
            std::string::npos)
      << r.Summary();
}

TEST(WatchCheckerTest, AMissingAcknowledgedWriteIsAGap) {
  const H h = Valid();
  std::vector<WatchStream> s = {Stream(1, 1, {Ev("obj/a", "a1", 5), Ev("obj/a", "a2", 9)})};
  CheckResult r = CheckWatches(h.ops(), s, Opts());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(
      r.Summary().find("watcher 1 missed revision 7: obj/b=\"b1\" (acknowledged to process 2"),
      std::string::npos)
      << r.Summary();
}

TEST(WatchCheckerTest, DuplicatesAndDisorderAreCaught) {
  const H h = Valid();
  CheckResult dup = CheckWatches(h.ops(),
                                 {Stream(1, 1,
                                         {Ev("obj/a", "a1", 5), Ev("obj/b", "b1", 7),
                                          Ev("obj/b", "b1", 7), Ev("obj/a", "a2", 9)})},
                                 Opts());
  ASSERT_FALSE(dup.ok());
  EXPECT_NE(dup.Summary().find("revision 7 of obj/b twice"), std::string::npos) << dup.Summary();
  CheckResult order = CheckWatches(
      h.ops(), {Stream(1, 1, {Ev("obj/b", "b1", 7), Ev("obj/a", "a1", 5), Ev("obj/a", "a2", 9)})},
      Opts());
  ASSERT_FALSE(order.ok());
  EXPECT_NE(order.Summary().find("out of order"), std::string::npos) << order.Summary();
  CheckResult below = CheckWatches(h.ops(), {Stream(1, 6, {Ev("obj/a", "a1", 5)})}, Opts());
  ASSERT_FALSE(below.ok());
  EXPECT_NE(below.Summary().find("below its start revision 6"), std::string::npos);
}

TEST(WatchCheckerTest, PhantomValuesAndWrongRevisionsAreCaught) {
  H h = Valid();
  h.Invoke(3, "put", "obj/a", 80, "a-failed").Fail(3, "put", "obj/a", 90, "INVALID_ARGUMENT");
  for (const Event& bad : {Ev("obj/a", "never", 8), Ev("obj/a", "a-failed", 8)}) {
    CheckResult r = CheckWatches(h.ops(), {Stream(1, 1, {Ev("obj/a", "a1", 5), bad})}, Opts());
    ASSERT_FALSE(r.ok()) << bad.value;
    EXPECT_NE(r.Summary().find("which no write that did not fail wrote"), std::string::npos)
        << r.Summary();
  }
  // a1 was acknowledged at revision 5; a watcher reports it at 6.
  CheckResult r = CheckWatches(h.ops(), {Stream(1, 1, {Ev("obj/a", "a1", 6)})}, Opts());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.Summary().find("seen at two revisions: 5"), std::string::npos) << r.Summary();
  // Two values at one revision (the final read disagrees with an ack).
  CheckResult two = CheckWatches(h.ops(), {}, Opts({{"obj/b", {"b-lost", 7}}}));
  ASSERT_FALSE(two.ok());
  EXPECT_NE(two.Summary().find("holds two values"), std::string::npos) << two.Summary();
}

TEST(WatchCheckerTest, AWatcherThatNeverReachesTheFinalRevisionFails) {
  const H h = Valid();
  std::vector<WatchStream> s = {Stream(1, 1, {Ev("obj/a", "a1", 5), Ev("obj/b", "b1", 7)})};
  CheckResult r = CheckWatches(h.ops(), s, Opts({{"obj/a", {"a2", 9}}, {"obj/b", {"b1", 7}}}));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.Summary().find("stopped at revision 7, before the final revision of its prefix 9"),
            std::string::npos)
      << r.Summary();
}

TEST(WatchCheckerTest, ReadsWithRevisionsAreEvidenceToo) {
  H h = Valid();
  // A read returned the unknown write's value at revision 11: it was committed.
  h.Invoke(3, "get", "obj/b", 100).Ok(3, "get", "obj/b", 110, "b-lost").Rev(11);
  Put(h, 3, "obj/a", 120, 130, "a3", 12);
  std::vector<WatchStream> s = {Stream(
      1, 1,
      {Ev("obj/a", "a1", 5), Ev("obj/b", "b1", 7), Ev("obj/a", "a2", 9), Ev("obj/a", "a3", 12)})};
  CheckResult r = CheckWatches(h.ops(), s, Opts());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.Summary().find("missed revision 11: obj/b=\"b-lost\" (read by process 3"),
            std::string::npos)
      << r.Summary();
}

// The object store's register operations (get / put / txn-cas) through the
// WGL checker, per key.
LinearizabilityOptions ObjectOps() {
  LinearizabilityOptions o;
  o.read_op = "get";
  o.write_op = "put";
  o.cas_op = "txn-cas";
  return o;
}

TEST(WatchCheckerTest, ObjectRegisterHistoriesGoThroughTheLinearizabilityChecker) {
  H good;
  Put(good, 1, "obj/a", 0, 10, "a1", 5);
  good.Invoke(2, "get", "obj/a", 20).Ok(2, "get", "obj/a", 30, "a1").Rev(5);
  good.Invoke(2, "txn-cas", "obj/a", 40, "a2", "a1").Ok(2, "txn-cas", "obj/a", 50).Rev(8);
  good.Invoke(1, "txn-cas", "obj/a", 60, "a3", "a1").Fail(1, "txn-cas", "obj/a", 70, "mismatch");
  good.Invoke(1, "get", "obj/a", 80).Ok(1, "get", "obj/a", 90, "a2").Rev(8);
  EXPECT_TRUE(CheckRegisterLinearizable(good.ops(), "obj/a", ObjectOps()).ok());

  H stale;  // a read after an acknowledged put returns the value before it
  Put(stale, 1, "obj/a", 0, 10, "a1", 5);
  Put(stale, 1, "obj/a", 20, 30, "a2", 7);
  stale.Invoke(2, "get", "obj/a", 40).Ok(2, "get", "obj/a", 50, "a1").Rev(5);
  CheckResult r = CheckRegisterLinearizable(stale.ops(), "obj/a", ObjectOps());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.Summary().find("process 2 read \"a1\""), std::string::npos) << r.Summary();
  // Other keys' operations and lock ops named read/write are not mixed in.
  EXPECT_TRUE(CheckRegisterLinearizable(stale.ops(), "obj/b", ObjectOps()).ok());
}

}  // namespace
}  // namespace latchkey::checkers
