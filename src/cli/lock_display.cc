#include "cli/lock_display.h"

#include <cstdio>

#include "common/duration.h"

namespace latchkey::cli {

std::string DescribeOwner(uint64_t session_id, std::string_view owner,
                          std::string_view client_name) {
  std::string s = "session " + std::to_string(session_id);
  if (!client_name.empty()) s += " (" + std::string(client_name) + ")";
  if (!owner.empty()) s += " owner '" + std::string(owner) + "'";
  return s;
}

std::string DescribeHolder(const LockHolderInfo& h, uint64_t server_time_ms) {
  std::string s = DescribeOwner(h.session_id, h.owner, h.client_name) + " in " +
                  std::string(LockModeName(h.mode));
  if (h.count > 1) s += " x" + std::to_string(h.count);
  return s + " for " + FormatDurationMs(AgeMs(server_time_ms, h.granted_at_ms));
}

bool RelatedNames(std::string_view a, std::string_view b) {
  if (a.size() > b.size()) std::swap(a, b);
  if (b.compare(0, a.size(), a) != 0) return false;
  return a.size() == b.size() || b[a.size()] == '.';
}

std::vector<std::string> AncestorNames(std::string_view name) {
  std::vector<std::string> out;
  for (size_t i = name.find('.'); i != std::string_view::npos; i = name.find('.', i + 1)) {
    out.emplace_back(name.substr(0, i));
  }
  return out;
}

std::string JsonString(std::string_view text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

}  // namespace latchkey::cli
