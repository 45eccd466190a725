// Cached locks (loop thread): the core decides when a cacheable grant blocks
// a request and emits one callback event per (grant, downgrade_to); this
// pushes it to the connection the holder's session is bound to. A holder
// that is not connected right now misses the push: it keeps the lock until
// it answers (it learns nothing new on re-attach) or its lease ends.
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

}  // namespace latchkey::server
