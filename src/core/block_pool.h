// A slab allocator for the lock table's per-name blocks and index chunks
// (docs/design/0019-lock-block-pool.md): blocks of up to kMaxBlock bytes are
// carved from 64 KiB slabs of one size class each (multiples of 8 bytes up
// to 256, then of 256), mapped straight from the kernel. Two things it buys
// over malloc:
// - no 8-byte chunk header and no rounding to 16 (an 86-byte block takes 88
//   bytes, not a 96-byte chunk);
// - the blocks of long-lived locks stay out of the malloc heap, so what the
//   Raft log and requests free there forms whole pages malloc_trim can
//   return, instead of holes between lock blocks.
// A slab whose last block is freed is unmapped at once (one empty slab per
// size class is kept to avoid map/unmap churn).
//
// Thread-safety: none; each pool belongs to one lock table (one thread).
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>

namespace latchkey::core {

class BlockPool {
 public:
  // Size classes: multiples of 8 bytes up to 256, then of 256 up to
  // kMaxBlock (the name index's chunks); larger sizes use operator new.
  static constexpr size_t kMaxBlock = 4096;
  static constexpr size_t kSlabBytes = 64 * 1024;  // mapped and aligned to this

  BlockPool() = default;
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;
  // Every block must have been freed (aborts otherwise: the table owns them).
  ~BlockPool();

  // 8-byte aligned storage for `size` bytes; Free must get the same size.
  // Throws std::bad_alloc when the kernel refuses memory, like operator new.
  void* Allocate(size_t size);
  void Free(void* p, size_t size);

  size_t blocks_in_use() const { return blocks_in_use_; }
  size_t slabs_mapped() const { return slabs_mapped_; }
  // Bytes mapped for slabs by every pool in the process (benchmarks).
  static size_t MappedBytesInProcess();

 private:
  struct Slab;
  static constexpr size_t kSmallMax = 256;
  static constexpr size_t kClasses = kSmallMax / 8 + (kMaxBlock - kSmallMax) / 256;
  static size_t ClassOf(size_t size) {
    return size <= kSmallMax ? (size - 1) / 8 : kSmallMax / 8 + (size - kSmallMax - 1) / 256;
  }
  static size_t BlockSize(size_t cls) {
    return cls < kSmallMax / 8 ? (cls + 1) * 8 : kSmallMax + (cls - kSmallMax / 8 + 1) * 256;
  }
  Slab* NewSlab(size_t cls);
  void ReleaseSlab(Slab* s);
  void Unlink(Slab* s);
  void PushPartial(Slab* s);

  Slab* partial_[kClasses] = {};  // slabs of the class with a free block
  size_t blocks_in_use_ = 0;
  size_t slabs_mapped_ = 0;
};

// A std allocator drawing from a BlockPool (operator new when the pool is
// null), for the lock table's long-lived containers.
template <class T>
class PoolAllocator {
 public:
  using value_type = T;
  // Containers moved, swapped or assigned take the other's pool along.
  using propagate_on_container_move_assignment = std::true_type;
  using propagate_on_container_copy_assignment = std::true_type;
  using propagate_on_container_swap = std::true_type;
  PoolAllocator() = default;
  explicit PoolAllocator(BlockPool* pool) : pool_(pool) {}
  template <class U>
  PoolAllocator(const PoolAllocator<U>& o) : pool_(o.pool()) {}
  T* allocate(size_t n) {
    return static_cast<T*>(pool_ != nullptr ? pool_->Allocate(n * sizeof(T))
                                            : ::operator new(n * sizeof(T)));
  }
  void deallocate(T* p, size_t n) {
    if (pool_ != nullptr) {
      pool_->Free(p, n * sizeof(T));
    } else {
      ::operator delete(p);
    }
  }
  BlockPool* pool() const { return pool_; }
  template <class U>
  bool operator==(const PoolAllocator<U>& o) const {
    return pool_ == o.pool();
  }

 private:
  BlockPool* pool_ = nullptr;
};

}  // namespace latchkey::core
