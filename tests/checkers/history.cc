#include "checkers/history.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>

namespace latchkey::checkers {

int64_t MonotonicNanos() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

const char* TypeName(EventType t) {
  switch (t) {
    case EventType::kInvoke: return "invoke";
    case EventType::kOk: return "ok";
    case EventType::kFail: return "fail";
    case EventType::kInfo: return "info";
  }
  return "?";
}

namespace {

void AppendString(std::string* out, const std::string& s) {
  out->push_back('"');
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(static_cast<char>(c));
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      *out += buf;
    } else {
      out->push_back(static_cast<char>(c));
    }
  }
  out->push_back('"');
}

// A cursor over one line of flat JSON.
struct Parser {
  const std::string& s;
  size_t i = 0;
  void Ws() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) ++i;
  }
  bool Eat(char c) {
    Ws();
    if (i < s.size() && s[i] == c) {
      ++i;
      return true;
    }
    return false;
  }
  bool String(std::string* out) {
    Ws();
    if (i >= s.size() || s[i] != '"') return false;
    ++i;
    out->clear();
    while (i < s.size() && s[i] != '"') {
      char c = s[i++];
      if (c != '\\') {
        out->push_back(c);
        continue;
      }
      if (i >= s.size()) return false;
      char e = s[i++];
      switch (e) {
        case '"':
        case '\\':
        case '/': out->push_back(e); break;
        case 'n': out->push_back('\n'); break;
        case 't': out->push_back('\t'); break;
        case 'r': out->push_back('\r'); break;
        case 'u': {
          if (i + 4 > s.size()) return false;
          unsigned v = 0;
          for (int k = 0; k < 4; ++k) {
            char h = s[i++];
            v <<= 4;
            if (h >= '0' && h <= '9') {
              v |= static_cast<unsigned>(h - '0');
            } else if (h >= 'a' && h <= 'f') {
              v |= static_cast<unsigned>(h - 'a' + 10);
            } else if (h >= 'A' && h <= 'F') {
              v |= static_cast<unsigned>(h - 'A' + 10);
            } else {
              return false;
            }
          }
          if (v > 0xff) return false;  // ToJson escapes control bytes only
          out->push_back(static_cast<char>(v));
          break;
        }
        default: return false;
      }
    }
    if (i >= s.size()) return false;
    ++i;
    return true;
  }
  bool Integer(int64_t* out) {
    Ws();
    size_t start = i;
    if (i < s.size() && s[i] == '-') ++i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    if (i == start || (i == start + 1 && s[start] == '-')) return false;
    try {
      *out = std::stoll(s.substr(start, i - start));
    } catch (...) {
      return false;
    }
    return true;
  }
};

}  // namespace

std::string ToJson(const Event& e) {
  std::string out = "{\"type\":\"";
  out += TypeName(e.type);
  out += "\",\"process\":" + std::to_string(e.process) + ",\"op\":";
  AppendString(&out, e.op);
  out += ",\"key\":";
  AppendString(&out, e.key);
  out += ",\"value\":";
  AppendString(&out, e.value);
  out += ",\"expect\":";
  AppendString(&out, e.expect);
  out += ",\"token\":" + std::to_string(e.token);
  out += ",\"session\":" + std::to_string(e.session);
  out += ",\"time\":" + std::to_string(e.time);
  out += ",\"error\":";
  AppendString(&out, e.error);
  out += ",\"revision\":" + std::to_string(e.revision);
  out += "}";
  return out;
}

std::optional<Event> FromJson(const std::string& line) {
  Parser p{line};
  Event e;
  bool have_type = false;
  if (!p.Eat('{')) return std::nullopt;
  if (p.Eat('}')) return std::nullopt;
  do {
    std::string name;
    if (!p.String(&name) || !p.Eat(':')) return std::nullopt;
    p.Ws();
    if (p.i < line.size() && line[p.i] == '"') {
      std::string v;
      if (!p.String(&v)) return std::nullopt;
      if (name == "type") {
        have_type = true;
        if (v == "invoke") {
          e.type = EventType::kInvoke;
        } else if (v == "ok") {
          e.type = EventType::kOk;
        } else if (v == "fail") {
          e.type = EventType::kFail;
        } else if (v == "info") {
          e.type = EventType::kInfo;
        } else {
          return std::nullopt;
        }
      } else if (name == "op") {
        e.op = v;
      } else if (name == "key") {
        e.key = v;
      } else if (name == "value") {
        e.value = v;
      } else if (name == "expect") {
        e.expect = v;
      } else if (name == "error") {
        e.error = v;
      }
    } else {
      int64_t v = 0;
      if (!p.Integer(&v)) return std::nullopt;
      if (name == "process") {
        e.process = v;
      } else if (name == "token") {
        if (v < 0) return std::nullopt;
        e.token = static_cast<uint64_t>(v);
      } else if (name == "session") {
        if (v < 0) return std::nullopt;
        e.session = static_cast<uint64_t>(v);
      } else if (name == "time") {
        e.time = v;
      } else if (name == "revision") {
        if (v < 0) return std::nullopt;
        e.revision = static_cast<uint64_t>(v);
      }
    }
  } while (p.Eat(','));
  if (!p.Eat('}')) return std::nullopt;
  p.Ws();
  if (p.i != line.size() || !have_type) return std::nullopt;
  return e;
}

std::vector<Event> ReadHistory(const std::string& path, std::vector<std::string>* bad) {
  std::vector<Event> out;
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    auto e = FromJson(line);
    if (e) {
      out.push_back(std::move(*e));
    } else if (bad) {
      bad->push_back(line);
    }
  }
  return out;
}

std::vector<Event> MergeByTime(std::vector<std::vector<Event>> parts) {
  std::vector<Event> out;
  for (auto& p : parts) {
    for (auto& e : p) out.push_back(std::move(e));
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const Event& a, const Event& b) { return a.time < b.time; });
  return out;
}

HistoryWriter::HistoryWriter(const std::string& path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

HistoryWriter::~HistoryWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void HistoryWriter::Append(Event e) {
  if (e.time == 0) e.time = MonotonicNanos();
  std::string line = ToJson(e) + "\n";
  std::lock_guard<std::mutex> lk(mu_);
  if (fd_ < 0) return;
  size_t off = 0;
  while (off < line.size()) {
    ssize_t w = ::write(fd_, line.data() + off, line.size() - off);
    if (w <= 0) return;
    off += static_cast<size_t>(w);
  }
}

std::vector<Operation> Pair(const std::vector<Event>& history, std::vector<Event>* notes) {
  std::vector<Operation> ops;
  std::map<int64_t, size_t> open;  // process -> index in ops
  for (const Event& e : history) {
    if (e.type == EventType::kInvoke) {
      auto it = open.find(e.process);
      if (it != open.end()) open.erase(it);  // the earlier one stays unknown
      Operation op;
      op.process = e.process;
      op.op = e.op;
      op.key = e.key;
      op.value = e.value;
      op.expect = e.expect;
      op.token = e.token;
      op.session = e.session;
      op.invoke_time = e.time;
      op.complete_time = INT64_MAX;
      op.outcome = EventType::kInfo;
      open[e.process] = ops.size();
      ops.push_back(std::move(op));
      continue;
    }
    auto it = open.find(e.process);
    if (it == open.end() || ops[it->second].op != e.op) {
      if (notes) notes->push_back(e);
      continue;
    }
    Operation& op = ops[it->second];
    open.erase(it);
    op.outcome = e.type;
    op.error = e.error;
    if (e.token != 0) op.token = e.token;
    if (e.session != 0) op.session = e.session;
    if (e.revision != 0) op.revision = e.revision;
    if (e.type == EventType::kOk && (op.op == "read" || op.op == "get" || !e.value.empty())) {
      op.value = e.value;
    }
    // An info completion leaves the operation open forever: it may take
    // effect at any later time.
    if (e.type != EventType::kInfo) op.complete_time = e.time;
  }
  return ops;
}

}  // namespace latchkey::checkers
