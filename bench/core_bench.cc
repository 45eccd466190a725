// Micro-benchmarks of the pure state machine: how much of a request's cost is
// the core itself (no I/O, no raft).
#include <benchmark/benchmark.h>

#include "core/state_machine.h"

namespace latchkey::core {
namespace {

// One entry with `batch` acquire+release pairs on distinct locks.
void BM_ApplyAcquireRelease(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  StateMachine sm;
  auto open = MakeEntry(1);
  open.add_commands()->mutable_open_session()->set_ttl_ms(10'000);
  uint64_t index = 1;
  const uint64_t sid = sm.Apply(index++, open).results[0].session_id;
  log::v1::LogEntry acq = MakeEntry(2), rel = MakeEntry(2);
  for (int i = 0; i < batch; ++i) {
    auto* a = acq.add_commands()->mutable_acquire();
    a->set_session_id(sid);
    a->set_name("bench.lock." + std::to_string(i));
    auto* r = rel.add_commands()->mutable_release();
    r->set_session_id(sid);
    r->set_name("bench.lock." + std::to_string(i));
  }
  for (auto _ : state) {
    benchmark::DoNotOptimize(sm.Apply(index++, acq));
    benchmark::DoNotOptimize(sm.Apply(index++, rel));
  }
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_ApplyAcquireRelease)->Arg(1)->Arg(64);

void BM_DecodeAndApply(benchmark::State& state) {
  StateMachine sm;
  auto open = MakeEntry(1);
  open.add_commands()->mutable_open_session()->set_ttl_ms(10'000);
  uint64_t index = 1;
  const uint64_t sid = sm.Apply(index++, open).results[0].session_id;
  auto acq = MakeEntry(2), rel = MakeEntry(2);
  auto* a = acq.add_commands()->mutable_acquire();
  a->set_session_id(sid);
  a->set_name("bench.lock");
  auto* r = rel.add_commands()->mutable_release();
  r->set_session_id(sid);
  r->set_name("bench.lock");
  const std::string ab = EncodeEntry(acq), rb = EncodeEntry(rel);
  for (auto _ : state) {
    benchmark::DoNotOptimize(sm.ApplyBytes(index++, ab));
    benchmark::DoNotOptimize(sm.ApplyBytes(index++, rb));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_DecodeAndApply);

}  // namespace
}  // namespace latchkey::core
