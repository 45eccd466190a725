// Deterministic simulation (CTest label sim). Environment:
//   LATCHKEY_SIM_SEED=N      replay one seed, tracing every op and fault
//   LATCHKEY_SIM_SEEDS=N     how many seeds (default 2000, split across shards)
//   LATCHKEY_SIM_FIRST_SEED  first seed of the range (default 1)
//   LATCHKEY_SIM_STEPS=N     workload steps per seed (default 150)
//   LATCHKEY_SIM_SHARD=k/n   run seeds with (seed % n == k) only (CTest splits the range)
//   LATCHKEY_SIM_NO_REPLY_GUARD=1  run without the adapter's AppendReplyGuard
//                            (libraft 0.15 as is: some runs leave a replica behind)
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/lock_table.h"
#include "sim/sim_checkers.h"
#include "sim/sim_run.h"

namespace latchkey::sim {
namespace {

uint64_t EnvU64(const char* name, uint64_t dflt) {
  const char* v = std::getenv(name);
  return v == nullptr || *v == '\0' ? dflt : std::strtoull(v, nullptr, 10);
}

bool ReplyGuard() {
  const char* v = std::getenv("LATCHKEY_SIM_NO_REPLY_GUARD");
  return v == nullptr || *v != '1';
}

int Steps() {
  return static_cast<int>(EnvU64("LATCHKEY_SIM_STEPS", 150));
}

std::string ReplayHint(uint64_t seed) {
  return "replay: LATCHKEY_SIM_SEED=" + std::to_string(seed) +
         (ReplyGuard() ? "" : " LATCHKEY_SIM_NO_REPLY_GUARD=1") +
         (Steps() != 150 ? " LATCHKEY_SIM_STEPS=" + std::to_string(Steps()) : "") +
         " ./tests/sim/sim_test --gtest_filter=Sim.Seeds";
}

TEST(Sim, Seeds) {
  if (const char* one = std::getenv("LATCHKEY_SIM_SEED"); one != nullptr && *one != '\0') {
    SimConfig cfg;
    cfg.seed = std::strtoull(one, nullptr, 10);
    cfg.steps = Steps();
    cfg.reply_guard = ReplyGuard();
    cfg.verbose = true;
    SimReport r = RunSeed(cfg);
    std::fprintf(stderr, "seed %llu: %s\n", static_cast<unsigned long long>(cfg.seed),
                 r.Summary().c_str());
    EXPECT_TRUE(r.ok) << r.failure;
    return;
  }
  const uint64_t first = EnvU64("LATCHKEY_SIM_FIRST_SEED", 1);
  const uint64_t count = EnvU64("LATCHKEY_SIM_SEEDS", 2000);
  uint64_t shard = 0, shards = 1;
  if (const char* s = std::getenv("LATCHKEY_SIM_SHARD"); s != nullptr) {
    std::sscanf(s, "%lu/%lu", &shard, &shards);
    if (shards == 0) shards = 1;
  }
  const auto start = std::chrono::steady_clock::now();
  uint64_t ran = 0, failed = 0, lagging = 0, acked = 0, faults = 0, leader_changes = 0, entries = 0;
  for (uint64_t seed = first; seed < first + count; ++seed) {
    if (seed % shards != shard) continue;
    SimConfig cfg;
    cfg.seed = seed;
    cfg.steps = Steps();
    cfg.reply_guard = ReplyGuard();
    SimReport r = RunSeed(cfg);
    ++ran;
    acked += r.acked;
    faults += r.faults;
    leader_changes += r.leader_changes;
    entries += r.final_index;
    lagging += r.lagging ? 1 : 0;
    if (r.lagging)
      std::printf("seed %llu: lagging replica\n", static_cast<unsigned long long>(seed));
    if (!r.ok) {
      ++failed;
      ADD_FAILURE() << "seed " << seed << ": " << r.Summary() << "\n  " << ReplayHint(seed);
      if (failed >= 5) break;
    }
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf(
      "sim: %llu seeds (shard %llu/%llu) in %.1f s: %llu failed; %llu acked ops, "
      "%llu log entries, %llu faults, %llu leader changes, %llu runs with a lagging replica\n",
      static_cast<unsigned long long>(ran), static_cast<unsigned long long>(shard),
      static_cast<unsigned long long>(shards), secs, static_cast<unsigned long long>(failed),
      static_cast<unsigned long long>(acked), static_cast<unsigned long long>(entries),
      static_cast<unsigned long long>(faults), static_cast<unsigned long long>(leader_changes),
      static_cast<unsigned long long>(lagging));
}

TEST(Sim, SameSeedSameRun) {
  SimConfig cfg;
  cfg.seed = 42;
  cfg.steps = Steps();
  SimReport a = RunSeed(cfg);
  SimReport b = RunSeed(cfg);
  EXPECT_EQ(a.Summary(), b.Summary());
  EXPECT_GT(a.acked, 0u);
}

// ---- The checkers catch planted bugs ----------------------------------------

TEST(SimPlanted, CorruptReplicaIsCaught) {
  int caught = 0;
  for (uint64_t seed = 1; seed <= 10; ++seed) {
    SimConfig cfg;
    cfg.seed = seed;
    cfg.bug = PlantedBug::kCorruptReplica;
    SimReport r = RunSeed(cfg);
    if (!r.ok) {
      ++caught;
      EXPECT_NE(r.failure.find("replica 1"), std::string::npos) << r.failure;
    }
  }
  EXPECT_GE(caught, 8);
}

TEST(SimPlanted, AckBeforeCommitIsCaught) {
  int caught = 0;
  for (uint64_t seed = 1; seed <= 60 && caught == 0; ++seed) {
    SimConfig cfg;
    cfg.seed = seed;
    cfg.bug = PlantedBug::kAckBeforeCommit;
    SimReport r = RunSeed(cfg);
    if (!r.ok) {
      ++caught;
      EXPECT_NE(r.failure.find("acknowledged entry lost"), std::string::npos) << r.failure;
    }
  }
  EXPECT_GE(caught, 1);
}

core::HeldGrant Grant(core::Mode m, uint64_t token) {
  core::HeldGrant g;
  g.mode = m;
  g.fencing_token = token;
  return g;
}

TEST(SimCheckers, MutualExclusionCatchesConflictingGrants) {
  core::LockTable ok;
  ok.RestoreGrant("a", {1, "w"}, Grant(core::Mode::kPR, 1));
  ok.RestoreGrant("a", {2, "w"}, Grant(core::Mode::kCR, 2));
  ok.RestoreGrant("a.b", {3, "w"}, Grant(core::Mode::kCR, 3));
  EXPECT_EQ(CheckMutualExclusion(ok), "");

  core::LockTable same;  // a skipped conflict check: two EX holders
  same.RestoreGrant("a", {1, "w"}, Grant(core::Mode::kEX, 1));
  same.RestoreGrant("a", {2, "w"}, Grant(core::Mode::kEX, 2));
  EXPECT_NE(CheckMutualExclusion(same), "");

  core::LockTable tree;  // PR on a parent vs EX (implied CW) on a child
  tree.RestoreGrant("a", {1, "w"}, Grant(core::Mode::kPR, 1));
  tree.RestoreGrant("a.b.c", {2, "w"}, Grant(core::Mode::kEX, 2));
  EXPECT_NE(CheckMutualExclusion(tree), "");
}

TEST(SimCheckers, FencingCatchesATokenGoingBack) {
  FencingTracker t;
  core::LockTable first;
  first.RestoreGrant("a", {1, "w"}, Grant(core::Mode::kEX, 10));
  EXPECT_EQ(t.Observe(first), "");
  core::LockTable later;  // a new holder with an older token
  later.RestoreGrant("a", {2, "w"}, Grant(core::Mode::kEX, 7));
  EXPECT_NE(t.Observe(later), "");
}

}  // namespace
}  // namespace latchkey::sim
