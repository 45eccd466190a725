#include "transport/stream_client.h"

#include <asio.hpp>
#include <condition_variable>
#include <future>
#include <mutex>
#include <optional>
#include <thread>

#include "common/log.h"
#include "transport/endpoint.h"
#include "transport/stream_conn.h"

namespace latchkey::transport {
namespace {

using internal::StreamConn;

thread_local const void* t_client_io_owner = nullptr;

// Adapts the std::function handler set to the Connection callback interface.
class FnHandler final : public ConnectionHandler {
 public:
  explicit FnHandler(StreamClientHandler h) : h_(std::move(h)) {}
  void OnOpen(const std::shared_ptr<Connection>&) override {}
  void OnFrame(const std::shared_ptr<Connection>&, std::string_view payload) override {
    if (h_.on_frame) h_.on_frame(payload);
  }
  void OnStreamError(const std::shared_ptr<Connection>&, const Status& status) override {
    if (h_.on_stream_error) h_.on_stream_error(status);
  }
  void OnClose(const std::shared_ptr<Connection>& conn) override {
    if (h_.on_close) h_.on_close(static_cast<StreamConn*>(conn.get())->close_reason());
  }

 private:
  StreamClientHandler h_;
};

// State of one connect attempt; lives on the strand.
struct ConnectState {
  explicit ConnectState(const asio::strand<asio::io_context::executor_type>& s)
      : timer(s), resolver(s), tcp(s), local(s) {}
  asio::steady_timer timer;
  asio::ip::tcp::resolver resolver;
  asio::ip::tcp::socket tcp;
  asio::local::stream_protocol::socket local;
  bool done = false;
  bool timed_out = false;
  std::promise<asio::error_code> result;

  void Finish(const asio::error_code& ec) {
    if (done) return;
    done = true;
    timer.cancel();
    result.set_value(timed_out ? asio::error_code(asio::error::timed_out) : ec);
  }
};

}  // namespace

struct StreamClient::Impl {
  Impl(StreamClientHandler h, StreamClientOptions o, std::string ep)
      : options(o), endpoint(std::move(ep)), handler(std::move(h)) {
    thread = std::thread([this] {
      t_client_io_owner = this;
      for (;;) {
        try {
          io->run();
          break;
        } catch (const std::exception& e) {
          LK_LOG_ERROR("stream client %s: exception escaped a handler: %s", endpoint.c_str(),
                       e.what());
        }
      }
    });
  }

  ~Impl() {
    LATCHKEY_CHECK(t_client_io_owner != this && "StreamClient destroyed from its own callback");
    if (conn) {
      conn->CloseForShutdown();
      std::unique_lock<std::mutex> lock(mu);
      if (!cv.wait_for(lock, options.close_linger + std::chrono::seconds(1),
                       [&] { return finished; })) {
        conn->Abort(Status::Ok());
        cv.wait(lock, [&] { return finished; });
      }
    }
    conn.reset();
    work.reset();
    thread.join();
  }

  const StreamClientOptions options;
  const std::string endpoint;
  // io first: destroyed last, after everything holding asio objects.
  std::shared_ptr<asio::io_context> io = std::make_shared<asio::io_context>();
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work{
      io->get_executor()};
  FnHandler handler;
  std::shared_ptr<StreamConn> conn;
  std::mutex mu;
  std::condition_variable cv;
  bool finished = false;
  std::thread thread;
};

StreamClient::StreamClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StreamClient::~StreamClient() = default;

Result<std::unique_ptr<StreamClient>> StreamClient::Connect(std::string_view endpoint,
                                                            std::chrono::milliseconds timeout,
                                                            StreamClientHandler handler,
                                                            StreamClientOptions options) {
  Result<Endpoint> ep = ParseEndpoint(endpoint);
  if (!ep.ok()) return ep.status();
  std::optional<asio::local::stream_protocol::endpoint> unix_ep;
  if (ep->is_unix) {
    try {
      unix_ep.emplace(ep->path);
    } catch (const std::exception&) {
      return InvalidArgument("unix socket path too long: " + ep->path);
    }
  }

  auto impl = std::make_unique<Impl>(std::move(handler), options, std::string(endpoint));
  auto strand = asio::make_strand(*impl->io);
  auto st = std::make_shared<ConnectState>(strand);
  std::future<asio::error_code> done = st->result.get_future();
  asio::post(strand, [st, timeout, ep = *ep, unix_ep] {
    st->timer.expires_after(timeout);
    st->timer.async_wait([st](const asio::error_code& ec) {
      if (ec || st->done) return;
      st->timed_out = true;
      asio::error_code ignored;
      st->resolver.cancel();
      st->tcp.close(ignored);
      st->local.close(ignored);
    });
    if (unix_ep) {
      st->local.async_connect(*unix_ep, [st](const asio::error_code& ec) { st->Finish(ec); });
      return;
    }
    st->resolver.async_resolve(
        ep.host, std::to_string(ep.port),
        [st](const asio::error_code& ec, asio::ip::tcp::resolver::results_type results) {
          if (ec || st->timed_out) {
            st->Finish(ec ? ec : asio::error::operation_aborted);
            return;
          }
          asio::async_connect(st->tcp, results,
                              [st](const asio::error_code& ec2, const asio::ip::tcp::endpoint&) {
                                st->Finish(ec2);
                              });
        });
  });
  const asio::error_code ec = done.get();
  if (ec == asio::error::timed_out) {
    return Status(Code::kTimeout, "connect to " + std::string(endpoint) + " timed out after " +
                                      std::to_string(timeout.count()) + " ms");
  }
  if (ec) return Unavailable("cannot connect to " + std::string(endpoint) + ": " + ec.message());

  // The connect op is done; nothing on the io thread touches the sockets now.
  std::optional<StreamConn::Socket> socket;
  if (ep->is_unix) {
    socket.emplace(std::move(st->local));
  } else {
    asio::error_code ignored;
    st->tcp.set_option(asio::ip::tcp::no_delay(true), ignored);
    socket.emplace(std::move(st->tcp));
  }
  internal::StreamConnOptions copts;
  copts.max_frame_bytes = options.max_frame_bytes;
  copts.max_pending_write_bytes = options.max_pending_write_bytes;
  copts.close_linger = options.close_linger;
  copts.direct_writes = options.direct_writes;
  Impl* raw = impl.get();
  impl->conn =
      std::make_shared<StreamConn>(impl->io, /*id=*/1, std::string(endpoint), std::move(*socket),
                                   strand, &impl->handler, copts, [raw](StreamConn*) {
                                     std::lock_guard<std::mutex> lock(raw->mu);
                                     raw->finished = true;
                                     raw->cv.notify_all();
                                   });
  impl->conn->Start();
  return std::unique_ptr<StreamClient>(new StreamClient(std::move(impl)));
}

void StreamClient::Send(std::string_view payload) {
  impl_->conn->Send(payload);
}
void StreamClient::Close() {
  impl_->conn->Close();
}
void StreamClient::Abort() {
  impl_->conn->Abort(Status::Ok());
}
bool StreamClient::closed() const {
  return impl_->conn->closed();
}
const std::string& StreamClient::endpoint() const {
  return impl_->endpoint;
}

}  // namespace latchkey::transport
