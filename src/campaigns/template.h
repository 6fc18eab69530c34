#pragma once
// Token templates: "Hi {{lead.firstName|there}}, you visited {{trigger.url}}". A token is
// `{{path}}` or `{{path|fallback}}`; the resolver maps a path to its text, and the fallback (or
// nothing) replaces a token the resolver does not know. Text outside tokens is copied as is.
//
// Pure functions; thread-safe.

#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace fairway::campaigns {

// How a token's value is written into the surrounding text.
enum class Escape : uint8_t {
  kNone,  // as is (email text)
  kJson,  // inside a JSON string literal: quotes, backslashes and control characters escaped
  kUrl,   // percent-encoded (RFC 3986 unreserved characters kept)
  kLine,  // a header line: CR and LF removed
};

using TokenResolver = std::function<std::optional<std::string>(std::string_view path)>;

std::string RenderTemplate(std::string_view tmpl, const TokenResolver& resolve, Escape escape);

}  // namespace fairway::campaigns
