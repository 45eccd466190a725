#include "core/object_methods.h"

#include <charconv>
#include <cstdint>

namespace latchkey::core {

namespace {

using Write = MethodEffect::Write;

bool Present(const ObjView& v) {
  return v.state == ObjState::kAvailable;
}

Status WantArgs(std::string_view method, const std::vector<std::string>& args, size_t lo,
                size_t hi) {
  if (args.size() >= lo && args.size() <= hi) return Status::Ok();
  std::string want =
      lo == hi ? std::to_string(lo) : std::to_string(lo) + " to " + std::to_string(hi);
  return InvalidArgument(std::string(method) + " takes " + want + " argument(s), got " +
                         std::to_string(args.size()));
}

Result<int64_t> ParseInt(std::string_view s, std::string_view what) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size()) {
    return Status(Code::kFailedPrecondition,
                  std::string(what) + " '" + std::string(s.substr(0, 40)) + "' is not an int64");
  }
  return v;
}

Result<MethodEffect> Get(const ObjView& cur, const std::vector<std::string>& args) {
  LATCHKEY_RETURN_IF_ERROR(WantArgs("get", args, 0, 0));
  MethodEffect e;
  e.result = Present(cur) ? cur.value : std::string();
  return e;
}

Result<int64_t> CounterValue(const ObjView& cur) {
  if (!Present(cur) || cur.value.empty()) return int64_t{0};
  return ParseInt(cur.value, "the object's value");
}

Result<MethodEffect> CounterGet(const ObjView& cur, const std::vector<std::string>& args) {
  LATCHKEY_RETURN_IF_ERROR(WantArgs("counter.get", args, 0, 0));
  Result<int64_t> v = CounterValue(cur);
  if (!v.ok()) return v.status();
  MethodEffect e;
  e.result = std::to_string(*v);
  return e;
}

Result<MethodEffect> CounterAdd(const ObjView& cur, const std::vector<std::string>& args) {
  LATCHKEY_RETURN_IF_ERROR(WantArgs("counter.add", args, 0, 1));
  Result<int64_t> v = CounterValue(cur);
  if (!v.ok()) return v.status();
  int64_t delta = 1;
  if (!args.empty()) {
    Result<int64_t> d = ParseInt(args[0], "delta");
    if (!d.ok()) return InvalidArgument(d.status().message());
    delta = *d;
  }
  int64_t out = 0;
  if (__builtin_add_overflow(*v, delta, &out)) {
    return Status(Code::kFailedPrecondition, "counter.add would overflow int64");
  }
  MethodEffect e;
  e.write = Write::kPut;
  e.value = std::to_string(out);
  e.result = e.value;
  return e;
}

Result<MethodEffect> Cas(const ObjView& cur, const std::vector<std::string>& args) {
  LATCHKEY_RETURN_IF_ERROR(WantArgs("cas", args, 2, 2));
  const std::string& now = Present(cur) ? cur.value : std::string();
  MethodEffect e;
  if (now == args[0]) {
    e.write = Write::kPut;
    e.value = args[1];
    e.result = "true";
  } else {
    e.result = "false";
  }
  return e;
}

Result<MethodEffect> Append(const ObjView& cur, const std::vector<std::string>& args) {
  LATCHKEY_RETURN_IF_ERROR(WantArgs("append", args, 1, 1));
  MethodEffect e;
  e.write = Write::kPut;
  e.value = (Present(cur) ? cur.value : std::string()) + args[0];
  e.result = std::to_string(e.value.size());
  return e;
}

// Seed 001's lock object: the value is the holder's client id ("" = free).
// It is not tied to a session (as in the seed); Latchkey's real locks are.
Result<MethodEffect> LockFor(const ObjView& cur, const std::vector<std::string>& args) {
  LATCHKEY_RETURN_IF_ERROR(WantArgs("lock_for", args, 1, 1));
  if (args[0].empty()) return InvalidArgument("lock_for needs a non-empty client id");
  MethodEffect e;
  if (!Present(cur) || cur.value.empty()) {
    e.write = Write::kPut;
    e.value = args[0];
    e.result = args[0];
  } else {
    e.result = cur.value;
  }
  return e;
}

Result<MethodEffect> GetLockHolder(const ObjView& cur, const std::vector<std::string>& args) {
  LATCHKEY_RETURN_IF_ERROR(WantArgs("get_lock_holder", args, 0, 0));
  MethodEffect e;
  e.result = Present(cur) ? cur.value : std::string();
  return e;
}

Result<MethodEffect> Unlock(const ObjView& cur, const std::vector<std::string>& args) {
  LATCHKEY_RETURN_IF_ERROR(WantArgs("unlock", args, 1, 1));
  MethodEffect e;
  if (Present(cur) && !cur.value.empty() && cur.value == args[0]) {
    e.write = Write::kPut;  // stays an object (free lock), like the seed's
    e.value.clear();
    e.result = "true";
  } else {
    e.result = "false";
  }
  return e;
}

struct Builtin {
  std::string_view name;
  MethodFn fn;
};

constexpr Builtin kBuiltins[] = {
    {"get", &Get},
    {"counter.get", &CounterGet},
    {"counter.add", &CounterAdd},
    {"cas", &Cas},
    {"append", &Append},
    {"lock_for", &LockFor},
    {"get_lock_holder", &GetLockHolder},
    {"unlock", &Unlock},
};

}  // namespace

MethodFn FindBuiltinMethod(std::string_view name) {
  for (const Builtin& b : kBuiltins) {
    if (b.name == name) return b.fn;
  }
  return nullptr;
}

std::string BuiltinMethodNames() {
  std::string out;
  for (const Builtin& b : kBuiltins) {
    if (!out.empty()) out += ", ";
    out += b.name;
  }
  return out;
}

}  // namespace latchkey::core
