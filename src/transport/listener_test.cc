#include "transport/listener.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <sys/stat.h>

#include <atomic>
#include <thread>

#include "replication/raft_node.h"
#include "replication/raft_node_test_util.h"
#include "transport/endpoint.h"
#include "transport/loop_listener.h"
#include "transport/stream_client.h"
#include "transport/transport_test_util.h"

namespace latchkey::transport {
namespace {

using namespace std::chrono_literals;
using testing::PollUntil;
using testing::RawClient;
using testing::RecordingHandler;
using testing::TempDir;

// Every test runs against both listeners: the asio one (io threads) and the
// LoopListener on a real single-voter RaftNode's loop (the server's default).
enum class Kind { kAsio, kLoop };

class ListenerTest : public ::testing::TestWithParam<Kind> {
 protected:
  void SetUp() override {
    if (!loop()) return;
    node_ = replication::StartSingleVoter(dir_.path(), &hooks_);
    ASSERT_NE(node_, nullptr);
  }
  void TearDown() override {
    if (node_) node_->Stop();
  }

  bool loop() const { return GetParam() == Kind::kLoop; }

  Result<std::unique_ptr<Listener>> StartListener(ListenerOptions opts, ConnectionHandler* h) {
    if (loop()) return StartLoopListener(std::move(opts), h, node_.get());
    return Listener::Start(std::move(opts), h);
  }
  std::unique_ptr<Listener> MustStart(ListenerOptions opts, ConnectionHandler* h) {
    auto r = StartListener(std::move(opts), h);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(r).value() : nullptr;
  }
  void EchoPipelined(const std::string& address, int io_threads, int clients);

  TempDir dir_;
  replication::NoHooks hooks_;
  std::unique_ptr<replication::RaftNode> node_;
};

INSTANTIATE_TEST_SUITE_P(Kinds, ListenerTest, ::testing::Values(Kind::kAsio, Kind::kLoop),
                         [](const ::testing::TestParamInfo<Kind>& info) {
                           return std::string(info.param == Kind::kLoop ? "Loop" : "Asio");
                         });

ListenerOptions TcpOptions() {
  ListenerOptions o;
  o.address = "127.0.0.1:0";
  return o;
}

// Collects frames received by a StreamClient.
struct Inbox {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> frames;
  int closes = 0;
  Status close_reason;

  StreamClientHandler Handler() {
    StreamClientHandler h;
    h.on_frame = [this](std::string_view p) {
      std::lock_guard<std::mutex> l(mu);
      frames.emplace_back(p);
      cv.notify_all();
    };
    h.on_close = [this](const Status& s) {
      std::lock_guard<std::mutex> l(mu);
      ++closes;
      close_reason = s;
      cv.notify_all();
    };
    return h;
  }
  bool WaitFrames(size_t n, std::chrono::milliseconds limit = 10000ms) {
    std::unique_lock<std::mutex> l(mu);
    return cv.wait_for(l, limit, [&] { return frames.size() >= n; });
  }
  bool WaitClosed(std::chrono::milliseconds limit = 10000ms) {
    std::unique_lock<std::mutex> l(mu);
    return cv.wait_for(l, limit, [&] { return closes > 0; });
  }
};

std::unique_ptr<StreamClient> MustConnect(const std::string& ep, Inbox* inbox) {
  auto r = StreamClient::Connect(ep, 5s, inbox->Handler());
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(r).value() : nullptr;
}

void ListenerTest::EchoPipelined(const std::string& address, int io_threads, int clients) {
  RecordingHandler h;
  h.on_frame = [](const std::shared_ptr<Connection>& c, std::string_view p) { c->Send(p); };
  ListenerOptions o;
  o.address = address;
  o.io_threads = io_threads;
  auto l = MustStart(o, &h);
  ASSERT_NE(l, nullptr);
  constexpr int kFrames = 10000;
  std::vector<std::unique_ptr<Inbox>> inboxes;
  std::vector<std::unique_ptr<StreamClient>> cs;
  for (int c = 0; c < clients; ++c) {
    inboxes.push_back(std::make_unique<Inbox>());
    cs.push_back(MustConnect(l->address(), inboxes.back().get()));
    ASSERT_NE(cs.back(), nullptr);
  }
  auto payload = [](int c, int i) {
    return "c" + std::to_string(c) + "-" + std::to_string(i) +
           std::string(static_cast<size_t>(i % 61), 'p');
  };
  for (int i = 0; i < kFrames; ++i) {
    for (int c = 0; c < clients; ++c) cs[static_cast<size_t>(c)]->Send(payload(c, i));
  }
  for (int c = 0; c < clients; ++c) {
    Inbox& in = *inboxes[static_cast<size_t>(c)];
    ASSERT_TRUE(in.WaitFrames(kFrames)) << "client " << c << " got " << in.frames.size();
    std::lock_guard<std::mutex> lk(in.mu);
    ASSERT_EQ(in.frames.size(), static_cast<size_t>(kFrames));
    for (int i = 0; i < kFrames; ++i) ASSERT_EQ(in.frames[static_cast<size_t>(i)], payload(c, i));
  }
  EXPECT_EQ(h.overlaps.load(), 0);
  cs.clear();
  l->Stop();
  EXPECT_EQ(h.closed_count(), static_cast<size_t>(clients));
}

TEST_P(ListenerTest, EchoPipelinedTcp) {
  EchoPipelined("127.0.0.1:0", 1, 1);
}

TEST_P(ListenerTest, EchoPipelinedUnix) {
  TempDir dir;
  EchoPipelined("unix:" + dir.path() + "/echo.sock", 1, 1);
}

TEST_P(ListenerTest, EchoManyClientsManyIoThreadsNoOverlap) {
  EchoPipelined("127.0.0.1:0", 4, 4);
}

// The io threads run under SCHED_BATCH unless told not to (the policy is
// read on the io thread itself, inside OnFrame).
TEST_P(ListenerTest, IoThreadsRunUnderSchedBatchByDefault) {
  if (loop()) GTEST_SKIP() << "asio io threads only";
  bool allowed = false;
  std::thread([&] {
    sched_param sp{};
    allowed = sched_setscheduler(0, SCHED_BATCH, &sp) == 0;
  }).join();
  if (!allowed) GTEST_SKIP() << "this machine refuses SCHED_BATCH";
  for (const bool batch : {true, false}) {
    RecordingHandler h;
    std::atomic<int> policy{-2};
    h.on_frame = [&](const std::shared_ptr<Connection>& c, std::string_view) {
      policy = sched_getscheduler(0);
      c->Send("ok");
    };
    ListenerOptions o = TcpOptions();
    o.io_sched_batch = batch;
    auto l = MustStart(o, &h);
    ASSERT_NE(l, nullptr);
    Inbox inbox;
    auto c = StreamClient::Connect(l->address(), 5s, inbox.Handler());
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    (*c)->Send("x");
    ASSERT_TRUE(inbox.WaitFrames(1));
    EXPECT_EQ(policy.load(), batch ? SCHED_BATCH : SCHED_OTHER) << "batch=" << batch;
  }
}

TEST_P(ListenerTest, ReportsBoundAddress) {
  RecordingHandler h;
  auto l = MustStart(TcpOptions(), &h);
  ASSERT_NE(l, nullptr);
  EXPECT_NE(l->port(), 0);
  EXPECT_EQ(l->address(), "127.0.0.1:" + std::to_string(l->port()));

  TempDir dir;
  ListenerOptions uo;
  uo.address = "unix:" + dir.path() + "/a.sock";
  auto u = MustStart(uo, &h);
  ASSERT_NE(u, nullptr);
  EXPECT_EQ(u->port(), 0);
  EXPECT_EQ(u->address(), uo.address);
  u->Stop();
  struct stat st {};
  EXPECT_NE(::lstat((dir.path() + "/a.sock").c_str(), &st), 0) << "socket file left behind";
}

TEST(EndpointTest, Parses) {
  auto a = ParseEndpoint("127.0.0.1:7411");
  ASSERT_TRUE(a.ok());
  EXPECT_FALSE(a->is_unix);
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 7411);
  auto b = ParseEndpoint("[::1]:0");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->host, "::1");
  EXPECT_EQ(b->port, 0);
  EXPECT_EQ(b->ToString(), "[::1]:0");
  auto c = ParseEndpoint("unix:/tmp/x.sock");
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->is_unix);
  EXPECT_EQ(c->path, "/tmp/x.sock");
  EXPECT_EQ(c->ToString(), "unix:/tmp/x.sock");
  EXPECT_TRUE(ParseEndpoint("localhost:65535").ok());
  for (const char* bad :
       {"", ":80", "h:", "h:-1", "h:65536", "h:8x", "::1:80", "[::1]80", "unix:"}) {
    EXPECT_EQ(ParseEndpoint(bad).status().code(), Code::kInvalidArgument) << bad;
  }
}

TEST_P(ListenerTest, Ipv6Loopback) {
  RecordingHandler h;
  h.on_frame = [](const std::shared_ptr<Connection>& c, std::string_view p) { c->Send(p); };
  ListenerOptions o;
  o.address = "[::1]:0";
  auto l = StartListener(o, &h);
  if (!l.ok()) GTEST_SKIP() << "no IPv6 loopback here: " << l.status().ToString();
  EXPECT_EQ((*l)->address(), "[::1]:" + std::to_string((*l)->port()));
  Inbox in;
  auto c = MustConnect((*l)->address(), &in);
  ASSERT_NE(c, nullptr);
  c->Send("v6");
  ASSERT_TRUE(in.WaitFrames(1));
  EXPECT_EQ(in.frames[0], "v6");
}

TEST_P(ListenerTest, ConnectionOutlivesListener) {
  RecordingHandler h;
  auto l = MustStart(TcpOptions(), &h);
  ASSERT_NE(l, nullptr);
  Inbox in;
  auto c = MustConnect(l->address(), &in);
  ASSERT_TRUE(h.WaitFor([&] { return h.opened.size() == 1; }));
  std::shared_ptr<Connection> conn = h.opened[0];
  l.reset();  // Stop + destroy while the application still holds conn
  EXPECT_TRUE(conn->closed());
  conn->Send("no-op");
  conn->Close();
  conn.reset();
  EXPECT_TRUE(in.WaitClosed());
}

TEST_P(ListenerTest, BadAddressIsInvalidArgument) {
  RecordingHandler h;
  for (const char* a : {"nonsense", "127.0.0.1:", "127.0.0.1:99999", "::1:80", "[::1", "unix:"}) {
    ListenerOptions o;
    o.address = a;
    auto r = StartListener(o, &h);
    ASSERT_FALSE(r.ok()) << a;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << a;
  }
}

TEST_P(ListenerTest, PortInUseReturnsClearError) {
  RecordingHandler h;
  auto first = MustStart(TcpOptions(), &h);
  ASSERT_NE(first, nullptr);
  ListenerOptions o;
  o.address = "127.0.0.1:" + std::to_string(first->port());
  auto second = StartListener(o, &h);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Code::kUnavailable);
  EXPECT_EQ(second.status().message(),
            "address " + o.address + " is already in use; pass --listen with another port");
}

TEST_P(ListenerTest, UnixReplacesStaleSocketButNotLiveOne) {
  TempDir dir;
  const std::string path = dir.path() + "/stale.sock";
  {
    // Leave a stale socket file behind: bound, then closed, never unlinked.
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ::close(fd);
  }
  RecordingHandler h;
  ListenerOptions o;
  o.address = "unix:" + path;
  auto l = MustStart(o, &h);
  ASSERT_NE(l, nullptr);
  auto second = StartListener(o, &h);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Code::kUnavailable);
  EXPECT_NE(second.status().message().find("already in use"), std::string::npos);
  // The live listener still works.
  Inbox in;
  h.on_frame = [](const std::shared_ptr<Connection>& c, std::string_view p) { c->Send(p); };
  auto c = MustConnect(o.address, &in);
  ASSERT_NE(c, nullptr);
  c->Send("ping");
  ASSERT_TRUE(in.WaitFrames(1));
}

TEST_P(ListenerTest, FrameTooLargeCallsStreamErrorThenCloses) {
  RecordingHandler h;
  h.on_stream_error = [](const std::shared_ptr<Connection>& c, const Status& s) {
    c->Send("error: " + s.ToString());
  };
  ListenerOptions o = TcpOptions();
  o.max_frame_bytes = 1024;
  auto l = MustStart(o, &h);
  ASSERT_NE(l, nullptr);
  auto raw = RawClient::Tcp(l->port());
  ASSERT_NE(raw, nullptr);
  std::string bytes = EncodeFrame("ok");
  bytes += EncodeFrame(std::string(4096, 'x'));
  ASSERT_TRUE(raw->WriteAll(bytes));
  bool eof = false;
  const std::string got = raw->ReadUntilEof(&eof);
  EXPECT_TRUE(eof);
  FrameDecoder d;
  d.Feed(got.data(), got.size());
  std::string_view p;
  Result<bool> r = d.Next(&p);
  ASSERT_TRUE(r.ok() && *r) << "no error frame received";
  EXPECT_NE(p.find("FRAME_TOO_LARGE"), std::string::npos) << p;
  raw.reset();
  ASSERT_TRUE(h.WaitFor([&] { return h.close_counts.size() == 1; }));
  std::lock_guard<std::mutex> lk(h.mu);
  ASSERT_EQ(h.stream_errors.size(), 1u);
  EXPECT_EQ(h.stream_errors[0].code(), Code::kFrameTooLarge);
  EXPECT_EQ(h.frames, 1u);  // "ok" was delivered, the big one never
  const auto& ev = h.events.begin()->second;
  EXPECT_EQ(ev, (std::vector<std::string>{"open", "error", "close"}));
}

TEST_P(ListenerTest, SendFromManyThreadsDeliversEveryFrameIntact) {
  RecordingHandler h;
  ListenerOptions o = TcpOptions();
  o.io_threads = 2;
  auto l = MustStart(o, &h);
  ASSERT_NE(l, nullptr);
  Inbox in;
  auto c = MustConnect(l->address(), &in);
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(h.WaitFor([&] { return h.opened.size() == 1; }));
  std::shared_ptr<Connection> conn = h.opened[0];
  constexpr int kThreads = 8;
  constexpr int kPerThread = 2000;
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        std::string p = std::to_string(t) + ":" + std::to_string(i) + ":";
        p.append(static_cast<size_t>((t * 31 + i) % 200), static_cast<char>('a' + t));
        conn->Send(p);
      }
    });
  }
  for (auto& t : ts) t.join();
  ASSERT_TRUE(in.WaitFrames(kThreads * kPerThread)) << in.frames.size();
  std::lock_guard<std::mutex> lk(in.mu);
  std::vector<int> next(kThreads, 0);
  for (const auto& f : in.frames) {
    const size_t a = f.find(':');
    const size_t b = f.find(':', a + 1);
    ASSERT_NE(b, std::string::npos) << f;
    const int t = std::stoi(f.substr(0, a));
    const int i = std::stoi(f.substr(a + 1, b - a - 1));
    ASSERT_EQ(i, next[static_cast<size_t>(t)]) << "thread " << t << " out of order";
    ++next[static_cast<size_t>(t)];
    const std::string pad = f.substr(b + 1);
    ASSERT_EQ(pad,
              std::string(static_cast<size_t>((t * 31 + i) % 200), static_cast<char>('a' + t)));
  }
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(next[static_cast<size_t>(t)], kPerThread);
}

TEST_P(ListenerTest, StopClosesConnectionsAndOnCloseRunsOnceEach) {
  RecordingHandler h;
  ListenerOptions o = TcpOptions();
  o.io_threads = 3;
  auto l = MustStart(o, &h);
  ASSERT_NE(l, nullptr);
  constexpr int kClients = 6;
  std::vector<std::unique_ptr<Inbox>> inboxes;
  std::vector<std::unique_ptr<StreamClient>> cs;
  for (int i = 0; i < kClients; ++i) {
    inboxes.push_back(std::make_unique<Inbox>());
    cs.push_back(MustConnect(l->address(), inboxes.back().get()));
  }
  ASSERT_TRUE(h.WaitFor([&] { return h.opened.size() == kClients; }));
  EXPECT_EQ(l->connection_count(), static_cast<size_t>(kClients));
  // A frame queued right before Stop is flushed.
  h.opened[0]->Send("bye");
  l->Stop();
  EXPECT_EQ(l->connection_count(), 0u);
  {
    std::lock_guard<std::mutex> lk(h.mu);
    ASSERT_EQ(h.close_counts.size(), static_cast<size_t>(kClients));
    for (auto& [id, n] : h.close_counts) EXPECT_EQ(n, 1) << "conn " << id;
    for (auto& c : h.opened) EXPECT_TRUE(c->closed());
  }
  for (auto& in : inboxes) EXPECT_TRUE(in->WaitClosed());
  EXPECT_EQ(inboxes[0]->frames, std::vector<std::string>{"bye"});
  l->Stop();  // idempotent
  EXPECT_EQ(h.closed_count(), static_cast<size_t>(kClients));
  // New connections are refused once stopped.
  Inbox late;
  auto r = StreamClient::Connect(l->address(), 2s, late.Handler());
  EXPECT_FALSE(r.ok());
}

TEST_P(ListenerTest, MaxConnectionsEnforced) {
  RecordingHandler h;
  ListenerOptions o = TcpOptions();
  o.max_connections = 2;
  auto l = MustStart(o, &h);
  ASSERT_NE(l, nullptr);
  Inbox a, b, c;
  auto ca = MustConnect(l->address(), &a);
  auto cb = MustConnect(l->address(), &b);
  ASSERT_TRUE(h.WaitFor([&] { return h.opened.size() == 2; }));
  auto cc = MustConnect(l->address(), &c);  // accepted by the kernel, then closed
  ASSERT_NE(cc, nullptr);
  ASSERT_TRUE(c.WaitClosed());
  EXPECT_FALSE(c.close_reason.ok());
  EXPECT_EQ(l->connection_count(), 2u);
  EXPECT_TRUE(cc->closed());
  {
    std::lock_guard<std::mutex> lk(h.mu);
    EXPECT_EQ(h.opened.size(), 2u);
  }
  // Once one leaves, a new one fits.
  ca.reset();
  ASSERT_TRUE(h.WaitFor([&] { return h.close_counts.size() == 1; }));
  ASSERT_TRUE(PollUntil([&] { return l->connection_count() == 1; }));
  Inbox d;
  auto cd = MustConnect(l->address(), &d);
  ASSERT_TRUE(h.WaitFor([&] { return h.opened.size() == 3; }));
  EXPECT_FALSE(d.WaitClosed(50ms));
}

TEST_P(ListenerTest, SlowConsumerIsDisconnected) {
  RecordingHandler h;
  ListenerOptions o = TcpOptions();
  o.max_pending_write_bytes = 1u << 20;
  auto l = MustStart(o, &h);
  ASSERT_NE(l, nullptr);
  auto raw = RawClient::Tcp(l->port());  // never reads
  ASSERT_NE(raw, nullptr);
  raw->SetRecvBuffer(4096);
  ASSERT_TRUE(h.WaitFor([&] { return h.opened.size() == 1; }));
  std::shared_ptr<Connection> conn = h.opened[0];
  const std::string chunk(64 * 1024, 's');
  int sent = 0;
  while (!conn->closed() && sent < 20000) {
    conn->Send(chunk);
    ++sent;
  }
  EXPECT_TRUE(conn->closed()) << "sent " << sent << " chunks without hitting the limit";
  ASSERT_TRUE(h.WaitFor([&] { return h.close_counts.size() == 1; }));
  // The listener forgets the connection right after OnClose returns.
  EXPECT_TRUE(PollUntil([&] { return l->connection_count() == 0; }));
}

TEST_P(ListenerTest, CloseFlushesQueuedFramesFirst) {
  RecordingHandler h;
  h.on_frame = [](const std::shared_ptr<Connection>& c, std::string_view p) {
    for (int i = 0; i < 100; ++i) c->Send(std::string(p) + std::to_string(i));
    c->Close();
    c->Send("dropped");  // after Close: dropped
  };
  auto l = MustStart(TcpOptions(), &h);
  ASSERT_NE(l, nullptr);
  Inbox in;
  auto c = MustConnect(l->address(), &in);
  ASSERT_NE(c, nullptr);
  c->Send("r");
  c->Send("ignored after close");
  ASSERT_TRUE(in.WaitClosed());
  std::lock_guard<std::mutex> lk(in.mu);
  ASSERT_EQ(in.frames.size(), 100u);
  for (int i = 0; i < 100; ++i)
    EXPECT_EQ(in.frames[static_cast<size_t>(i)], "r" + std::to_string(i));
  EXPECT_EQ(in.close_reason.code(), Code::kUnavailable);  // the server closed
  EXPECT_TRUE(h.WaitFor([&] { return h.close_counts.size() == 1; }));
  std::lock_guard<std::mutex> hl(h.mu);
  EXPECT_EQ(h.frames, 1u);
  EXPECT_EQ(h.overlaps.load(), 0);  // OnClose did not run inside OnFrame
}

// LoopListener: every callback runs on the reactor's thread; a reply and a
// Close from inside OnFrame only queue (OnClose comes after OnFrame returned).
TEST_P(ListenerTest, LoopCallbacksRunOnTheLoopAndNeverNest) {
  if (!loop()) GTEST_SKIP() << "LoopListener only";
  RecordingHandler h;
  std::atomic<int> off_loop{0};
  h.on_frame = [&](const std::shared_ptr<Connection>& c, std::string_view p) {
    if (!node_->InLoop()) ++off_loop;
    c->Send(p);
    if (p == "bye") c->Close();
  };
  auto l = MustStart(TcpOptions(), &h);
  ASSERT_NE(l, nullptr);
  Inbox in;
  auto c = MustConnect(l->address(), &in);
  ASSERT_NE(c, nullptr);
  c->Send("a");
  c->Send("bye");
  ASSERT_TRUE(in.WaitClosed());
  EXPECT_EQ(in.frames, (std::vector<std::string>{"a", "bye"}));
  ASSERT_TRUE(h.WaitFor([&] { return h.close_counts.size() == 1; }));
  EXPECT_EQ(off_loop.load(), 0);
  EXPECT_EQ(h.overlaps.load(), 0);
  std::lock_guard<std::mutex> lk(h.mu);
  EXPECT_EQ(h.events.begin()->second, (std::vector<std::string>{"open", "close"}));
}

// Defer runs after the callbacks already queued on the io thread: the frames
// of one read are all delivered before it. A thread outside the listener may
// defer too.
TEST_P(ListenerTest, DeferRunsAfterTheFramesInHand) {
  std::mutex mu;
  std::vector<std::string> seen;
  std::shared_ptr<Connection> conn;
  RecordingHandler h;
  h.on_frame = [&](const std::shared_ptr<Connection>& c, std::string_view p) {
    std::lock_guard<std::mutex> l(mu);
    seen.emplace_back(p);
    conn = c;
    if (seen.size() == 1) {
      c->Defer([&] {
        std::lock_guard<std::mutex> l2(mu);
        seen.emplace_back("deferred");
      });
    }
  };
  auto l = MustStart(TcpOptions(), &h);
  ASSERT_NE(l, nullptr);
  auto raw = RawClient::Tcp(l->port());
  ASSERT_NE(raw, nullptr);
  std::string bytes;
  for (const char* p : {"a", "b", "c"}) AppendFrame(p, &bytes);
  ASSERT_TRUE(raw->WriteAll(bytes));  // one small send: one read on loopback
  auto count = [&] {
    std::lock_guard<std::mutex> lk(mu);
    return seen.size();
  };
  ASSERT_TRUE(PollUntil([&] { return count() == 4; }));
  std::shared_ptr<Connection> c;
  {
    std::lock_guard<std::mutex> lk(mu);
    EXPECT_EQ(seen, (std::vector<std::string>{"a", "b", "c", "deferred"}));
    c = conn;
  }
  c->Defer([&] {
    std::lock_guard<std::mutex> lk(mu);
    seen.emplace_back("from outside");
  });
  ASSERT_TRUE(PollUntil([&] { return count() == 5; }));
}

// Send writes directly from the caller when no write is in flight and leaves
// the rest to the io thread; frames bigger than the socket buffers force
// partial direct writes. Every frame must arrive intact and in per-thread
// order.
// LoopListener: the same frames, posted from the threads, exercise partial
// writes (and dropping the written front of the buffer) on the loop.
TEST_P(ListenerTest, DirectAndQueuedWritesKeepOrderWithLargeFrames) {
  RecordingHandler h;
  ListenerOptions o = TcpOptions();
  o.direct_writes = true;
  auto l = MustStart(o, &h);
  ASSERT_NE(l, nullptr);
  Inbox in;
  auto c = MustConnect(l->address(), &in);
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(h.WaitFor([&] { return h.opened.size() == 1; }));
  std::shared_ptr<Connection> conn = h.opened[0];
  constexpr int kThreads = 4;
  constexpr int kPerThread = 60;
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        std::string p = std::to_string(t) + ":" + std::to_string(i) + ":";
        const size_t pad = i % 3 == 0 ? 700u * 1024 : static_cast<size_t>(i * 7);
        p.append(pad, static_cast<char>('a' + (t + i) % 26));
        conn->Send(p);
      }
    });
  }
  for (auto& t : ts) t.join();
  ASSERT_TRUE(in.WaitFrames(kThreads * kPerThread, 30s)) << in.frames.size();
  std::lock_guard<std::mutex> lk(in.mu);
  std::vector<int> next(kThreads, 0);
  for (const auto& f : in.frames) {
    const size_t a = f.find(':');
    const size_t b = f.find(':', a + 1);
    ASSERT_NE(b, std::string::npos);
    const int t = std::stoi(f.substr(0, a));
    const int i = std::stoi(f.substr(a + 1, b - a - 1));
    ASSERT_EQ(i, next[static_cast<size_t>(t)]) << "thread " << t << " out of order";
    ++next[static_cast<size_t>(t)];
    const size_t pad = i % 3 == 0 ? 700u * 1024 : static_cast<size_t>(i * 7);
    ASSERT_EQ(f.size() - b - 1, pad);
    ASSERT_EQ(f.find_first_not_of(static_cast<char>('a' + (t + i) % 26), b + 1), std::string::npos);
  }
}

// A direct write into a connection the peer reset must neither raise SIGPIPE
// nor crash; the connection reports closed.
TEST_P(ListenerTest, SendAfterPeerResetClosesQuietly) {
  RecordingHandler h;
  ListenerOptions o = TcpOptions();
  o.direct_writes = true;
  auto l = MustStart(o, &h);
  ASSERT_NE(l, nullptr);
  auto raw = RawClient::Tcp(l->port());
  ASSERT_NE(raw, nullptr);
  ASSERT_TRUE(h.WaitFor([&] { return h.opened.size() == 1; }));
  std::shared_ptr<Connection> conn = h.opened[0];
  linger lg{};
  lg.l_onoff = 1;
  lg.l_linger = 0;
  ::setsockopt(raw->fd(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  raw.reset();  // RST
  EXPECT_TRUE(PollUntil([&] {
    conn->Send("after reset");
    return conn->closed();
  }));
  ASSERT_TRUE(h.WaitFor([&] { return h.close_counts.size() == 1; }));
}

}  // namespace
}  // namespace latchkey::transport
