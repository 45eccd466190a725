// Watches and configuration mirrors (design 0012).
//
// latchkey::Watch streams every change of a key (or of every key under a
// prefix) from a revision: first the kept history, then live changes, in
// (revision, key) order, with no gaps and no duplicates. It has a connection
// of its own (no session) to any node of the cluster; when that connection
// drops, Next() reconnects (trying the endpoints in order) and resumes where
// it stopped. A watch whose start revision is at or below the server's
// compaction point fails with COMPACTED: read the current state (Find) and
// watch from the revision that read reports + 1. ObjectMirror does exactly
// that for a prefix and calls back on every change.
//
// Events: an Object with key, state (kAbsent = removed: deleted, expired or
// its reservation ended), value, mod_revision (the change's revision),
// create_revision and version. TTL fields are not set.
//
// Thread-safety: one thread calls Next at a time; DropConnectionForTesting
// may be called from any thread. ObjectMirror: every method is thread-safe;
// callbacks run on its own thread, one at a time, in revision order.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "latchkey/client.h"
#include "latchkey/objects.h"
#include "latchkey/status.h"

namespace latchkey {

struct WatchOptions {
  // Comma-separated endpoints; any node serves watches.
  std::string endpoint = "127.0.0.1:7411";
  std::string auth_token{};  // as ClientOptions::auth_token
  std::string key{};         // the key, or the prefix when prefix is set ("" = all keys)
  bool prefix = false;
  uint64_t from_revision = 0;  // 0 = only changes after the watch starts
  std::chrono::milliseconds connect_timeout{5'000};
  // How long Next keeps trying to reconnect before it reports UNAVAILABLE.
  std::chrono::milliseconds reconnect_for{30'000};
};

class Watch {
 public:
  // Errors: COMPACTED, INVALID_ARGUMENT, UNAVAILABLE (no endpoint reachable).
  static Result<std::unique_ptr<Watch>> Open(WatchOptions options);
  ~Watch();

  // The next change. TIMEOUT if none arrived within `timeout` (the watch
  // stays usable). COMPACTED if, after a reconnect, the history it needs
  // was compacted (the watch is over). UNAVAILABLE if no node could be
  // reached for reconnect_for.
  Result<Object> Next(std::chrono::milliseconds timeout);
  // The node's revision when the watch first started.
  uint64_t start_revision() const { return start_revision_; }
  // The revision of the last change returned (0 = none yet).
  uint64_t last_revision() const { return last_revision_; }
  // Test hook: drop the connection as a network fault would.
  void DropConnectionForTesting();
  // Reconnects so far (diagnostics, tests).
  uint64_t reconnects() const { return reconnects_; }

  struct Impl;

 private:
  explicit Watch(WatchOptions options);
  Status Subscribe(uint64_t from);
  WatchOptions options_;
  std::unique_ptr<Impl> impl_;
  uint64_t start_revision_ = 0;
  uint64_t last_revision_ = 0;
  std::string last_key_;
  // The newest revision received may continue in a later push.
  bool last_partial_ = false;
  bool ResumeAtLast() const;
  uint64_t reconnects_ = 0;
};

struct LockWatchOptions {
  // Comma-separated endpoints; any node serves lock watches.
  std::string endpoint = "127.0.0.1:7411";
  std::string auth_token{};  // as ClientOptions::auth_token
  std::string name{};        // the lock
  std::chrono::milliseconds connect_timeout{5'000};
  // How long Next keeps trying to reconnect before it reports UNAVAILABLE.
  std::chrono::milliseconds reconnect_for{30'000};
};

// One lock's state as it changes: Next() returns the state when the watch
// starts, then the state after every change the watched node applies
// (holders, their modes and fencing tokens, the value block, waiters), in
// apply order. Each is the whole state, as GetLock reports it (`held` false
// and no holders when the lock is free). After a lost connection Next
// reconnects and returns the state at that time: changes made meanwhile are
// coalesced into it. A follower's states come a little later than the
// leader's, in the same order. Thread-safety: as Watch.
class LockWatch {
 public:
  // Errors: INVALID_ARGUMENT (lock name), RESOURCE_EXHAUSTED (100 lock
  // watches per connection, 1000 per node), UNAVAILABLE.
  static Result<std::unique_ptr<LockWatch>> Open(LockWatchOptions options);
  ~LockWatch();

  // The next state. TIMEOUT if the lock did not change within `timeout`
  // (the watch stays usable); UNAVAILABLE if no node could be reached for
  // reconnect_for.
  Result<LockInfo> Next(std::chrono::milliseconds timeout);
  // Test hook: drop the connection as a network fault would.
  void DropConnectionForTesting();
  // Reconnects so far (diagnostics, tests).
  uint64_t reconnects() const { return reconnects_; }

  struct Impl;

 private:
  explicit LockWatch(LockWatchOptions options);
  Status Subscribe();
  LockWatchOptions options_;
  std::unique_ptr<Impl> impl_;
  uint64_t reconnects_ = 0;
};

// A local copy of every object under a prefix, kept up to date: an initial
// Find at one revision R, then a Watch from R + 1. If the watch falls behind
// compaction (a long disconnect) it reloads and reports the differences.
class ObjectMirror {
 public:
  // change: the object as changed (state kAbsent = removed).
  using OnChange = std::function<void(const Object& change)>;
  // `client` serves the initial read (linearizable, leader); `watch` says
  // where to watch (watch.key is the prefix; prefix is forced on).
  static Result<std::unique_ptr<ObjectMirror>> Start(Client& client, WatchOptions watch,
                                                     OnChange on_change = {});
  ~ObjectMirror();  // stops the thread; no callback runs after it returns

  // key -> value of every available object (reserved ones are left out).
  std::map<std::string, std::string> Values() const;
  // The revision the mirror reflects.
  uint64_t revision() const;
  // Blocks until the mirror reflects `rev` and the change callback has
  // returned for every change up to it, or the timeout passes.
  bool WaitForRevision(uint64_t rev, std::chrono::milliseconds timeout) const;
  // OK while following; the error that stopped it otherwise.
  Status status() const;

  struct Impl;

 private:
  explicit ObjectMirror(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace latchkey
