// libFuzzer target: arbitrary bytes as a sequence of log entries applied to
// the core state machine. Checks that no input crashes it, that counters stay
// consistent, and that a snapshot of whatever state results restores to an
// identical machine.
//
// Input: records of [u16 length][bytes]; each record is one entry.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "core/state_machine.h"

namespace {
void Require(bool cond, const char* what) {
  if (!cond) {
    std::fprintf(stderr, "log_entry_fuzz: check failed: %s\n", what);
    std::abort();
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  latchkey::core::StateMachine sm;
  uint64_t index = 0;
  size_t off = 0;
  while (off + 2 <= size) {
    size_t len = static_cast<size_t>(data[off]) | (static_cast<size_t>(data[off + 1]) << 8);
    off += 2;
    len = std::min(len, size - off);
    std::string_view entry(reinterpret_cast<const char*>(data + off), len);
    off += len;
    auto r = sm.ApplyBytes(++index, entry);
    if (r.ok()) {
      Require(r->results.size() <= len,
              "one result per command");  // one result per command, never more
    }
  }
  Require(sm.locks_held() <= sm.sessions().size() * 1'000'000, "locks bounded by sessions");
  latchkey::core::StateMachine copy;
  Require(copy.Restore(sm.Snapshot()).ok(), "snapshot restores");
  Require(copy.Digest() == sm.Digest(), "restored digest matches");
  return 0;
}
