// Lua user methods: a deterministic sandbox (see lua_method.h). Linked
// against the C++ build of Lua (liblua5.4-c++), so Lua errors unwind as C++
// exceptions and destructors run; every call that can raise runs inside
// lua_pcall.
#include "core/lua_method.h"

#include <cstdlib>
#include <lua.hpp>
#include <string>

namespace latchkey::core {

namespace {

constexpr int kHookStep = 1000;  // instructions between budget checks

struct Ctx {
  std::string_view name;
  std::string_view source;
  const ObjView* current = nullptr;
  const std::vector<std::string>* args = nullptr;
  uint64_t budget = 0;
  uint64_t used = 0;
  bool exhausted = false;
  size_t mem_used = 0;
  size_t mem_limit = 0;
  bool mem_exceeded = false;
  MethodEffect effect;
  std::string bad_return;  // a return-value error found while decoding
};

Ctx* CtxOf(lua_State* L) {
  return *static_cast<Ctx**>(lua_getextraspace(L));
}

void* Allocate(void* ud, void* ptr, size_t osize, size_t nsize) {
  auto* c = static_cast<Ctx*>(ud);
  if (ptr == nullptr) osize = 0;  // osize then encodes the object type
  if (nsize == 0) {
    std::free(ptr);
    c->mem_used -= osize;
    return nullptr;
  }
  if (nsize > osize && c->mem_used - osize + nsize > c->mem_limit) {
    c->mem_exceeded = true;
    return nullptr;  // Lua raises "not enough memory"
  }
  void* p = std::realloc(ptr, nsize);
  if (p != nullptr) c->mem_used = c->mem_used - osize + nsize;
  return p;
}

void Hook(lua_State* L, lua_Debug*) {
  Ctx* c = CtxOf(L);
  c->used += kHookStep;
  if (c->used <= c->budget && !c->exhausted) return;
  c->exhausted = true;
  // From now on every instruction raises, so a script's own pcall cannot
  // swallow the error and keep running.
  lua_sethook(L, Hook, LUA_MASKCOUNT, 1);
  luaL_error(L, "instruction budget of %d exhausted", static_cast<int>(c->budget));
}

// Runs after the libraries are open: removes what is not deterministic or
// reaches outside the sandbox, and makes iteration order and printing of
// references independent of the process.
constexpr const char kPrelude[] = R"lua(
local next0, type, sort, tostring0, getmetatable, select, format0 =
  next, type, table.sort, tostring, getmetatable, select, string.format
for _, n in ipairs({"load", "dofile", "loadfile", "require", "collectgarbage", "print", "warn",
                    "next"}) do _G[n] = nil end
string.dump = nil
math.random = nil
math.randomseed = nil
local function keyless(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta < tb end
  if ta == "number" or ta == "string" then return a < b end
  if ta == "boolean" then return (not a) and b end
  return false
end
pairs = function(t)
  local mt = getmetatable(t)
  if type(mt) == "table" and mt.__pairs then return mt.__pairs(t) end
  local keys, n = {}, 0
  for k in next0, t do n = n + 1; keys[n] = k end
  sort(keys, keyless)
  local i = 0
  return function()
    i = i + 1
    local k = keys[i]
    if k ~= nil then return k, t[k] end
  end, t, nil
end
local function plain(v)
  local ty = type(v)
  if ty == "function" or ty == "thread" or ty == "userdata" then return ty end
  if ty == "table" then
    local mt = getmetatable(v)
    if not (type(mt) == "table" and mt.__tostring) then return ty end
  end
  return v
end
tostring = function(v) return tostring0(plain(v)) end
string.format = function(fmt, ...)
  if type(fmt) == "string" and fmt:find("%%[-+ #0]*%d*%.?%d*p") then
    error("string.format %p is not available in scripts", 2)
  end
  local n, args = select("#", ...), {...}
  for i = 1, n do args[i] = plain(args[i]) end
  return format0(fmt, table.unpack(args, 1, n))
end
)lua";

std::string ToResult(lua_State* L, int idx, Ctx* c) {
  switch (lua_type(L, idx)) {
    case LUA_TNIL: return {};
    case LUA_TBOOLEAN: return lua_toboolean(L, idx) ? "true" : "false";
    case LUA_TNUMBER:
    case LUA_TSTRING: {
      size_t n = 0;
      const char* s = lua_tolstring(L, idx, &n);
      return std::string(s, n);
    }
    default:
      c->bad_return = std::string("the result (second return value) is a ") +
                      luaL_typename(L, idx) + "; return a string, number, boolean or nil";
      return {};
  }
}

int Protected(lua_State* L) {
  Ctx* c = CtxOf(L);
  const luaL_Reg libs[] = {{LUA_GNAME, luaopen_base},
                           {LUA_STRLIBNAME, luaopen_string},
                           {LUA_TABLIBNAME, luaopen_table},
                           {LUA_MATHLIBNAME, luaopen_math},
                           {LUA_UTF8LIBNAME, luaopen_utf8}};
  for (const luaL_Reg& lib : libs) {
    luaL_requiref(L, lib.name, lib.func, 1);
    lua_pop(L, 1);
  }
  if (luaL_loadbufferx(L, kPrelude, sizeof(kPrelude) - 1, "=prelude", "t") != LUA_OK) {
    return lua_error(L);
  }
  lua_call(L, 0, 0);
  lua_sethook(L, Hook, LUA_MASKCOUNT, kHookStep);
  const std::string chunk = "=" + std::string(c->name);
  if (luaL_loadbufferx(L, c->source.data(), c->source.size(), chunk.c_str(), "t") != LUA_OK) {
    return lua_error(L);
  }
  lua_call(L, 0, 1);
  if (!lua_isfunction(L, -1)) {
    return luaL_error(L, "the script must return a function(obj, args), not a %s",
                      luaL_typename(L, -1));
  }
  const ObjView& cur = *c->current;
  lua_createtable(L, 0, 5);
  lua_pushlstring(L, cur.value.data(), cur.value.size());
  lua_setfield(L, -2, "value");
  lua_pushstring(L, cur.state == ObjState::kAbsent ? "absent" : "available");
  lua_setfield(L, -2, "state");
  lua_pushinteger(L, static_cast<lua_Integer>(cur.version));
  lua_setfield(L, -2, "version");
  lua_pushinteger(L, static_cast<lua_Integer>(cur.mod_revision));
  lua_setfield(L, -2, "mod_revision");
  lua_pushinteger(L, static_cast<lua_Integer>(cur.create_revision));
  lua_setfield(L, -2, "create_revision");
  lua_createtable(L, static_cast<int>(c->args->size()), 0);
  for (size_t i = 0; i < c->args->size(); ++i) {
    const std::string& a = (*c->args)[i];
    lua_pushlstring(L, a.data(), a.size());
    lua_rawseti(L, -2, static_cast<lua_Integer>(i + 1));
  }
  lua_call(L, 2, 2);
  // Stack: new_value, result.
  switch (lua_type(L, -2)) {
    case LUA_TNIL: c->effect.write = MethodEffect::Write::kNone; break;
    case LUA_TBOOLEAN:
      if (lua_toboolean(L, -2)) {
        c->bad_return =
            "the new value (first return value) is true; return a string, nil "
            "(no change) or false (delete)";
      }
      c->effect.write = MethodEffect::Write::kDelete;
      break;
    case LUA_TSTRING: {
      size_t n = 0;
      const char* s = lua_tolstring(L, -2, &n);
      c->effect.write = MethodEffect::Write::kPut;
      c->effect.value.assign(s, n);
      break;
    }
    default:
      c->bad_return = std::string("the new value (first return value) is a ") +
                      luaL_typename(L, -2) + "; return a string, nil (no change) or false (delete)";
  }
  c->effect.result = ToResult(L, -1, c);
  return 0;
}

}  // namespace

Status CompileLuaScript(std::string_view name, std::string_view source) {
  if (source.size() > kMaxScriptBytes) {
    return InvalidArgument("script '" + std::string(name) + "' is " +
                           std::to_string(source.size()) + " bytes; the limit is " +
                           std::to_string(kMaxScriptBytes));
  }
  Ctx c;
  c.mem_limit = kScriptMemoryBytes;
  lua_State* L = lua_newstate(Allocate, &c);
  if (L == nullptr) return Status(Code::kResourceExhausted, "cannot create a Lua state");
  const std::string chunk = "=" + std::string(name);
  const int rc = luaL_loadbufferx(L, source.data(), source.size(), chunk.c_str(), "t");
  Status st = Status::Ok();
  if (rc != LUA_OK) {
    const char* msg = lua_tostring(L, -1);
    st = InvalidArgument("script '" + std::string(name) +
                         "' does not compile: " + (msg != nullptr ? msg : "unknown error"));
  }
  lua_close(L);
  return st;
}

Result<MethodEffect> RunLuaMethod(std::string_view name, std::string_view source,
                                  const ObjView& current, const std::vector<std::string>& args,
                                  const ScriptLimits& limits) {
  Ctx c;
  c.name = name;
  c.source = source;
  c.current = &current;
  c.args = &args;
  c.budget = limits.instructions;
  c.mem_limit = limits.memory_bytes;
  lua_State* L = lua_newstate(Allocate, &c);
  if (L == nullptr) return Status(Code::kResourceExhausted, "cannot create a Lua state");
  *static_cast<Ctx**>(lua_getextraspace(L)) = &c;
  lua_pushcfunction(L, Protected);
  const int rc = lua_pcall(L, 0, 0, 0);
  std::string err;
  if (rc != LUA_OK) {
    const char* msg = lua_tostring(L, -1);
    err = msg != nullptr ? msg : "error object is not a string";
  }
  lua_close(L);  // finalizers run under the same budget (their errors are ignored)
  const std::string who = "script '" + std::string(name) + "': ";
  if (c.exhausted) {
    return Status(Code::kFailedPrecondition, who + "instruction budget of " +
                                                 std::to_string(c.budget) +
                                                 " exhausted (an endless loop?)");
  }
  if (c.mem_exceeded && rc != LUA_OK) {
    return Status(Code::kFailedPrecondition,
                  who + "memory cap of " + std::to_string(c.mem_limit) + " bytes exceeded");
  }
  if (rc != LUA_OK) return Status(Code::kFailedPrecondition, who + "runtime error: " + err);
  if (!c.bad_return.empty()) return Status(Code::kFailedPrecondition, who + c.bad_return);
  return std::move(c.effect);
}

}  // namespace latchkey::core
