#include "server/watch_index.h"

#include <gtest/gtest.h>

namespace latchkey::server {
namespace {

std::vector<uint64_t> Match(const WatchIndex& idx, std::string_view key) {
  std::vector<uint64_t> out;
  idx.Match(key, &out);
  return out;
}

TEST(WatchIndexTest, ExactKeysAreLookedUpAndPrefixesMatchByPrefix) {
  WatchIndex idx;
  idx.Add(1, Watcher{10, "app/a", false, 0});
  idx.Add(2, Watcher{10, "app/ab", false, 0});
  idx.Add(3, Watcher{11, "app/", true, 0});
  idx.Add(4, Watcher{11, "", true, 0});  // every key
  idx.Add(5, Watcher{12, "app/a", false, 0});
  idx.Add(6, Watcher{12, "b", true, 0});
  EXPECT_EQ(Match(idx, "app/a"), (std::vector<uint64_t>{1, 3, 4, 5}));
  EXPECT_EQ(Match(idx, "app/ab"), (std::vector<uint64_t>{2, 3, 4}));
  EXPECT_EQ(Match(idx, "app"), (std::vector<uint64_t>{4}));
  EXPECT_EQ(Match(idx, "bz"), (std::vector<uint64_t>{4, 6}));
  EXPECT_EQ(idx.CountFor(12), 2u);
  EXPECT_TRUE(idx.Remove(1));
  EXPECT_FALSE(idx.Remove(1));
  EXPECT_EQ(Match(idx, "app/a"), (std::vector<uint64_t>{3, 4, 5}));
  idx.RemoveConnection(11);
  EXPECT_EQ(Match(idx, "app/a"), (std::vector<uint64_t>{5}));
  EXPECT_EQ(idx.CountFor(11), 0u);
  EXPECT_EQ(idx.size(), 3u);
  for (auto it = idx.begin(); it != idx.end();) it = idx.Erase(it);
  EXPECT_TRUE(idx.empty());
  EXPECT_TRUE(Match(idx, "app/ab").empty());
}

TEST(WatchIndexTest, ManyExactWatchersOnlyTheMatchingOnesAreVisited) {
  WatchIndex idx;
  for (uint64_t i = 0; i < 1000; ++i) {
    idx.Add(i + 1, Watcher{i % 7, "k/" + std::to_string(i), false, 0});
  }
  EXPECT_EQ(Match(idx, "k/500"), (std::vector<uint64_t>{501}));
  EXPECT_TRUE(Match(idx, "k/1000").empty());
}

}  // namespace
}  // namespace latchkey::server
