#include "core/lock_table.h"

#include <algorithm>
#include <map>
#include <new>
#include <tuple>

namespace latchkey::core {

namespace {

bool IsDescendantKey(std::string_view key, std::string_view name) {
  return key.size() > name.size() + 1 && key.compare(0, name.size(), name) == 0 &&
         key[name.size()] == '.';
}

}  // namespace

std::vector<std::string_view> Ancestors(std::string_view name) {
  std::vector<std::string_view> out;
  for (size_t i = 0; i < name.size(); ++i) {
    if (name[i] == '.') out.push_back(name.substr(0, i));
  }
  return out;
}

std::string DescribeOwner(const OwnerId& who) {
  std::string s = "session " + std::to_string(who.session);
  if (!who.owner.empty()) s += " owner '" + who.owner + "'";
  return s;
}

// ---- Blockers ----------------------------------------------------------------

void LockTable::HolderBlockers(const OwnerId& who, const std::string& name, Mode mode,
                               bool first_only, std::set<OwnerId>* out) const {
  auto done = [&] { return first_only && !out->empty(); };
  auto it = resources_.find(name);
  if (it != resources_.end()) {
    const Resource& r = it->second;
    for (const auto& [owner, g] : r.holders) {
      if (owner != who && !Compatible(mode, g.mode)) out->insert(owner);
      if (done()) return;
    }
    const bool cr_conflicts = !Compatible(mode, Mode::kCR);
    const bool cw_conflicts = !Compatible(mode, Mode::kCW);
    if ((cr_conflicts && r.below_cr > 0) || (cw_conflicts && r.below_cw > 0)) {
      const std::string prefix = name + ".";
      for (auto d = resources_.lower_bound(prefix);
           d != resources_.end() && IsDescendantKey(d->first, name); ++d) {
        for (const auto& [owner, g] : d->second.holders) {
          if (owner != who && !Compatible(mode, IntentionFor(g.mode))) out->insert(owner);
          if (done()) return;
        }
      }
    }
  }
  const Mode intent = IntentionFor(mode);
  for (std::string_view a : Ancestors(name)) {
    auto ait = resources_.find(a);
    if (ait == resources_.end()) continue;
    for (const auto& [owner, g] : ait->second.holders) {
      if (owner != who && !Compatible(intent, g.mode)) out->insert(owner);
      if (done()) return;
    }
  }
}

void LockTable::WaiterBlockers(const OwnerId& who, const std::string& name, Mode mode, uint64_t seq,
                               bool conversion, bool first_only, std::set<OwnerId>* out) const {
  auto earlier = [&](const WaitEntry& q) {
    if (q.who == who) return false;
    if (conversion) return q.conversion && q.seq < seq;
    return q.conversion || q.seq < seq;
  };
  auto done = [&] { return first_only && !out->empty(); };
  auto it = resources_.find(name);
  if (it != resources_.end()) {
    for (const WaitEntry& q : it->second.waiters()) {
      if (earlier(q) && !Compatible(mode, q.mode)) out->insert(q.who);
      if (done()) return;
    }
    if (it->second.waiters_below() > 0) {
      const std::string prefix = name + ".";
      for (auto d = resources_.lower_bound(prefix);
           d != resources_.end() && IsDescendantKey(d->first, name); ++d) {
        for (const WaitEntry& q : d->second.waiters()) {
          if (earlier(q) && !Compatible(mode, IntentionFor(q.mode))) out->insert(q.who);
          if (done()) return;
        }
      }
    }
  }
  const Mode intent = IntentionFor(mode);
  for (std::string_view a : Ancestors(name)) {
    auto ait = resources_.find(a);
    if (ait == resources_.end()) continue;
    for (const WaitEntry& q : ait->second.waiters()) {
      if (earlier(q) && !Compatible(intent, q.mode)) out->insert(q.who);
      if (done()) return;
    }
  }
}

bool LockTable::Blocked(const OwnerId& who, const std::string& name, Mode mode, uint64_t seq,
                        bool conversion) const {
  std::set<OwnerId> b;
  HolderBlockers(who, name, mode, true, &b);
  if (!b.empty()) return true;
  WaiterBlockers(who, name, mode, seq, conversion, true, &b);
  return !b.empty();
}

std::string LockTable::FindCycle(const OwnerId& who, const std::set<OwnerId>& blockers) const {
  // Breadth-first over the wait-for graph from the blockers; parent links
  // rebuild the cycle for the error message.
  struct Link {
    OwnerId from;
    std::string name;
  };
  // Nobody can wait for an owner that holds nothing and waits for nothing
  // (edges point at holders and earlier waiters): the common case is free.
  if (auto self = owners_.find(who);
      self == owners_.end() || (self->second.held.empty() && self->second.waiting.empty())) {
    return "";
  }
  std::map<OwnerId, Link> parent;
  std::vector<OwnerId> frontier;
  for (const OwnerId& b : blockers) {
    if (b == who) continue;
    parent.emplace(b, Link{who, ""});
    frontier.push_back(b);
  }
  while (!frontier.empty()) {
    std::vector<OwnerId> next;
    for (const OwnerId& o : frontier) {
      auto os = owners_.find(o);
      if (os == owners_.end()) continue;
      for (const std::string& n : os->second.waiting) {
        const Resource& r = resources_.find(n)->second;
        for (const WaitEntry& w : r.waiters()) {
          if (w.who != o) continue;
          std::set<OwnerId> bs;
          HolderBlockers(o, n, w.mode, false, &bs);
          WaiterBlockers(o, n, w.mode, w.seq, w.conversion, false, &bs);
          for (const OwnerId& b : bs) {
            if (b == who) {
              // who -> ... -> o -(n)-> who
              std::vector<std::pair<OwnerId, std::string>> path;
              path.emplace_back(o, n);
              for (OwnerId cur = o; cur != who;) {
                const Link& l = parent.at(cur);
                path.emplace_back(l.from, "");
                cur = l.from;
              }
              std::reverse(path.begin(), path.end());
              std::string text;
              for (size_t i = 0; i < path.size(); ++i) {
                if (i) text += " -> ";
                text += DescribeOwner(path[i].first);
              }
              text += " -> " + DescribeOwner(who);
              return text;
            }
            if (parent.emplace(b, Link{o, n}).second) next.push_back(b);
          }
        }
      }
    }
    frontier = std::move(next);
  }
  return "";
}

// ---- Bookkeeping -------------------------------------------------------------

void LockTable::AdjustAncestors(const std::string& name, int d_cr, int d_cw, int d_waiters) {
  for (std::string_view a : Ancestors(name)) {
    Resource& r = Ensure(a);
    r.below_cr = static_cast<uint32_t>(static_cast<int>(r.below_cr) + d_cr);
    r.below_cw = static_cast<uint32_t>(static_cast<int>(r.below_cw) + d_cw);
    r.AddWaitersBelow(d_waiters);
    if (r.idle()) Drop(a);
  }
}

namespace {
int CrOf(Mode m) {
  return IntentionFor(m) == Mode::kCR ? 1 : 0;
}
int CwOf(Mode m) {
  return IntentionFor(m) == Mode::kCW ? 1 : 0;
}
}  // namespace

void LockTable::AddGrant(const std::string& name, const OwnerId& who, const HeldGrant& g) {
  auto os = owners_.try_emplace(who, pool_.get()).first;
  Resource& r = Ensure(name);
  r.holders.Put(os->first, g);  // refers to the interned owner id
  os->second.held.Insert(&r);
  ++grant_count_;
  AdjustAncestors(name, CrOf(g.mode), CwOf(g.mode), 0);
  if (g.lock_ttl_ms > 0) {
    ttl_deadlines_.emplace(g.granted_at_ms + g.lock_ttl_ms, name, g.fencing_token);
  }
}

void LockTable::RemoveGrant(const std::string& name, const OwnerId& who) {
  Resource& r = *Mut(name);
  auto it = r.holders.find(who);
  LATCHKEY_CHECK(it != r.holders.end());
  const HeldGrant g = it->second;
  r.holders.erase(it);
  if (g.lock_ttl_ms > 0) {
    ttl_deadlines_.erase({g.granted_at_ms + g.lock_ttl_ms, name, g.fencing_token});
  }
  auto os = owners_.find(who);
  os->second.held.Erase(name);
  if (os->second.held.empty() && os->second.waiting.empty()) owners_.erase(os);
  --grant_count_;
  AdjustAncestors(name, -CrOf(g.mode), -CwOf(g.mode), 0);
}

void LockTable::AddWaiter(const std::string& name, WaitEntry w) {
  owners_.try_emplace(w.who, pool_.get()).first->second.waiting.insert(name);
  auto& q = Ensure(name).MutableWaiters();
  auto pos = std::upper_bound(q.begin(), q.end(), w.seq,
                              [](uint64_t s, const WaitEntry& e) { return s < e.seq; });
  q.insert(pos, std::move(w));
  ++waiter_count_;
  AdjustAncestors(name, 0, 0, 1);
}

const WaitEntry* LockTable::FindWait(std::string_view name, const OwnerId& who) const {
  const Resource* r = Find(name);
  if (r == nullptr) return nullptr;
  const std::span<const WaitEntry> waiters = r->waiters();
  auto it = std::find_if(waiters.begin(), waiters.end(),
                         [&](const WaitEntry& e) { return e.who == who; });
  return it == waiters.end() ? nullptr : &*it;
}

void LockTable::RemoveWaiter(const std::string& name, const OwnerId& who) {
  Resource* r = Mut(name);
  const WaitEntry* w = FindWait(name, who);
  LATCHKEY_CHECK(w != nullptr);
  auto& q = r->MutableWaiters();
  q.erase(q.begin() + (w - q.data()));
  r->TrimWaiters();
  auto os = owners_.find(who);
  os->second.waiting.erase(name);
  if (os->second.held.empty() && os->second.waiting.empty()) owners_.erase(os);
  --waiter_count_;
  AdjustAncestors(name, 0, 0, -1);
}

void LockTable::DemoteConversion(const std::string& name, const OwnerId& who) {
  auto it = resources_.find(name);
  if (it == resources_.end()) return;
  for (WaitEntry& w : it->second.waiters()) {
    if (w.who == who) w.conversion = false;
  }
}

void LockTable::EraseIfIdle(const std::string& name) {
  if (const Resource* r = Mut(name); r != nullptr && r->idle()) Drop(name);
}

LockTable& LockTable::operator=(LockTable&& o) noexcept {
  if (this != &o) {
    this->~LockTable();
    new (this) LockTable(std::move(o));
  }
  return *this;
}

Resource& LockTable::Ensure(std::string_view name) {
  if (Resource* r = Mut(name)) return *r;
  return *resources_.Add(name);
}

void LockTable::Drop(std::string_view name) {
  resources_.Remove(name);
}

// ---- Operations ----------------------------------------------------------------

AcquireOutcome LockTable::Acquire(const AcquireRequest& req, uint64_t now_ms, uint64_t* revision) {
  grant_time_ms_ = now_ms;
  AcquireOutcome out;
  const OwnerId& who = req.who;
  const std::string& name = req.name;
  auto busy_or_wait = [&](Mode mode, uint64_t seq, bool conversion) {
    std::set<OwnerId> blockers;
    HolderBlockers(who, name, mode, false, &blockers);
    WaiterBlockers(who, name, mode, seq, conversion, false, &blockers);
    std::string list;
    for (const OwnerId& b : blockers) list += (list.empty() ? "" : ", ") + DescribeOwner(b);
    if (req.try_only) {
      out.kind = AcquireOutcome::Kind::kBusy;
      out.message =
          "lock '" + name + "' in " + std::string(ModeName(mode)) + " is blocked by " + list;
      EraseIfIdle(name);
      return;
    }
    std::string cycle = FindCycle(who, blockers);
    if (!cycle.empty()) {
      out.kind = AcquireOutcome::Kind::kDeadlock;
      out.message = "waiting for '" + name + "' in " + std::string(ModeName(mode)) +
                    " would deadlock: " + cycle;
      EraseIfIdle(name);
      return;
    }
    WaitEntry w;
    w.who = who;
    w.mode = mode;
    w.seq = seq;
    w.conversion = conversion;
    w.reentrant = req.reentrant;
    w.queued_at_ms = now_ms;
    w.lock_ttl_ms = req.lock_ttl_ms;
    w.set_value = req.set_value;
    w.value = req.value;
    w.cacheable = req.cacheable;
    AddWaiter(name, std::move(w));
    ++*revision;
    out.kind = AcquireOutcome::Kind::kQueued;
    EmitCallbacks(name);
  };

  if (IsWaiting(who, name)) {
    out.kind = AcquireOutcome::Kind::kQueued;  // retry of a waiting request
    return out;
  }
  if (const HeldGrant* held = FindGrant(who, name)) {
    if (Covers(held->mode, req.mode)) {
      HeldGrant& g = Mut(name)->holders.find(who)->second;
      if (req.reentrant) ++g.count;
      if (req.cacheable) g.cacheable = true;
      out.grant = g;
      // A holder asking again with a value writes it, as SetValue would (a
      // retried request id does not: a newer write may have followed it).
      if (req.set_value && IsWriteMode(req.mode) && !req.retry) {
        Mut(name)->SetValueBlock(req.value, ++*revision);
      }
      if (req.cacheable) EmitCallbacks(name);
      return out;
    }
    const Mode target = Join(held->mode, req.mode);
    const uint64_t seq = next_seq_++;
    if (Blocked(who, name, target, seq, /*conversion=*/true)) {
      busy_or_wait(target, seq, true);
      return out;
    }
    HeldGrant& g = Mut(name)->holders.find(who)->second;
    const Mode old = g.mode;
    g.mode = target;
    if (req.reentrant) ++g.count;
    if (req.cacheable) g.cacheable = true;
    if (IsWriteMode(target)) {
      g.fencing_token = ++*revision;
      g.callback_sent.reset();
    }
    AdjustAncestors(name, CrOf(target) - CrOf(old), CwOf(target) - CwOf(old), 0);
    out.grant = g;
    if (req.set_value && IsWriteMode(target)) Mut(name)->SetValueBlock(req.value, g.fencing_token);
    EmitCallbacks(name);  // a conversion jumps the queue: it may block waiters
    return out;
  }
  if (Status order = CheckOrder(who, name); !order.ok()) {
    out.kind = AcquireOutcome::Kind::kOrder;
    out.message = order.message();
    EraseIfIdle(name);
    return out;
  }
  const uint64_t seq = next_seq_++;
  if (Blocked(who, name, req.mode, seq, false)) {
    busy_or_wait(req.mode, seq, false);
    return out;
  }
  HeldGrant g;
  g.mode = req.mode;
  g.count = 1;
  g.fencing_token = ++*revision;
  g.granted_at_ms = now_ms;
  g.lock_ttl_ms = req.lock_ttl_ms;
  g.cacheable = req.cacheable;
  AddGrant(name, who, g);
  out.grant = g;
  if (req.set_value && IsWriteMode(req.mode)) Mut(name)->SetValueBlock(req.value, g.fencing_token);
  return out;
}

void LockTable::Reschedule(const std::string& name, uint64_t* revision) {
  struct Candidate {
    std::string name;
    WaitEntry w;
  };
  std::vector<Candidate> cands;
  const size_t first_grant = grant_events_.size();
  auto collect = [&](std::string_view n) {
    auto it = resources_.find(n);
    if (it == resources_.end()) return;
    for (const WaitEntry& w : it->second.waiters()) cands.push_back({std::string(n), w});
  };
  for (std::string_view a : Ancestors(name)) collect(a);
  collect(name);
  auto it = resources_.find(name);
  if (it != resources_.end() && it->second.waiters_below() > 0) {
    const std::string prefix = name + ".";
    for (auto d = resources_.lower_bound(prefix);
         d != resources_.end() && IsDescendantKey(d->first, name); ++d) {
      for (const WaitEntry& w : d->second.waiters()) cands.push_back({d->first, w});
    }
  }
  if (cands.empty()) {
    EraseIfIdle(name);
    return;
  }
  std::sort(cands.begin(), cands.end(), [](const Candidate& a, const Candidate& b) {
    return std::make_tuple(!a.w.conversion, a.w.seq) < std::make_tuple(!b.w.conversion, b.w.seq);
  });
  // Only this loop removes waiters, and only a group grant removes entries
  // other than the candidate itself: remember those groups.
  std::set<uint64_t> granted_groups;
  for (const Candidate& c : cands) {
    if (c.w.group != 0) {
      if (granted_groups.count(c.w.group) || !GroupUnblocked(c.w.group, c.w.who)) continue;
      granted_groups.insert(c.w.group);
    } else if (Blocked(c.w.who, c.name, c.w.mode, c.w.seq, c.w.conversion)) {
      continue;
    }
    GrantWaiter(c.name, c.w, revision);
  }
  EmitCallbacks(name, first_grant);
  EraseIfIdle(name);
}

void LockTable::GrantWaiter(const std::string& name, const WaitEntry& w, uint64_t* revision) {
  std::vector<std::pair<std::string, WaitEntry>> parts;
  if (w.group != 0) {
    for (const std::string& n : groups_.at(w.group)) {
      const WaitEntry* part = FindWait(n, w.who);
      LATCHKEY_CHECK(part != nullptr && part->group == w.group);
      parts.emplace_back(n, *part);
    }
    groups_.erase(w.group);
  } else {
    parts.emplace_back(name, w);
  }
  for (const auto& [n, e] : parts) {
    RemoveWaiter(n, e.who);
    HeldGrant granted;
    if (e.conversion) {
      HeldGrant& g = Mut(n)->holders.find(e.who)->second;
      const Mode old = g.mode;
      g.mode = e.mode;
      if (e.reentrant) ++g.count;
      if (e.cacheable) g.cacheable = true;
      if (IsWriteMode(e.mode)) {
        g.fencing_token = ++*revision;
        g.callback_sent.reset();
      }
      AdjustAncestors(n, CrOf(g.mode) - CrOf(old), CwOf(g.mode) - CwOf(old), 0);
      granted = g;
    } else {
      granted.mode = e.mode;
      granted.count = 1;
      granted.fencing_token = ++*revision;
      granted.granted_at_ms = grant_time_ms_;
      granted.lock_ttl_ms = e.lock_ttl_ms;
      granted.cacheable = e.cacheable;
      AddGrant(n, e.who, granted);
    }
    if (e.set_value && IsWriteMode(e.mode)) Mut(n)->SetValueBlock(e.value, granted.fencing_token);
    grant_events_.push_back({e.who, n, granted});
  }
}

bool LockTable::GroupUnblocked(uint64_t group, const OwnerId& who) const {
  auto g = groups_.find(group);
  if (g == groups_.end()) return false;
  for (const std::string& n : g->second) {
    const WaitEntry* part = FindWait(n, who);
    if (part == nullptr || part->group != group || Blocked(who, n, part->mode, part->seq, false)) {
      return false;
    }
  }
  return true;
}

std::optional<uint32_t> LockTable::RankOf(std::string_view name) const {
  if (ranks_.empty()) return std::nullopt;
  if (auto it = ranks_.find(name); it != ranks_.end()) return it->second;
  auto anc = Ancestors(name);
  for (auto a = anc.rbegin(); a != anc.rend(); ++a) {
    if (auto it = ranks_.find(*a); it != ranks_.end()) return it->second;
  }
  return std::nullopt;
}

Status LockTable::CheckOrder(const OwnerId& who, const std::string& name) const {
  const auto rank = RankOf(name);
  if (!rank) return Status::Ok();
  auto os = owners_.find(who);
  if (os == owners_.end()) return Status::Ok();
  for (const auto& [held_name, res] : os->second.held) {
    const std::string held = held_name;
    const auto r = RankOf(held);
    if (r && *r > *rank) {
      return Status(Code::kFailedPrecondition,
                    "lock order violation: " + DescribeOwner(who) + " holds '" + held + "' (rank " +
                        std::to_string(*r) + ") and asks for '" + name + "' (rank " +
                        std::to_string(*rank) + "); take lower ranks first");
    }
  }
  return Status::Ok();
}

Status LockTable::DeclareRank(const std::string& prefix, uint32_t rank) {
  ranks_[prefix] = rank;
  return Status::Ok();
}

Status LockTable::SetValue(const OwnerId& who, const std::string& name, std::string value,
                           uint64_t* revision) {
  const HeldGrant* g = FindGrant(who, name);
  if (g == nullptr || !IsWriteMode(g->mode)) {
    return Status(Code::kNotHeld, "writing the value of '" + name + "' needs " +
                                      DescribeOwner(who) + " to hold it in CW, PW or EX");
  }
  Mut(name)->SetValueBlock(std::move(value), ++*revision);
  EraseIfIdle(name);
  return Status::Ok();
}

AcquireOutcome LockTable::AcquireMany(const OwnerId& who, const std::vector<LockPart>& parts,
                                      bool try_only, uint64_t lock_ttl_ms, uint64_t now_ms,
                                      uint64_t* revision) {
  grant_time_ms_ = now_ms;
  AcquireOutcome out;
  // A retry of this very request (after a reconnect): report where it is.
  if (const HeldGrant* first = FindGrant(who, parts.front().name);
      first && std::all_of(parts.begin(), parts.end(),
                           [&](const LockPart& p) { return FindGrant(who, p.name) != nullptr; })) {
    out.grant = *first;
    return out;
  }
  if (const WaitEntry* it = FindWait(parts.front().name, who)) {
    if (it->group != 0 && groups_.at(it->group).size() == parts.size() &&
        std::all_of(parts.begin(), parts.end(),
                    [&](const LockPart& p) { return IsWaiting(who, p.name); })) {
      out.kind = AcquireOutcome::Kind::kQueued;
      return out;
    }
  }
  std::set<std::string> seen;
  for (const LockPart& p : parts) {
    if (!seen.insert(p.name).second || FindGrant(who, p.name) || IsWaiting(who, p.name)) {
      out.kind = AcquireOutcome::Kind::kBusy;
      out.message = "'" + p.name + "' is repeated, already held or already waited for by " +
                    DescribeOwner(who);
      return out;
    }
  }
  const uint64_t seq = next_seq_++;
  std::set<OwnerId> blockers;
  for (const LockPart& p : parts) {
    HolderBlockers(who, p.name, p.mode, false, &blockers);
    WaiterBlockers(who, p.name, p.mode, seq, false, false, &blockers);
  }
  if (blockers.empty()) {
    for (const LockPart& p : parts) {
      HeldGrant g;
      g.mode = p.mode;
      g.fencing_token = ++*revision;
      g.granted_at_ms = now_ms;
      g.lock_ttl_ms = lock_ttl_ms;
      AddGrant(p.name, who, g);
      if (&p == &parts.front()) out.grant = g;
    }
    return out;
  }
  std::string list;
  for (const OwnerId& b : blockers) list += (list.empty() ? "" : ", ") + DescribeOwner(b);
  if (try_only) {
    out.kind = AcquireOutcome::Kind::kBusy;
    out.message = "the locks are blocked by " + list;
    for (const LockPart& p : parts) EraseIfIdle(p.name);
    return out;
  }
  if (std::string cycle = FindCycle(who, blockers); !cycle.empty()) {
    out.kind = AcquireOutcome::Kind::kDeadlock;
    out.message = "waiting for these locks would deadlock: " + cycle;
    for (const LockPart& p : parts) EraseIfIdle(p.name);
    return out;
  }
  std::vector<std::string>& names = groups_[seq];
  for (const LockPart& p : parts) {
    WaitEntry w;
    w.who = who;
    w.mode = p.mode;
    w.seq = seq;
    w.group = seq;
    w.queued_at_ms = now_ms;
    w.lock_ttl_ms = lock_ttl_ms;
    AddWaiter(p.name, std::move(w));
    names.push_back(p.name);
  }
  ++*revision;
  out.kind = AcquireOutcome::Kind::kQueued;
  for (const LockPart& p : parts) EmitCallbacks(p.name);
  return out;
}

Status LockTable::Release(const OwnerId& who, const std::string& name, bool all,
                          uint64_t* revision) {
  auto it = resources_.find(name);
  HeldGrant* g = nullptr;
  if (it != resources_.end()) {
    auto h = it->second.holders.find(who);
    if (h != it->second.holders.end()) g = &h->second;
  }
  if (g == nullptr) {
    return {Code::kNotHeld, "lock '" + name + "' is not held by " + DescribeOwner(who) +
                                " (released already, or its TTL ended)"};
  }
  if (!all && g->count > 1) {
    --g->count;
    return Status::Ok();
  }
  RemoveGrant(name, who);
  DemoteConversion(name, who);
  ++*revision;
  Reschedule(name, revision);
  return Status::Ok();
}

Status LockTable::Downgrade(const OwnerId& who, const std::string& name, Mode mode,
                            uint64_t* revision) {
  auto it = resources_.find(name);
  if (it == resources_.end() || !it->second.holders.count(who)) {
    return {Code::kNotHeld, "lock '" + name + "' is not held by " + DescribeOwner(who)};
  }
  HeldGrant& g = it->second.holders.find(who)->second;
  if (!Covers(g.mode, mode)) {
    return InvalidArgument("cannot downgrade '" + name + "' from " + std::string(ModeName(g.mode)) +
                           " to " + std::string(ModeName(mode)) +
                           ": that is not weaker; acquire it to upgrade");
  }
  const Mode old = g.mode;
  g.mode = mode;
  AdjustAncestors(name, CrOf(mode) - CrOf(old), CwOf(mode) - CwOf(old), 0);
  ++*revision;
  Reschedule(name, revision);
  return Status::Ok();
}

bool LockTable::CancelWait(const OwnerId& who, const std::string& name, uint64_t* revision) {
  if (!IsWaiting(who, name)) return false;
  std::vector<std::string> names = {name};
  if (const uint64_t group = FindWait(name, who)->group; group != 0) {
    // Withdrawing one part withdraws the whole AcquireMany.
    names = groups_.at(group);
    groups_.erase(group);
  }
  for (const std::string& n : names) RemoveWaiter(n, who);
  ++*revision;
  for (const std::string& n : names) Reschedule(n, revision);
  return true;
}

Status LockTable::Transfer(const OwnerId& from, const OwnerId& to, const std::string& name,
                           uint64_t now_ms, uint64_t* revision) {
  const HeldGrant* g = FindGrant(from, name);
  if (g == nullptr) {
    return {Code::kNotHeld, "lock '" + name + "' is not held by " + DescribeOwner(from)};
  }
  if (FindGrant(to, name) != nullptr || IsWaiting(to, name)) {
    return {Code::kFailedPrecondition,
            DescribeOwner(to) + " already holds or waits for '" + name + "'; it cannot receive it"};
  }
  HeldGrant moved = *g;
  RemoveGrant(name, from);
  DemoteConversion(name, from);
  moved.fencing_token = ++*revision;
  moved.granted_at_ms = now_ms;
  moved.callback_sent.reset();  // a new grant: its holder was never asked
  AddGrant(name, to, moved);
  EmitCallbacks(name);
  return Status::Ok();
}

void LockTable::DropSession(uint64_t session, uint64_t* revision) {
  std::vector<std::pair<OwnerId, OwnerState>> owned;
  for (auto it = owners_.lower_bound(OwnerId{session, ""});
       it != owners_.end() && it->first.session == session; ++it) {
    owned.emplace_back(it->first, it->second);
  }
  std::set<std::string> touched;
  for (const auto& [who, st] : owned) {
    for (const std::string& n : st.waiting) {
      if (const uint64_t group = FindWait(n, who)->group; group != 0) groups_.erase(group);
      RemoveWaiter(n, who);
      touched.insert(n);
    }
  }
  for (const auto& [who, st] : owned) {
    std::vector<std::string> held;  // names copied: RemoveGrant may drop resources
    for (const auto& [n, res] : st.held) held.emplace_back(n);
    for (const std::string& n : held) {
      RemoveGrant(n, who);
      touched.insert(n);
    }
  }
  if (!touched.empty()) ++*revision;
  for (const std::string& n : touched) Reschedule(n, revision);
}

Result<OwnerId> LockTable::ExpireGrant(const std::string& name, uint64_t token, uint64_t now_ms,
                                       uint64_t* revision) {
  auto it = resources_.find(name);
  if (it != resources_.end()) {
    for (const auto& [who, g] : it->second.holders) {
      if (g.fencing_token != token) continue;
      if (g.lock_ttl_ms == 0 || g.granted_at_ms + g.lock_ttl_ms > now_ms) {
        return Status(Code::kFailedPrecondition, "lock TTL has not run out");
      }
      OwnerId owner = who;
      RemoveGrant(name, owner);
      DemoteConversion(name, owner);
      ++*revision;
      Reschedule(name, revision);
      return owner;
    }
  }
  return NotFound("grant " + std::to_string(token) + " of lock '" + name + "' is no longer held");
}

std::vector<GrantEvent> LockTable::TakeGrantEvents() {
  std::vector<GrantEvent> out;
  out.swap(grant_events_);
  return out;
}

// ---- Queries -------------------------------------------------------------------

const Resource* LockTable::Find(std::string_view name) const {
  return resources_.Find(name);
}

const HeldGrant* LockTable::FindGrant(const OwnerId& who, std::string_view name) const {
  const Resource* r = Find(name);
  if (!r) return nullptr;
  auto it = r->holders.find(who);
  return it == r->holders.end() ? nullptr : &it->second;
}

bool LockTable::IsWaiting(const OwnerId& who, std::string_view name) const {
  auto it = owners_.find(who);
  return it != owners_.end() && it->second.waiting.count(std::string(name)) > 0;
}

std::vector<std::pair<std::string, std::pair<OwnerId, HeldGrant>>> LockTable::HeldBySession(
    uint64_t session) const {
  std::vector<std::pair<std::string, std::pair<OwnerId, HeldGrant>>> out;
  for (auto it = owners_.lower_bound(OwnerId{session, ""});
       it != owners_.end() && it->first.session == session; ++it) {
    for (const auto& [n, res] : it->second.held) {
      out.push_back({n, {it->first, res.holders.find(it->first)->second}});
    }
  }
  return out;
}

std::vector<std::pair<std::string, uint64_t>> LockTable::Expired(uint64_t now_ms) const {
  std::vector<std::pair<std::string, uint64_t>> out;
  for (const auto& [deadline, name, token] : ttl_deadlines_) {
    if (deadline > now_ms) break;
    out.emplace_back(name, token);
  }
  return out;
}

std::vector<WaitEdge> LockTable::WaitForGraph() const {
  std::vector<WaitEdge> edges;
  for (const auto& [name, r] : resources_) {
    for (const WaitEntry& w : r.waiters()) {
      std::set<OwnerId> bs;
      HolderBlockers(w.who, name, w.mode, false, &bs);
      WaiterBlockers(w.who, name, w.mode, w.seq, w.conversion, false, &bs);
      for (const OwnerId& b : bs) edges.push_back({w.who, name, w.mode, b});
    }
  }
  return edges;
}

void LockTable::RestoreGrant(const std::string& name, const OwnerId& who, const HeldGrant& g) {
  AddGrant(name, who, g);
}

void LockTable::RestoreWaiter(const std::string& name, const WaitEntry& w) {
  if (w.group != 0) groups_[w.group].push_back(name);
  AddWaiter(name, w);
}

void LockTable::RestoreValue(const std::string& name, std::string value, uint64_t token) {
  Ensure(name).SetValueBlock(std::move(value), token);
  EraseIfIdle(name);
}

}  // namespace latchkey::core
