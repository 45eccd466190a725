// PollConnection: the caller-driven read path against a real Listener.
#include "client/poll_connection.h"

#include <gtest/gtest.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "transport/listener.h"

namespace latchkey::client_internal {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Test server. "req:N" -> "rep:N"; "both:N" -> "push:N" then "rep:N";
// "quiet" -> nothing; "bye" -> close; "big:N" -> a payload of N bytes;
// anything longer than 64 bytes -> "got:<size>". Keeps the last connection.
class Server : public transport::ConnectionHandler {
 public:
  Server() {
    transport::ListenerOptions o;
    o.address = "127.0.0.1:0";
    o.max_frame_bytes = 32u << 20;
    listener_ = std::move(transport::Listener::Start(o, this)).value();
  }
  ~Server() override { listener_.reset(); }
  std::string address() const { return listener_->address(); }

  void OnOpen(const std::shared_ptr<transport::Connection>& c) override {
    std::lock_guard<std::mutex> lk(mu_);
    conn_ = c;
  }
  void OnFrame(const std::shared_ptr<transport::Connection>& c, std::string_view p) override {
    const std::string s(p);
    if (s.size() > 64) {
      c->Send("got:" + std::to_string(s.size()));
    } else if (s.rfind("req:", 0) == 0) {
      c->Send("rep:" + s.substr(4));
    } else if (s.rfind("both:", 0) == 0) {
      c->Send("push:" + s.substr(5));
      c->Send("rep:" + s.substr(5));
    } else if (s == "bye") {
      c->Close();
    } else if (s.rfind("big:", 0) == 0) {
      c->Send(std::string(std::stoul(s.substr(4)), 'x'));
    }
  }
  void OnStreamError(const std::shared_ptr<transport::Connection>&, const Status&) override {}
  void OnClose(const std::shared_ptr<transport::Connection>&) override {}

  void Push(const std::string& payload) {
    std::lock_guard<std::mutex> lk(mu_);
    if (conn_) conn_->Send(payload);
  }

 private:
  std::mutex mu_;
  std::shared_ptr<transport::Connection> conn_;
  std::unique_ptr<transport::Listener> listener_;
};

bool IsReply(std::string_view p) {
  return p.substr(0, 4) == "rep:" || p.substr(0, 4) == "got:";
}

// Replies, however they were read: a caller's done() looks here.
std::atomic<int> g_io_replies{0};

// What the io thread saw (replies it read count in g_io_replies only: a
// reply can reach the io thread when it held the socket as the call began).
struct Seen {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> frames;
  std::vector<std::thread::id> threads;
  std::vector<Status> closes;

  Connection::Callbacks Callbacks() {
    Connection::Callbacks cb;
    cb.on_frame = [this](std::string_view p) {
      if (IsReply(p)) {
        g_io_replies.fetch_add(1);
        return;
      }
      std::lock_guard<std::mutex> lk(mu);
      frames.emplace_back(p);
      threads.push_back(std::this_thread::get_id());
      cv.notify_all();
    };
    cb.on_close = [this](const Status& why) {
      std::lock_guard<std::mutex> lk(mu);
      closes.push_back(why);
      cv.notify_all();
    };
    return cb;
  }
  bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds limit = 10s) {
    std::unique_lock<std::mutex> lk(mu);
    return cv.wait_for(lk, limit, pred);
  }
};

// Inline handler: accepts replies and records them, declines the rest.
struct Inline {
  Inline() { g_io_replies = 0; }
  std::atomic<int> inline_replies{0};
  std::string last;
  std::thread::id thread;
  int total() const { return inline_replies.load() + g_io_replies.load(); }
  std::function<bool(std::string_view)> Fn() {
    return [this](std::string_view p) {
      if (!IsReply(p)) return false;
      last = std::string(p);
      thread = std::this_thread::get_id();
      inline_replies.fetch_add(1);
      return true;
    };
  }
};

std::unique_ptr<Connection> Dial(const Server& s, Seen* seen, PollConnectionOptions o = {}) {
  auto c = DialPollConnection(s.address(), 5s, seen->Callbacks(), o);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? std::move(c).value() : nullptr;
}

TEST(PollConnectionTest, CallerReadsItsReplyOnItsOwnThread) {
  Server server;
  Seen seen;
  PollConnectionOptions o;
  o.handback = 10s;  // the io thread stays off the socket between the calls
  auto c = Dial(server, &seen, o);
  Inline in;
  for (int i = 0; i < 50; ++i) {
    const int before = in.total();
    c->Send("req:" + std::to_string(i));
    EXPECT_TRUE(c->Drive([&] { return in.total() > before; }, in.Fn(), Clock::now() + 10s));
    // The first call may find the io thread on the socket; after that the
    // caller reads every reply itself.
    if (i == 0) continue;
    EXPECT_EQ(in.last, "rep:" + std::to_string(i));
    EXPECT_EQ(in.thread, std::this_thread::get_id());
  }
  EXPECT_GE(in.inline_replies.load(), 49);
}

TEST(PollConnectionTest, DeclinedFramesReachTheIoThreadInOrder) {
  Server server;
  Seen seen;
  auto c = Dial(server, &seen);
  Inline in;
  for (int i = 0; i < 20; ++i) {
    const int before = in.total();
    c->Send("both:" + std::to_string(i));
    ASSERT_TRUE(c->Drive([&] { return in.total() > before; }, in.Fn(), Clock::now() + 10s));
  }
  ASSERT_TRUE(seen.WaitFor([&] { return seen.frames.size() == 20; }));
  std::lock_guard<std::mutex> lk(seen.mu);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(seen.frames[i], "push:" + std::to_string(i));
    EXPECT_NE(seen.threads[i], std::this_thread::get_id());
  }
}

TEST(PollConnectionTest, IoThreadReadsWhenNobodyDrives) {
  Server server;
  Seen seen;
  auto c = Dial(server, &seen);
  Inline in;
  c->Send("both:1");
  ASSERT_TRUE(seen.WaitFor([&] { return seen.frames.size() == 1; }));
  const auto until = Clock::now() + 10s;
  while (g_io_replies.load() == 0 && Clock::now() < until) std::this_thread::yield();
  EXPECT_EQ(g_io_replies.load(), 1);
  // After a burst of driven calls, a push is still read without any call.
  for (int i = 0; i < 20; ++i) {
    const int before = in.total();
    c->Send("req:x");
    ASSERT_TRUE(c->Drive([&] { return in.total() > before; }, in.Fn(), Clock::now() + 10s));
  }
  server.Push("push:late");
  ASSERT_TRUE(seen.WaitFor([&] { return seen.frames.size() == 2; }));
  std::lock_guard<std::mutex> lk(seen.mu);
  EXPECT_EQ(seen.frames[0], "push:1");
  EXPECT_EQ(seen.frames[1], "push:late");
}

TEST(PollConnectionTest, DriveStopsAtTheDeadline) {
  Server server;
  Seen seen;
  auto c = Dial(server, &seen);
  Inline in;
  c->Send("quiet");
  const auto start = Clock::now();
  EXPECT_FALSE(c->Drive([] { return false; }, in.Fn(), start + 150ms));
  EXPECT_GE(Clock::now() - start, 150ms);
  // Still usable.
  c->Send("req:after");
  EXPECT_TRUE(c->Drive([&] { return in.total() == 1; }, in.Fn(), Clock::now() + 10s));
}

TEST(PollConnectionTest, CloseWakesADriverAndEndsOnce) {
  Server server;
  Seen seen;
  auto c = Dial(server, &seen);
  Inline in;
  std::atomic<bool> returned{false};
  std::atomic<int> checks{0};
  std::thread driver([&] {
    c->Drive([&] { return checks.fetch_add(1) < 0; }, in.Fn(), Clock::now() + 60s);
    returned = true;
  });
  // Close from another thread once the driver holds the socket (done() is
  // asked a second time right before its first poll()).
  const auto until = Clock::now() + 10s;
  while (checks.load() < 2 && Clock::now() < until) std::this_thread::yield();
  ASSERT_GE(checks.load(), 2);
  const auto closed_at = Clock::now();
  c->Close();
  ASSERT_TRUE(seen.WaitFor([&] { return seen.closes.size() == 1; }));
  driver.join();
  EXPECT_TRUE(returned.load());
  EXPECT_LT(Clock::now() - closed_at, 5s);  // woken, not timed out
  c.reset();
  std::lock_guard<std::mutex> lk(seen.mu);
  ASSERT_EQ(seen.closes.size(), 1u);
  EXPECT_TRUE(seen.closes[0].ok()) << seen.closes[0].ToString();
}

// Sends `request`, drives until the connection ends (which must end the
// drive, not its 60 s deadline) and returns the reason on_close got.
Status DriveUntilTheServerEndsIt(const std::string& request, PollConnectionOptions o = {}) {
  Server server;
  Seen seen;
  auto c = Dial(server, &seen, o);
  Inline in;
  c->Send(request);
  EXPECT_FALSE(c->Drive([] { return false; }, in.Fn(), Clock::now() + 60s));
  EXPECT_TRUE(seen.WaitFor([&] { return seen.closes.size() == 1; }));
  std::lock_guard<std::mutex> lk(seen.mu);
  return seen.closes.empty() ? Status() : seen.closes[0];
}

TEST(PollConnectionTest, PeerCloseEndsADriveWithUnavailable) {
  const Status why = DriveUntilTheServerEndsIt("bye");
  EXPECT_EQ(why.code(), Code::kUnavailable) << why.ToString();
}

TEST(PollConnectionTest, OversizedFrameClosesWithFrameTooLarge) {
  PollConnectionOptions o;
  o.max_frame_bytes = 1024;
  const Status why = DriveUntilTheServerEndsIt("big:4096", o);
  EXPECT_EQ(why.code(), Code::kFrameTooLarge) << why.ToString();
}

TEST(PollConnectionTest, LargeWritesAreFlushedByTheIoThread) {
  Server server;
  Seen seen;
  auto c = Dial(server, &seen);
  Inline in;
  // Far more than a socket buffer: most of it waits for writability.
  c->Send(std::string(12u << 20, 'a'));
  c->Send(std::string(100, 'b'));
  EXPECT_TRUE(c->Drive([&] { return in.total() == 2; }, in.Fn(), Clock::now() + 30s));
}

TEST(PollConnectionTest, ManyDriversEachGetTheirReply) {
  Server server;
  constexpr int kThreads = 4, kCalls = 200;
  std::mutex mu;
  std::vector<std::string> got;  // guarded by mu; however the reply was read
  std::atomic<int> failures{0};
  auto inline_fn = [&](std::string_view p) {
    std::lock_guard<std::mutex> lk(mu);
    got.emplace_back(p);
    return true;
  };
  Connection::Callbacks cb;
  cb.on_frame = [&](std::string_view p) { inline_fn(p); };
  auto dialed = DialPollConnection(server.address(), 5s, cb);
  ASSERT_TRUE(dialed.ok());
  auto c = std::move(dialed).value();
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < kCalls; ++i) {
        const std::string want = "rep:" + std::to_string(t) + "." + std::to_string(i);
        auto have = [&] {
          std::lock_guard<std::mutex> lk(mu);
          return std::find(got.begin(), got.end(), want) != got.end();
        };
        c->Send("req:" + std::to_string(t) + "." + std::to_string(i));
        if (!c->Drive(have, inline_fn, Clock::now() + 30s)) failures.fetch_add(1);
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(got.size(), static_cast<size_t>(kThreads * kCalls));
}

TEST(PollConnectionTest, RefusedAndMalformedEndpoints) {
  Seen seen;
  auto bad = DialPollConnection("nonsense", 1s, seen.Callbacks());
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
  // A port nobody listens on: take one from a listener and close it.
  std::string addr;
  {
    Server s;
    addr = s.address();
  }
  auto refused = DialPollConnection(addr, 2s, seen.Callbacks());
  EXPECT_EQ(refused.status().code(), Code::kUnavailable) << refused.status().ToString();
}

// Host names resolve on a helper thread bounded by the connect deadline; a
// numeric address never reaches the (possibly blocking) lookup.
TEST(ResolveTcpTest, NumericAddressesNeverCallTheLookup) {
  bool called = false;
  auto lookup = [&called](const char*, const char*, const addrinfo*, addrinfo**) {
    called = true;
    return EAI_FAIL;
  };
  auto v4 = ResolveTcp("127.0.0.1", 7411, std::chrono::steady_clock::now() + 1s, lookup);
  ASSERT_TRUE(v4.ok()) << v4.status().ToString();
  EXPECT_EQ((*v4)->ai_family, AF_INET);
  auto v6 = ResolveTcp("::1", 7411, std::chrono::steady_clock::now() + 1s, lookup);
  ASSERT_TRUE(v6.ok()) << v6.status().ToString();
  EXPECT_EQ((*v6)->ai_family, AF_INET6);
  EXPECT_FALSE(called);
}

TEST(ResolveTcpTest, ANameResolvesThroughTheLookupOrFailsClearly) {
  auto to_loopback = [](const char*, const char* port, const addrinfo* hints, addrinfo** res) {
    return ::getaddrinfo("127.0.0.1", port, hints, res);
  };
  auto ok = ResolveTcp("db.example", 7411, std::chrono::steady_clock::now() + 5s, to_loopback);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ((*ok)->ai_family, AF_INET);
  auto no_such = [](const char*, const char*, const addrinfo*, addrinfo**) { return EAI_NONAME; };
  auto bad = ResolveTcp("nowhere.example", 7411, std::chrono::steady_clock::now() + 5s, no_such);
  EXPECT_EQ(bad.status().code(), Code::kUnavailable);
  EXPECT_NE(bad.status().message().find("nowhere.example:7411"), std::string::npos);
}

TEST(ResolveTcpTest, ASlowLookupEndsAtTheDeadlineAndIsLeftToFinish) {
  // The fake resolver blocks until the test lets it go, after ResolveTcp has
  // given up; it then hands a real result to a caller that is gone.
  struct Gate {
    std::mutex mu;
    std::condition_variable cv;
    bool open = false;
    bool finished = false;
  };
  auto gate = std::make_shared<Gate>();
  auto slow = [gate](const char*, const char* port, const addrinfo* hints, addrinfo** res) {
    std::unique_lock<std::mutex> lock(gate->mu);
    gate->cv.wait(lock, [&] { return gate->open; });
    const int rc = ::getaddrinfo("127.0.0.1", port, hints, res);
    gate->finished = true;
    gate->cv.notify_all();
    return rc;
  };
  const auto start = std::chrono::steady_clock::now();
  auto r = ResolveTcp("slow.example", 7411, start + 200ms, slow);
  EXPECT_EQ(r.status().code(), Code::kTimeout) << r.status().ToString();
  EXPECT_GE(std::chrono::steady_clock::now() - start, 200ms);
  std::unique_lock<std::mutex> lock(gate->mu);
  gate->open = true;
  gate->cv.notify_all();
  ASSERT_TRUE(gate->cv.wait_for(lock, 10s, [&] { return gate->finished; }));
}

}  // namespace
}  // namespace latchkey::client_internal
