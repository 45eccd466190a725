#include "transport/listen_socket.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/log.h"

namespace latchkey::transport::internal {
namespace {

std::string FormatAddress(const sockaddr_storage& ss) {
  char host[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    return "[" + std::string(host) + "]:" + std::to_string(ntohs(a->sin6_port));
  }
  const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
  ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
  return std::string(host) + ":" + std::to_string(ntohs(a->sin_port));
}

std::string Errno(int err) {
  return std::strerror(err);
}

Status InUse(const Endpoint& ep) {
  return Unavailable("address " + ep.ToString() +
                     " is already in use; pass --listen with another port");
}

// The host as a numeric address, or resolved (first result, passive).
Status Resolve(const Endpoint& ep, sockaddr_storage* out, socklen_t* len) {
  std::memset(out, 0, sizeof *out);
  auto* v4 = reinterpret_cast<sockaddr_in*>(out);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(out);
  if (::inet_pton(AF_INET, ep.host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(ep.port);
    *len = sizeof *v4;
    return Status::Ok();
  }
  if (::inet_pton(AF_INET6, ep.host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(ep.port);
    *len = sizeof *v6;
    return Status::Ok();
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(ep.port);
  const int rc = ::getaddrinfo(ep.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0 || res == nullptr) {
    return Unavailable("cannot resolve listen host '" + ep.host +
                       "': " + (rc != 0 ? ::gai_strerror(rc) : "no addresses"));
  }
  std::memcpy(out, res->ai_addr, res->ai_addrlen);
  *len = res->ai_addrlen;
  ::freeaddrinfo(res);
  return Status::Ok();
}

Result<ListenSocket> OpenTcp(const Endpoint& ep) {
  sockaddr_storage addr{};
  socklen_t len = 0;
  LATCHKEY_RETURN_IF_ERROR(Resolve(ep, &addr, &len));
  const std::string what = FormatAddress(addr);
  ListenSocket s;
  s.is_v6 = addr.ss_family == AF_INET6;
  s.fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s.fd < 0) return Unavailable("cannot listen on " + what + ": " + Errno(errno));
  const int one = 1;
  ::setsockopt(s.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  Status failed;
  if (::bind(s.fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    failed =
        errno == EADDRINUSE ? InUse(ep) : Unavailable("cannot bind " + what + ": " + Errno(errno));
  } else if (::listen(s.fd, SOMAXCONN) != 0) {
    failed = errno == EADDRINUSE ? InUse(ep)
                                 : Unavailable("cannot listen on " + what + ": " + Errno(errno));
  } else {
    sockaddr_storage local{};
    socklen_t local_len = sizeof local;
    if (::getsockname(s.fd, reinterpret_cast<sockaddr*>(&local), &local_len) != 0) {
      failed = Unavailable("cannot read bound address of " + what + ": " + Errno(errno));
    } else {
      s.address = FormatAddress(local);
      s.port = ntohs(local.ss_family == AF_INET6
                         ? reinterpret_cast<const sockaddr_in6*>(&local)->sin6_port
                         : reinterpret_cast<const sockaddr_in*>(&local)->sin_port);
    }
  }
  if (!failed.ok()) {
    ::close(s.fd);
    return failed;
  }
  return s;
}

Result<ListenSocket> OpenUnix(const Endpoint& ep) {
  const std::string& path = ep.path;
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) {
    return InvalidArgument("unix socket path too long (max " +
                           std::to_string(sizeof addr.sun_path - 1) + " bytes): " + path);
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return Unavailable("cannot listen on unix:" + path + ": file exists and is not a socket");
    }
    // A live server answers a connect; a stale socket file refuses it.
    const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const bool live =
        probe >= 0 &&
        (::connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 || errno == EAGAIN);
    if (probe >= 0) ::close(probe);
    if (live) return InUse(ep);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return Unavailable("cannot remove stale socket unix:" + path + ": " + Errno(errno));
    }
    LK_LOG_INFO("removed stale socket file %s", path.c_str());
  }
  ListenSocket s;
  s.fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s.fd < 0) return Unavailable("cannot listen on unix:" + path + ": " + Errno(errno));
  Status failed;
  if (::bind(s.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    failed = errno == EADDRINUSE ? InUse(ep)
                                 : Unavailable("cannot bind unix:" + path + ": " + Errno(errno));
  } else {
    if (::lstat(path.c_str(), &st) == 0) {
      s.unix_bound = true;
      s.unix_ino = st.st_ino;
      s.unix_dev = st.st_dev;
    }
    if (::listen(s.fd, SOMAXCONN) != 0) {
      failed = Unavailable("cannot listen on unix:" + path + ": " + Errno(errno));
    }
  }
  if (!failed.ok()) {
    ::close(s.fd);
    return failed;
  }
  s.path = path;
  s.address = "unix:" + path;
  return s;
}

}  // namespace

Result<ListenSocket> OpenListenSocket(const Endpoint& endpoint) {
  return endpoint.is_unix ? OpenUnix(endpoint) : OpenTcp(endpoint);
}

void RemoveSocketFile(const ListenSocket& s) {
  if (!s.unix_bound) return;
  struct stat st {};
  if (::lstat(s.path.c_str(), &st) == 0 && st.st_ino == s.unix_ino && st.st_dev == s.unix_dev) {
    ::unlink(s.path.c_str());
  }
}

std::string PeerName(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "unknown";
  if (ss.ss_family == AF_UNIX) return "unix";
  if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6) return "unknown";
  return FormatAddress(ss);
}

}  // namespace latchkey::transport::internal
