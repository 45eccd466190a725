// Lock engine scaling (issue 3): acquire+release cost on a table that already
// holds N locks, N = 1k .. 1M, and the memory one held lock costs.
//
//   ./build-rel/bench/engine_bench                      # the curve
//   ./build-rel/bench/engine_bench --memory 1000000     # bytes per held lock
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

#include "core/block_pool.h"
#include "core/state_machine.h"

namespace latchkey::core {
namespace {

// 16-byte lock names, as in the Redis comparison of the issue.
std::string Name(uint64_t i) {
  std::string digits = std::to_string(i);
  return "lk." + std::string(13 - std::min<size_t>(13, digits.size()), '0') + digits;
}

struct Loaded {
  StateMachine sm;
  uint64_t sid = 0;
  uint64_t index = 0;
};

// One session holding n locks, acquired in entries of 1024 commands.
void Load(Loaded* l, uint64_t n) {
  auto open = MakeEntry(1);
  open.add_commands()->mutable_open_session()->set_ttl_ms(10'000);
  l->sid = l->sm.Apply(++l->index, open).results[0].session_id;
  for (uint64_t i = 0; i < n;) {
    auto e = MakeEntry(2);
    for (int k = 0; k < 1024 && i < n; ++k, ++i) {
      auto* a = e.add_commands()->mutable_acquire();
      a->set_session_id(l->sid);
      a->set_name(Name(i));
    }
    l->sm.Apply(++l->index, e);
  }
}

void BM_AcquireReleaseWithNHeld(benchmark::State& state) {
  Loaded l;
  const uint64_t n = static_cast<uint64_t>(state.range(0));
  Load(&l, n);
  auto acq = MakeEntry(3), rel = MakeEntry(3);
  auto* a = acq.add_commands()->mutable_acquire();
  a->set_session_id(l.sid);
  a->set_name("bench.probe.lock");
  auto* r = rel.add_commands()->mutable_release();
  r->set_session_id(l.sid);
  r->set_name("bench.probe.lock");
  for (auto _ : state) {
    benchmark::DoNotOptimize(l.sm.Apply(++l.index, acq));
    benchmark::DoNotOptimize(l.sm.Apply(++l.index, rel));
  }
  state.counters["held"] = static_cast<double>(l.sm.locks_held());
}
BENCHMARK(BM_AcquireReleaseWithNHeld)->Arg(1'000)->Arg(10'000)->Arg(100'000)->Arg(1'000'000);

void BM_ContendedHandoff(benchmark::State& state) {
  // FIFO handoff of one EX lock among `waiters` sessions: each iteration
  // releases the head and re-queues it at the tail.
  StateMachine sm;
  uint64_t index = 0;
  const int waiters = static_cast<int>(state.range(0));
  std::vector<uint64_t> sids;
  for (int i = 0; i < waiters; ++i) {
    auto open = MakeEntry(1);
    open.add_commands()->mutable_open_session()->set_ttl_ms(10'000);
    sids.push_back(sm.Apply(++index, open).results[0].session_id);
    auto e = MakeEntry(1);
    auto* a = e.add_commands()->mutable_acquire();
    a->set_session_id(sids.back());
    a->set_name("hot");
    sm.Apply(++index, e);
  }
  size_t head = 0;
  for (auto _ : state) {
    auto e = MakeEntry(2);
    auto* r = e.add_commands()->mutable_release();
    r->set_session_id(sids[head]);
    r->set_name("hot");
    auto* a = e.add_commands()->mutable_acquire();
    a->set_session_id(sids[head]);
    a->set_name("hot");
    benchmark::DoNotOptimize(sm.Apply(++index, e));
    head = (head + 1) % sids.size();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ContendedHandoff)->Arg(8)->Arg(32);

// malloc's bytes in use plus the lock table's slabs (core/block_pool.h),
// which are mapped outside malloc.
size_t HeapInUse() {
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd + BlockPool::MappedBytesInProcess();
}

}  // namespace
}  // namespace latchkey::core

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "--memory") == 0) {
    const uint64_t n = std::strtoull(argv[2], nullptr, 10);
    const size_t before = latchkey::core::HeapInUse();
    auto* l = new latchkey::core::Loaded();
    latchkey::core::Load(l, n);
    const size_t after = latchkey::core::HeapInUse();
    std::printf("held locks: %zu\nheap bytes: %zu\nbytes per held lock: %.1f\n", l->sm.locks_held(),
                after - before, static_cast<double>(after - before) / static_cast<double>(n));
    return 0;
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
