#include "transport/stream_conn.h"

#include <utility>

#include "common/log.h"
#include "transport/socket_io.h"

namespace latchkey::transport::internal {
namespace {
// Drained write buffers bigger than this are released instead of kept.
constexpr size_t kKeepWriteCapacity = 1u << 20;
}  // namespace

StreamConn::StreamConn(std::shared_ptr<asio::io_context> io, uint64_t id, std::string peer,
                       Socket socket, Strand strand, ConnectionHandler* handler,
                       StreamConnOptions options, FinishedFn on_finished)
    : id_(id),
      peer_(std::move(peer)),
      options_(options),
      handler_(handler),
      on_finished_(std::move(on_finished)),
      io_(std::move(io)),
      strand_(std::move(strand)),
      socket_(std::move(socket)),
      native_fd_(socket_.native_handle()),
      linger_timer_(strand_),
      decoder_(options.max_frame_bytes),
      read_buf_size_(options.read_buffer_bytes > 0 ? options.read_buffer_bytes : 16 * 1024) {
  read_buf_.reset(new char[read_buf_size_]);  // default-initialized: see the header
}

StreamConn::~StreamConn() = default;

void StreamConn::Start() {
  asio::post(strand_, [self = shared_from_this()] {
    if (self->finalized_) return;
    self->handler_->OnOpen(self);
    self->StartRead();
  });
}

void StreamConn::Send(std::string_view payload) {
  bool start = false;
  size_t queued = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (close_requested_) return;
    AppendFrame(payload, &pending_);
    if (options_.direct_writes && !write_in_flight_ && TryWriteLocked()) return;
    queued = pending_.size() + inflight_bytes_;
    if (queued <= options_.max_pending_write_bytes && !write_in_flight_) {
      write_in_flight_ = true;
      start = true;
    }
  }
  if (queued > options_.max_pending_write_bytes) {
    LK_LOG_WARN("closing connection %llu to %s: slow consumer, %zu bytes queued (limit %zu)",
                static_cast<unsigned long long>(id_), peer_.c_str(), queued,
                options_.max_pending_write_bytes);
    Abort(Status(Code::kResourceExhausted, "pending write bytes " + std::to_string(queued) +
                                               " exceed the limit of " +
                                               std::to_string(options_.max_pending_write_bytes)));
    return;
  }
  if (start) asio::post(strand_, [self = shared_from_this()] { self->StartWrite(); });
}

// Direct write from the calling thread (see the header). REQUIRES: mu_ held,
// no write in flight, so pending_ holds every unwritten byte in order.
// Returns true when all of pending_ was written.
bool StreamConn::TryWriteLocked() {
  // close_requested_ is false here, so Finalize has not closed the socket: it
  // sets the flag under mu_ before closing, and we hold mu_ across the send.
  const int fd = native_fd_;
  if (fd < 0 || pending_.empty()) return pending_.empty();
  // What is left (EAGAIN) goes through the strand's async_write. After any
  // other error the strand's write fails too and closes with the reason.
  int error = 0;
  const size_t off = SendNonBlocking(fd, pending_, &error);
  if (off == pending_.size()) {
    pending_.clear();
    return true;
  }
  pending_.erase(0, off);
  return false;
}

void StreamConn::Close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (close_requested_) return;
    close_requested_ = true;
    closing_.store(true, std::memory_order_release);
  }
  asio::post(strand_, [self = shared_from_this()] { self->BeginClose(/*drain=*/true); });
}

void StreamConn::Defer(std::function<void()> fn) {
  asio::post(*io_, std::move(fn));
}

void StreamConn::CloseForShutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    close_requested_ = true;
    closing_.store(true, std::memory_order_release);
  }
  asio::post(strand_, [self = shared_from_this()] { self->BeginClose(/*drain=*/false); });
}

void StreamConn::Abort(Status reason) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    close_requested_ = true;
    closing_.store(true, std::memory_order_release);
    std::string().swap(pending_);
  }
  asio::post(strand_, [self = shared_from_this(), reason = std::move(reason)]() mutable {
    self->Finalize(std::move(reason));
  });
}

Status StreamConn::close_reason() const {
  std::lock_guard<std::mutex> lock(mu_);
  return final_reason_;
}

void StreamConn::SetReason(Status reason) {
  if (!reason_) reason_ = std::move(reason);
}

void StreamConn::StartRead() {
  socket_.async_read_some(
      asio::buffer(read_buf_.get(), read_buf_size_),
      asio::bind_executor(strand_, [self = shared_from_this()](const asio::error_code& ec,
                                                               size_t n) { self->OnRead(ec, n); }));
}

void StreamConn::OnRead(const asio::error_code& ec, size_t n) {
  if (finalized_) return;
  if (ec) {
    if (ec == asio::error::eof) {
      read_eof_ = true;
      if (!close_started_) SetReason(Unavailable("connection closed by peer " + peer_));
      if (send_shut_) {
        Finalize(Status::Ok());
      } else {
        // The peer half-closed: flush what is queued, then close.
        {
          std::lock_guard<std::mutex> lock(mu_);
          close_requested_ = true;
          closing_.store(true, std::memory_order_release);
        }
        BeginClose(/*drain=*/false);
      }
      return;
    }
    Finalize(Unavailable("connection to " + peer_ + " failed: " + ec.message()));
    return;
  }
  if (!close_started_ && !closing_.load(std::memory_order_acquire)) {
    decoder_.Feed(read_buf_.get(), n);
    const std::shared_ptr<Connection> self = shared_from_this();
    while (!closing_.load(std::memory_order_acquire)) {
      std::string_view payload;
      Result<bool> next = decoder_.Next(&payload);
      if (!next.ok()) {
        LK_LOG_WARN("connection %llu from %s: %s", static_cast<unsigned long long>(id_),
                    peer_.c_str(), next.status().ToString().c_str());
        handler_->OnStreamError(self, next.status());
        SetReason(next.status());
        Close();
        break;
      }
      if (!*next) break;
      handler_->OnFrame(self, payload);
    }
  }
  // While closing, input is read and discarded until EOF or the linger ends.
  StartRead();
}

void StreamConn::StartWrite() {
  if (finalized_) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (pending_.empty()) {
      write_in_flight_ = false;
    } else {
      writing_.swap(pending_);
      inflight_bytes_ = writing_.size();
    }
  }
  if (!writing_.empty()) {
    WriteBuffer();
  } else if (close_started_) {
    ShutdownSend();
  }
}

void StreamConn::WriteBuffer() {
  asio::async_write(
      socket_, asio::buffer(writing_),
      asio::bind_executor(strand_, [self = shared_from_this()](const asio::error_code& ec, size_t) {
        self->OnWrite(ec);
      }));
}

void StreamConn::OnWrite(const asio::error_code& ec) {
  if (finalized_) return;
  if (ec) {
    Finalize(Unavailable("write to " + peer_ + " failed: " + ec.message()));
    return;
  }
  if (writing_.capacity() > kKeepWriteCapacity) {
    std::string().swap(writing_);
  } else {
    writing_.clear();
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    inflight_bytes_ = 0;
    if (pending_.empty()) {
      write_in_flight_ = false;
    } else {
      writing_.swap(pending_);
      inflight_bytes_ = writing_.size();
    }
  }
  if (!writing_.empty()) {
    WriteBuffer();
  } else if (close_started_) {
    ShutdownSend();
  }
}

void StreamConn::BeginClose(bool drain) {
  if (finalized_) return;
  if (!drain) drain_ = false;
  if (!close_started_) {
    close_started_ = true;
    SetReason(Status::Ok());
    linger_timer_.expires_after(options_.close_linger);
    linger_timer_.async_wait(
        asio::bind_executor(strand_, [self = shared_from_this()](const asio::error_code& ec) {
          if (ec) return;  // cancelled
          LK_LOG_DEBUG("connection %llu to %s: close linger expired",
                       static_cast<unsigned long long>(self->id_), self->peer_.c_str());
          self->Finalize(Status::Ok());
        }));
  }
  bool in_flight;
  {
    std::lock_guard<std::mutex> lock(mu_);
    in_flight = write_in_flight_;
  }
  if (!in_flight) ShutdownSend();
  // else OnWrite calls ShutdownSend once the queue is empty.
}

void StreamConn::ShutdownSend() {
  if (finalized_) return;
  if (!send_shut_) {
    send_shut_ = true;
    asio::error_code ignored;
    socket_.shutdown(asio::socket_base::shutdown_send, ignored);
  }
  if (!drain_ || read_eof_) Finalize(Status::Ok());
  // else the read loop finalizes on the peer's EOF, or the linger does.
}

void StreamConn::Finalize(Status reason) {
  if (finalized_) return;
  finalized_ = true;
  SetReason(std::move(reason));
  {
    std::lock_guard<std::mutex> lock(mu_);
    close_requested_ = true;
    closing_.store(true, std::memory_order_release);
    std::string().swap(pending_);
    final_reason_ = *reason_;
  }
  linger_timer_.cancel();
  asio::error_code ignored;
  socket_.close(ignored);
  std::shared_ptr<StreamConn> self = shared_from_this();
  handler_->OnClose(self);
  if (on_finished_) {
    FinishedFn fn = std::move(on_finished_);
    on_finished_ = nullptr;
    fn(this);
  }
}

}  // namespace latchkey::transport::internal
