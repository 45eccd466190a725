// latchkey::Client: connect, session, close (the machinery is in
// client_impl.h; locks in client_locks.cc, introspection and membership in
// client_admin.cc, semaphores, latches and barriers in client_sync.cc).
#include "latchkey/client.h"

#include "client/client_impl.h"

namespace latchkey {

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

void Client::SetBlockingCallbackHandler(std::function<void(const BlockingCallback&)> handler) {
  std::lock_guard<std::mutex> lk(impl_->mu);
  impl_->on_callback = std::move(handler);
}

bool Client::session_gone() const {
  return impl_->gone.load(std::memory_order_acquire);
}

const std::string& Client::endpoint() const {
  return impl_->options.endpoint;
}

const std::string& Client::auth_token() const {
  return impl_->options.auth_token;
}

uint64_t Client::requests_sent() const {
  return impl_->requests_sent.load(std::memory_order_relaxed);
}

// Deadline of a call that may wait in the server for `wait` (0 = no limit).
std::optional<std::chrono::steady_clock::time_point> Client::WaitDeadline(
    bool try_only, std::chrono::milliseconds wait) const {
  if (try_only) return impl_->DefaultDeadline();
  if (wait.count() > 0) return impl_->DefaultDeadline() + wait;
  return std::nullopt;  // the session lease still bounds a dead server
}

std::vector<Grant> Client::held_at_attach() const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  return impl_->held_at_attach;
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
