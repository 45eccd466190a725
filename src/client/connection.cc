#include "client/connection.h"

#include "transport/stream_client.h"

namespace latchkey::client_internal {
namespace {

// Short linger: we close a connection only when we are done with it (after
// CloseSession was answered) or it is unusable (failed handshake).
constexpr std::chrono::milliseconds kCloseLinger{500};

class StreamConnection final : public Connection {
 public:
  explicit StreamConnection(std::unique_ptr<transport::StreamClient> c) : c_(std::move(c)) {}
  void Send(std::string_view payload) override { c_->Send(payload); }
  void Close() override { c_->Close(); }

 private:
  std::unique_ptr<transport::StreamClient> c_;
};

}  // namespace

Result<std::unique_ptr<Connection>> Connection::Dial(const std::string& endpoint,
                                                     std::chrono::milliseconds timeout,
                                                     Callbacks callbacks) {
  transport::StreamClientHandler h;
  h.on_frame = std::move(callbacks.on_frame);
  h.on_close = std::move(callbacks.on_close);
  transport::StreamClientOptions o;
  o.close_linger = kCloseLinger;
  auto c = transport::StreamClient::Connect(endpoint, timeout, std::move(h), o);
  if (!c.ok()) return c.status();
  return std::unique_ptr<Connection>(new StreamConnection(std::move(c).value()));
}

}  // namespace latchkey::client_internal
