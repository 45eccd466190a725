// latchkey::LockWatch (include/latchkey/watch.h): one lock's state, pushed by
// the server whenever it changes (WatchLock, server_lock_watch.cc).
#include <mutex>

#include "client/client_wire.h"
#include "client/push_stream.h"
#include "latchkey.pb.h"
#include "latchkey/watch.h"

namespace latchkey {

namespace pb = ::latchkey::v1;
using client_internal::PushStream;
using SteadyClock = std::chrono::steady_clock;

struct LockWatch::Impl {
  std::mutex mu;  // guards stream (DropConnectionForTesting from any thread)
  std::unique_ptr<PushStream> stream;
  Status terminal = Status::Ok();
};

LockWatch::LockWatch(LockWatchOptions options) : options_(std::move(options)), impl_(new Impl) {}
LockWatch::~LockWatch() = default;

Status LockWatch::Subscribe() {
  pb::Request req;
  req.mutable_watch_lock()->set_name(options_.name);
  pb::Response reply;
  auto s = PushStream::Open(options_.endpoint, options_.auth_token, options_.connect_timeout, req,
                            &reply);
  if (!s.ok()) return s.status();
  std::lock_guard lk(impl_->mu);
  impl_->stream = std::move(s).value();
  return Status::Ok();
}

Result<std::unique_ptr<LockWatch>> LockWatch::Open(LockWatchOptions options) {
  std::unique_ptr<LockWatch> w(new LockWatch(std::move(options)));
  LATCHKEY_RETURN_IF_ERROR(w->Subscribe());
  return w;
}

void LockWatch::DropConnectionForTesting() {
  std::lock_guard lk(impl_->mu);
  if (impl_->stream) impl_->stream->Abort();
}

Result<LockInfo> LockWatch::Next(std::chrono::milliseconds timeout) {
  const auto deadline = SteadyClock::now() + timeout;
  while (true) {
    if (!impl_->terminal.ok()) return impl_->terminal;
    const auto now = SteadyClock::now();
    if (now >= deadline)
      return Status(Code::kTimeout, "the lock did not change within the timeout");
    PushStream* stream = nullptr;
    {
      std::lock_guard lk(impl_->mu);
      stream = impl_->stream.get();
    }
    auto push = stream->Next(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now));
    if (push.ok()) {
      if (!push->has_lock_changed()) continue;
      return client_detail::ToLockInfo(push->lock_changed().state(), options_.name);
    }
    if (push.status().code() == Code::kTimeout) return push.status();
    // The connection is gone: watch again; the first push is the state now.
    const Status st = client_internal::Resubscribe(
        options_.reconnect_for, [this] { return Subscribe(); }, &reconnects_);
    if (!st.ok()) {
      impl_->terminal = st;
      return st;
    }
  }
}

}  // namespace latchkey
