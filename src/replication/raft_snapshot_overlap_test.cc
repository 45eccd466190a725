// SkipEntriesInSnapshot (raft_snapshot_overlap.h) on a hand-built libraft
// follower state, with libraft's heap counted: which entries an
// AppendEntries keeps, where its previous entry moves, and that every
// dropped batch is freed exactly once and no kept one is.
// An adapter test: it includes raft.h through the guard's header.
#include "replication/raft_snapshot_overlap.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <set>
#include <vector>

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

}  // namespace
}  // namespace latchkey::replication
