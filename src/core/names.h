// Validation of user-supplied names (untrusted input; checked by the server
// before proposing and again by the core when applying).
#pragma once

#include <cstddef>
#include <string_view>

#include "common/status.h"

namespace latchkey::core {

inline constexpr size_t kMaxLockNameBytes = 512;
inline constexpr size_t kMaxNameSegments = 32;
inline constexpr size_t kMaxOwnerBytes = 256;
inline constexpr size_t kMaxClientNameBytes = 256;

// Lock names are hierarchical: segments separated by '.', e.g.
// "build.artifacts". Each segment is 1+ characters from [A-Za-z0-9_-:/@+=];
// at most kMaxNameSegments segments and kMaxLockNameBytes bytes in all.
Status ValidateLockName(std::string_view name);

// Owner ids and client names: printable ASCII (0x20..0x7e), bounded length.
// The owner may be empty (= the session itself).
Status ValidateOwner(std::string_view owner);
Status ValidateClientName(std::string_view name);

}  // namespace latchkey::core
