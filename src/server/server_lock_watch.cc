// Lock watches (WatchLock): one lock's whole state, pushed to the watching
// connection right away and then after every applied entry that changes it.
// State-based rather than event-based: a push carries holders, waiters and
// the value block as GetLock reports them, so a client that reconnects just
// watches again, and an election observer sees every term (design 0016).
// Every watch is compared after each applied entry (one FillLock per
// distinct watched name), hence the small limits in server_watch.h.
#include <unordered_map>

#include "core/names.h"
#include "server/server.h"

namespace latchkey::server {

namespace {

// The state without its server time (which changes with every read).
std::string StateKey(v1::GetLockReply* state) {
  const uint64_t t = state->server_time_ms();
  state->clear_server_time_ms();
  std::string key = state->SerializeAsString();
  state->set_server_time_ms(t);
  return key;
}

}  // namespace

void Server::OnWatchLock(ConnState& cs, const Request& req) {
  const std::string& name = req.watch_lock().name();
  const uint64_t conn_id = cs.conn->id();
  if (Status s = core::ValidateLockName(name); !s.ok()) return ReplyError(conn_id, req.id(), s);
  if (watch_srv_.lock_watchers.size() >= kMaxLockWatches ||
      CountFor(conn_id, watch_srv_.lock_watchers) >= kMaxLockWatchesPerConnection) {
    return ReplyError(
        conn_id, req.id(),
        Status(Code::kResourceExhausted, "too many lock watches (at most " +
                                             std::to_string(kMaxLockWatchesPerConnection) +
                                             " per connection, " + std::to_string(kMaxLockWatches) +
                                             " per node); cancel one or watch from another node"));
  }
  const uint64_t id = watch_srv_.next_id++;
  v1::Push push;
  auto* changed = push.mutable_lock_changed();
  changed->set_watch_id(id);
  FillLock(name, changed->mutable_state());
  watch_srv_.lock_watchers.emplace(id,
                                   LockWatcher{conn_id, name, StateKey(changed->mutable_state())});
  v1::Response resp;
  resp.set_id(req.id());
  resp.mutable_watch_lock()->set_watch_id(id);
  Reply(conn_id, resp);
  Push(conn_id, push);
}

void Server::PushLockChanges() {
  // Several watches of one lock (an election's observers) share one read.
  std::unordered_map<std::string, std::pair<v1::GetLockReply, std::string>> states;
  for (auto& [id, w] : watch_srv_.lock_watchers) {
    auto it = states.find(w.name);
    if (it == states.end()) {
      v1::GetLockReply state;
      FillLock(w.name, &state);
      std::string key = StateKey(&state);
      it = states.emplace(w.name, std::make_pair(std::move(state), std::move(key))).first;
    }
    if (it->second.second == w.last) continue;
    w.last = it->second.second;
    v1::Push push;
    push.mutable_lock_changed()->set_watch_id(id);
    *push.mutable_lock_changed()->mutable_state() = it->second.first;
    Push(w.conn_id, push);
  }
}

}  // namespace latchkey::server
