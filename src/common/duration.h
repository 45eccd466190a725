// Parsing and printing of human durations: "250ms", "10s", "5m", "1h", "1m30s".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace latchkey {

// Accepts one or more <number><unit> groups, unit in ms|s|m|h; a bare number
// means seconds. Returns milliseconds.
Result<uint64_t> ParseDurationMs(std::string_view text);

// "850ms", "12.3s", "4m05s", "2h10m".
std::string FormatDurationMs(uint64_t ms);

}  // namespace latchkey
