#include "transport/loop_listener.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <future>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/log.h"
#include "transport/endpoint.h"
#include "transport/frame.h"
#include "transport/listen_socket.h"
#include "transport/socket_io.h"

namespace latchkey::transport {
namespace {

constexpr size_t kReadBufferBytes = 16 * 1024;
// Reads per readiness callback, so one busy connection cannot starve the
// others (what is left stays readable for the next loop iteration).
constexpr int kReadsPerEvent = 16;
constexpr int kAcceptsPerEvent = 64;
// Drained write buffers bigger than this are released instead of kept.
constexpr size_t kKeepWriteCapacity = 1u << 20;
// Written bytes at the front of a partly written buffer worth moving away.
constexpr size_t kCompactWrittenBytes = 64 * 1024;

class LoopConn;

// What the listener and its connections share; connections keep it alive,
// so one the application still holds is safe after the listener is gone.
struct LoopCore : std::enable_shared_from_this<LoopCore> {
  Reactor* reactor = nullptr;
  ConnectionHandler* handler = nullptr;
  ListenerOptions options;
  // Loop thread only.
  std::unordered_map<uint64_t, std::shared_ptr<LoopConn>> conns;
  std::vector<std::shared_ptr<LoopConn>> dirty;  // written to this iteration
  bool flush_scheduled = false;
  bool stopped = false;
  std::atomic<size_t> count{0};

  void MarkDirty(std::shared_ptr<LoopConn> conn);
  void FlushDirty();
};

class LoopConn final : public Connection, public std::enable_shared_from_this<LoopConn> {
 public:
  LoopConn(std::shared_ptr<LoopCore> core, uint64_t id, std::string peer, int fd)
      : core_(std::move(core)),
        id_(id),
        peer_(std::move(peer)),
        fd_(fd),
        decoder_(core_->options.max_frame_bytes),
        read_buf_(new char[kReadBufferBytes]) {}  // not zeroed: see StreamConn

  ~LoopConn() override {
    if (fd_ >= 0) ::close(fd_);  // only if the listener never finished it
  }

  uint64_t id() const override { return id_; }
  std::string peer() const override { return peer_; }
  bool closed() const override { return closing_.load(std::memory_order_acquire); }

  void Send(std::string_view payload) override {
    if (!core_->reactor->InLoop()) {
      // Off the loop: posted. The bytes waiting in the loop's queue count
      // towards the slow-consumer limit as well.
      const size_t posted = posted_bytes_.fetch_add(payload.size()) + payload.size();
      if (posted > core_->options.max_pending_write_bytes) {
        closing_.store(true, std::memory_order_release);
        core_->reactor->Post([self = shared_from_this(), posted] {
          self->Abort(Status(Code::kResourceExhausted,
                             "pending write bytes " + std::to_string(posted) +
                                 " exceed the limit of " +
                                 std::to_string(self->core_->options.max_pending_write_bytes)));
        });
        return;
      }
      core_->reactor->Post([self = shared_from_this(), copy = std::string(payload)] {
        self->posted_bytes_.fetch_sub(copy.size());
        self->Send(copy);
      });
      return;
    }
    if (closing_.load(std::memory_order_relaxed) || finished_) return;
    AppendFrame(payload, &pending_);
    const size_t queued = pending_.size() - pending_off_;
    if (queued > core_->options.max_pending_write_bytes) {
      LK_LOG_WARN("closing connection %llu to %s: slow consumer, %zu bytes queued (limit %zu)",
                  static_cast<unsigned long long>(id_), peer_.c_str(), queued,
                  core_->options.max_pending_write_bytes);
      Abort(Status(Code::kResourceExhausted,
                   "pending write bytes " + std::to_string(queued) + " exceed the limit of " +
                       std::to_string(core_->options.max_pending_write_bytes)));
      return;
    }
    ScheduleFlush();
  }

  void Close() override {
    if (!core_->reactor->InLoop()) {
      core_->reactor->Post([self = shared_from_this()] { self->Close(); });
      return;
    }
    if (close_requested_ || finished_) return;
    close_requested_ = true;
    closing_.store(true, std::memory_order_release);
    ScheduleFlush();  // the flush shuts the send side down once drained
  }

  void Defer(std::function<void()> fn) override {
    if (core_->reactor->InLoop()) {
      core_->reactor->Defer(std::move(fn));
    } else {
      core_->reactor->Post(std::move(fn));
    }
  }

  // Loop thread: starts watching the socket, then tells the handler.
  bool Start() {
    auto watch =
        core_->reactor->WatchFd(fd_, Reactor::kReadable, [this](int events) { OnEvents(events); });
    if (!watch.ok()) return false;
    watch_ = *watch;
    watched_ = Reactor::kReadable;
    core_->handler->OnOpen(shared_from_this());
    return true;
  }

  // Loop thread, listener stop: writes what the socket takes at once, then
  // closes without waiting for the peer.
  void Shutdown() {
    if (finished_) return;
    int error = 0;  // queued bytes (an Abort dropped them already)
    SendNonBlocking(fd_, std::string_view(pending_).substr(pending_off_), &error);
    Finish(Status::Ok());
  }

  // Loop thread: the dirty-list flush.
  void Flush() {
    in_dirty_ = false;
    if (finished_) return;
    if (pending_off_ < pending_.size()) {
      int error = 0;
      const size_t n =
          SendNonBlocking(fd_, std::string_view(pending_).substr(pending_off_), &error);
      pending_off_ += n;
      if (error != 0) {
        Finish(Unavailable("write to " + peer_ + " failed: " + std::strerror(error)));
        return;
      }
      if (pending_off_ < pending_.size()) {
        // A peer that keeps up just barely may never drain the buffer:
        // drop the written front once it is most of it.
        if (pending_off_ >= kCompactWrittenBytes && pending_off_ * 2 >= pending_.size()) {
          pending_.erase(0, pending_off_);
          pending_off_ = 0;
        }
        Watch(ReadEvents() | Reactor::kWritable);  // the rest when writable
        return;
      }
      if (pending_.capacity() > kKeepWriteCapacity) {
        std::string().swap(pending_);
      } else {
        pending_.clear();
      }
      pending_off_ = 0;
    }
    Watch(ReadEvents());
    if (close_requested_) ShutdownSend();
  }

 private:
  void ScheduleFlush() {
    if (in_dirty_ || (watched_ & Reactor::kWritable)) return;  // already due
    in_dirty_ = true;
    core_->MarkDirty(shared_from_this());
  }

  // Readable until the peer's EOF (which would stay readable forever).
  int ReadEvents() const { return read_eof_ ? 0 : Reactor::kReadable; }

  void Watch(int events) {
    if (events == watched_ || finished_) return;
    watched_ = events;
    core_->reactor->UpdateFd(watch_, events);
  }

  void OnEvents(int events) {
    const std::shared_ptr<LoopConn> self = shared_from_this();  // Finish may drop the map's
    if (events & Reactor::kWritable) Flush();
    if (!finished_ && (events & Reactor::kReadable)) ReadSome();
    // The socket failed (the loop stopped watching it): what was buffered
    // has been read above; nothing more will come.
    if (!finished_ && (events & Reactor::kError)) {
      Finish(Unavailable("connection to " + peer_ + " failed"));
    }
  }

  void ReadSome() {
    for (int i = 0; i < kReadsPerEvent && !finished_; ++i) {
      const ssize_t n = ::read(fd_, read_buf_.get(), kReadBufferBytes);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        Finish(Unavailable("connection to " + peer_ + " failed: " + std::strerror(errno)));
        return;
      }
      if (n == 0) {
        OnEof();
        return;
      }
      // While closing, input is read and discarded until EOF or the linger ends.
      if (!closing_.load(std::memory_order_relaxed)) Deliver(static_cast<size_t>(n));
      if (static_cast<size_t>(n) < kReadBufferBytes) return;  // drained for now
    }
  }

  void Deliver(size_t n) {
    decoder_.Feed(read_buf_.get(), n);
    const std::shared_ptr<Connection> self = shared_from_this();
    while (!closing_.load(std::memory_order_relaxed)) {
      std::string_view payload;
      Result<bool> next = decoder_.Next(&payload);
      if (!next.ok()) {
        LK_LOG_WARN("connection %llu from %s: %s", static_cast<unsigned long long>(id_),
                    peer_.c_str(), next.status().ToString().c_str());
        core_->handler->OnStreamError(self, next.status());
        reason_ = next.status();
        Close();
        return;
      }
      if (!*next) return;
      core_->handler->OnFrame(self, payload);
    }
  }

  void OnEof() {
    read_eof_ = true;
    if (send_shut_) {
      Finish(Status::Ok());
      return;
    }
    // The peer half-closed: flush what is queued, then close.
    if (!close_requested_ && reason_.ok())
      reason_ = Unavailable("connection closed by peer " + peer_);
    drain_ = false;
    Close();
    Watch(watched_ & Reactor::kWritable);
  }

  void ShutdownSend() {
    if (send_shut_) return;
    send_shut_ = true;
    ::shutdown(fd_, SHUT_WR);
    if (!drain_ || read_eof_) {
      Finish(Status::Ok());
      return;
    }
    // The read side finishes on the peer's EOF, or the linger does.
    std::weak_ptr<LoopConn> weak = weak_from_this();
    core_->reactor->RunAfter(core_->options.close_linger_ms, [weak] {
      if (auto c = weak.lock()) c->Finish(Status::Ok());
    });
  }

  void Abort(Status reason) {
    if (finished_) return;
    reason_ = std::move(reason);
    close_requested_ = true;
    closing_.store(true, std::memory_order_release);
    std::string().swap(pending_);
    pending_off_ = 0;
    std::weak_ptr<LoopConn> weak = weak_from_this();
    core_->reactor->Defer([weak] {
      if (auto c = weak.lock()) c->Finish(Status::Ok());
    });
  }

  // Loop thread: the end. Not called from inside Send or Close.
  void Finish(Status reason) {
    if (finished_) return;
    finished_ = true;
    if (reason_.ok()) reason_ = std::move(reason);
    if (!reason_.ok()) {
      LK_LOG_DEBUG("connection %llu to %s closed: %s", static_cast<unsigned long long>(id_),
                   peer_.c_str(), reason_.ToString().c_str());
    }
    closing_.store(true, std::memory_order_release);
    core_->reactor->UnwatchFd(watch_);
    ::close(fd_);
    fd_ = -1;
    std::string().swap(pending_);
    const std::shared_ptr<LoopConn> self = shared_from_this();
    core_->handler->OnClose(self);
    core_->conns.erase(id_);
    core_->count.fetch_sub(1, std::memory_order_relaxed);
  }

  const std::shared_ptr<LoopCore> core_;
  const uint64_t id_;
  const std::string peer_;
  int fd_;
  Reactor::WatchId watch_ = 0;
  int watched_ = 0;
  FrameDecoder decoder_;
  std::unique_ptr<char[]> read_buf_;
  std::string pending_;  // framed bytes not yet written, from pending_off_ on
  size_t pending_off_ = 0;
  bool in_dirty_ = false;
  bool close_requested_ = false;  // Close(): flush, shut the send side, wait for EOF
  bool drain_ = true;             // wait for the peer's EOF after shutting down
  bool send_shut_ = false;
  bool read_eof_ = false;
  bool finished_ = false;
  Status reason_;
  std::atomic<bool> closing_{false};     // no more frames delivered, Sends dropped
  std::atomic<size_t> posted_bytes_{0};  // Sends from other threads not yet run
};

void LoopCore::MarkDirty(std::shared_ptr<LoopConn> conn) {
  dirty.push_back(std::move(conn));
  if (flush_scheduled) return;
  flush_scheduled = true;
  reactor->Defer([core = shared_from_this()] { core->FlushDirty(); });
}

void LoopCore::FlushDirty() {
  flush_scheduled = false;
  std::vector<std::shared_ptr<LoopConn>> now;
  now.swap(dirty);
  for (const std::shared_ptr<LoopConn>& c : now) c->Flush();
}

class LoopListener final : public Listener {
 public:
  LoopListener(ListenerOptions options, ConnectionHandler* handler, Reactor* reactor)
      : core_(std::make_shared<LoopCore>()) {
    core_->reactor = reactor;
    core_->handler = handler;
    core_->options = std::move(options);
  }

  ~LoopListener() override { Stop(); }

  Status Init() {
    Result<Endpoint> ep = ParseEndpoint(core_->options.address);
    if (!ep.ok()) return ep.status();
    auto sock = internal::OpenListenSocket(*ep);
    if (!sock.ok()) return sock.status();
    listen_ = std::move(sock.value());
    Status st = RunOnLoop([this] {
      auto watch =
          core_->reactor->WatchFd(listen_.fd, Reactor::kReadable, [this](int) { AcceptSome(); });
      if (!watch.ok()) return watch.status();
      accept_watch_ = *watch;
      return Status::Ok();
    });
    if (!st.ok()) {
      ::close(listen_.fd);
      internal::RemoveSocketFile(listen_);
      listen_.fd = -1;
      return st;
    }
    LK_LOG_INFO("listening on %s (on the event loop)", listen_.address.c_str());
    return Status::Ok();
  }

  std::string address() const override { return listen_.address; }
  uint16_t port() const override { return listen_.port; }
  size_t connection_count() const override { return core_->count.load(std::memory_order_relaxed); }

  void Stop() override {
    if (stopped_ || listen_.fd < 0) return;
    stopped_ = true;
    Status st = RunOnLoop([this] {
      core_->stopped = true;
      core_->reactor->UnwatchFd(accept_watch_);
      std::vector<std::shared_ptr<LoopConn>> conns;
      conns.reserve(core_->conns.size());
      for (auto& [id, c] : core_->conns) conns.push_back(c);
      for (auto& c : conns) c->Shutdown();
      return Status::Ok();
    });
    if (!st.ok()) LK_LOG_WARN("listener %s: %s", listen_.address.c_str(), st.ToString().c_str());
    ::close(listen_.fd);
    internal::RemoveSocketFile(listen_);
    LK_LOG_INFO("stopped listening on %s", listen_.address.c_str());
  }

 private:
  // Runs fn on the loop and waits for it. UNAVAILABLE if the loop dropped
  // it (shutting down) or did not run it within a bound.
  Status RunOnLoop(std::function<Status()> fn) {
    if (core_->reactor->InLoop()) return fn();
    auto done = std::make_shared<std::promise<Status>>();
    std::future<Status> result = done->get_future();
    core_->reactor->Post([done, fn = std::move(fn)] { done->set_value(fn()); });
    if (result.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
      return Unavailable("the event loop did not answer within 30 s");
    }
    try {
      return result.get();
    } catch (const std::future_error&) {
      return Unavailable("the event loop is shutting down");
    }
  }

  void AcceptSome() {
    for (int i = 0; i < kAcceptsPerEvent && !core_->stopped; ++i) {
      const int fd = ::accept4(listen_.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        // EMFILE, ENOBUFS...: would spin if retried at once; back off.
        LK_LOG_WARN("accept on %s failed: %s; retrying", listen_.address.c_str(),
                    std::strerror(errno));
        core_->reactor->UpdateFd(accept_watch_, 0);
        std::weak_ptr<LoopCore> weak = core_;
        const Reactor::WatchId watch = accept_watch_;
        core_->reactor->RunAfter(100, [weak, watch] {
          auto core = weak.lock();
          if (core && !core->stopped) core->reactor->UpdateFd(watch, Reactor::kReadable);
        });
        return;
      }
      Register(fd);
    }
  }

  void Register(int fd) {
    std::string peer = internal::PeerName(fd);
    if (peer != "unix") {
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    if (core_->conns.size() >= core_->options.max_connections) {
      LK_LOG_WARN("rejecting connection from %s on %s: max_connections (%zu) reached", peer.c_str(),
                  listen_.address.c_str(), core_->options.max_connections);
      if (!core_->options.reject_payload.empty()) {
        // A few dozen bytes into a fresh socket's empty send buffer.
        int error = 0;
        SendNonBlocking(fd, EncodeFrame(core_->options.reject_payload), &error);
        ::shutdown(fd, SHUT_WR);
      }
      ::close(fd);
      return;
    }
    const uint64_t id = next_id_++;
    auto conn = std::make_shared<LoopConn>(core_, id, std::move(peer), fd);
    core_->conns.emplace(id, conn);
    core_->count.fetch_add(1, std::memory_order_relaxed);
    if (!conn->Start()) {
      core_->conns.erase(id);
      core_->count.fetch_sub(1, std::memory_order_relaxed);
    }
  }

  std::shared_ptr<LoopCore> core_;
  internal::ListenSocket listen_;
  Reactor::WatchId accept_watch_ = 0;
  uint64_t next_id_ = 1;  // loop thread only
  bool stopped_ = false;
};

}  // namespace

Result<std::unique_ptr<Listener>> StartLoopListener(ListenerOptions options,
                                                    ConnectionHandler* handler, Reactor* reactor) {
  LATCHKEY_CHECK(handler != nullptr && reactor != nullptr);
  auto listener = std::make_unique<LoopListener>(std::move(options), handler, reactor);
  Status st = listener->Init();
  if (!st.ok()) return st;
  return std::unique_ptr<Listener>(std::move(listener));
}

}  // namespace latchkey::transport
