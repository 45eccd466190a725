#include "common/duration.h"

#include <cstdio>
#include <limits>

namespace latchkey {

Result<uint64_t> ParseDurationMs(std::string_view text) {
  if (text.empty()) return InvalidArgument("empty duration; use e.g. 500ms, 10s, 5m, 1h");
  uint64_t total = 0;
  size_t i = 0;
  auto bad = [&] {
    return InvalidArgument("cannot parse duration '" + std::string(text) +
                           "'; use e.g. 500ms, 10s, 5m, 1h30m");
  };
  while (i < text.size()) {
    uint64_t n = 0;
    size_t digits = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      if (n > std::numeric_limits<uint64_t>::max() / 10 - 10) return bad();
      n = n * 10 + static_cast<uint64_t>(text[i] - '0');
      ++i;
      ++digits;
    }
    if (digits == 0) return bad();
    uint64_t mult = 1000;  // bare number = seconds
    if (i < text.size()) {
      if (text.substr(i, 2) == "ms") {
        mult = 1;
        i += 2;
      } else if (text[i] == 's') {
        mult = 1000;
        i += 1;
      } else if (text[i] == 'm') {
        mult = 60'000;
        i += 1;
      } else if (text[i] == 'h') {
        mult = 3'600'000;
        i += 1;
      } else {
        return bad();
      }
    } else if (total != 0) {
      return bad();  // "1m30" is ambiguous
    }
    if (n > std::numeric_limits<uint64_t>::max() / mult) return bad();
    total += n * mult;
  }
  return total;
}

std::string FormatDurationMs(uint64_t ms) {
  char buf[64];
  if (ms < 1000) {
    std::snprintf(buf, sizeof buf, "%llums", static_cast<unsigned long long>(ms));
  } else if (ms < 60'000) {
    std::snprintf(buf, sizeof buf, "%.1fs", static_cast<double>(ms) / 1000.0);
  } else if (ms < 3'600'000) {
    std::snprintf(buf, sizeof buf, "%llum%02llus", static_cast<unsigned long long>(ms / 60'000),
                  static_cast<unsigned long long>((ms / 1000) % 60));
  } else {
    std::snprintf(buf, sizeof buf, "%lluh%02llum", static_cast<unsigned long long>(ms / 3'600'000),
                  static_cast<unsigned long long>((ms / 60'000) % 60));
  }
  return buf;
}

}  // namespace latchkey
