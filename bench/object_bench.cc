// Object store (issue 5) in the pure core: put and get cost with N objects
// already stored (1k .. 1M), and the memory one object costs.
//
//   ./build-rel/bench/object_bench                      # put/get ops/s curve
//   ./build-rel/bench/object_bench --memory 1000000     # bytes per object
//
// Keys are 16 bytes, values 64 bytes. Puts overwrite existing keys, so each
// one also adds a version; the put loop compacts every 4096 puts (as the
// leader's retention would) so history does not grow without bound.
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

#include "core/state_machine.h"

namespace latchkey::core {
namespace {

std::string Key(uint64_t i) {
  std::string digits = std::to_string(i);
  return "ob." + std::string(13 - std::min<size_t>(13, digits.size()), '0') + digits;
}

const std::string kValue(64, 'v');

struct Loaded {
  StateMachine sm;
  uint64_t index = 0;
};

// n objects, written in entries of 1024 puts.
void Load(Loaded* l, uint64_t n) {
  for (uint64_t i = 0; i < n;) {
    auto e = MakeEntry(2);
    for (int k = 0; k < 1024 && i < n; ++k, ++i) {
      auto* p = e.add_commands()->mutable_obj_put();
      p->set_key(Key(i));
      p->set_value(kValue);
    }
    l->sm.Apply(++l->index, e);
  }
}

// xorshift: a cheap deterministic key sequence.
uint64_t Next(uint64_t* s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

void BM_PutWithN(benchmark::State& state) {
  Loaded l;
  const uint64_t n = static_cast<uint64_t>(state.range(0));
  Load(&l, n);
  uint64_t seed = 88172645463325252ull;
  uint64_t puts = 0;
  for (auto _ : state) {
    auto e = MakeEntry(3);
    auto* p = e.add_commands()->mutable_obj_put();
    p->set_key(Key(Next(&seed) % n));
    p->set_value(kValue);
    benchmark::DoNotOptimize(l.sm.Apply(++l.index, e));
    if (++puts % 4096 == 0) {
      auto c = MakeEntry(3);
      c.add_commands()->mutable_obj_compact()->set_revision(l.sm.revision());
      l.sm.Apply(++l.index, c);
    }
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["objects"] = static_cast<double>(l.sm.objects().key_count());
}
BENCHMARK(BM_PutWithN)->Arg(1'000)->Arg(100'000)->Arg(1'000'000)->Unit(benchmark::kMicrosecond);

void BM_GetWithN(benchmark::State& state) {
  Loaded l;
  const uint64_t n = static_cast<uint64_t>(state.range(0));
  Load(&l, n);
  uint64_t seed = 88172645463325252ull;
  for (auto _ : state) {
    auto v = l.sm.objects().Get(Key(Next(&seed) % n), 0, l.sm.revision());
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_GetWithN)->Arg(1'000)->Arg(100'000)->Arg(1'000'000)->Unit(benchmark::kMicrosecond);

size_t HeapInUse() {
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
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
    std::printf(
        "objects: %zu (16-byte keys, 64-byte values)\nheap bytes: %zu\n"
        "bytes per object: %.1f\n",
        l->sm.objects().key_count(), after - before,
        static_cast<double>(after - before) / static_cast<double>(n));
    return 0;
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
