#include "latchkey/lock_mode.h"

#include "core/modes.h"

namespace latchkey {

// The client's LockMode and the core's Mode share their numbering.
static_assert(static_cast<int>(LockMode::kEX) == static_cast<int>(core::Mode::kEX));
static_assert(static_cast<int>(LockMode::kCW) == static_cast<int>(core::Mode::kCW));

std::string_view LockModeName(LockMode mode) {
  return core::ModeName(static_cast<core::Mode>(mode));
}

std::optional<LockMode> ParseLockMode(std::string_view text) {
  auto m = core::ParseMode(text);
  if (!m) return std::nullopt;
  return static_cast<LockMode>(*m);
}

}  // namespace latchkey
