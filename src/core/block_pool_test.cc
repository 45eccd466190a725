#include "core/block_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <vector>

namespace latchkey::core {
namespace {

struct Block {
  char* p;
  size_t size;
  char fill;
};

TEST(BlockPoolTest, BlocksAreDisjointAlignedAndKeepTheirBytes) {
  BlockPool pool;
  std::mt19937 rng(11);
  std::vector<Block> live;
  for (int round = 0; round < 20000; ++round) {
    if (!live.empty() && rng() % 3 == 0) {
      const size_t i = rng() % live.size();
      Block b = live[i];
      for (size_t k = 0; k < b.size; ++k) ASSERT_EQ(b.p[k], b.fill) << "block overwritten";
      pool.Free(b.p, b.size);
      live[i] = live.back();
      live.pop_back();
      continue;
    }
    // Lock blocks, index chunks, and some above kMaxBlock (operator new).
    const size_t size = 1 + (rng() % 5 == 0 ? rng() % 5000 : rng() % 300);
    auto* p = static_cast<char*>(pool.Allocate(size));
    ASSERT_EQ(reinterpret_cast<uintptr_t>(p) % 8, 0u);
    const char fill = static_cast<char>(rng());
    std::memset(p, fill, size);
    live.push_back({p, size, fill});
  }
  // No two live blocks overlap.
  std::sort(live.begin(), live.end(), [](const Block& a, const Block& b) { return a.p < b.p; });
  for (size_t i = 1; i < live.size(); ++i) {
    ASSERT_LE(live[i - 1].p + live[i - 1].size, live[i].p);
  }
  for (const Block& b : live) pool.Free(b.p, b.size);
  EXPECT_EQ(pool.blocks_in_use(), 0u);
}

TEST(BlockPoolTest, SlabsGoBackToTheKernelWhenTheirBlocksAreFreed) {
  BlockPool pool;
  const size_t before = BlockPool::MappedBytesInProcess();
  std::vector<void*> blocks;
  for (int i = 0; i < 100000; ++i) blocks.push_back(pool.Allocate(88));
  // 88-byte blocks packed: ~745 per 64 KiB slab, no malloc chunk overhead.
  const size_t slabs = pool.slabs_mapped();
  EXPECT_EQ(slabs, (100000 + 743) / 744);
  EXPECT_EQ(BlockPool::MappedBytesInProcess() - before, slabs * BlockPool::kSlabBytes);
  for (void* p : blocks) pool.Free(p, 88);
  // One empty slab stays for the next lock of that size; the rest are gone.
  EXPECT_EQ(pool.slabs_mapped(), 1u);
  EXPECT_EQ(BlockPool::MappedBytesInProcess() - before, BlockPool::kSlabBytes);
  // A block taken and freed again and again reuses that slab.
  for (int i = 0; i < 1000; ++i) pool.Free(pool.Allocate(88), 88);
  EXPECT_EQ(pool.slabs_mapped(), 1u);
}

TEST(BlockPoolTest, SizesShareASlabOnlyWithinTheirClass) {
  BlockPool pool;
  void* a = pool.Allocate(81);
  void* b = pool.Allocate(88);  // same class as 81
  void* c = pool.Allocate(89);  // the next class: another slab
  const auto slab = [](void* p) {
    return reinterpret_cast<uintptr_t>(p) & ~(uintptr_t{BlockPool::kSlabBytes} - 1);
  };
  EXPECT_EQ(slab(a), slab(b));
  EXPECT_NE(slab(a), slab(c));
  EXPECT_EQ(reinterpret_cast<char*>(b) - reinterpret_cast<char*>(a), 88);
  EXPECT_EQ(pool.slabs_mapped(), 2u);
  // Above 256 bytes the classes are 256 bytes apart: 2 056 and 2 304 share.
  void* d = pool.Allocate(2056);
  void* e = pool.Allocate(2304);
  EXPECT_EQ(slab(d), slab(e));
  EXPECT_EQ(reinterpret_cast<char*>(e) - reinterpret_cast<char*>(d), 2304);
  EXPECT_EQ(pool.slabs_mapped(), 3u);
  pool.Free(a, 81);
  pool.Free(b, 88);
  pool.Free(c, 89);
  pool.Free(d, 2056);
  pool.Free(e, 2304);
}

}  // namespace
}  // namespace latchkey::core
