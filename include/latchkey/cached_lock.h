// Cached, node-level locks with server callbacks (seed 002, "Perseus";
// docs/design/0007-cached-locks.md).
//
// A LockCache holds, per lock name, ONE grant of the server for the whole
// node (this Client's session), shared by the node's threads. For each name
// it tracks three levels:
//   granted locally  the join of the modes local users hold right now;
//   grantable        the mode the server granted the node (cached);
//   requested        the mode asked of the server, while a request is out.
// Local users take modes under the grant and are synchronized among
// themselves with the same compatibility matrix. A local release keeps the
// grant cached (CachePolicy::kKeep) so re-taking a covered mode sends no
// message. When another node asks for a conflicting mode the server pushes a
// BlockingCallback; new local users that need more than the callback leaves
// wait, and once the current local users are done the cache downgrades (or
// releases) the grant, sending the lock value with it when it changed
// locally. A node that never answers keeps the lock until its session ends.
//
// Thread-safety: every method is thread-safe. A LockCache must be destroyed
// before its Client; its destructor releases the cached grants (bounded
// wait). One LockCache per Client (it installs the callback handler).
#pragma once

#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <string>
#include <string_view>

#include "latchkey/client.h"

namespace latchkey {

enum class CachePolicy {
  kKeep,           // keep the grant after the last local user (until called back)
  kReleaseOnIdle,  // give it back as soon as no local user holds it
};

struct LockCacheOptions {
  CachePolicy policy = CachePolicy::kKeep;
  std::string owner{};  // owner id of the node's grants ("" = the session)
};

// What the cache knows about one name (LockCache::State).
struct CachedLockState {
  LockMode granted_locally = LockMode::kNL;
  LockMode grantable = LockMode::kNL;
  LockMode requested = LockMode::kNL;  // kNL when no request is out
  uint32_t local_users = 0;
  bool called_back = false;  // a callback waits for local users to finish
  uint64_t fencing_token = 0;
  uint64_t value_token = 0;
};

struct LockCacheStats {
  uint64_t messages_sent = 0;  // requests this cache sent to the server
  uint64_t local_grants = 0;   // local acquisitions served without a message
  uint64_t callbacks = 0;      // BlockingCallbacks received
  uint64_t handbacks = 0;      // downgrades/releases sent for callbacks or policy
};

class LockCache {
 public:
  explicit LockCache(Client& client, LockCacheOptions options = {});
  ~LockCache();
  LockCache(const LockCache&) = delete;
  LockCache& operator=(const LockCache&) = delete;

  // Takes `mode` locally on `name`; asks the server (one Acquire) only when
  // the cached grant does not cover it. timeout 0 = wait without limit.
  // Errors: those of Client::Acquire, TIMEOUT for a local wait.
  Status Lock(std::string_view name, LockMode mode, std::chrono::milliseconds timeout = {});
  // Drops one local user of `mode`; the grant stays cached (kKeep).
  void Unlock(std::string_view name, LockMode mode);
  // Gives the node's grant back (release, with the value if it changed)
  // once no local user holds it; waits for that up to `timeout` (0 = none).
  Status Uncache(std::string_view name, std::chrono::milliseconds timeout = {});
  LockMode Grantable(std::string_view name) const;
  CachedLockState State(std::string_view name) const;

  // ---- The lock value block (a local copy, delivered with every grant) ----
  // The caller must hold `name` locally. Value() is free.
  Result<std::string> Value(std::string_view name) const;
  // Acknowledged write: the value goes to the server's value block (one
  // SetLockValue) before this returns OK; it survives this node dying.
  // Needs a local write mode (CW, PW, EX).
  Status WriteValue(std::string_view name, std::string_view value);
  // Local write: only this node has it until the grant is handed back (the
  // value travels with the release) or FlushValue; lost if the node dies.
  Status WriteValueLocal(std::string_view name, std::string_view value);
  Status FlushValue(std::string_view name);

  uint64_t messages_sent() const;
  LockCacheStats stats() const;
  Client& client() { return client_; }

  struct Impl;
  struct Res;
  // Used by CachedLock: the per-name record (stable for the cache's life).
  Res* Resolve(std::string_view name);
  // Takes `mode` for a local user that currently holds `replacing` (kNL =
  // nothing), swapping one for the other when it succeeds.
  Status LockRes(Res* r, LockMode mode, std::chrono::milliseconds timeout, bool try_only = false,
                 LockMode replacing = LockMode::kNL);
  void UnlockRes(Res* r, LockMode mode);
  // One local user of `from` now holds the weaker `to` instead (kNL = none).
  void DowngradeRes(Res* r, LockMode from, LockMode to);

 private:
  Client& client_;
  // Shared with the callback handler, which the io thread may still be
  // running while the cache is destroyed.
  std::shared_ptr<Impl> impl_;
};

// One local user's hold on a cached lock (seed 002's GlobalLock), Lockable:
// lock()/try_lock()/unlock() take and drop `mode`, so std::unique_lock and
// std::lock_guard work. upgrade/downgrade move this user's local level.
class CachedLock {
 public:
  CachedLock(LockCache& cache, std::string_view name, LockMode mode = LockMode::kEX);
  ~CachedLock();  // drops this user's level (the grant stays cached)
  CachedLock(const CachedLock&) = delete;
  CachedLock& operator=(const CachedLock&) = delete;

  // Raises this user's level to `mode` (joined with the current one).
  // Synchronous: blocks up to `timeout` (0 = no limit).
  Status Upgrade(LockMode mode, std::chrono::milliseconds timeout = {});
  // Asynchronous: returns at once; the future says how it ended. The
  // CachedLock must outlive the future.
  std::future<Status> UpgradeAsync(LockMode mode, std::chrono::milliseconds timeout = {});
  // Lowers this user's level (kNL = none); never sends a message.
  void Downgrade(LockMode mode);
  // Node level: give the cached grant back once local users are done.
  Status Uncache(std::chrono::milliseconds timeout = {});
  LockMode Grantable() const;
  LockMode level() const { return level_; }

  void lock();  // throws std::runtime_error on failure: Upgrade returns a Status
  bool try_lock();
  void unlock() { Downgrade(LockMode::kNL); }

 private:
  LockCache& cache_;
  std::string name_;
  LockCache::Res* res_;
  LockMode mode_;
  LockMode level_ = LockMode::kNL;
};

}  // namespace latchkey
