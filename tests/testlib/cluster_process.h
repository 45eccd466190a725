// ClusterProcess: N real `latchkey server` processes on 127.0.0.1 forming one
// Raft cluster (for integration, fault tests and benchmarks). Ports are picked
// free at construction; data dirs live in a TempDir. Waits poll with
// deadlines (no sleeps).
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "latchkey.pb.h"
#include "testlib/server_process.h"

namespace latchkey::testing {

// GetStatus of one node over a raw connection (no session, no redirect):
// the node's own view. nullopt if it cannot be reached within timeout.
std::optional<v1::GetStatusReply> QueryStatus(
    const std::string& endpoint, std::chrono::milliseconds timeout = std::chrono::seconds(2));

// One request (after Hello) to one node over a raw connection, no session
// and no redirect: that node's own answer (e.g. a serializable read on a
// follower). nullopt if it cannot be reached within timeout.
std::optional<v1::Response> QueryNode(const std::string& endpoint, const v1::Request& request,
                                      std::chrono::milliseconds timeout = std::chrono::seconds(2));

class ClusterProcess {
 public:
  // `voters` nodes bootstrapped together with --peers (ids 1..voters), plus
  // `spares` more node slots (ids voters+1..) that StartJoiner() starts with
  // --join. extra_args go to every node.
  explicit ClusterProcess(int voters, std::vector<std::string> extra_args = {}, int spares = 0);
  ~ClusterProcess();

  // Starts every voter and waits until each serves.
  bool Start();
  // Starts slot `id` (> voters) with an empty data dir and --join. If the
  // node exits while starting (a port taken meanwhile), it is started again
  // on fresh ports: read raft_address/client_address after this returns.
  bool StartJoiner(uint64_t id);

  int size() const { return static_cast<int>(nodes_.size()); }
  ServerProcess& node(uint64_t id) { return *nodes_.at(id - 1); }
  std::string raft_address(uint64_t id) const;
  std::string client_address(uint64_t id) const;
  // Client endpoint list of the running nodes, "a:1,b:2,...".
  std::string Endpoints();

  // The leader that every running node of `among` (default: all running)
  // agrees on and that reports itself leader; 0 if none before the deadline.
  uint64_t WaitForLeader(std::chrono::milliseconds deadline = std::chrono::seconds(15),
                         std::vector<uint64_t> among = {});
  // Waits until every running node (or `among`) applied the same core index
  // and reports the same state digest; returns false after the deadline.
  bool WaitForEqualDigests(std::chrono::milliseconds deadline = std::chrono::seconds(15),
                           std::vector<uint64_t> among = {});

 private:
  std::vector<uint64_t> Running(const std::vector<uint64_t>& among);

  // Picks fresh ports and (re)creates the node processes' descriptions.
  void Configure();

  int voters_;
  int spares_ = 0;
  std::vector<std::string> extra_args_;
  TempDir dir_;
  std::vector<int> client_ports_;
  std::vector<int> raft_ports_;
  std::vector<std::unique_ptr<ServerProcess>> nodes_;
};

}  // namespace latchkey::testing
