// The Lua sandbox: results, budget, memory cap, removed libraries and
// deterministic iteration (lua_method.h).
#include "core/lua_method.h"

#include <gtest/gtest.h>

namespace latchkey::core {
namespace {

Result<MethodEffect> RunScript(const std::string& src, const std::vector<std::string>& args = {},
                               ScriptLimits limits = {}) {
  ObjView cur;
  cur.key = "k";
  cur.state = ObjState::kAvailable;
  cur.value = "v";
  cur.version = 3;
  return RunLuaMethod("t", src, cur, args, limits);
}

TEST(LuaMethodTest, WritesDeletesAndResults) {
  auto put = RunScript("return function(o, a) return o.value .. a[1], o.version end", {"x"});
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  EXPECT_EQ(put->write, MethodEffect::Write::kPut);
  EXPECT_EQ(put->value, "vx");
  EXPECT_EQ(put->result, "3");
  auto del = RunScript("return function(o) return false, true end");
  ASSERT_TRUE(del.ok());
  EXPECT_EQ(del->write, MethodEffect::Write::kDelete);
  EXPECT_EQ(del->result, "true");
  auto none = RunScript("return function(o) return nil end");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->write, MethodEffect::Write::kNone);
}

TEST(LuaMethodTest, BudgetExhaustionIsAClearError) {
  auto r = RunScript("return function() while true do end end");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("instruction budget"), std::string::npos);
  // A script's own pcall cannot swallow it.
  auto p =
      RunScript("return function() while true do pcall(function() while true do end end) end end");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("instruction budget"), std::string::npos);
}

TEST(LuaMethodTest, MemoryCapIsAClearError) {
  ScriptLimits lim;
  lim.memory_bytes = 1 << 20;
  auto r = RunScript("return function() local t = {} for i = 1, 1e7 do t[i] = i end end", {}, lim);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("memory cap"), std::string::npos) << r.status().ToString();
}

TEST(LuaMethodTest, SandboxHasNoIoOsClockOrRandomness) {
  for (const char* expr : {"os.time()", "io.write('x')", "math.random()", "require('os')",
                           "load('return 1')", "string.dump(print)", "collectgarbage()"}) {
    auto r = RunScript(std::string("return function() return ") + expr + " end");
    ASSERT_FALSE(r.ok()) << expr;
    EXPECT_NE(r.status().message().find("runtime error"), std::string::npos) << expr;
  }
  auto bytecode = CompileLuaScript("b", std::string("\x1bLua", 4));
  EXPECT_EQ(bytecode.code(), Code::kInvalidArgument);
}

TEST(LuaMethodTest, RuntimeErrorsNameTheScriptAndLine) {
  auto r = RunScript("return function()\n  return nil .. 'x'\nend");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("t:2:"), std::string::npos) << r.status().ToString();
  auto bad = RunScript("return function() return {} end");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("first return value"), std::string::npos);
  auto notfn = RunScript("return 42");
  ASSERT_FALSE(notfn.ok());
  EXPECT_NE(notfn.status().message().find("must return a function"), std::string::npos);
}

TEST(LuaMethodTest, PairsIterateInSortedOrderAndReferencesPrintAsTypes) {
  auto r = RunScript(
      "return function() local t = {zeta=1, alpha=2, [3]=3, mid=4} local s = ''\n"
      "for k in pairs(t) do s = s .. tostring(k) .. ',' end\n"
      "return nil, s .. tostring({}) .. string.format('%s', print or pairs) end");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->result, "3,alpha,mid,zeta,tablefunction");
}

}  // namespace
}  // namespace latchkey::core
