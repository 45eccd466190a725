// Test helpers for tests that need a real RaftNode loop (the adapter's own
// tests, the proposer's, the loop listener's): hooks that apply nothing, a
// started single voter, and running a closure on the loop thread.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "replication/raft_node.h"

namespace latchkey::replication {

// Applies nothing and snapshots nothing.
class NoHooks : public StateMachineHooks {
 public:
  std::unique_ptr<ApplyOutput> Apply(uint64_t, std::string_view) override { return nullptr; }
  Result<std::string> TakeSnapshot() override { return std::string(); }
  Status Restore(std::string_view) override { return Status::Ok(); }
};

// A started single-voter node (node 1, raft on 127.0.0.1:0, its data in
// `dir`, no idle compaction); nullptr, with a test failure, if it did not
// start.
inline std::unique_ptr<RaftNode> StartSingleVoter(const std::string& dir,
                                                  StateMachineHooks* hooks) {
  RaftNodeOptions o;
  o.node_id = 1;
  o.raft_address = "127.0.0.1:0";
  o.data_dir = dir;
  o.election_timeout_ms = 300;
  o.heartbeat_timeout_ms = 30;
  o.idle_compaction_ms = 0;
  auto created = RaftNode::Create(o, hooks);
  EXPECT_TRUE(created.ok()) << created.status().ToString();
  if (!created.ok()) return nullptr;
  std::unique_ptr<RaftNode> node = std::move(created.value());
  const Status st = node->Start();
  EXPECT_TRUE(st.ok()) << st.ToString();
  return st.ok() ? std::move(node) : nullptr;
}

// Runs fn on the loop thread and waits for its result; each call is at
// least one loop iteration.
template <typename Fn>
auto RunOnLoop(RaftNode& node, Fn fn) -> decltype(fn()) {
  using R = decltype(fn());
  auto promise = std::make_shared<std::promise<R>>();
  auto future = promise->get_future();
  node.Post([promise, fn = std::move(fn)]() mutable {
    if constexpr (std::is_void_v<R>) {
      fn();
      promise->set_value();
    } else {
      promise->set_value(fn());
    }
  });
  EXPECT_EQ(future.wait_for(std::chrono::seconds(20)), std::future_status::ready)
      << "loop closure never ran";
  return future.get();
}

}  // namespace latchkey::replication
