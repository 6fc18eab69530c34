#pragma once
// Parses and validates request bodies of the Segment HTTP Tracking API
// (POST /v1/{track,identify,page,screen,group,alias,batch}) into Activities.
//
// A request is all-or-nothing: the parser checks every message and reports every bad one, so
// the caller can reject the request whole with a body that lists them. Thread-safe (each thread
// keeps its own simdjson parser).

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "model/activity.h"

namespace fairway::model {

struct SegmentLimits {
  // Largest accepted message, as stored (minified). Segment's limit is 32 KB.
  size_t max_message_bytes = 32 * 1024;
  // Most messages in one batch request.
  size_t max_batch_messages = 10'000;
};

// One problem with one message. `index` is the message's position in the batch (0 for a
// single-message call); `field` is a path such as "batch[3].event".
struct FieldError {
  int index = 0;
  std::string field;
  std::string message;
};

struct ParsedRequest {
  std::vector<Activity> activities;
  // Non-empty when any message is invalid; then `activities` must not be stored.
  std::vector<FieldError> errors;
  // `writeKey` given in the body (Segment allows it instead of Basic auth), if any.
  std::string body_write_key;
};

// Parses `body` sent to the endpoint for `endpoint` (nullopt = /v1/batch). `received_at_ms` is
// the server's receive time, used for receivedAt and clock-skew correction. Returns
// InvalidArgument when the body is not JSON or not an object (the message says where);
// per-message problems are returned in ParsedRequest::errors.
Result<ParsedRequest> ParseSegmentRequest(std::string_view body,
                                          std::optional<ActivityType> endpoint,
                                          int64_t received_at_ms, const SegmentLimits& limits);

// Generates a fresh message id for messages that carry none (random, 128 bits).
std::string GenerateMessageId();

}  // namespace fairway::model
