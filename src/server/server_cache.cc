// Cached locks (loop thread): the core decides when a cacheable grant blocks
// a request and emits one callback event per (grant, downgrade_to); this
// pushes it to the connection the holder's session is bound to. A holder
// that is not connected right now misses the push; when it re-attaches its
// session, every callback still outstanding is pushed again
// (RepushCallbacks), so a reconnect never strands a blocked request.
#include "server/server.h"

namespace latchkey::server {

void Server::PushCallback(const core::Event& e) {
  auto sit = sessions_.find(e.session_id);
  if (sit == sessions_.end() || sit->second.conn_id == 0) return;
  v1::Push push;
  auto* cb = push.mutable_blocking_callback();
  cb->set_session_id(e.session_id);
  cb->set_owner(e.grant.owner);
  cb->set_name(e.grant.name);
  cb->set_fencing_token(e.grant.fencing_token);
  cb->set_held(static_cast<v1::LockMode>(core::ModeToLog(e.grant.mode)));
  cb->set_wanted(static_cast<v1::LockMode>(core::ModeToLog(e.wanted)));
  cb->set_downgrade_to(static_cast<v1::LockMode>(core::ModeToLog(e.downgrade_to)));
  Push(sit->second.conn_id, push);
}

void Server::RepushCallbacks(uint64_t session_id) {
  for (const auto& [name, held] : sm_.locks().HeldBySession(session_id)) {
    const core::HeldGrant& g = held.second;
    if (!g.cacheable || !g.callback_sent) continue;
    core::Event e;
    e.kind = core::Event::Kind::kCallback;
    e.session_id = session_id;
    e.grant.session_id = session_id;
    e.grant.owner = held.first.owner;
    e.grant.name = name;
    e.grant.fencing_token = g.fencing_token;
    e.grant.mode = g.mode;
    e.wanted = core::Mode::kEX;  // not kept; downgrade_to is what matters
    e.downgrade_to = *g.callback_sent;
    PushCallback(e);
  }
}

}  // namespace latchkey::server
