// Lock modes of latchkey locks (the VMS/Linux DLM set). Compatibility:
//
//        NL CR CW PR PW EX
//    NL   Y  Y  Y  Y  Y  Y
//    CR   Y  Y  Y  Y  Y  .      CR = intent shared (IS)
//    CW   Y  Y  Y  .  .  .      CW = intent exclusive (IX)
//    PR   Y  Y  .  Y  .  .      PR = shared (S)
//    PW   Y  Y  .  .  .  .      PW = shared + intent exclusive (SIX)
//    EX   Y  .  .  .  .  .      EX = exclusive (X)
//
// A lock on "a.b.c" also holds the matching intention mode on "a.b" and "a".
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace latchkey {

enum class LockMode : uint8_t { kNL = 0, kCR = 1, kCW = 2, kPR = 3, kPW = 4, kEX = 5 };

inline constexpr LockMode kShared = LockMode::kPR;
inline constexpr LockMode kExclusive = LockMode::kEX;

std::string_view LockModeName(LockMode mode);
// NL CR CW PR PW EX, or IS IX S SIX X; case-insensitive.
std::optional<LockMode> ParseLockMode(std::string_view text);

}  // namespace latchkey
