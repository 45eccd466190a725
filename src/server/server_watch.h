// Watches and pub/sub subscriptions (design 0012): per-connection, off-log
// state of every node. Any node serves them from its own apply path, so a
// watch on a follower sees the same (revision, key)-ordered stream, only
// later.
//
// Thread-safety: none (raft loop thread).
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "server/watch_index.h"

namespace latchkey::server {

inline constexpr size_t kMaxWatchesPerConnection = 1000;
inline constexpr size_t kMaxWatches = 100'000;
inline constexpr size_t kMaxSubscriptionsPerConnection = 1000;
// Events are pushed in frames of at most this many payload bytes (a single
// larger object still goes alone; values are <= 512 KiB).
inline constexpr size_t kWatchPushBytes = 256 * 1024;

// Lock watches (WatchLock): every one is checked after each applied entry,
// hence the small limits.
inline constexpr size_t kMaxLockWatchesPerConnection = 100;
inline constexpr size_t kMaxLockWatches = 1000;

struct LockWatcher {
  uint64_t conn_id = 0;
  std::string name;
  std::string last;  // the state last pushed, serialized without its server time
};

struct Subscriber {
  uint64_t conn_id = 0;
  std::string namespace_name;
};

// Entries of `m` (id -> something with a conn_id) that belong to conn_id.
size_t CountFor(uint64_t conn_id, const auto& m) {
  size_t n = 0;
  for (const auto& [id, x] : m) n += x.conn_id == conn_id ? 1 : 0;
  return n;
}

struct WatchServerState {
  uint64_t next_id = 1;
  WatchIndex watchers;  // by watch id, indexed by key
  // Every live change up to this revision went out to every watch: a
  // watch's next revision is max(its own, synced_revision + 1).
  uint64_t synced_revision = 0;
  uint64_t NextRevision(const Watcher& w) const {
    return w.next_revision > synced_revision + 1 ? w.next_revision : synced_revision + 1;
  }
  std::map<uint64_t, Subscriber> subscribers;     // by subscription id
  std::map<uint64_t, LockWatcher> lock_watchers;  // by watch id (ids shared with watchers)
};

}  // namespace latchkey::server
