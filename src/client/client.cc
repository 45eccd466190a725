// latchkey::Client: protocol v1 over one framed stream connection.
//
// Structure:
// - Every request gets a client-wide unique, increasing id and an entry in
//   `pending` (id -> Pending). Whoever erases an entry calls its `done`
//   callback, outside the lock; blocking calls wait on a promise that `done`
//   fulfils. Responses are matched by id, so any number of threads may have
//   requests in flight at once (pipelining).
// - The connection's io thread delivers frames (HandleFrame) and the close
//   (HandleClosed). A separate maintenance thread sends keepalives, watches
//   the lease and reconnects; it is the only thread that replaces or destroys
//   connections (besides the destructor), so a connection is never destroyed
//   on its own io thread.
// - Reconnect: Hello, then AttachSession(session_id). On success every pending
//   Acquire is re-sent with its original request id (acquire is idempotent on
//   the server) together with requests queued while disconnected; requests
//   that were in flight on the dead connection fail with UNAVAILABLE
//   (MAYBE_APPLIED for Release).
#include "latchkey/client.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "client/connection.h"
#include "common/log.h"
#include "latchkey.pb.h"

namespace latchkey {
namespace {

namespace pb = ::latchkey::v1;
using SteadyClock = std::chrono::steady_clock;
using TimePoint = SteadyClock::time_point;
using client_internal::Connection;
using std::chrono::milliseconds;

constexpr uint32_t kProtocolVersion = 1;
constexpr milliseconds kCloseWait{2000};
constexpr milliseconds kBackoffMin{50};
constexpr milliseconds kBackoffMax{1000};
// Failover: pause between endpoints of one round, and how many NOT_LEADER
// hints are followed in a row before pausing (stale hints can ping-pong).
constexpr milliseconds kEndpointPause{10};
constexpr int kMaxHintHops = 3;
constexpr size_t kMaxLostLocks = 1000;

struct Outcome {
  Status status;  // non-OK: transport failure or the server's error
  pb::Response response;
};
using DoneFn = std::function<void(Outcome)>;

Status StatusFromError(const pb::Error& e) {
  const int c = static_cast<int>(e.code());
  if (c == 0) return Status();
  const Code code =
      (c > 0 && IsKnownCode(static_cast<uint32_t>(c))) ? static_cast<Code>(c) : Code::kInternal;
  std::string msg = e.message();
  if (msg.empty()) msg = "server returned " + std::string(CodeName(code));
  return Status(code, std::move(msg));
}

std::vector<std::string> SplitEndpoints(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    if (comma == std::string::npos) comma = s.size();
    std::string part = s.substr(start, comma - start);
    const auto b = part.find_first_not_of(" \t");
    const auto e = part.find_last_not_of(" \t");
    if (b != std::string::npos) out.push_back(part.substr(b, e - b + 1));
    start = comma + 1;
  }
  return out;
}

std::string Frame(const pb::Request& req) {
  pb::ClientFrame f;
  *f.mutable_request() = req;
  return f.SerializeAsString();
}

milliseconds Remaining(TimePoint deadline) {
  const auto left = std::chrono::ceil<milliseconds>(deadline - SteadyClock::now());
  return std::max(left, milliseconds(1));
}

void SafeInvoke(const DoneFn& done, Outcome o) {
  if (done) done(std::move(o));
}

enum class State {
  kConnecting,    // Connect() has not finished yet
  kReady,         // connection up, session attached
  kReconnecting,  // no usable connection; requests are queued
  kLost,          // the session is gone for good
  kClosed,        // Close() ran
};

pb::LockMode WireMode(LockMode m) {
  return static_cast<pb::LockMode>(static_cast<int>(m) + 1);
}

LockMode ApiMode(pb::LockMode m) {
  // MODE_DEFAULT (0) means EX on the wire.
  if (m == pb::MODE_DEFAULT || !pb::LockMode_IsValid(m)) return LockMode::kEX;
  return static_cast<LockMode>(static_cast<int>(m) - 1);
}

LockHolderInfo ToHolder(const pb::LockHolder& h) {
  LockHolderInfo out;
  out.session_id = h.session_id();
  out.owner = h.owner();
  out.client_name = h.client_name();
  out.fencing_token = h.fencing_token();
  out.granted_at_ms = h.granted_at_ms();
  out.lock_ttl_ms = h.lock_ttl_ms();
  out.mode = ApiMode(h.mode());
  out.count = std::max<uint32_t>(1, h.count());
  out.cacheable = h.cacheable();
  out.called_back = h.called_back();
  out.callback_to = h.called_back() ? ApiMode(h.callback_to()) : LockMode::kNL;
  return out;
}

std::vector<Grant> HeldFromAttach(const pb::AttachSessionReply& r) {
  std::vector<Grant> out;
  for (const pb::HeldLock& h : r.held()) {
    Grant g;
    g.name = h.name();
    g.owner = h.owner();
    g.fencing_token = h.fencing_token();
    g.granted_at_ms = h.granted_at_ms();
    g.mode = ApiMode(h.mode());
    g.count = std::max<uint32_t>(1, h.count());
    g.value = h.value();
    g.value_token = h.value_token();
    out.push_back(std::move(g));
  }
  return out;
}

LockInfo ToLockInfo(const pb::GetLockReply& r, std::string_view asked) {
  LockInfo info;
  info.name = r.name().empty() ? std::string(asked) : r.name();
  info.held = r.held();
  if (r.held()) info.holder = ToHolder(r.holder());
  for (const auto& h : r.holders()) info.holders.push_back(ToHolder(h));
  for (const auto& w : r.waiters()) {
    info.waiter_list.push_back({w.session_id(), w.owner(), w.client_name(), w.queued_at_ms(),
                                ApiMode(w.mode()), w.conversion()});
  }
  info.waiters = static_cast<size_t>(r.waiters_size());
  info.server_time_ms = r.server_time_ms();
  info.value = r.value();
  info.value_token = r.value_token();
  return info;
}

}  // namespace

struct Client::Impl {
  struct Pending {
    std::string payload;  // serialized ClientFrame, kept for re-sending
    DoneFn done;
    bool resend = false;  // Acquire: re-sent after a reconnect
    bool sent = false;    // written to connection `gen`
    uint64_t gen = 0;
    Status loss;  // result when the connection drops while sent (!resend)
  };

  ClientOptions options;
  std::vector<std::string> endpoints;

  mutable std::mutex mu;
  std::condition_variable cv;  // wakes the maintenance thread and Close waiters
  State state = State::kConnecting;
  std::shared_ptr<Connection> conn;  // the published connection (maybe closed)
  uint64_t conn_gen = 0;             // generation of `conn`
  uint64_t gen_counter = 0;
  uint64_t next_id = 1;
  std::map<uint64_t, Pending> pending;
  uint64_t session_id = 0;
  milliseconds ttl{0};
  TimePoint lease_deadline{};
  TimePoint next_keepalive{};
  bool keepalive_in_flight = false;
  Status session_status;
  bool closing = false;
  size_t endpoint_index = 0;
  // The leader's address from the last NOT_LEADER reply; tried first.
  std::string leader_hint;
  std::vector<LockLost> lost_locks;
  std::thread maintenance;
  std::function<void(const BlockingCallback&)> on_callback;  // guarded by mu
  std::vector<Grant> held_at_attach;                         // guarded by mu
  std::atomic<uint64_t> requests_sent{0};
  std::atomic<bool> gone{false};  // session lost or closed (lock-free read)

  explicit Impl(ClientOptions o)
      : options(std::move(o)), endpoints(SplitEndpoints(options.endpoint)) {}

  ~Impl() {
    (void)Close();
    if (maintenance.joinable()) {
      if (maintenance.get_id() == std::this_thread::get_id()) {
        maintenance.detach();  // destroyed from a callback: nothing better to do
      } else {
        maintenance.join();
      }
    }
    std::shared_ptr<Connection> c;
    {
      std::lock_guard<std::mutex> lk(mu);
      c = std::move(conn);
    }
    c.reset();  // joins its io thread; callbacks may still take `mu` until then
  }

  // ---- Requests -------------------------------------------------------------

  // Registers a request; sends it now when a connection is ready, else it is
  // queued until the next successful (re)attach. REQUIRES: mu held.
  uint64_t RegisterLocked(pb::Request* req, DoneFn done, bool resend, Status loss) {
    const uint64_t id = next_id++;
    req->set_id(id);
    Pending p;
    p.payload = Frame(*req);
    p.done = std::move(done);
    p.resend = resend;
    p.loss = std::move(loss);
    if (state == State::kReady && conn) {
      p.sent = true;
      p.gen = conn_gen;
      conn->Send(p.payload);
    }
    pending.emplace(id, std::move(p));
    return id;
  }

  static Status LossStatus(const pb::Request& req) {
    if (req.has_release()) {
      return Status(Code::kMaybeApplied,
                    "connection lost; the release may or may not have taken effect");
    }
    return Unavailable("connection lost; the request may or may not have taken effect");
  }

  // Blocking call. `deadline` bounds the wait for a reply (nullopt = none).
  Outcome Call(pb::Request req, std::optional<TimePoint> deadline) {
    auto prom = std::make_shared<std::promise<Outcome>>();
    auto fut = prom->get_future();
    // Requests that wait in the server are idempotent there, so they are
    // re-sent (same id) after a reconnect or failover instead of failing.
    const bool is_acquire = req.has_acquire() || req.has_acquire_many() ||
                            req.has_semaphore_acquire() || req.has_latch_await() ||
                            req.has_barrier_await() || req.has_wait_object();
    uint64_t id = 0;
    requests_sent.fetch_add(1, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lk(mu);
      if (Status st = UsableLocked(); !st.ok()) return Outcome{st, {}};
      id = RegisterLocked(
          &req, [prom](Outcome o) { prom->set_value(std::move(o)); }, is_acquire, LossStatus(req));
    }
    if (deadline && fut.wait_until(*deadline) == std::future_status::timeout) {
      bool erased = false;
      {
        std::lock_guard<std::mutex> lk(mu);
        erased = pending.erase(id) > 0;
        if (erased && is_acquire && state == State::kReady && conn) {
          pb::Request cancel;
          cancel.mutable_cancel()->set_request_id(id);
          RegisterLocked(&cancel, nullptr, false, Status());
        }
      }
      if (erased) {
        if (is_acquire) {
          return Outcome{Unavailable("no reply from the server in time; the acquire was "
                                     "cancelled but may have been granted"),
                         {}};
        }
        return Outcome{LossStatus(req).code() == Code::kMaybeApplied
                           ? LossStatus(req)
                           : Unavailable("no reply from the server in time"),
                       {}};
      }
      // A reply raced the deadline: `done` has run or is about to.
    }
    return fut.get();
  }

  // REQUIRES: mu held.
  Status UsableLocked() const {
    if (state == State::kLost || state == State::kClosed) return session_status;
    if (closing) return Status(Code::kCancelled, "the client is closing");
    return Status();
  }

  TimePoint DefaultDeadline() const {
    return SteadyClock::now() + options.session_ttl + options.connect_timeout;
  }

  // ---- Connection events (io thread) -----------------------------------------

  void HandleFrame(uint64_t gen, std::string_view payload) {
    pb::ServerFrame frame;
    if (!frame.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
      LK_LOG_WARN("latchkey client: unparsable frame from the server; dropping the connection");
      DropConnection(gen);
      return;
    }
    if (frame.has_push()) {
      HandlePush(frame.push());
      return;
    }
    if (!frame.has_response()) return;
    const pb::Response& resp = frame.response();
    if (resp.id() == 0) {
      LK_LOG_WARN("latchkey client: connection error from the server: %s",
                  StatusFromError(resp.error()).ToString().c_str());
      return;
    }
    DoneFn done;
    bool redirect = false;
    {
      std::lock_guard<std::mutex> lk(mu);
      const pb::ErrorCode code = resp.error().code();
      if (code == pb::NOT_LEADER && !resp.error().leader_endpoint().empty()) {
        leader_hint = resp.error().leader_endpoint();
      }
      auto it = pending.find(resp.id());
      if (it == pending.end()) return;  // cancelled, timed out or a duplicate
      Pending& p = it->second;
      // Failover: a request refused with NOT_LEADER did not take effect, and
      // an acquire is idempotent whatever happened to it; both are re-sent on
      // the leader once the session is re-attached there (with the same id).
      const bool retryable = code == pb::NOT_LEADER ||
                             (p.resend && (code == pb::MAYBE_APPLIED || code == pb::UNAVAILABLE));
      if (retryable && !closing && state == State::kReady && p.sent && p.gen == gen &&
          gen == conn_gen) {
        p.sent = false;
        redirect = true;
      } else {
        done = std::move(p.done);
        pending.erase(it);
      }
    }
    if (redirect) {
      DropConnection(gen);
      return;
    }
    Outcome o{StatusFromError(resp.error()), resp};
    if (o.status.code() == Code::kSessionExpired && !resp.has_attach_session()) {
      LoseSession(Status(Code::kSessionExpired, o.status.message()));
    }
    SafeInvoke(done, std::move(o));
  }

  void HandlePush(const pb::Push& push) {
    if (push.has_blocking_callback()) {
      const auto& ev = push.blocking_callback();
      std::function<void(const BlockingCallback&)> cb;
      {
        std::lock_guard<std::mutex> lk(mu);
        if (ev.session_id() != session_id) return;
        cb = on_callback;
      }
      if (!cb) return;
      BlockingCallback c{ev.name(),          ev.owner(),           ev.fencing_token(),
                         ApiMode(ev.held()), ApiMode(ev.wanted()), ApiMode(ev.downgrade_to())};
      try {
        cb(c);
      } catch (...) {
        LK_LOG_ERROR("latchkey client: blocking callback handler threw; ignored");
      }
      return;
    }
    if (push.has_session_expired()) {
      const auto& ev = push.session_expired();
      uint64_t sid;
      {
        std::lock_guard<std::mutex> lk(mu);
        sid = session_id;
      }
      if (ev.session_id() == sid || ev.session_id() == 0) {
        LoseSession(
            Status(Code::kSessionExpired,
                   "session expired: " + (ev.reason().empty() ? "by the server" : ev.reason())));
      }
    } else if (push.has_lock_lost()) {
      const auto& ev = push.lock_lost();
      LockLost lost{ev.name(), ev.owner(), ev.fencing_token(), ev.reason()};
      std::function<void(const LockLost&)> cb;
      {
        std::lock_guard<std::mutex> lk(mu);
        if (ev.session_id() != session_id && ev.session_id() != 0) return;
        if (lost_locks.size() >= kMaxLostLocks) lost_locks.erase(lost_locks.begin());
        lost_locks.push_back(lost);
        cb = options.on_lock_lost;
      }
      LK_LOG_WARN("latchkey client: lock '%s' (owner '%s', token %llu) lost: %s", lost.name.c_str(),
                  lost.owner.c_str(), static_cast<unsigned long long>(lost.fencing_token),
                  lost.reason.c_str());
      if (cb) {
        try {
          cb(lost);
        } catch (...) {
          LK_LOG_ERROR("latchkey client: on_lock_lost threw; ignored");
        }
      }
    }
  }

  void HandleClosed(uint64_t gen) {
    std::vector<std::pair<DoneFn, Status>> failed;
    {
      std::lock_guard<std::mutex> lk(mu);
      for (auto it = pending.begin(); it != pending.end();) {
        Pending& p = it->second;
        if (p.sent && p.gen == gen) {
          if (p.resend) {
            p.sent = false;  // re-sent after the next attach
          } else {
            failed.emplace_back(std::move(p.done), p.loss);
            it = pending.erase(it);
            continue;
          }
        }
        ++it;
      }
      if (gen == conn_gen && state == State::kReady) {
        state = State::kReconnecting;
        cv.notify_all();
      }
    }
    for (auto& [done, st] : failed) SafeInvoke(done, Outcome{st, {}});
  }

  // Closes connection `gen` if it is the published one and marks it dead
  // (the transport's on_close may follow; HandleClosed is idempotent per gen).
  void DropConnection(uint64_t gen) {
    std::shared_ptr<Connection> c;
    {
      std::lock_guard<std::mutex> lk(mu);
      if (gen != conn_gen) return;
      c = conn;
      if (c) c->Close();
    }
    HandleClosed(gen);
  }

  // The session is gone for good. Idempotent; on_session_lost runs once.
  void LoseSession(Status why) {
    std::vector<DoneFn> failed;
    std::function<void(const Status&)> cb;
    {
      std::lock_guard<std::mutex> lk(mu);
      if (state == State::kLost || state == State::kClosed || closing) return;
      state = State::kLost;
      gone.store(true, std::memory_order_release);
      session_status = why;
      for (auto& [id, p] : pending) failed.push_back(std::move(p.done));
      pending.clear();
      if (conn) conn->Close();
      cb = options.on_session_lost;
      cv.notify_all();
    }
    LK_LOG_WARN("latchkey client: session lost: %s", why.ToString().c_str());
    for (auto& done : failed) SafeInvoke(done, Outcome{why, {}});
    if (cb) {
      try {
        cb(why);
      } catch (...) {
        LK_LOG_ERROR("latchkey client: on_session_lost threw; ignored");
      }
    }
  }

  // ---- Handshake ---------------------------------------------------------------

  // Sends `req` on connection `c` (generation gen, not published) and waits
  // for the reply until `deadline`.
  Outcome CallOn(Connection* c, uint64_t gen, pb::Request req, TimePoint deadline) {
    auto prom = std::make_shared<std::promise<Outcome>>();
    auto fut = prom->get_future();
    uint64_t id;
    {
      std::lock_guard<std::mutex> lk(mu);
      id = next_id++;
      req.set_id(id);
      Pending p;
      p.payload = Frame(req);
      p.done = [prom](Outcome o) { prom->set_value(std::move(o)); };
      p.sent = true;
      p.gen = gen;
      p.loss = Unavailable("connection lost during the handshake");
      c->Send(p.payload);
      pending.emplace(id, std::move(p));
    }
    if (fut.wait_until(deadline) == std::future_status::timeout) {
      std::lock_guard<std::mutex> lk(mu);
      if (pending.erase(id) > 0) return Outcome{Unavailable("handshake timed out"), {}};
    }
    return fut.get();
  }

  // Connects to `endpoint`, says Hello and opens (attach=false) or attaches
  // (attach=true) the session; on success publishes the connection and sends
  // every queued request.
  Status Establish(const std::string& endpoint, TimePoint deadline, bool attach) {
    uint64_t gen;
    {
      std::lock_guard<std::mutex> lk(mu);
      gen = ++gen_counter;
    }
    Connection::Callbacks cbs;
    cbs.on_frame = [this, gen](std::string_view p) { HandleFrame(gen, p); };
    cbs.on_close = [this, gen](const Status&) { HandleClosed(gen); };
    auto dialed = Connection::Dial(endpoint, Remaining(deadline), std::move(cbs));
    if (!dialed.ok()) return dialed.status();
    std::shared_ptr<Connection> c = std::move(dialed).value();
    auto fail = [&c](Status st) {
      c->Close();
      c.reset();  // joins its io thread (we are not on it)
      return st;
    };

    pb::Request hello;
    hello.mutable_hello()->set_protocol_version(kProtocolVersion);
    hello.mutable_hello()->set_client_name(options.client_name);
    Outcome o = CallOn(c.get(), gen, std::move(hello), deadline);
    if (!o.status.ok()) return fail(o.status);
    if (o.response.has_hello() && o.response.hello().protocol_version() != kProtocolVersion) {
      return fail(Status(Code::kUnsupportedVersion,
                         "server speaks protocol version " +
                             std::to_string(o.response.hello().protocol_version())));
    }

    const TimePoint sent_at = SteadyClock::now();
    pb::Request req;
    uint64_t sid = 0;
    if (attach) {
      {
        std::lock_guard<std::mutex> lk(mu);
        sid = session_id;
      }
      req.mutable_attach_session()->set_session_id(sid);
    } else {
      req.mutable_open_session()->set_ttl_ms(static_cast<uint32_t>(options.session_ttl.count()));
      req.mutable_open_session()->set_client_name(options.client_name);
    }
    o = CallOn(c.get(), gen, std::move(req), deadline);
    if (!o.status.ok()) return fail(o.status);
    milliseconds granted_ttl{0};
    std::vector<Grant> held;
    if (attach) {
      granted_ttl = milliseconds(o.response.attach_session().ttl_ms());
      held = HeldFromAttach(o.response.attach_session());
    } else {
      sid = o.response.open_session().session_id();
      granted_ttl = milliseconds(o.response.open_session().ttl_ms());
      if (sid == 0) return fail(Status(Code::kProtocolError, "server opened session id 0"));
    }

    std::shared_ptr<Connection> old;
    {
      std::lock_guard<std::mutex> lk(mu);
      if (closing || state == State::kLost || state == State::kClosed) {
        Status st = UsableLocked();
        if (st.ok()) st = Status(Code::kCancelled, "the client is closing");
        return fail(st);
      }
      if (granted_ttl.count() > 0) ttl = granted_ttl;
      if (ttl.count() == 0) ttl = options.session_ttl;
      session_id = sid;
      if (attach) held_at_attach = std::move(held);
      old = std::move(conn);
      conn = c;
      conn_gen = gen;
      state = State::kReady;
      lease_deadline = sent_at + ttl;
      next_keepalive = sent_at + ttl / 3;
      keepalive_in_flight = false;
      for (auto& [id, p] : pending) {
        if (!p.sent) {
          p.sent = true;
          p.gen = gen;
          conn->Send(p.payload);
        }
      }
      cv.notify_all();
    }
    c.reset();
    old.reset();  // the previous, dead connection: join its io thread here
    return Status();
  }

  // ---- Maintenance thread --------------------------------------------------------

  void SendKeepAliveLocked() {
    const TimePoint sent_at = SteadyClock::now();
    keepalive_in_flight = true;
    pb::Request req;
    req.mutable_keep_alive()->set_session_id(session_id);
    RegisterLocked(
        &req,
        [this, sent_at](Outcome o) {
          std::lock_guard<std::mutex> lk(mu);
          keepalive_in_flight = false;
          if (o.status.ok()) {
            const uint32_t t = o.response.keep_alive().ttl_ms();
            if (t > 0) ttl = milliseconds(t);
            lease_deadline = std::max(lease_deadline, sent_at + ttl);
            next_keepalive = sent_at + ttl / 3;
          } else {
            // Lost with the connection or refused: retry soon (after a
            // reconnect if need be). SESSION_EXPIRED was handled already.
            next_keepalive = SteadyClock::now() + std::min(ttl / 10, milliseconds(100));
          }
          cv.notify_all();
        },
        false, Unavailable("connection lost"));
  }

  void MaintenanceLoop() {
    std::unique_lock<std::mutex> lk(mu);
    while (true) {
      if (closing || state == State::kLost || state == State::kClosed) return;
      if (state == State::kReconnecting) {
        lk.unlock();
        Reconnect();
        lk.lock();
        continue;
      }
      const TimePoint now = SteadyClock::now();
      if (now >= lease_deadline) {
        lk.unlock();
        LoseSession(Status(Code::kSessionExpired,
                           "session lease expired: no keepalive was answered within the ttl"));
        lk.lock();
        continue;
      }
      if (now >= next_keepalive && !keepalive_in_flight) SendKeepAliveLocked();
      TimePoint wake = lease_deadline;
      if (!keepalive_in_flight) wake = std::min(wake, next_keepalive);
      cv.wait_until(lk, wake);
    }
  }

  void Reconnect() {
    milliseconds backoff = kBackoffMin;
    int hint_hops = 0;
    bool round_saw_not_leader = false;
    while (true) {
      std::string endpoint;
      TimePoint lease;
      bool from_hint = false;
      {
        std::lock_guard<std::mutex> lk(mu);
        if (closing || state != State::kReconnecting) return;
        lease = lease_deadline;
        from_hint = !leader_hint.empty();
        endpoint = from_hint ? std::exchange(leader_hint, std::string())
                             : endpoints[endpoint_index % endpoints.size()];
      }
      if (SteadyClock::now() >= lease) {
        LoseSession(Status(Code::kSessionExpired,
                           "session lease expired while reconnecting: could not reach the "
                           "server within the session ttl"));
        return;
      }
      const TimePoint deadline = std::min(lease, SteadyClock::now() + options.connect_timeout);
      Status st = Establish(endpoint, deadline, /*attach=*/true);
      if (st.ok()) {
        LK_LOG_INFO("latchkey client: reconnected to %s", endpoint.c_str());
        return;
      }
      if (st.code() == Code::kSessionExpired || st.code() == Code::kNotFound) {
        LoseSession(
            Status(Code::kSessionExpired, "session could not be re-attached: " + st.message()));
        return;
      }
      LK_LOG_DEBUG("latchkey client: reconnect to %s failed: %s", endpoint.c_str(),
                   st.ToString().c_str());
      round_saw_not_leader |= st.code() == Code::kNotLeader;
      std::unique_lock<std::mutex> lk(mu);
      if (!from_hint) ++endpoint_index;
      // The node named a leader: go there now (a few hops at most). Else a
      // short pause between the endpoints of a round, and exponential backoff
      // after each full round (with one endpoint: after every attempt).
      milliseconds pause = kEndpointPause;
      if (!leader_hint.empty() && ++hint_hops <= kMaxHintHops) {
        pause = milliseconds(0);
      } else if (endpoint_index % endpoints.size() == 0) {
        // A node answered NOT_LEADER without a hint: an election is under
        // way and ends within an election timeout or two; poll at the
        // minimum pace rather than backing off past its end.
        pause = round_saw_not_leader ? kBackoffMin : backoff;
        if (!round_saw_not_leader) backoff = std::min(backoff * 2, kBackoffMax);
        round_saw_not_leader = false;
        hint_hops = 0;
      }
      if (pause.count() > 0) {
        cv.wait_for(lk, pause, [this] { return closing || state != State::kReconnecting; });
      }
    }
  }

  // ---- Close ------------------------------------------------------------------

  Status Close() {
    std::shared_ptr<std::promise<Outcome>> prom;
    std::future<Outcome> fut;
    bool was_ready = false;
    State state_before = State::kConnecting;
    {
      std::unique_lock<std::mutex> lk(mu);
      if (state == State::kClosed) return Status();
      if (closing) {
        // Another thread is closing: wait for it (bounded by its own wait).
        cv.wait(lk, [this] { return state == State::kClosed; });
        return Status();
      }
      state_before = state;
      if (state == State::kReady && conn) {
        was_ready = true;
        prom = std::make_shared<std::promise<Outcome>>();
        fut = prom->get_future();
        pb::Request req;
        req.mutable_close_session()->set_session_id(session_id);
        RegisterLocked(
            &req, [prom](Outcome o) { prom->set_value(std::move(o)); }, false,
            Unavailable("connection lost while closing the session"));
      }
      closing = true;
      cv.notify_all();
    }
    Status result;
    if (was_ready) {
      if (fut.wait_for(kCloseWait) == std::future_status::timeout) {
        result = Unavailable("no reply to CloseSession; the session ends with its lease");
      } else {
        result = fut.get().status;
      }
    } else {
      result = Unavailable("not connected; the session ends with its lease");
    }
    std::vector<DoneFn> failed;
    {
      std::lock_guard<std::mutex> lk(mu);
      const bool was_lost = state == State::kLost;
      state = State::kClosed;
      gone.store(true, std::memory_order_release);
      if (session_status.ok())
        session_status = Status(Code::kSessionExpired, "session closed by the client");
      for (auto& [id, p] : pending) failed.push_back(std::move(p.done));
      pending.clear();
      if (conn) conn->Close();
      cv.notify_all();
      if (was_lost || state_before == State::kConnecting) result = Status();
    }
    for (auto& done : failed)
      SafeInvoke(done, Outcome{Status(Code::kCancelled, "client closed"), {}});
    if (maintenance.joinable() && maintenance.get_id() != std::this_thread::get_id()) {
      maintenance.join();
    }
    if (result.code() == Code::kSessionExpired) result = Status();  // already gone
    return result;
  }
};

// ---- Client ---------------------------------------------------------------------

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Client::~Client() {
  try {
    impl_.reset();
  } catch (...) {
    // never throw from a destructor
  }
}

Result<std::unique_ptr<Client>> Client::Connect(ClientOptions options) {
  if (options.session_ttl.count() <= 0 || options.session_ttl.count() > 0xffffffffLL) {
    return InvalidArgument("session_ttl must be between 1 ms and 2^32-1 ms");
  }
  auto impl = std::make_unique<Impl>(std::move(options));
  if (impl->endpoints.empty()) return InvalidArgument("no endpoint given");
  Status last;
  // Every endpoint once, as before; but a NOT_LEADER reply (a follower, or an
  // election in progress) sends the client to the leader it names, or around
  // the list again, until connect_timeout.
  const size_t n = impl->endpoints.size();
  const TimePoint overall = SteadyClock::now() + impl->options.connect_timeout;
  bool saw_not_leader = false;
  for (size_t i = 0;;) {
    std::string endpoint;
    bool from_hint = false;
    {
      std::lock_guard<std::mutex> lk(impl->mu);
      from_hint = !impl->leader_hint.empty();
      endpoint =
          from_hint ? std::exchange(impl->leader_hint, std::string()) : impl->endpoints[i % n];
    }
    const TimePoint deadline = SteadyClock::now() + impl->options.connect_timeout;
    last = impl->Establish(endpoint, deadline, /*attach=*/false);
    if (last.ok()) {
      impl->endpoint_index = i % n;
      break;
    }
    LK_LOG_DEBUG("latchkey client: connect to %s failed: %s", endpoint.c_str(),
                 last.ToString().c_str());
    saw_not_leader |= last.code() == Code::kNotLeader;
    if (!from_hint) ++i;
    if ((i >= n && !saw_not_leader) || SteadyClock::now() >= overall) break;
    if (!from_hint && i % n == 0) std::this_thread::sleep_for(kBackoffMin);  // between rounds
  }
  if (!last.ok()) return last;
  Impl* raw = impl.get();
  raw->maintenance = std::thread([raw] { raw->MaintenanceLoop(); });
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

uint64_t Client::session_id() const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  return impl_->session_id;
}

Status Client::session_status() const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  return impl_->session_status;
}

std::vector<LockLost> Client::lost_locks() const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  return impl_->lost_locks;
}

Result<Grant> Client::Acquire(std::string_view name, const AcquireOptions& options) {
  if (options.wait_timeout.count() < 0 || options.lock_ttl.count() < 0) {
    return InvalidArgument("wait_timeout and lock_ttl must not be negative");
  }
  pb::Request req;
  auto* a = req.mutable_acquire();
  a->set_session_id(session_id());
  a->set_owner(options.owner);
  a->set_name(std::string(name));
  a->set_try_only(options.try_only);
  a->set_mode(WireMode(options.mode));
  a->set_reentrant(options.reentrant);
  if (options.value) {
    a->set_set_value(true);
    a->set_value(*options.value);
  }
  a->set_cacheable(options.cacheable);
  a->set_wait_timeout_ms(static_cast<uint64_t>(options.wait_timeout.count()));
  a->set_lock_ttl_ms(static_cast<uint64_t>(options.lock_ttl.count()));
  Outcome o = impl_->Call(std::move(req), WaitDeadline(options.try_only, options.wait_timeout));
  if (!o.status.ok()) return o.status;
  Grant g;
  g.name = std::string(name);
  g.owner = options.owner;
  g.fencing_token = o.response.acquire().fencing_token();
  g.granted_at_ms = o.response.acquire().granted_at_ms();
  g.mode = ApiMode(o.response.acquire().mode());
  g.count = std::max<uint32_t>(1, o.response.acquire().count());
  g.value = o.response.acquire().value();
  g.value_token = o.response.acquire().value_token();
  return g;
}

Status Client::ReleaseWithValue(std::string_view name, std::string_view value,
                                std::string_view owner) {
  pb::Request req;
  auto* r = req.mutable_release();
  r->set_session_id(session_id());
  r->set_owner(std::string(owner));
  r->set_name(std::string(name));
  r->set_set_value(true);
  r->set_value(std::string(value));
  return impl_->Call(std::move(req), impl_->DefaultDeadline()).status;
}

Status Client::DowngradeWithValue(std::string_view name, LockMode mode, std::string_view value,
                                  std::string_view owner) {
  pb::Request req;
  auto* d = req.mutable_downgrade();
  d->set_session_id(session_id());
  d->set_owner(std::string(owner));
  d->set_name(std::string(name));
  d->set_mode(WireMode(mode));
  d->set_set_value(true);
  d->set_value(std::string(value));
  return impl_->Call(std::move(req), impl_->DefaultDeadline()).status;
}

void Client::SetBlockingCallbackHandler(std::function<void(const BlockingCallback&)> handler) {
  std::lock_guard<std::mutex> lk(impl_->mu);
  impl_->on_callback = std::move(handler);
}

bool Client::session_gone() const {
  return impl_->gone.load(std::memory_order_acquire);
}

uint64_t Client::requests_sent() const {
  return impl_->requests_sent.load(std::memory_order_relaxed);
}

Status Client::Release(std::string_view name, std::string_view owner, bool all) {
  pb::Request req;
  auto* r = req.mutable_release();
  r->set_session_id(session_id());
  r->set_owner(std::string(owner));
  r->set_name(std::string(name));
  r->set_all(all);
  return impl_->Call(std::move(req), impl_->DefaultDeadline()).status;
}

Status Client::Downgrade(std::string_view name, LockMode mode, std::string_view owner) {
  pb::Request req;
  auto* d = req.mutable_downgrade();
  d->set_session_id(session_id());
  d->set_owner(std::string(owner));
  d->set_name(std::string(name));
  d->set_mode(WireMode(mode));
  return impl_->Call(std::move(req), impl_->DefaultDeadline()).status;
}

Result<uint64_t> Client::Transfer(std::string_view name, uint64_t to_session_id,
                                  std::string_view to_owner, std::string_view owner) {
  pb::Request req;
  auto* t = req.mutable_transfer();
  t->set_session_id(session_id());
  t->set_owner(std::string(owner));
  t->set_name(std::string(name));
  t->set_to_session_id(to_session_id);
  t->set_to_owner(std::string(to_owner));
  Outcome o = impl_->Call(std::move(req), impl_->DefaultDeadline());
  if (!o.status.ok()) return o.status;
  return o.response.transfer().fencing_token();
}

Result<std::vector<LockInfo>> Client::ListLocks(std::string_view prefix, uint32_t limit) {
  pb::Request req;
  req.mutable_list_locks()->set_prefix(std::string(prefix));
  req.mutable_list_locks()->set_limit(limit);
  Outcome o = impl_->Call(std::move(req), impl_->DefaultDeadline());
  if (!o.status.ok()) return o.status;
  std::vector<LockInfo> out;
  for (const auto& l : o.response.list_locks().locks()) out.push_back(ToLockInfo(l, l.name()));
  return out;
}

Result<std::vector<WaitEdgeInfo>> Client::GetWaitGraph() {
  pb::Request req;
  req.mutable_get_wait_graph();
  Outcome o = impl_->Call(std::move(req), impl_->DefaultDeadline());
  if (!o.status.ok()) return o.status;
  std::vector<WaitEdgeInfo> out;
  for (const auto& e : o.response.get_wait_graph().edges()) {
    out.push_back({e.waiter_session_id(), e.waiter_owner(), e.name(), ApiMode(e.mode()),
                   e.blocker_session_id(), e.blocker_owner()});
  }
  return out;
}

Result<LockInfo> Client::GetLock(std::string_view name, ReadConsistency consistency) {
  pb::Request req;
  req.mutable_get_lock()->set_name(std::string(name));
  req.mutable_get_lock()->set_serializable(consistency == ReadConsistency::kSerializable);
  Outcome o = impl_->Call(std::move(req), impl_->DefaultDeadline());
  if (!o.status.ok()) return o.status;
  return ToLockInfo(o.response.get_lock(), name);
}

Result<ServerStatus> Client::GetStatus() {
  pb::Request req;
  req.mutable_get_status();
  Outcome o = impl_->Call(std::move(req), impl_->DefaultDeadline());
  if (!o.status.ok()) return o.status;
  const auto& r = o.response.get_status();
  ServerStatus s;
  s.server_version = r.server_version();
  s.node_id = r.node_id();
  s.listen_address = r.listen_address();
  s.raft_state = r.raft_state();
  s.raft_term = r.raft_term();
  s.commit_index = r.commit_index();
  s.applied_index = r.applied_index();
  s.sessions = r.sessions();
  s.locks_held = r.locks_held();
  s.waiters = r.waiters();
  s.revision = r.revision();
  s.uptime_ms = r.uptime_ms();
  s.data_dir = r.data_dir();
  s.connections = r.connections();
  s.voters = r.voters();
  s.state_digest = r.state_digest();
  s.core_applied_index = r.core_applied_index();
  s.leader_id = r.leader_id();
  s.leader_endpoint = r.leader_endpoint();
  return s;
}

Result<std::vector<MemberInfo>> Client::ListMembers() {
  pb::Request req;
  req.mutable_list_members();
  Outcome o = impl_->Call(std::move(req), impl_->DefaultDeadline());
  if (!o.status.ok()) return o.status;
  std::vector<MemberInfo> out;
  for (const auto& m : o.response.list_members().members()) {
    out.push_back(
        MemberInfo{m.node_id(), m.raft_address(), m.client_address(), m.role(), m.leader()});
  }
  return out;
}

Status Client::AddMember(uint64_t node_id, std::string_view raft_address,
                         std::string_view client_address) {
  pb::Request req;
  auto* a = req.mutable_add_member();
  a->set_node_id(node_id);
  a->set_raft_address(std::string(raft_address));
  a->set_client_address(std::string(client_address));
  return impl_->Call(std::move(req), impl_->DefaultDeadline()).status;
}

Status Client::RemoveMember(uint64_t node_id) {
  pb::Request req;
  req.mutable_remove_member()->set_node_id(node_id);
  return impl_->Call(std::move(req), impl_->DefaultDeadline()).status;
}

Result<uint64_t> Client::TransferLeadership(uint64_t node_id) {
  pb::Request req;
  req.mutable_transfer_leader()->set_node_id(node_id);
  Outcome o = impl_->Call(std::move(req), impl_->DefaultDeadline());
  if (!o.status.ok()) return o.status;
  return o.response.transfer_leader().leader_id();
}

// Deadline of a call that may wait in the server for `wait` (0 = no limit).
std::optional<std::chrono::steady_clock::time_point> Client::WaitDeadline(
    bool try_only, std::chrono::milliseconds wait) const {
  if (try_only) return impl_->DefaultDeadline();
  if (wait.count() > 0) return impl_->DefaultDeadline() + wait;
  return std::nullopt;  // the session lease still bounds a dead server
}

Result<std::vector<uint64_t>> Client::AcquireMany(
    const std::vector<std::pair<std::string, LockMode>>& parts, const AcquireOptions& options) {
  auto grants = AcquireManyGrants(parts, options);
  if (!grants.ok()) return grants.status();
  std::vector<uint64_t> tokens;
  for (const Grant& g : *grants) tokens.push_back(g.fencing_token);
  return tokens;
}

Result<std::vector<Grant>> Client::AcquireManyGrants(
    const std::vector<std::pair<std::string, LockMode>>& parts, const AcquireOptions& options) {
  pb::Request req;
  auto* a = req.mutable_acquire_many();
  a->set_session_id(session_id());
  a->set_owner(options.owner);
  for (const auto& [name, mode] : parts) {
    auto* p = a->add_parts();
    p->set_name(name);
    p->set_mode(WireMode(mode));
  }
  a->set_try_only(options.try_only);
  a->set_wait_timeout_ms(static_cast<uint64_t>(options.wait_timeout.count()));
  a->set_lock_ttl_ms(static_cast<uint64_t>(options.lock_ttl.count()));
  Outcome o = impl_->Call(std::move(req), WaitDeadline(options.try_only, options.wait_timeout));
  if (!o.status.ok()) return o.status;
  const pb::AcquireManyReply& r = o.response.acquire_many();
  std::vector<Grant> out;
  for (size_t i = 0; i < parts.size(); ++i) {
    Grant g;
    g.name = parts[i].first;
    g.owner = options.owner;
    g.mode = parts[i].second;
    const int k = static_cast<int>(i);
    if (k < r.fencing_tokens_size()) g.fencing_token = r.fencing_tokens(k);
    if (k < r.values_size()) g.value = r.values(k);
    if (k < r.value_tokens_size()) g.value_token = r.value_tokens(k);
    out.push_back(std::move(g));
  }
  return out;
}

std::vector<Grant> Client::held_at_attach() const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  return impl_->held_at_attach;
}

Status Client::SetLockValue(std::string_view name, std::string_view value, std::string_view owner) {
  pb::Request req;
  auto* v = req.mutable_set_lock_value();
  v->set_session_id(session_id());
  v->set_owner(std::string(owner));
  v->set_name(std::string(name));
  v->set_value(std::string(value));
  return impl_->Call(std::move(req), impl_->DefaultDeadline()).status;
}

Status Client::DeclareLockRank(std::string_view prefix, uint32_t rank) {
  pb::Request req;
  req.mutable_declare_lock_rank()->set_prefix(std::string(prefix));
  req.mutable_declare_lock_rank()->set_rank(rank);
  return impl_->Call(std::move(req), impl_->DefaultDeadline()).status;
}

Result<uint64_t> Client::AcquireSemaphore(std::string_view name, uint32_t permits, uint32_t limit,
                                          const WaitOptions& options) {
  pb::Request req;
  auto* a = req.mutable_semaphore_acquire();
  a->set_session_id(session_id());
  a->set_owner(options.owner);
  a->set_name(std::string(name));
  a->set_permits(permits);
  a->set_limit(limit);
  a->set_try_only(options.try_only);
  a->set_wait_timeout_ms(static_cast<uint64_t>(options.wait_timeout.count()));
  Outcome o = impl_->Call(std::move(req), WaitDeadline(options.try_only, options.wait_timeout));
  if (!o.status.ok()) return o.status;
  return o.response.semaphore_acquire().fencing_token();
}

Status Client::ReleaseSemaphore(std::string_view name, std::string_view owner) {
  pb::Request req;
  auto* r = req.mutable_semaphore_release();
  r->set_session_id(session_id());
  r->set_owner(std::string(owner));
  r->set_name(std::string(name));
  return impl_->Call(std::move(req), impl_->DefaultDeadline()).status;
}

Status Client::LatchAwait(std::string_view name, uint64_t initial, const WaitOptions& options) {
  pb::Request req;
  auto* a = req.mutable_latch_await();
  a->set_session_id(session_id());
  a->set_owner(options.owner);
  a->set_name(std::string(name));
  a->set_initial(initial);
  a->set_wait_timeout_ms(static_cast<uint64_t>(options.wait_timeout.count()));
  return impl_->Call(std::move(req), WaitDeadline(false, options.wait_timeout)).status;
}

Result<uint64_t> Client::LatchCountDown(std::string_view name, uint64_t by, uint64_t initial) {
  pb::Request req;
  auto* a = req.mutable_latch_count_down();
  a->set_name(std::string(name));
  a->set_by(by);
  a->set_initial(initial);
  Outcome o = impl_->Call(std::move(req), impl_->DefaultDeadline());
  if (!o.status.ok()) return o.status;
  return o.response.latch_count_down().remaining();
}

Result<uint64_t> Client::BarrierAwait(std::string_view name, uint32_t parties,
                                      const WaitOptions& options) {
  pb::Request req;
  auto* a = req.mutable_barrier_await();
  a->set_session_id(session_id());
  a->set_owner(options.owner);
  a->set_name(std::string(name));
  a->set_parties(parties);
  a->set_wait_timeout_ms(static_cast<uint64_t>(options.wait_timeout.count()));
  Outcome o = impl_->Call(std::move(req), WaitDeadline(false, options.wait_timeout));
  if (!o.status.ok()) return o.status;
  return o.response.barrier_await().generation();
}

Result<std::string> Client::CallEncoded(std::string_view request,
                                        std::optional<std::chrono::milliseconds> reply_within) {
  pb::Request req;
  if (!req.ParseFromArray(request.data(), static_cast<int>(request.size()))) {
    return InvalidArgument("not an encoded latchkey.v1.Request");
  }
  std::optional<TimePoint> deadline = impl_->DefaultDeadline();
  if (reply_within) {
    deadline = reply_within->count() == 0
                   ? std::nullopt
                   : std::optional<TimePoint>(SteadyClock::now() + *reply_within);
  }
  Outcome o = impl_->Call(std::move(req), deadline);
  if (!o.status.ok()) return o.status;
  std::string out;
  o.response.SerializeToString(&out);
  return out;
}

Status Client::Close() {
  return impl_->Close();
}

void Client::DropConnectionForTesting() {
  uint64_t gen;
  {
    std::lock_guard<std::mutex> lk(impl_->mu);
    if (impl_->state != State::kReady) return;
    gen = impl_->conn_gen;
  }
  impl_->DropConnection(gen);
}

}  // namespace latchkey
