// Watch history (ObjectStore::Changes), pub/sub and script registration
// through the state machine (design 0012).
#include <gtest/gtest.h>

#include "core/state_machine.h"
#include "core/test_util.h"

namespace latchkey::core {
namespace {

namespace lv = log::v1;

class WatchCoreTest : public ::testing::Test {
 protected:
  ApplyResult ApplyCmd(const lv::Command& cmd) {
    lv::LogEntry e = MakeEntry(1000);
    *e.add_commands() = cmd;
    return sm_.Apply(++index_, e);
  }
  uint64_t Put(const std::string& k, const std::string& v) {
    lv::Command c;
    c.mutable_obj_put()->set_key(k);
    c.mutable_obj_put()->set_value(v);
    return ApplyCmd(c).results.at(0).revision;
  }
  uint64_t Delete(const std::string& k) {
    lv::Command c;
    c.mutable_obj_delete()->set_key(k);
    return ApplyCmd(c).results.at(0).revision;
  }
  StateMachine sm_;
  uint64_t index_ = 0;
};

TEST_F(WatchCoreTest, ChangesReplayHistoryInRevisionOrder) {
  const uint64_t r1 = Put("cfg/a", "1");
  const uint64_t r2 = Put("cfg/b", "2");
  Put("other", "x");
  const uint64_t r4 = Delete("cfg/a");
  const uint64_t r5 = Put("cfg/a", "3");
  auto all = sm_.objects().Changes("cfg/", true, r1);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  ASSERT_EQ(all->size(), 4u);
  EXPECT_EQ((*all)[0].mod_revision, r1);
  EXPECT_EQ((*all)[1].mod_revision, r2);
  EXPECT_EQ((*all)[2].mod_revision, r4);
  EXPECT_EQ((*all)[2].state, ObjState::kAbsent);
  EXPECT_EQ((*all)[3].mod_revision, r5);
  EXPECT_EQ((*all)[3].value, "3");
  auto one = sm_.objects().Changes("cfg/a", false, r2);
  ASSERT_TRUE(one.ok());
  ASSERT_EQ(one->size(), 2u);
  EXPECT_EQ((*one)[0].mod_revision, r4);
  auto exact = sm_.objects().VersionAt("cfg/b", r2);
  ASSERT_TRUE(exact.ok());
  EXPECT_EQ(exact->value, "2");
  EXPECT_EQ(sm_.objects().VersionAt("cfg/b", r1).status().code(), Code::kNotFound);
}

TEST_F(WatchCoreTest, WatchAtOrBelowCompactionIsCompacted) {
  Put("k", "1");
  const uint64_t r2 = Delete("k");
  Put("k", "2");
  lv::Command c;
  c.mutable_obj_compact()->set_revision(r2);
  ASSERT_TRUE(ApplyCmd(c).results[0].status.ok());
  EXPECT_EQ(sm_.objects().Changes("k", false, r2).status().code(), Code::kCompacted);
  auto after = sm_.objects().Changes("k", false, r2 + 1);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->size(), 1u);
}

TEST_F(WatchCoreTest, PublishIsOrderedAndValidated) {
  lv::LogEntry e = MakeEntry(1000);
  for (const char* m : {"a", "b"}) {
    auto* p = e.add_commands()->mutable_publish();
    p->set_namespace_name("ns");
    p->set_message(m);
  }
  e.add_commands()->mutable_publish()->set_namespace_name("");
  ApplyResult r = sm_.Apply(++index_, e);
  ASSERT_EQ(r.published.size(), 2u);
  EXPECT_EQ(r.published[0].message, "a");
  EXPECT_LT(r.published[0].revision, r.published[1].revision);
  EXPECT_EQ(r.results[2].status.code(), Code::kInvalidArgument);
}

TEST_F(WatchCoreTest, ScriptsRegisterRunAndSurviveSnapshots) {
  lv::Command c;
  c.mutable_script_put()->set_name("incr");
  c.mutable_script_put()->set_source(
      "return function(obj, args) local n = (tonumber(obj.value) or 0) + tonumber(args[1])\n"
      "return tostring(n), n end");
  ASSERT_TRUE(ApplyCmd(c).results[0].status.ok());
  c.mutable_script_put()->set_name("counter.add");
  EXPECT_EQ(ApplyCmd(c).results[0].status.code(), Code::kInvalidArgument);  // built-in
  c.mutable_script_put()->set_name("broken");
  c.mutable_script_put()->set_source("return function(");
  EXPECT_EQ(ApplyCmd(c).results[0].status.code(), Code::kInvalidArgument);

  lv::Command m;
  m.mutable_obj_method()->set_key("n");
  m.mutable_obj_method()->set_method("incr");
  m.mutable_obj_method()->add_args("5");
  CommandResult r = ApplyCmd(m).results[0];
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.method_result, "5");
  EXPECT_EQ(r.objects.at(0).value, "5");

  StateMachine copy;
  ASSERT_TRUE(copy.Restore(sm_.Snapshot()).ok());
  EXPECT_EQ(copy.Digest(), sm_.Digest());
  ASSERT_EQ(copy.objects().scripts().size(), 1u);
  EXPECT_EQ(copy.Snapshot(), sm_.Snapshot());
}

}  // namespace
}  // namespace latchkey::core
