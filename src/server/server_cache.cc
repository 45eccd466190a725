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

void Server::FillHeldLock(const core::GrantInfo& g, v1::HeldLock* h) const {
  h->set_name(g.name);
  h->set_owner(g.owner);
  h->set_fencing_token(g.fencing_token);
  h->set_granted_at_ms(g.granted_at_ms);
  h->set_lock_ttl_ms(g.lock_ttl_ms);
  h->set_mode(static_cast<v1::LockMode>(core::ModeToLog(g.mode)));
  h->set_count(g.count);
  h->set_cacheable(g.cacheable);
  if (const core::Resource* r = sm_.locks().Find(g.name)) {
    h->set_value(r->value());
    h->set_value_token(r->value_token());
  }
}

void Server::FillAcquireManyReply(uint64_t session_id, const std::string& owner,
                                  const std::vector<std::string>& names,
                                  v1::AcquireManyReply* out) const {
  for (const std::string& n : names) {
    const core::HeldGrant* g = sm_.locks().FindGrant(core::OwnerId{session_id, owner}, n);
    out->add_fencing_tokens(g ? g->fencing_token : 0);
    const core::Resource* r = g ? sm_.locks().Find(n) : nullptr;
    out->add_values(r ? r->value() : std::string());
    out->add_value_tokens(r ? r->value_token() : 0);
  }
}

}  // namespace latchkey::server
