// Stream listener and connections over standalone asio (TCP or Unix socket).
// Knows nothing about locks: it moves frame payloads (see frame.h).
//
// Threading: the Listener owns an asio io_context run by `io_threads` threads
// (default 1). Handler callbacks run on those threads; callbacks for one
// connection never run concurrently with each other. Connection::Send and
// Close are thread-safe and may be called from any thread.
//
// Lifetime: a std::shared_ptr<Connection> may be kept past OnClose, Stop()
// and even the Listener's destruction; Send/Close on it are then no-ops.
// connection_count() drops right after a connection's OnClose returns.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"
#include "transport/frame.h"

namespace latchkey::transport {

class Connection {
 public:
  virtual ~Connection() = default;
  virtual uint64_t id() const = 0;       // unique per listener
  virtual std::string peer() const = 0;  // "127.0.0.1:53422" or "unix"
  // Frames and queues payload for writing. Thread-safe. If the connection is
  // closed the payload is dropped. If queued-but-unwritten bytes exceed the
  // configured limit, the connection is closed (slow consumer).
  virtual void Send(std::string_view payload) = 0;
  // Closes after the bytes already queued are written (best effort, bounded
  // by a short linger). Thread-safe, idempotent.
  virtual void Close() = 0;
  virtual bool closed() const = 0;
  // Runs fn on an io thread once the callbacks already queued there have run
  // (for a handler that gathers the frames of one pass over the ready
  // connections and hands them on together). Thread-safe. fn is dropped
  // without running if the listener stops first.
  virtual void Defer(std::function<void()> fn) = 0;
};

class ConnectionHandler {
 public:
  virtual ~ConnectionHandler() = default;
  virtual void OnOpen(const std::shared_ptr<Connection>& conn) = 0;
  // One complete frame payload. The view is valid only during the call.
  virtual void OnFrame(const std::shared_ptr<Connection>& conn, std::string_view payload) = 0;
  // The byte stream is unusable (e.g. FRAME_TOO_LARGE). The handler may Send
  // an error; the connection is closed right after this returns.
  virtual void OnStreamError(const std::shared_ptr<Connection>& conn, const Status& status) = 0;
  // Called exactly once per opened connection, after which no callback for
  // it runs again.
  virtual void OnClose(const std::shared_ptr<Connection>& conn) = 0;
};

struct ListenerOptions {
  // "127.0.0.1:7411", "0.0.0.0:0" (port 0 = pick one), "unix:/path/sock".
  std::string address = "127.0.0.1:7411";
  uint32_t max_frame_bytes = kDefaultMaxFrameBytes;
  size_t max_pending_write_bytes = 64u << 20;
  size_t max_connections = 10000;  // beyond: accept, send reject_payload, close
  // Framed and sent to a connection refused by max_connections before it is
  // closed (the server puts an error there); empty = just close.
  std::string reject_payload;
  int io_threads = 1;
  // Upper bound on a graceful Close(): time to flush queued bytes and see the
  // peer's EOF. Stop() waits at most about this long.
  uint32_t close_linger_ms = 2000;
  // Connection::Send writes at once from the calling thread when no write is
  // in flight (a non-blocking send under the connection's mutex), instead of
  // handing every write to an io thread. Saves a thread wake-up per reply,
  // but the calling thread pays the syscall.
  bool direct_writes = false;
  // Run the io threads under SCHED_BATCH: a woken io thread then waits for
  // a CPU instead of preempting the thread that woke it. The server's Raft
  // loop wakes an io thread for every reply and was preempted by it (two
  // involuntary context switches per request at one client); with this the
  // loop finishes its pass and the io thread runs next or on the other CPU.
  // Measured in docs/benchmarks/sessions-04-06.md ("Session 5").
  bool io_sched_batch = true;
};

class Listener {
 public:
  // Binds and starts accepting. REQUIRES: handler outlives the listener.
  static Result<std::unique_ptr<Listener>> Start(ListenerOptions options,
                                                 ConnectionHandler* handler);
  virtual ~Listener() = default;  // implementations call Stop()
  // The bound address with the real port: "127.0.0.1:40123" / "unix:/p".
  virtual std::string address() const = 0;
  virtual uint16_t port() const = 0;  // 0 for unix sockets
  virtual size_t connection_count() const = 0;
  // Stops accepting, closes every connection (OnClose runs for each), joins
  // the io threads. Idempotent. Must not be called from an io thread.
  virtual void Stop() = 0;
};

}  // namespace latchkey::transport
