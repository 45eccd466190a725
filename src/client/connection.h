// Internal to the client library: one framed stream connection to a server.
// Knows nothing about the protocol; the client speaks it on top.
//
// Threading: on_frame and on_close run on the connection's own io thread,
// never concurrently with each other; on_close runs at most once, after which
// no callback runs. A connection that supports Drive() may also hand frames
// to a driving caller's `inline_frame` on that caller's thread (concurrently
// with the io thread's callbacks). Send and Close are thread-safe, never
// block on the network and never run callbacks synchronously. The destructor
// closes and joins the io thread; it must not run on that thread.
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

  // Reads frames on the calling thread until done() is true, `deadline`
  // passes or the connection closes; returns done(). Each frame goes to
  // inline_frame first (on this thread); when it returns false the frame is
  // delivered to on_frame on the io thread instead. done() is polled after
  // every batch of frames and must be cheap and thread-safe. Connections
  // that cannot do this return done() at once (the io thread reads).
  virtual bool Drive(const std::function<bool()>& done,
                     const std::function<bool(std::string_view)>& inline_frame,
                     std::chrono::steady_clock::time_point deadline) {
    (void)inline_frame;
    (void)deadline;
    return done();
  }
};

}  // namespace latchkey::client_internal
