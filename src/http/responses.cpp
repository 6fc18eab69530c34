#include "http/responses.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/url/params_view.hpp>
#include <cctype>
#include <charconv>

#include "common/crypto.h"
#include "common/json_writer.h"

namespace fairway::http {

namespace {

std::string ErrorBody(const Status& st) {
  JsonWriter w;
  w.BeginObject().Key("success").Bool(false).Key("error").BeginObject();
  w.Key("code").String(StatusCodeName(st.code())).Key("message").String(st.message());
  w.EndObject().EndObject();
  return w.Take();
}

}  // namespace

HttpResponse Json(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

HttpResponse Error(const Status& st) {
  HttpResponse r = Json(HttpStatusFor(st.code()), ErrorBody(st));
  if (st.code() == StatusCode::kUnauthenticated) {
    r.headers.emplace_back("WWW-Authenticate", "Basic realm=\"fairway\"");
  }
  if (st.code() == StatusCode::kUnavailable) {
    // Overload, shutdown or storage trouble: all pass; tell the client when to try again.
    r.headers.emplace_back("Retry-After", "1");
  }
  return r;
}

// "Basic base64(user:pass)" -> user. Empty when absent or not Basic.
std::optional<std::string> BasicUser(std::string_view auth) {
  constexpr std::string_view kBasic = "Basic ";
  if (auth.size() < kBasic.size() ||
      !std::equal(kBasic.begin(), kBasic.end(), auth.begin(),
                  [](char a, char b) { return std::tolower(a) == std::tolower(b); })) {
    return std::nullopt;
  }
  auto decoded = Base64Decode(auth.substr(kBasic.size()));
  if (!decoded) return std::nullopt;
  return decoded->substr(0, decoded->find(':'));
}

std::optional<std::string_view> BearerToken(std::string_view auth) {
  constexpr std::string_view kBearer = "Bearer ";
  if (auth.substr(0, kBearer.size()) != kBearer) return std::nullopt;
  return auth.substr(kBearer.size());
}

std::string_view StripTrailingSlash(std::string_view p) {
  while (p.size() > 1 && p.back() == '/') p.remove_suffix(1);
  return p;
}

int HttpStatusFor(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return 200;
    case StatusCode::kInvalidArgument:
      return 400;
    case StatusCode::kUnauthenticated:
      return 401;
    case StatusCode::kPermissionDenied:
      return 403;
    case StatusCode::kNotFound:
      return 404;
    case StatusCode::kAlreadyExists:
      return 409;
    case StatusCode::kFailedPrecondition:
      return 409;
    case StatusCode::kAborted:
      return 409;
    case StatusCode::kTooLarge:
      return 413;
    case StatusCode::kResourceExhausted:
      return 429;
    case StatusCode::kUnavailable:
      return 503;
    case StatusCode::kInternal:
      return 500;
  }
  return 500;
}

void EndPage(JsonWriter& w, std::string_view next_cursor) {
  w.EndArray().Key("next_cursor");
  if (next_cursor.empty()) {
    w.Null();
  } else {
    w.String(next_cursor);
  }
  w.EndObject();
}

bool PageParam(std::string_view key, const std::string& value, std::string* cursor, size_t* limit,
               Status* status, int64_t max_limit) {
  if (key == "cursor") {
    *cursor = value;
    return true;
  }
  if (key == "limit") {
    auto n = ParseIntParam(key, value, 1, max_limit);
    if (n.ok()) {
      *limit = static_cast<size_t>(*n);
    } else {
      *status = n.status();
    }
    return true;
  }
  return false;
}

void FinishPageJson(std::string_view next_cursor, std::string* body) {
  body->append("],\"next_cursor\":");
  if (next_cursor.empty()) {
    body->append("null");
  } else {
    AppendJsonString(body, next_cursor);
  }
  body->push_back('}');
}

Result<QueryParams> ParseQuery(std::string_view query) {
  QueryParams params;
  try {
    boost::urls::encoding_opts opts;
    opts.space_as_plus = true;
    for (auto p : boost::urls::params_view(query, opts)) params.emplace_back(p.key, p.value);
  } catch (const std::exception&) {
    return InvalidArgument("query string is malformed");
  }
  return params;
}

Result<int64_t> ParseIntParam(std::string_view name, std::string_view value, int64_t min,
                              int64_t max) {
  int64_t n = 0;
  auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
  if (ec != std::errc() || ptr != value.data() + value.size() || n < min || n > max) {
    return InvalidArgument(
        fmt::format("parameter '{}' must be a whole number from {} to {}", name, min, max));
  }
  return n;
}

}  // namespace fairway::http
