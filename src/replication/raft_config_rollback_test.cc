// ConfigRollbackGuard (raft_config_rollback.h) on a hand-built libraft state:
// when libraft 0.15 would roll back an uncommitted configuration, and what
// the guard does when the committed entry is gone from the in-memory log.
// An adapter test: it includes raft.h through the guard's header.
#include "replication/raft_config_rollback.h"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

extern "C" {
#include <raft/fixture.h>
}

namespace latchkey::replication {
namespace {

// A follower at term 3: snapshot up to index 10 (term 1), entries 8..14 in
// memory (terms 1 1 1 2 2 3 3), committed up to 12. Its configuration came
// from index 5 (committed, dropped by the snapshot's compaction) and an
// uncommitted change at index 13.
struct FollowerState {
  std::vector<struct raft_entry> entries;
  struct raft r;
  ConfigRollbackGuard guard;

  FollowerState() {
    std::memset(&r, 0, sizeof r);
    for (raft_term t : {1, 1, 1, 2, 2, 3, 3}) {
      struct raft_entry e {};
      e.term = t;
      entries.push_back(e);
    }
    entries.push_back({});  // a free slot: the buffer is not full
    r.log.entries = entries.data();
    r.log.size = entries.size();
    r.log.front = 0;
    r.log.back = entries.size() - 1;
    r.log.offset = 7;
    r.log.snapshot.last_index = 10;
    r.log.snapshot.last_term = 1;
    r.current_term = 3;
    r.commit_index = 12;
    raft_configuration_init(&r.configuration);
    // The committed configuration {1, 2, 3}, seen by the guard.
    Set({1, 2, 3});
    r.configuration_index = 5;
    r.configuration_uncommitted_index = 0;
    guard.Observe(r);
    // Then a change to {1, 2, 3, 4} arrives, uncommitted, at index 13.
    Set({1, 2, 3, 4});
    r.configuration_uncommitted_index = 13;
    guard.Observe(r);  // keeps the committed copy
  }
  ~FollowerState() { raft_configuration_close(&r.configuration); }

  void Set(std::vector<raft_id> ids) {
    raft_configuration_close(&r.configuration);
    raft_configuration_init(&r.configuration);
    for (raft_id id : ids) {
      const std::string address = "127.0.0.1:" + std::to_string(7000 + id);
      ASSERT_EQ(raft_configuration_add(&r.configuration, id, address.c_str(), RAFT_VOTER), 0);
    }
  }
  std::vector<raft_id> Ids() const {
    std::vector<raft_id> out;
    for (unsigned i = 0; i < r.configuration.n; ++i) out.push_back(r.configuration.servers[i].id);
    return out;
  }
};

// AppendEntries at `term` after (prev, prev_term) with entries of `terms`.
struct Append {
  std::vector<struct raft_entry> entries;
  struct raft_append_entries args {};
  Append(raft_term term, raft_index prev, raft_term prev_term, std::vector<raft_term> terms) {
    for (raft_term t : terms) {
      struct raft_entry e {};
      e.term = t;
      entries.push_back(e);
    }
    args.term = term;
    args.prev_log_index = prev;
    args.prev_log_term = prev_term;
    args.entries = entries.empty() ? nullptr : entries.data();
    args.n_entries = static_cast<unsigned>(entries.size());
  }
};

TEST(ConfigRollbackTest, ReadsTermsAsLibraftDoes) {
  FollowerState f;
  EXPECT_EQ(LogTermOf(f.r.log, 7), 0u);   // compacted
  EXPECT_EQ(LogTermOf(f.r.log, 8), 1u);   // trailing entry
  EXPECT_EQ(LogTermOf(f.r.log, 10), 1u);  // the snapshot's last
  EXPECT_EQ(LogTermOf(f.r.log, 13), 3u);
  EXPECT_EQ(LogTermOf(f.r.log, 14), 3u);
  EXPECT_EQ(LogTermOf(f.r.log, 15), 0u);  // past the end
  EXPECT_FALSE(LogHasEntry(f.r.log, 5));
  EXPECT_TRUE(LogHasEntry(f.r.log, 8));
}

TEST(ConfigRollbackTest, OnlyAConflictAtOrBeforeTheUncommittedEntryRollsBack) {
  FollowerState f;
  // A new leader (term 4) whose entry 13 is of term 4: truncates 13.. .
  EXPECT_TRUE(WouldRollBackConfiguration(f.r, Append(4, 12, 2, {4}).args));
  // Conflict at 14, after the uncommitted change: it stays.
  EXPECT_FALSE(WouldRollBackConfiguration(f.r, Append(4, 13, 3, {4}).args));
  // Matching entries, then new ones: nothing truncated.
  EXPECT_FALSE(WouldRollBackConfiguration(f.r, Append(4, 12, 2, {3, 3, 4}).args));
  // Stale term: rejected before anything.
  EXPECT_FALSE(WouldRollBackConfiguration(f.r, Append(2, 12, 2, {2}).args));
  // Previous entry of another term, or missing: rejected.
  EXPECT_FALSE(WouldRollBackConfiguration(f.r, Append(4, 12, 1, {4}).args));
  EXPECT_FALSE(WouldRollBackConfiguration(f.r, Append(4, 20, 4, {4}).args));
  // A conflict at or below the commit index makes libraft shut down instead.
  EXPECT_FALSE(WouldRollBackConfiguration(f.r, Append(4, 11, 2, {4, 4}).args));
  // Nothing uncommitted: nothing to roll back.
  f.r.configuration_uncommitted_index = 0;
  EXPECT_FALSE(WouldRollBackConfiguration(f.r, Append(4, 12, 2, {4}).args));
}

TEST(ConfigRollbackTest, RollsBackFromItsCopyWhenTheEntryIsGone) {
  FollowerState f;
  EXPECT_EQ(f.guard.BeforeAppendEntries(&f.r, Append(4, 13, 3, {4}).args),
            ConfigRollbackGuard::Outcome::kNotNeeded);
  EXPECT_EQ(f.Ids(), (std::vector<raft_id>{1, 2, 3, 4}));

  EXPECT_EQ(f.guard.BeforeAppendEntries(&f.r, Append(4, 12, 2, {4}).args),
            ConfigRollbackGuard::Outcome::kRolledBack);
  EXPECT_EQ(f.Ids(), (std::vector<raft_id>{1, 2, 3}));
  EXPECT_STREQ(f.r.configuration.servers[2].address, "127.0.0.1:7003");
  EXPECT_EQ(f.r.configuration_uncommitted_index, 0u);
  EXPECT_EQ(f.r.configuration_index, 5u);
}

TEST(ConfigRollbackTest, LeavesItToLibraftWhileTheEntryIsInMemory) {
  FollowerState f;
  f.r.configuration_index = 9;  // committed entry still in memory: libraft decodes it
  EXPECT_EQ(f.guard.BeforeAppendEntries(&f.r, Append(4, 12, 2, {4}).args),
            ConfigRollbackGuard::Outcome::kNotNeeded);
  EXPECT_EQ(f.r.configuration_uncommitted_index, 13u);
}

TEST(ConfigRollbackTest, SaysSoWhenItsCopyIsOfAnotherIndex) {
  FollowerState f;
  f.r.configuration_index = 6;  // committed while the copy was not refreshed
  EXPECT_EQ(f.guard.BeforeAppendEntries(&f.r, Append(4, 12, 2, {4}).args),
            ConfigRollbackGuard::Outcome::kNoCopy);
  EXPECT_EQ(f.Ids(), (std::vector<raft_id>{1, 2, 3, 4}));  // untouched
  EXPECT_EQ(f.r.configuration_uncommitted_index, 13u);
}

TEST(ConfigRollbackTest, ObserveKeepsTheLatestCommittedConfiguration) {
  FollowerState f;
  // The change commits: libraft clears the uncommitted index.
  f.r.configuration_index = 13;
  f.r.configuration_uncommitted_index = 0;
  f.guard.Observe(f.r);
  EXPECT_EQ(f.guard.committed_index(), 13u);
  // A later uncommitted change rolled back: back to {1, 2, 3, 4}.
  f.Set({1, 2, 4});
  f.r.configuration_uncommitted_index = 14;
  f.r.log.offset = 13;  // compacted past 13 as well (entries 14.. only)
  f.r.log.front = 6;
  f.r.log.snapshot.last_index = 13;
  f.r.log.snapshot.last_term = 3;
  f.r.commit_index = 13;
  EXPECT_EQ(f.guard.BeforeAppendEntries(&f.r, Append(4, 13, 3, {4}).args),
            ConfigRollbackGuard::Outcome::kRolledBack);
  EXPECT_EQ(f.Ids(), (std::vector<raft_id>{1, 2, 3, 4}));
}

// As libraft 0.15 starts a follower whose last loaded entry (13) is the
// change to {1, 2, 3, 4}: taken as committed although the commit index is
// the snapshot's (10). Marked uncommitted, a new leader's entry 13 rolls it
// back to the snapshot's configuration (the guard's seeded copy).
TEST(ConfigRollbackTest, LoadedConfigurationAboveTheCommitIndexIsUncommitted) {
  FollowerState f;  // its guard holds {1, 2, 3} at 5, as seeded from the snapshot
  f.r.configuration_index = 13;
  f.r.configuration_uncommitted_index = 0;
  f.r.commit_index = 10;
  f.entries[13 - 8].type = RAFT_CHANGE;
  ASSERT_TRUE(MarkLoadedConfigurationUncommitted(&f.r, f.guard));
  EXPECT_EQ(f.r.configuration_uncommitted_index, 13u);
  EXPECT_EQ(f.r.configuration_index, 5u);
  EXPECT_EQ(f.Ids(), (std::vector<raft_id>{1, 2, 3, 4}));           // still the current one
  EXPECT_FALSE(MarkLoadedConfigurationUncommitted(&f.r, f.guard));  // once only
  EXPECT_EQ(f.guard.BeforeAppendEntries(&f.r, Append(4, 12, 2, {4}).args),
            ConfigRollbackGuard::Outcome::kRolledBack);
  EXPECT_EQ(f.Ids(), (std::vector<raft_id>{1, 2, 3}));
}

TEST(ConfigRollbackTest, LoadedConfigurationPrefersAnEarlierEntryInMemory) {
  FollowerState f;
  f.r.configuration_index = 13;
  f.r.configuration_uncommitted_index = 0;
  f.r.commit_index = 10;
  f.entries[13 - 8].type = RAFT_CHANGE;
  f.entries[9 - 8].type = RAFT_CHANGE;
  ASSERT_TRUE(MarkLoadedConfigurationUncommitted(&f.r, f.guard));
  EXPECT_EQ(f.r.configuration_index, 9u);  // libraft decodes it if it rolls back
  EXPECT_EQ(f.r.configuration_uncommitted_index, 13u);
}

TEST(ConfigRollbackTest, LoadedConfigurationAtOrBelowTheCommitIndexIsLeftAlone) {
  FollowerState f;
  f.r.configuration_uncommitted_index = 0;
  f.entries[12 - 8].type = RAFT_CHANGE;
  f.r.configuration_index = 12;  // commit index 12
  EXPECT_FALSE(MarkLoadedConfigurationUncommitted(&f.r, f.guard));
  ConfigRollbackGuard empty;  // no snapshot, no earlier entry: nothing to fall back to
  f.r.configuration_index = 13;
  f.entries[13 - 8].type = RAFT_CHANGE;
  f.entries[12 - 8].type = RAFT_COMMAND;
  EXPECT_FALSE(MarkLoadedConfigurationUncommitted(&f.r, empty));
  EXPECT_EQ(f.r.configuration_uncommitted_index, 0u);
}

// libraft's own fixture, 3 voters, where follower 1 applies entries while a
// configuration change it holds is not committed yet: the snapshot libraft
// 0.15 takes then would store the uncommitted configuration (4 servers)
// under the committed one's index; with the check it is postponed until the
// change commits.
class SnapshotFsm {
 public:
  SnapshotFsm() {
    fsm_.version = 1;
    fsm_.data = this;
    fsm_.apply = [](struct raft_fsm*, const struct raft_buffer*, void** result) {
      *result = nullptr;
      return 0;
    };
    fsm_.snapshot = &SnapshotFsm::Snapshot;
    fsm_.restore = [](struct raft_fsm*, struct raft_buffer* buf) {
      raft_free(buf->base);
      return 0;
    };
  }
  struct raft_fsm* fsm() {
    return &fsm_;
  }

  struct raft* r = nullptr;
  bool check = false;
  int refused = 0;
  int taken = 0;
  unsigned stored_servers = 0;  // servers in the last snapshot's configuration
  raft_index stored_config_index = 0;

 private:
  static int Snapshot(struct raft_fsm* fsm, struct raft_buffer* bufs[], unsigned* n_bufs) {
    auto* self = static_cast<SnapshotFsm*>(fsm->data);
    if (self->check && SnapshotWouldStoreUncommittedConfiguration(*self->r)) {
      ++self->refused;
      return RAFT_BUSY;
    }
    ++self->taken;
    // libraft filled these in before calling us.
    self->stored_servers = self->r->snapshot.pending.configuration.n;
    self->stored_config_index = self->r->snapshot.pending.configuration_index;
    *bufs = static_cast<struct raft_buffer*>(raft_malloc(sizeof(struct raft_buffer)));
    (*bufs)[0].len = 8;
    (*bufs)[0].base = raft_malloc(8);
    std::memset((*bufs)[0].base, 0, 8);
    *n_bufs = 1;
    return 0;
  }
  struct raft_fsm fsm_ {};
};

bool LeaderCommitted(struct raft_fixture* f, void* index) {
  return raft_fixture_get(f, 0)->commit_index >= *static_cast<raft_index*>(index);
}

struct FixtureRun {
  struct raft_fixture f {};
  SnapshotFsm fsms[3];
  std::vector<std::unique_ptr<struct raft_apply>> applies;
  struct raft_change change {};

  explicit FixtureRun(bool check) {
    EXPECT_EQ(raft_fixture_initialize(&f), 0);
    for (SnapshotFsm& s : fsms) EXPECT_EQ(raft_fixture_grow(&f, s.fsm()), 0);
    for (unsigned i = 0; i < 3; ++i) {
      fsms[i].r = raft_fixture_get(&f, i);
      fsms[i].check = check;
      raft_set_snapshot_threshold(fsms[i].r, 1000);
    }
    struct raft_configuration conf;
    EXPECT_EQ(raft_fixture_configuration(&f, 3, &conf), 0);
    EXPECT_EQ(raft_fixture_bootstrap(&f, &conf), 0);
    raft_configuration_close(&conf);
    EXPECT_EQ(raft_fixture_start(&f), 0);
    raft_fixture_elect(&f, 0);
  }
  ~FixtureRun() { raft_fixture_close(&f); }

  raft_index Apply() {
    struct raft* leader = raft_fixture_get(&f, 0);
    struct raft_buffer buf;
    buf.len = 8;
    buf.base = raft_malloc(8);
    std::memset(buf.base, 0, 8);
    applies.push_back(std::make_unique<struct raft_apply>());
    EXPECT_EQ(raft_apply(leader, applies.back().get(), &buf, 1, nullptr), 0);
    return raft_last_index(leader);
  }

  // Follower 1 holds an uncommitted change to 4 servers (nobody's reply
  // reaches the leader any more) and applies the entry before it. Returns
  // the change's index.
  raft_index UncommittedChangeOnFollower1() {
    struct raft* leader = raft_fixture_get(&f, 0);
    const raft_index before = Apply();
    // The leader commits `before`; the followers learn it with the change.
    EXPECT_TRUE(
        raft_fixture_step_until(&f, &LeaderCommitted, const_cast<raft_index*>(&before), 5000));
    raft_fixture_saturate(&f, 1, 0);
    raft_fixture_saturate(&f, 2, 0);
    raft_set_snapshot_threshold(fsms[1].r, 1);
    EXPECT_EQ(raft_add(leader, &change, 4, "4", nullptr), 0);
    const raft_index change_index = raft_last_index(leader);
    EXPECT_TRUE(raft_fixture_step_until_applied(&f, 1, before, 5000));
    EXPECT_EQ(fsms[1].r->configuration_uncommitted_index, change_index);
    EXPECT_EQ(fsms[1].r->configuration.n, 4u);
    return change_index;
  }
};

TEST(SnapshotConfigurationTest, Libraft015StoresAnUncommittedConfiguration) {
  FixtureRun run(/*check=*/false);
  run.UncommittedChangeOnFollower1();
  // What the check prevents: 4 servers stored under the bootstrap's index.
  ASSERT_EQ(run.fsms[1].taken, 1);
  EXPECT_EQ(run.fsms[1].stored_servers, 4u);
  EXPECT_EQ(run.fsms[1].stored_config_index, 1u);
}

TEST(SnapshotConfigurationTest, SnapshotWaitsUntilTheChangeCommits) {
  FixtureRun run(/*check=*/true);
  const raft_index change = run.UncommittedChangeOnFollower1();
  EXPECT_GE(run.fsms[1].refused, 1);
  EXPECT_EQ(run.fsms[1].taken, 0);
  // The replies get through again: the change commits, the next apply
  // takes the snapshot with the committed 4-server configuration.
  raft_fixture_desaturate(&run.f, 1, 0);
  raft_fixture_desaturate(&run.f, 2, 0);
  const raft_index next = run.Apply();
  ASSERT_TRUE(raft_fixture_step_until_applied(&run.f, 1, next, 5000));
  EXPECT_EQ(run.fsms[1].r->configuration_uncommitted_index, 0u);
  ASSERT_GE(run.fsms[1].taken, 1);
  EXPECT_EQ(run.fsms[1].stored_servers, 4u);
  EXPECT_EQ(run.fsms[1].stored_config_index, change);
}

// libraft 0.15 itself at startup: a log of the bootstrap configuration (3
// servers, index 1) and a change to 4 servers (index 2) loads with the change
// taken as committed and a commit index of 1. Marked uncommitted, libraft
// commits it as usual once the leader's next entry commits.
TEST(SnapshotConfigurationTest, StartupTakesTheLastConfigurationAsCommitted) {
  struct raft_fixture f {};
  SnapshotFsm fsms[3];
  ASSERT_EQ(raft_fixture_initialize(&f), 0);
  for (SnapshotFsm& s : fsms) ASSERT_EQ(raft_fixture_grow(&f, s.fsm()), 0);
  struct raft_configuration conf;
  ASSERT_EQ(raft_fixture_configuration(&f, 3, &conf), 0);
  ASSERT_EQ(raft_fixture_bootstrap(&f, &conf), 0);
  ASSERT_EQ(raft_configuration_add(&conf, 4, "4", RAFT_SPARE), 0);
  for (unsigned i = 0; i < 3; ++i) {
    struct raft_entry change {};  // the server's io owns its buffer from here
    change.type = RAFT_CHANGE;
    change.term = 1;
    ASSERT_EQ(raft_configuration_encode(&conf, &change.buf), 0);
    raft_fixture_add_entry(&f, i, &change);
  }
  raft_configuration_close(&conf);
  ASSERT_EQ(raft_fixture_start(&f), 0);
  ConfigRollbackGuard guards[3];
  for (unsigned i = 0; i < 3; ++i) {
    struct raft* r = raft_fixture_get(&f, i);
    EXPECT_EQ(r->configuration_index, 2u);  // libraft 0.15: "committed"
    EXPECT_EQ(r->configuration_uncommitted_index, 0u);
    EXPECT_EQ(r->commit_index, 1u);  // the bootstrap entry only
    EXPECT_EQ(r->configuration.n, 4u);
    ASSERT_TRUE(MarkLoadedConfigurationUncommitted(r, guards[i]));
    EXPECT_EQ(r->configuration_index, 1u);
    EXPECT_EQ(r->configuration_uncommitted_index, 2u);
  }
  raft_fixture_elect(&f, 0);
  struct raft_buffer buf;
  buf.len = 8;
  buf.base = raft_malloc(8);
  std::memset(buf.base, 0, 8);
  struct raft_apply req {};
  ASSERT_EQ(raft_apply(raft_fixture_get(&f, 0), &req, &buf, 1, nullptr), 0);
  ASSERT_TRUE(
      raft_fixture_step_until_applied(&f, 3, raft_last_index(raft_fixture_get(&f, 0)), 5000));
  for (unsigned i = 0; i < 3; ++i) {
    struct raft* r = raft_fixture_get(&f, i);
    EXPECT_EQ(r->configuration_index, 2u) << i;
    EXPECT_EQ(r->configuration_uncommitted_index, 0u) << i;
    EXPECT_EQ(r->configuration.n, 4u) << i;
  }
  raft_fixture_close(&f);
}

}  // namespace
}  // namespace latchkey::replication
