// SkipEntriesInSnapshot (raft_snapshot_overlap.h) on a hand-built libraft
// follower state, with libraft's heap counted: which entries an
// AppendEntries keeps, where its previous entry moves, and that every
// dropped batch is freed exactly once and no kept one is.
// An adapter test: it includes raft.h through the guard's header.
#include "replication/raft_snapshot_overlap.h"

#include <gtest/gtest.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <set>
#include <vector>

#include "replication/raft_config_rollback.h"  // LogEntryCount

extern "C" {
#include <raft/fixture.h>
}

namespace latchkey::replication {
namespace {

// libraft's heap, counting what is allocated and freed through it.
struct CountingHeap {
  static std::set<void*>& Live() {
    static std::set<void*> live;
    return live;
  }
  static int& DoubleFrees() {
    static int n = 0;
    return n;
  }
  static void* Malloc(void*, size_t size) {
    void* p = std::malloc(size);
    Live().insert(p);
    return p;
  }
  static void Free(void*, void* p) {
    if (p == nullptr) return;
    if (Live().erase(p) == 0) ++DoubleFrees();
    std::free(p);
  }
  static void* Calloc(void*, size_t n, size_t size) {
    void* p = std::calloc(n, size);
    Live().insert(p);
    return p;
  }
  static void* Realloc(void*, void* p, size_t size) {
    Live().erase(p);
    void* q = std::realloc(p, size);
    Live().insert(q);
    return q;
  }
  static void* AlignedAlloc(void*, size_t alignment, size_t size) {
    void* p = std::aligned_alloc(alignment, size);
    Live().insert(p);
    return p;
  }
  static void AlignedFree(void* data, size_t, void* p) { Free(data, p); }
};

class SnapshotOverlapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    heap_ = {nullptr,
             &CountingHeap::Malloc,
             &CountingHeap::Free,
             &CountingHeap::Calloc,
             &CountingHeap::Realloc,
             &CountingHeap::AlignedAlloc,
             &CountingHeap::AlignedFree};
    raft_heap_set(&heap_);
    CountingHeap::Live().clear();
    CountingHeap::DoubleFrees() = 0;
    // A follower at term 3 whose snapshot ends at index 10 (term 2); the
    // in-memory log keeps 9..12 (offset 8). Only the fields the guard reads.
    std::memset(&r_, 0, sizeof r_);
    r_.current_term = 3;
    r_.log.offset = 8;
    r_.log.snapshot.last_index = 10;
    r_.log.snapshot.last_term = 2;
  }
  void TearDown() override { raft_heap_set_default(); }

  // An AppendEntries as the io delivers it: entries from raft_malloc, the
  // payloads in `batches` shared batches (entry i in batch i * batches / n).
  struct raft_append_entries Message(raft_term term, raft_index prev, raft_term prev_term,
                                     std::vector<raft_term> terms, unsigned batches = 1) {
    struct raft_append_entries a {};
    a.term = term;
    a.prev_log_index = prev;
    a.prev_log_term = prev_term;
    a.leader_commit = 40;
    a.n_entries = static_cast<unsigned>(terms.size());
    if (terms.empty()) return a;
    a.entries = static_cast<struct raft_entry*>(raft_malloc(terms.size() * sizeof *a.entries));
    std::vector<void*> b;
    for (unsigned i = 0; i < batches; ++i) b.push_back(raft_malloc(64));
    for (size_t i = 0; i < terms.size(); ++i) {
      struct raft_entry& e = a.entries[i];
      std::memset(&e, 0, sizeof e);
      e.term = terms[i];
      e.type = RAFT_COMMAND;
      e.batch = b[i * batches / terms.size()];
      e.buf.base = e.batch;
      e.buf.len = 8;
    }
    return a;
  }

  // What libraft does with a handled message: entryBatchesDestroy.
  static void LibraftFrees(struct raft_append_entries* a) {
    if (a->entries == nullptr) return;
    void* last = nullptr;
    for (unsigned i = 0; i < a->n_entries; ++i) {
      if (a->entries[i].batch != last) {
        last = a->entries[i].batch;
        raft_free(last);
      }
    }
    raft_free(a->entries);
  }

  struct raft_heap heap_ {};
  struct raft r_ {};
};

TEST_F(SnapshotOverlapTest, MessagesAfterTheSnapshotAreLeftAlone) {
  auto a = Message(3, 10, 2, {3, 3});
  EXPECT_EQ(SkipEntriesInSnapshot(r_, &a), SnapshotOverlap::kNone);
  EXPECT_EQ(a.prev_log_index, 10u);
  EXPECT_EQ(a.n_entries, 2u);
  auto b = Message(3, 12, 3, {});
  EXPECT_EQ(SkipEntriesInSnapshot(r_, &b), SnapshotOverlap::kNone);
  // A stale leader's message is libraft's to reject.
  auto c = Message(2, 0, 0, {1, 1, 2});
  EXPECT_EQ(SkipEntriesInSnapshot(r_, &c), SnapshotOverlap::kNone);
  EXPECT_EQ(c.n_entries, 3u);
  LibraftFrees(&a);
  LibraftFrees(&c);
  EXPECT_TRUE(CountingHeap::Live().empty());
}

// The nemesis case: the whole log from index 1 to a compacted follower.
TEST_F(SnapshotOverlapTest, EntriesInTheSnapshotAreDropped) {
  const std::vector<raft_term> terms = {1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3, 3};  // 1..13
  for (unsigned batches : {1u, 13u}) {
    auto a = Message(3, 0, 0, terms, batches);
    ASSERT_EQ(SkipEntriesInSnapshot(r_, &a), SnapshotOverlap::kTrimmed);
    EXPECT_EQ(a.prev_log_index, 10u);
    EXPECT_EQ(a.prev_log_term, 2u);  // entry 10's, the snapshot's last term
    ASSERT_EQ(a.n_entries, 3u);
    for (unsigned i = 0; i < 3; ++i) EXPECT_EQ(a.entries[i].term, 3u) << i;
    EXPECT_EQ(a.leader_commit, 40u);  // entries remain: libraft bounds the commit itself
    // Left for libraft: the new entries array and the kept entries' batches
    // (the one shared batch, or three of thirteen: the ten dropped are freed).
    EXPECT_EQ(CountingHeap::Live().size(), batches == 1 ? 2u : 4u) << batches << " batches";
    LibraftFrees(&a);
    EXPECT_TRUE(CountingHeap::Live().empty()) << batches << " batches";
  }
  EXPECT_EQ(CountingHeap::DoubleFrees(), 0);
}

TEST_F(SnapshotOverlapTest, AMessageInsideTheSnapshotBecomesAHeartbeatAtItsEnd) {
  auto a = Message(3, 2, 1, {1, 1, 1, 2}, 2);  // entries 3..6, all in the snapshot
  ASSERT_EQ(SkipEntriesInSnapshot(r_, &a), SnapshotOverlap::kHeartbeat);
  EXPECT_EQ(a.prev_log_index, 10u);
  EXPECT_EQ(a.prev_log_term, 2u);
  EXPECT_EQ(a.n_entries, 0u);
  EXPECT_EQ(a.entries, nullptr);
  EXPECT_EQ(a.leader_commit, 10u);  // nothing after the snapshot was matched
  EXPECT_TRUE(CountingHeap::Live().empty());
  // An empty AppendEntries below the snapshot too.
  auto b = Message(3, 5, 1, {});
  ASSERT_EQ(SkipEntriesInSnapshot(r_, &b), SnapshotOverlap::kHeartbeat);
  EXPECT_EQ(b.prev_log_index, 10u);
  EXPECT_EQ(CountingHeap::DoubleFrees(), 0);
}

TEST_F(SnapshotOverlapTest, EndingExactlyAtTheSnapshotIsAHeartbeat) {
  auto a = Message(3, 8, 1, {2, 2});  // entries 9 and 10
  ASSERT_EQ(SkipEntriesInSnapshot(r_, &a), SnapshotOverlap::kHeartbeat);
  EXPECT_EQ(a.prev_log_index, 10u);
  EXPECT_EQ(a.n_entries, 0u);
  EXPECT_TRUE(CountingHeap::Live().empty());
}

TEST_F(SnapshotOverlapTest, NoSnapshotNoChange) {
  r_.log.snapshot.last_index = 0;
  r_.log.snapshot.last_term = 0;
  r_.log.offset = 0;
  auto a = Message(3, 0, 0, {1, 2, 3});
  EXPECT_EQ(SkipEntriesInSnapshot(r_, &a), SnapshotOverlap::kNone);
  EXPECT_EQ(a.n_entries, 3u);
  LibraftFrees(&a);
  EXPECT_TRUE(CountingHeap::Live().empty());
}

// ---------------------------------------------------------------------------
// The same on libraft 0.15 itself (its fixture): a follower whose snapshot
// compacted the start of its log, and the leader's whole log from index 1.

// The receive callback libraft gives server 1's io (the fixture keeps it to
// itself), captured by wrapping the io's start.
raft_io_recv_cb g_recv = nullptr;
int (*g_start)(struct raft_io*, unsigned, raft_io_tick_cb, raft_io_recv_cb) = nullptr;
int CaptureStart(struct raft_io* io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv) {
  g_recv = recv;
  return g_start(io, msecs, tick, recv);
}

struct NullFsm {
  struct raft_fsm fsm {};
  NullFsm() {
    fsm.version = 1;
    fsm.apply = [](struct raft_fsm*, const struct raft_buffer*, void** result) {
      *result = nullptr;
      return 0;
    };
    fsm.snapshot = [](struct raft_fsm*, struct raft_buffer* bufs[], unsigned* n) {
      *bufs = static_cast<struct raft_buffer*>(raft_malloc(sizeof(struct raft_buffer)));
      (*bufs)[0].len = 8;
      (*bufs)[0].base = raft_calloc(1, 8);
      *n = 1;
      return 0;
    };
    fsm.restore = [](struct raft_fsm*, struct raft_buffer* buf) {
      raft_free(buf->base);
      return 0;
    };
  }
};

class CompactedFollowerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(raft_fixture_initialize(&f_), 0);
    for (auto& h : fsms_) ASSERT_EQ(raft_fixture_grow(&f_, &h.fsm), 0);
    raft_set_snapshot_threshold(raft_fixture_get(&f_, 0), 100000);  // the leader keeps all
    raft_set_snapshot_threshold(raft_fixture_get(&f_, 2), 100000);
    follower_ = raft_fixture_get(&f_, 1);
    raft_set_snapshot_threshold(follower_, 16);
    raft_set_snapshot_trailing(follower_, 4);
    struct raft_configuration conf;
    ASSERT_EQ(raft_fixture_configuration(&f_, 3, &conf), 0);
    ASSERT_EQ(raft_fixture_bootstrap(&f_, &conf), 0);
    raft_configuration_close(&conf);
    g_start = follower_->io->start;
    follower_->io->start = &CaptureStart;
    ASSERT_EQ(raft_fixture_start(&f_), 0);
    ASSERT_NE(g_recv, nullptr);
    raft_fixture_elect(&f_, 0);
    Apply(40);
    raft_fixture_step_until_elapsed(&f_, 1000);  // the snapshot's write completes
    Apply(3);  // entries after the follower's snapshot (threshold 16 not reached)
    ASSERT_GT(follower_->log.snapshot.last_index, 0u);
    ASSERT_GT(follower_->log.offset, 1u) << "the follower's log was not compacted";
  }
  void TearDown() override { raft_fixture_close(&f_); }

  void Apply(int n) {
    struct raft* leader = raft_fixture_get(&f_, 0);
    for (int i = 0; i < n; ++i) {
      struct raft_buffer buf;
      buf.len = 8;
      buf.base = raft_calloc(1, 8);
      applies_.push_back(std::make_unique<struct raft_apply>());
      ASSERT_EQ(raft_apply(leader, applies_.back().get(), &buf, 1, nullptr), 0);
    }
    ASSERT_TRUE(raft_fixture_step_until_applied(&f_, 3, raft_last_index(leader), 5000));
  }

  // An AppendEntries from the leader with every entry of its log, as the io
  // would deliver it: one batch, an entries array, both from raft_malloc.
  struct raft_message WholeLog() {
    struct raft* leader = raft_fixture_get(&f_, 0);
    const struct raft_log& log = leader->log;
    const raft_index last = raft_last_index(leader);
    EXPECT_EQ(log.offset, 0u);
    size_t bytes = 0;
    for (raft_index i = 1; i <= last; ++i)
      bytes += log.entries[(log.front + i - 1) % log.size].buf.len;
    struct raft_message m {};
    m.type = RAFT_IO_APPEND_ENTRIES;
    m.server_id = 1;
    m.server_address = "1";
    struct raft_append_entries& a = m.append_entries;
    a.term = leader->current_term;
    a.prev_log_index = 0;
    a.prev_log_term = 0;
    a.leader_commit = leader->commit_index;
    a.n_entries = static_cast<unsigned>(last);
    a.entries = static_cast<struct raft_entry*>(raft_malloc(last * sizeof(struct raft_entry)));
    auto* batch = static_cast<char*>(raft_malloc(bytes));
    size_t at = 0;
    for (raft_index i = 1; i <= last; ++i) {
      const struct raft_entry& src = log.entries[(log.front + i - 1) % log.size];
      struct raft_entry& e = a.entries[i - 1];
      std::memset(&e, 0, sizeof e);
      e.term = src.term;
      e.type = src.type;
      e.batch = batch;
      e.buf.base = batch + at;
      e.buf.len = src.buf.len;
      std::memcpy(batch + at, src.buf.base, src.buf.len);
      at += src.buf.len;
    }
    return m;
  }

  struct raft_fixture f_ {};
  NullFsm fsms_[3];
  struct raft* follower_ = nullptr;
  std::vector<std::unique_ptr<struct raft_apply>> applies_;
};

// What the guard prevents: libraft 0.15 takes the compacted entries for
// missing ones and dies truncating below its log (nemesis seed 9013). This
// fails once libraft stops crashing, which tells us the guard can go.
TEST_F(CompactedFollowerTest, Libraft015CrashesOnTheWholeLog) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        struct raft_message m = WholeLog();
        g_recv(follower_->io, &m);
      },
      ::testing::KilledBySignal(SIGSEGV), "");
}

TEST_F(CompactedFollowerTest, WithTheGuardTheFollowerStaysWhole) {
  const raft_index last = raft_last_index(raft_fixture_get(&f_, 0));
  struct raft_message m = WholeLog();
  ASSERT_EQ(SkipEntriesInSnapshot(*follower_, &m.append_entries), SnapshotOverlap::kTrimmed);
  g_recv(follower_->io, &m);
  EXPECT_EQ(raft_last_index(follower_), last);
  EXPECT_EQ(LogEntryCount(follower_->log), last - follower_->log.offset);
  // And it goes on replicating.
  Apply(5);
  EXPECT_EQ(raft_last_index(follower_), last + 5);
}

}  // namespace
}  // namespace latchkey::replication
