// Every input limit (docs/operations.md, "Limits") is enforced with a clear
// error, and the server keeps serving others. Limits are shrunk with the
// server flags so each test hits them quickly.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "latchkey.pb.h"
#include "latchkey/client.h"
#include "testlib/server_process.h"
#include "transport/frame.h"

namespace latchkey {
namespace {

using testing::ServerProcess;
using testing::TempDir;

// A raw TCP connection speaking frames by hand (one decoder per connection,
// so pipelined replies are not lost).
class Raw {
 public:
  explicit Raw(int port, int rcvbuf = 0) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    if (rcvbuf > 0) setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~Raw() { close(fd_); }
  bool connected() const { return connected_; }
  bool Write(std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }
  bool Send(const v1::Request& req) {
    v1::ClientFrame f;
    *f.mutable_request() = req;
    return Write(transport::EncodeFrame(f.SerializeAsString()));
  }
  // Next server frame, or nullopt on close / 5 s without data.
  std::optional<v1::ServerFrame> Read() {
    for (;;) {
      std::string_view payload;
      auto r = dec_.Next(&payload);
      if (!r.ok()) return std::nullopt;
      if (*r) {
        v1::ServerFrame f;
        if (!f.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
          return std::nullopt;
        }
        return f;
      }
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 5000) <= 0) return std::nullopt;
      char buf[65536];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return std::nullopt;
      dec_.Feed(buf, static_cast<size_t>(n));
    }
  }
  // The reply to request `id` (skipping pushes and other replies).
  std::optional<v1::Response> ReplyTo(uint64_t id) {
    for (;;) {
      auto f = Read();
      if (!f) return std::nullopt;
      if (f->has_response() && f->response().id() == id) return f->response();
    }
  }
  // Reads until the server closes; false if it is still open after `limit`.
  bool DrainUntilClosed(std::chrono::seconds limit) {
    const auto end = std::chrono::steady_clock::now() + limit;
    char buf[65536];
    while (std::chrono::steady_clock::now() < end) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 1000) <= 0) continue;
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
    }
    return false;
  }

  uint64_t Hello() {
    v1::Request r;
    r.set_id(next_id_++);
    r.mutable_hello()->set_protocol_version(1);
    Send(r);
    auto resp = ReplyTo(r.id());
    return resp && resp->has_hello() ? 1 : 0;
  }
  std::optional<v1::Response> OpenSession() {
    v1::Request r;
    r.set_id(next_id_++);
    r.mutable_open_session()->set_ttl_ms(30'000);
    Send(r);
    return ReplyTo(r.id());
  }
  uint64_t SendAcquire(uint64_t session, const std::string& name, bool try_only,
                       std::string value = "") {
    v1::Request r;
    r.set_id(next_id_++);
    auto* a = r.mutable_acquire();
    a->set_session_id(session);
    a->set_name(name);
    a->set_try_only(try_only);
    if (!value.empty()) {
      a->set_set_value(true);
      a->set_value(std::move(value));
    }
    Send(r);
    return r.id();
  }
  uint64_t next_id() { return next_id_++; }

 private:
  int fd_ = -1;
  bool connected_ = false;
  transport::FrameDecoder dec_;
  uint64_t next_id_ = 1;
};

void ExpectExhausted(const std::optional<v1::Response>& r, const std::string& flag) {
  ASSERT_TRUE(r.has_value()) << "no reply";
  EXPECT_EQ(r->error().code(), v1::RESOURCE_EXHAUSTED) << r->error().message();
  EXPECT_NE(r->error().message().find(flag), std::string::npos) << r->error().message();
}

class LimitsTest : public ::testing::Test {
 protected:
  void StartServer(std::vector<std::string> flags) {
    server_ = std::make_unique<ServerProcess>(dir_.File("data"), std::move(flags));
    ASSERT_TRUE(server_->Start());
  }
  // A well-behaved client still gets served.
  void ExpectServing() {
    ClientOptions o;
    o.endpoint = server_->endpoint();
    auto c = Client::Connect(o);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    auto g = (*c)->Acquire("after-the-flood");
    ASSERT_TRUE(g.ok()) << g.status().ToString();
  }
  TempDir dir_;
  std::unique_ptr<ServerProcess> server_;
};

TEST_F(LimitsTest, FrameSizeIsConfigurable) {
  StartServer({"--max-frame-bytes", "4096"});
  Raw c(server_->port());
  ASSERT_TRUE(c.Hello());
  c.Write(transport::EncodeFrame(std::string(5000, 'x')));
  auto f = c.Read();
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->response().error().code(), v1::FRAME_TOO_LARGE) << f->response().error().message();
  EXPECT_NE(f->response().error().message().find("4096"), std::string::npos);
  ExpectServing();
}

TEST_F(LimitsTest, NameOwnerAndValueSizes) {
  StartServer({});
  Raw c(server_->port());
  ASSERT_TRUE(c.Hello());
  auto s = c.OpenSession();
  ASSERT_TRUE(s && s->has_open_session());
  const uint64_t sid = s->open_session().session_id();
  auto name = c.ReplyTo(c.SendAcquire(sid, std::string(513, 'n'), true));
  ASSERT_TRUE(name.has_value());
  EXPECT_EQ(name->error().code(), v1::INVALID_ARGUMENT);
  EXPECT_NE(name->error().message().find("512"), std::string::npos) << name->error().message();

  v1::Request r;
  r.set_id(c.next_id());
  r.mutable_acquire()->set_session_id(sid);
  r.mutable_acquire()->set_name("ok");
  r.mutable_acquire()->set_owner(std::string(257, 'o'));
  c.Send(r);
  auto owner = c.ReplyTo(r.id());
  ASSERT_TRUE(owner.has_value());
  EXPECT_EQ(owner->error().code(), v1::INVALID_ARGUMENT) << owner->error().message();

  auto value = c.ReplyTo(c.SendAcquire(sid, "v", true, std::string(64 * 1024 + 1, 'v')));
  ASSERT_TRUE(value.has_value());
  EXPECT_EQ(value->error().code(), v1::VALUE_TOO_LARGE);
  EXPECT_NE(value->error().message().find("65536"), std::string::npos) << value->error().message();
  auto fits = c.ReplyTo(c.SendAcquire(sid, "v", true, std::string(64 * 1024, 'v')));
  ASSERT_TRUE(fits.has_value());
  EXPECT_EQ(fits->error().code(), v1::OK) << fits->error().message();
}

TEST_F(LimitsTest, SessionsPerConnectionAndInAll) {
  StartServer({"--max-sessions-per-connection", "3", "--max-sessions", "5"});
  Raw a(server_->port());
  ASSERT_TRUE(a.Hello());
  for (int i = 0; i < 3; ++i) {
    auto s = a.OpenSession();
    ASSERT_TRUE(s && s->has_open_session()) << (s ? s->error().message() : "no reply");
  }
  ExpectExhausted(a.OpenSession(), "--max-sessions-per-connection");
  Raw b(server_->port());
  ASSERT_TRUE(b.Hello());
  for (int i = 0; i < 2; ++i) {
    auto s = b.OpenSession();
    ASSERT_TRUE(s && s->has_open_session()) << (s ? s->error().message() : "no reply");
  }
  ExpectExhausted(b.OpenSession(), "--max-sessions");
}

TEST_F(LimitsTest, WaitsPerSession) {
  StartServer({"--max-waits-per-session", "2"});
  Raw holder(server_->port());
  ASSERT_TRUE(holder.Hello());
  const uint64_t hs = holder.OpenSession()->open_session().session_id();
  for (const char* n : {"w1", "w2", "w3"}) {
    auto g = holder.ReplyTo(holder.SendAcquire(hs, n, true));
    ASSERT_TRUE(g && g->has_acquire()) << (g ? g->error().message() : "no reply");
  }
  Raw waiter(server_->port());
  ASSERT_TRUE(waiter.Hello());
  const uint64_t ws = waiter.OpenSession()->open_session().session_id();
  waiter.SendAcquire(ws, "w1", false);
  waiter.SendAcquire(ws, "w2", false);
  // Both waits are queued once the holder sees two waiters.
  ASSERT_TRUE(testing::WaitFor([&] {
    size_t queued = 0;
    for (const char* n : {"w1", "w2"}) {
      v1::Request r;
      r.set_id(holder.next_id());
      r.mutable_get_lock()->set_name(n);
      holder.Send(r);
      auto g = holder.ReplyTo(r.id());
      if (g && g->get_lock().waiters_size() == 1) ++queued;
    }
    return queued == 2;
  }));
  ExpectExhausted(waiter.ReplyTo(waiter.SendAcquire(ws, "w3", false)), "--max-waits-per-session");
  // A try-lock never waits, so it is not limited.
  auto t = waiter.ReplyTo(waiter.SendAcquire(ws, "w3", true));
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->error().code(), v1::LOCK_BUSY) << t->error().message();
}

TEST_F(LimitsTest, TotalConnections) {
  StartServer({"--max-connections", "2"});
  Raw a(server_->port());
  Raw b(server_->port());
  ASSERT_TRUE(a.Hello());
  ASSERT_TRUE(b.Hello());
  Raw c(server_->port());
  auto f = c.Read();
  ASSERT_TRUE(f.has_value()) << "refused connection got no error";
  EXPECT_EQ(f->response().error().code(), v1::RESOURCE_EXHAUSTED);
  EXPECT_NE(f->response().error().message().find("--max-connections"), std::string::npos)
      << f->response().error().message();
  EXPECT_TRUE(c.DrainUntilClosed(std::chrono::seconds(5)));
}

// A client that pipelines requests and never reads its replies is cut off
// once its queue passes --max-pending-write-bytes, instead of growing the
// server's memory without bound; everyone else is unaffected.
TEST_F(LimitsTest, SlowConsumerIsDisconnected) {
  StartServer({"--max-pending-write-bytes", "262144"});
  Raw setup(server_->port());
  ASSERT_TRUE(setup.Hello());
  const uint64_t sid = setup.OpenSession()->open_session().session_id();
  for (int i = 0; i < 40; ++i) {
    auto g = setup.ReplyTo(
        setup.SendAcquire(sid, "slow." + std::string(200, 'a' + i % 26) + std::to_string(i), true));
    ASSERT_TRUE(g && g->has_acquire());
  }
  Raw slow(server_->port(), 4096);
  ASSERT_TRUE(slow.Hello());
  // ~40 x 250 bytes per reply: 4,000 replies are ~40 MB, far beyond what the
  // socket buffers hold.
  v1::ClientFrame f;
  f.mutable_request()->mutable_list_locks()->set_prefix("slow");
  std::string burst;
  bool sent = true;
  for (int i = 0; i < 4000 && sent; ++i) {
    f.mutable_request()->set_id(100 + static_cast<uint64_t>(i));
    burst += transport::EncodeFrame(f.SerializeAsString());
    if (burst.size() > 65536) {
      sent = slow.Write(burst);
      burst.clear();
    }
  }
  if (sent) slow.Write(burst);
  EXPECT_TRUE(slow.DrainUntilClosed(std::chrono::seconds(30)))
      << "the server kept a non-reading client connected";
  ExpectServing();
}

}  // namespace
}  // namespace latchkey
