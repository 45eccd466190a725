// libFuzzer target: arbitrary bytes as a snapshot. Restore must either refuse
// (leaving the machine as it was) or produce a machine whose own snapshot
// restores identically.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "core/state_machine.h"

namespace {
void Require(bool cond) {
  if (!cond) std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  latchkey::core::StateMachine sm;
  const uint64_t empty = sm.Digest();
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  if (!sm.Restore(bytes).ok()) {
    Require(sm.Digest() == empty);
    return 0;
  }
  latchkey::core::StateMachine copy;
  Require(copy.Restore(sm.Snapshot()).ok());
  Require(copy.Digest() == sm.Digest());
  return 0;
}
