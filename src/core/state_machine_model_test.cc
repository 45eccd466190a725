// Seeded randomized test of the lock engine (through the StateMachine)
// against a deliberately simple reference model: flat lists of grants and
// waits, brute-force conflict checks, a global FIFO pass after every change.
// Every step compares the outcome and the full lock state. A failing seed is
// printed and replays exactly:
//   LATCHKEY_MODEL_SEED=17 ./core_test --gtest_filter='*Model*'
// More operations: LATCHKEY_MODEL_SEEDS=2000 LATCHKEY_MODEL_STEPS=2000.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <tuple>
#include <vector>

#include "core/state_machine.h"
#include "core/test_util.h"

namespace latchkey::core {
namespace {

using testing::EntryBuilder;

struct RGrant {
  OwnerId who;
  std::string name;
  Mode mode;
  uint32_t count;
};

struct RWait {
  OwnerId who;
  std::string name;
  Mode mode;
  uint64_t seq;
  bool conversion;
  bool reentrant;
  uint64_t group = 0;  // AcquireMany
};

bool IsAncestor(const std::string& a, const std::string& b) {  // a strictly above b
  return b.size() > a.size() && b.compare(0, a.size(), a) == 0 && b[a.size()] == '.';
}

// Would (n1, m1) and (n2, m2) of different owners conflict?
bool Conflict(const std::string& n1, Mode m1, const std::string& n2, Mode m2) {
  if (n1 == n2) return !Compatible(m1, m2);
  if (IsAncestor(n1, n2)) return !Compatible(m1, IntentionFor(m2));
  if (IsAncestor(n2, n1)) return !Compatible(IntentionFor(m1), m2);
  return false;
}

class Reference {
 public:
  std::set<uint64_t> sessions;
  std::vector<RGrant> grants;
  std::vector<RWait> waits;
  uint64_t next_seq = 1;

  RGrant* FindGrant(const OwnerId& w, const std::string& n) {
    for (auto& g : grants) {
      if (g.who == w && g.name == n) return &g;
    }
    return nullptr;
  }
  bool Waiting(const OwnerId& w, const std::string& n) const {
    return std::any_of(waits.begin(), waits.end(),
                       [&](const RWait& q) { return q.who == w && q.name == n; });
  }
  std::set<OwnerId> Blockers(const OwnerId& who, const std::string& n, Mode m, uint64_t seq,
                             bool conversion) const {
    std::set<OwnerId> out;
    for (const auto& g : grants) {
      if (g.who != who && Conflict(n, m, g.name, g.mode)) out.insert(g.who);
    }
    for (const auto& q : waits) {
      if (q.who == who) continue;
      bool earlier = conversion ? (q.conversion && q.seq < seq) : (q.conversion || q.seq < seq);
      if (earlier && Conflict(n, m, q.name, q.mode)) out.insert(q.who);
    }
    return out;
  }
  bool CycleThrough(const OwnerId& who, const std::set<OwnerId>& first) const {
    std::set<OwnerId> seen;
    std::vector<OwnerId> stack(first.begin(), first.end());
    while (!stack.empty()) {
      OwnerId o = stack.back();
      stack.pop_back();
      if (o == who) return true;
      if (!seen.insert(o).second) continue;
      for (const auto& q : waits) {
        if (q.who != o) continue;
        for (const OwnerId& b : Blockers(o, q.name, q.mode, q.seq, q.conversion)) {
          stack.push_back(b);
        }
      }
    }
    return false;
  }
  void Schedule() {
    std::vector<RWait> order = waits;
    std::sort(order.begin(), order.end(), [](const RWait& a, const RWait& b) {
      return std::make_pair(!a.conversion, a.seq) < std::make_pair(!b.conversion, b.seq);
    });
    for (const RWait& w : order) {
      if (w.group != 0) {
        std::vector<RWait> parts;
        for (const auto& q : waits) {
          if (q.group == w.group) parts.push_back(q);
        }
        if (parts.empty()) continue;  // granted with an earlier part
        bool free = true;
        for (const auto& q : parts) {
          free = free && Blockers(q.who, q.name, q.mode, q.seq, false).empty();
        }
        if (!free) continue;
        std::erase_if(waits, [&](const RWait& q) { return q.group == w.group; });
        for (const auto& q : parts) grants.push_back({q.who, q.name, q.mode, 1});
        continue;
      }
      if (!Blockers(w.who, w.name, w.mode, w.seq, w.conversion).empty()) continue;
      waits.erase(std::find_if(waits.begin(), waits.end(),
                               [&](const RWait& q) { return q.who == w.who && q.name == w.name; }));
      if (w.conversion) {
        RGrant* g = FindGrant(w.who, w.name);
        g->mode = w.mode;
        if (w.reentrant) ++g->count;
      } else {
        grants.push_back({w.who, w.name, w.mode, 1});
      }
    }
  }
  // "granted", "queued", "busy", "deadlock", "gone"
  std::string Acquire(const OwnerId& who, const std::string& n, Mode m, bool try_only,
                      bool reentrant) {
    if (!sessions.count(who.session)) return "gone";
    if (Waiting(who, n)) return "queued";
    Mode want = m;
    bool conversion = false;
    if (RGrant* g = FindGrant(who, n)) {
      if (Covers(g->mode, m)) {
        if (reentrant) ++g->count;
        return "granted";
      }
      want = Join(g->mode, m);
      conversion = true;
    }
    const uint64_t seq = next_seq++;
    auto blockers = Blockers(who, n, want, seq, conversion);
    if (blockers.empty()) {
      if (conversion) {
        RGrant* g = FindGrant(who, n);
        g->mode = want;
        if (reentrant) ++g->count;
      } else {
        grants.push_back({who, n, want, 1});
      }
      return "granted";
    }
    if (try_only) return "busy";
    if (CycleThrough(who, blockers)) return "deadlock";
    waits.push_back({who, n, want, seq, conversion, reentrant});
    return "queued";
  }
  std::string AcquireMany(const OwnerId& who, const std::vector<std::pair<std::string, Mode>>& ps,
                          bool try_only) {
    if (!sessions.count(who.session)) return "gone";
    // A retry of the same request reports where it stands.
    if (std::all_of(ps.begin(), ps.end(), [&](const auto& p) { return FindGrant(who, p.first); })) {
      return "granted";
    }
    for (const auto& q : waits) {
      if (q.who != who || q.name != ps.front().first || q.group == 0) continue;
      size_t in_group = 0;
      for (const auto& w : waits) in_group += w.group == q.group;
      if (in_group == ps.size() &&
          std::all_of(ps.begin(), ps.end(), [&](const auto& p) { return Waiting(who, p.first); })) {
        return "queued";
      }
    }
    std::set<std::string> seen;
    for (const auto& [n, m] : ps) {
      if (!seen.insert(n).second || FindGrant(who, n) || Waiting(who, n)) return "busy";
    }
    const uint64_t seq = next_seq++;
    std::set<OwnerId> blockers;
    for (const auto& [n, m] : ps) {
      for (const OwnerId& b : Blockers(who, n, m, seq, false)) blockers.insert(b);
    }
    if (blockers.empty()) {
      for (const auto& [n, m] : ps) grants.push_back({who, n, m, 1});
      return "granted";
    }
    if (try_only) return "busy";
    if (CycleThrough(who, blockers)) return "deadlock";
    for (const auto& [n, m] : ps) waits.push_back({who, n, m, seq, false, false, seq});
    return "queued";
  }
  bool Release(const OwnerId& who, const std::string& n, bool all) {
    if (!sessions.count(who.session)) return false;
    RGrant* g = FindGrant(who, n);
    if (!g) return false;
    if (!all && g->count > 1) {
      --g->count;
      return true;
    }
    grants.erase(grants.begin() + (g - grants.data()));
    for (auto& q : waits) {
      if (q.who == who && q.name == n) q.conversion = false;
    }
    Schedule();
    return true;
  }
  bool Downgrade(const OwnerId& who, const std::string& n, Mode m) {
    if (!sessions.count(who.session)) return false;
    RGrant* g = FindGrant(who, n);
    if (!g || !Covers(g->mode, m)) return false;
    g->mode = m;
    Schedule();
    return true;
  }
  void Cancel(const OwnerId& who, const std::string& n) {
    if (!sessions.count(who.session)) return;
    auto it = std::find_if(waits.begin(), waits.end(),
                           [&](const RWait& q) { return q.who == who && q.name == n; });
    if (it == waits.end()) return;
    if (it->group != 0) {
      const uint64_t g = it->group;
      std::erase_if(waits, [&](const RWait& q) { return q.group == g; });
    } else {
      waits.erase(it);
    }
    Schedule();
  }
  void End(uint64_t s) {
    if (!sessions.erase(s)) return;
    std::erase_if(waits, [&](const RWait& q) { return q.who.session == s; });
    std::erase_if(grants, [&](const RGrant& g) { return g.who.session == s; });
    Schedule();
  }
};

void Compare(const StateMachine& sm, const Reference& ref, const std::string& where) {
  // Grants.
  std::map<std::pair<std::string, OwnerId>, std::pair<Mode, uint32_t>> want_g, have_g;
  for (const auto& g : ref.grants) want_g[{g.name, g.who}] = {g.mode, g.count};
  std::map<std::pair<std::string, OwnerId>, std::pair<Mode, bool>> want_w, have_w;
  for (const auto& q : ref.waits) want_w[{q.name, q.who}] = {q.mode, q.conversion};
  for (const auto& [name, res] : sm.locks().resources()) {
    for (const auto& [who, g] : res.holders) have_g[{name, who}] = {g.mode, g.count};
    for (const auto& w : res.waiters()) have_w[{name, w.who}] = {w.mode, w.conversion};
  }
  ASSERT_EQ(have_g, want_g) << where << ": grants differ";
  ASSERT_EQ(have_w, want_w) << where << ": waits differ";
  ASSERT_EQ(sm.locks_held(), ref.grants.size()) << where;
  ASSERT_EQ(sm.waiter_count(), ref.waits.size()) << where;
  ASSERT_EQ(sm.sessions().size(), ref.sessions.size()) << where;
}

// Blocking callbacks across the hierarchy, by brute force over the
// reference's conflict rule: the mode a cacheable holder (hn, held) must go
// down to so that a waiter (wn, wmode) of another owner is not blocked by it.
Mode NeededDowngrade(const std::string& hn, Mode held, const std::string& wn, Mode wmode) {
  for (int m = kModeCount - 1; m > 0; --m) {
    const Mode c = static_cast<Mode>(m);
    if (Covers(held, c) && !Conflict(hn, c, wn, wmode)) return c;
  }
  return Mode::kNL;
}

// Completeness: every cacheable holder that blocks a waiter has been asked
// for a mode that lets that waiter in (callback_sent covered by the need).
void CheckCallbacksComplete(const StateMachine& sm, const std::string& where) {
  for (const auto& [wn, wr] : sm.locks().resources()) {
    for (const WaitEntry& w : wr.waiters()) {
      for (const auto& [hn, hr] : sm.locks().resources()) {
        for (const auto& [who, g] : hr.holders) {
          if (!g.cacheable || who == w.who || !Conflict(hn, g.mode, wn, w.mode)) continue;
          const Mode need = NeededDowngrade(hn, g.mode, wn, w.mode);
          ASSERT_TRUE(g.callback_sent.has_value())
              << where << ": cached " << ModeName(g.mode) << " on " << hn << " of "
              << DescribeOwner(who) << " blocks " << ModeName(w.mode) << " on " << wn
              << " and was never called back";
          ASSERT_TRUE(Covers(need, *g.callback_sent))
              << where << ": " << hn << " asked down to " << ModeName(*g.callback_sent) << " but "
              << ModeName(w.mode) << " on " << wn << " needs " << ModeName(need);
        }
      }
    }
  }
}

// Soundness: a callback asks for no more than some waiter it blocks needs.
bool CallbackNeeded(const StateMachine& sm, const Event& e) {
  const OwnerId holder{e.session_id, e.grant.owner};
  for (const auto& [wn, wr] : sm.locks().resources()) {
    for (const WaitEntry& w : wr.waiters()) {
      if (w.who == holder || !Conflict(e.grant.name, e.grant.mode, wn, w.mode)) continue;
      if (Covers(NeededDowngrade(e.grant.name, e.grant.mode, wn, w.mode), e.downgrade_to)) {
        return true;
      }
    }
  }
  return false;
}

// The engine's answer in the reference's vocabulary.
std::string OutcomeName(const CommandResult& got) {
  if (got.granted) return "granted";
  if (got.queued) return "queued";
  switch (got.status.code()) {
    case Code::kLockBusy: return "busy";
    case Code::kDeadlock: return "deadlock";
    case Code::kSessionExpired: return "gone";
    default: return got.status.ToString();
  }
}

uint64_t EnvOr(const char* name, uint64_t dflt) {
  const char* v = std::getenv(name);
  return v ? std::strtoull(v, nullptr, 10) : dflt;
}

void RunSeed(uint64_t seed, int steps) {
  const std::vector<std::string> names = {"a", "a.b", "a.b.c", "a.d", "e", "e.f"};
  const std::vector<std::string> owners = {"", "t1"};
  std::mt19937_64 rng(seed);
  StateMachine sm;
  Reference ref;
  // Every newly issued token of a lock exceeds all earlier ones of it.
  std::map<std::string, std::set<uint64_t>> tokens;
  auto saw_token = [&](const std::string& name, uint64_t t) {
    auto& seen = tokens[name];
    if (seen.count(t)) return true;  // an existing grant returned again
    const bool ok = seen.empty() || t > *seen.rbegin();
    seen.insert(t);
    return ok;
  };
  uint64_t index = 0, now = 1'000;
  // Blocking callbacks (issue 4): each names a current cacheable grant that
  // really blocks a waiter, asks for a mode it covers and the waiter can
  // live with, and is never repeated for the same (grant, downgrade_to).
  std::set<std::tuple<std::string, uint64_t, Mode>> callbacks_seen;
  auto check_callback = [&](const Event& e) {
    const HeldGrant* g = sm.locks().FindGrant(OwnerId{e.session_id, e.grant.owner}, e.grant.name);
    ASSERT_NE(g, nullptr) << "seed " << seed << " callback for a grant not held";
    ASSERT_TRUE(g->cacheable) << "seed " << seed;
    ASSERT_EQ(g->fencing_token, e.grant.fencing_token) << "seed " << seed;
    ASSERT_TRUE(Covers(e.grant.mode, e.downgrade_to)) << "seed " << seed;
    ASSERT_TRUE(Compatible(e.downgrade_to, e.wanted)) << "seed " << seed;
    ASSERT_FALSE(Compatible(e.grant.mode, e.wanted)) << "seed " << seed;
    ASSERT_TRUE(CallbackNeeded(sm, e)) << "seed " << seed << " callback for " << e.grant.name
                                       << " to " << ModeName(e.downgrade_to) << " blocks nobody";
    ASSERT_TRUE(callbacks_seen.emplace(e.grant.name, e.grant.fencing_token, e.downgrade_to).second)
        << "seed " << seed << " callback repeated for " << e.grant.name << " token "
        << e.grant.fencing_token << " to " << ModeName(e.downgrade_to) << " held "
        << ModeName(e.grant.mode) << " wanted " << ModeName(e.wanted) << " by "
        << DescribeOwner(OwnerId{e.session_id, e.grant.owner});
  };
  auto check_tokens = [&](const std::vector<Event>& events) {
    for (const Event& e : events) {
      if (e.kind == Event::Kind::kCallback) check_callback(e);
      if (e.kind != Event::Kind::kGranted) continue;
      ASSERT_TRUE(saw_token(e.grant.name, e.grant.fencing_token)) << "seed " << seed;
    }
  };
  for (int step = 0; step < steps; ++step) {
    const std::string where = "seed " + std::to_string(seed) + " step " + std::to_string(step);
    now += rng() % 10;
    EntryBuilder b(now);
    const int op = static_cast<int>(rng() % 20);
    const std::string name = names[rng() % names.size()];
    std::vector<uint64_t> live(ref.sessions.begin(), ref.sessions.end());
    const uint64_t sid =
        live.empty() || rng() % 20 == 0 ? 1 + rng() % 40 : live[rng() % live.size()];
    const OwnerId who{sid, owners[rng() % owners.size()]};
    const Mode mode = static_cast<Mode>(rng() % kModeCount);
    if (op == 0 || ref.sessions.size() < 3) {
      auto r = sm.Apply(++index, b.Open(5'000).entry());
      ref.sessions.insert(r.results[0].session_id);
    } else if (op <= 9) {
      const bool try_only = rng() % 5 == 0;
      const bool reentrant = rng() % 3 == 0;
      auto e = b.entry();
      auto* c = e.add_commands()->mutable_acquire();
      c->set_session_id(who.session);
      c->set_owner(who.owner);
      c->set_name(name);
      c->set_mode(ModeToLog(mode));
      c->set_try_only(try_only);
      c->set_reentrant(reentrant);
      // Cached grants must not change any decision (no rng draw: the
      // sequences of the existing seeds stay the same).
      c->set_cacheable((step + seed) % 3 == 0);
      auto r = sm.Apply(++index, e);
      const std::string want = ref.Acquire(who, name, mode, try_only, reentrant);
      const CommandResult& got = r.results[0];
      const std::string have = OutcomeName(got);
      ASSERT_EQ(have, want) << where << " acquire " << DescribeOwner(who) << " " << name << " "
                            << ModeName(mode);
      if (got.granted) {
        ASSERT_TRUE(saw_token(name, got.grant.fencing_token)) << where;
      }
      check_tokens(r.events);
      if (::testing::Test::HasFatalFailure()) return;
    } else if (op <= 14) {
      const bool all = rng() % 4 == 0;
      auto e = b.entry();
      auto* c = e.add_commands()->mutable_release();
      c->set_session_id(who.session);
      c->set_owner(who.owner);
      c->set_name(name);
      c->set_all(all);
      auto r = sm.Apply(++index, e);
      ASSERT_EQ(r.results[0].status.ok(), ref.Release(who, name, all)) << where;
      check_tokens(r.events);
    } else if (op == 19 && rng() % 2 == 0) {
      const bool try_only = rng() % 4 == 0;
      std::vector<std::pair<std::string, Mode>> ps;
      const size_t k = 2 + rng() % 2;
      for (size_t i = 0; i < k; ++i) {
        ps.emplace_back(names[rng() % names.size()], static_cast<Mode>(rng() % kModeCount));
      }
      auto e = b.entry();
      auto* c = e.add_commands()->mutable_acquire_many();
      c->set_session_id(who.session);
      c->set_owner(who.owner);
      c->set_try_only(try_only);
      for (const auto& [n, m] : ps) {
        auto* part = c->add_parts();
        part->set_name(n);
        part->set_mode(ModeToLog(m));
      }
      auto r = sm.Apply(++index, e);
      const std::string want = ref.AcquireMany(who, ps, try_only);
      const CommandResult& got = r.results[0];
      const std::string have = OutcomeName(got);
      ASSERT_EQ(have, want) << where << " acquire-many " << DescribeOwner(who);
      if (got.granted) {
        for (const auto& [n, m] : ps) {
          ASSERT_TRUE(saw_token(n, sm.locks().FindGrant(who, n)->fencing_token)) << where;
        }
      }
      check_tokens(r.events);
    } else if (op == 15) {
      auto e = b.entry();
      auto* c = e.add_commands()->mutable_downgrade();
      c->set_session_id(who.session);
      c->set_owner(who.owner);
      c->set_name(name);
      c->set_mode(ModeToLog(mode));
      auto r = sm.Apply(++index, e);
      ASSERT_EQ(r.results[0].status.ok(), ref.Downgrade(who, name, mode)) << where;
      check_tokens(r.events);
    } else if (op <= 17) {
      auto r = sm.Apply(++index, b.Cancel(who.session, who.owner, name).entry());
      ref.Cancel(who, name);
      check_tokens(r.events);
    } else {
      auto r = sm.Apply(++index, (rng() % 2 ? b.Close(sid) : b.Expire(sid)).entry());
      ref.End(sid);
      check_tokens(r.events);
    }
    Compare(sm, ref, where);
    if (::testing::Test::HasFatalFailure()) return;
    CheckCallbacksComplete(sm, where);
    if (::testing::Test::HasFatalFailure()) return;
  }
  StateMachine copy;
  ASSERT_TRUE(copy.Restore(sm.Snapshot()).ok()) << "seed " << seed;
  ASSERT_EQ(copy.Digest(), sm.Digest()) << "seed " << seed;
}

TEST(StateMachineModelTest, RandomOperationsMatchReferenceModel) {
  const uint64_t only = EnvOr("LATCHKEY_MODEL_SEED", 0);
  const uint64_t seeds = EnvOr("LATCHKEY_MODEL_SEEDS", 150);
  const int steps = static_cast<int>(EnvOr("LATCHKEY_MODEL_STEPS", 600));
  for (uint64_t seed = only ? only : 1; seed <= (only ? only : seeds); ++seed) {
    RunSeed(seed, steps);
    if (::testing::Test::HasFatalFailure()) {
      ADD_FAILURE() << "replay with LATCHKEY_MODEL_SEED=" << seed;
      return;
    }
  }
}

}  // namespace
}  // namespace latchkey::core
