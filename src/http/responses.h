#pragma once
// Shared pieces of the public API's handlers: JSON responses, error bodies, credentials and
// query strings.

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/json_writer.h"
#include "common/status.h"
#include "http/handler.h"

namespace fairway::http {

// HTTP status for a Status code.
int HttpStatusFor(StatusCode code);

HttpResponse Json(int status, std::string body);
// {"success":false,"error":{"code":...,"message":...}} with the status's HTTP code.
HttpResponse Error(const Status& st);

// "Basic base64(user:pass)" -> user. Empty when absent or not Basic.
std::optional<std::string> BasicUser(std::string_view auth);
// "Bearer <token>" -> token.
std::optional<std::string_view> BearerToken(std::string_view auth);
std::string_view StripTrailingSlash(std::string_view p);

// Ends a page of results begun with `{"data":[` + items: appends `],"next_cursor":...}`
// (null when `next_cursor` is empty).
void FinishPageJson(std::string_view next_cursor, std::string* body);

// Ends a page begun with `w.BeginObject().Key("data").BeginArray()`: closes the array, adds
// "next_cursor" (null when empty) and closes the object.
void EndPage(JsonWriter& w, std::string_view next_cursor);

// The shared paging parameters: true when `key` is "cursor" or "limit" (1 to `max_limit`),
// with a parse error in *status.
bool PageParam(std::string_view key, const std::string& value, std::string* cursor, size_t* limit,
               Status* status, int64_t max_limit = 1000);

using QueryParams = std::vector<std::pair<std::string, std::string>>;
// Decodes a query string (percent-encoding, '+' as space). InvalidArgument when malformed.
Result<QueryParams> ParseQuery(std::string_view query);
// A whole number parameter from `min` to `max`; InvalidArgument names the parameter.
Result<int64_t> ParseIntParam(std::string_view name, std::string_view value, int64_t min,
                              int64_t max);

}  // namespace fairway::http
