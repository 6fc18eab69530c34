#pragma once
// Status and Result<T>: the error currency of Fairway. Codes are chosen by what the caller should
// do next (see docs/errors.md); messages name the field or resource at fault. Mapping to wire codes
// (HTTP status, Kafka errors) happens once, at the module edge.

#include <cassert>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace fairway {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,     // Fix the input; retrying the same call fails again.
  kNotFound,            // The named resource does not exist.
  kAlreadyExists,       // Creating something that exists.
  kUnauthenticated,     // No or bad credentials.
  kPermissionDenied,    // Credentials valid but not allowed (e.g. tenant suspended).
  kResourceExhausted,   // Quota or rate limit; retry after a delay.
  kTooLarge,            // Payload over a size limit; split it.
  kFailedPrecondition,  // State does not allow it; never retry as is.
  kAborted,             // Conflict; retry higher up.
  kUnavailable,         // Transient; retry the call.
  kInternal,            // A bug or corruption.
};

// Returns the stable lower-case name of a code ("invalid_argument").
const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string ToString() const;

  // Marks a status as deliberately not inspected.
  void IgnoreError() const {}

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) {
  return {StatusCode::kInvalidArgument, std::move(m)};
}
inline Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status AlreadyExists(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }
inline Status Unauthenticated(std::string m) {
  return {StatusCode::kUnauthenticated, std::move(m)};
}
inline Status PermissionDenied(std::string m) {
  return {StatusCode::kPermissionDenied, std::move(m)};
}
inline Status ResourceExhausted(std::string m) {
  return {StatusCode::kResourceExhausted, std::move(m)};
}
inline Status TooLarge(std::string m) { return {StatusCode::kTooLarge, std::move(m)}; }
inline Status FailedPrecondition(std::string m) {
  return {StatusCode::kFailedPrecondition, std::move(m)};
}
inline Status Aborted(std::string m) { return {StatusCode::kAborted, std::move(m)}; }
inline Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

// Result<T> holds either a value or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    assert(!std::get<Status>(v_).ok() && "Result built from an OK status");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & {
    assert(ok());
    return std::get<T>(v_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<T>(v_);
  }
  T&& value() && {
    assert(ok());
    return std::get<T>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace fairway

// Returns early from the enclosing function when `expr` (a Status) is not OK.
#define FAIRWAY_RETURN_IF_ERROR(expr)          \
  do {                                         \
    ::fairway::Status fairway_st_ = (expr);    \
    if (!fairway_st_.ok()) return fairway_st_; \
  } while (0)

#define FAIRWAY_CONCAT_INNER(a, b) a##b
#define FAIRWAY_CONCAT(a, b) FAIRWAY_CONCAT_INNER(a, b)
// Declares `lhs` from a Result expression, returning its Status early on error.
#define FAIRWAY_ASSIGN_OR_RETURN(lhs, expr) \
  FAIRWAY_ASSIGN_OR_RETURN_IMPL(FAIRWAY_CONCAT(fairway_r_, __LINE__), lhs, expr)
#define FAIRWAY_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) return tmp.status();                 \
  lhs = std::move(tmp).value()
