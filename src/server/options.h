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

  // Housekeeping period: lease expiry, lock TTLs, wait timeouts.
  uint32_t tick_ms = 20;
  // Most commands in one log entry.
  size_t max_batch_commands = 4096;

  // Raft (see docs/operations.md and libraft-notes.md). LAN defaults: with
  // pre-vote, 150/15 ms gave a failover median of ~300 ms and no spurious
  // elections in libraft-notes.md; raise both on slow or lossy networks.
  uint32_t election_timeout_ms = 1000;
  uint32_t heartbeat_timeout_ms = 100;
  uint32_t snapshot_threshold = 65536;
  uint32_t snapshot_trailing = 8192;

  int io_threads = 1;
};

}  // namespace latchkey::server
