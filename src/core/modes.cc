#include "core/modes.h"

#include <cctype>
#include <string>

namespace latchkey::core {

std::string_view ModeName(Mode m) {
  switch (m) {
    case Mode::kNL: return "NL";
    case Mode::kCR: return "CR";
    case Mode::kCW: return "CW";
    case Mode::kPR: return "PR";
    case Mode::kPW: return "PW";
    case Mode::kEX: return "EX";
  }
  return "?";
}

std::optional<Mode> ParseMode(std::string_view text) {
  std::string up;
  for (char c : text) up += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (up == "NL") return Mode::kNL;
  if (up == "CR" || up == "IS") return Mode::kCR;
  if (up == "CW" || up == "IX") return Mode::kCW;
  if (up == "PR" || up == "S") return Mode::kPR;
  if (up == "PW" || up == "SIX") return Mode::kPW;
  if (up == "EX" || up == "X") return Mode::kEX;
  return std::nullopt;
}

}  // namespace latchkey::core
