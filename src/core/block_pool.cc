#include "core/block_pool.h"

#include <sys/mman.h>

#include <atomic>
#include <cstdint>
#include <new>

#include "common/status.h"

namespace latchkey::core {

namespace {
std::atomic<size_t> g_mapped_bytes{0};

// kSlabBytes of fresh zero pages aligned to kSlabBytes: map twice the size
// and unmap the unaligned head and the tail.
void* MapAlignedSlab() {
  const size_t n = BlockPool::kSlabBytes;
  void* raw = mmap(nullptr, 2 * n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  const auto start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (start + n - 1) & ~(uintptr_t{n} - 1);
  if (aligned > start) munmap(raw, aligned - start);
  if (aligned + n < start + 2 * n) {
    munmap(reinterpret_cast<void*>(aligned + n), start + 2 * n - (aligned + n));
  }
  g_mapped_bytes.fetch_add(n, std::memory_order_relaxed);
  return reinterpret_cast<void*>(aligned);
}

void UnmapSlab(void* p) {
  munmap(p, BlockPool::kSlabBytes);
  g_mapped_bytes.fetch_sub(BlockPool::kSlabBytes, std::memory_order_relaxed);
}
}  // namespace

// At the start of each slab; blocks follow it. A free block holds the
// pointer to the next free block of its slab.
struct BlockPool::Slab {
  void* free_list = nullptr;  // blocks freed in this slab
  uint32_t bump = 0;          // offset of the first never-used block
  uint32_t live = 0;          // blocks handed out
  uint32_t block = 0;         // block size of the class
  uint32_t cls = 0;
  Slab* prev = nullptr;  // in partial_[cls] exactly while HasRoom()
  Slab* next = nullptr;

  bool HasRoom() const { return free_list != nullptr || bump + block <= kSlabBytes; }
};

namespace {
constexpr uint32_t kFirstBlock = 64;  // room for the Slab header
}

BlockPool::~BlockPool() {
  LATCHKEY_CHECK(blocks_in_use_ == 0);
  for (Slab*& head : partial_) {
    while (head != nullptr) {
      Slab* s = head;
      head = s->next;
      UnmapSlab(s);
    }
  }
}

size_t BlockPool::MappedBytesInProcess() {
  return g_mapped_bytes.load(std::memory_order_relaxed);
}

BlockPool::Slab* BlockPool::NewSlab(size_t cls) {
  static_assert(sizeof(Slab) <= kFirstBlock);
  auto* s = new (MapAlignedSlab()) Slab();
  s->block = static_cast<uint32_t>(BlockSize(cls));
  s->cls = static_cast<uint32_t>(cls);
  s->bump = kFirstBlock;
  ++slabs_mapped_;
  PushPartial(s);
  return s;
}

void BlockPool::PushPartial(Slab* s) {
  s->prev = nullptr;
  s->next = partial_[s->cls];
  if (s->next != nullptr) s->next->prev = s;
  partial_[s->cls] = s;
}

void BlockPool::Unlink(Slab* s) {
  if (s->prev != nullptr) {
    s->prev->next = s->next;
  } else {
    partial_[s->cls] = s->next;
  }
  if (s->next != nullptr) s->next->prev = s->prev;
  s->prev = s->next = nullptr;
}

void BlockPool::ReleaseSlab(Slab* s) {
  Unlink(s);
  s->~Slab();
  UnmapSlab(s);
  --slabs_mapped_;
}

void* BlockPool::Allocate(size_t size) {
  if (size == 0 || size > kMaxBlock) return ::operator new(size == 0 ? 1 : size);
  const size_t cls = ClassOf(size);
  Slab* s = partial_[cls];
  if (s == nullptr) s = NewSlab(cls);
  void* p;
  if (s->free_list != nullptr) {
    p = s->free_list;
    s->free_list = *static_cast<void**>(p);
  } else {
    p = reinterpret_cast<char*>(s) + s->bump;
    s->bump += s->block;
  }
  ++s->live;
  ++blocks_in_use_;
  if (!s->HasRoom()) Unlink(s);
  return p;
}

void BlockPool::Free(void* p, size_t size) {
  if (p == nullptr) return;
  if (size == 0 || size > kMaxBlock) {
    ::operator delete(p);
    return;
  }
  auto* s = reinterpret_cast<Slab*>(reinterpret_cast<uintptr_t>(p) & ~(uintptr_t{kSlabBytes} - 1));
  LATCHKEY_CHECK(s->cls == ClassOf(size) && s->live > 0);
  const bool was_full = !s->HasRoom();  // then it is not in partial_
  *static_cast<void**>(p) = s->free_list;
  s->free_list = p;
  --s->live;
  --blocks_in_use_;
  if (was_full) PushPartial(s);
  // An empty slab goes back to the kernel unless it is its class's only one
  // with room (kept so that one lock taken and released repeatedly does not
  // map and unmap a slab each time).
  if (s->live == 0 && (s->prev != nullptr || s->next != nullptr)) ReleaseSlab(s);
}

}  // namespace latchkey::core
