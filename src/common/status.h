// Status and Result<T>: expected failures as values (LevelDB style).
//
// Thread-safety: values, freely copyable; no shared state.
#pragma once

#include <cassert>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace latchkey {

// Numeric values match latchkey.v1.ErrorCode on the wire.
enum class Code : uint8_t {
  kOk = 0,
  kInvalidArgument = 1,
  kNotFound = 2,
  kSessionExpired = 3,
  kLockBusy = 4,
  kTimeout = 5,
  kNotHeld = 6,
  kCancelled = 7,
  kProtocolError = 8,
  kUnsupportedVersion = 9,
  kFrameTooLarge = 10,
  kUnavailable = 11,
  kMaybeApplied = 12,
  kResourceExhausted = 13,
  kNotLeader = 14,
  kInternal = 15,
  kAlreadyExists = 16,
  kFailedPrecondition = 17,
  kDeadlock = 18,
  kCompacted = 20,        // the revision asked for was compacted away
  kRecordChanged = 21,    // lock-if-unchanged: the record was written since
  kUnauthenticated = 22,  // the server wants an auth token this client lacks
  kValueTooLarge = 40,    // a lock value block over the limit
};

inline constexpr uint8_t kMaxCode = 22;

std::string_view CodeName(Code code);
// True for every value of Code (the wire carries numbers; unknown ones map
// to INTERNAL).
bool IsKnownCode(uint32_t code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }

  // "LOCK_BUSY: lock 'a' is held by ..."; "OK" for success.
  std::string ToString() const;

  friend bool operator==(const Status& a, const Status& b) {
    return a.code_ == b.code_ && a.message_ == b.message_;
  }

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

// Shorthand constructors, one per code that callers create often.
inline Status InvalidArgument(std::string m) {
  return {Code::kInvalidArgument, std::move(m)};
}
inline Status NotFound(std::string m) {
  return {Code::kNotFound, std::move(m)};
}
inline Status Internal(std::string m) {
  return {Code::kInternal, std::move(m)};
}
inline Status Unavailable(std::string m) {
  return {Code::kUnavailable, std::move(m)};
}

// Result<T>: a T or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT(implicit)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(implicit)
    assert(!std::get<Status>(v_).ok() && "Result built from an OK status");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }

  // REQUIRES: ok()
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  // OK when ok().
  Status status() const { return ok() ? Status() : std::get<Status>(v_); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace latchkey

#define LATCHKEY_RETURN_IF_ERROR(expr) \
  do {                                 \
    ::latchkey::Status _st = (expr);   \
    if (!_st.ok()) return _st;         \
  } while (0)

// Aborts with a message: only for broken invariants, never for bad input.
#define LATCHKEY_CHECK(cond)                                                   \
  do {                                                                         \
    if (!(cond)) ::latchkey::internal::CheckFailed(#cond, __FILE__, __LINE__); \
  } while (0)

namespace latchkey::internal {
[[noreturn]] void CheckFailed(const char* cond, const char* file, int line);
}
