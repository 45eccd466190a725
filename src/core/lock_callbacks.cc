// Blocking callbacks of cached grants (docs/design/0007-cached-locks.md):
// which cacheable holders a waiting request needs called back, and to which
// mode; exactly one callback per (grant, need).
//
// A holder blocks a waiter when their grants conflict in the name hierarchy
// (same name; holder on an ancestor, whose explicit mode conflicts with the
// intention the waiter implies there; holder on a descendant, whose implied
// intention conflicts with the waiter's mode). For each such pair the need
// is expressed as a mode at the HOLDER's name (`NeedAt`), so the downgrade
// target is always DowngradeTarget(held, need).
//
// When needs arise: a request starts to wait (its blockers are asked), a
// grant is made or changed while others wait (the waiters it blocks are
// asked), a cacheable holder downgrades to something that still blocks. The
// lock table calls EmitCallbacks(name) at those points; `new_grants_from`
// names the grant events of the reschedule that just ran, whose names are
// visited too (a grant on `a` made by releasing `a.b` may block `a.c`).
#include <map>
#include <optional>
#include <utility>

#include "core/lock_table.h"

namespace latchkey::core {

Mode DowngradeTarget(Mode held, Mode wanted) {
  for (int m = kModeCount - 1; m > 0; --m) {
    const Mode c = static_cast<Mode>(m);
    if (Covers(held, c) && Compatible(c, wanted)) return c;
  }
  return Mode::kNL;
}

namespace {

Mode NeedBelow(Mode mode) {
  // The weakest M such that a grant c below the name is compatible with M
  // exactly when its intention is compatible with `mode` (EX -> EX,
  // PW/PR -> PR, CW/CR/NL -> NL).
  for (int m = 0; m < kModeCount; ++m) {
    bool same = true;
    for (int c = 0; c < kModeCount && same; ++c) {
      const Mode cm = static_cast<Mode>(c);
      same = Compatible(cm, static_cast<Mode>(m)) == Compatible(IntentionFor(cm), mode);
    }
    if (same) return static_cast<Mode>(m);
  }
  return mode;
}

// The strongest mode covered by both (modes are only partly ordered:
// Meet(PR, CW) = CR).
Mode Meet(Mode a, Mode b) {
  for (int m = kModeCount - 1; m > 0; --m) {
    const Mode c = static_cast<Mode>(m);
    if (Covers(a, c) && Covers(b, c)) return c;
  }
  return Mode::kNL;
}

bool IsBelow(std::string_view key, std::string_view name) {
  return key.size() > name.size() + 1 && key.compare(0, name.size(), name) == 0 &&
         key[name.size()] == '.';
}

// What a waiter for `mode` on `wname` needs from a grant on the related name
// `hname`, as a mode at `hname`.
Mode NeedAt(std::string_view hname, std::string_view wname, Mode mode) {
  if (hname == wname) return mode;
  if (IsBelow(wname, hname)) return IntentionFor(mode);  // holder is an ancestor
  return NeedBelow(mode);                                // holder is a descendant
}

struct Need {
  Mode target = Mode::kNL;  // meet of the targets of every waiter blocked
  Mode wanted = Mode::kEX;  // the need (at the holder's name) that set it
};

}  // namespace

void LockTable::EmitCallbacks(const std::string& name, size_t new_grants_from) {
  if (waiter_count_ == 0) return;
  // Every access to the containers goes through these two helpers.
  auto find = [&](std::string_view n) -> Resource* {
    auto it = resources_.find(n);
    return it == resources_.end() ? nullptr : &it->second;
  };
  auto for_each_below = [&](const std::string& n, auto&& fn) {
    const std::string prefix = n + ".";
    for (auto d = resources_.lower_bound(prefix); d != resources_.end() && IsBelow(d->first, n);
         ++d) {
      fn(d->first, d->second);
    }
  };

  // (holder's name, holder) -> what it must go down to. Ordered, so the
  // callbacks come out in the same order on every replica.
  std::map<std::pair<std::string, OwnerId>, Need> needs;
  auto consider = [&](const std::string& hname, const OwnerId& holder, const HeldGrant& g,
                      std::string_view wname, const WaitEntry& w) {
    if (!g.cacheable || holder == w.who) return;
    const Mode need = NeedAt(hname, wname, w.mode);
    if (Compatible(g.mode, need)) return;
    const Mode t = DowngradeTarget(g.mode, need);
    auto [it, fresh] = needs.try_emplace({hname, holder}, Need{t, need});
    if (fresh) return;
    if (!Covers(t, it->second.target)) it->second.wanted = need;
    it->second.target = Meet(it->second.target, t);
  };
  // Waiters on `n` against every holder that can block them.
  auto blockers_of_waiters = [&](const std::string& n) {
    Resource* r = find(n);
    if (r == nullptr || r->waiters().empty()) return;
    for (const WaitEntry& w : r->waiters()) {
      for (const auto& [holder, g] : r->holders) consider(n, holder, g, n, w);
    }
    for (std::string_view a : Ancestors(n)) {
      const Resource* ar = find(a);
      if (ar == nullptr) continue;
      const std::string an(a);
      for (const WaitEntry& w : r->waiters()) {
        for (const auto& [holder, g] : ar->holders) consider(an, holder, g, n, w);
      }
    }
    if (r->below_cr + r->below_cw == 0) return;
    bool any = false;  // does any waiter here conflict with some intention?
    for (const WaitEntry& w : r->waiters()) any = any || NeedBelow(w.mode) != Mode::kNL;
    if (!any) return;
    for_each_below(n, [&](const std::string& d, const Resource& dr) {
      for (const WaitEntry& w : r->waiters()) {
        for (const auto& [holder, g] : dr.holders) consider(d, holder, g, n, w);
      }
    });
  };
  // Cacheable holders on `n` against waiters on its ancestors and
  // descendants (same-name waiters are covered by blockers_of_waiters).
  auto waiters_blocked_by_holders = [&](const std::string& n) {
    Resource* r = find(n);
    if (r == nullptr) return;
    bool cached = false;
    for (const auto& [holder, g] : r->holders) cached = cached || g.cacheable;
    if (!cached) return;
    for (std::string_view a : Ancestors(n)) {
      const Resource* ar = find(a);
      if (ar == nullptr) continue;
      for (const WaitEntry& w : ar->waiters()) {
        for (const auto& [holder, g] : r->holders) consider(n, holder, g, a, w);
      }
    }
    if (r->waiters_below() == 0) return;
    for_each_below(n, [&](const std::string& d, const Resource& dr) {
      for (const WaitEntry& w : dr.waiters()) {
        for (const auto& [holder, g] : r->holders) consider(n, holder, g, d, w);
      }
    });
  };

  std::vector<std::string> visit = {name};
  for (size_t i = new_grants_from; i < grant_events_.size(); ++i) {
    const GrantEvent& ev = grant_events_[i];
    if (ev.grant.cacheable && ev.name != name) visit.push_back(ev.name);
  }
  for (const std::string& n : visit) {
    blockers_of_waiters(n);
    waiters_blocked_by_holders(n);
  }

  for (auto& [key, need] : needs) {
    Resource* r = find(key.first);
    auto h = r->holders.find(key.second);
    HeldGrant& g = h->second;
    Mode target = need.target;
    // Exactly one callback per (grant, need): again only when the holder was
    // not already asked for a mode that satisfies this need too.
    if (g.callback_sent) {
      if (Covers(target, *g.callback_sent)) continue;
      target = Meet(target, *g.callback_sent);
    }
    g.callback_sent = target;
    callback_events_.push_back({key.second, key.first, g, need.wanted, target});
  }
}

std::vector<CallbackEvent> LockTable::TakeCallbackEvents() {
  std::vector<CallbackEvent> out;
  out.swap(callback_events_);
  return out;
}

}  // namespace latchkey::core
