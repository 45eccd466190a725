// Lock modes of the VMS/Linux distributed lock manager, strongest last.
//
//   NL null, CR concurrent read (= IS), CW concurrent write (= IX),
//   PR protected read (= S), PW protected write (= SIX), EX exclusive (= X).
//
// Compatibility (Y = may be granted together):
//
//        NL CR CW PR PW EX
//    NL   Y  Y  Y  Y  Y  Y
//    CR   Y  Y  Y  Y  Y  .
//    CW   Y  Y  Y  .  .  .
//    PR   Y  Y  .  Y  .  .
//    PW   Y  Y  .  .  .  .
//    EX   Y  .  .  .  .  .
//
// A lock on a.b.c implicitly holds the intention mode on a.b and a: CR (IS)
// for CR/PR, CW (IX) for CW/PW/EX (Gray et al., "Granularity of Locks and
// Degrees of Consistency in a Shared Data Base", 1976).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace latchkey::core {

enum class Mode : uint8_t { kNL = 0, kCR = 1, kCW = 2, kPR = 3, kPW = 4, kEX = 5 };
inline constexpr int kModeCount = 6;

constexpr bool Compatible(Mode a, Mode b) {
  constexpr bool kMatrix[kModeCount][kModeCount] = {
      {true, true, true, true, true, true},      // NL
      {true, true, true, true, true, false},     // CR
      {true, true, true, false, false, false},   // CW
      {true, true, false, true, false, false},   // PR
      {true, true, false, false, false, false},  // PW
      {true, false, false, false, false, false}  // EX
  };
  return kMatrix[static_cast<int>(a)][static_cast<int>(b)];
}

// The intention mode a lock in `m` implies on every ancestor name.
constexpr Mode IntentionFor(Mode m) {
  switch (m) {
    case Mode::kNL: return Mode::kNL;
    case Mode::kCR:
    case Mode::kPR: return Mode::kCR;
    default: return Mode::kCW;
  }
}

// True when holding `held` excludes everything `wanted` excludes, so a
// request for `wanted` by the same owner needs no new grant.
constexpr bool Covers(Mode held, Mode wanted) {
  for (int m = 0; m < kModeCount; ++m) {
    if (!Compatible(wanted, static_cast<Mode>(m)) && Compatible(held, static_cast<Mode>(m))) {
      return false;
    }
  }
  return true;
}

// The weakest mode covering both (e.g. CW + PR = PW).
constexpr Mode Join(Mode a, Mode b) {
  for (int m = 0; m < kModeCount; ++m) {
    if (Covers(static_cast<Mode>(m), a) && Covers(static_cast<Mode>(m), b)) {
      return static_cast<Mode>(m);
    }
  }
  return Mode::kEX;
}

// Modes that let the holder change the guarded resource: a grant that gains
// one gets a new fencing token.
constexpr bool IsWriteMode(Mode m) {
  return m == Mode::kCW || m == Mode::kPW || m == Mode::kEX;
}

std::string_view ModeName(Mode m);
// Accepts NL CR CW PR PW EX and IS IX S SIX X (case-insensitive).
std::optional<Mode> ParseMode(std::string_view text);

}  // namespace latchkey::core
