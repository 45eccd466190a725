// RaftNode as a Reactor (common/reactor.h): descriptor watches (uv_poll_t)
// and one-shot timers (uv_timer_t) on the loop, so that client connections
// can be served on the loop thread itself (transport::LoopListener).
#include <utility>

#include "common/log.h"
#include "replication/raft_node.h"
#include "replication/raft_node_impl.h"

namespace latchkey::replication {
namespace {

int UvEvents(int events) {
  int uv = 0;
  if (events & Reactor::kReadable) uv |= UV_READABLE;
  if (events & Reactor::kWritable) uv |= UV_WRITABLE;
  return uv;
}

}  // namespace

void RaftNode::Impl::OnFdEvent(uv_poll_t* handle, int status, int events) {
  FdWatch* w = static_cast<FdWatch*>(handle->data);
  int ready = 0;
  if (status < 0) {
    ready = Reactor::kReadable | Reactor::kError;
  } else {
    if (events & (UV_READABLE | UV_DISCONNECT)) ready |= Reactor::kReadable;
    if (events & UV_WRITABLE) ready |= Reactor::kWritable;
  }
  // The callback may unwatch (and so close) this very watch; the object, and
  // the function running now, live until the close callback.
  if (ready != 0) w->cb(ready);
}

void RaftNode::Impl::OnOneShot(uv_timer_t* handle) {
  OneShot* t = static_cast<OneShot*>(handle->data);
  Impl* self = t->owner;
  std::function<void()> fn = std::move(t->fn);
  self->one_shots.erase(t);
  self->CloseOneShot(t);
  if (fn && !self->closing) fn();
}

void RaftNode::Impl::CloseFdWatch(FdWatch* w) {
  uv_poll_stop(&w->poll);
  uv_close(reinterpret_cast<uv_handle_t*>(&w->poll),
           [](uv_handle_t* h) { delete static_cast<FdWatch*>(h->data); });
}

void RaftNode::Impl::CloseOneShot(OneShot* t) {
  uv_timer_stop(&t->timer);
  uv_close(reinterpret_cast<uv_handle_t*>(&t->timer),
           [](uv_handle_t* h) { delete static_cast<OneShot*>(h->data); });
}

void RaftNode::Impl::CloseReactorHandles() {
  if (!fd_watches.empty()) {
    LK_LOG_WARN("raft node: closing %zu descriptor watch(es) left open", fd_watches.size());
  }
  for (auto& [id, w] : fd_watches) CloseFdWatch(w);
  fd_watches.clear();
  for (OneShot* t : one_shots) CloseOneShot(t);
  one_shots.clear();
}

bool RaftNode::InLoop() const {
  return impl_->OnLoopThread();
}

Result<Reactor::WatchId> RaftNode::WatchFd(int fd, int events, FdCallback cb) {
  Impl& d = *impl_;
  LATCHKEY_CHECK(d.OnLoopThread());
  if (d.closing || !d.handles_inited)
    return Unavailable("the server's event loop is shutting down");
  auto w = std::make_unique<Impl::FdWatch>();
  int rv = uv_poll_init(&d.loop, &w->poll, fd);
  if (rv != 0) return Internal(std::string("uv_poll_init: ") + uv_strerror(rv));
  w->poll.data = w.get();
  w->cb = std::move(cb);
  w->id = d.next_watch_id++;
  if (events != 0) {
    rv = uv_poll_start(&w->poll, UvEvents(events), &Impl::OnFdEvent);
    if (rv != 0) {
      d.CloseFdWatch(w.release());
      return Internal(std::string("uv_poll_start: ") + uv_strerror(rv));
    }
  }
  const WatchId id = w->id;
  d.fd_watches.emplace(id, w.release());
  return id;
}

void RaftNode::UpdateFd(WatchId id, int events) {
  Impl& d = *impl_;
  LATCHKEY_CHECK(d.OnLoopThread());
  auto it = d.fd_watches.find(id);
  if (it == d.fd_watches.end()) return;
  if (events == 0) {
    uv_poll_stop(&it->second->poll);
  } else {
    uv_poll_start(&it->second->poll, UvEvents(events), &Impl::OnFdEvent);
  }
}

void RaftNode::UnwatchFd(WatchId id) {
  Impl& d = *impl_;
  LATCHKEY_CHECK(d.OnLoopThread());
  auto it = d.fd_watches.find(id);
  if (it == d.fd_watches.end()) return;
  Impl::FdWatch* w = it->second;
  d.fd_watches.erase(it);
  d.CloseFdWatch(w);
}

void RaftNode::RunAfter(uint32_t ms, std::function<void()> fn) {
  Impl& d = *impl_;
  LATCHKEY_CHECK(d.OnLoopThread());
  if (d.closing || !d.handles_inited) return;
  auto* t = new Impl::OneShot;
  uv_timer_init(&d.loop, &t->timer);
  t->timer.data = t;
  t->fn = std::move(fn);
  t->owner = &d;
  d.one_shots.insert(t);
  uv_timer_start(&t->timer, &Impl::OnOneShot, ms, 0);
}

}  // namespace latchkey::replication
