// Internal: one framed byte stream over an asio stream socket (TCP or unix).
// Shared by the server-side Listener and the client-side StreamClient so both
// ends have identical Send/Close/callback semantics. Not part of the public
// transport API; include listener.h or stream_client.h instead.
//
// Threading: every socket operation and every handler callback runs on the
// connection's strand, so callbacks never overlap. Send/Close/Abort may be
// called from any thread (they take mu_ and post to the strand).
//
// Write path: Send frames the payload straight into pending_ under mu_. With
// options.direct_writes, when no write is in flight, Send writes it at once
// from the calling thread with a non-blocking send(2) (under mu_, so frames
// keep their order and the socket cannot be closed meanwhile); only what the
// kernel does not take is left for the strand. This saves a thread handoff per
// message: a client's request leaves from the caller's thread, a server's
// reply (if enabled) from the thread that produced it. While a write is in
// flight, further payloads accumulate in pending_; when the write completes,
// pending_ is swapped with the (cleared) writing_ buffer and written as one
// async_write. The two buffers keep their capacity, so the steady state
// allocates nothing per frame. The slow-consumer limit counts pending_ plus
// the in-flight bytes as before.
//
// Close: Close() stops delivering frames, flushes what is queued, shuts down
// the send side, then waits for the peer's EOF (discarding input) so the last
// bytes are not lost to an RST; CloseForShutdown() skips the EOF wait. Both
// are bounded by the linger timer. Abort() drops everything at once.
#pragma once

#include <asio.hpp>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "transport/frame.h"
#include "transport/listener.h"

namespace latchkey::transport::internal {

struct StreamConnOptions {
  uint32_t max_frame_bytes = kDefaultMaxFrameBytes;
  size_t max_pending_write_bytes = 64u << 20;
  std::chrono::milliseconds close_linger{2000};
  size_t read_buffer_bytes = 16 * 1024;
  // Send writes from the calling thread when no write is in flight (see the
  // write path above); false: every write goes through the strand.
  bool direct_writes = false;
};

class StreamConn final : public Connection, public std::enable_shared_from_this<StreamConn> {
 public:
  using Socket = asio::generic::stream_protocol::socket;
  using Strand = asio::strand<asio::io_context::executor_type>;
  // Runs on the strand right after handler->OnClose; the last thing the
  // connection does.
  using FinishedFn = std::function<void(StreamConn*)>;

  // REQUIRES: socket is connected, belongs to *io and is not used by
  // anything else; handler outlives the connection's callbacks. The
  // connection keeps `io` alive so that a Connection the application still
  // holds can be destroyed safely after its Listener/StreamClient is gone.
  StreamConn(std::shared_ptr<asio::io_context> io, uint64_t id, std::string peer, Socket socket,
             Strand strand, ConnectionHandler* handler, StreamConnOptions options,
             FinishedFn on_finished);
  ~StreamConn() override;

  // Posts OnOpen and starts reading. Call once.
  void Start();

  uint64_t id() const override { return id_; }
  std::string peer() const override { return peer_; }
  void Send(std::string_view payload) override;
  void Close() override;
  void Defer(std::function<void()> fn) override;
  // True once Close/Abort was requested or the stream failed: further Sends
  // are dropped.
  bool closed() const override { return closing_.load(std::memory_order_acquire); }

  // Flush queued bytes, then close without waiting for the peer (bounded by
  // the linger). Used by Listener::Stop and ~StreamClient.
  void CloseForShutdown();
  // Close now; queued bytes are dropped. `reason` becomes close_reason().
  void Abort(Status reason);

  // Why the connection ended: OK for a local Close(), otherwise the first
  // failure (peer closed, I/O error, FRAME_TOO_LARGE, slow consumer...).
  // Only meaningful in/after OnClose.
  Status close_reason() const;

 private:
  void StartRead();
  void OnRead(const asio::error_code& ec, size_t n);
  bool TryWriteLocked();  // REQUIRES: mu_ held, no write in flight
  void StartWrite();
  void WriteBuffer();
  void OnWrite(const asio::error_code& ec);
  void BeginClose(bool drain);    // strand
  void ShutdownSend();            // strand
  void Finalize(Status reason);   // strand
  void SetReason(Status reason);  // strand

  const uint64_t id_;
  const std::string peer_;
  const StreamConnOptions options_;
  ConnectionHandler* const handler_;
  FinishedFn on_finished_;

  // Declared before every asio object: destroyed after them.
  std::shared_ptr<asio::io_context> io_;
  Strand strand_;
  Socket socket_;
  const int native_fd_;  // socket_'s descriptor, for direct writes under mu_
  asio::steady_timer linger_timer_;

  // Strand-only state.
  FrameDecoder decoder_;
  // Not zeroed: only the pages reads reach become resident, so an idle or
  // small-request connection costs one page of it, not the whole buffer.
  std::unique_ptr<char[]> read_buf_;
  size_t read_buf_size_;
  std::string writing_;  // the bytes of the in-flight async_write
  bool finalized_ = false;
  bool close_started_ = false;
  bool drain_ = true;
  bool send_shut_ = false;
  bool read_eof_ = false;
  std::optional<Status> reason_;

  // Shared with Send/Close callers.
  mutable std::mutex mu_;
  std::string pending_;           // framed bytes not yet handed to async_write
  size_t inflight_bytes_ = 0;     // writing_.size() while a write is in flight
  bool write_in_flight_ = false;  // a StartWrite is posted or a write runs
  bool close_requested_ = false;
  Status final_reason_;  // copy of reason_, readable from any thread
  std::atomic<bool> closing_{false};
};

}  // namespace latchkey::transport::internal
