#include "core/sync_objects.h"

#include <algorithm>

namespace latchkey::core {

namespace lv = log::v1;

Result<SyncOutcome> SyncObjects::SemaphoreAcquire(const OwnerId& who, const std::string& name,
                                                  uint32_t permits, uint32_t limit, bool try_only,
                                                  uint64_t now_ms, uint64_t* revision) {
  if (permits == 0) permits = 1;
  if (limit > kMaxSemaphorePermits) {
    return InvalidArgument("semaphore limit " + std::to_string(limit) + " exceeds " +
                           std::to_string(kMaxSemaphorePermits));
  }
  auto it = semaphores_.find(name);
  if (it == semaphores_.end()) {
    if (limit == 0) {
      return NotFound("semaphore '" + name + "' does not exist; give its limit to create it");
    }
    it = semaphores_.emplace(name, Semaphore{}).first;
    it->second.limit = limit;
  } else if (limit != 0 && limit != it->second.limit) {
    return Status(Code::kFailedPrecondition, "semaphore '" + name + "' has " +
                                                 std::to_string(it->second.limit) +
                                                 " permits, not " + std::to_string(limit));
  }
  Semaphore& s = it->second;
  if (permits > s.limit) {
    return InvalidArgument("asked for " + std::to_string(permits) + " permits of semaphore '" +
                           name + "', which has " + std::to_string(s.limit));
  }
  SyncOutcome out;
  if (auto h = s.holders.find(who); h != s.holders.end()) {
    out.grant = h->second;  // idempotent retry
    return out;
  }
  if (std::any_of(s.waiters.begin(), s.waiters.end(),
                  [&](const SemaphoreWaiter& w) { return w.who == who; })) {
    out.kind = SyncOutcome::Kind::kQueued;
    return out;
  }
  if (s.waiters.empty() && s.used + permits <= s.limit) {
    SemaphoreGrant g{permits, ++*revision, now_ms};
    s.holders[who] = g;
    s.used += permits;
    out.grant = g;
    return out;
  }
  if (try_only) {
    out.kind = SyncOutcome::Kind::kBusy;
    if (s.holders.empty() && s.waiters.empty()) semaphores_.erase(it);
    return out;
  }
  s.waiters.push_back({who, permits, now_ms});
  ++*revision;
  out.kind = SyncOutcome::Kind::kQueued;
  return out;
}

void SyncObjects::ServeSemaphore(const std::string& name, uint64_t now_ms, uint64_t* revision) {
  auto it = semaphores_.find(name);
  if (it == semaphores_.end()) return;
  Semaphore& s = it->second;
  while (!s.waiters.empty() && s.used + s.waiters.front().permits <= s.limit) {
    SemaphoreWaiter w = s.waiters.front();
    s.waiters.pop_front();
    SemaphoreGrant g{w.permits, ++*revision, now_ms};
    s.holders[w.who] = g;
    s.used += w.permits;
    SyncEvent e;
    e.kind = SyncEvent::Kind::kSemaphoreGranted;
    e.who = w.who;
    e.name = name;
    e.grant = g;
    events_.push_back(std::move(e));
  }
  if (s.holders.empty() && s.waiters.empty()) semaphores_.erase(it);
}

Status SyncObjects::SemaphoreRelease(const OwnerId& who, const std::string& name, uint64_t now_ms,
                                     uint64_t* revision) {
  auto it = semaphores_.find(name);
  if (it == semaphores_.end() || !it->second.holders.count(who)) {
    return Status(Code::kNotHeld,
                  "semaphore '" + name + "' has no permits of " + DescribeOwner(who));
  }
  it->second.used -= it->second.holders[who].permits;
  it->second.holders.erase(who);
  ++*revision;
  ServeSemaphore(name, now_ms, revision);
  return Status::Ok();
}

Result<SyncOutcome> SyncObjects::LatchAwait(const OwnerId& who, const std::string& name,
                                            uint64_t initial) {
  auto it = latches_.find(name);
  if (it == latches_.end()) {
    if (initial == 0) return NotFound("latch '" + name + "' does not exist; give its count");
    it = latches_.emplace(name, Latch{initial, initial, {}}).first;
  }
  SyncOutcome out;
  if (it->second.count == 0) return out;
  if (std::find(it->second.waiters.begin(), it->second.waiters.end(), who) ==
      it->second.waiters.end()) {
    it->second.waiters.push_back(who);
  }
  out.kind = SyncOutcome::Kind::kQueued;
  return out;
}

Result<uint64_t> SyncObjects::LatchCountDown(const std::string& name, uint64_t by,
                                             uint64_t initial) {
  auto it = latches_.find(name);
  if (it == latches_.end()) {
    if (initial == 0) return NotFound("latch '" + name + "' does not exist; give its count");
    it = latches_.emplace(name, Latch{initial, initial, {}}).first;
  }
  Latch& l = it->second;
  l.count -= std::min(l.count, by == 0 ? 1 : by);
  if (l.count == 0) {
    for (const OwnerId& w : l.waiters) {
      SyncEvent e;
      e.kind = SyncEvent::Kind::kLatchOpened;
      e.who = w;
      e.name = name;
      events_.push_back(std::move(e));
    }
    l.waiters.clear();
  }
  return l.count;
}

Result<SyncOutcome> SyncObjects::BarrierAwait(const OwnerId& who, const std::string& name,
                                              uint32_t parties) {
  if (parties == 0 || parties > kMaxBarrierParties) {
    return InvalidArgument("a barrier needs 1 to " + std::to_string(kMaxBarrierParties) +
                           " parties");
  }
  auto it = barriers_.find(name);
  if (it == barriers_.end()) it = barriers_.emplace(name, Barrier{parties, 0, {}}).first;
  Barrier& b = it->second;
  if (b.parties != parties) {
    return Status(Code::kFailedPrecondition, "barrier '" + name + "' is for " +
                                                 std::to_string(b.parties) + " parties, not " +
                                                 std::to_string(parties));
  }
  SyncOutcome out;
  if (std::find(b.waiting.begin(), b.waiting.end(), who) == b.waiting.end()) {
    b.waiting.push_back(who);
  }
  if (b.waiting.size() < b.parties) {
    out.kind = SyncOutcome::Kind::kQueued;
    return out;
  }
  out.generation = b.generation;
  for (const OwnerId& w : b.waiting) {
    if (w == who) continue;  // answered directly
    SyncEvent e;
    e.kind = SyncEvent::Kind::kBarrierTripped;
    e.who = w;
    e.name = name;
    e.generation = b.generation;
    events_.push_back(std::move(e));
  }
  b.waiting.clear();  // the next generation starts empty
  ++b.generation;
  return out;
}

bool SyncObjects::Cancel(int kind, const OwnerId& who, const std::string& name, uint64_t now_ms,
                         uint64_t* revision) {
  if (kind == 1) {
    auto it = semaphores_.find(name);
    if (it == semaphores_.end()) return false;
    auto& q = it->second.waiters;
    auto w =
        std::find_if(q.begin(), q.end(), [&](const SemaphoreWaiter& x) { return x.who == who; });
    if (w == q.end()) return false;
    q.erase(w);
    ++*revision;
    ServeSemaphore(name, now_ms, revision);  // the head may have been the blocker
    return true;
  }
  auto drop = [&](std::vector<OwnerId>& v) {
    auto w = std::find(v.begin(), v.end(), who);
    if (w == v.end()) return false;
    v.erase(w);
    return true;
  };
  if (kind == 2) {
    auto it = latches_.find(name);
    return it != latches_.end() && drop(it->second.waiters);
  }
  if (kind == 3) {
    auto it = barriers_.find(name);
    if (it == barriers_.end() || !drop(it->second.waiting)) return false;
    if (it->second.waiting.empty()) barriers_.erase(it);
    return true;
  }
  return false;
}

void SyncObjects::DropSession(uint64_t session, uint64_t now_ms, uint64_t* revision) {
  auto mine = [&](const OwnerId& o) { return o.session == session; };
  std::vector<std::string> touched;
  for (auto& [name, s] : semaphores_) {
    const size_t before = s.holders.size() + s.waiters.size();
    for (auto h = s.holders.begin(); h != s.holders.end();) {
      if (mine(h->first)) {
        s.used -= h->second.permits;
        h = s.holders.erase(h);
      } else {
        ++h;
      }
    }
    std::erase_if(s.waiters, [&](const SemaphoreWaiter& w) { return mine(w.who); });
    if (s.holders.size() + s.waiters.size() != before) touched.push_back(name);
  }
  for (const std::string& n : touched) ServeSemaphore(n, now_ms, revision);
  for (auto& [name, l] : latches_) std::erase_if(l.waiters, mine);
  for (auto it = barriers_.begin(); it != barriers_.end();) {
    std::erase_if(it->second.waiting, mine);
    it = it->second.waiting.empty() ? barriers_.erase(it) : std::next(it);
  }
}

std::vector<SyncEvent> SyncObjects::TakeEvents() {
  std::vector<SyncEvent> out;
  out.swap(events_);
  return out;
}

void SyncObjects::ToProto(lv::Snapshot* snap) const {
  for (const auto& [name, s] : semaphores_) {
    auto* p = snap->add_semaphores();
    p->set_name(name);
    p->set_limit(s.limit);
    for (const auto& [who, g] : s.holders) {
      auto* h = p->add_holders();
      h->set_session_id(who.session);
      h->set_owner(who.owner);
      h->set_permits(g.permits);
      h->set_fencing_token(g.fencing_token);
      h->set_granted_at_ms(g.granted_at_ms);
    }
    for (const auto& w : s.waiters) {
      auto* pw = p->add_waiters();
      pw->set_session_id(w.who.session);
      pw->set_owner(w.who.owner);
      pw->set_permits(w.permits);
      pw->set_queued_at_ms(w.queued_at_ms);
    }
  }
  for (const auto& [name, l] : latches_) {
    auto* p = snap->add_latches();
    p->set_name(name);
    p->set_initial(l.initial);
    p->set_count(l.count);
    for (const auto& w : l.waiters) {
      auto* o = p->add_waiters();
      o->set_session_id(w.session);
      o->set_owner(w.owner);
    }
  }
  for (const auto& [name, b] : barriers_) {
    auto* p = snap->add_barriers();
    p->set_name(name);
    p->set_parties(b.parties);
    p->set_generation(b.generation);
    for (const auto& w : b.waiting) {
      auto* o = p->add_waiting();
      o->set_session_id(w.session);
      o->set_owner(w.owner);
    }
  }
}

Status SyncObjects::FromProto(const lv::Snapshot& snap) {
  SyncObjects fresh;
  for (const auto& p : snap.semaphores()) {
    Semaphore s;
    s.limit = p.limit();
    for (const auto& h : p.holders()) {
      s.holders[OwnerId{h.session_id(), h.owner()}] =
          SemaphoreGrant{h.permits(), h.fencing_token(), h.granted_at_ms()};
      s.used += h.permits();
    }
    for (const auto& w : p.waiters()) {
      s.waiters.push_back({OwnerId{w.session_id(), w.owner()}, w.permits(), w.queued_at_ms()});
    }
    if (s.used > s.limit || s.limit > kMaxSemaphorePermits) {
      return Status(Code::kInternal, "snapshot semaphore '" + p.name() + "' is over its limit");
    }
    fresh.semaphores_[p.name()] = std::move(s);
  }
  for (const auto& p : snap.latches()) {
    Latch l{p.initial(), p.count(), {}};
    for (const auto& w : p.waiters()) l.waiters.push_back(OwnerId{w.session_id(), w.owner()});
    fresh.latches_[p.name()] = std::move(l);
  }
  for (const auto& p : snap.barriers()) {
    Barrier b{p.parties(), p.generation(), {}};
    for (const auto& w : p.waiting()) b.waiting.push_back(OwnerId{w.session_id(), w.owner()});
    fresh.barriers_[p.name()] = std::move(b);
  }
  *this = std::move(fresh);
  return Status::Ok();
}

}  // namespace latchkey::core
