#include "core/names.h"

#include <gtest/gtest.h>

namespace latchkey::core {
namespace {

TEST(NamesTest, AcceptsHierarchicalNames) {
  for (const char* ok :
       {"a", "build.artifacts", "foo.bar.woof", "svc:payments/db@eu-1", "x_y-z+=1"}) {
    EXPECT_TRUE(ValidateLockName(ok).ok()) << ok;
  }
}

TEST(NamesTest, RejectsBadNamesWithReason) {
  for (const char* bad : {"", ".a", "a.", "a..b", "a b", "a\tb", "é"}) {
    Status s = ValidateLockName(bad);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << bad;
    EXPECT_FALSE(s.message().empty());
  }
  EXPECT_FALSE(ValidateLockName(std::string(kMaxLockNameBytes + 1, 'a')).ok());
  EXPECT_TRUE(ValidateLockName(std::string(kMaxLockNameBytes, 'a')).ok());
  std::string deep = "a";
  for (size_t i = 1; i < kMaxNameSegments; ++i) deep += ".a";
  EXPECT_TRUE(ValidateLockName(deep).ok());
  EXPECT_FALSE(ValidateLockName(deep + ".a").ok());
}

TEST(NamesTest, OwnerAndClientName) {
  EXPECT_TRUE(ValidateOwner("").ok());
  EXPECT_TRUE(ValidateOwner("thread-7 task/3").ok());
  EXPECT_FALSE(ValidateOwner(std::string("a\0b", 3)).ok());
  EXPECT_FALSE(ValidateClientName(std::string(kMaxClientNameBytes + 1, 'c')).ok());
}

}  // namespace
}  // namespace latchkey::core
