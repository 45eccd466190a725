// Minimal leveled logging to stderr. Thread-safe (one fprintf per line).
#pragma once

#include <cstdarg>

namespace latchkey {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kOff = 4 };

void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
void Logf(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace latchkey

#define LK_LOG_DEBUG(...) ::latchkey::Logf(::latchkey::LogLevel::kDebug, __VA_ARGS__)
#define LK_LOG_INFO(...) ::latchkey::Logf(::latchkey::LogLevel::kInfo, __VA_ARGS__)
#define LK_LOG_WARN(...) ::latchkey::Logf(::latchkey::LogLevel::kWarn, __VA_ARGS__)
#define LK_LOG_ERROR(...) ::latchkey::Logf(::latchkey::LogLevel::kError, __VA_ARGS__)
