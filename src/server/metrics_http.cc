#include "server/metrics_http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/log.h"
#include "transport/endpoint.h"

namespace latchkey::server {

namespace {

std::string Reply(std::string_view status, std::string_view content_type, std::string_view body) {
  std::string out = "HTTP/1.1 ";
  out += status;
  out += "\r\nContent-Type: ";
  out += content_type;
  out += "\r\nContent-Length: " + std::to_string(body.size());
  out += "\r\nConnection: close\r\n\r\n";
  out += body;
  return out;
}

std::string Text(std::string_view status, std::string_view body) {
  return Reply(status, "text/plain; charset=utf-8", body);
}

// Sends all of `bytes` unless the peer stops reading for kRequestTimeout.
void SendAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    pollfd p{fd, POLLOUT, 0};
    if (poll(&p, 1, static_cast<int>(MetricsHttp::kRequestTimeout.count())) <= 0) return;
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) return;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
}

// Closes after the peer has read the answer: shut the sending side, then
// drop what the peer still sends (an oversized head) until it closes, for
// half a second at most. Closing with unread input would reset the
// connection, and the peer could lose the answer.
void LingerAndClose(int fd) {
  shutdown(fd, SHUT_WR);
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
  for (size_t dropped = 0; dropped < (1u << 20);) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    char buf[4096];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    dropped += static_cast<size_t>(n);
  }
  close(fd);
}

}  // namespace

std::string MetricsHttpResponse(std::string_view head, const MetricsHttp::Render& render) {
  const size_t eol = head.find("\r\n");
  const std::string_view line = head.substr(0, eol);
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.substr(sp2 + 1).rfind("HTTP/1.", 0) != 0) {
    return Text("400 Bad Request", "malformed request line\n");
  }
  const std::string_view method = line.substr(0, sp1);
  std::string_view path = line.substr(sp1 + 1, sp2 - sp1 - 1);
  path = path.substr(0, path.find('?'));
  if (path != "/metrics") return Text("404 Not Found", "only /metrics is served here\n");
  if (method != "GET" && method != "HEAD") {
    return Text("405 Method Not Allowed", "use GET /metrics\n");
  }
  std::optional<std::string> body = render();
  if (!body) return Text("503 Service Unavailable", "the server did not produce its metrics\n");
  std::string out = Reply("200 OK", "text/plain; version=0.0.4; charset=utf-8", *body);
  if (method == "HEAD") out.resize(out.find("\r\n\r\n") + 4);
  return out;
}

Result<std::unique_ptr<MetricsHttp>> MetricsHttp::Start(const std::string& address, Render render) {
  auto ep = transport::ParseEndpoint(address);
  if (!ep.ok()) return ep.status();
  if (ep->is_unix) return InvalidArgument("--metrics-listen takes HOST:PORT, not a unix socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(ep->port);
  const std::string host = ep->host == "localhost" ? "127.0.0.1" : ep->host;
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    return InvalidArgument("--metrics-listen " + address + ": an IPv4 address is needed");
  }
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Unavailable(std::string("metrics socket: ") + std::strerror(errno));
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd, 16) != 0) {
    const int err = errno;
    close(fd);
    return Unavailable("metrics address " + address + ": " + std::strerror(err) +
                       (err == EADDRINUSE ? "; pass --metrics-listen with another port" : ""));
  }
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const int wake = eventfd(0, EFD_CLOEXEC);
  if (wake < 0) {
    close(fd);
    return Unavailable(std::string("metrics eventfd: ") + std::strerror(errno));
  }
  std::unique_ptr<MetricsHttp> m(new MetricsHttp(
      fd, wake, host + ":" + std::to_string(ntohs(addr.sin_port)), std::move(render)));
  m->thread_ = std::thread([p = m.get()] { p->Run(); });
  return m;
}

MetricsHttp::MetricsHttp(int listen_fd, int wake_fd, std::string address, Render render)
    : listen_fd_(listen_fd),
      wake_fd_(wake_fd),
      address_(std::move(address)),
      render_(std::move(render)) {}

MetricsHttp::~MetricsHttp() {
  const uint64_t one = 1;
  if (::write(wake_fd_, &one, sizeof one) < 0) {
    LK_LOG_WARN("metrics endpoint: cannot wake its thread: %s", std::strerror(errno));
  }
  if (thread_.joinable()) thread_.join();
  close(listen_fd_);
  close(wake_fd_);
}

void MetricsHttp::Run() {
  for (;;) {
    pollfd p[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (p[1].revents != 0) return;
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) continue;
    Serve(fd);
    LingerAndClose(fd);
  }
}

void MetricsHttp::Serve(int fd) {
  std::string head;
  const auto deadline = std::chrono::steady_clock::now() + kRequestTimeout;
  while (head.find("\r\n\r\n") == std::string::npos) {
    if (head.size() > kMaxRequestBytes) {
      return SendAll(fd, Text("431 Request Header Fields Too Large", "request head over 8 KiB\n"));
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return SendAll(fd, Text("408 Request Timeout", "request too slow\n"));
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[2048];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return;  // closed or failed before a full request
    head.append(buf, static_cast<size_t>(n));
  }
  SendAll(fd, MetricsHttpResponse(head, render_));
}

}  // namespace latchkey::server
