// MetricsHttp: the response to each kind of request head, and the endpoint
// over a real socket (port 0), including a request head that never ends.
#include "server/metrics_http.h"

#include <gtest/gtest.h>

#include "testlib/server_process.h"

namespace latchkey::server {
namespace {

MetricsHttp::Render Page(std::string body) {
  return [body] { return std::optional<std::string>(body); };
}

TEST(MetricsHttpTest, ServesOnlyGetMetrics) {
  const auto render = Page("latchkey_up 1\n");
  std::string r = MetricsHttpResponse("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", render);
  EXPECT_EQ(r.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << r;
  EXPECT_NE(r.find("Content-Type: text/plain; version=0.0.4"), std::string::npos);
  EXPECT_NE(r.find("Content-Length: 14\r\n"), std::string::npos);
  EXPECT_EQ(r.substr(r.size() - 14), "latchkey_up 1\n");
  r = MetricsHttpResponse("GET /metrics?x=1 HTTP/1.0\r\n\r\n", render);
  EXPECT_EQ(r.rfind("HTTP/1.1 200 OK", 0), 0u);
  r = MetricsHttpResponse("HEAD /metrics HTTP/1.1\r\n\r\n", render);
  EXPECT_EQ(r.rfind("HTTP/1.1 200 OK", 0), 0u);
  EXPECT_EQ(r.find("latchkey_up"), std::string::npos);  // head only
  EXPECT_EQ(MetricsHttpResponse("GET / HTTP/1.1\r\n\r\n", render).rfind("HTTP/1.1 404", 0), 0u);
  EXPECT_EQ(MetricsHttpResponse("POST /metrics HTTP/1.1\r\n\r\n", render).rfind("HTTP/1.1 405", 0),
            0u);
  for (const char* bad : {"", "GET\r\n\r\n", "GET /metrics\r\n\r\n", "GET /metrics FTP/1\r\n\r\n",
                          "\x01\x02\x03 \xff \xfe\r\n\r\n"}) {
    EXPECT_EQ(MetricsHttpResponse(bad, render).rfind("HTTP/1.1 400", 0), 0u) << bad;
  }
  const MetricsHttp::Render failing = [] { return std::optional<std::string>(); };
  EXPECT_EQ(MetricsHttpResponse("GET /metrics HTTP/1.1\r\n\r\n", failing).rfind("HTTP/1.1 503", 0),
            0u);
}

std::string Exchange(const std::string& address, const std::string& request) {
  return testing::ExchangeOnLoopback(std::stoi(address.substr(address.rfind(':') + 1)), request);
}

TEST(MetricsHttpTest, AnswersOverASocketAndBoundsBadClients) {
  auto m = MetricsHttp::Start("127.0.0.1:0", Page("latchkey_up 1\n"));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  const std::string addr = (*m)->address();
  ASSERT_NE(addr.find("127.0.0.1:"), std::string::npos);
  EXPECT_NE(Exchange(addr, "GET /metrics HTTP/1.1\r\n\r\n").find("latchkey_up 1"),
            std::string::npos);
  // A head over the limit, and one that never ends, are answered and closed.
  EXPECT_EQ(Exchange(addr, std::string(MetricsHttp::kMaxRequestBytes + 4096, 'A'))
                .rfind("HTTP/1.1 431", 0),
            0u);
  EXPECT_EQ(Exchange(addr, "GET /metrics HTTP/1.1\r\n").rfind("HTTP/1.1 408", 0), 0u);
  // Still serving afterwards.
  EXPECT_EQ(Exchange(addr, "GET /metrics HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 200", 0), 0u);
  EXPECT_FALSE(MetricsHttp::Start("unix:/tmp/x.sock", Page("")).ok());
  EXPECT_FALSE(MetricsHttp::Start("not an address", Page("")).ok());
}

}  // namespace
}  // namespace latchkey::server
