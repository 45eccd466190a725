#include "common/status.h"

#include <cstdio>

namespace latchkey {

std::string_view CodeName(Code code) {
  switch (code) {
    case Code::kOk: return "OK";
    case Code::kInvalidArgument: return "INVALID_ARGUMENT";
    case Code::kNotFound: return "NOT_FOUND";
    case Code::kSessionExpired: return "SESSION_EXPIRED";
    case Code::kLockBusy: return "LOCK_BUSY";
    case Code::kTimeout: return "TIMEOUT";
    case Code::kNotHeld: return "NOT_HELD";
    case Code::kCancelled: return "CANCELLED";
    case Code::kProtocolError: return "PROTOCOL_ERROR";
    case Code::kUnsupportedVersion: return "UNSUPPORTED_VERSION";
    case Code::kFrameTooLarge: return "FRAME_TOO_LARGE";
    case Code::kUnavailable: return "UNAVAILABLE";
    case Code::kMaybeApplied: return "MAYBE_APPLIED";
    case Code::kResourceExhausted: return "RESOURCE_EXHAUSTED";
    case Code::kNotLeader: return "NOT_LEADER";
    case Code::kInternal: return "INTERNAL";
    case Code::kAlreadyExists: return "ALREADY_EXISTS";
    case Code::kFailedPrecondition: return "FAILED_PRECONDITION";
    case Code::kDeadlock: return "DEADLOCK";
    case Code::kCompacted: return "COMPACTED";
    case Code::kRecordChanged: return "RECORD_CHANGED";
    case Code::kUnauthenticated: return "UNAUTHENTICATED";
    case Code::kValueTooLarge: return "VALUE_TOO_LARGE";
  }
  return "UNKNOWN";
}

bool IsKnownCode(uint32_t code) {
  return code <= 255 && CodeName(static_cast<Code>(code)) != "UNKNOWN";
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string s(CodeName(code_));
  if (!message_.empty()) {
    s += ": ";
    s += message_;
  }
  return s;
}

namespace internal {
void CheckFailed(const char* cond, const char* file, int line) {
  std::fprintf(stderr, "latchkey: invariant broken: %s at %s:%d\n", cond, file, line);
  std::abort();
}
}  // namespace internal

}  // namespace latchkey
