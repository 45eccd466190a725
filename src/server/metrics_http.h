// MetricsHttp: a minimal HTTP/1.1 endpoint for Prometheus-style scrapes
// (`latchkey server --metrics-listen ADDR`). Serves `GET /metrics` with the
// text exposition format (0.0.4) that `render` returns, 404 for any other
// path, 405 for any other method, 400 for a malformed request, 431 for a
// request head over kMaxRequestBytes and 408 for one slower than
// kRequestTimeout; one request per connection, then close.
//
// Threading: one thread of its own accepts and answers connections one at a
// time; each connection gets at most kRequestTimeout to send its request, so
// a slow or idle client delays the next scrape by that much at most.
// `render` runs on that thread (the server posts to its loop and waits).
// Every byte from the network is untrusted: the request head is limited to
// kMaxRequestBytes.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "common/status.h"

namespace latchkey::server {

class MetricsHttp {
 public:
  static constexpr size_t kMaxRequestBytes = 8 * 1024;
  static constexpr std::chrono::milliseconds kRequestTimeout{2000};

  // nullopt from render: 503 (the server could not produce its metrics).
  using Render = std::function<std::optional<std::string>()>;

  // Binds `address` ("127.0.0.1:9411"; port 0 picks one) and starts serving.
  static Result<std::unique_ptr<MetricsHttp>> Start(const std::string& address, Render render);
  ~MetricsHttp();  // stops the thread and closes the socket
  MetricsHttp(const MetricsHttp&) = delete;
  MetricsHttp& operator=(const MetricsHttp&) = delete;

  // The bound address with the real port, "127.0.0.1:40123".
  const std::string& address() const { return address_; }

 private:
  MetricsHttp(int listen_fd, int wake_fd, std::string address, Render render);
  void Run();
  void Serve(int fd);

  const int listen_fd_;
  const int wake_fd_;  // an eventfd: the destructor writes it to stop Run
  const std::string address_;
  const Render render_;
  std::thread thread_;
};

// The response to one HTTP request head (everything up to the blank line),
// with what `render` returns as the /metrics page. The unit tests and the
// fuzz target call it directly.
std::string MetricsHttpResponse(std::string_view head, const MetricsHttp::Render& render);

}  // namespace latchkey::server
