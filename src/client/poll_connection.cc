#include "client/poll_connection.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "common/log.h"
#include "transport/endpoint.h"
#include "transport/frame.h"
#include "transport/socket_io.h"

namespace latchkey::client_internal {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr size_t kReadBufferBytes = 16 * 1024;
// A driver re-checks done() at least this often even if nothing wakes it.
constexpr milliseconds kDriverRecheck{100};

thread_local const void* t_poll_io_owner = nullptr;

std::string Errno(int e) {
  return std::strerror(e);
}

// Milliseconds poll() may wait until `deadline`, at most `cap`; rounds up.
int PollTimeout(Clock::time_point deadline, milliseconds cap) {
  const auto now = Clock::now();
  if (deadline <= now) return 0;
  const auto left = std::chrono::ceil<milliseconds>(deadline - now);
  return static_cast<int>(std::min(left, cap).count());
}

// SO_RCVTIMEO of every socket: a driver blocked in recv() notices a kick
// (driver_kicked_) at least this often.
constexpr timeval kDriverRecvTimeout{0, 100'000};
static_assert(std::chrono::microseconds(kDriverRecvTimeout.tv_usec) == kDriverRecheck);

void Kick(int efd) {
  const uint64_t one = 1;
  ssize_t n;
  do {
    n = ::write(efd, &one, sizeof one);
  } while (n < 0 && errno == EINTR);
}

void Drain(int efd) {
  uint64_t v;
  while (::read(efd, &v, sizeof v) > 0) {
  }
}

// Non-blocking connect of `fd` to `addr`, waiting until `deadline`.
Status ConnectFd(int fd, const sockaddr* addr, socklen_t len, Clock::time_point deadline,
                 const std::string& endpoint) {
  if (::connect(fd, addr, len) == 0) return Status();
  if (errno != EINPROGRESS && errno != EINTR) {
    return Unavailable("cannot connect to " + endpoint + ": " + Errno(errno));
  }
  for (;;) {
    pollfd p{fd, POLLOUT, 0};
    const int r = ::poll(&p, 1, PollTimeout(deadline, milliseconds(INT_MAX)));
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) return Status(Code::kTimeout, "connect to " + endpoint + " timed out");
    if (r < 0) return Unavailable("cannot connect to " + endpoint + ": " + Errno(errno));
    int err = 0;
    socklen_t el = sizeof err;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err != 0) return Unavailable("cannot connect to " + endpoint + ": " + Errno(err));
    return Status();
  }
}

}  // namespace

void AddrInfoFree::operator()(addrinfo* a) const {
  if (a != nullptr) ::freeaddrinfo(a);
}

Result<AddrInfoList> ResolveTcp(const std::string& host, uint16_t port,
                                std::chrono::steady_clock::time_point deadline,
                                GetAddrInfoFn lookup) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | AI_NUMERICHOST;
  const std::string service = std::to_string(port);
  const std::string where = host + ":" + service;
  addrinfo* res = nullptr;
  int gai = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &res);  // never blocks
  if (gai == 0) return AddrInfoList(res);
  if (gai != EAI_NONAME) return Unavailable("cannot resolve " + where + ": " + ::gai_strerror(gai));
  // A name: the lookup may block (DNS), so it runs on a helper thread that
  // outlives this call if the deadline passes first.
  struct Lookup {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    bool abandoned = false;
    int gai = 0;
    addrinfo* res = nullptr;
  };
  auto state = std::make_shared<Lookup>();
  hints.ai_flags = AI_NUMERICSERV;
  std::thread([state, lookup = std::move(lookup), host, service, hints] {
    addrinfo* r = nullptr;
    const int g = lookup(host.c_str(), service.c_str(), &hints, &r);
    std::lock_guard<std::mutex> lock(state->mu);
    if (state->abandoned) {
      if (g == 0 && r != nullptr) ::freeaddrinfo(r);
      return;
    }
    state->gai = g;
    state->res = r;
    state->done = true;
    state->cv.notify_all();
  }).detach();
  std::unique_lock<std::mutex> lock(state->mu);
  if (!state->cv.wait_until(lock, deadline, [&] { return state->done; })) {
    state->abandoned = true;
    return Status(Code::kTimeout, "resolving " + where + " took longer than the connect timeout");
  }
  if (state->gai != 0) {
    return Unavailable("cannot resolve " + where + ": " + ::gai_strerror(state->gai));
  }
  return AddrInfoList(state->res);
}

namespace {

// Puts a connected socket in blocking mode with a receive timeout: a driver
// then waits for its reply in recv() alone (one system call instead of
// poll() + recv()). Every other send and recv passes MSG_DONTWAIT.
Status MakeDriverBlocking(int fd, const std::string& endpoint) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0 ||
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &kDriverRecvTimeout, sizeof kDriverRecvTimeout) !=
          0) {
    return Unavailable("cannot set up the socket to " + endpoint + ": " + Errno(errno));
  }
  return Status();
}

// A connected socket (blocking, with a receive timeout), or the failure.
Result<int> OpenSocket(const std::string& endpoint, milliseconds timeout) {
  Result<transport::Endpoint> ep = transport::ParseEndpoint(endpoint);
  if (!ep.ok()) return ep.status();
  const Clock::time_point deadline = Clock::now() + timeout;
  if (ep->is_unix) {
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (ep->path.size() >= sizeof sa.sun_path) {
      return InvalidArgument("unix socket path too long: " + ep->path);
    }
    std::memcpy(sa.sun_path, ep->path.data(), ep->path.size());
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return Unavailable("socket: " + Errno(errno));
    Status st =
        ConnectFd(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa, deadline, endpoint);
    if (st.ok()) st = MakeDriverBlocking(fd, endpoint);
    if (!st.ok()) {
      ::close(fd);
      return st;
    }
    return fd;
  }
  Result<AddrInfoList> addrs = ResolveTcp(ep->host, ep->port, deadline);
  if (!addrs.ok()) return addrs.status();
  Status last = Unavailable("cannot connect to " + endpoint + ": no address");
  for (addrinfo* a = addrs->get(); a != nullptr; a = a->ai_next) {
    const int fd =
        ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      last = Unavailable("socket: " + Errno(errno));
      continue;
    }
    last = ConnectFd(fd, a->ai_addr, a->ai_addrlen, deadline, endpoint);
    if (last.ok()) last = MakeDriverBlocking(fd, endpoint);
    if (last.ok()) {
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      return fd;
    }
    ::close(fd);
    if (last.code() == Code::kTimeout) break;
  }
  return last;
}

class PollConnection final : public Connection {
 public:
  PollConnection(int fd, std::string peer, Callbacks cb, PollConnectionOptions o)
      : options_(o),
        peer_(std::move(peer)),
        cb_(std::move(cb)),
        fd_(fd),
        io_kick_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)),
        driver_kick_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)),
        decoder_(o.max_frame_bytes),
        buf_(kReadBufferBytes) {
    LATCHKEY_CHECK(io_kick_ >= 0 && driver_kick_ >= 0);
    io_ = std::thread([this] {
      t_poll_io_owner = this;
      IoLoop();
    });
  }

  ~PollConnection() override {
    LATCHKEY_CHECK(t_poll_io_owner != this && "connection destroyed on its own io thread");
    Close();
    io_.join();
    ::close(io_kick_);
    ::close(driver_kick_);
  }

  void Send(std::string_view payload) override {
    std::lock_guard<std::mutex> lk(mu_);
    if (closing_) return;
    const bool was_empty = out_.empty();
    transport::AppendFrame(payload, &out_);
    if (!was_empty) return;  // the io thread is already flushing
    FlushLocked();
    if (out_.empty() || closing_) return;
    if (out_.size() > options_.max_pending_write_bytes) {
      FailLocked(
          Status(Code::kResourceExhausted, "pending write bytes " + std::to_string(out_.size()) +
                                               " exceed the limit of " +
                                               std::to_string(options_.max_pending_write_bytes)));
      return;
    }
    WakeIoLocked();  // to poll for writability
  }

  void Close() override {
    std::lock_guard<std::mutex> lk(mu_);
    if (closing_) return;
    local_close_ = true;
    closing_ = true;
    WakeAllLocked();
  }

  bool Drive(const std::function<bool()>& done,
             const std::function<bool(std::string_view)>& inline_frame,
             Clock::time_point deadline) override {
    std::unique_lock<std::mutex> lk(mu_);
    ++drivers_;
    if (io_polling_read_) Kick(io_kick_);
    while (!done() && !closing_ && Clock::now() < deadline) {
      if (reader_busy_) {
        driver_cv_.wait_until(lk, std::min(deadline, Clock::now() + kDriverRecheck));
        continue;
      }
      reader_busy_ = true;
      lk.unlock();
      ReadAsDriver(done, inline_frame, deadline);
      lk.lock();
      reader_busy_ = false;
      if (drivers_ > 1) driver_cv_.notify_all();
      if (closing_) WakeIoLocked();  // it waits for the token to finish
    }
    --drivers_;
    last_driver_left_ = Clock::now();
    return done();
  }

 private:
  // Holds the read token. Returns when done(), the deadline, a close, or
  // after delivering a batch that may concern another driver.
  void ReadAsDriver(const std::function<bool()>& done,
                    const std::function<bool(std::string_view)>& inline_frame,
                    Clock::time_point deadline) {
    const auto deliver = [&](std::string_view p) {
      if (inline_frame(p)) return;
      std::lock_guard<std::mutex> lk(mu_);
      deferred_.emplace_back(p);
      WakeIoLocked();
    };
    while (!done()) {
      if (driver_kicked_.exchange(false, std::memory_order_acq_rel)) {
        Drain(driver_kick_);
        return;  // Drive re-checks closing_ and done()
      }
      if (deadline - Clock::now() >= kDriverRecheck) {
        // Blocks until data, the receive timeout (kDriverRecheck), or a
        // shutdown(SHUT_RD) from Close() or a failure (WakeAllLocked).
        const ssize_t n = ::recv(fd_, buf_.data(), buf_.size(), 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
        if (!Consume(n, errno, deliver)) return;
        if (static_cast<size_t>(n) == buf_.size() && !ReadAvailable(deliver)) return;
      } else {
        pollfd fds[2] = {{fd_, POLLIN, 0}, {driver_kick_, POLLIN, 0}};
        const int r = ::poll(fds, 2, PollTimeout(deadline, kDriverRecheck));
        if (r < 0 && errno != EINTR) return;
        if (r == 0 && Clock::now() >= deadline) return;
        if (fds[1].revents != 0) {
          driver_kicked_.store(false, std::memory_order_release);
          Drain(driver_kick_);
          return;
        }
        if (fds[0].revents == 0) continue;
        if (!ReadAvailable(deliver)) return;
      }
      std::lock_guard<std::mutex> lk(mu_);
      if (closing_) return;
      if (drivers_ > 1) return;  // a frame may have been another driver's
    }
  }

  // Reads what the socket holds and passes each frame to `deliver`. Returns
  // false once the stream failed or ended (the reason is recorded).
  template <typename Fn>
  bool ReadAvailable(const Fn& deliver) {
    for (;;) {
      const ssize_t n = ::recv(fd_, buf_.data(), buf_.size(), MSG_DONTWAIT);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
      if (!Consume(n, errno, deliver)) return false;
      if (static_cast<size_t>(n) < buf_.size()) return true;
    }
  }

  // Handles one recv() result n (with its errno): feeds and delivers the
  // frames of n > 0 bytes. Returns false once the stream failed or ended
  // (the reason is recorded) or the connection is being closed here.
  template <typename Fn>
  bool Consume(ssize_t n, int error, const Fn& deliver) {
    if (n <= 0) {
      // A local Close() shuts the read side to wake a blocked driver.
      if (local_close_.load(std::memory_order_acquire)) return false;
      Fail(n == 0 ? Unavailable("connection closed by peer " + peer_)
                  : Unavailable("connection to " + peer_ + " failed: " + Errno(error)));
      return false;
    }
    decoder_.Feed(buf_.data(), static_cast<size_t>(n));
    for (;;) {
      std::string_view payload;
      Result<bool> next = decoder_.Next(&payload);
      if (!next.ok()) {
        LK_LOG_WARN("connection to %s: %s", peer_.c_str(), next.status().ToString().c_str());
        Fail(next.status());
        return false;
      }
      if (!*next) return true;
      if (local_close_.load(std::memory_order_acquire)) return false;
      deliver(payload);
    }
  }

  void IoLoop() {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      if (!deferred_.empty()) {
        std::vector<std::string> frames;
        frames.swap(deferred_);
        const bool deliver = !local_close_;
        lk.unlock();
        if (deliver) {
          for (const std::string& f : frames) cb_.on_frame(f);
        }
        lk.lock();
        // A deferred frame (a push, an expiry) may have completed a driver's
        // call without anything arriving on its socket.
        if (reader_busy_) KickDriver();
        driver_cv_.notify_all();
        continue;
      }
      if (closing_ && !reader_busy_) break;
      const bool want_write = !out_.empty() && !closing_;
      const bool want_read = !closing_ && drivers_ == 0 && !reader_busy_ &&
                             Clock::now() - last_driver_left_ >= options_.handback;
      if (!want_read && !want_write) {
        // Drivers read. Check back now and then, less often while they keep
        // calling (each check is a wake-up), at most every 4 x handback.
        const Clock::time_point parked_at = Clock::now();
        io_parked_ = true;
        io_cv_.wait_for(lk, closing_ ? kDriverRecheck : options_.handback * park_scale_);
        io_parked_ = false;
        if (drivers_ > 0 || last_driver_left_ > parked_at) {
          park_scale_ = std::min(park_scale_ * 2, 4);
        }
        continue;
      }
      if (want_read) {
        reader_busy_ = true;
        park_scale_ = 1;
      }
      io_polling_read_ = want_read;
      io_polling_ = true;
      lk.unlock();
      pollfd fds[2] = {
          {fd_, static_cast<short>((want_read ? POLLIN : 0) | (want_write ? POLLOUT : 0)), 0},
          {io_kick_, POLLIN, 0}};
      const int r = ::poll(fds, 2, -1);
      if (r > 0 && fds[1].revents != 0) Drain(io_kick_);
      if (r > 0 && want_write && fds[0].revents != 0) {
        std::lock_guard<std::mutex> g(mu_);
        FlushLocked();
      }
      if (r > 0 && want_read && (fds[0].revents & (POLLIN | POLLERR | POLLHUP)) != 0) {
        ReadAvailable([this](std::string_view p) { cb_.on_frame(p); });
      }
      lk.lock();
      io_polling_ = false;
      io_polling_read_ = false;
      if (want_read) {
        reader_busy_ = false;
        if (drivers_ > 0) driver_cv_.notify_all();
      }
    }
    // Closing and no driver on the socket: flush (after a local Close), end.
    if (local_close_ && !failed_) {
      const Clock::time_point linger_end = Clock::now() + options_.close_linger;
      while (!out_.empty() && Clock::now() < linger_end) {
        lk.unlock();
        pollfd p{fd_, POLLOUT, 0};
        ::poll(&p, 1, PollTimeout(linger_end, options_.close_linger));
        lk.lock();
        if (!FlushLocked()) break;
      }
    }
    fd_closed_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    const Status why = reason_ ? *reason_ : Status();
    lk.unlock();
    if (cb_.on_close) cb_.on_close(why);
  }

  // Writes what the kernel takes of out_. Returns false on a write error
  // (the connection then fails). REQUIRES: mu_ held.
  bool FlushLocked() {
    if (fd_closed_) return false;
    int error = 0;
    const size_t off = transport::SendNonBlocking(fd_, out_, &error);
    if (error != 0) {
      out_.clear();
      FailLocked(Unavailable("write to " + peer_ + " failed: " + Errno(error)));
      return false;
    }
    if (off == out_.size()) {
      out_.clear();
    } else {
      out_.erase(0, off);
    }
    return true;
  }

  void Fail(Status why) {
    std::lock_guard<std::mutex> lk(mu_);
    FailLocked(std::move(why));
  }

  void FailLocked(Status why) {
    if (!reason_) reason_ = std::move(why);
    failed_ = true;
    closing_ = true;
    WakeAllLocked();
  }

  void WakeIoLocked() {
    if (io_polling_) Kick(io_kick_);
    if (io_parked_) io_cv_.notify_one();
  }

  // Wakes the driver holding the read token: at once out of poll(), and out
  // of a blocking recv() within the receive timeout.
  void KickDriver() {
    driver_kicked_.store(true, std::memory_order_release);
    Kick(driver_kick_);
  }

  void WakeAllLocked() {
    WakeIoLocked();
    KickDriver();
    // A driver blocked in recv() wakes now rather than at its timeout (the
    // token is a driver's when the io thread is not reading with it). The fd
    // stays open until the read token is free (IoLoop).
    if (reader_busy_ && !io_polling_read_ && !fd_closed_) ::shutdown(fd_, SHUT_RD);
    driver_cv_.notify_all();
  }

  const PollConnectionOptions options_;
  const std::string peer_;
  const Callbacks cb_;
  const int fd_;
  const int io_kick_;      // wakes the io thread out of poll()
  const int driver_kick_;  // wakes the driver holding the token out of poll()

  // Only the holder of the read token touches these.
  transport::FrameDecoder decoder_;
  std::vector<char> buf_;

  std::mutex mu_;
  std::condition_variable io_cv_;           // the parked io thread
  std::condition_variable driver_cv_;       // drivers waiting for the token
  std::string out_;                         // framed bytes not yet written
  std::vector<std::string> deferred_;       // frames for the io thread's on_frame
  int drivers_ = 0;                         // callers inside Drive()
  bool reader_busy_ = false;                // someone holds the read token
  std::atomic<bool> driver_kicked_{false};  // KickDriver() since the driver last looked
  bool io_polling_ = false;                 // the io thread is in (or entering) poll()
  bool io_polling_read_ = false;            // ... with the read token
  bool io_parked_ = false;                  // the io thread waits on io_cv_
  Clock::time_point last_driver_left_{};
  int park_scale_ = 1;  // the parked io thread's check interval, in handbacks
  bool closing_ = false;
  std::atomic<bool> local_close_{false};  // written under mu_, read per frame without it
  bool failed_ = false;
  bool fd_closed_ = false;
  std::optional<Status> reason_;
  std::thread io_;  // last: started after everything above exists
};

}  // namespace

Result<std::unique_ptr<Connection>> DialPollConnection(const std::string& endpoint,
                                                       milliseconds timeout,
                                                       Connection::Callbacks callbacks,
                                                       PollConnectionOptions options) {
  Result<int> fd = OpenSocket(endpoint, timeout);
  if (!fd.ok()) return fd.status();
  return std::unique_ptr<Connection>(
      new PollConnection(*fd, endpoint, std::move(callbacks), options));
}

}  // namespace latchkey::client_internal
