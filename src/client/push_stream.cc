#include "client/push_stream.h"

#include <algorithm>
#include <thread>

namespace latchkey::client_internal {

namespace pb = ::latchkey::v1;
using Clock = std::chrono::steady_clock;

std::vector<std::string> SplitEndpointList(const std::string& s) {
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

Status StatusFromWire(const pb::Error& e) {
  const int c = static_cast<int>(e.code());
  if (c == 0) return Status::Ok();
  const Code code = IsKnownCode(static_cast<uint32_t>(c)) ? static_cast<Code>(c) : Code::kInternal;
  std::string msg = e.message();
  if (msg.empty()) msg = "server returned " + std::string(CodeName(code));
  return Status(code, std::move(msg));
}

Status Resubscribe(std::chrono::milliseconds reconnect_for,
                   const std::function<Status()>& subscribe, uint64_t* attempts) {
  const auto give_up = Clock::now() + reconnect_for;
  auto pause = std::chrono::milliseconds(20);
  while (true) {
    ++*attempts;
    Status st = subscribe();
    if (st.ok() || st.code() == Code::kCompacted || st.code() == Code::kInvalidArgument ||
        st.code() == Code::kUnauthenticated || Clock::now() >= give_up) {
      return st;
    }
    std::this_thread::sleep_for(pause);  // backoff between reconnect attempts
    pause = std::min(pause * 2, std::chrono::milliseconds(1000));
  }
}

namespace {

// Waits for the response to `id`, leaving pushes queued. Other responses
// (none are expected) are dropped.
Result<pb::Response> AwaitResponse(PushStream::State& s, uint64_t id, Clock::time_point deadline) {
  std::unique_lock lk(s.mu);
  while (true) {
    for (auto it = s.frames.begin(); it != s.frames.end(); ++it) {
      if (!it->has_response()) continue;
      pb::Response r = std::move(*it->mutable_response());
      s.frames.erase(it);
      if (r.id() != id) break;
      if (r.has_error() && r.error().code() != pb::OK) return StatusFromWire(r.error());
      return r;
    }
    if (s.closed) return Unavailable("connection closed: " + s.why.ToString());
    if (s.cv.wait_until(lk, deadline) == std::cv_status::timeout) {
      return Status(Code::kTimeout, "no reply from the server in time");
    }
  }
}

Result<std::unique_ptr<Connection>> Dial(const std::string& ep, std::chrono::milliseconds timeout,
                                         const std::shared_ptr<PushStream::State>& st) {
  Connection::Callbacks cb;
  cb.on_frame = [st](std::string_view payload) {
    pb::ServerFrame f;
    std::lock_guard lk(st->mu);
    if (!f.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
      st->closed = true;
      st->why = Status(Code::kProtocolError, "undecodable frame from the server");
    } else {
      st->frames.push_back(std::move(f));
    }
    st->cv.notify_all();
  };
  cb.on_close = [st](const Status& why) {
    std::lock_guard lk(st->mu);
    st->closed = true;
    if (st->why.ok()) st->why = why.ok() ? Unavailable("closed") : why;
    st->cv.notify_all();
  };
  return Connection::Dial(ep, timeout, std::move(cb));
}

}  // namespace

Result<std::unique_ptr<PushStream>> PushStream::Open(const std::string& endpoints,
                                                     const std::string& auth_token,
                                                     std::chrono::milliseconds timeout,
                                                     const pb::Request& request,
                                                     pb::Response* reply) {
  Status last = InvalidArgument("no endpoint given");
  for (const std::string& ep : SplitEndpointList(endpoints)) {
    const auto deadline = Clock::now() + timeout;
    auto st = std::make_shared<State>();
    auto conn = Dial(ep, timeout, st);
    if (!conn.ok()) {
      last = conn.status();
      continue;
    }
    std::unique_ptr<PushStream> ps(new PushStream());
    ps->state_ = st;
    ps->conn_ = std::move(conn).value();
    pb::ClientFrame hello;
    hello.mutable_request()->set_id(1);
    hello.mutable_request()->mutable_hello()->set_protocol_version(1);
    hello.mutable_request()->mutable_hello()->set_client_name("latchkey-stream");
    hello.mutable_request()->mutable_hello()->set_auth_token(auth_token);
    ps->conn_->Send(hello.SerializeAsString());
    auto h = AwaitResponse(*st, 1, deadline);
    if (!h.ok()) {
      if (h.status().code() == Code::kUnauthenticated) return h.status();  // same on every node
      last = h.status();
      continue;
    }
    pb::ClientFrame f;
    *f.mutable_request() = request;
    f.mutable_request()->set_id(2);
    ps->conn_->Send(f.SerializeAsString());
    auto r = AwaitResponse(*st, 2, deadline);
    if (!r.ok()) {
      // A definite answer (COMPACTED, INVALID_ARGUMENT...) is final; a
      // transport problem tries the next endpoint.
      if (r.status().code() != Code::kUnavailable && r.status().code() != Code::kTimeout) {
        return r.status();
      }
      last = r.status();
      continue;
    }
    if (reply != nullptr) *reply = std::move(*r);
    return ps;
  }
  return last;
}

PushStream::~PushStream() {
  if (conn_) conn_->Close();
}

void PushStream::Abort() {
  if (conn_) conn_->Close();
}

Result<pb::Push> PushStream::Next(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::unique_lock lk(state_->mu);
  while (true) {
    while (!state_->frames.empty()) {
      pb::ServerFrame f = std::move(state_->frames.front());
      state_->frames.pop_front();
      if (f.has_push()) return std::move(*f.mutable_push());
      if (f.has_response() && f.response().id() == 0 && f.response().has_error()) {
        return StatusFromWire(f.response().error());  // connection-level error
      }
    }
    if (state_->closed) return Unavailable("connection lost: " + state_->why.ToString());
    if (state_->cv.wait_until(lk, deadline) == std::cv_status::timeout) {
      return Status(Code::kTimeout, "nothing arrived in time");
    }
  }
}

}  // namespace latchkey::client_internal
