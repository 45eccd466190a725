// latchkey::Client: a connection to a Latchkey server with one session.
//
// Contract:
// - Connect() performs the handshake and opens a session whose lease is
//   renewed by a background keepalive (every ttl/3). If the connection
//   breaks, the client reconnects (same endpoint list) and re-attaches the
//   session as long as its lease has not run out; locks held stay held.
// - Cluster: the session lives on the leader. A NOT_LEADER reply makes the
//   client reconnect to the leader it names (or the next endpoint) and
//   re-send the request; pending acquires are re-sent with their original
//   ids after any reconnect (idempotent on the server: never granted twice).
//   A Release in flight when the leader fails reports MAYBE_APPLIED: retry
//   it, and read NOT_HELD on the retry as done.
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
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "latchkey/lock_mode.h"
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
  std::string client_name{};  // shown to other users in introspection
  // The server's --auth-token-file token, if it has one (UNAUTHENTICATED
  // otherwise). Sent in the clear: trusted networks only.
  std::string auth_token{};
  std::chrono::milliseconds session_ttl{10'000};
  std::chrono::milliseconds connect_timeout{5'000};
  // Runs once when the session is lost for good. Must not block.
  std::function<void(const Status&)> on_session_lost{};
  // Runs for every LockLostEvent pushed by the server (on the client's io
  // thread: do not block in it). Optional.
  std::function<void(const LockLost&)> on_lock_lost{};
  // A thread blocked in a call reads its reply from the socket itself
  // instead of being woken by the client's io thread: one thread wake-up
  // per call instead of two. The io thread reads pushes (and everything
  // else) whenever no call is waiting; after a burst of calls it takes over
  // within a few milliseconds. false: the io thread reads everything.
  bool read_on_calling_thread = true;
};

struct AcquireOptions {
  LockMode mode = LockMode::kEX;
  std::string owner{};  // "" = the session itself
  // Count nested acquisitions by this owner: each needs its own Release.
  // Without it, acquiring a lock the owner holds returns the same grant.
  bool reentrant = false;
  // Zero with try_only=false means wait without limit.
  std::chrono::milliseconds wait_timeout{0};
  bool try_only = false;
  // Lock time-to-live independent of the session; 0 = until released.
  std::chrono::milliseconds lock_ttl{0};
  // Written as the lock's value block when granted (needs CW, PW or EX).
  std::optional<std::string> value{};
  // Cached lock: while this grant blocks another request the server pushes
  // one BlockingCallback (see SetBlockingCallbackHandler). Used by LockCache.
  bool cacheable = false;
};

// The server asks this session to downgrade a cacheable grant to
// `downgrade_to` (kNL = release it) because a request waits behind it.
struct BlockingCallback {
  std::string name;
  std::string owner;
  uint64_t fencing_token = 0;  // the grant called back
  LockMode held = LockMode::kEX;
  LockMode wanted = LockMode::kEX;
  LockMode downgrade_to = LockMode::kNL;
};

// Options of the waiting calls of semaphores, latches and barriers.
struct WaitOptions {
  std::string owner{};                        // "" = the session itself
  std::chrono::milliseconds wait_timeout{0};  // 0 = without limit
  bool try_only = false;                      // semaphores only
};

struct Grant {
  std::string name;
  std::string owner;
  uint64_t fencing_token = 0;     // strictly increasing per lock
  uint64_t granted_at_ms = 0;     // server time
  LockMode mode = LockMode::kEX;  // held now (an upgrade may join modes)
  uint32_t count = 1;             // reentrant acquisitions outstanding
  std::string value;              // the lock value block at the grant
  uint64_t value_token = 0;       // revision that wrote it (0 = never)
};

struct LockHolderInfo {
  uint64_t session_id = 0;
  std::string owner;
  std::string client_name;
  uint64_t fencing_token = 0;
  uint64_t granted_at_ms = 0;
  uint64_t lock_ttl_ms = 0;
  LockMode mode = LockMode::kEX;
  uint32_t count = 1;
  bool cacheable = false;                // a cached grant (LockCache / StateStore)
  bool called_back = false;              // the server asked it to downgrade
  LockMode callback_to = LockMode::kNL;  // to this mode (kNL = release)
};

struct LockWaiterInfo {
  uint64_t session_id = 0;
  std::string owner;
  std::string client_name;
  uint64_t queued_at_ms = 0;
  LockMode mode = LockMode::kEX;
  bool conversion = false;  // an upgrade of a lock the owner holds
};

struct LockInfo {
  std::string name;
  bool held = false;
  LockHolderInfo holder;  // the first holder, valid when held
  size_t waiters = 0;
  uint64_t server_time_ms = 0;              // server clock, to compute the holder's age
  std::string value;                        // lock value block ("" if never written)
  uint64_t value_token = 0;                 // fencing token of the grant that wrote it
  std::vector<LockHolderInfo> holders;      // every holder
  std::vector<LockWaiterInfo> waiter_list;  // in queue order
};

// One edge of the wait-for graph: waiter waits for blocker on `name`.
struct WaitEdgeInfo {
  uint64_t waiter_session_id = 0;
  std::string waiter_owner;
  std::string name;
  LockMode mode = LockMode::kEX;
  uint64_t blocker_session_id = 0;
  std::string blocker_owner;
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
  // Cluster mode. Replicas with equal core_applied_index have equal digests.
  uint64_t state_digest = 0;
  uint64_t core_applied_index = 0;
  uint64_t leader_id = 0;       // 0 while no leader is known
  std::string leader_endpoint;  // the leader's client address, if known
  std::string metrics_address;  // "HOST:PORT" of GET /metrics, "" when off
  // This node's Raft log appends since it started and their summed time,
  // from hand-over to the disk to completion: the durability cost.
  uint64_t log_appends = 0;
  uint64_t log_append_micros = 0;
};

// One node of a replicated cluster (Client::ListMembers).
struct MemberInfo {
  uint64_t node_id = 0;
  std::string raft_address;
  std::string client_address;  // "" if the answering node does not know it
  std::string role;            // "voter", "standby" or "spare"
  bool leader = false;
};

// kLinearizable: answered by the leader after a read barrier, reflects every
// write acknowledged before the call. kSerializable: answered by whichever
// node the client is connected to, from its applied state (may be stale).
enum class ReadConsistency { kLinearizable, kSerializable };

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
  // A reentrant grant is released when its count drops to 0 (all = at once).
  Status Release(std::string_view name, std::string_view owner = {}, bool all = false);
  // Weakens a held lock in place (e.g. EX -> PR), letting compatible waiters in.
  Status Downgrade(std::string_view name, LockMode mode, std::string_view owner = {});
  // Hands a held lock to another session/owner; returns its new fencing token.
  Result<uint64_t> Transfer(std::string_view name, uint64_t to_session_id,
                            std::string_view to_owner = {}, std::string_view owner = {});
  // Locks at or below a name prefix ("" = all), in name order; at most
  // `limit` (0 = the server's default, 1000).
  Result<std::vector<LockInfo>> ListLocks(std::string_view prefix = {}, uint32_t limit = 0);
  // Who waits for whom right now.
  Result<std::vector<WaitEdgeInfo>> GetWaitGraph();

  // All-or-nothing: every lock at once, or wait (as one request) until it
  // can be. Returns the fencing tokens in the order of `parts`.
  Result<std::vector<uint64_t>> AcquireMany(
      const std::vector<std::pair<std::string, LockMode>>& parts,
      const AcquireOptions& options = {});
  // Writes the lock value block (the owner must hold it in CW, PW or EX).
  Status SetLockValue(std::string_view name, std::string_view value, std::string_view owner = {});
  // Lock ordering: an owner holding a lock of a higher rank may not acquire
  // one of a lower rank (FAILED_PRECONDITION instead of a later deadlock).
  Status DeclareLockRank(std::string_view prefix, uint32_t rank);

  // Counting semaphore NAME with `limit` permits (created on first use; 0 =
  // it must exist). Returns the grant's fencing token. The permits are held
  // until ReleaseSemaphore or the end of the session.
  Result<uint64_t> AcquireSemaphore(std::string_view name, uint32_t permits, uint32_t limit,
                                    const WaitOptions& options = {});
  Status ReleaseSemaphore(std::string_view name, std::string_view owner = {});
  // Count-down latch NAME (created with `initial` if absent).
  Status LatchAwait(std::string_view name, uint64_t initial, const WaitOptions& options = {});
  Result<uint64_t> LatchCountDown(std::string_view name, uint64_t by = 1, uint64_t initial = 0);
  // Cyclic barrier NAME for `parties`; returns the generation that tripped.
  Result<uint64_t> BarrierAwait(std::string_view name, uint32_t parties,
                                const WaitOptions& options = {});

  Result<LockInfo> GetLock(std::string_view name,
                           ReadConsistency consistency = ReadConsistency::kLinearizable);
  // The status of the node this client is connected to (any role).
  Result<ServerStatus> GetStatus();

  // Cluster membership (served by the leader; the client follows NOT_LEADER
  // redirects). One change at a time: FAILED_PRECONDITION while another runs.
  Result<std::vector<MemberInfo>> ListMembers();
  // Adds a node started with `latchkey server --join` and promotes it to
  // voter once it caught up. client_address may be "" (no redirects to it).
  Status AddMember(uint64_t node_id, std::string_view raft_address,
                   std::string_view client_address);
  // FAILED_PRECONDITION for the leader itself: transfer leadership first.
  Status RemoveMember(uint64_t node_id);
  // Moves leadership to voter node_id (0 = any); returns the new leader's id.
  Result<uint64_t> TransferLeadership(uint64_t node_id = 0);

  // Closes the session now (its locks are released). Idempotent.
  Status Close();

  // Locks reported lost by the server (LockLostEvent) since Connect, oldest
  // first (bounded: the last 1000).
  std::vector<LockLost> lost_locks() const;

  // Test hook: drop the TCP connection without closing the session, as a
  // network fault would. The client reconnects and re-attaches.
  void DropConnectionForTesting();

  // ---- Cached locks (docs/design/0007-cached-locks.md) ----
  // Writes the lock value block and releases (or downgrades) in one request;
  // the held mode must be a write mode. VALUE_TOO_LARGE over 64 KiB.
  Status ReleaseWithValue(std::string_view name, std::string_view value,
                          std::string_view owner = {});
  Status DowngradeWithValue(std::string_view name, LockMode mode, std::string_view value,
                            std::string_view owner = {});
  // Runs for every BlockingCallback pushed to this session, on the client's
  // io thread: must not block nor call the Client. Replaces the previous one.
  void SetBlockingCallbackHandler(std::function<void(const BlockingCallback&)> handler);
  // Requests this client sent on behalf of its callers (keepalives and
  // re-sends after reconnects not included).
  uint64_t requests_sent() const;
  // True once the session is lost or closed (a lock-free session_status()).
  bool session_gone() const;
  // The endpoint list this client was created with (ClientOptions::endpoint).
  const std::string& endpoint() const;
  // ClientOptions::auth_token, for the streams this client's helpers open.
  const std::string& auth_token() const;
  // AcquireMany returning every part's grant (token, mode, value block and
  // value token), in the order of `parts`.
  Result<std::vector<Grant>> AcquireManyGrants(
      const std::vector<std::pair<std::string, LockMode>>& parts,
      const AcquireOptions& options = {});
  // What the session held when it was last re-attached after a reconnect,
  // each with its lock value block; empty until the first re-attach.
  std::vector<Grant> held_at_attach() const;

  std::optional<std::chrono::steady_clock::time_point> WaitDeadline(
      bool try_only, std::chrono::milliseconds wait) const;
  struct Impl;

  // Internal, for latchkey::Objects (objects.h): sends one encoded
  // latchkey.v1.Request on this session's connection and returns the encoded
  // Response (or the error it carried). reply_within: how long to wait for
  // the reply; nullopt = the default, 0 = no limit.
  Result<std::string> CallEncoded(std::string_view request,
                                  std::optional<std::chrono::milliseconds> reply_within);

 private:
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace latchkey
