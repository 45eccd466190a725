// Records (seed 004) through the state machine: number reuse, uniqueness,
// lock-if-unchanged, write needs the lock, revoke on delete, find at one
// revision, compaction and snapshot round trip with digest.
#include <gtest/gtest.h>

#include "core/state_machine.h"
#include "core/test_util.h"

namespace latchkey::core {
namespace {

namespace lv = log::v1;
using testing::EntryBuilder;

class RecordStoreTest : public ::testing::Test {
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
  static void AddFields(google::protobuf::RepeatedPtrField<lv::RecField>* out,
                        const std::vector<std::pair<std::string, std::string>>& fields) {
    for (const auto& [n, v] : fields) {
      auto* f = out->Add();
      f->set_name(n);
      f->set_value(v);
    }
  }
  CommandResult Create(const std::vector<std::pair<std::string, std::string>>& fields,
                       std::vector<std::string> key = {"name", "location"}) {
    lv::Command c;
    c.mutable_rec_create()->set_table("hotels");
    AddFields(c.mutable_rec_create()->mutable_fields(), fields);
    for (const auto& k : key) c.mutable_rec_create()->add_key_fields(k);
    return One(c);
  }
  CommandResult Lock(uint64_t sid, uint64_t number, uint64_t since = 0, bool try_only = false,
                     Mode mode = Mode::kEX) {
    lv::Command c;
    auto* l = c.mutable_rec_lock();
    l->set_session_id(sid);
    l->set_owner("o");
    l->set_table("hotels");
    l->set_number(number);
    l->set_if_unchanged_since(since);
    l->set_try_only(try_only);
    l->set_mode(ModeToLog(mode));
    return One(c);
  }
  CommandResult Unlock(uint64_t sid, uint64_t number) {
    lv::Command c;
    auto* u = c.mutable_rec_unlock();
    u->set_session_id(sid);
    u->set_owner("o");
    u->set_table("hotels");
    u->set_number(number);
    return One(c);
  }
  CommandResult Update(uint64_t sid, uint64_t number,
                       const std::vector<std::pair<std::string, std::string>>& fields) {
    lv::Command c;
    auto* u = c.mutable_rec_update();
    u->set_session_id(sid);
    u->set_owner("o");
    u->set_table("hotels");
    u->set_number(number);
    AddFields(u->mutable_fields(), fields);
    return One(c);
  }
  CommandResult Delete(uint64_t sid, uint64_t number) {
    lv::Command c;
    auto* d = c.mutable_rec_delete();
    d->set_session_id(sid);
    d->set_owner("o");
    d->set_table("hotels");
    d->set_number(number);
    return One(c);
  }
  uint64_t CreateNumber(const std::string& name, const std::string& loc) {
    CommandResult r = Create({{"name", name}, {"location", loc}, {"rate", "100"}});
    EXPECT_TRUE(r.status.ok()) << r.status.ToString();
    return r.records.empty() ? 0 : r.records[0].number;
  }

  StateMachine sm_;
  ApplyResult last_;
  uint64_t index_ = 0;
  uint64_t now_ = 1000;
};

TEST_F(RecordStoreTest, NumbersAreReusedLowestFirst) {
  const uint64_t s = Open();
  EXPECT_EQ(CreateNumber("Palace", "Smallville"), 1u);
  EXPECT_EQ(CreateNumber("Castle", "Smallville"), 2u);
  EXPECT_EQ(CreateNumber("Grand", "Metropolis"), 3u);
  for (uint64_t n : {3u, 1u}) {
    ASSERT_TRUE(Lock(s, n).granted);
    ASSERT_TRUE(Delete(s, n).status.ok());
  }
  EXPECT_EQ(CreateNumber("Ritz", "Gotham"), 1u);   // lowest deleted first
  EXPECT_EQ(CreateNumber("Savoy", "Gotham"), 3u);  // then the next deleted
  EXPECT_EQ(CreateNumber("Hilton", "Gotham"), 4u);
}

TEST_F(RecordStoreTest, UniqueKeyRefusesDuplicatesNamingTheRecord) {
  const uint64_t s = Open();
  ASSERT_EQ(CreateNumber("Palace", "Smallville"), 1u);
  CommandResult dup = Create({{"name", "Palace"}, {"location", "Smallville"}, {"rate", "90"}});
  EXPECT_EQ(dup.status.code(), Code::kAlreadyExists);
  EXPECT_NE(dup.status.message().find("hotels/1"), std::string::npos) << dup.status.ToString();
  // Same key without key_fields: the table's key applies.
  EXPECT_EQ(Create({{"name", "Palace"}, {"location", "Smallville"}}, {}).status.code(),
            Code::kAlreadyExists);
  // A different key definition is refused.
  EXPECT_EQ(Create({{"name", "X"}}, {"name"}).status.code(), Code::kFailedPrecondition);
  // An update may not move a record onto another's key.
  ASSERT_EQ(CreateNumber("Castle", "Smallville"), 2u);
  ASSERT_TRUE(Lock(s, 2).granted);
  EXPECT_EQ(Update(s, 2, {{"name", "Palace"}}).status.code(), Code::kAlreadyExists);
  // After a delete the key is free again.
  ASSERT_TRUE(Lock(s, 1).granted);
  ASSERT_TRUE(Delete(s, 1).status.ok());
  EXPECT_EQ(CreateNumber("Palace", "Smallville"), 1u);
}

TEST_F(RecordStoreTest, UpdateAndDeleteNeedTheLockInAWriteMode) {
  const uint64_t s = Open();
  const uint64_t other = Open();
  const uint64_t n = CreateNumber("Palace", "Smallville");
  EXPECT_EQ(Update(s, n, {{"rate", "120"}}).status.code(), Code::kNotHeld);
  ASSERT_TRUE(Lock(s, n, 0, false, Mode::kPR).granted);
  EXPECT_EQ(Update(s, n, {{"rate", "120"}}).status.code(), Code::kNotHeld);
  ASSERT_TRUE(Unlock(s, n).status.ok());
  ASSERT_TRUE(Lock(s, n).granted);
  EXPECT_EQ(Update(other, n, {{"rate", "1"}}).status.code(), Code::kNotHeld);
  CommandResult u = Update(s, n, {{"rate", "120"}});
  ASSERT_TRUE(u.status.ok()) << u.status.ToString();
  EXPECT_EQ(u.records[0].fields.at("rate"), "120");
  EXPECT_EQ(u.records[0].fields.at("name"), "Palace");  // merged
  EXPECT_EQ(u.records[0].version, 2u);
  EXPECT_EQ(Unlock(other, n).status.code(), Code::kNotHeld);  // only the owner unlocks
  EXPECT_TRUE(Unlock(s, n).status.ok());
  EXPECT_EQ(Lock(s, 99).status.code(), Code::kNotFound);
}

TEST_F(RecordStoreTest, LockIfUnchangedSinceRevision) {
  const uint64_t a = Open();
  const uint64_t b = Open();
  const uint64_t n = CreateNumber("Palace", "Smallville");
  const uint64_t read_rev = sm_.revision();
  ASSERT_TRUE(Lock(a, n, read_rev).granted);
  ASSERT_TRUE(Update(a, n, {{"rate", "150"}}).status.ok());
  ASSERT_TRUE(Unlock(a, n).status.ok());
  CommandResult stale = Lock(b, n, read_rev);
  EXPECT_EQ(stale.status.code(), Code::kRecordChanged) << stale.status.ToString();
  EXPECT_TRUE(Lock(b, n, sm_.revision()).granted);
}

TEST_F(RecordStoreTest, ConditionalWaiterFailsWhenTheHolderWrites) {
  const uint64_t a = Open();
  const uint64_t b = Open();
  const uint64_t c = Open();
  const uint64_t n = CreateNumber("Palace", "Smallville");
  const uint64_t read_rev = sm_.revision();
  ASSERT_TRUE(Lock(a, n).granted);
  ASSERT_TRUE(Lock(b, n, read_rev).queued);
  ASSERT_TRUE(Lock(c, n).queued);  // unconditional: waits on
  ApplyResult res = ApplyCmd([&] {
    lv::Command cmd;
    auto* u = cmd.mutable_rec_update();
    u->set_session_id(a);
    u->set_owner("o");
    u->set_table("hotels");
    u->set_number(n);
    AddFields(u->mutable_fields(), {{"rate", "1"}});
    return cmd;
  }());
  ASSERT_TRUE(res.results[0].status.ok());
  ASSERT_EQ(res.events.size(), 1u);
  EXPECT_EQ(res.events[0].kind, Event::Kind::kWaitFailed);
  EXPECT_EQ(res.events[0].session_id, b);
  EXPECT_EQ(res.events[0].failure.code(), Code::kRecordChanged);
  ApplyResult un = ApplyCmd([&] {
    lv::Command cmd;
    auto* u = cmd.mutable_rec_unlock();
    u->set_session_id(a);
    u->set_owner("o");
    u->set_table("hotels");
    u->set_number(n);
    return cmd;
  }());
  ASSERT_EQ(un.events.size(), 1u);
  EXPECT_EQ(un.events[0].kind, Event::Kind::kGranted);
  EXPECT_EQ(un.events[0].session_id, c);
  EXPECT_TRUE(sm_.records().lock_conds().empty());
}

TEST_F(RecordStoreTest, DeleteRevokesEveryLockAndFailsWaiters) {
  const uint64_t a = Open();
  const uint64_t b = Open();
  const uint64_t c = Open();
  const uint64_t n = CreateNumber("Palace", "Smallville");
  const std::string name = RecordLockName("hotels", n);
  ASSERT_TRUE(Lock(a, n, 0, false, Mode::kPR).granted);
  ASSERT_TRUE(Lock(b, n, 0, false, Mode::kPR).granted);
  ASSERT_TRUE(Lock(c, n).queued);  // EX waits behind the readers
  // b upgrades to EX to delete: a conversion that waits for a... so a
  // releases first, then b converts and deletes.
  ASSERT_TRUE(Unlock(a, n).status.ok());
  ASSERT_TRUE(Lock(a, n, 0, false, Mode::kPR).queued);  // behind c (FIFO)
  CommandResult conv = Lock(b, n);
  ASSERT_TRUE(conv.granted) << conv.status.ToString();
  ApplyResult res = ApplyCmd([&] {
    lv::Command cmd;
    auto* d = cmd.mutable_rec_delete();
    d->set_session_id(b);
    d->set_owner("o");
    d->set_table("hotels");
    d->set_number(n);
    return cmd;
  }());
  ASSERT_TRUE(res.results[0].status.ok()) << res.results[0].status.ToString();
  int failed = 0;
  for (const Event& e : res.events) {
    EXPECT_EQ(e.kind, Event::Kind::kWaitFailed);
    EXPECT_EQ(e.failure.code(), Code::kNotFound);
    ++failed;
  }
  EXPECT_EQ(failed, 2);  // c and a waited; b (the deleter) gets no event
  EXPECT_EQ(sm_.locks().Find(name), nullptr);
  EXPECT_EQ(Lock(c, n).status.code(), Code::kNotFound);
}

TEST_F(RecordStoreTest, DeleteTellsOtherHoldersTheyLostTheLock) {
  const uint64_t a = Open();
  const uint64_t b = Open();
  const uint64_t n = CreateNumber("Palace", "Smallville");
  // A plain Acquire on the derived name: record locks are ordinary locks.
  lv::LogEntry e = EntryBuilder(now_).Acquire(b, "o", RecordLockName("hotels", n)).entry();
  e.mutable_commands(0)->mutable_acquire()->set_mode(ModeToLog(Mode::kCR));
  ASSERT_TRUE(sm_.Apply(++index_, e).results[0].granted);
  ASSERT_TRUE(Lock(a, n, 0, false, Mode::kPW).granted);  // PW is compatible with CR
  ApplyResult res = ApplyCmd([&] {
    lv::Command cmd;
    auto* d = cmd.mutable_rec_delete();
    d->set_session_id(a);
    d->set_owner("o");
    d->set_table("hotels");
    d->set_number(n);
    return cmd;
  }());
  ASSERT_TRUE(res.results[0].status.ok());
  ASSERT_EQ(res.events.size(), 1u);
  EXPECT_EQ(res.events[0].kind, Event::Kind::kLockLost);
  EXPECT_EQ(res.events[0].session_id, b);
  EXPECT_NE(res.events[0].reason.find("deleted"), std::string::npos);
  EXPECT_TRUE(sm_.HeldBy(b).empty());
}

TEST_F(RecordStoreTest, FindByPrefixAtOneRevision) {
  const uint64_t s = Open();
  CreateNumber("Palace", "Smallville");
  CreateNumber("Castle", "Smallville");
  CreateNumber("Palace Inn", "Metropolis");
  const uint64_t rev = sm_.revision();
  ASSERT_TRUE(Lock(s, 2).granted);
  ASSERT_TRUE(Delete(s, 2).status.ok());
  Result<RecPage> now =
      sm_.records().Find("hotels", {{"name", "Pal", false}}, 0, sm_.revision(), 0, 0);
  ASSERT_TRUE(now.ok());
  ASSERT_EQ(now->items.size(), 2u);
  EXPECT_EQ(now->items[1].number, 3u);
  Result<RecPage> then =
      sm_.records().Find("hotels", {{"location", "Smallville", true}}, rev, sm_.revision(), 0, 0);
  ASSERT_TRUE(then.ok());
  EXPECT_EQ(then->items.size(), 2u);  // record 2 still there at rev
  Result<RecPage> page = sm_.records().Find("hotels", {}, rev, sm_.revision(), 1, 1);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->items.size(), 1u);
  EXPECT_EQ(page->items[0].number, 2u);
  EXPECT_TRUE(page->truncated);
  EXPECT_EQ(sm_.records().Get("hotels", 2, rev, sm_.revision())->fields.at("name"), "Castle");
  EXPECT_EQ(sm_.records().Get("hotels", 2, 0, sm_.revision()).status().code(), Code::kNotFound);
}

TEST_F(RecordStoreTest, CompactionFollowsTheObjectCompactionPoint) {
  const uint64_t s = Open();
  const uint64_t n = CreateNumber("Palace", "Smallville");
  const uint64_t r1 = sm_.revision();
  ASSERT_TRUE(Lock(s, n).granted);
  ASSERT_TRUE(Update(s, n, {{"rate", "1"}}).status.ok());
  ASSERT_TRUE(Delete(s, n).status.ok());
  lv::Command c;
  c.mutable_obj_compact()->set_revision(sm_.revision());
  ASSERT_TRUE(One(c).status.ok());
  EXPECT_EQ(sm_.records().Get("hotels", n, r1, sm_.revision()).status().code(), Code::kCompacted);
  EXPECT_EQ(sm_.records().tables().at("hotels").records.at(n).size(), 1u);  // the tombstone
  EXPECT_EQ(CreateNumber("Castle", "X"), n);  // still reused after compaction
}

TEST_F(RecordStoreTest, SnapshotRoundTripKeepsRecordsIndexesAndDigest) {
  const uint64_t a = Open();
  const uint64_t b = Open();
  CreateNumber("Palace", "Smallville");
  CreateNumber("Castle", "Smallville");
  CreateNumber("Grand", "Metropolis");
  ASSERT_TRUE(Lock(a, 2).granted);
  ASSERT_TRUE(Delete(a, 2).status.ok());
  ASSERT_TRUE(Lock(a, 1).granted);
  ASSERT_TRUE(Lock(b, 1, sm_.revision()).queued);  // a waiting condition
  const std::string bytes = sm_.Snapshot();
  StateMachine copy;
  ASSERT_TRUE(copy.Restore(bytes).ok());
  EXPECT_EQ(copy.Digest(), sm_.Digest());
  EXPECT_EQ(copy.Snapshot(), bytes);
  EXPECT_EQ(copy.records().lock_conds().size(), 1u);
  // Derived indexes were rebuilt: number 2 is free, the keys are unique.
  sm_ = std::move(copy);
  EXPECT_EQ(Create({{"name", "Grand"}, {"location", "Metropolis"}}).status.code(),
            Code::kAlreadyExists);
  EXPECT_EQ(CreateNumber("Castle", "Smallville"), 2u);
  // The restored condition still fails the waiter when a writes.
  ASSERT_TRUE(Update(a, 1, {{"rate", "5"}}).status.ok());
  ASSERT_EQ(last_.events.size(), 1u);
  EXPECT_EQ(last_.events[0].failure.code(), Code::kRecordChanged);
}

TEST_F(RecordStoreTest, BadInputIsRefused) {
  const uint64_t s = Open();
  lv::Command c;
  c.mutable_rec_create()->set_table("bad.table");
  AddFields(c.mutable_rec_create()->mutable_fields(), {{"a", "b"}});
  EXPECT_EQ(One(c).status.code(), Code::kInvalidArgument);
  c.mutable_rec_create()->set_table("t");
  AddFields(c.mutable_rec_create()->mutable_fields(), {{"a", "c"}});  // twice
  EXPECT_EQ(One(c).status.code(), Code::kInvalidArgument);
  c.mutable_rec_create()->clear_fields();
  EXPECT_EQ(One(c).status.code(), Code::kInvalidArgument);  // no fields
  AddFields(c.mutable_rec_create()->mutable_fields(), {{"a", std::string(5000, 'x')}});
  EXPECT_EQ(One(c).status.code(), Code::kInvalidArgument);
  EXPECT_EQ(Lock(s + 100, 1).status.code(), Code::kSessionExpired);
  EXPECT_EQ(sm_.records().Get("hotels", 1, sm_.revision() + 5, sm_.revision()).status().code(),
            Code::kInvalidArgument);
}

}  // namespace
}  // namespace latchkey::core
