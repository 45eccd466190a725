// Every server tunable in one place, with its default (the "knobs").
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace latchkey::server {

struct ServerOptions {
  // Client listener: "127.0.0.1:7411", port 0 = pick a free one, or
  // "unix:/path/to.sock".
  std::string listen = "127.0.0.1:7411";
  std::string data_dir = "latchkey-data";
  uint64_t node_id = 1;
  // libraft's own TCP transport (peers only; a single node binds it too).
  std::string raft_address = "127.0.0.1:7412";

  // Cluster mode (docs/operations.md). Every initial voter with its raft and
  // client address; empty = a single node. Used to bootstrap on first boot
  // (all nodes get the same list) and, always, to name the leader's client
  // address in NOT_LEADER replies.
  struct Peer {
    uint64_t id = 0;
    std::string raft_address;
    std::string client_address;
  };
  std::vector<Peer> peers;
  // Start empty and wait to be added with `latchkey member add` (no bootstrap).
  bool join = false;

  // Session leases.
  uint64_t default_session_ttl_ms = 10'000;
  uint64_t min_session_ttl_ms = 500;
  uint64_t max_session_ttl_ms = 3'600'000;

  // Limits on untrusted input.
  uint32_t max_frame_bytes = 1u << 20;
  size_t max_pending_write_bytes = 64u << 20;
  size_t max_connections = 10'000;
  uint64_t max_lock_ttl_ms = 7 * 24 * 3'600'000ull;
  // Sessions (docs/operations.md, "Limits"): in all, and opened on one
  // connection; waiting requests (locks, semaphores, latches, barriers) of
  // one session. Beyond: RESOURCE_EXHAUSTED naming the flag that raises it.
  size_t max_sessions = 100'000;
  size_t max_sessions_per_connection = 1024;
  size_t max_waits_per_session = 10'000;
  // Held plus waiting lock requests in the whole lock table: what bounds the
  // core's memory (~100 bytes of lock table per held lock, `engine_bench
  // --memory` in docs/benchmarks.md).
  size_t max_locks = 1'000'000;

  // Housekeeping period: lease expiry, lock TTLs, wait timeouts.
  uint32_t tick_ms = 20;
  // Most commands in one log entry.
  size_t max_batch_commands = 4096;

  // Raft (see docs/operations.md and libraft-notes.md). LAN defaults, with
  // pre-vote: failover_bench measured a median of 405 ms from SIGKILL of the
  // leader to the first grant on the new one (304 ms at 150/15, 2.8 s at
  // 1000/100). 200/20 leaves room for libraft's 30-50 ms loop stalls on
  // segment close (a stall must exceed the election timeout to trigger an
  // election). Raise both on slow or lossy networks; heartbeat < election.
  uint32_t election_timeout_ms = 200;
  uint32_t heartbeat_timeout_ms = 20;
  uint32_t snapshot_threshold = 65536;
  uint32_t snapshot_trailing = 8192;
  // Snapshot and shorten the log once idle this long (0 = off); see
  // replication::RaftNodeOptions::idle_compaction_ms.
  uint32_t idle_compaction_ms = 2000;

  // Where client connections are served: on the Raft loop thread (one
  // thread reads, applies and answers; design 0022) or on asio io threads
  // that hand requests to the loop.
  enum class ClientIo { kLoop, kThreads };
  ClientIo client_io = ClientIo::kLoop;
  int io_threads = 1;  // ClientIo::kThreads only, as are the next two
  // Client io threads under SCHED_BATCH (transport::ListenerOptions).
  bool io_sched_batch = true;
  // Replies written by the thread that produces them when no write is in
  // flight (transport::ListenerOptions::direct_writes).
  bool direct_writes = false;
  // Prometheus-style metrics over HTTP (`GET /metrics` on this address,
  // port 0 = pick one); "" = off. Bind it to a trusted network only.
  std::string metrics_listen;
  // Shared secret every client must send in Hello (`--auth-token-file`);
  // "" = none. Compared in constant time; travels in the clear (no TLS).
  std::string auth_token;

  // Object store (docs/design/0008-object-store.md).
  // TTL used by set_timeout(_after_request) with the server default.
  uint64_t object_default_ttl_ms = 60'000;
  uint64_t max_object_ttl_ms = 7 * 24 * 3'600'000ull;
  // Automatic compaction keeps the last N revisions and everything younger
  // than retain_ms (0 disables that bound; both 0 = manual compaction only).
  uint64_t object_retain_revisions = 100'000;
  uint64_t object_retain_ms = 3'600'000;
  // Most wait_for requests blocked at once (RESOURCE_EXHAUSTED beyond).
  size_t max_object_waiters = 100'000;

  // A planted bug for the nemesis's own tests (issue 7, docs/testing.md):
  // "" (none), "skip-watch-event" (live watch pushes drop every 25th event)
  // or "stale-object-read" (object gets answer the version before the
  // latest). `latchkey server --test-only-bug=NAME` (hidden) refuses to start
  // unless LATCHKEY_ALLOW_TEST_BUGS=1.
  std::string test_only_bug{};
};

}  // namespace latchkey::server
