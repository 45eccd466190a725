// libFuzzer target: the metrics endpoint's answer to any request head
// (server/metrics_http.h). Whatever the bytes, the answer is one complete
// HTTP/1.1 response whose Content-Length matches its body.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "server/metrics_http.h"

namespace {
void Require(bool cond) {
  if (!cond) std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view head(reinterpret_cast<const char*>(data), size);
  const latchkey::server::MetricsHttp::Render render = [] {
    return std::optional<std::string>("latchkey_up 1\n");
  };
  const std::string r = latchkey::server::MetricsHttpResponse(head, render);
  Require(r.rfind("HTTP/1.1 ", 0) == 0);
  const size_t end = r.find("\r\n\r\n");
  Require(end != std::string::npos);
  const size_t cl = r.find("Content-Length: ");
  Require(cl != std::string::npos && cl < end);
  const size_t length = std::strtoull(r.c_str() + cl + 16, nullptr, 10);
  const bool head_only = head.rfind("HEAD ", 0) == 0 && r.rfind("HTTP/1.1 200", 0) == 0;
  Require(head_only ? r.size() == end + 4 : r.size() == end + 4 + length);
  return 0;
}
