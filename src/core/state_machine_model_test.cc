// Seeded randomized test of the state machine against a trivially correct
// reference model (linear scans over plain vectors). A failing seed replays
// exactly: the seed is printed in the failure message.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <vector>

#include "core/state_machine.h"
#include "core/test_util.h"

namespace latchkey::core {
namespace {

using testing::EntryBuilder;

struct Who {
  uint64_t session;
  std::string owner;
  bool operator==(const Who&) const = default;
};

struct ModelLock {
  std::optional<Who> holder;
  std::vector<Who> queue;
};

class Model {
 public:
  std::vector<uint64_t> sessions;
  std::map<std::string, ModelLock> locks;

  bool Alive(uint64_t s) const {
    return std::find(sessions.begin(), sessions.end(), s) != sessions.end();
  }
  // Returns "granted", "queued", "busy", "gone".
  std::string Acquire(const Who& w, const std::string& name, bool try_only) {
    if (!Alive(w.session)) return "gone";
    ModelLock& l = locks[name];
    if (l.holder == w) return "granted";
    if (!l.holder) {
      l.holder = w;
      return "granted";
    }
    if (std::find(l.queue.begin(), l.queue.end(), w) != l.queue.end()) return "queued";
    if (try_only) return "busy";
    l.queue.push_back(w);
    return "queued";
  }
  bool Release(const Who& w, const std::string& name) {
    if (!Alive(w.session)) return false;
    ModelLock& l = locks[name];
    if (l.holder != w) return false;
    Handoff(l);
    return true;
  }
  void Handoff(ModelLock& l) {
    l.holder.reset();
    if (!l.queue.empty()) {
      l.holder = l.queue.front();
      l.queue.erase(l.queue.begin());
    }
  }
  void End(uint64_t s) {
    sessions.erase(std::remove(sessions.begin(), sessions.end(), s), sessions.end());
    for (auto& [name, l] : locks) {
      l.queue.erase(std::remove_if(l.queue.begin(), l.queue.end(),
                                   [&](const Who& w) { return w.session == s; }),
                    l.queue.end());
    }
    for (auto& [name, l] : locks) {
      if (l.holder && l.holder->session == s) Handoff(l);
    }
  }
};

void CheckSame(const StateMachine& sm, const Model& m, uint64_t seed, int step) {
  size_t held = 0, waiting = 0;
  for (const auto& [name, ml] : m.locks) {
    const Lock* l = sm.FindLock(name);
    if (!ml.holder) {
      ASSERT_TRUE(l == nullptr || !l->holder) << "seed " << seed << " step " << step;
      continue;
    }
    ASSERT_NE(l, nullptr) << "seed " << seed << " step " << step << " lock " << name;
    ASSERT_TRUE(l->holder.has_value());
    EXPECT_EQ(l->holder->session_id, ml.holder->session) << "seed " << seed << " step " << step;
    EXPECT_EQ(l->holder->owner, ml.holder->owner) << "seed " << seed << " step " << step;
    ASSERT_EQ(l->waiters.size(), ml.queue.size()) << "seed " << seed << " step " << step;
    for (size_t i = 0; i < ml.queue.size(); ++i) {
      EXPECT_EQ(l->waiters[i].session_id, ml.queue[i].session) << "seed " << seed;
      EXPECT_EQ(l->waiters[i].owner, ml.queue[i].owner) << "seed " << seed;
    }
    ++held;
    waiting += ml.queue.size();
  }
  EXPECT_EQ(sm.locks_held(), held) << "seed " << seed << " step " << step;
  EXPECT_EQ(sm.waiter_count(), waiting) << "seed " << seed << " step " << step;
  EXPECT_EQ(sm.sessions().size(), m.sessions.size()) << "seed " << seed << " step " << step;
}

TEST(StateMachineModelTest, RandomOperationsMatchReferenceModel) {
  const std::vector<std::string> names = {"a", "b", "c", "a.b"};
  const std::vector<std::string> owners = {"", "t1", "t2"};
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    std::mt19937_64 rng(seed);
    StateMachine sm;
    Model model;
    std::map<std::string, uint64_t> last_token;
    uint64_t index = 0, now = 1'000;
    for (int step = 0; step < 300; ++step) {
      now += rng() % 50;
      EntryBuilder b(now);
      const int op = static_cast<int>(rng() % 10);
      const std::string name = names[rng() % names.size()];
      const std::string owner = owners[rng() % owners.size()];
      // Pick an existing session most of the time, sometimes a dead id.
      uint64_t sid = model.sessions.empty() || rng() % 10 == 0
                         ? 1 + rng() % 64
                         : model.sessions[rng() % model.sessions.size()];
      if (op == 0 || model.sessions.size() < 2) {
        auto r = sm.Apply(++index, b.Open(5'000).entry());
        model.sessions.push_back(r.results[0].session_id);
      } else if (op <= 4) {
        bool try_only = rng() % 3 == 0;
        auto r = sm.Apply(++index, b.Acquire(sid, owner, name, try_only).entry());
        std::string want = model.Acquire({sid, owner}, name, try_only);
        const CommandResult& got = r.results[0];
        std::string have = got.granted                                  ? "granted"
                           : got.queued                                 ? "queued"
                           : got.status.code() == Code::kLockBusy       ? "busy"
                           : got.status.code() == Code::kSessionExpired ? "gone"
                                                                        : got.status.ToString();
        ASSERT_EQ(have, want) << "seed " << seed << " step " << step;
        if (got.granted && got.grant.fencing_token != last_token[name]) {
          ASSERT_GT(got.grant.fencing_token, last_token[name]) << "seed " << seed;
          last_token[name] = got.grant.fencing_token;
        }
      } else if (op <= 7) {
        auto r = sm.Apply(++index, b.Release(sid, owner, name).entry());
        bool want = model.Release({sid, owner}, name);
        ASSERT_EQ(r.results[0].status.ok(), want) << "seed " << seed << " step " << step;
        for (const Event& e : r.events) {
          if (e.kind == Event::Kind::kGranted) {
            ASSERT_GT(e.grant.fencing_token, last_token[e.grant.name]) << "seed " << seed;
            last_token[e.grant.name] = e.grant.fencing_token;
          }
        }
      } else if (op == 8) {
        sm.Apply(++index, b.Cancel(sid, owner, name).entry());
        if (model.Alive(sid)) {
          auto& q = model.locks[name].queue;
          q.erase(std::remove(q.begin(), q.end(), Who{sid, owner}), q.end());
        }
      } else {
        sm.Apply(++index, (rng() % 2 ? b.Close(sid) : b.Expire(sid)).entry());
        model.End(sid);
      }
      CheckSame(sm, model, seed, step);
      if (::testing::Test::HasFailure()) return;
    }
    // A snapshot of the final state restores to an identical machine.
    StateMachine copy;
    ASSERT_TRUE(copy.Restore(sm.Snapshot()).ok()) << "seed " << seed;
    ASSERT_EQ(copy.Digest(), sm.Digest()) << "seed " << seed;
  }
}

}  // namespace
}  // namespace latchkey::core
