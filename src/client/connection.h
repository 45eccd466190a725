// Internal to the client library: one framed stream connection to a server.
// Knows nothing about the protocol; the client speaks it on top.
//
// Threading: callbacks run on the connection's own io thread, never
// concurrently with each other; on_close runs at most once, after which no
// callback runs. Send and Close are thread-safe, never block on the network
// and never run callbacks synchronously. The destructor closes and
// joins the io thread; it must not run on that thread.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"

namespace latchkey::client_internal {

class Connection {
 public:
  struct Callbacks {
    std::function<void(std::string_view payload)> on_frame;
    std::function<void(const Status& why)> on_close;
  };

  // Connects to "host:port" or "unix:/path" within timeout.
  static Result<std::unique_ptr<Connection>> Dial(const std::string& endpoint,
                                                  std::chrono::milliseconds timeout,
                                                  Callbacks callbacks);

  virtual ~Connection() = default;
  // Frames the payload and queues it; dropped when closed.
  virtual void Send(std::string_view payload) = 0;
  // Abrupt close; on_close follows (unless it already ran). Idempotent.
  virtual void Close() = 0;
};

}  // namespace latchkey::client_internal
