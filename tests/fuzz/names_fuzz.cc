// libFuzzer target: the name validator and the duration parser.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/duration.h"
#include "core/names.h"

namespace {
void Require(bool cond) {
  if (!cond) std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view s(reinterpret_cast<const char*>(data), size);
  latchkey::Status st = latchkey::core::ValidateLockName(s);
  if (st.ok()) {
    Require(!s.empty() && s.size() <= latchkey::core::kMaxLockNameBytes);
    Require(s.front() != '.' && s.back() != '.');
    Require(s.find("..") == std::string_view::npos);
  } else {
    Require(!st.message().empty());
  }
  auto d = latchkey::ParseDurationMs(s);
  if (d.ok()) {
    Require(!s.empty());
    (void)latchkey::FormatDurationMs(*d);
  }
  return 0;
}
