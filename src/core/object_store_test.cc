// Object store through the state machine: every operation and its failures.
#include <gtest/gtest.h>

#include "core/object_methods.h"
#include "core/state_machine.h"
#include "core/test_util.h"

namespace latchkey::core {
namespace {

namespace lv = log::v1;
using testing::EntryBuilder;

class ObjectStoreTest : public ::testing::Test {
 protected:
  ApplyResult ApplyCmd(const lv::Command& cmd) {
    lv::LogEntry e = MakeEntry(now_);
    *e.add_commands() = cmd;
    last_ = sm_.Apply(++index_, e);
    return last_;
  }
  CommandResult One(const lv::Command& cmd) { return ApplyCmd(cmd).results.at(0); }
  uint64_t Open() {
    auto r = sm_.Apply(++index_, EntryBuilder(now_).Open(10'000, "c").entry());
    return r.results[0].session_id;
  }
  CommandResult Put(const std::string& k, const std::string& v) {
    lv::Command c;
    c.mutable_obj_put()->set_key(k);
    c.mutable_obj_put()->set_value(v);
    return One(c);
  }
  CommandResult Reserve(uint64_t sid, const std::string& k) {
    lv::Command c;
    c.mutable_obj_reserve()->set_session_id(sid);
    c.mutable_obj_reserve()->set_key(k);
    return One(c);
  }
  CommandResult Delete(const std::string& k) {
    lv::Command c;
    c.mutable_obj_delete()->set_key(k);
    return One(c);
  }
  CommandResult SetTtl(const std::string& k, uint64_t ttl, bool sliding) {
    lv::Command c;
    c.mutable_obj_set_ttl()->set_key(k);
    c.mutable_obj_set_ttl()->set_ttl_ms(ttl);
    c.mutable_obj_set_ttl()->set_sliding(sliding);
    return One(c);
  }
  CommandResult Expire(const std::string& k, uint64_t ttl_rev) {
    lv::Command c;
    c.mutable_obj_expire()->set_key(k);
    c.mutable_obj_expire()->set_ttl_revision(ttl_rev);
    return One(c);
  }
  CommandResult Compact(uint64_t rev) {
    lv::Command c;
    c.mutable_obj_compact()->set_revision(rev);
    return One(c);
  }
  CommandResult Exec(const std::string& k, const std::string& m, std::vector<std::string> args) {
    lv::Command c;
    c.mutable_obj_method()->set_key(k);
    c.mutable_obj_method()->set_method(m);
    for (auto& a : args) c.mutable_obj_method()->add_args(a);
    return One(c);
  }
  ObjView Get(const std::string& k, uint64_t rev = 0) {
    auto v = sm_.objects().Get(k, rev, sm_.revision());
    EXPECT_TRUE(v.ok()) << v.status().ToString();
    return v.ok() ? *v : ObjView{};
  }
  // Snapshot -> restore -> same digest (every field round-trips).
  void ExpectRoundTrip() {
    StateMachine copy;
    ASSERT_TRUE(copy.Restore(sm_.Snapshot()).ok());
    EXPECT_EQ(copy.Digest(), sm_.Digest());
  }

  StateMachine sm_;
  ApplyResult last_;
  uint64_t index_ = 0;
  uint64_t now_ = 1'000;
};

TEST_F(ObjectStoreTest, PutGetUpdateRemoveWithRevisions) {
  EXPECT_EQ(Get("a").state, ObjState::kAbsent);
  CommandResult p1 = Put("a", "one");
  ASSERT_TRUE(p1.status.ok());
  ObjView v = Get("a");
  EXPECT_EQ(v.state, ObjState::kAvailable);
  EXPECT_EQ(v.value, "one");
  EXPECT_EQ(v.create_revision, p1.revision);
  EXPECT_EQ(v.mod_revision, p1.revision);
  EXPECT_EQ(v.version, 1u);
  CommandResult p2 = Put("a", "two");
  EXPECT_GT(p2.revision, p1.revision);
  v = Get("a");
  EXPECT_EQ(v.version, 2u);
  EXPECT_EQ(v.create_revision, p1.revision);
  EXPECT_EQ(Get("a", p1.revision).value, "one");  // read at a past revision
  CommandResult d = Delete("a");
  EXPECT_TRUE(d.succeeded);
  EXPECT_EQ(Get("a").state, ObjState::kAbsent);
  EXPECT_FALSE(Delete("a").succeeded);  // already gone: no write
  EXPECT_EQ(Get("a", p2.revision).value, "two");
  ASSERT_EQ(last_.object_changes.size(), 0u);
  CommandResult p3 = Put("a", "three");
  v = Get("a");
  EXPECT_EQ(v.version, 1u);  // a new life
  EXPECT_EQ(v.create_revision, p3.revision);
  EXPECT_EQ(last_.object_changes.size(), 1u);
  ExpectRoundTrip();
}

TEST_F(ObjectStoreTest, LimitsAreClearErrors) {
  EXPECT_EQ(Put("", "x").status.code(), Code::kInvalidArgument);
  EXPECT_EQ(Put(std::string(kMaxObjectKeyBytes + 1, 'k'), "x").status.code(),
            Code::kInvalidArgument);
  EXPECT_EQ(Put("a\nb", "x").status.code(), Code::kInvalidArgument);
  CommandResult big = Put("k", std::string(kMaxObjectValueBytes + 1, 'v'));
  EXPECT_EQ(big.status.code(), Code::kInvalidArgument);
  EXPECT_NE(big.status.message().find("limit"), std::string::npos);
  EXPECT_TRUE(Put(std::string(kMaxObjectKeyBytes, 'k'), std::string(kMaxObjectValueBytes, 'v'))
                  .status.ok());
  EXPECT_EQ(sm_.objects().Get("x", sm_.revision() + 1, sm_.revision()).status().code(),
            Code::kInvalidArgument);  // the future
}

TEST_F(ObjectStoreTest, ReserveIsOwnedBySessionAndEndsWithIt) {
  uint64_t a = Open(), b = Open();
  CommandResult r = Reserve(a, "job");
  ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(Get("job").state, ObjState::kReserved);
  EXPECT_EQ(Get("job").reserved_by, a);
  EXPECT_TRUE(Reserve(a, "job").status.ok());  // retry: idempotent
  EXPECT_EQ(Reserve(b, "job").status.code(), Code::kAlreadyExists);
  EXPECT_EQ(Reserve(999, "x").status.code(), Code::kSessionExpired);
  ExpectRoundTrip();
  // The reserver's session ends: the key is absent again, and the change says why.
  auto end = sm_.Apply(++index_, EntryBuilder(now_).Expire(a).entry());
  ASSERT_EQ(end.object_changes.size(), 1u);
  EXPECT_EQ(end.object_changes[0].cause, ObjChange::Cause::kSessionEnded);
  EXPECT_EQ(end.object_changes[0].key, "job");
  EXPECT_EQ(Get("job").state, ObjState::kAbsent);
  EXPECT_TRUE(Reserve(b, "job").status.ok());
  ASSERT_TRUE(Put("job", "result").status.ok());  // anyone may publish
  EXPECT_EQ(Get("job").state, ObjState::kAvailable);
  EXPECT_EQ(Reserve(b, "job").status.code(), Code::kAlreadyExists);  // has a value
  // The session's end no longer touches the published key.
  auto end2 = sm_.Apply(++index_, EntryBuilder(now_).Close(b).entry());
  EXPECT_TRUE(end2.object_changes.empty());
  EXPECT_EQ(Get("job").value, "result");
  ExpectRoundTrip();
}

TEST_F(ObjectStoreTest, AbsoluteTtlExpiresOnlyWhenDue) {
  ASSERT_TRUE(Put("t", "v").status.ok());
  EXPECT_EQ(SetTtl("nope", 10, false).status.code(), Code::kNotFound);
  EXPECT_EQ(SetTtl("t", kMaxObjectTtlMs + 1, false).status.code(), Code::kInvalidArgument);
  CommandResult s = SetTtl("t", 500, false);
  ASSERT_TRUE(s.status.ok());
  ObjView v = Get("t");
  EXPECT_EQ(v.ttl.ttl_ms, 500u);
  EXPECT_EQ(v.ttl.deadline_ms, now_ + 500);
  EXPECT_TRUE(sm_.objects().ExpiredAbsolute(now_ + 499).empty());
  auto due = sm_.objects().ExpiredAbsolute(now_ + 500);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].second, v.ttl.revision);
  ExpectRoundTrip();
  EXPECT_EQ(Expire("t", v.ttl.revision).status.code(), Code::kFailedPrecondition);  // early
  now_ += 500;
  EXPECT_EQ(Expire("t", v.ttl.revision + 1).status.code(), Code::kFailedPrecondition);  // stale
  ASSERT_TRUE(Expire("t", v.ttl.revision).status.ok());
  EXPECT_EQ(last_.object_changes.at(0).cause, ObjChange::Cause::kExpire);
  EXPECT_EQ(Get("t").state, ObjState::kAbsent);
  EXPECT_TRUE(sm_.objects().ExpiredAbsolute(now_ + 10'000).empty());
}

TEST_F(ObjectStoreTest, SlidingTtlIsTrackedAndClearedByRemove) {
  ASSERT_TRUE(Put("s", "v").status.ok());
  ASSERT_TRUE(SetTtl("s", 200, true).status.ok());
  auto sl = sm_.objects().SlidingTtls();
  ASSERT_EQ(sl.size(), 1u);
  EXPECT_EQ(sl.at("s").first, 200u);
  EXPECT_TRUE(sm_.objects().ExpiredAbsolute(now_ + 1'000'000).empty());
  ExpectRoundTrip();
  // Updates keep the TTL; a new TTL replaces the old one (old expiries are stale).
  ASSERT_TRUE(Put("s", "v2").status.ok());
  EXPECT_EQ(Get("s").ttl.ttl_ms, 200u);
  const uint64_t old_rev = sl.at("s").second;
  ASSERT_TRUE(SetTtl("s", 300, true).status.ok());
  EXPECT_EQ(Expire("s", old_rev).status.code(), Code::kFailedPrecondition);
  ASSERT_TRUE(Delete("s").succeeded);
  EXPECT_TRUE(sm_.objects().SlidingTtls().empty());
  ASSERT_TRUE(Put("s", "again").status.ok());
  EXPECT_EQ(Get("s").ttl.ttl_ms, 0u);
  // ttl 0 clears.
  ASSERT_TRUE(SetTtl("s", 100, false).status.ok());
  ASSERT_TRUE(SetTtl("s", 0, false).status.ok());
  EXPECT_TRUE(sm_.objects().ExpiredAbsolute(now_ + 1'000'000).empty());
  ExpectRoundTrip();
}

TEST_F(ObjectStoreTest, HistoryFindAndCompaction) {
  const uint64_t r1 = Put("app/a", "a1").revision;
  const uint64_t r2 = Put("app/b", "b1").revision;
  const uint64_t r3 = Put("app/a", "a2").revision;
  Put("other", "o");
  const uint64_t r5 = Delete("app/b").revision;
  auto h = sm_.objects().History("app/a", 0, 0);
  ASSERT_TRUE(h.ok());
  ASSERT_EQ(h->items.size(), 2u);
  EXPECT_EQ(h->items[0].value, "a1");
  EXPECT_EQ(h->items[1].mod_revision, r3);
  auto hb = sm_.objects().History("app/b", 0, 1);
  ASSERT_TRUE(hb.ok());
  EXPECT_EQ(hb->items.size(), 1u);
  EXPECT_TRUE(hb->truncated);
  // Find at a past revision sees that revision only.
  auto f = sm_.objects().Find("app/", "", r2, sm_.revision(), 0);
  ASSERT_TRUE(f.ok());
  ASSERT_EQ(f->items.size(), 2u);
  EXPECT_EQ(f->items[0].value, "a1");
  EXPECT_EQ(f->items[1].value, "b1");
  auto now = sm_.objects().Find("app/", "", 0, sm_.revision(), 0);
  ASSERT_EQ(now->items.size(), 1u);
  EXPECT_EQ(now->items[0].value, "a2");
  auto page = sm_.objects().Find("app/", "", r2, sm_.revision(), 1);
  ASSERT_EQ(page->items.size(), 1u);
  EXPECT_TRUE(page->truncated);
  auto page2 = sm_.objects().Find("app/", page->items[0].key, r2, sm_.revision(), 1);
  ASSERT_EQ(page2->items.size(), 1u);
  EXPECT_EQ(page2->items[0].key, "app/b");
  // A key equal to the prefix is returned once, then paging moves past it.
  Put("app/", "root");
  auto p3 = sm_.objects().Find("app/", "", 0, sm_.revision(), 1);
  ASSERT_EQ(p3->items.at(0).key, "app/");
  auto p4 = sm_.objects().Find("app/", "app/", 0, sm_.revision(), 1);
  ASSERT_EQ(p4->items.at(0).key, "app/a");
  Delete("app/");
  // Compact at r3: reads at >= r3 are unchanged, reads below say COMPACTED.
  const uint64_t before = sm_.Digest();
  (void)before;
  EXPECT_EQ(Compact(sm_.revision() + 1).status.code(), Code::kInvalidArgument);
  ASSERT_TRUE(Compact(r3).status.ok());
  EXPECT_EQ(sm_.objects().compact_revision(), r3);
  EXPECT_EQ(sm_.objects().Get("app/a", r1, sm_.revision()).status().code(), Code::kCompacted);
  EXPECT_EQ(sm_.objects().Find("app/", "", r2, sm_.revision(), 0).status().code(),
            Code::kCompacted);
  EXPECT_EQ(sm_.objects().History("app/a", r1, 0).status().code(), Code::kCompacted);
  EXPECT_EQ(Get("app/a", r3).value, "a2");
  EXPECT_EQ(Get("app/b", r3).value, "b1");  // still visible at r3 (removed at r5)
  EXPECT_EQ(Get("app/b", r5).state, ObjState::kAbsent);
  EXPECT_EQ(sm_.objects().History("app/a", 0, 0)->items.size(), 1u);
  ExpectRoundTrip();
  ASSERT_TRUE(Compact(r1).status.ok());  // lower: no-op
  EXPECT_EQ(sm_.objects().compact_revision(), r3);
  ASSERT_TRUE(Compact(sm_.revision()).status.ok());
  EXPECT_EQ(sm_.objects().key_count(), 2u);  // the removed key is forgotten
  EXPECT_EQ(Get("app/b").state, ObjState::kAbsent);
  ExpectRoundTrip();
}

lv::TxnCompareCmd* AddCmp(lv::TxnCmd* t, uint32_t target, uint32_t op, std::string key) {
  auto* c = t->add_compares();
  c->set_target(target);
  c->set_op(op);
  c->set_key(std::move(key));
  return c;
}

lv::TxnOpCmd* AddOp(google::protobuf::RepeatedPtrField<lv::TxnOpCmd>* ops, uint32_t kind,
                    std::string key, std::string value = "") {
  auto* o = ops->Add();
  o->set_kind(kind);
  o->set_key(std::move(key));
  o->set_value(std::move(value));
  return o;
}

TEST_F(ObjectStoreTest, TxnCompareValueAndVersionThenElse) {
  Put("x", "1");
  lv::Command c;
  auto* t = c.mutable_txn();
  AddCmp(t, 0, 0, "x")->set_value("1");  // value == "1"
  AddCmp(t, 1, 0, "x")->set_number(1);   // version == 1
  AddOp(t->mutable_then_ops(), 0, "x", "2");
  AddOp(t->mutable_then_ops(), 0, "y", "new");
  AddOp(t->mutable_then_ops(), 2, "x");
  AddOp(t->mutable_else_ops(), 2, "x");
  CommandResult r = One(c);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_TRUE(r.succeeded);
  EXPECT_EQ(Get("x").mod_revision, r.revision);
  EXPECT_EQ(Get("y").mod_revision, r.revision);  // one revision for the whole txn
  ASSERT_EQ(r.objects.size(), 1u);
  EXPECT_EQ(r.objects[0].value, "2");
  EXPECT_EQ(last_.object_changes.size(), 2u);
  // Same txn again: the compares fail, the else branch only reads.
  const uint64_t rev = sm_.revision();
  CommandResult r2 = One(c);
  EXPECT_FALSE(r2.succeeded);
  EXPECT_EQ(sm_.revision(), rev);
  EXPECT_EQ(r2.objects.at(0).value, "2");
  // Bad txns change nothing.
  lv::Command dup;
  AddOp(dup.mutable_txn()->mutable_then_ops(), 0, "z", "a");
  AddOp(dup.mutable_txn()->mutable_then_ops(), 1, "z");
  EXPECT_EQ(One(dup).status.code(), Code::kInvalidArgument);
  lv::Command badop;
  AddOp(badop.mutable_txn()->mutable_then_ops(), 9, "z");
  EXPECT_EQ(One(badop).status.code(), Code::kInvalidArgument);
  lv::Command badcmp;
  AddCmp(badcmp.mutable_txn(), 0, 17, "x");
  EXPECT_EQ(One(badcmp).status.code(), Code::kInvalidArgument);
  EXPECT_EQ(sm_.revision(), rev);
  EXPECT_EQ(Get("z").state, ObjState::kAbsent);
}

TEST_F(ObjectStoreTest, TxnLockGuardedWriteAndReleaseTogether) {
  uint64_t a = Open(), b = Open();
  auto g = sm_.Apply(++index_, EntryBuilder(now_).Acquire(a, "w", "L").entry());
  ASSERT_TRUE(g.results[0].granted);
  const uint64_t token = g.results[0].grant.fencing_token;
  ASSERT_TRUE(
      sm_.Apply(++index_, EntryBuilder(now_).Acquire(b, "", "L").entry()).results[0].queued);
  // Session b does not hold L: the guarded write takes the else branch.
  lv::Command cb;
  cb.mutable_txn()->set_session_id(b);
  AddCmp(cb.mutable_txn(), 5, 5, "L")->set_number(ModeToLog(Mode::kEX));
  AddOp(cb.mutable_txn()->mutable_then_ops(), 0, "res", "from b");
  EXPECT_FALSE(One(cb).succeeded);
  // a holds L in EX (>= PW) and the token matches: write and release at once.
  lv::Command ca;
  auto* t = ca.mutable_txn();
  t->set_session_id(a);
  auto* m = AddCmp(t, 5, 5, "L");
  m->set_number(ModeToLog(Mode::kPW));
  m->set_owner("w");
  AddCmp(t, 6, 0, "L")->set_number(token);
  AddOp(t->mutable_then_ops(), 0, "res", "from a");
  AddOp(t->mutable_then_ops(), 3, "L")->set_owner("w");
  CommandResult r = One(ca);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_TRUE(r.succeeded);
  EXPECT_EQ(Get("res").value, "from a");
  ASSERT_EQ(last_.events.size(), 1u);  // L went to b in the same entry
  EXPECT_EQ(last_.events[0].session_id, b);
  EXPECT_GT(last_.events[0].grant.fencing_token, r.revision);
  // Releasing a lock not held fails the whole txn: nothing written.
  lv::Command cr;
  cr.mutable_txn()->set_session_id(a);
  AddOp(cr.mutable_txn()->mutable_then_ops(), 0, "res", "late");
  AddOp(cr.mutable_txn()->mutable_then_ops(), 3, "L")->set_owner("w");
  EXPECT_EQ(One(cr).status.code(), Code::kNotHeld);
  EXPECT_EQ(Get("res").value, "from a");
  // Lock ops need a session.
  lv::Command nos;
  AddCmp(nos.mutable_txn(), 5, 5, "L");
  EXPECT_EQ(One(nos).status.code(), Code::kInvalidArgument);
  ExpectRoundTrip();
}

TEST_F(ObjectStoreTest, BuiltinMethods) {
  CommandResult c1 = Exec("n", "counter.add", {});
  ASSERT_TRUE(c1.status.ok());
  EXPECT_EQ(c1.method_result, "1");
  EXPECT_EQ(Exec("n", "counter.add", {"41"}).method_result, "42");
  EXPECT_EQ(Exec("n", "counter.get", {}).method_result, "42");
  EXPECT_EQ(Exec("n", "counter.add", {"x"}).status.code(), Code::kInvalidArgument);
  EXPECT_EQ(Exec("n", "counter.add", {"9223372036854775807"}).status.code(),
            Code::kFailedPrecondition);
  Put("s", "text");
  EXPECT_EQ(Exec("s", "counter.add", {}).status.code(), Code::kFailedPrecondition);
  EXPECT_EQ(Exec("s", "append", {"++"}).method_result, "6");
  EXPECT_EQ(Get("s").value, "text++");
  EXPECT_EQ(Exec("s", "cas", {"nope", "x"}).method_result, "false");
  EXPECT_EQ(Exec("s", "cas", {"text++", "x"}).method_result, "true");
  EXPECT_EQ(Exec("s", "get", {}).method_result, "x");
  EXPECT_EQ(Exec("fresh", "cas", {"", "first"}).method_result, "true");  // "" = absent
  EXPECT_EQ(Exec("s", "nope", {}).status.code(), Code::kNotFound);
  EXPECT_EQ(Exec("s", "cas", {"1"}).status.code(), Code::kInvalidArgument);
  uint64_t sid = Open();
  ASSERT_TRUE(Reserve(sid, "r").status.ok());
  EXPECT_EQ(Exec("r", "get", {}).status.code(), Code::kFailedPrecondition);
  ExpectRoundTrip();
}

TEST_F(ObjectStoreTest, Seed001LockObject) {
  EXPECT_EQ(Exec("flow", "get_lock_holder", {}).method_result, "");
  EXPECT_EQ(Exec("flow", "lock_for", {"node-1"}).method_result, "node-1");
  EXPECT_EQ(Exec("flow", "lock_for", {"node-2"}).method_result, "node-1");  // taken
  EXPECT_EQ(Exec("flow", "get_lock_holder", {}).method_result, "node-1");
  EXPECT_EQ(Exec("flow", "unlock", {"node-2"}).method_result, "false");
  EXPECT_EQ(Exec("flow", "unlock", {"node-1"}).method_result, "true");
  EXPECT_EQ(Exec("flow", "get_lock_holder", {}).method_result, "");
  EXPECT_EQ(Exec("flow", "lock_for", {"node-2"}).method_result, "node-2");
  EXPECT_EQ(Exec("flow", "lock_for", {""}).status.code(), Code::kInvalidArgument);
  EXPECT_NE(BuiltinMethodNames().find("lock_for"), std::string::npos);
}

TEST_F(ObjectStoreTest, SnapshotRejectsInconsistentObjects) {
  uint64_t a = Open();
  Reserve(a, "r");
  Put("p", "v");
  lv::Snapshot snap;
  ASSERT_TRUE(snap.ParseFromString(sm_.Snapshot()));
  auto corrupt = [&](auto edit) {
    lv::Snapshot s = snap;
    edit(&s);
    s.clear_digest();
    const uint64_t applied_index = s.applied_index();  // outside the digest
    s.clear_applied_index();
    std::string bytes;
    s.SerializeToString(&bytes);
    uint64_t h = 1469598103934665603ull;
    for (unsigned char ch : bytes) {
      h ^= ch;
      h *= 1099511628211ull;
    }
    s.set_digest(h);
    s.set_applied_index(applied_index);
    s.SerializeToString(&bytes);
    StateMachine fresh;
    return fresh.Restore(bytes);
  };
  EXPECT_TRUE(corrupt([](lv::Snapshot*) {}).ok());
  EXPECT_FALSE(corrupt([](lv::Snapshot* s) { s->mutable_objects(0)->set_key(""); }).ok());
  EXPECT_FALSE(corrupt([](lv::Snapshot* s) { s->mutable_objects(0)->clear_versions(); }).ok());
  EXPECT_FALSE(corrupt([](lv::Snapshot* s) {
                 s->mutable_objects(1)->mutable_versions(0)->set_reserved_by(12345);
                 s->mutable_objects(1)->mutable_versions(0)->set_state(1);
               }).ok());  // reserved by a session that does not exist
  EXPECT_FALSE(corrupt([](lv::Snapshot* s) {
                 s->mutable_objects(0)->set_ttl_deadline_ms(5);  // a deadline without a TTL
               }).ok());
  EXPECT_FALSE(corrupt([](lv::Snapshot* s) {
                 s->mutable_objects(0)->mutable_versions(0)->set_mod_revision(1u << 30);
               }).ok());  // beyond the snapshot's revision
}

}  // namespace
}  // namespace latchkey::core
