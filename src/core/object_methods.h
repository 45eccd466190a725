// Built-in methods of the object store (execute_method, seed 001): pure
// functions from the object's current value and the arguments to a write and
// a result. The store looks methods up by name; user scripts (Lua, later)
// will be a second lookup behind the same MethodFn shape, so the log format
// (ObjMethodCmd: key, method, args) and the reply do not change.
//
// Methods and their arguments (values are bytes; numbers are decimal text):
//   get                      -> the value ("" when absent)
//   counter.get              -> the counter ("0" when absent)
//   counter.add [delta=1]    -> the new counter (int64; overflow is an error)
//   cas expected new         -> "true" and writes new if the value equals
//                               expected ("" matches an absent object), else "false"
//   append suffix            -> the new length
//   lock_for client          -> the holder after the call (client if it got it)
//   get_lock_holder          -> the holder ("" when free)
//   unlock client            -> "true" if client held it (now free), else "false"
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "core/object_store.h"

namespace latchkey::core {

struct MethodEffect {
  enum class Write { kNone, kPut, kDelete };
  Write write = Write::kNone;
  std::string value;   // kPut
  std::string result;  // returned to the caller
};

// REQUIRES: current.state != kReserved (the store refuses reserved objects).
using MethodFn = Result<MethodEffect> (*)(const ObjView& current,
                                          const std::vector<std::string>& args);

// nullptr when no built-in method has this name.
MethodFn FindBuiltinMethod(std::string_view name);
// "get, counter.get, ..." for error messages and help.
std::string BuiltinMethodNames();

}  // namespace latchkey::core
