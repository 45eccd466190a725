#include "core/lock_resource.h"

#include <algorithm>
#include <cstring>
#include <new>

#include "common/status.h"

namespace latchkey::core {

static_assert(std::is_trivially_copyable_v<HolderEntry>);
// 64 bytes + the name: an 80-byte pool block for a name of up to 16 bytes.
static_assert(sizeof(Resource) <= 64, "the counters should sit in HolderList's tail padding");

// ---- HolderList ----------------------------------------------------------------

HolderEntry* HolderList::data() {
  return size_ > 1 ? heap_ : std::launder(reinterpret_cast<HolderEntry*>(one_));
}

const HolderEntry* HolderList::data() const {
  return size_ > 1 ? heap_ : std::launder(reinterpret_cast<const HolderEntry*>(one_));
}

HolderList::~HolderList() {
  if (size_ > 1) ::operator delete(heap_);
}

void HolderList::Grow(uint32_t cap) {
  auto* to = static_cast<HolderEntry*>(::operator new(sizeof(HolderEntry) * cap));
  std::memcpy(static_cast<void*>(to), static_cast<const void*>(data()),
              sizeof(HolderEntry) * size_);
  if (size_ > 1) ::operator delete(heap_);
  heap_ = to;
}

HolderList::const_iterator HolderList::find(const OwnerId& who) const {
  const HolderEntry* b = begin();
  const HolderEntry* e = end();
  auto it = std::lower_bound(b, e, who,
                             [](const HolderEntry& h, const OwnerId& w) { return h.first < w; });
  return it != e && it->first == who ? it : e;
}

HolderList::iterator HolderList::find(const OwnerId& who) {
  return const_cast<HolderEntry*>(std::as_const(*this).find(who));
}

HeldGrant& HolderList::Put(const OwnerId& who, const HeldGrant& g) {
  HolderEntry* b = begin();
  HolderEntry* pos = std::lower_bound(
      b, end(), who, [](const HolderEntry& h, const OwnerId& w) { return h.first < w; });
  if (pos != end() && pos->first == who) {
    pos->second = g;
    return pos->second;
  }
  size_t at = static_cast<size_t>(pos - b);
  if (size_ > 0 && size_ == Capacity(size_)) Grow(Capacity(size_ + 1));  // full
  ++size_;  // data() now points where the entries are
  HolderEntry* d = data();
  std::memmove(static_cast<void*>(d + at + 1), static_cast<const void*>(d + at),
               sizeof(HolderEntry) * (size_ - 1 - at));
  HolderEntry* e = std::construct_at(d + at, HolderEntry{who, g});
  return e->second;
}

void HolderList::erase(const_iterator it) {
  HolderEntry* d = data();
  const size_t at = static_cast<size_t>(it - d);
  LATCHKEY_CHECK(at < size_);
  std::memmove(static_cast<void*>(d + at), static_cast<const void*>(d + at + 1),
               sizeof(HolderEntry) * (size_ - at - 1));
  const uint32_t n = size_ - 1;
  if (n >= 1 && Capacity(n) < Capacity(size_)) {  // size_ >= 2: the entries are on the heap
    HolderEntry* heap = heap_;
    if (n == 1) {
      std::memcpy(static_cast<void*>(one_), static_cast<const void*>(heap), sizeof(HolderEntry));
    } else {
      heap_ = static_cast<HolderEntry*>(::operator new(sizeof(HolderEntry) * Capacity(n)));
      std::memcpy(static_cast<void*>(heap_), static_cast<const void*>(heap),
                  sizeof(HolderEntry) * n);
    }
    ::operator delete(heap);
  }
  size_ = n;
}

// ---- Resource --------------------------------------------------------

void Resource::AddWaitersBelow(int d) {
  if (d == 0) return;
  if (!extras_) extras_ = std::make_unique<ResourceExtras>();
  extras_->waiters_below = static_cast<uint32_t>(static_cast<int>(extras_->waiters_below) + d);
  TrimWaiters();  // frees the extras once nothing is left in them
}

std::vector<WaitEntry>& Resource::MutableWaiters() {
  if (!extras_) extras_ = std::make_unique<ResourceExtras>();
  return extras_->waiters;
}

void Resource::TrimWaiters() {
  if (!extras_ || !extras_->waiters.empty()) return;
  if (extras_->value.empty() && extras_->value_token == 0 && extras_->waiters_below == 0) {
    extras_.reset();
  } else {
    std::vector<WaitEntry>().swap(extras_->waiters);
  }
}

const std::string& Resource::value() const {
  static const std::string* const kEmpty = new std::string();
  return extras_ ? extras_->value : *kEmpty;
}

void Resource::SetValueBlock(std::string v, uint64_t token) {
  if (!extras_) extras_ = std::make_unique<ResourceExtras>();
  extras_->value = std::move(v);
  extras_->value_token = token;
}

Resource* Resource::Create(BlockPool& pool, std::string_view name) {
  void* mem = pool.Allocate(sizeof(Resource) + name.size());
  auto* r = new (mem) Resource(static_cast<uint32_t>(name.size()));
  std::memcpy(reinterpret_cast<char*>(r + 1), name.data(), name.size());
  return r;
}

void Resource::Destroy(BlockPool& pool, Resource* r) {
  const size_t size = sizeof(Resource) + r->name_len_;
  r->~Resource();
  pool.Free(static_cast<void*>(r), size);
}

// ---- NameIndex ------------------------------------------------------------------

namespace {
// Chunks split at this size; ~1M names make ~5 k chunks.
constexpr size_t kChunkMax = 256;

bool NameLess(const Resource* r, std::string_view name) {
  return r->name() < name;
}
}  // namespace

size_t NameIndex::ChunkFor(std::string_view name) const {
  const auto c = std::lower_bound(
      lasts_.begin(), lasts_.end(), name,
      [](const std::string& last, std::string_view n) { return std::string_view(last) < n; });
  return static_cast<size_t>(c - lasts_.begin());
}

NameIndex::iterator NameIndex::Bound(std::string_view name) const {
  // The first chunk whose last name is >= name holds the bound.
  const size_t ci = ChunkFor(name);
  if (ci == chunks_.size()) return {this, chunks_.size(), 0};
  const Chunk& c = chunks_[ci];
  auto p = std::lower_bound(c.begin(), c.end(), name, NameLess);
  return {this, ci, static_cast<size_t>(p - c.begin())};
}

NameIndex::iterator NameIndex::find(std::string_view name) {
  iterator it = Bound(name);
  return it != end() && it.name() == name ? it : end();
}

NameIndex::const_iterator NameIndex::find(std::string_view name) const {
  const_iterator it = Bound(name);
  return it != end() && it.name() == name ? it : end();
}

Resource* NameIndex::Find(std::string_view name) const {
  iterator it = Bound(name);
  return it != iterator(this, chunks_.size(), 0) && it.name() == name ? it.get() : nullptr;
}

void NameIndex::Insert(Resource* r) {
  const std::string_view name = r->name();
  if (chunks_.empty()) {
    chunks_.emplace_back(chunks_.get_allocator()).push_back(r);
    lasts_.emplace_back(name);
    ++size_;
    return;
  }
  size_t ci = ChunkFor(name);
  if (ci == chunks_.size()) --ci;  // past every name: append to the last chunk
  auto c = chunks_.begin() + static_cast<ptrdiff_t>(ci);
  auto p = std::lower_bound(c->begin(), c->end(), name, NameLess);
  if (p != c->end() && (*p)->name() == name) return;
  if (p == c->end()) lasts_[ci] = name;
  c->insert(p, r);
  ++size_;
  if (c->size() > kChunkMax) {
    Chunk upper(c->begin() + static_cast<ptrdiff_t>(c->size() / 2), c->end(), c->get_allocator());
    c->resize(c->size() / 2);
    c->shrink_to_fit();  // ascending inserts never come back here: no slack
    upper.reserve(kChunkMax + 1);
    chunks_.insert(c + 1, std::move(upper));
    lasts_.insert(lasts_.begin() + static_cast<ptrdiff_t>(ci),
                  std::string(chunks_[ci].back()->name()));
  }
}

Resource* NameIndex::Erase(std::string_view name) {
  iterator it = Bound(name);
  if (it == end() || it.name() != name) return nullptr;
  Resource* r = it.get();
  const size_t ci = it.c_;
  auto c = chunks_.begin() + static_cast<ptrdiff_t>(ci);
  auto last = lasts_.begin() + static_cast<ptrdiff_t>(ci);
  c->erase(c->begin() + static_cast<ptrdiff_t>(it.p_));
  --size_;
  if (c->empty()) {
    chunks_.erase(c);
    lasts_.erase(last);
  } else if (c + 1 != chunks_.end() && c->size() + (c + 1)->size() <= kChunkMax / 2) {
    c->insert(c->end(), (c + 1)->begin(), (c + 1)->end());  // keep chunks from thinning out
    chunks_.erase(c + 1);
    *last = std::move(*(last + 1));
    lasts_.erase(last + 1);
  } else if (it.p_ == c->size()) {  // the chunk's last name went
    *last = c->back()->name();
  }
  return r;
}

void NameIndex::TakeEntries(NameIndex& o) noexcept {
  chunks_ = std::move(o.chunks_);
  lasts_ = std::move(o.lasts_);
  size_ = o.size_;
  o.chunks_.clear();
  o.lasts_.clear();
  o.size_ = 0;
}

OwnedNameIndex::OwnedNameIndex(OwnedNameIndex&& o) noexcept : NameIndex(o.pool_), pool_(o.pool_) {
  TakeEntries(o);
}

OwnedNameIndex& OwnedNameIndex::operator=(OwnedNameIndex&& o) noexcept {
  if (this != &o) {
    Clear();
    pool_ = o.pool_;
    TakeEntries(o);
  }
  return *this;
}

Resource* OwnedNameIndex::Add(std::string_view name) {
  Resource* r = Resource::Create(*pool_, name);
  Insert(r);
  return r;
}

void OwnedNameIndex::Remove(std::string_view name) {
  if (Resource* r = Erase(name)) Resource::Destroy(*pool_, r);
}

void OwnedNameIndex::Clear() {
  for (auto& c : chunks_) {
    for (Resource* r : c) Resource::Destroy(*pool_, r);
  }
  chunks_.clear();
  lasts_.clear();
  size_ = 0;
}

}  // namespace latchkey::core
