// latchkey::Client: a connection to a Latchkey server with one session.
//
// Contract:
// - Connect() performs the handshake and opens a session whose lease is
//   renewed by a background keepalive (every ttl/3). If the connection
//   breaks, the client reconnects (same endpoint list) and re-attaches the
//   session as long as its lease has not run out; locks held stay held.
// - If the session is lost (lease expired, server said so, or reconnect
//   failed for longer than the ttl), session_status() turns non-OK for good,
//   every pending call fails with SESSION_EXPIRED and on_session_lost runs
//   once (on one of the client's internal threads: do not block in it and do
//   not destroy the Client from it; calling its methods, Close included, is
//   fine).
// - Thread-safety: every method is thread-safe; blocking calls may run
//   concurrently from many threads (requests are pipelined on one
//   connection).
// - Lifetime: the destructor closes the session (releasing its locks) with a
//   short bounded wait; it never throws.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "latchkey/status.h"

namespace latchkey {

// A lock the session lost without releasing it (e.g. its lock_ttl ran out),
// as reported by the server's LockLostEvent.
struct LockLost {
  std::string name;
  std::string owner;
  uint64_t fencing_token = 0;
  std::string reason;
};

struct ClientOptions {
  // "127.0.0.1:7411", "localhost:7411" or "unix:/path/to/sock". A comma-
  // separated list ("10.0.0.1:7411,10.0.0.2:7411") is tried in order, on
  // connect and on every reconnect.
  std::string endpoint = "127.0.0.1:7411";
  std::string client_name;  // shown to other users in introspection
  std::chrono::milliseconds session_ttl{10'000};
  std::chrono::milliseconds connect_timeout{5'000};
  // Runs once when the session is lost for good. Must not block.
  std::function<void(const Status&)> on_session_lost;
  // Runs for every LockLostEvent pushed by the server (on the client's io
  // thread: do not block in it). Optional.
  std::function<void(const LockLost&)> on_lock_lost;
};

struct AcquireOptions {
  std::string owner;  // "" = the session itself
  // Zero with try_only=false means wait without limit.
  std::chrono::milliseconds wait_timeout{0};
  bool try_only = false;
  // Lock time-to-live independent of the session; 0 = until released.
  std::chrono::milliseconds lock_ttl{0};
};

struct Grant {
  std::string name;
  std::string owner;
  uint64_t fencing_token = 0;  // strictly increasing per lock
  uint64_t granted_at_ms = 0;  // server time
};

struct LockHolderInfo {
  uint64_t session_id = 0;
  std::string owner;
  std::string client_name;
  uint64_t fencing_token = 0;
  uint64_t granted_at_ms = 0;
  uint64_t lock_ttl_ms = 0;
};

struct LockInfo {
  std::string name;
  bool held = false;
  LockHolderInfo holder;  // valid when held
  size_t waiters = 0;
  uint64_t server_time_ms = 0;  // server clock, to compute the holder's age
};

struct ServerStatus {
  std::string server_version;
  uint64_t node_id = 0;
  std::string listen_address;
  std::string raft_state;
  uint64_t raft_term = 0;
  uint64_t commit_index = 0;
  uint64_t applied_index = 0;
  uint64_t sessions = 0;
  uint64_t locks_held = 0;
  uint64_t waiters = 0;
  uint64_t revision = 0;
  uint64_t uptime_ms = 0;
  std::string data_dir;
  uint64_t connections = 0;
  uint32_t voters = 0;
};

class Client {
 public:
  static Result<std::unique_ptr<Client>> Connect(ClientOptions options);
  ~Client();

  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  uint64_t session_id() const;
  // OK while the session lives; the reason once it is lost (stays lost).
  Status session_status() const;

  // Blocks until granted or the wait ends. Errors: LOCK_BUSY (try_only),
  // TIMEOUT, CANCELLED, SESSION_EXPIRED, INVALID_ARGUMENT, UNAVAILABLE.
  Result<Grant> Acquire(std::string_view name, const AcquireOptions& options = {});
  // NOT_HELD when the owner does not hold the lock (e.g. its TTL expired).
  Status Release(std::string_view name, std::string_view owner = {});

  Result<LockInfo> GetLock(std::string_view name);
  Result<ServerStatus> GetStatus();

  // Closes the session now (its locks are released). Idempotent.
  Status Close();

  // Locks reported lost by the server (LockLostEvent) since Connect, oldest
  // first (bounded: the last 1000).
  std::vector<LockLost> lost_locks() const;

  // Test hook: drop the TCP connection without closing the session, as a
  // network fault would. The client reconnects and re-attaches.
  void DropConnectionForTesting();

  struct Impl;

 private:
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace latchkey
