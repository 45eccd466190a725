// Input limits of the server (docs/operations.md, "Limits"). Each check
// answers RESOURCE_EXHAUSTED with the limit, its value and the server flag
// that raises it, so an operator can act on the message alone.
#include <iterator>

#include "server/server.h"

namespace latchkey::server {

namespace lv = log::v1;

namespace {

Status Exhausted(const std::string& what, size_t limit, const char* flag) {
  return Status(Code::kResourceExhausted, what + ": the limit is " + std::to_string(limit) +
                                              " (raise it with `latchkey server " + flag + "`)");
}

// Whether the command can leave a waiting request behind.
bool MayWait(const lv::Command& cmd) {
  switch (cmd.op_case()) {
    case lv::Command::kAcquire: return !cmd.acquire().try_only();
    case lv::Command::kAcquireMany: return !cmd.acquire_many().try_only();
    case lv::Command::kSemaphoreAcquire: return !cmd.semaphore_acquire().try_only();
    case lv::Command::kLatchAwait:
    case lv::Command::kBarrierAwait: return true;
    default: return false;
  }
}

}  // namespace

Status Server::CheckSessionLimits(ConnState& cs) {
  if (sessions_.size() + opening_sessions_ >= options_.max_sessions) {
    return Exhausted("too many sessions on this server", options_.max_sessions, "--max-sessions");
  }
  // Drop sessions that ended or moved to another connection.
  for (auto it = cs.sessions.begin(); it != cs.sessions.end();) {
    auto s = sessions_.find(*it);
    const bool here = s != sessions_.end() && s->second.conn_id == cs.conn->id();
    it = here ? std::next(it) : cs.sessions.erase(it);
  }
  if (cs.sessions.size() + cs.opening >= options_.max_sessions_per_connection) {
    return Exhausted("too many sessions on this connection", options_.max_sessions_per_connection,
                     "--max-sessions-per-connection");
  }
  return Status::Ok();
}

Status Server::CheckWaitLimit(const lv::Command& cmd, const WaitKey& key) const {
  const bool lock = cmd.has_acquire() || cmd.has_acquire_many();
  if (lock && sm_.locks_held() + sm_.waiter_count() >= options_.max_locks) {
    return Exhausted("too many held and waiting locks on this server", options_.max_locks,
                     "--max-locks");
  }
  if (!MayWait(cmd)) return Status::Ok();
  const uint64_t sid = std::get<0>(key);
  // Waits are keyed by session first: count this session's range.
  auto first = pending_.lower_bound(WaitKey{sid, "", "", 0});
  size_t n = 0;
  for (auto it = first; it != pending_.end() && std::get<0>(it->first) == sid; ++it) {
    if (++n >= options_.max_waits_per_session) {
      return Exhausted("too many waiting requests in session " + std::to_string(sid),
                       options_.max_waits_per_session, "--max-waits-per-session");
    }
  }
  return Status::Ok();
}

Status Server::CheckValueSize(size_t bytes) {
  if (bytes <= core::kMaxLockValueBytes) return Status::Ok();
  return Status(Code::kValueTooLarge, "lock value is " + std::to_string(bytes) +
                                          " bytes; the limit is " +
                                          std::to_string(core::kMaxLockValueBytes) + " (fixed)");
}

std::string Server::RejectConnectionPayload() const {
  v1::ServerFrame frame;
  auto* err = frame.mutable_response()->mutable_error();
  err->set_code(v1::RESOURCE_EXHAUSTED);
  err->set_message(
      Exhausted("too many connections", options_.max_connections, "--max-connections").message());
  return frame.SerializeAsString();
}

}  // namespace latchkey::server
