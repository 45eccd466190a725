// latchkey::Watch and latchkey::ObjectMirror (include/latchkey/watch.h).
#include "latchkey/watch.h"

#include <condition_variable>
#include <mutex>
#include <thread>

#include "client/push_stream.h"
#include "latchkey.pb.h"

namespace latchkey {

namespace pb = ::latchkey::v1;
using client_internal::PushStream;
using SteadyClock = std::chrono::steady_clock;

namespace {

Object EventFromWire(const pb::Object& o) {
  Object out;
  out.key = o.key();
  out.state = static_cast<ObjectState>(o.state());
  out.value = o.value();
  out.create_revision = o.create_revision();
  out.mod_revision = o.mod_revision();
  out.version = o.version();
  out.reserved_by = o.reserved_by();
  return out;
}

}  // namespace

struct Watch::Impl {
  std::mutex mu;  // guards stream (DropConnectionForTesting from any thread)
  std::unique_ptr<PushStream> stream;
  std::deque<Object> ready;
  Status terminal = Status::Ok();
};

Watch::Watch(WatchOptions options) : options_(std::move(options)), impl_(new Impl) {}
Watch::~Watch() = default;

Status Watch::Subscribe(uint64_t from) {
  pb::Request req;
  req.mutable_watch()->set_key(options_.key);
  req.mutable_watch()->set_prefix(options_.prefix);
  req.mutable_watch()->set_from_revision(from);
  pb::Response reply;
  auto s = PushStream::Open(options_.endpoint, options_.auth_token, options_.connect_timeout, req,
                            &reply);
  if (!s.ok()) return s.status();
  if (start_revision_ == 0) start_revision_ = reply.watch().revision();
  std::lock_guard lk(impl_->mu);
  impl_->stream = std::move(s).value();
  return Status::Ok();
}

Result<std::unique_ptr<Watch>> Watch::Open(WatchOptions options) {
  std::unique_ptr<Watch> w(new Watch(std::move(options)));
  LATCHKEY_RETURN_IF_ERROR(w->Subscribe(w->options_.from_revision));
  if (w->options_.from_revision == 0) w->options_.from_revision = w->start_revision_ + 1;
  return w;
}

// Reconnects happen only once every received event was returned, so the
// last returned event ends the last push received.
bool Watch::ResumeAtLast() const {
  return last_partial_;
}

void Watch::DropConnectionForTesting() {
  std::lock_guard lk(impl_->mu);
  if (impl_->stream) impl_->stream->Abort();
}

Result<Object> Watch::Next(std::chrono::milliseconds timeout) {
  const auto deadline = SteadyClock::now() + timeout;
  while (true) {
    if (!impl_->terminal.ok()) return impl_->terminal;
    if (!impl_->ready.empty()) {
      Object o = std::move(impl_->ready.front());
      impl_->ready.pop_front();
      last_revision_ = o.mod_revision;
      last_key_ = o.key;
      return o;
    }
    const auto now = SteadyClock::now();
    if (now >= deadline) return Status(Code::kTimeout, "no change within the timeout");
    PushStream* stream = nullptr;
    {
      std::lock_guard lk(impl_->mu);
      stream = impl_->stream.get();
    }
    auto push = stream->Next(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now));
    if (push.ok()) {
      if (push->has_watch_cancelled()) {
        impl_->terminal = client_internal::StatusFromWire(push->watch_cancelled().error());
        continue;
      }
      if (!push->has_watch_events()) continue;
      if (push->watch_events().events_size() > 0) {
        last_partial_ = push->watch_events().partial();
      }
      for (const pb::Object& e : push->watch_events().events()) {
        // After a resume the server replays the last revision seen: skip
        // the keys of it already returned (events of a revision come in key
        // order).
        if (e.mod_revision() < last_revision_ ||
            (e.mod_revision() == last_revision_ && e.key() <= last_key_)) {
          continue;
        }
        impl_->ready.push_back(EventFromWire(e));
      }
      continue;
    }
    if (push.status().code() == Code::kTimeout) return push.status();
    // The connection is gone: resume from the last revision seen. A
    // revision seen whole resumes after it; one that may continue resumes
    // at it and skips the keys already returned.
    const Status st = client_internal::Resubscribe(
        options_.reconnect_for,
        [this] {
          uint64_t from = options_.from_revision;
          if (last_revision_ != 0) from = last_revision_ + (ResumeAtLast() ? 0 : 1);
          return Subscribe(from);
        },
        &reconnects_);
    if (!st.ok()) {
      impl_->terminal = st;
      return st;
    }
  }
}

// ---- ObjectMirror ------------------------------------------------------------------

struct ObjectMirror::Impl {
  Client* client = nullptr;
  WatchOptions options;
  OnChange on_change;
  mutable std::mutex mu;
  mutable std::condition_variable cv;
  std::map<std::string, Object> objects;
  uint64_t revision = 0;
  // Revision up to which on_change has returned (WaitForRevision waits on it).
  uint64_t delivered = 0;
  Status status = Status::Ok();
  bool stopping = false;
  std::unique_ptr<Watch> watch;
  std::thread thread;

  // Reads every object under the prefix at one revision (paging at it).
  Result<std::pair<std::map<std::string, Object>, uint64_t>> Load() {
    Objects objs(*client);
    std::map<std::string, Object> out;
    uint64_t rev = 0;
    std::string after;
    while (true) {
      auto page = objs.Find(options.key, rev, after, 1000);
      if (!page.ok()) return page.status();
      rev = page->revision;
      for (Object& o : page->objects) {
        after = o.key;
        out[o.key] = std::move(o);
      }
      if (!page->truncated) break;
    }
    return std::make_pair(std::move(out), rev);
  }

  Status Reload(bool report) {
    auto loaded = Load();
    if (!loaded.ok()) return loaded.status();
    WatchOptions w = options;
    w.from_revision = loaded->second + 1;
    auto watch_or = Watch::Open(w);
    if (!watch_or.ok()) return watch_or.status();
    std::vector<Object> diffs;
    {
      std::lock_guard lk(mu);
      if (report) {
        for (const auto& [k, o] : loaded->first) {
          auto it = objects.find(k);
          if (it == objects.end() || it->second.mod_revision != o.mod_revision) diffs.push_back(o);
        }
        for (const auto& [k, o] : objects) {
          if (!loaded->first.count(k)) {
            Object gone;
            gone.key = k;
            gone.mod_revision = loaded->second;
            diffs.push_back(gone);
          }
        }
      }
      objects = std::move(loaded->first);
      revision = loaded->second;
      watch = std::move(watch_or).value();
    }
    if (on_change) {
      for (const Object& o : diffs) on_change(o);
    }
    MarkDelivered(loaded->second);
    return Status::Ok();
  }

  void MarkDelivered(uint64_t rev) {
    {
      std::lock_guard lk(mu);
      delivered = std::max(delivered, rev);
    }
    cv.notify_all();
  }

  void Run() {
    while (true) {
      {
        std::lock_guard lk(mu);
        if (stopping) return;
      }
      auto ev = watch->Next(std::chrono::milliseconds(100));
      if (ev.ok()) {
        {
          std::lock_guard lk(mu);
          if (ev->state == ObjectState::kAbsent) {
            objects.erase(ev->key);
          } else {
            objects[ev->key] = *ev;
          }
          revision = std::max(revision, ev->mod_revision);
        }
        if (on_change) on_change(*ev);
        MarkDelivered(ev->mod_revision);
        continue;
      }
      if (ev.status().code() == Code::kTimeout) continue;
      Status st = ev.status().code() == Code::kCompacted ? Reload(true) : ev.status();
      if (!st.ok()) {
        std::lock_guard lk(mu);
        status = st;
        cv.notify_all();
        return;
      }
    }
  }
};

ObjectMirror::ObjectMirror(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ObjectMirror::~ObjectMirror() {
  {
    std::lock_guard lk(impl_->mu);
    impl_->stopping = true;
  }
  if (impl_->thread.joinable()) impl_->thread.join();
}

Result<std::unique_ptr<ObjectMirror>> ObjectMirror::Start(Client& client, WatchOptions watch,
                                                          OnChange on_change) {
  auto impl = std::make_unique<Impl>();
  impl->client = &client;
  impl->options = std::move(watch);
  impl->options.prefix = true;
  if (impl->options.auth_token.empty()) impl->options.auth_token = client.auth_token();
  impl->on_change = std::move(on_change);
  LATCHKEY_RETURN_IF_ERROR(impl->Reload(false));
  Impl* raw = impl.get();
  std::unique_ptr<ObjectMirror> m(new ObjectMirror(std::move(impl)));
  raw->thread = std::thread([raw] { raw->Run(); });
  return m;
}

std::map<std::string, std::string> ObjectMirror::Values() const {
  std::lock_guard lk(impl_->mu);
  std::map<std::string, std::string> out;
  for (const auto& [k, o] : impl_->objects) {
    if (o.state == ObjectState::kAvailable) out[k] = o.value;
  }
  return out;
}

uint64_t ObjectMirror::revision() const {
  std::lock_guard lk(impl_->mu);
  return impl_->revision;
}

bool ObjectMirror::WaitForRevision(uint64_t rev, std::chrono::milliseconds timeout) const {
  std::unique_lock lk(impl_->mu);
  return impl_->cv.wait_for(lk, timeout, [&] {
    return impl_->delivered >= rev || !impl_->status.ok();
  }) && impl_->delivered >= rev;
}

Status ObjectMirror::status() const {
  std::lock_guard lk(impl_->mu);
  return impl_->status;
}

}  // namespace latchkey
