// The compact storage of the lock table (docs/design/0015-compact-lock-table.md):
// one heap block per lock name holding the name itself, the single-holder
// case inline, and one pointer for the rarer parts (waiters, value block); a
// sorted, chunked index of those blocks (ascending name order, ~11 bytes an
// entry) used both for the table and for each owner's held locks.
//
// Thread-safety: none (owned by the LockTable on one thread).
#pragma once

#include <bit>
#include <compare>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/block_pool.h"
#include "core/modes.h"

namespace latchkey::core {

struct OwnerId {
  uint64_t session = 0;
  std::string owner;
  auto operator<=>(const OwnerId&) const = default;
  bool operator==(const OwnerId&) const = default;
};

struct HeldGrant {
  uint64_t fencing_token = 0;
  uint64_t granted_at_ms = 0;
  uint64_t lock_ttl_ms = 0;
  uint32_t count = 1;  // reentrant acquisitions outstanding
  Mode mode = Mode::kEX;
  // Cached lock: the holder takes blocking callbacks (docs/design/0007).
  bool cacheable = false;
  // downgrade_to of the last callback sent for this grant (nullopt = none);
  // a callback is sent again only for a weaker downgrade_to.
  std::optional<Mode> callback_sent;
};

struct WaitEntry {
  OwnerId who;
  Mode mode = Mode::kEX;  // for a conversion: the mode wanted
  uint64_t seq = 0;       // global arrival order
  bool conversion = false;
  bool reentrant = false;
  uint64_t queued_at_ms = 0;
  uint64_t lock_ttl_ms = 0;
  // Multi-lock: all waits of one AcquireMany share a group (the seq of its
  // first part) and are granted together or not at all. 0 = none.
  uint64_t group = 0;
  bool set_value = false;  // write `value` into the lock value on grant
  std::string value;
  bool cacheable = false;  // the grant will take blocking callbacks
};

// One explicit grant. `first` refers to the owner id interned once in the
// table (it lives as long as the owner holds or waits for anything).
struct HolderEntry {
  const OwnerId& first;
  HeldGrant second;
};

// The grants on one name in ascending OwnerId order (as the std::map it
// replaces iterated). One grant is stored inline; more spill to the heap.
class HolderList {
 public:
  using value_type = HolderEntry;
  using iterator = HolderEntry*;
  using const_iterator = const HolderEntry*;

  HolderList() = default;
  HolderList(const HolderList&) = delete;
  HolderList& operator=(const HolderList&) = delete;
  ~HolderList();

  iterator begin() { return data(); }
  iterator end() { return data() + size_; }
  const_iterator begin() const { return data(); }
  const_iterator end() const { return data() + size_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  iterator find(const OwnerId& who);
  const_iterator find(const OwnerId& who) const;
  size_t count(const OwnerId& who) const { return find(who) != end() ? 1 : 0; }
  // Sets the grant of `who` (added in order if absent). `who` must be the
  // interned id and outlive the entry.
  HeldGrant& Put(const OwnerId& who, const HeldGrant& g);
  void erase(const_iterator it);

 private:
  HolderEntry* data();
  const HolderEntry* data() const;
  // The heap array's capacity follows from the size (no field for it): one
  // entry is inline; more live in a heap array of bit_ceil(size) entries,
  // regrown on the way up and shrunk on the way down at powers of two.
  static uint32_t Capacity(uint32_t n) { return n <= 1 ? 1 : std::bit_ceil(n); }
  void Grow(uint32_t cap);  // moves the size_ entries to a heap array of `cap`
  union {
    alignas(HolderEntry) unsigned char one_[sizeof(HolderEntry)];
    HolderEntry* heap_;
  };
  uint32_t size_ = 0;  // > 1: heap_
};

// The rarer parts of a lock, allocated on first use: the waiting requests
// (contended locks) and the value block (docs/design/0007). Most held locks
// have neither.
struct ResourceExtras {
  std::vector<WaitEntry> waiters;  // ascending seq
  uint32_t waiters_below = 0;      // waiters strictly below this name
  // Lock value block: written by a holder in a write mode, kept across
  // grants (it survives release), versioned by the token that wrote it.
  std::string value;
  uint64_t value_token = 0;
};

// Everything the table keeps for one name (an explicit lock, or an ancestor
// counting what is below it). Allocated by Create with the name bytes right
// behind it; never copied or moved.
struct Resource {
  // Explicit grants on this name. No unique address: the counters below
  // sit in its tail padding (64 bytes in all, static_assert in the .cc).
  [[no_unique_address]] HolderList holders;
  // Grants strictly below this name, by implied intention (CR, CW).
  uint32_t below_cr = 0;
  uint32_t below_cw = 0;

 private:
  uint32_t name_len_ = 0;
  std::unique_ptr<ResourceExtras> extras_;

 public:
  std::string_view name() const { return {reinterpret_cast<const char*>(this + 1), name_len_}; }

  // The waiting requests, ascending seq (empty when nobody waits).
  std::span<const WaitEntry> waiters() const {
    return extras_ ? std::span<const WaitEntry>(extras_->waiters) : std::span<const WaitEntry>();
  }
  std::span<WaitEntry> waiters() {
    return extras_ ? std::span<WaitEntry>(extras_->waiters) : std::span<WaitEntry>();
  }
  // For the LockTable: the queue itself, created on demand. TrimWaiters
  // frees what an empty queue holds (and the extras once nothing is left).
  std::vector<WaitEntry>& MutableWaiters();
  void TrimWaiters();

  // Waiters strictly below this name (kept in the extras: only ancestors of
  // contended locks have any).
  uint32_t waiters_below() const { return extras_ ? extras_->waiters_below : 0; }
  void AddWaitersBelow(int d);

  const std::string& value() const;
  uint64_t value_token() const { return extras_ ? extras_->value_token : 0; }
  void SetValueBlock(std::string v, uint64_t token);

  bool idle() const {
    return holders.empty() && waiters().empty() && below_cr == 0 && below_cw == 0 &&
           waiters_below() == 0 && value().empty();
  }

  // The block (Resource plus name bytes) comes from `pool`; Destroy must get
  // the same pool.
  static Resource* Create(BlockPool& pool, std::string_view name);
  static void Destroy(BlockPool& pool, Resource* r);
  Resource(const Resource&) = delete;
  Resource& operator=(const Resource&) = delete;

 private:
  explicit Resource(uint32_t name_len) : name_len_(name_len) {}
  ~Resource() = default;
};

// A lock name stored in its Resource: a std::string_view that also converts
// implicitly to std::string and concatenates, as the std::map key it
// replaces did.
class LockName : public std::string_view {
 public:
  explicit LockName(std::string_view v) : std::string_view(v) {}
  operator std::string() const { return std::string(view()); }
  std::string_view view() const { return *this; }
  friend std::string operator+(const std::string& a, const LockName& b) {
    return a + std::string(b.view());
  }
  friend std::string operator+(const char* a, const LockName& b) {
    return a + std::string(b.view());
  }
  friend std::string operator+(const LockName& a, const std::string& b) {
    return std::string(a.view()) + b;
  }
  friend std::string operator+(const LockName& a, const char* b) {
    return std::string(a.view()) + b;
  }
};

// Resources in ascending name order: a list of sorted chunks of pointers.
// find / insert / erase cost O(log n) name comparisons; iteration yields
// pairs (LockName, Resource&) like the std::map it replaces. It does not own
// the resources (LockTable's OwnedNameIndex does). Its chunks come from
// `pool` (operator new if null), which must outlive the index.
class NameIndex {
  template <bool kConst>
  class Iter {
   public:
    using Res = std::conditional_t<kConst, const Resource, Resource>;
    using Ref = std::pair<LockName, Res&>;
    struct Arrow {
      Ref v;
      const Ref* operator->() const { return &v; }
    };
    Iter() = default;
    Iter(const NameIndex* idx, size_t c, size_t p) : idx_(idx), c_(c), p_(p) {}
    template <bool B>
    requires(kConst && !B) Iter(const Iter<B>& o) : idx_(o.idx_), c_(o.c_), p_(o.p_) {}
    Res* get() const { return idx_->chunks_[c_][p_]; }
    std::string_view name() const { return get()->name(); }
    Ref operator*() const { return {LockName(name()), *get()}; }
    Arrow operator->() const { return {**this}; }
    Iter& operator++() {
      if (++p_ == idx_->chunks_[c_].size()) {
        ++c_;
        p_ = 0;
      }
      return *this;
    }
    bool operator==(const Iter&) const = default;

   private:
    template <bool>
    friend class Iter;
    friend class NameIndex;
    const NameIndex* idx_ = nullptr;
    size_t c_ = 0;
    size_t p_ = 0;
  };

 public:
  using iterator = Iter<false>;
  using const_iterator = Iter<true>;

  explicit NameIndex(BlockPool* pool = nullptr) : chunks_(ChunkAlloc(pool)) {}

  iterator begin() { return {this, 0, 0}; }
  iterator end() { return {this, chunks_.size(), 0}; }
  const_iterator begin() const { return {this, 0, 0}; }
  const_iterator end() const { return {this, chunks_.size(), 0}; }
  iterator lower_bound(std::string_view name) { return Bound(name); }
  const_iterator lower_bound(std::string_view name) const { return Bound(name); }
  iterator find(std::string_view name);
  const_iterator find(std::string_view name) const;
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  size_t count(std::string_view name) const { return Find(name) != nullptr ? 1 : 0; }

  Resource* Find(std::string_view name) const;
  // Adds r (no-op if its name is present already).
  void Insert(Resource* r);
  // Removes the entry of `name`; returns it (null if absent).
  Resource* Erase(std::string_view name);

 protected:
  using Chunk = std::vector<Resource*, PoolAllocator<Resource*>>;
  using ChunkAlloc = PoolAllocator<Chunk>;
  std::vector<Chunk, ChunkAlloc> chunks_;  // each non-empty, sorted, in order
  // lasts_[i] is a copy of chunks_[i].back()->name(): the search for a
  // name's chunk reads this contiguous array instead of one Resource (a
  // cache miss each) per step. About 1 byte per name (design 0015).
  std::vector<std::string> lasts_;
  size_t size_ = 0;

  // Takes o's entries (o is left empty); this index must be empty.
  void TakeEntries(NameIndex& o) noexcept;

 private:
  // The index of the first chunk whose last name is >= name (size() if none).
  size_t ChunkFor(std::string_view name) const;
  iterator Bound(std::string_view name) const;
};

// The table's index: creates its resources and destroys them; move-only.
class OwnedNameIndex : public NameIndex {
 public:
  // Resources and chunks come from `pool`, which must outlive the index.
  explicit OwnedNameIndex(BlockPool* pool) : NameIndex(pool), pool_(pool) {}
  OwnedNameIndex(OwnedNameIndex&& o) noexcept;
  OwnedNameIndex& operator=(OwnedNameIndex&& o) noexcept;
  ~OwnedNameIndex() { Clear(); }

  // Creates and indexes the resource for `name` (which must be absent).
  Resource* Add(std::string_view name);
  // Unindexes and destroys the resource for `name`, if any.
  void Remove(std::string_view name);

 private:
  void Clear();
  BlockPool* pool_;
};

}  // namespace latchkey::core
