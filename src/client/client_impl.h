// latchkey::Client::Impl (internal): protocol v1 over one framed stream
// connection. The public methods are in client.cc, client_locks.cc,
// client_admin.cc and client_sync.cc.
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
#pragma once

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

#include "client/client_wire.h"
#include "client/poll_connection.h"
#include "common/log.h"

namespace latchkey {

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

  // The reply slot of a blocking call; `ready` lets a driving caller poll it.
  // Not a std::promise: its set_value costs a futex wake-up system call per
  // call (pthread_once inside) even when nobody waits; this one makes a
  // system call only for a caller actually asleep on `cv`.
  struct SyncReply {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<Outcome> outcome;  // guarded by mu
    std::atomic<bool> ready{false};

    void Set(Outcome o) {
      {
        std::lock_guard<std::mutex> lk(mu);
        outcome = std::move(o);
        ready.store(true, std::memory_order_release);
      }
      cv.notify_all();
    }
    // False if the deadline passed first.
    bool WaitUntil(TimePoint deadline) {
      std::unique_lock<std::mutex> lk(mu);
      return cv.wait_until(lk, deadline, [this] { return outcome.has_value(); });
    }
    Outcome Take() {
      std::unique_lock<std::mutex> lk(mu);
      cv.wait(lk, [this] { return outcome.has_value(); });
      return std::move(*outcome);
    }
  };

  // Blocking call. `deadline` bounds the wait for a reply (nullopt = none).
  // With ClientOptions::read_on_calling_thread the caller reads its reply
  // from the socket itself (Connection::Drive) instead of being woken by the
  // connection's io thread.
  Outcome Call(pb::Request req, std::optional<TimePoint> deadline) {
    auto reply = std::make_shared<SyncReply>();
    // Requests that wait in the server are idempotent there, so they are
    // re-sent (same id) after a reconnect or failover instead of failing.
    const bool is_acquire = req.has_acquire() || req.has_acquire_many() ||
                            req.has_semaphore_acquire() || req.has_latch_await() ||
                            req.has_barrier_await() || req.has_wait_object();
    uint64_t id = 0;
    uint64_t gen = 0;
    std::shared_ptr<Connection> driven;
    requests_sent.fetch_add(1, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lk(mu);
      if (Status st = UsableLocked(); !st.ok()) return Outcome{st, {}};
      id = RegisterLocked(
          &req, [reply](Outcome o) { reply->Set(std::move(o)); }, is_acquire, LossStatus(req));
      if (state == State::kReady && conn) {
        driven = conn;
        gen = conn_gen;
      }
    }
    if (driven) {
      driven->Drive([&reply] { return reply->ready.load(std::memory_order_acquire); },
                    [this, gen](std::string_view p) { return HandleFrameInline(gen, p); },
                    deadline.value_or(TimePoint::max()));
      driven.reset();
    }
    if (deadline && !reply->WaitUntil(*deadline)) {
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
    return reply->Take();
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
    if (frame.has_response()) HandleResponse(gen, frame.response());
  }

  // A frame read by a caller in Connection::Drive, on the caller's thread.
  // Handles what runs no user code (replies, except a session expiry that
  // ends the session and calls on_session_lost); returns false for the rest,
  // which the io thread then passes to HandleFrame.
  bool HandleFrameInline(uint64_t gen, std::string_view payload) {
    pb::ServerFrame frame;
    if (!frame.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) return false;
    if (!frame.has_response()) return false;
    if (frame.response().error().code() == pb::SESSION_EXPIRED) return false;
    HandleResponse(gen, frame.response());
    return true;
  }

  void HandleResponse(uint64_t gen, const pb::Response& resp) {
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
  // Runs on the connection's own io thread (a NOT_LEADER redirect), so it
  // must not hold a reference past the lock: the maintenance thread may
  // replace and release the connection meanwhile, and the last reference
  // would then destroy it on its own io thread (an abort; seen in a nemesis
  // worker). Closing under mu is what LoseSession does too.
  void DropConnection(uint64_t gen) {
    {
      std::lock_guard<std::mutex> lk(mu);
      if (gen != conn_gen) return;
      if (conn) conn->Close();
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
    auto dialed = options.read_on_calling_thread
                      ? DialPollConnection(endpoint, Remaining(deadline), std::move(cbs))
                      : Connection::Dial(endpoint, Remaining(deadline), std::move(cbs));
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
    hello.mutable_hello()->set_auth_token(options.auth_token);
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
    Status unusable;
    {
      std::lock_guard<std::mutex> lk(mu);
      if (closing || state == State::kLost || state == State::kClosed) {
        unusable = UsableLocked();
        if (unusable.ok()) unusable = Status(Code::kCancelled, "the client is closing");
      } else {
        PublishLocked(c, gen, sid, granted_ttl, sent_at, attach, std::move(held), &old);
      }
    }
    // Not under mu: fail() waits for the connection's io thread, whose
    // on_close (HandleClosed) takes mu.
    if (!unusable.ok()) return fail(unusable);
    c.reset();
    old.reset();  // the previous, dead connection: join its io thread here
    return Status();
  }

  // Makes `c` the connection and sends every queued request on it.
  // REQUIRES: mu held.
  void PublishLocked(const std::shared_ptr<Connection>& c, uint64_t gen, uint64_t sid,
                     milliseconds granted_ttl, TimePoint sent_at, bool attach,
                     std::vector<Grant> held, std::shared_ptr<Connection>* old) {
    if (granted_ttl.count() > 0) ttl = granted_ttl;
    if (ttl.count() == 0) ttl = options.session_ttl;
    session_id = sid;
    if (attach) held_at_attach = std::move(held);
    *old = std::move(conn);
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

}  // namespace latchkey
