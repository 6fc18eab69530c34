#pragma once
// Activity: one event of a tenant, as Fairway stores it. Built from Segment Tracking API messages
// (segment_parser.h) and by Fairway itself (generated activities, later). The binary codec here
// is the on-disk record format of the activity log.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/ids.h"
#include "common/status.h"

namespace fairway::model {

enum class ActivityType : uint8_t {
  kTrack = 1,
  kIdentify = 2,
  kPage = 3,
  kScreen = 4,
  kGroup = 5,
  kAlias = 6,
};

// "track", "identify", ...
std::string_view ActivityTypeName(ActivityType t);
std::optional<ActivityType> ParseActivityType(std::string_view name);

// Marks an absent optional time field.
inline constexpr int64_t kNoTime = INT64_MIN;

struct Activity {
  ActivityType type = ActivityType::kTrack;
  MessageId message_id;
  std::string user_id;
  std::string anonymous_id;
  // `event` of a track call; `name` of a page or screen call; empty otherwise.
  std::string event;
  // Event time corrected for client clock skew: receivedAt - (sentAt - originalTimestamp).
  int64_t timestamp_ms = 0;
  // The client's own timestamp, or kNoTime.
  int64_t original_timestamp_ms = kNoTime;
  // When the client sent the message, or kNoTime.
  int64_t sent_at_ms = kNoTime;
  // When Fairway received the request.
  int64_t received_at_ms = 0;
  // Every other top-level field of the message (properties, traits, context, groupId, ...),
  // minified, as `"key":value` pairs joined by commas, without the surrounding braces.
  std::string fields_json;

  // The identity that picks the lead's partition: userId when known, else anonymousId.
  std::string_view LeadKey() const { return user_id.empty() ? anonymous_id : user_id; }
};

// Appends the binary record form of `a` to `out`.
void EncodeActivity(const Activity& a, std::string* out);
// Decodes one record; InvalidArgument on a corrupt or truncated record.
Result<Activity> DecodeActivity(std::string_view record);

// Appends `a` as a Segment-style JSON object. `extra_json`, if not empty, is spliced in as more
// `"key":value` pairs (e.g. the log position).
void AppendActivityJson(const Activity& a, std::string* out, std::string_view extra_json = {});

}  // namespace fairway::model
