// Text shared by the lock-related client subcommands (`lock`, `locks`,
// `waits`): how an owner, a holder and a JSON string are written.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "latchkey/client.h"

namespace latchkey::cli {

// "session 7 (release-bot) owner 'worker-2'": the client name when known,
// the owner only when it is not the session itself ("").
std::string DescribeOwner(uint64_t session_id, std::string_view owner,
                          std::string_view client_name);

// "session 3 (bob) in PR for 2.1s" (plus " x2" for a reentrant count).
std::string DescribeHolder(const LockHolderInfo& h, uint64_t server_time_ms);

// `later` - `earlier`, or 0 when the clocks disagree.
inline uint64_t AgeMs(uint64_t now_ms, uint64_t then_ms) {
  return now_ms > then_ms ? now_ms - then_ms : 0;
}

// True if `a` and `b` are the same name or one is an ancestor of the other
// ("a" and "a.b.c"; not "a" and "ab").
bool RelatedNames(std::string_view a, std::string_view b);

// "a.b.c" -> {"a", "a.b"}.
std::vector<std::string> AncestorNames(std::string_view name);

// `text` as a JSON string literal, quotes included.
std::string JsonString(std::string_view text);

}  // namespace latchkey::cli
