#include "transport/stream_client.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "transport/listener.h"
#include "transport/transport_test_util.h"

namespace latchkey::transport {
namespace {

using namespace std::chrono_literals;
using testing::RecordingHandler;
using testing::TempDir;

struct Events {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> frames;
  std::vector<Status> closes;
  std::vector<Status> errors;

  StreamClientHandler Handler() {
    StreamClientHandler h;
    h.on_frame = [this](std::string_view p) {
      std::lock_guard<std::mutex> l(mu);
      frames.emplace_back(p);
      cv.notify_all();
    };
    h.on_stream_error = [this](const Status& s) {
      std::lock_guard<std::mutex> l(mu);
      errors.push_back(s);
    };
    h.on_close = [this](const Status& s) {
      std::lock_guard<std::mutex> l(mu);
      closes.push_back(s);
      cv.notify_all();
    };
    return h;
  }
  template <typename Pred>
  bool WaitFor(Pred pred, std::chrono::milliseconds limit = 10000ms) {
    std::unique_lock<std::mutex> l(mu);
    return cv.wait_for(l, limit, [&] { return pred(); });
  }
};

std::unique_ptr<Listener> StartEcho(RecordingHandler* h,
                                    const std::string& address = "127.0.0.1:0") {
  h->on_frame = [](const std::shared_ptr<Connection>& c, std::string_view p) { c->Send(p); };
  ListenerOptions o;
  o.address = address;
  auto r = Listener::Start(o, h);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(r).value() : nullptr;
}

TEST(StreamClientTest, BadEndpointIsInvalidArgument) {
  Events ev;
  auto r = StreamClient::Connect("no-port", 1s, ev.Handler());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
}

TEST(StreamClientTest, RefusedIsUnavailable) {
  RecordingHandler h;
  auto l = StartEcho(&h);
  ASSERT_NE(l, nullptr);
  const std::string addr = l->address();
  l->Stop();
  Events ev;
  auto r = StreamClient::Connect(addr, 2s, ev.Handler());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable) << r.status().ToString();
  EXPECT_NE(r.status().message().find(addr), std::string::npos);

  TempDir dir;
  auto u = StreamClient::Connect("unix:" + dir.path() + "/missing.sock", 2s, ev.Handler());
  ASSERT_FALSE(u.ok());
  EXPECT_EQ(u.status().code(), Code::kUnavailable);
  EXPECT_TRUE(ev.closes.empty());  // no on_close for a failed Connect
}

TEST(StreamClientTest, EchoOverTcpAndUnixThenCloseOk) {
  TempDir dir;
  for (const std::string& address :
       {std::string("127.0.0.1:0"), "unix:" + dir.path() + "/c.sock"}) {
    RecordingHandler h;
    auto l = StartEcho(&h, address);
    ASSERT_NE(l, nullptr);
    Events ev;
    auto r = StreamClient::Connect(l->address(), 5s, ev.Handler());
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    auto& c = *r;
    EXPECT_EQ(c->endpoint(), l->address());
    c->Send("one");
    c->Send("");
    c->Send("three");
    ASSERT_TRUE(ev.WaitFor([&] { return ev.frames.size() == 3; }));
    EXPECT_EQ(ev.frames, (std::vector<std::string>{"one", "", "three"}));
    EXPECT_FALSE(c->closed());
    c->Close();
    EXPECT_TRUE(c->closed());
    c->Send("dropped");
    ASSERT_TRUE(ev.WaitFor([&] { return !ev.closes.empty(); }));
    EXPECT_TRUE(ev.closes[0].ok()) << ev.closes[0].ToString();
    ASSERT_TRUE(h.WaitFor([&] { return h.close_counts.size() == 1; }));
    c.reset();
    EXPECT_EQ(ev.closes.size(), 1u);
    std::lock_guard<std::mutex> lk(h.mu);
    EXPECT_EQ(h.frames, 3u);
  }
}

TEST(StreamClientTest, ConcurrentSendsArriveIntactAndInPerThreadOrder) {
  RecordingHandler h;
  std::mutex mu;
  std::vector<std::string> got;
  h.on_frame = [&](const std::shared_ptr<Connection>&, std::string_view p) {
    std::lock_guard<std::mutex> l(mu);
    got.emplace_back(p);
  };
  ListenerOptions o;
  o.address = "127.0.0.1:0";
  auto l = Listener::Start(o, &h);
  ASSERT_TRUE(l.ok());
  Events ev;
  auto c = StreamClient::Connect((*l)->address(), 5s, ev.Handler());
  ASSERT_TRUE(c.ok());
  constexpr int kThreads = 4, kPer = 2500;
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < kPer; ++i) (*c)->Send(std::to_string(t) + "/" + std::to_string(i));
    });
  }
  for (auto& t : ts) t.join();
  ASSERT_TRUE(testing::PollUntil([&] {
    std::lock_guard<std::mutex> lk(mu);
    return got.size() == kThreads * kPer;
  }));
  std::vector<int> next(kThreads, 0);
  for (const auto& f : got) {
    const size_t s = f.find('/');
    const int t = std::stoi(f.substr(0, s));
    ASSERT_EQ(std::stoi(f.substr(s + 1)), next[static_cast<size_t>(t)]++);
  }
}

TEST(StreamClientTest, ServerCloseReportsUnavailableOnce) {
  RecordingHandler h;
  auto l = StartEcho(&h);
  ASSERT_NE(l, nullptr);
  Events ev;
  auto c = StreamClient::Connect(l->address(), 5s, ev.Handler());
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(h.WaitFor([&] { return h.opened.size() == 1; }));
  h.opened[0]->Close();
  ASSERT_TRUE(ev.WaitFor([&] { return !ev.closes.empty(); }));
  EXPECT_EQ(ev.closes[0].code(), Code::kUnavailable);
  EXPECT_TRUE((*c)->closed());
  c = Status(Code::kCancelled, "drop");  // destroy the client
  EXPECT_EQ(ev.closes.size(), 1u);
}

TEST(StreamClientTest, OversizedServerFrameIsStreamError) {
  RecordingHandler h;
  h.on_frame = [](const std::shared_ptr<Connection>& c, std::string_view) {
    c->Send(std::string(2048, 'B'));
  };
  ListenerOptions o;
  o.address = "127.0.0.1:0";
  auto l = Listener::Start(o, &h);
  ASSERT_TRUE(l.ok());
  Events ev;
  StreamClientOptions co;
  co.max_frame_bytes = 1024;
  auto c = StreamClient::Connect((*l)->address(), 5s, ev.Handler(), co);
  ASSERT_TRUE(c.ok());
  (*c)->Send("give me something big");
  ASSERT_TRUE(ev.WaitFor([&] { return !ev.closes.empty(); }));
  ASSERT_EQ(ev.errors.size(), 1u);
  EXPECT_EQ(ev.errors[0].code(), Code::kFrameTooLarge);
  EXPECT_EQ(ev.closes[0].code(), Code::kFrameTooLarge);
  EXPECT_TRUE(ev.frames.empty());
}

TEST(StreamClientTest, AbortClosesAtOnce) {
  RecordingHandler h;
  auto l = StartEcho(&h);
  ASSERT_NE(l, nullptr);
  Events ev;
  auto c = StreamClient::Connect(l->address(), 5s, ev.Handler());
  ASSERT_TRUE(c.ok());
  (*c)->Abort();
  (*c)->Abort();
  EXPECT_TRUE((*c)->closed());
  ASSERT_TRUE(ev.WaitFor([&] { return !ev.closes.empty(); }));
  EXPECT_TRUE(ev.closes[0].ok());
  ASSERT_TRUE(h.WaitFor([&] { return h.close_counts.size() == 1; }));
  c = Status(Code::kCancelled, "drop");
  EXPECT_EQ(ev.closes.size(), 1u);
}

TEST(StreamClientTest, DestructorFlushesAndRunsOnCloseOnce) {
  RecordingHandler h;
  std::atomic<int> got{0};
  h.on_frame = [&](const std::shared_ptr<Connection>&, std::string_view) { ++got; };
  ListenerOptions o;
  o.address = "127.0.0.1:0";
  auto l = Listener::Start(o, &h);
  ASSERT_TRUE(l.ok());
  Events ev;
  {
    auto c = StreamClient::Connect((*l)->address(), 5s, ev.Handler());
    ASSERT_TRUE(c.ok());
    for (int i = 0; i < 1000; ++i) (*c)->Send("last words");
  }
  EXPECT_EQ(ev.closes.size(), 1u);
  ASSERT_TRUE(testing::PollUntil([&] { return got.load() == 1000; })) << got.load();
}

}  // namespace
}  // namespace latchkey::transport
