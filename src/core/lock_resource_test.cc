// The compact lock-table storage (lock_resource.h) and the streamed snapshot
// encoding (state_machine_snapshot.cc).
#include "core/lock_resource.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/state_machine.h"

namespace latchkey::core {
namespace {

namespace lv = log::v1;

TEST(HolderListTest, KeepsOwnerOrderInlineAndSpilled) {
  std::vector<OwnerId> ids;  // stable storage, as the table's interned ids
  ids.reserve(8);
  for (int i : {5, 1, 7, 3, 2, 6}) ids.push_back(OwnerId{static_cast<uint64_t>(i), ""});
  HolderList h;
  std::map<OwnerId, uint64_t> want;
  for (const OwnerId& id : ids) {
    HeldGrant g;
    g.fencing_token = id.session * 10;
    h.Put(id, g);
    want[id] = g.fencing_token;
    std::map<OwnerId, uint64_t> have;
    for (const auto& [who, grant] : h) have[who] = grant.fencing_token;
    ASSERT_EQ(have, want);
    ASSERT_TRUE(std::is_sorted(h.begin(), h.end(), [](const HolderEntry& a, const HolderEntry& b) {
      return a.first < b.first;
    }));
  }
  EXPECT_EQ(h.size(), 6u);
  EXPECT_EQ(h.count(OwnerId{4, ""}), 0u);
  ASSERT_NE(h.find(OwnerId{7, ""}), h.end());
  EXPECT_EQ(h.find(OwnerId{7, ""})->second.fencing_token, 70u);
  // Replacing keeps one entry.
  HeldGrant g;
  g.fencing_token = 99;
  h.Put(ids[0], g);
  EXPECT_EQ(h.size(), 6u);
  EXPECT_EQ(h.find(OwnerId{5, ""})->second.fencing_token, 99u);
  // Down to one (back inline) and to none.
  for (uint64_t s : {1, 7, 3, 2, 6}) h.erase(h.find(OwnerId{s, ""}));
  ASSERT_EQ(h.size(), 1u);
  EXPECT_EQ(h.begin()->first, (OwnerId{5, ""}));
  EXPECT_EQ(h.begin()->second.fencing_token, 99u);
  h.erase(h.begin());
  EXPECT_TRUE(h.empty());
}

// The heap array regrows and shrinks at powers of two (its capacity is not
// stored): every size up to 40, both ways, keeps exactly the model's grants.
TEST(HolderListTest, GrowsAndShrinksAcrossPowersOfTwoAgainstAModel) {
  std::vector<OwnerId> ids;
  for (uint64_t i = 0; i < 40; ++i) ids.push_back(OwnerId{i % 7, "o" + std::to_string(i)});
  std::mt19937 rng(3);
  HolderList h;
  std::map<OwnerId, uint64_t> want;
  for (int step = 0; step < 4000; ++step) {
    const OwnerId& id = ids[rng() % ids.size()];
    // Drift up for the first half, down for the second.
    const bool add = rng() % 10 < (step < 2000 ? 7u : 3u);
    if (add) {
      HeldGrant g;
      g.fencing_token = static_cast<uint64_t>(step);
      h.Put(id, g);
      want[id] = g.fencing_token;
    } else if (auto it = h.find(id); it != h.end()) {
      h.erase(it);
      want.erase(id);
    }
    std::map<OwnerId, uint64_t> have;
    for (const auto& [who, grant] : h) have[who] = grant.fencing_token;
    ASSERT_EQ(have, want) << "step " << step;
    ASSERT_EQ(h.size(), want.size());
    ASSERT_TRUE(std::is_sorted(h.begin(), h.end(), [](const HolderEntry& a, const HolderEntry& b) {
      return a.first < b.first;
    }));
  }
  for (const OwnerId& id : ids) {
    if (auto it = h.find(id); it != h.end()) h.erase(it);
  }
  EXPECT_TRUE(h.empty());
}

// Waiters and the value block share one lazily allocated block: draining the
// queue must not take the value (or an empty value's token) with it.
WaitEntry Waiter(uint64_t session, Mode mode) {
  WaitEntry w;
  w.who = OwnerId{session, ""};
  w.mode = mode;
  w.seq = session;
  return w;
}

TEST(ResourceTest, ValueBlockOutlivesTheQueueThatSharesItsAllocation) {
  BlockPool pool;
  Resource* r = Resource::Create(pool, "a.b");
  EXPECT_EQ(r->name(), "a.b");
  EXPECT_TRUE(r->waiters().empty());
  EXPECT_EQ(r->value(), "");
  EXPECT_EQ(r->value_token(), 0u);
  EXPECT_TRUE(r->idle());

  r->MutableWaiters().push_back(Waiter(1, Mode::kEX));
  r->SetValueBlock("v", 7);
  EXPECT_EQ(r->waiters().size(), 1u);
  r->MutableWaiters().clear();
  r->TrimWaiters();
  EXPECT_TRUE(r->waiters().empty());
  EXPECT_EQ(r->value(), "v");
  EXPECT_EQ(r->value_token(), 7u);
  EXPECT_FALSE(r->idle());

  r->SetValueBlock("", 9);  // an empty value still records who wrote it
  r->MutableWaiters().push_back(Waiter(2, Mode::kPR));
  r->MutableWaiters().clear();
  r->TrimWaiters();
  EXPECT_EQ(r->value_token(), 9u);
  EXPECT_TRUE(r->idle());  // an empty value does not keep a lock alive

  Resource* q = Resource::Create(pool, "q");
  q->MutableWaiters().push_back(Waiter(3, Mode::kEX));
  EXPECT_FALSE(q->idle());
  q->MutableWaiters().clear();
  q->TrimWaiters();
  EXPECT_TRUE(q->idle());
  EXPECT_EQ(q->value_token(), 0u);
  Resource::Destroy(pool, q);
  Resource::Destroy(pool, r);
  EXPECT_EQ(pool.blocks_in_use(), 0u);
}

TEST(NameIndexTest, StaysSortedThroughSplitsAndMerges) {
  BlockPool pool;
  OwnedNameIndex idx(&pool);
  std::set<std::string> want;
  std::mt19937 rng(7);
  for (int i = 0; i < 5000; ++i) {
    std::string n = "n." + std::to_string(rng() % 20000);
    if (want.insert(n).second) idx.Add(n);
  }
  ASSERT_EQ(idx.size(), want.size());
  std::vector<std::string> have;
  for (const auto& [name, res] : idx) {
    EXPECT_EQ(res.name(), name.view());
    have.emplace_back(name);
  }
  EXPECT_TRUE(std::equal(have.begin(), have.end(), want.begin(), want.end()));
  // lower_bound / find agree with std::set.
  for (int i = 0; i < 2000; ++i) {
    std::string probe = "n." + std::to_string(rng() % 20000);
    auto it = idx.lower_bound(probe);
    auto w = want.lower_bound(probe);
    if (w == want.end()) {
      EXPECT_TRUE(it == idx.end());
    } else {
      ASSERT_FALSE(it == idx.end());
      EXPECT_EQ(it.name(), *w);
    }
    EXPECT_EQ(idx.Find(probe) != nullptr, want.count(probe) == 1);
  }
  // Erase most of them in random order.
  std::vector<std::string> order(want.begin(), want.end());
  std::shuffle(order.begin(), order.end(), rng);
  for (size_t i = 0; i < order.size() * 9 / 10; ++i) {
    ASSERT_NE(idx.Find(order[i]), nullptr);
    idx.Remove(order[i]);
    want.erase(order[i]);
  }
  have.clear();
  for (auto it = idx.begin(); it != idx.end(); ++it) have.emplace_back(it->first);
  EXPECT_TRUE(std::equal(have.begin(), have.end(), want.begin(), want.end()));
  EXPECT_EQ(idx.Erase("absent"), nullptr);
}

// Inserts and erases interleaved (chunks split, merge, empty out and lose
// their last names): every lookup agrees with std::set after every step,
// also across a move of the index.
TEST(NameIndexTest, LookupsAgreeWithAModelThroughInterleavedInsertsAndErases) {
  BlockPool pool;
  OwnedNameIndex idx(&pool);
  std::set<std::string> want;
  std::mt19937 rng(11);
  auto name = [&] { return "k" + std::to_string(rng() % 3000); };
  auto check = [&](const OwnedNameIndex& x) {
    const std::string probe = name();
    auto it = x.lower_bound(probe);
    auto w = want.lower_bound(probe);
    if (w == want.end()) {
      ASSERT_TRUE(it == x.end()) << probe;
    } else {
      ASSERT_FALSE(it == x.end()) << probe;
      ASSERT_EQ(it.name(), *w) << probe;
    }
    ASSERT_EQ(x.Find(probe) != nullptr, want.count(probe) == 1) << probe;
    ASSERT_EQ(x.size(), want.size());
  };
  for (int step = 0; step < 40000; ++step) {
    // Grow for the first half, then mostly shrink.
    const bool add = rng() % 100 < (step < 20000 ? 70u : 30u);
    const std::string n = name();
    if (add) {
      if (want.insert(n).second) idx.Add(n);
    } else if (want.erase(n) > 0) {
      idx.Remove(n);
    }
    ASSERT_NO_FATAL_FAILURE(check(idx)) << "step " << step;
  }
  OwnedNameIndex moved(std::move(idx));
  for (int i = 0; i < 500; ++i) ASSERT_NO_FATAL_FAILURE(check(moved));
  for (const std::string& n : std::vector<std::string>(want.begin(), want.end())) {
    moved.Remove(n);
    want.erase(n);
    ASSERT_NO_FATAL_FAILURE(check(moved));
  }
  EXPECT_TRUE(moved.empty());
}

TEST(StreamedSnapshotTest, BytesAreTheCanonicalEncoding) {
  StateMachine sm;
  uint64_t index = 0;
  std::vector<uint64_t> sids;
  for (int i = 0; i < 3; ++i) {
    auto open = MakeEntry(1);
    open.add_commands()->mutable_open_session()->set_ttl_ms(10'000);
    sids.push_back(sm.Apply(++index, open).results[0].session_id);
  }
  auto e = MakeEntry(2);
  for (int i = 0; i < 600; ++i) {
    auto* a = e.add_commands()->mutable_acquire();
    a->set_session_id(sids[static_cast<size_t>(i) % 3]);
    a->set_name("a.b" + std::to_string(i % 200));  // 3 owners share some: PR below
    a->set_mode(ModeToLog(Mode::kPR));
    if (i % 7 == 0) a->set_lock_ttl_ms(5000);
  }
  auto* w = e.add_commands()->mutable_acquire();  // a waiter on an ancestor
  w->set_session_id(sids[0]);
  w->set_owner("x");
  w->set_name("a");
  w->set_mode(ModeToLog(Mode::kEX));
  sm.Apply(++index, e);
  ASSERT_EQ(sm.waiter_count(), 1u);

  const std::string bytes = sm.Snapshot();
  lv::Snapshot parsed;
  ASSERT_TRUE(parsed.ParseFromString(bytes));
  EXPECT_EQ(parsed.locks_size(), 201);
  std::string again;
  ASSERT_TRUE(parsed.SerializeToString(&again));
  EXPECT_EQ(again, bytes);  // exactly what serializing the message gives
  StateMachine copy;
  ASSERT_TRUE(copy.Restore(bytes).ok());
  EXPECT_EQ(copy.Snapshot(), bytes);
  EXPECT_EQ(copy.Digest(), sm.Digest());
}

}  // namespace
}  // namespace latchkey::core
