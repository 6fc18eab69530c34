#include "model/activity.h"

#include "common/coding.h"
#include "common/json_writer.h"
#include "common/time_format.h"

namespace fairway::model {

namespace {
constexpr uint8_t kRecordVersion = 1;
}

std::string_view ActivityTypeName(ActivityType t) {
  switch (t) {
    case ActivityType::kTrack:
      return "track";
    case ActivityType::kIdentify:
      return "identify";
    case ActivityType::kPage:
      return "page";
    case ActivityType::kScreen:
      return "screen";
    case ActivityType::kGroup:
      return "group";
    case ActivityType::kAlias:
      return "alias";
    case ActivityType::kFairway:
      return "fairway";
  }
  return "unknown";
}

std::optional<ActivityType> ParseActivityType(std::string_view name) {
  if (name == "track") return ActivityType::kTrack;
  if (name == "identify") return ActivityType::kIdentify;
  if (name == "page") return ActivityType::kPage;
  if (name == "screen") return ActivityType::kScreen;
  if (name == "group") return ActivityType::kGroup;
  if (name == "alias") return ActivityType::kAlias;
  if (name == "fairway") return ActivityType::kFairway;
  return std::nullopt;
}

void EncodeActivity(const Activity& a, std::string* out) {
  out->push_back(static_cast<char>(kRecordVersion));
  out->push_back(static_cast<char>(a.type));
  PutLengthPrefixed(out, a.message_id.view());
  PutLengthPrefixed(out, a.user_id);
  PutLengthPrefixed(out, a.anonymous_id);
  PutLengthPrefixed(out, a.event);
  PutVarintSigned64(out, a.timestamp_ms);
  PutVarintSigned64(out, a.original_timestamp_ms);
  PutVarintSigned64(out, a.sent_at_ms);
  PutVarintSigned64(out, a.received_at_ms);
  PutLengthPrefixed(out, a.fields_json);
}

Result<Activity> DecodeActivity(std::string_view record) {
  Decoder d(record);
  uint8_t version, type;
  std::string_view mid, uid, aid, ev, fields;
  Activity a;
  if (!d.GetByte(&version) || version != kRecordVersion) {
    return InvalidArgument("activity record: unknown version");
  }
  if (!d.GetByte(&type) || !d.GetLengthPrefixed(&mid) || !d.GetLengthPrefixed(&uid) ||
      !d.GetLengthPrefixed(&aid) || !d.GetLengthPrefixed(&ev) ||
      !d.GetVarintSigned64(&a.timestamp_ms) || !d.GetVarintSigned64(&a.original_timestamp_ms) ||
      !d.GetVarintSigned64(&a.sent_at_ms) || !d.GetVarintSigned64(&a.received_at_ms) ||
      !d.GetLengthPrefixed(&fields) || !d.empty()) {
    return InvalidArgument("activity record: truncated or corrupt");
  }
  if (type < 1 || type > 7) return InvalidArgument("activity record: bad type");
  a.type = static_cast<ActivityType>(type);
  a.message_id = MessageId(mid);
  a.user_id = uid;
  a.anonymous_id = aid;
  a.event = ev;
  a.fields_json = fields;
  return a;
}

void AppendActivityJson(const Activity& a, std::string* out, std::string_view extra_json) {
  out->append("{\"messageId\":");
  AppendJsonString(out, a.message_id.view());
  out->append(",\"type\":\"");
  out->append(ActivityTypeName(a.type));
  out->push_back('"');
  if (!a.user_id.empty()) {
    out->append(",\"userId\":");
    AppendJsonString(out, a.user_id);
  }
  if (!a.anonymous_id.empty()) {
    out->append(",\"anonymousId\":");
    AppendJsonString(out, a.anonymous_id);
  }
  if (!a.event.empty()) {
    out->append(a.type == ActivityType::kTrack || a.type == ActivityType::kFairway ? ",\"event\":"
                                                                                   : ",\"name\":");
    AppendJsonString(out, a.event);
  }
  out->append(",\"timestamp\":\"");
  out->append(FormatIso8601Millis(a.timestamp_ms));
  out->push_back('"');
  if (a.original_timestamp_ms != kNoTime) {
    out->append(",\"originalTimestamp\":\"");
    out->append(FormatIso8601Millis(a.original_timestamp_ms));
    out->push_back('"');
  }
  if (a.sent_at_ms != kNoTime) {
    out->append(",\"sentAt\":\"");
    out->append(FormatIso8601Millis(a.sent_at_ms));
    out->push_back('"');
  }
  out->append(",\"receivedAt\":\"");
  out->append(FormatIso8601Millis(a.received_at_ms));
  out->push_back('"');
  if (!a.fields_json.empty()) {
    out->push_back(',');
    out->append(a.fields_json);
  }
  if (!extra_json.empty()) {
    out->push_back(',');
    out->append(extra_json);
  }
  out->push_back('}');
}

}  // namespace fairway::model
