// An event loop that other modules can run their sockets on. The server's
// Raft loop (replication::RaftNode) is one: a transport::LoopListener reads
// and writes client connections on it, so a request is read, applied and
// answered on one thread without a handoff (design 0022).
//
// Threading: Post and InLoop may be called from any thread; everything else
// only from the loop thread (a callback, a posted or deferred closure).
#pragma once

#include <cstdint>
#include <functional>

#include "common/status.h"

namespace latchkey {

class Reactor {
 public:
  virtual ~Reactor() = default;

  // Readiness bits for WatchFd / UpdateFd and the callback's argument.
  static constexpr int kReadable = 1;
  static constexpr int kWritable = 2;
  // Passed to the callback (with kReadable) when the descriptor failed or
  // hung up; the callback should read to find out why.
  static constexpr int kError = 4;

  using FdCallback = std::function<void(int events)>;
  using WatchId = uint64_t;

  // Thread-safe. Runs fn on the loop thread soon, in FIFO order; dropped
  // once the loop is shutting down.
  virtual void Post(std::function<void()> fn) = 0;
  // Runs fn on the loop thread once the work in hand is done, before the
  // loop waits again (no wake-up). FIFO; dropped once shutting down.
  virtual void Defer(std::function<void()> fn) = 0;
  // Thread-safe: whether the caller runs on the loop thread.
  virtual bool InLoop() const = 0;

  // Calls cb on the loop thread while fd is ready for one of `events`
  // (level-triggered). The descriptor stays the caller's; it may be closed
  // right after UnwatchFd. Fails when the loop is shutting down.
  virtual Result<WatchId> WatchFd(int fd, int events, FdCallback cb) = 0;
  // Changes the events of a watch (0 pauses it).
  virtual void UpdateFd(WatchId id, int events) = 0;
  // Stops the watch. Safe from inside its own callback: the callback object
  // is destroyed later, not during this call. Unknown ids are ignored.
  virtual void UnwatchFd(WatchId id) = 0;

  // Runs fn on the loop thread once, about `ms` milliseconds from now.
  // Dropped without running if the loop shuts down first.
  virtual void RunAfter(uint32_t ms, std::function<void()> fn) = 0;
};

}  // namespace latchkey
