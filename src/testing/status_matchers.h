#pragma once
// GoogleTest assertions and gMock matchers for Status and Result<T>:
//
//   ASSERT_OK(store->Write(batch, true));             // fails with the status' text
//   ASSERT_OK_AND_ASSIGN(auto entries, log->Read(...));
//   EXPECT_THAT(log->Read(...), IsOk());
//   EXPECT_THAT(r, StatusIs(StatusCode::kNotFound));
//   EXPECT_THAT(r, StatusIs(StatusCode::kInvalidArgument, HasSubstr("log.backend")));
//
// Each accepts a Status or any Result<T>; a Result holding a value counts as OK.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <utility>

#include "common/status.h"

namespace fairway::testing {

namespace internal {

inline const Status& StatusOf(const Status& status) { return status; }
template <typename T>
const Status& StatusOf(const Result<T>& result) {
  return result.status();
}

// The predicate-formatter behind ASSERT_OK / EXPECT_OK.
template <typename T>
::testing::AssertionResult IsOkFormatter(const char* expr_text, const T& value) {
  const Status& status = StatusOf(value);
  if (status.ok()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << expr_text << " is " << status.ToString() << ", expected OK";
}

class IsOkMatcher {
 public:
  template <typename T>
  bool MatchAndExplain(const T& value, ::testing::MatchResultListener* listener) const {
    const Status& status = StatusOf(value);
    if (!status.ok()) *listener << "whose status is " << status.ToString();
    return status.ok();
  }
  void DescribeTo(std::ostream* os) const { *os << "is OK"; }
  void DescribeNegationTo(std::ostream* os) const { *os << "is not OK"; }
};

class StatusIsMatcher {
 public:
  StatusIsMatcher(StatusCode code, ::testing::Matcher<const std::string&> message)
      : code_(code), message_(std::move(message)) {}

  template <typename T>
  bool MatchAndExplain(const T& value, ::testing::MatchResultListener* listener) const {
    const Status& status = StatusOf(value);
    *listener << "whose status is " << (status.ok() ? std::string("ok") : status.ToString());
    if (status.code() != code_) return false;
    ::testing::StringMatchResultListener inner;
    if (message_.MatchAndExplain(status.message(), &inner)) return true;
    if (!inner.str().empty()) *listener << ", and whose message " << inner.str();
    return false;
  }
  void DescribeTo(std::ostream* os) const {
    *os << "has status code " << StatusCodeName(code_) << " and a message that ";
    message_.DescribeTo(os);
  }
  void DescribeNegationTo(std::ostream* os) const {
    *os << "does not have status code " << StatusCodeName(code_) << " or has a message that ";
    message_.DescribeNegationTo(os);
  }

 private:
  StatusCode code_;
  ::testing::Matcher<const std::string&> message_;
};

}  // namespace internal

// Matches an OK Status, or a Result<T> that holds a value.
inline auto IsOk() { return ::testing::MakePolymorphicMatcher(internal::IsOkMatcher()); }

// Matches a Status or Result<T> with `code` whose message matches `message` (a matcher such as
// HasSubstr("field"), or a string it must equal).
template <typename MessageMatcher>
auto StatusIs(StatusCode code, MessageMatcher&& message) {
  return ::testing::MakePolymorphicMatcher(internal::StatusIsMatcher(
      code, ::testing::MatcherCast<const std::string&>(std::forward<MessageMatcher>(message))));
}
// Matches a Status or Result<T> with `code`, whatever its message.
inline auto StatusIs(StatusCode code) { return StatusIs(code, ::testing::_); }

}  // namespace fairway::testing

// Fails (ASSERT: and returns from the test) unless `expr`, a Status or Result<T>, is OK. The
// failure shows the expression and the status' code and message. More text can be streamed in.
#define ASSERT_OK(expr) ASSERT_PRED_FORMAT1(::fairway::testing::internal::IsOkFormatter, expr)
#define EXPECT_OK(expr) EXPECT_PRED_FORMAT1(::fairway::testing::internal::IsOkFormatter, expr)

// Evaluates `rexpr` (a Result<T>), fails and returns unless it holds a value, and otherwise
// moves the value into `lhs`, which may declare a variable: ASSERT_OK_AND_ASSIGN(auto v, F()).
#define ASSERT_OK_AND_ASSIGN(lhs, rexpr) \
  FAIRWAY_ASSERT_OK_AND_ASSIGN_IMPL_(FAIRWAY_CONCAT(fairway_result_, __LINE__), lhs, rexpr)
#define FAIRWAY_ASSERT_OK_AND_ASSIGN_IMPL_(tmp, lhs, rexpr)                                \
  auto tmp = (rexpr);                                                                      \
  if (!tmp.ok()) FAIL() << #rexpr << " is " << tmp.status().ToString() << ", expected OK"; \
  lhs = std::move(tmp).value()
