// Client library tests against a tiny in-process fake server built on the
// transport Listener. The fake speaks just enough of protocol v1.
#include "latchkey/client.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "latchkey.pb.h"
#include "latchkey/mutex.h"
#include "transport/listener.h"

namespace latchkey {
namespace {

namespace pb = ::latchkey::v1;
using namespace std::chrono_literals;
using transport::Connection;

// Polls `pred` until it holds or `timeout` passes.
bool WaitUntil(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

class FakeServer : public transport::ConnectionHandler {
 public:
  explicit FakeServer(std::string address = "127.0.0.1:0") {
    transport::ListenerOptions o;
    o.address = std::move(address);
    auto l = transport::Listener::Start(o, this);
    EXPECT_TRUE(l.ok()) << l.status().ToString();
    listener_ = std::move(l).value();
  }
  ~FakeServer() override { Stop(); }

  void Stop() {
    if (listener_) listener_->Stop();
  }
  std::string address() const { return listener_->address(); }

  // ---- knobs and observations (thread-safe) ----
  void set_hold_acquires(bool v) {
    With([&] { hold_acquires_ = v; });
  }
  // Releases are counted but never answered.
  void set_swallow_releases(bool v) {
    With([&] { swallow_releases_ = v; });
  }
  void set_refuse_attach(bool v) {
    With([&] { refuse_attach_ = v; });
  }
  // The next `n` releases are refused with NOT_LEADER naming this server as
  // the leader (as a follower would), without taking effect.
  void set_not_leader_releases(int n) {
    With([&] { not_leader_releases_ = n; });
  }
  int hellos() { return Get(hellos_); }
  int opens() { return Get(opens_); }
  int attaches() { return Get(attaches_); }
  int keepalives() { return Get(keepalives_); }
  int close_sessions() { return Get(close_sessions_); }
  int releases() { return Get(releases_); }
  int closed_connections() { return Get(closed_conns_); }
  size_t parked() { return Get(parked_).size(); }
  uint32_t last_hello_version() { return Get(last_hello_version_); }
  std::string last_client_name() { return Get(last_client_name_); }
  uint32_t last_open_ttl() { return Get(last_open_ttl_); }
  int acquires_seen(const std::string& name, const std::string& owner) {
    std::lock_guard<std::mutex> lk(mu_);
    return acquires_seen_[{name, owner}];
  }
  size_t waiters(const std::string& name) {
    std::lock_guard<std::mutex> lk(mu_);
    return waiters_[name].size();
  }
  std::string holder_owner(const std::string& name) {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = locks_.find(name);
    return it == locks_.end() ? "" : it->second.owner;
  }
  bool held(const std::string& name) {
    std::lock_guard<std::mutex> lk(mu_);
    return locks_.count(name) > 0;
  }
  // Drops a lock as if its ttl ran out (no push).
  void ForgetLock(const std::string& name) {
    With([&] { locks_.erase(name); });
  }

  // Answers the parked acquires, newest first, with token 1000 + the number
  // after the last '-' in the lock name.
  void ReplyParkedInReverse() {
    std::vector<Parked> parked;
    With([&] { parked.swap(parked_); });
    for (auto it = parked.rbegin(); it != parked.rend(); ++it) {
      pb::Response r;
      r.set_id(it->id);
      const auto dash = it->name.rfind('-');
      r.mutable_acquire()->set_fencing_token(1000 + std::stoull(it->name.substr(dash + 1)));
      r.mutable_acquire()->set_granted_at_ms(7);
      SendResponse(it->conn, r);
    }
  }

  void PushSessionExpired(uint64_t sid, const std::string& reason) {
    pb::ServerFrame f;
    f.mutable_push()->mutable_session_expired()->set_session_id(sid);
    f.mutable_push()->mutable_session_expired()->set_reason(reason);
    PushTo(sid, f);
  }
  void PushLockLost(uint64_t sid, const std::string& name, const std::string& owner,
                    uint64_t token) {
    pb::ServerFrame f;
    auto* ev = f.mutable_push()->mutable_lock_lost();
    ev->set_session_id(sid);
    ev->set_name(name);
    ev->set_owner(owner);
    ev->set_fencing_token(token);
    ev->set_reason("lock ttl expired");
    PushTo(sid, f);
  }

  // ---- ConnectionHandler ----
  void OnOpen(const std::shared_ptr<Connection>&) override {}
  void OnStreamError(const std::shared_ptr<Connection>&, const Status&) override {}
  void OnClose(const std::shared_ptr<Connection>&) override {
    With([&] { ++closed_conns_; });
  }

  void OnFrame(const std::shared_ptr<Connection>& conn, std::string_view payload) override {
    pb::ClientFrame f;
    ASSERT_TRUE(f.ParseFromArray(payload.data(), static_cast<int>(payload.size())));
    const pb::Request& req = f.request();
    pb::Response r;
    r.set_id(req.id());
    std::vector<std::pair<std::shared_ptr<Connection>, pb::Response>> extra;
    {
      std::lock_guard<std::mutex> lk(mu_);
      switch (req.body_case()) {
        case pb::Request::kHello:
          ++hellos_;
          last_hello_version_ = req.hello().protocol_version();
          last_client_name_ = req.hello().client_name();
          r.mutable_hello()->set_protocol_version(1);
          r.mutable_hello()->set_server_version("fake");
          break;
        case pb::Request::kOpenSession: {
          ++opens_;
          const uint64_t sid = next_session_++;
          last_open_ttl_ = req.open_session().ttl_ms();
          session_conn_[sid] = conn;
          r.mutable_open_session()->set_session_id(sid);
          r.mutable_open_session()->set_ttl_ms(req.open_session().ttl_ms());
          ttl_ms_ = req.open_session().ttl_ms();
          break;
        }
        case pb::Request::kAttachSession: {
          ++attaches_;
          const uint64_t sid = req.attach_session().session_id();
          if (refuse_attach_ || !session_conn_.count(sid)) {
            SetError(&r, pb::SESSION_EXPIRED, "session " + std::to_string(sid) + " expired");
          } else {
            session_conn_[sid] = conn;
            r.mutable_attach_session()->set_ttl_ms(ttl_ms_);
          }
          break;
        }
        case pb::Request::kKeepAlive:
          ++keepalives_;
          r.mutable_keep_alive()->set_ttl_ms(ttl_ms_);
          break;
        case pb::Request::kCloseSession: {
          ++close_sessions_;
          const uint64_t sid = req.close_session().session_id();
          for (auto it = locks_.begin(); it != locks_.end();) {
            it = it->second.session == sid ? locks_.erase(it) : std::next(it);
          }
          session_conn_.erase(sid);
          r.mutable_close_session();
          break;
        }
        case pb::Request::kAcquire: {
          const auto& a = req.acquire();
          ++acquires_seen_[{a.name(), a.owner()}];
          if (hold_acquires_) {
            parked_.push_back(Parked{conn, req.id(), a.name()});
            return;
          }
          auto it = locks_.find(a.name());
          if (it == locks_.end()) {
            Lock& l = locks_[a.name()];
            l = Lock{a.session_id(), a.owner(), ++next_token_};
            r.mutable_acquire()->set_fencing_token(l.token);
          } else if (it->second.session == a.session_id() && it->second.owner == a.owner()) {
            r.mutable_acquire()->set_fencing_token(it->second.token);  // idempotent
          } else if (a.try_only()) {
            SetError(&r, pb::LOCK_BUSY, "lock '" + a.name() + "' is held by " + it->second.owner);
          } else if (a.wait_timeout_ms() > 0) {
            SetError(&r, pb::TIMEOUT, "waited " + std::to_string(a.wait_timeout_ms()) + " ms");
          } else {
            auto& q = waiters_[a.name()];
            for (auto& w : q) {
              if (w.session == a.session_id() && w.owner == a.owner()) {  // re-sent: join
                w.conn = conn;
                w.id = req.id();
                return;
              }
            }
            q.push_back(Waiter{conn, req.id(), a.session_id(), a.owner()});
            return;
          }
          break;
        }
        case pb::Request::kRelease: {
          ++releases_;
          if (swallow_releases_) return;
          if (not_leader_releases_ > 0) {
            --not_leader_releases_;
            SetError(&r, pb::NOT_LEADER, "not the leader");
            r.mutable_error()->set_leader_endpoint(listener_->address());
            break;
          }
          const auto& rel = req.release();
          auto it = locks_.find(rel.name());
          if (it == locks_.end() || it->second.session != rel.session_id() ||
              it->second.owner != rel.owner()) {
            SetError(&r, pb::NOT_HELD, "not held");
            break;
          }
          locks_.erase(it);
          r.mutable_release();
          auto& q = waiters_[rel.name()];
          if (!q.empty()) {
            Waiter w = q.front();
            q.pop_front();
            Lock& l = locks_[rel.name()];
            l = Lock{w.session, w.owner, ++next_token_};
            pb::Response g;
            g.set_id(w.id);
            g.mutable_acquire()->set_fencing_token(l.token);
            extra.emplace_back(w.conn, g);
          }
          break;
        }
        case pb::Request::kGetLock: {
          auto* gl = r.mutable_get_lock();
          gl->set_name(req.get_lock().name());
          gl->set_server_time_ms(12345);
          auto it = locks_.find(req.get_lock().name());
          if (it != locks_.end()) {
            gl->set_held(true);
            gl->mutable_holder()->set_session_id(it->second.session);
            gl->mutable_holder()->set_owner(it->second.owner);
            gl->mutable_holder()->set_fencing_token(it->second.token);
            gl->mutable_holder()->set_client_name("someone");
          }
          for (size_t i = 0; i < waiters_[req.get_lock().name()].size(); ++i) gl->add_waiters();
          break;
        }
        case pb::Request::kGetStatus:
          r.mutable_get_status()->set_server_version("fake-1");
          r.mutable_get_status()->set_node_id(3);
          r.mutable_get_status()->set_raft_state("leader");
          r.mutable_get_status()->set_sessions(session_conn_.size());
          r.mutable_get_status()->set_voters(1);
          break;
        case pb::Request::kCancel: r.mutable_cancel(); break;
        default: SetError(&r, pb::PROTOCOL_ERROR, "unexpected request");
      }
    }
    SendResponse(conn, r);
    for (auto& [c, resp] : extra) SendResponse(c, resp);
  }

 private:
  struct Lock {
    uint64_t session = 0;
    std::string owner;
    uint64_t token = 0;
  };
  struct Waiter {
    std::shared_ptr<Connection> conn;
    uint64_t id;
    uint64_t session;
    std::string owner;
  };
  struct Parked {
    std::shared_ptr<Connection> conn;
    uint64_t id;
    std::string name;
  };

  static void SetError(pb::Response* r, pb::ErrorCode code, const std::string& msg) {
    r->mutable_error()->set_code(code);
    r->mutable_error()->set_message(msg);
  }
  static void SendResponse(const std::shared_ptr<Connection>& c, const pb::Response& r) {
    pb::ServerFrame f;
    *f.mutable_response() = r;
    c->Send(f.SerializeAsString());
  }
  void PushTo(uint64_t sid, const pb::ServerFrame& f) {
    std::shared_ptr<Connection> c;
    With([&] { c = session_conn_[sid]; });
    ASSERT_TRUE(c != nullptr);
    c->Send(f.SerializeAsString());
  }
  template <typename F>
  void With(F f) {
    std::lock_guard<std::mutex> lk(mu_);
    f();
  }
  template <typename T>
  T Get(const T& v) {
    std::lock_guard<std::mutex> lk(mu_);
    return v;
  }

  std::unique_ptr<transport::Listener> listener_;
  std::mutex mu_;
  bool hold_acquires_ = false;
  bool refuse_attach_ = false;
  bool swallow_releases_ = false;
  int not_leader_releases_ = 0;
  int hellos_ = 0, opens_ = 0, attaches_ = 0, keepalives_ = 0, close_sessions_ = 0, releases_ = 0,
      closed_conns_ = 0;
  uint32_t last_hello_version_ = 0;
  std::string last_client_name_;
  uint32_t last_open_ttl_ = 0;
  uint32_t ttl_ms_ = 10000;
  uint64_t next_session_ = 100;
  uint64_t next_token_ = 0;
  std::map<uint64_t, std::shared_ptr<Connection>> session_conn_;
  std::map<std::string, Lock> locks_;
  std::map<std::string, std::deque<Waiter>> waiters_;
  std::map<std::pair<std::string, std::string>, int> acquires_seen_;
  std::vector<Parked> parked_;
};

class ClientTest : public ::testing::Test {
 protected:
  std::unique_ptr<Client> Connect(std::chrono::milliseconds ttl = 10s,
                                  std::function<void(const Status&)> on_lost = nullptr,
                                  std::function<void(const LockLost&)> on_lock_lost = nullptr) {
    ClientOptions o;
    o.endpoint = server_.address();
    o.client_name = "client-test";
    o.session_ttl = ttl;
    o.connect_timeout = 2s;
    o.on_session_lost = std::move(on_lost);
    o.on_lock_lost = std::move(on_lock_lost);
    auto c = Client::Connect(std::move(o));
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c).value() : nullptr;
  }

  FakeServer server_;
};

TEST_F(ClientTest, HandshakeOpensSession) {
  auto c = Connect(4s);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->session_id(), 100u);
  EXPECT_TRUE(c->session_status().ok());
  EXPECT_EQ(server_.hellos(), 1);
  EXPECT_EQ(server_.opens(), 1);
  EXPECT_EQ(server_.last_hello_version(), 1u);
  EXPECT_EQ(server_.last_client_name(), "client-test");
  EXPECT_EQ(server_.last_open_ttl(), 4000u);
}

TEST_F(ClientTest, ConnectFailsWhenNothingListens) {
  const std::string addr = server_.address();
  server_.Stop();
  ClientOptions o;
  o.endpoint = addr;
  o.connect_timeout = 1s;
  auto c = Client::Connect(o);
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(c.status().code() == Code::kUnavailable || c.status().code() == Code::kTimeout)
      << c.status().ToString();
}

// A NOT_LEADER reply (a follower answering) drops the connection, and the
// request is re-sent on the named leader once the session is attached there,
// whether the reply was read by the calling thread or by the io thread (where
// session 13's nemesis found the redirect aborting the process).
TEST_F(ClientTest, NotLeaderRepliesAreRetriedOnTheNamedLeader) {
  for (const bool on_caller : {true, false}) {
    SCOPED_TRACE(on_caller ? "read on the calling thread" : "read on the io thread");
    ClientOptions o;
    o.endpoint = server_.address();
    o.connect_timeout = 2s;
    o.read_on_calling_thread = on_caller;
    auto c = Client::Connect(std::move(o));
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    const int attaches_before = server_.attaches();
    const std::string name = on_caller ? "redirect-caller" : "redirect-io";
    for (int i = 0; i < 20; ++i) {
      ASSERT_TRUE((*c)->Acquire(name).ok());
      server_.set_not_leader_releases(1);
      const int releases_before = server_.releases();
      ASSERT_TRUE((*c)->Release(name).ok()) << "round " << i;
      EXPECT_EQ(server_.releases(), releases_before + 2);  // refused once, then applied
      EXPECT_FALSE(server_.held(name));
    }
    EXPECT_EQ(server_.attaches(), attaches_before + 20);  // one re-attach per redirect
    EXPECT_TRUE((*c)->session_status().ok());
  }
}

TEST(ClientUnixTest, ConnectsOverUnixSocket) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("latchkey-client-test-" + std::to_string(::getpid()) + ".sock"))
                               .string();
  std::filesystem::remove(path);
  FakeServer server("unix:" + path);
  ClientOptions o;
  o.endpoint = "unix:" + path;
  auto c = Client::Connect(o);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto g = (*c)->Acquire("u");
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_EQ(g->fencing_token, 1u);
  (*c)->DropConnectionForTesting();
  EXPECT_TRUE((*c)->Release("u").ok());
  EXPECT_EQ(server.attaches(), 1);
  c->reset();
  server.Stop();
  std::filesystem::remove(path);
}

TEST_F(ClientTest, EndpointListSkipsDeadEndpoints) {
  FakeServer dead;
  const std::string dead_addr = dead.address();
  dead.Stop();
  ClientOptions o;
  o.endpoint = dead_addr + ", " + server_.address();
  o.connect_timeout = 2s;
  auto c = Client::Connect(o);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(server_.opens(), 1);
}

TEST_F(ClientTest, AcquireReleaseAndIntrospection) {
  auto c = Connect();
  ASSERT_TRUE(c);
  auto g = c->Acquire("a", {.owner = "me"});
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_EQ(g->name, "a");
  EXPECT_EQ(g->owner, "me");
  EXPECT_EQ(g->fencing_token, 1u);

  auto busy = c->Acquire("a", {.owner = "other", .try_only = true});
  ASSERT_FALSE(busy.ok());
  EXPECT_EQ(busy.status().code(), Code::kLockBusy);
  EXPECT_EQ(busy.status().message(), "lock 'a' is held by me");  // the server's message

  auto info = c->GetLock("a");
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_TRUE(info->held);
  EXPECT_EQ(info->holder.owner, "me");
  EXPECT_EQ(info->holder.session_id, c->session_id());
  EXPECT_EQ(info->holder.fencing_token, 1u);
  EXPECT_EQ(info->holder.client_name, "someone");
  EXPECT_EQ(info->server_time_ms, 12345u);
  EXPECT_EQ(info->waiters, 0u);

  auto st = c->GetStatus();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->server_version, "fake-1");
  EXPECT_EQ(st->node_id, 3u);
  EXPECT_EQ(st->raft_state, "leader");
  EXPECT_EQ(st->voters, 1u);

  EXPECT_TRUE(c->Release("a", "me").ok());
  Status again = c->Release("a", "me");
  EXPECT_EQ(again.code(), Code::kNotHeld);
  EXPECT_FALSE(server_.held("a"));
}

TEST_F(ClientTest, PipelinedAcquiresMatchTheirReplies) {
  auto c = Connect();
  ASSERT_TRUE(c);
  server_.set_hold_acquires(true);
  constexpr int kThreads = 8;
  std::vector<std::thread> threads;
  std::vector<Result<Grant>> results(kThreads, Result<Grant>(Status(Code::kInternal, "unset")));
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] { results[i] = c->Acquire("p-" + std::to_string(i)); });
  }
  ASSERT_TRUE(WaitUntil([&] { return server_.parked() == kThreads; }));
  server_.ReplyParkedInReverse();
  for (auto& t : threads) t.join();
  for (int i = 0; i < kThreads; ++i) {
    ASSERT_TRUE(results[i].ok()) << results[i].status().ToString();
    EXPECT_EQ(results[i]->name, "p-" + std::to_string(i));
    EXPECT_EQ(results[i]->fencing_token, 1000u + i);
  }
}

TEST_F(ClientTest, KeepalivesAreSent) {
  auto c = Connect(300ms);
  ASSERT_TRUE(c);
  EXPECT_TRUE(WaitUntil([&] { return server_.keepalives() >= 4; }, 5s));
  EXPECT_TRUE(c->session_status().ok());
}

TEST_F(ClientTest, ReconnectAttachesAndResendsPendingAcquire) {
  auto c = Connect(3s);
  ASSERT_TRUE(c);
  const uint64_t sid = c->session_id();
  ASSERT_TRUE(c->Acquire("r", {.owner = "o1"}).ok());

  Result<Grant> waited(Status(Code::kInternal, "unset"));
  std::thread t([&] { waited = c->Acquire("r", {.owner = "o2"}); });
  ASSERT_TRUE(WaitUntil([&] { return server_.waiters("r") == 1; }));

  c->DropConnectionForTesting();
  ASSERT_TRUE(WaitUntil([&] { return server_.attaches() == 1; }));
  // The waiting acquire is sent again on the new connection.
  ASSERT_TRUE(WaitUntil([&] { return server_.acquires_seen("r", "o2") == 2; }));
  EXPECT_EQ(server_.hellos(), 2);
  EXPECT_EQ(server_.opens(), 1);

  ASSERT_TRUE(c->Release("r", "o1").ok());  // the server grants o2 on the new connection
  t.join();
  ASSERT_TRUE(waited.ok()) << waited.status().ToString();
  EXPECT_EQ(waited->fencing_token, 2u);
  EXPECT_EQ(server_.holder_owner("r"), "o2");
  EXPECT_EQ(c->session_id(), sid);
  EXPECT_TRUE(c->session_status().ok());
  // Keeps working afterwards.
  EXPECT_TRUE(c->Release("r", "o2").ok());
}

TEST_F(ClientTest, RequestsDuringReconnectAreQueued) {
  auto c = Connect(3s);
  ASSERT_TRUE(c);
  for (int i = 0; i < 5; ++i) {
    c->DropConnectionForTesting();
    auto g = c->Acquire("q", {.owner = "x"});  // same grant every time (idempotent)
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    EXPECT_EQ(g->fencing_token, 1u);
  }
  EXPECT_TRUE(c->session_status().ok());
  EXPECT_GE(server_.attaches(), 1);
}

TEST_F(ClientTest, InFlightReleaseFailsAsMaybeAppliedOnDisconnect) {
  auto c = Connect(3s);
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->Acquire("rel", {.owner = "o"}).ok());
  server_.set_swallow_releases(true);
  Status released;
  std::thread t([&] { released = c->Release("rel", "o"); });
  ASSERT_TRUE(WaitUntil([&] { return server_.releases() == 1; }));
  c->DropConnectionForTesting();
  t.join();
  EXPECT_EQ(released.code(), Code::kMaybeApplied) << released.ToString();
  ASSERT_TRUE(WaitUntil([&] { return server_.attaches() == 1; }));
  EXPECT_TRUE(c->session_status().ok());
  // The lock is still ours (the release never reached the lock table).
  server_.set_swallow_releases(false);
  EXPECT_TRUE(c->Release("rel", "o").ok());
}

TEST_F(ClientTest, SessionExpiredPushLosesSessionOnce) {
  std::atomic<int> lost{0};
  Status lost_status;
  std::mutex mu;
  auto c = Connect(10s, [&](const Status& s) {
    std::lock_guard<std::mutex> lk(mu);
    lost_status = s;
    ++lost;
  });
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->Acquire("e", {.owner = "holder"}).ok());
  Result<Grant> waited(Status(Code::kInternal, "unset"));
  std::thread t([&] { waited = c->Acquire("e", {.owner = "waiter"}); });
  ASSERT_TRUE(WaitUntil([&] { return server_.waiters("e") == 1; }));

  server_.PushSessionExpired(c->session_id(), "lease expired");
  t.join();
  ASSERT_FALSE(waited.ok());
  EXPECT_EQ(waited.status().code(), Code::kSessionExpired);
  ASSERT_TRUE(WaitUntil([&] { return lost.load() == 1; }));
  {
    std::lock_guard<std::mutex> lk(mu);
    EXPECT_EQ(lost_status.code(), Code::kSessionExpired);
    EXPECT_NE(lost_status.message().find("lease expired"), std::string::npos);
  }
  EXPECT_EQ(c->session_status().code(), Code::kSessionExpired);
  EXPECT_EQ(c->Acquire("e2").status().code(), Code::kSessionExpired);
  EXPECT_EQ(c->Release("e", "holder").code(), Code::kSessionExpired);
  c->DropConnectionForTesting();  // no reconnect once lost
  EXPECT_TRUE(c->Close().ok());
  EXPECT_EQ(lost.load(), 1);
  EXPECT_EQ(server_.attaches(), 0);
}

TEST_F(ClientTest, RefusedAttachLosesSession) {
  std::atomic<int> lost{0};
  auto c = Connect(5s, [&](const Status&) { ++lost; });
  ASSERT_TRUE(c);
  server_.set_refuse_attach(true);
  c->DropConnectionForTesting();
  ASSERT_TRUE(WaitUntil([&] { return lost.load() == 1; }));
  EXPECT_EQ(c->session_status().code(), Code::kSessionExpired);
  EXPECT_EQ(c->GetStatus().status().code(), Code::kSessionExpired);
  EXPECT_EQ(server_.attaches(), 1);
  EXPECT_EQ(lost.load(), 1);
}

TEST_F(ClientTest, UnreachableServerLosesSessionAfterTtl) {
  std::atomic<int> lost{0};
  auto c = Connect(400ms, [&](const Status&) { ++lost; });
  ASSERT_TRUE(c);
  server_.Stop();  // closes our connection; reconnects are refused
  ASSERT_TRUE(WaitUntil([&] { return lost.load() == 1; }, 5s));
  EXPECT_EQ(c->session_status().code(), Code::kSessionExpired);
  EXPECT_EQ(c->Acquire("z").status().code(), Code::kSessionExpired);
}

TEST_F(ClientTest, LockLostPushIsReported) {
  std::atomic<int> calls{0};
  auto c = Connect(10s, nullptr, [&](const LockLost& l) {
    EXPECT_EQ(l.name, "ttl-lock");
    ++calls;
  });
  ASSERT_TRUE(c);
  server_.PushLockLost(c->session_id(), "ttl-lock", "o", 9);
  ASSERT_TRUE(WaitUntil([&] { return calls.load() == 1; }));
  auto lost = c->lost_locks();
  ASSERT_EQ(lost.size(), 1u);
  EXPECT_EQ(lost[0].owner, "o");
  EXPECT_EQ(lost[0].fencing_token, 9u);
  EXPECT_EQ(lost[0].reason, "lock ttl expired");
  EXPECT_TRUE(c->session_status().ok());
}

TEST_F(ClientTest, CloseIsIdempotentAndClosesSession) {
  auto c = Connect();
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->Acquire("c").ok());
  EXPECT_TRUE(c->Close().ok());
  EXPECT_TRUE(c->Close().ok());
  EXPECT_EQ(server_.close_sessions(), 1);
  EXPECT_FALSE(server_.held("c"));
  EXPECT_FALSE(c->session_status().ok());
  EXPECT_FALSE(c->Acquire("c").ok());
  c.reset();
  EXPECT_EQ(server_.close_sessions(), 1);
}

TEST_F(ClientTest, DestructorClosesSession) {
  auto c = Connect();
  ASSERT_TRUE(c);
  c.reset();
  EXPECT_EQ(server_.close_sessions(), 1);
}

TEST_F(ClientTest, MutexWorksWithLockGuard) {
  auto c = Connect();
  ASSERT_TRUE(c);
  Mutex m(*c, "m1");
  EXPECT_EQ(m.name(), "m1");
  EXPECT_EQ(m.owner().rfind("mutex-", 0), 0u);
  {
    std::lock_guard<Mutex> g(m);
    EXPECT_TRUE(m.owns_lock());
    EXPECT_GT(m.fencing_token(), 0u);
    EXPECT_EQ(server_.holder_owner("m1"), m.owner());
  }
  EXPECT_FALSE(m.owns_lock());
  EXPECT_FALSE(server_.held("m1"));
  {
    std::unique_lock<Mutex> g(m);  // lock again after unlock
    EXPECT_TRUE(g.owns_lock());
  }
  EXPECT_FALSE(server_.held("m1"));
}

TEST_F(ClientTest, MutexTryLockAndTimedLock) {
  auto c = Connect();
  ASSERT_TRUE(c);
  Mutex a(*c, "m2");
  Mutex b(*c, "m2");
  EXPECT_NE(a.owner(), b.owner());
  a.lock();
  EXPECT_FALSE(b.try_lock());
  EXPECT_EQ(b.TryLock().code(), Code::kLockBusy);
  EXPECT_FALSE(b.try_lock_for(50ms));
  EXPECT_EQ(b.LockFor(50ms).code(), Code::kTimeout);
  EXPECT_FALSE(b.try_lock_until(std::chrono::steady_clock::now() + 20ms));
  EXPECT_FALSE(b.owns_lock());
  a.unlock();
  EXPECT_TRUE(b.try_lock());
  EXPECT_TRUE(b.owns_lock());
  b.unlock();
}

TEST_F(ClientTest, MutexUnlockNeverThrows) {
  std::atomic<int> lost{0};
  auto c = Connect(10s, [&](const Status&) { ++lost; });
  ASSERT_TRUE(c);
  Mutex m(*c, "m3");
  m.lock();
  server_.ForgetLock("m3");  // as if its ttl ran out
  EXPECT_NO_THROW(m.unlock());
  EXPECT_EQ(m.fencing_token(), 0u);
  EXPECT_NO_THROW(m.unlock());  // not held: logged, no throw

  m.lock();
  EXPECT_EQ(m.Unlock().code(), Code::kOk);
  m.lock();
  server_.ForgetLock("m3");
  EXPECT_EQ(m.Unlock().code(), Code::kNotHeld);

  // Once the session is lost, lock() throws and unlock() still does not.
  m.lock();
  server_.PushSessionExpired(c->session_id(), "gone");
  ASSERT_TRUE(WaitUntil([&] { return lost.load() == 1; }));
  EXPECT_NO_THROW(m.unlock());
  try {
    m.lock();
    FAIL() << "lock() should throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.status().code(), Code::kSessionExpired);
  }
  EXPECT_THROW((void)m.try_lock(), Error);
  EXPECT_TRUE(m.TryLock().code() == Code::kSessionExpired);
}

TEST_F(ClientTest, MutexDestructorReleases) {
  auto c = Connect();
  ASSERT_TRUE(c);
  {
    Mutex m(*c, "m4");
    m.lock();
    EXPECT_TRUE(server_.held("m4"));
  }
  EXPECT_FALSE(server_.held("m4"));
}

}  // namespace
}  // namespace latchkey
