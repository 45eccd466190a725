#include "core/names.h"

#include <string>

namespace latchkey::core {
namespace {

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || c == ':' || c == '/' || c == '@' || c == '+' || c == '=';
}

Status ValidatePrintable(std::string_view what, std::string_view s, size_t max) {
  if (s.size() > max) {
    return InvalidArgument(std::string(what) + " is " + std::to_string(s.size()) +
                           " bytes; the limit is " + std::to_string(max));
  }
  for (char c : s) {
    if (c < 0x20 || c > 0x7e) {
      return InvalidArgument(std::string(what) + " contains a non-printable or non-ASCII byte");
    }
  }
  return Status::Ok();
}

}  // namespace

Status ValidateLockName(std::string_view name) {
  if (name.empty()) return InvalidArgument("lock name is empty");
  if (name.size() > kMaxLockNameBytes) {
    return InvalidArgument("lock name is " + std::to_string(name.size()) + " bytes; the limit is " +
                           std::to_string(kMaxLockNameBytes));
  }
  size_t segments = 1;
  size_t seg_len = 0;
  for (char c : name) {
    if (c == '.') {
      if (seg_len == 0) break;
      ++segments;
      seg_len = 0;
      continue;
    }
    if (!IsNameChar(c)) {
      return InvalidArgument("lock name '" + std::string(name) + "' contains '" +
                             (c >= 0x20 && c < 0x7f ? std::string(1, c) : std::string("\\x..")) +
                             "'; use letters, digits and _-:/@+= in dot-separated segments");
    }
    ++seg_len;
  }
  if (seg_len == 0) {
    return InvalidArgument("lock name '" + std::string(name) +
                           "' has an empty segment; write segments like 'a.b.c'");
  }
  if (segments > kMaxNameSegments) {
    return InvalidArgument("lock name has " + std::to_string(segments) +
                           " segments; the limit is " + std::to_string(kMaxNameSegments));
  }
  return Status::Ok();
}

Status ValidateOwner(std::string_view owner) {
  return ValidatePrintable("owner id", owner, kMaxOwnerBytes);
}

Status ValidateClientName(std::string_view name) {
  return ValidatePrintable("client name", name, kMaxClientNameBytes);
}

}  // namespace latchkey::core
