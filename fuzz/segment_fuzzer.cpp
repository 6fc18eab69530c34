// Fuzzes the Segment ingest parser (model/segment_parser.h) and what is done with its output:
// every accepted activity must survive the log record codec unchanged and render as valid JSON.
//
// Input: one letter naming the endpoint (t track, i identify, p page, s screen, g group,
// a alias, b batch) followed by the request body. Any other first byte: the whole input is a
// /v1/batch body.

#include <boost/json/parse.hpp>
#include <boost/json/parse_options.hpp>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "model/activity.h"
#include "model/segment_parser.h"

namespace {

using fairway::model::ActivityType;

constexpr int64_t kReceivedAtMs = 1'700'000'000'000;  // fixed: runs must be reproducible

void Check(bool ok, const char* what) {
  if (!ok) {
    fprintf(stderr, "segment_fuzzer: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  std::optional<ActivityType> endpoint;
  if (!input.empty()) {
    bool known = true;
    switch (input[0]) {
      case 't':
        endpoint = ActivityType::kTrack;
        break;
      case 'i':
        endpoint = ActivityType::kIdentify;
        break;
      case 'p':
        endpoint = ActivityType::kPage;
        break;
      case 's':
        endpoint = ActivityType::kScreen;
        break;
      case 'g':
        endpoint = ActivityType::kGroup;
        break;
      case 'a':
        endpoint = ActivityType::kAlias;
        break;
      case 'b':
        break;
      default:
        known = false;
    }
    if (known) input.remove_prefix(1);
  }
  fairway::model::SegmentLimits limits;
  limits.max_batch_messages = 100;  // the limit itself is exercised, not the memory
  auto parsed = fairway::model::ParseSegmentRequest(input, endpoint, kReceivedAtMs, limits);
  if (!parsed.ok() || !parsed->errors.empty()) return 0;

  boost::json::parse_options opts;
  opts.max_depth = 100'000;
  for (const auto& a : parsed->activities) {
    std::string record;
    fairway::model::EncodeActivity(a, &record);
    auto back = fairway::model::DecodeActivity(record);
    Check(back.ok(), "an encoded activity does not decode");
    Check(back->type == a.type && back->message_id == a.message_id && back->user_id == a.user_id &&
              back->anonymous_id == a.anonymous_id && back->event == a.event &&
              back->timestamp_ms == a.timestamp_ms &&
              back->original_timestamp_ms == a.original_timestamp_ms &&
              back->sent_at_ms == a.sent_at_ms && back->received_at_ms == a.received_at_ms &&
              back->fields_json == a.fields_json,
          "the record codec changed an activity");
    std::string json;
    fairway::model::AppendActivityJson(a, &json);
    boost::system::error_code ec;
    boost::json::parse(json, ec, {}, opts);
    Check(!ec, "an accepted activity renders as invalid JSON");
  }
  return 0;
}
