// WatchIndex: the watches of a node, indexed so that a change is matched to
// its watchers without scanning them all (design 0013, "exact-key watch
// index"): exact-key watches are looked up by key; prefix watches are kept
// per distinct prefix and scanned (there are few distinct prefixes in
// practice; 1000 exact-key watchers cost one lookup per change, not 1000
// comparisons).
//
// Thread-safety: none (raft loop thread).
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace latchkey::server {

struct Watcher {
  uint64_t conn_id = 0;
  std::string key;
  bool prefix = false;
  uint64_t next_revision = 0;  // everything below was delivered (see NextRevision)
};

class WatchIndex {
 public:
  using Map = std::map<uint64_t, Watcher>;

  void Add(uint64_t id, Watcher w);
  // Returns whether it existed.
  bool Remove(uint64_t id);
  Map::iterator Erase(Map::iterator it);
  void RemoveConnection(uint64_t conn_id);
  Watcher* Find(uint64_t id);
  const Watcher* Find(uint64_t id) const;
  // Appends the ids of every watch matching `key` (ascending id).
  void Match(std::string_view key, std::vector<uint64_t>* out) const;

  bool empty() const { return watchers_.empty(); }
  size_t size() const { return watchers_.size(); }
  size_t CountFor(uint64_t conn_id) const;
  Map::iterator begin() { return watchers_.begin(); }
  Map::iterator end() { return watchers_.end(); }
  Map::const_iterator begin() const { return watchers_.begin(); }
  Map::const_iterator end() const { return watchers_.end(); }

 private:
  void Unindex(uint64_t id, const Watcher& w);

  Map watchers_;
  std::map<std::string, std::set<uint64_t>, std::less<>> exact_;   // key -> ids
  std::map<std::string, std::set<uint64_t>, std::less<>> prefix_;  // prefix -> ids
  std::map<uint64_t, size_t> per_conn_;
};

}  // namespace latchkey::server
