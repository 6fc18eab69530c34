#include "storage/keys.h"

#include <gtest/gtest.h>

#include <string>

namespace fairway::storage {
namespace {

using std::string_literals::operator""s;

TEST(PrefixEndTest, IncrementsTheLastByte) {
  EXPECT_EQ(PrefixEnd("ab"), "ac");
  EXPECT_EQ(PrefixEnd("acme\0p"s), "acme\0q"s);
  EXPECT_EQ(PrefixEnd("a\x7f"), "a\x80");
  EXPECT_EQ(PrefixEnd("a\xfe"), "a\xff");
}

TEST(PrefixEndTest, ATrailingZeroByteBecomesOne) {
  EXPECT_EQ(PrefixEnd("t\0"s), "t\x01");
  EXPECT_EQ(PrefixEnd("\0"s), "\x01");
}

TEST(PrefixEndTest, DropsTrailing0xffBytes) {
  EXPECT_EQ(PrefixEnd("ab\xff"), "ac");
  EXPECT_EQ(PrefixEnd("ab\xff\xff\xff"), "ac");
  EXPECT_EQ(PrefixEnd("a\xfe\xff"), "a\xff");
  EXPECT_EQ(PrefixEnd("\xff\x01\xff"), "\xff\x02");
}

TEST(PrefixEndTest, EmptyWhenNoKeyIsGreater) {
  EXPECT_EQ(PrefixEnd(""), "");
  EXPECT_EQ(PrefixEnd("\xff"), "");
  EXPECT_EQ(PrefixEnd("\xff\xff\xff\xff"), "");
}

TEST(PrefixEndTest, BoundsEveryKeyWithThePrefixAndNoOther) {
  const std::string prefix = "t\0\x01\xff"s;
  const std::string end = PrefixEnd(prefix);
  EXPECT_EQ(end, "t\0\x02"s);
  for (const std::string& key : {prefix, prefix + "\0"s, prefix + std::string(32, '\xff')}) {
    EXPECT_GE(key, prefix);
    EXPECT_LT(key, end);
  }
  // The first key after the range does not start with the prefix.
  EXPECT_FALSE(end.starts_with(prefix));
  EXPECT_LT("t\0\x01\xfe\xff"s, prefix);
}

}  // namespace
}  // namespace fairway::storage
