// peer_bench backends: one lock client per system, each using that system's
// standard lock recipe through its native protocol (see
// docs/design/0010-peer-benchmarks.md).
//
// Contract:
// - A LockClient is one client of the system: its own connection and, where
//   the system has them, its own session or lease. It is used by one thread
//   at a time (the workload gives every client a thread).
// - Acquire blocks until this client holds `name` (or fails after
//   BackendOptions::timeout); Release gives it up. A client may hold many
//   names at once (workload W3).
// - Errors are values; nothing here aborts on a server failure.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "latchkey/status.h"

namespace latchkey::peers {

struct BackendOptions {
  // "HOST:PORT" (comma-separated list for clusters, where supported).
  std::string endpoint{};
  // Per-operation limit: an acquire that waits longer fails.
  std::chrono::milliseconds timeout{30'000};
  // Lease / session / key TTL given to the system (long: the runs are short).
  std::chrono::milliseconds ttl{60'000};
  int client_index = 0;
};

class LockClient {
 public:
  virtual ~LockClient() = default;
  virtual Status Acquire(const std::string& name) = 0;
  virtual Status Release(const std::string& name) = 0;
  // Latchkey only: the server's Raft log appends so far and their summed
  // time in microseconds (GetStatus of the node this client talks to);
  // false for the other systems or when the status call fails.
  virtual bool LogAppends(uint64_t* /*appends*/, uint64_t* /*micros*/) { return false; }
};

// system: "latchkey", "redis", "zookeeper", "etcd".
Result<std::unique_ptr<LockClient>> Connect(const std::string& system,
                                            const BackendOptions& options);

Result<std::unique_ptr<LockClient>> ConnectLatchkey(const BackendOptions& options);
Result<std::unique_ptr<LockClient>> ConnectRedis(const BackendOptions& options);
Result<std::unique_ptr<LockClient>> ConnectZooKeeper(const BackendOptions& options);
Result<std::unique_ptr<LockClient>> ConnectEtcd(const BackendOptions& options);

}  // namespace latchkey::peers
