// Blocking callbacks of cached grants (docs/design/0007-cached-locks.md):
// which cacheable holders a waiting request needs called back, and to which
// mode; exactly one callback per (grant, need).
#include <optional>

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
// The strongest mode covered by both (modes are only partly ordered:
// Meet(PR, CW) = CR).
Mode Meet(Mode a, Mode b) {
  for (int m = kModeCount - 1; m > 0; --m) {
    const Mode c = static_cast<Mode>(m);
    if (Covers(a, c) && Covers(b, c)) return c;
  }
  return Mode::kNL;
}
}  // namespace

void LockTable::EmitCallbacks(const std::string& name) {
  auto it = resources_.find(name);
  if (it == resources_.end() || it->second.waiters.empty()) return;
  Resource& r = it->second;
  for (auto& [holder, g] : r.holders) {
    if (!g.cacheable) continue;
    // What the holder must go down to so that every waiter it blocks fits.
    std::optional<Mode> target;
    Mode wanted = Mode::kNL;
    for (const WaitEntry& w : r.waiters) {
      if (w.who == holder || Compatible(w.mode, g.mode)) continue;
      const Mode t = DowngradeTarget(g.mode, w.mode);
      if (!target || !Covers(t, *target)) wanted = w.mode;
      target = target ? Meet(*target, t) : t;
    }
    if (!target) continue;
    // Exactly one callback per (grant, need): again only when the holder was
    // not already asked for a mode that satisfies this need too.
    if (g.callback_sent) {
      if (Covers(*target, *g.callback_sent)) continue;
      target = Meet(*target, *g.callback_sent);
    }
    g.callback_sent = *target;
    callback_events_.push_back({holder, name, g, wanted, *target});
  }
}

std::vector<CallbackEvent> LockTable::TakeCallbackEvents() {
  std::vector<CallbackEvent> out;
  out.swap(callback_events_);
  return out;
}

}  // namespace latchkey::core
