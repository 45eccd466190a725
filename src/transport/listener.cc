#include "transport/listener.h"

#include <sched.h>
#include <unistd.h>

#include <asio.hpp>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/log.h"
#include "transport/endpoint.h"
#include "transport/frame.h"
#include "transport/listen_socket.h"
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
    auto sock = internal::OpenListenSocket(endpoint_);
    if (!sock.ok()) return sock.status();
    listen_ = std::move(sock.value());
    asio::error_code ec;
    if (endpoint_.is_unix) {
      unix_acceptor_.assign(asio::local::stream_protocol(), listen_.fd, ec);
    } else {
      tcp_acceptor_.assign(listen_.is_v6 ? asio::ip::tcp::v6() : asio::ip::tcp::v4(), listen_.fd,
                           ec);
    }
    if (ec) {
      ::close(listen_.fd);
      return Unavailable("cannot listen on " + listen_.address + ": " + ec.message());
    }
    address_ = listen_.address;
    port_ = listen_.port;
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
    internal::RemoveSocketFile(listen_);
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
  internal::ListenSocket listen_;  // its fd belongs to the acceptor

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
