// Client side of a framed stream: connect to a Listener (TCP or unix socket)
// and exchange frame payloads with the same semantics as a server-side
// Connection (see listener.h). Knows nothing about locks.
//
//   StreamClientHandler h;
//   h.on_frame = [&](std::string_view payload) { ... };      // io thread
//   h.on_close = [&](const Status& why) { ... };             // io thread, once
//   auto c = StreamClient::Connect("127.0.0.1:7411", 2s, std::move(h));
//   if (!c.ok()) return c.status();     // TIMEOUT or UNAVAILABLE, see below
//   (*c)->Send(request_bytes);          // any thread
//
// Threading: each StreamClient owns one asio io_context and one io thread.
// All callbacks run on that thread, one at a time, in stream order. Send(),
// Close(), closed() and peer() are thread-safe and may be called from any
// thread, including from inside the callbacks.
//
// Lifetime: callbacks may start before Connect() returns (a frame can arrive
// immediately), so set everything they need up first. on_close runs exactly
// once for every client that Connect() returned, and is the last callback.
// The destructor flushes queued frames (bounded by close_linger), runs
// on_close if it has not run yet, and joins the io thread. Do NOT destroy a
// StreamClient from inside its own callbacks (it would join its own thread;
// this aborts with a CHECK failure). Hand it to another thread instead.
//
// Errors: Connect returns INVALID_ARGUMENT for a malformed endpoint, TIMEOUT
// if the connection is not established within `timeout` (DNS included), and
// UNAVAILABLE for refused/unreachable/unresolvable endpoints. After that,
// failures are reported once via on_close(reason): OK after a local Close(),
// UNAVAILABLE when the peer closed or the socket failed, FRAME_TOO_LARGE when
// the server sent an oversized frame (on_stream_error runs first), and
// RESOURCE_EXHAUSTED when more than max_pending_write_bytes are queued
// because the server does not read (the connection is closed).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"
#include "transport/frame.h"

namespace latchkey::transport {

struct StreamClientHandler {
  // One complete frame payload; the view is valid only during the call.
  // May be empty (no-op) for clients that only send.
  std::function<void(std::string_view payload)> on_frame;
  // The incoming byte stream is unusable (FRAME_TOO_LARGE). The connection
  // closes right after this returns; on_close follows. Optional.
  std::function<void(const Status& status)> on_stream_error;
  // Exactly once; no callback runs after it. Optional.
  std::function<void(const Status& reason)> on_close;
};

struct StreamClientOptions {
  uint32_t max_frame_bytes = kDefaultMaxFrameBytes;  // largest frame accepted
  size_t max_pending_write_bytes = 64u << 20;        // beyond: close
  std::chrono::milliseconds close_linger{2000};      // bound on Close/dtor flush
  // Send writes at once from the calling thread when no write is in flight
  // (non-blocking, under the connection's mutex) instead of waking the io
  // thread: one thread handoff less per request.
  bool direct_writes = true;
};

class StreamClient {
 public:
  // Blocks until connected, failed, or `timeout` elapsed. `endpoint` is
  // "host:port", "[v6]:port" or "unix:/path". TCP_NODELAY is set.
  static Result<std::unique_ptr<StreamClient>> Connect(std::string_view endpoint,
                                                       std::chrono::milliseconds timeout,
                                                       StreamClientHandler handler,
                                                       StreamClientOptions options = {});

  ~StreamClient();
  StreamClient(const StreamClient&) = delete;
  StreamClient& operator=(const StreamClient&) = delete;

  // Frames and queues `payload`; never blocks on the network. Dropped
  // silently once closed() (on_close tells why).
  void Send(std::string_view payload);
  // Graceful close: stops delivering frames, flushes what is queued, then
  // closes (bounded by close_linger); on_close(OK) follows on the io thread.
  // Idempotent, non-blocking.
  void Close();
  // Abrupt close: queued frames are dropped and the socket is closed now;
  // on_close(OK) follows on the io thread unless it already ran. Idempotent,
  // non-blocking.
  void Abort();
  // True once Close() was called or the connection failed/ended.
  bool closed() const;
  // The endpoint as passed to Connect, e.g. "127.0.0.1:7411".
  const std::string& endpoint() const;

 private:
  struct Impl;
  explicit StreamClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace latchkey::transport
