// Lua 5.4 user methods of the object store (design 0012). A script is a Lua
// chunk that returns a function:
//
//   return function(obj, args)
//     -- obj: {value = "...", state = "absent"|"available", version = n,
//     --       mod_revision = n, create_revision = n}; args: array of strings
//     return new_value, result
//   end
//
// new_value: a string writes it, nil leaves the object as it is, false
// deletes it. result (string, number or boolean; nil = "") goes to the caller.
//
// Determinism (the script runs inside the replicated core): a fresh state
// per call; only the base (without load, dofile, loadfile, require,
// collectgarbage, print), string (without string.dump), table, math
// (without random/randomseed) and utf8 libraries; no io, os, package or
// debug; pairs/next iterate in a sorted key order (Lua's hash seed differs
// per process); tostring of a table or function is its type name (not an
// address). An instruction budget (count hook) and a memory cap (allocator)
// bound every call; exhausting either fails the call with a clear error.
// Every replica therefore computes the same bytes from the same inputs.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "core/object_methods.h"
#include "core/object_store.h"

namespace latchkey::core {

inline constexpr size_t kMaxScriptBytes = 64 * 1024;
inline constexpr uint64_t kScriptInstructionBudget = 1'000'000;
inline constexpr size_t kScriptMemoryBytes = 16u << 20;

struct ScriptLimits {
  uint64_t instructions = kScriptInstructionBudget;
  size_t memory_bytes = kScriptMemoryBytes;
};

// INVALID_ARGUMENT with Lua's message if the source does not compile (text
// only: precompiled bytecode is refused) or is too large.
Status CompileLuaScript(std::string_view name, std::string_view source);

// Runs script `name`. Errors: FAILED_PRECONDITION for a runtime error, an
// exhausted budget or memory cap, or a bad return value (the message says
// which, with the script's name and line).
Result<MethodEffect> RunLuaMethod(std::string_view name, std::string_view source,
                                  const ObjView& current, const std::vector<std::string>& args,
                                  const ScriptLimits& limits = {});

}  // namespace latchkey::core
