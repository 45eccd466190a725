// Owned state (seed 000, "WADI"; docs/design/0007-cached-locks.md): a
// key -> state map where each key's state lives with the node that uses it.
//
// - Keys hash into a fixed number of buckets (FNV-1a 32 of the key, mod
//   `buckets`); key K of bucket B is guarded by the lock
//   "<prefix>.<B>.<K>" (K as is when it is a valid name segment, else
//   "=" + hex). The server is the bucket owner: ListLocks("<prefix>.<B>")
//   and GetLock show which session owns each key (Owner() wraps that).
// - The node that touches a key takes its lock EX through a LockCache and
//   keeps it cached: it is the state owner. Touching an absent key makes the
//   caller its owner. A present key owned elsewhere migrates: the server
//   calls the owner back, the owner releases once its local users are done
//   (with the state if it changed only locally), and the requester is
//   granted the lock with the state in the same reply. An owner that already
//   holds the key pays no round trip for Read.
// - Acknowledged writes: Write/Remove/Update return OK only after the new
//   state is in the server's (replicated, durable) value block. If the owner
//   dies, its lease ends, its lock is released and the next node gets the
//   last acknowledged state; a half-transferred state never appears because
//   the state travels inside one log entry (release-with-value or
//   SetLockValue). WriteLocal is the unacknowledged variant: it costs no
//   message and is handed over with the lock, but is lost with its node.
// - Value encoding in the lock value block: "" = absent, else "\x01" + state
//   (so an empty state differs from an absent key). At most 64 KiB - 1.
//
// Thread-safety: thread-safe; calls on one key from many local threads are
// serialized by the key's local lock. Destroy before the Client.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "latchkey/cached_lock.h"
#include "latchkey/client.h"

namespace latchkey {

struct StateStoreOptions {
  uint32_t buckets = 64;
  std::string prefix = "state";
  CachePolicy policy = CachePolicy::kKeep;
  // How long an operation waits for the key's current owner to hand it over.
  std::chrono::milliseconds timeout{30'000};
};

struct StateOwner {
  uint32_t bucket = 0;
  std::string lock_name;
  bool owned = false;  // some session holds the key right now
  uint64_t session_id = 0;
  std::string client_name;
  uint64_t fencing_token = 0;
  bool present = false;  // the server's copy holds a state
};

class StateStore {
 public:
  using UpdateFn = std::function<std::optional<std::string>(const std::optional<std::string>&)>;

  explicit StateStore(Client& client, StateStoreOptions options = {});
  ~StateStore();

  // The state, or nullopt when the key is absent.
  Result<std::optional<std::string>> Read(std::string_view key);
  // Acknowledged when OK (see above).
  Status Write(std::string_view key, std::string_view state);
  Status Remove(std::string_view key);  // = Write of "absent"
  // Read-modify-write under the key's lock; fn returns the new state
  // (nullopt = remove). Returns what was written; acknowledged when OK.
  Result<std::optional<std::string>> Update(std::string_view key, const UpdateFn& fn);
  // Unacknowledged write: kept on this node, handed over with the lock.
  Status WriteLocal(std::string_view key, std::string_view state);

  uint32_t BucketOf(std::string_view key) const;
  std::string LockName(std::string_view key) const;
  // Who owns the key, from the server (one GetLock).
  Result<StateOwner> Owner(std::string_view key);
  LockCache& cache() { return *cache_; }

 private:
  Client& client_;
  StateStoreOptions options_;
  std::unique_ptr<LockCache> cache_;
};

}  // namespace latchkey
