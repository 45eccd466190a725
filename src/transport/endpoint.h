// Endpoint strings shared by the listener and StreamClient:
//   "127.0.0.1:7411", "localhost:7411", "[::1]:7411", "unix:/path/to/sock".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace latchkey::transport {

struct Endpoint {
  bool is_unix = false;
  std::string host;   // TCP only; IPv6 literals without brackets
  uint16_t port = 0;  // TCP only
  std::string path;   // unix only

  // Canonical form: "host:port", "[v6]:port" or "unix:/path".
  std::string ToString() const;
};

// INVALID_ARGUMENT with a message naming the bad string on malformed input.
Result<Endpoint> ParseEndpoint(std::string_view s);

}  // namespace latchkey::transport
