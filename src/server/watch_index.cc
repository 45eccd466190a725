#include "server/watch_index.h"

#include <algorithm>

namespace latchkey::server {

void WatchIndex::Add(uint64_t id, Watcher w) {
  Remove(id);
  (w.prefix ? prefix_ : exact_)[w.key].insert(id);
  ++per_conn_[w.conn_id];
  watchers_.emplace(id, std::move(w));
}

void WatchIndex::Unindex(uint64_t id, const Watcher& w) {
  auto& index = w.prefix ? prefix_ : exact_;
  auto it = index.find(w.key);
  if (it != index.end()) {
    it->second.erase(id);
    if (it->second.empty()) index.erase(it);
  }
  auto c = per_conn_.find(w.conn_id);
  if (c != per_conn_.end() && --c->second == 0) per_conn_.erase(c);
}

bool WatchIndex::Remove(uint64_t id) {
  auto it = watchers_.find(id);
  if (it == watchers_.end()) return false;
  Erase(it);
  return true;
}

WatchIndex::Map::iterator WatchIndex::Erase(Map::iterator it) {
  Unindex(it->first, it->second);
  return watchers_.erase(it);
}

void WatchIndex::RemoveConnection(uint64_t conn_id) {
  if (!per_conn_.count(conn_id)) return;
  for (auto it = watchers_.begin(); it != watchers_.end();) {
    it = it->second.conn_id == conn_id ? Erase(it) : std::next(it);
  }
}

Watcher* WatchIndex::Find(uint64_t id) {
  auto it = watchers_.find(id);
  return it == watchers_.end() ? nullptr : &it->second;
}

const Watcher* WatchIndex::Find(uint64_t id) const {
  auto it = watchers_.find(id);
  return it == watchers_.end() ? nullptr : &it->second;
}

size_t WatchIndex::CountFor(uint64_t conn_id) const {
  auto it = per_conn_.find(conn_id);
  return it == per_conn_.end() ? 0 : it->second;
}

void WatchIndex::Match(std::string_view key, std::vector<uint64_t>* out) const {
  const size_t first = out->size();
  if (auto it = exact_.find(key); it != exact_.end()) {
    out->insert(out->end(), it->second.begin(), it->second.end());
  }
  // Prefixes of `key` sort at or before it; walk the distinct prefixes
  // ("" matches everything).
  for (const auto& [p, ids] : prefix_) {
    if (p > key) break;
    if (key.compare(0, p.size(), p) == 0) out->insert(out->end(), ids.begin(), ids.end());
  }
  std::sort(out->begin() + static_cast<std::ptrdiff_t>(first), out->end());
}

}  // namespace latchkey::server
