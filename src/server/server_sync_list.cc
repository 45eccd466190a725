// Introspection of semaphores, latches and barriers (loop thread): ListSync,
// the sync-object counterpart of ListLocks. Linearizable on the leader after
// a read barrier (as GetLock), or `serializable` from any node's applied
// state. Design: docs/design/0016-election.md.
#include <algorithm>

#include "core/names.h"
#include "server/server.h"

namespace latchkey::server {

namespace {

constexpr uint32_t kDefaultSyncListLimit = 1000;
constexpr uint32_t kMaxSyncListLimit = 100'000;

// `name` is `prefix` or below it ("a" covers "a" and "a.b", not "ab").
bool Inside(const std::string& name, const std::string& prefix) {
  if (prefix.empty() || name == prefix) return true;
  return name.size() > prefix.size() && name.compare(0, prefix.size(), prefix) == 0 &&
         name[prefix.size()] == '.';
}

// The names of `objects` inside `prefix`, in order.
template <typename Map>
void Collect(const Map& objects, const std::string& prefix, v1::SyncKind kind,
             std::vector<std::pair<std::string, v1::SyncKind>>* out) {
  for (auto it = objects.lower_bound(prefix); it != objects.end(); ++it) {
    if (it->first.compare(0, prefix.size(), prefix) != 0) break;  // past the prefix range
    if (Inside(it->first, prefix)) out->emplace_back(it->first, kind);
  }
}

}  // namespace

void Server::OnListSync(ConnState& cs, const Request& req) {
  const std::string& prefix = req.list_sync().prefix();
  if (!prefix.empty()) {
    if (Status s = core::ValidateLockName(prefix); !s.ok()) {
      return ReplyError(cs.conn->id(), req.id(), s);
    }
  }
  if (req.list_sync().serializable()) return ReadSync(cs, req);  // local, possibly stale
  if (!is_leader_) return ReplyNotLeader(cs.conn->id(), req.id(), "a linearizable ListSync");
  if (!leader_ready_) {
    deferred_.emplace_back(cs.conn->id(), std::make_shared<Request>(req));
    return;
  }
  AfterReadBarrier(cs, req, &Server::ReadSync);
}

void Server::ReadSync(ConnState& cs, const Request& req) {
  const std::string& prefix = req.list_sync().prefix();
  uint32_t limit = req.list_sync().limit() == 0 ? kDefaultSyncListLimit : req.list_sync().limit();
  limit = std::min(limit, kMaxSyncListLimit);
  const core::SyncObjects& sync = sm_.sync();
  std::vector<std::pair<std::string, v1::SyncKind>> names;
  Collect(sync.semaphores(), prefix, v1::SYNC_SEMAPHORE, &names);
  Collect(sync.latches(), prefix, v1::SYNC_LATCH, &names);
  Collect(sync.barriers(), prefix, v1::SYNC_BARRIER, &names);
  std::sort(names.begin(), names.end());

  v1::Response resp;
  resp.set_id(req.id());
  auto* out = resp.mutable_list_sync();
  out->set_server_time_ms(std::max(clock_->WallMs(), sm_.time_ms()));
  auto party = [this](const core::OwnerId& who, v1::SyncParty* p) {
    p->set_session_id(who.session);
    p->set_owner(who.owner);
    if (const core::Session* s = sm_.FindSession(who.session)) p->set_client_name(s->client_name);
  };
  for (const auto& [name, kind] : names) {
    if (static_cast<uint32_t>(out->objects_size()) == limit) {
      out->set_truncated(true);
      break;
    }
    auto* o = out->add_objects();
    o->set_name(name);
    o->set_kind(kind);
    switch (kind) {
      case v1::SYNC_SEMAPHORE: {
        const core::Semaphore& s = sync.semaphores().find(name)->second;
        o->set_limit(s.limit);
        o->set_used(s.used);
        for (const auto& [who, g] : s.holders) {
          auto* h = o->add_holders();
          party(who, h);
          h->set_permits(g.permits);
          h->set_fencing_token(g.fencing_token);
          h->set_since_ms(g.granted_at_ms);
        }
        for (const core::SemaphoreWaiter& w : s.waiters) {
          auto* p = o->add_waiters();
          party(w.who, p);
          p->set_permits(w.permits);
          p->set_since_ms(w.queued_at_ms);
        }
        break;
      }
      case v1::SYNC_LATCH: {
        const core::Latch& l = sync.latches().find(name)->second;
        o->set_initial(l.initial);
        o->set_count(l.count);
        for (const core::OwnerId& who : l.waiters) party(who, o->add_waiters());
        break;
      }
      default: {
        const core::Barrier& b = sync.barriers().find(name)->second;
        o->set_parties(b.parties);
        o->set_generation(b.generation);
        for (const core::OwnerId& who : b.waiting) party(who, o->add_waiters());
        break;
      }
    }
  }
  Reply(cs.conn->id(), resp);
}

}  // namespace latchkey::server
