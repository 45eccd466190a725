// Hostile and broken clients: every bad input gets a clear error where
// possible, the connection is closed, and nobody else is affected.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <random>

#include "latchkey.pb.h"
#include "latchkey/client.h"
#include "testlib/server_process.h"
#include "transport/frame.h"

namespace latchkey {
namespace {

using testing::ServerProcess;
using testing::TempDir;

// A raw TCP connection speaking frames by hand.
class RawConn {
 public:
  explicit RawConn(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~RawConn() { close(fd_); }
  bool connected() const { return connected_; }
  void Write(std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
  }
  void Send(const v1::Request& req) {
    v1::ClientFrame f;
    *f.mutable_request() = req;
    Write(transport::EncodeFrame(f.SerializeAsString()));
  }
  // Next server frame, or nullopt on close / 5 s without data. Bytes of
  // later frames received with it stay in the decoder for the next call.
  std::optional<v1::ServerFrame> Read() {
    transport::FrameDecoder& dec = decoder_;
    for (;;) {
      std::string_view payload;
      auto r = dec.Next(&payload);
      if (!r.ok()) return std::nullopt;
      if (*r) {
        v1::ServerFrame f;
        if (!f.ParseFromArray(payload.data(), static_cast<int>(payload.size())))
          return std::nullopt;
        return f;
      }
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 5000) <= 0) return std::nullopt;
      char buf[4096];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return std::nullopt;
      dec.Feed(buf, static_cast<size_t>(n));
    }
  }
  // True once the server closed the connection (within 5 s).
  bool ClosedByServer() {
    for (;;) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 5000) <= 0) return false;
      char buf[4096];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n == 0) return true;
      if (n < 0) return errno == ECONNRESET;
    }
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  transport::FrameDecoder decoder_;
};

v1::Request Hello(uint32_t version = 1) {
  v1::Request r;
  r.set_id(1);
  r.mutable_hello()->set_protocol_version(version);
  return r;
}

class BadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.Start());
    ClientOptions o;
    o.endpoint = server_.endpoint();
    o.client_name = "bystander";
    auto c = Client::Connect(o);
    ASSERT_TRUE(c.ok());
    bystander_ = std::move(c.value());
    auto g = bystander_->Acquire("precious");
    ASSERT_TRUE(g.ok());
    token_ = g->fencing_token;
  }
  void TearDown() override {
    // The well-behaved client and its lock are unaffected.
    auto info = bystander_->GetLock("precious");
    ASSERT_TRUE(info.ok()) << info.status().ToString();
    EXPECT_TRUE(info->held);
    EXPECT_EQ(info->holder.fencing_token, token_);
    EXPECT_TRUE(bystander_->session_status().ok());
  }
  void ExpectErrorThenClose(RawConn& c, v1::ErrorCode code) {
    auto f = c.Read();
    ASSERT_TRUE(f.has_value()) << "no error reply";
    ASSERT_TRUE(f->has_response());
    EXPECT_EQ(f->response().error().code(), code) << f->response().error().message();
    EXPECT_FALSE(f->response().error().message().empty());
    EXPECT_TRUE(c.ClosedByServer());
  }

  TempDir dir_;
  ServerProcess server_{dir_.File("data")};
  std::unique_ptr<Client> bystander_;
  uint64_t token_ = 0;
};

TEST_F(BadInputTest, OversizedFrameIsRefused) {
  RawConn c(server_.port());
  ASSERT_TRUE(c.connected());
  c.Write(std::string("\x40\x00\x00\x00", 4));  // announces 1 GiB
  ExpectErrorThenClose(c, v1::FRAME_TOO_LARGE);
}

TEST_F(BadInputTest, MalformedProtobufIsRefused) {
  RawConn c(server_.port());
  c.Write(transport::EncodeFrame("\xff\xff\xff\xff garbage"));
  ExpectErrorThenClose(c, v1::PROTOCOL_ERROR);
}

TEST_F(BadInputTest, RequestBeforeHandshakeIsRefused) {
  RawConn c(server_.port());
  v1::Request r;
  r.set_id(7);
  r.mutable_get_status();
  c.Send(r);
  ExpectErrorThenClose(c, v1::PROTOCOL_ERROR);
}

TEST_F(BadInputTest, UnknownRequestTypeIsRefused) {
  RawConn c(server_.port());
  c.Send(Hello());
  auto hello = c.Read();
  ASSERT_TRUE(hello && hello->response().has_hello());
  v1::Request empty;
  empty.set_id(2);  // no body: what an unknown (newer) message looks like
  c.Send(empty);
  ExpectErrorThenClose(c, v1::PROTOCOL_ERROR);
}

TEST_F(BadInputTest, UnsupportedProtocolVersionIsRefused) {
  RawConn c(server_.port());
  c.Send(Hello(99));
  ExpectErrorThenClose(c, v1::UNSUPPORTED_VERSION);
}

// Lock watches are compared after every applied entry, so one connection may
// hold 100: the 101st is refused with RESOURCE_EXHAUSTED (the connection
// stays usable) until one is cancelled.
TEST_F(BadInputTest, LockWatchesPerConnectionAreLimited) {
  RawConn c(server_.port());
  ASSERT_TRUE(c.connected());
  c.Send(Hello());
  ASSERT_TRUE(c.Read().has_value());
  auto watch = [&](uint64_t id) {
    v1::Request r;
    r.set_id(id);
    r.mutable_watch_lock()->set_name("limit." + std::to_string(id));
    c.Send(r);
  };
  // The reply to `id`; the pushes in between are counted.
  int pushes = 0;
  auto reply = [&](uint64_t id) -> std::optional<v1::Response> {
    for (;;) {
      auto f = c.Read();
      if (!f) return std::nullopt;
      if (f->has_push()) {
        pushes += f->push().has_lock_changed() ? 1 : 0;
        continue;
      }
      if (f->response().id() == id) return f->response();
    }
  };
  std::vector<uint64_t> watch_ids;
  for (uint64_t id = 2; id <= 101; ++id) {
    watch(id);
    auto r = reply(id);
    ASSERT_TRUE(r.has_value());
    ASSERT_EQ(r->error().code(), v1::OK) << r->error().message();
    watch_ids.push_back(r->watch_lock().watch_id());
  }
  watch(102);
  auto refused = reply(102);
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->error().code(), v1::RESOURCE_EXHAUSTED);
  EXPECT_NE(refused->error().message().find("lock watches"), std::string::npos);
  v1::Request cancel;
  cancel.set_id(103);
  cancel.mutable_cancel_watch()->set_watch_id(watch_ids.front());
  c.Send(cancel);
  auto cancelled = reply(103);
  ASSERT_TRUE(cancelled.has_value());
  EXPECT_EQ(cancelled->error().code(), v1::OK);
  watch(104);
  auto again = reply(104);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->error().code(), v1::OK) << again->error().message();
  EXPECT_GE(pushes, 100);  // each watch's first state
}

TEST_F(BadInputTest, RandomGarbageNeverHurtsTheServer) {
  std::mt19937 rng(20261202);
  for (int i = 0; i < 50; ++i) {
    RawConn c(server_.port());
    ASSERT_TRUE(c.connected()) << "server stopped accepting after " << i << " garbage clients";
    std::string junk(1 + rng() % 300, '\0');
    for (char& ch : junk) ch = static_cast<char>(rng());
    if (i % 2 == 0) {  // keep the length plausible half the time
      junk = transport::EncodeFrame(junk);
    }
    c.Write(junk);
  }
  RawConn ok(server_.port());
  ok.Send(Hello());
  auto f = ok.Read();
  ASSERT_TRUE(f.has_value());
  EXPECT_TRUE(f->response().has_hello());
}

}  // namespace
}  // namespace latchkey
