#include "transport/endpoint.h"

namespace latchkey::transport {

std::string Endpoint::ToString() const {
  if (is_unix) return "unix:" + path;
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

Result<Endpoint> ParseEndpoint(std::string_view s) {
  auto bad = [&](std::string_view why) {
    return InvalidArgument("bad address '" + std::string(s) + "': " + std::string(why) +
                           " (want host:port, [v6]:port or unix:/path)");
  };
  Endpoint ep;
  if (s.starts_with("unix:")) {
    ep.is_unix = true;
    ep.path = std::string(s.substr(5));
    if (ep.path.empty()) return bad("empty unix socket path");
    return ep;
  }
  std::string_view host;
  std::string_view port;
  if (s.starts_with("[")) {
    const size_t close = s.find(']');
    if (close == std::string_view::npos) return bad("missing ']'");
    host = s.substr(1, close - 1);
    if (close + 1 >= s.size() || s[close + 1] != ':') return bad("missing ':port'");
    port = s.substr(close + 2);
  } else {
    const size_t colon = s.rfind(':');
    if (colon == std::string_view::npos) return bad("missing ':port'");
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return bad("IPv6 hosts need [brackets]");
  }
  if (host.empty()) return bad("empty host");
  if (port.empty() || port.size() > 5) return bad("bad port");
  uint32_t p = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return bad("bad port");
    p = p * 10 + static_cast<uint32_t>(c - '0');
  }
  if (p > 65535) return bad("port out of range");
  ep.host = std::string(host);
  ep.port = static_cast<uint16_t>(p);
  return ep;
}

}  // namespace latchkey::transport
