#include "transport/listener.h"

#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <asio.hpp>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/log.h"
#include "transport/endpoint.h"
#include "transport/frame.h"
#include "transport/stream_conn.h"

namespace latchkey::transport {
namespace {

using internal::StreamConn;
using internal::StreamConnOptions;

thread_local const void* t_io_owner = nullptr;

std::string FormatTcp(const asio::ip::tcp::endpoint& ep) {
  if (ep.address().is_v6())
    return "[" + ep.address().to_string() + "]:" + std::to_string(ep.port());
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}

class ListenerImpl final : public Listener {
 public:
  ListenerImpl(ListenerOptions options, ConnectionHandler* handler)
      : options_(std::move(options)),
        handler_(handler),
        accept_strand_(asio::make_strand(*io_)),
        tcp_acceptor_(accept_strand_),
        unix_acceptor_(accept_strand_),
        retry_timer_(accept_strand_) {
    conn_options_.max_frame_bytes = options_.max_frame_bytes;
    conn_options_.max_pending_write_bytes = options_.max_pending_write_bytes;
    conn_options_.close_linger = std::chrono::milliseconds(options_.close_linger_ms);
    conn_options_.direct_writes = options_.direct_writes;
  }

  ~ListenerImpl() override { Stop(); }

  Status Init() {
    Result<Endpoint> ep = ParseEndpoint(options_.address);
    if (!ep.ok()) return ep.status();
    endpoint_ = *ep;
    LATCHKEY_RETURN_IF_ERROR(endpoint_.is_unix ? BindUnix() : BindTcp());
    const int n = options_.io_threads > 0 ? options_.io_threads : 1;
    if (endpoint_.is_unix) {
      asio::post(accept_strand_, [this] { AcceptUnix(); });
    } else {
      asio::post(accept_strand_, [this] { AcceptTcp(); });
    }
    for (int i = 0; i < n; ++i) {
      threads_.emplace_back([this] {
        if (options_.io_sched_batch) {
          // SCHED_BATCH: a woken io thread does not preempt the thread that
          // woke it (the Raft loop handing over a reply), see ListenerOptions.
          sched_param sp{};
          if (sched_setscheduler(0, SCHED_BATCH, &sp) != 0) {
            LK_LOG_DEBUG("listener: SCHED_BATCH refused for an io thread; running as normal");
          }
        }
        RunIo();
      });
    }
    LK_LOG_INFO("listening on %s (%d io thread%s)", address_.c_str(), n, n == 1 ? "" : "s");
    return Status::Ok();
  }

  std::string address() const override { return address_; }
  uint16_t port() const override { return port_; }

  size_t connection_count() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return conns_.size();
  }

  void Stop() override {
    {
      std::lock_guard<std::mutex> lock(stop_mu_);
      if (stopped_) return;
      stopped_ = true;
    }
    LATCHKEY_CHECK(t_io_owner != this && "Listener::Stop called from an io thread");
    std::vector<std::shared_ptr<StreamConn>> conns;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
      conns.reserve(conns_.size());
      for (auto& [id, c] : conns_) conns.push_back(c);
    }
    asio::post(accept_strand_, [this] {
      asio::error_code ignored;
      tcp_acceptor_.close(ignored);
      unix_acceptor_.close(ignored);
      retry_timer_.cancel();
    });
    for (auto& c : conns) c->CloseForShutdown();
    if (!threads_.empty()) {
      std::unique_lock<std::mutex> lock(mu_);
      const auto bound = conn_options_.close_linger + std::chrono::seconds(1);
      if (!cv_.wait_for(lock, bound, [&] { return conns_.empty(); })) {
        // Only reachable if a handler callback blocks; force the rest closed.
        for (auto& c : conns) c->Abort(Unavailable("listener stopped"));
        cv_.wait(lock, [&] { return conns_.empty(); });
      }
    }
    conns.clear();
    work_.reset();
    for (auto& t : threads_) t.join();
    threads_.clear();
    if (unix_bound_) {
      struct stat st {};
      if (::lstat(endpoint_.path.c_str(), &st) == 0 && st.st_ino == unix_ino_ &&
          st.st_dev == unix_dev_) {
        ::unlink(endpoint_.path.c_str());
      }
    }
    if (!address_.empty()) LK_LOG_INFO("stopped listening on %s", address_.c_str());
  }

 private:
  void RunIo() {
    t_io_owner = this;
    for (;;) {
      try {
        io_->run();
        break;
      } catch (const std::exception& e) {
        LK_LOG_ERROR("listener %s: exception escaped a handler: %s", address_.c_str(), e.what());
      }
    }
  }

  Status InUse() const {
    return Unavailable("address " + endpoint_.ToString() +
                       " is already in use; pass --listen with another port");
  }

  Status BindTcp() {
    asio::error_code ec;
    asio::ip::address addr = asio::ip::make_address(endpoint_.host, ec);
    if (ec) {
      asio::ip::tcp::resolver resolver(*io_);
      auto results = resolver.resolve(endpoint_.host, std::to_string(endpoint_.port),
                                      asio::ip::tcp::resolver::passive, ec);
      if (ec || results.empty()) {
        return Unavailable("cannot resolve listen host '" + endpoint_.host +
                           "': " + (ec ? ec.message() : std::string("no addresses")));
      }
      addr = results.begin()->endpoint().address();
    }
    const asio::ip::tcp::endpoint ep(addr, endpoint_.port);
    const std::string what = FormatTcp(ep);
    tcp_acceptor_.open(ep.protocol(), ec);
    if (ec) {
      return Unavailable("cannot listen on " + what + ": " + ec.message());
    }
    tcp_acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    tcp_acceptor_.bind(ep, ec);
    if (ec) {
      if (ec == asio::error::address_in_use) return InUse();
      return Unavailable("cannot bind " + what + ": " + ec.message());
    }
    tcp_acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      if (ec == asio::error::address_in_use) return InUse();
      return Unavailable("cannot listen on " + what + ": " + ec.message());
    }
    const auto local = tcp_acceptor_.local_endpoint(ec);
    if (ec) return Unavailable("cannot read bound address of " + what + ": " + ec.message());
    port_ = local.port();
    address_ = FormatTcp(local);
    return Status::Ok();
  }

  Status BindUnix() {
    const std::string& path = endpoint_.path;
    asio::local::stream_protocol::endpoint ep;
    try {
      ep = asio::local::stream_protocol::endpoint(path);
    } catch (const std::exception&) {
      return InvalidArgument("unix socket path too long (max " +
                             std::to_string(sizeof(sockaddr_un::sun_path) - 1) +
                             " bytes): " + path);
    }
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) {
        return Unavailable("cannot listen on unix:" + path + ": file exists and is not a socket");
      }
      // A live server answers a connect; a stale socket file refuses it.
      asio::error_code ec;
      asio::local::stream_protocol::socket probe(*io_);
      probe.connect(ep, ec);
      if (!ec || ec == asio::error::try_again) return InUse();
      if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
        return Unavailable("cannot remove stale socket unix:" + path + ": " + std::strerror(errno));
      }
      LK_LOG_INFO("removed stale socket file %s", path.c_str());
    }
    asio::error_code ec;
    unix_acceptor_.open(ep.protocol(), ec);
    if (ec) {
      return Unavailable("cannot listen on unix:" + path + ": " + ec.message());
    }
    unix_acceptor_.bind(ep, ec);
    if (ec) {
      if (ec == asio::error::address_in_use) return InUse();
      return Unavailable("cannot bind unix:" + path + ": " + ec.message());
    }
    if (::lstat(path.c_str(), &st) == 0) {
      unix_bound_ = true;
      unix_ino_ = st.st_ino;
      unix_dev_ = st.st_dev;
    }
    unix_acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return Unavailable("cannot listen on unix:" + path + ": " + ec.message());
    }
    port_ = 0;
    address_ = "unix:" + path;
    return Status::Ok();
  }

  // Transient accept failures (EMFILE, ENOBUFS...) would spin if retried at
  // once; back off briefly.
  template <typename Fn>
  void RetryAcceptLater(const asio::error_code& ec, Fn again) {
    LK_LOG_WARN("accept on %s failed: %s; retrying", address_.c_str(), ec.message().c_str());
    retry_timer_.expires_after(std::chrono::milliseconds(100));
    retry_timer_.async_wait([this, again](const asio::error_code& e) {
      if (!e && !Stopping()) (this->*again)();
    });
  }

  bool Stopping() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stopping_;
  }

  void AcceptTcp() {
    auto strand = asio::make_strand(*io_);
    tcp_acceptor_.async_accept(strand, [this, strand](const asio::error_code& ec, auto sock) {
      if (ec == asio::error::operation_aborted || !tcp_acceptor_.is_open()) return;
      if (ec) {
        RetryAcceptLater(ec, &ListenerImpl::AcceptTcp);
        return;
      }
      asio::error_code ignored;
      sock.set_option(asio::ip::tcp::no_delay(true), ignored);
      asio::error_code pec;
      const auto remote = sock.remote_endpoint(pec);
      std::string peer = pec ? std::string("unknown") : FormatTcp(remote);
      Register(StreamConn::Socket(std::move(sock)), strand, std::move(peer));
      AcceptTcp();
    });
  }

  void AcceptUnix() {
    auto strand = asio::make_strand(*io_);
    unix_acceptor_.async_accept(strand, [this, strand](const asio::error_code& ec, auto sock) {
      if (ec == asio::error::operation_aborted || !unix_acceptor_.is_open()) return;
      if (ec) {
        RetryAcceptLater(ec, &ListenerImpl::AcceptUnix);
        return;
      }
      Register(StreamConn::Socket(std::move(sock)), strand, "unix");
      AcceptUnix();
    });
  }

  void Register(StreamConn::Socket socket, StreamConn::Strand strand, std::string peer) {
    std::lock_guard<std::mutex> lock(mu_);
    asio::error_code ignored;
    if (stopping_) {
      socket.close(ignored);
      return;
    }
    if (conns_.size() >= options_.max_connections) {
      LK_LOG_WARN("rejecting connection from %s on %s: max_connections (%zu) reached", peer.c_str(),
                  address_.c_str(), options_.max_connections);
      if (!options_.reject_payload.empty()) {
        // A few dozen bytes into a fresh socket's empty send buffer: the
        // write completes at once even on a blocking socket.
        const std::string frame = EncodeFrame(options_.reject_payload);
        asio::write(socket, asio::buffer(frame), ignored);
        socket.shutdown(asio::socket_base::shutdown_send, ignored);
      }
      socket.close(ignored);
      return;
    }
    const uint64_t id = next_id_++;
    auto conn = std::make_shared<StreamConn>(io_, id, std::move(peer), std::move(socket),
                                             std::move(strand), handler_, conn_options_,
                                             [this](StreamConn* c) { OnConnFinished(c->id()); });
    conns_.emplace(id, conn);
    // Under mu_ so that Stop's CloseForShutdown is posted after OnOpen.
    conn->Start();
  }

  void OnConnFinished(uint64_t id) {
    std::lock_guard<std::mutex> lock(mu_);
    conns_.erase(id);
    if (conns_.empty()) cv_.notify_all();
  }

  const ListenerOptions options_;
  ConnectionHandler* const handler_;
  StreamConnOptions conn_options_;
  Endpoint endpoint_;
  std::string address_;
  uint16_t port_ = 0;
  bool unix_bound_ = false;
  ino_t unix_ino_ = 0;
  dev_t unix_dev_ = 0;

  // Declared before everything that holds asio objects: destroyed last.
  // Shared with every StreamConn, which an application may hold longer.
  std::shared_ptr<asio::io_context> io_ = std::make_shared<asio::io_context>();
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_{
      io_->get_executor()};
  asio::strand<asio::io_context::executor_type> accept_strand_;
  asio::ip::tcp::acceptor tcp_acceptor_;
  asio::local::stream_protocol::acceptor unix_acceptor_;
  asio::steady_timer retry_timer_;
  std::vector<std::thread> threads_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<uint64_t, std::shared_ptr<StreamConn>> conns_;
  bool stopping_ = false;
  uint64_t next_id_ = 1;

  std::mutex stop_mu_;
  bool stopped_ = false;
};

}  // namespace

Result<std::unique_ptr<Listener>> Listener::Start(ListenerOptions options,
                                                  ConnectionHandler* handler) {
  LATCHKEY_CHECK(handler != nullptr);
  auto listener = std::make_unique<ListenerImpl>(std::move(options), handler);
  Status st = listener->Init();
  if (!st.ok()) return st;
  return std::unique_ptr<Listener>(std::move(listener));
}

}  // namespace latchkey::transport
