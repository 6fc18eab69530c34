#include "model/segment_parser.h"

#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>
#include <memory>
#include <random>
#include <vector>

#include "common/json_writer.h"
#include "common/time_format.h"
#include "model/json_limits.h"

namespace fairway::model {

namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;

constexpr size_t kMaxIdBytes = 1024;
// A batch's messages sit two levels below its root ({"batch":[...]}).
constexpr size_t kBatchEnvelopeDepth = 2;
// simdjson's max_depth admits one level less than Boost.JSON's.
constexpr size_t kSimdjsonDepthOffset = 1;
// Longest field path quoted in a nesting error.
constexpr size_t kMaxQuotedPath = 256;

// A parser per thread and nesting limit: a single message is the root of its body, a batch's
// messages are two levels deeper.
simdjson::dom::parser& ParserFor(bool batch) {
  auto make = [](size_t depth) {
    auto p = std::make_unique<simdjson::dom::parser>();
    // Capacity grows on demand, keeping the depth. Out of memory here leaves the parser
    // without its depth, which ParseSegmentRequest checks.
    auto err = p->allocate(4096, depth);
    static_cast<void>(err);
    return p;
  };
  thread_local auto single = make(kMaxJsonDepth + kSimdjsonDepthOffset);
  thread_local auto in_batch = make(kMaxJsonDepth + kBatchEnvelopeDepth + kSimdjsonDepthOffset);
  return batch ? *in_batch : *single;
}

// Nesting of `v` as Boost.JSON counts it (0 for a scalar, 1 for a flat object), at most
// `cap` + 1: deeper is not examined.
size_t Nesting(element v, size_t cap) {
  if (cap == 0) return v.is_array() || v.is_object() ? 1 : 0;
  size_t deepest = 0;
  if (v.is_object()) {
    simdjson::dom::object members = v.get_object().value_unsafe();
    for (auto field : members) deepest = std::max(deepest, Nesting(field.value, cap - 1));
    return deepest + 1;
  }
  if (v.is_array()) {
    simdjson::dom::array elements = v.get_array().value_unsafe();
    for (element e : elements) deepest = std::max(deepest, Nesting(e, cap - 1));
    return deepest + 1;
  }
  return 0;
}

// After simdjson refused `body` for its depth: the path of the first object or array nested
// deeper than a message may be ("batch[3].properties.a.b", "traits.x[0]"), found by a scan of
// the text that keeps at most the allowed number of levels. Empty if none is found.
std::string TooDeepPath(std::string_view body, bool batch) {
  struct Frame {
    bool object;
    std::string_view key;  // current member of an object
    size_t index = 0;      // current element of an array
  };
  std::vector<Frame> stack;
  auto path_of = [&](size_t parents) {
    std::string out;
    for (size_t f = 0; f < parents && out.size() <= kMaxQuotedPath; ++f) {
      if (stack[f].object) {
        if (!out.empty()) out.push_back('.');
        out.append(stack[f].key);
      } else {
        out.append(fmt::format("[{}]", stack[f].index));
      }
    }
    if (out.size() > kMaxQuotedPath) out = out.substr(0, kMaxQuotedPath) + "...";
    return out;
  };
  for (size_t i = 0; i < body.size(); ++i) {
    char c = body[i];
    if (c == '"') {
      size_t j = i + 1;
      while (j < body.size() && body[j] != '"') j += body[j] == '\\' ? 2 : 1;
      j = std::min(j, body.size());
      std::string_view text = body.substr(i + 1, j - i - 1);
      size_t k = j + 1;
      while (k < body.size() &&
             (body[k] == ' ' || body[k] == '\t' || body[k] == '\n' || body[k] == '\r')) {
        ++k;
      }
      if (k < body.size() && body[k] == ':' && !stack.empty() && stack.back().object) {
        stack.back().key = text;
      }
      i = j;
    } else if (c == '{' || c == '[') {
      stack.push_back({c == '{', {}, 0});
      bool in_message = batch && stack.size() > kBatchEnvelopeDepth && stack[0].key == "batch" &&
                        !stack[1].object;
      size_t allowed = kMaxJsonDepth + (in_message ? kBatchEnvelopeDepth : 0);
      if (stack.size() > allowed) return path_of(stack.size() - 1);
    } else if (c == '}' || c == ']') {
      if (!stack.empty()) stack.pop_back();
    } else if (c == ',') {
      if (!stack.empty() && !stack.back().object) stack.back().index++;
    }
  }
  return {};
}

Status TooDeep(std::string_view field) {
  if (field.empty()) {
    return InvalidArgument(
        fmt::format("body is nested deeper than {} levels of objects and arrays", kMaxJsonDepth));
  }
  return InvalidArgument(fmt::format(
      "field '{}' is nested deeper than {} levels of objects and arrays (counted from its message)",
      field, kMaxJsonDepth));
}

const char* TypeWord(element_type t) {
  switch (t) {
    case element_type::ARRAY:
      return "an array";
    case element_type::OBJECT:
      return "an object";
    case element_type::INT64:
    case element_type::UINT64:
    case element_type::DOUBLE:
      return "a number";
    case element_type::STRING:
      return "a string";
    case element_type::BOOL:
      return "a boolean";
    case element_type::NULL_VALUE:
      return "null";
  }
  return "unknown";
}

// Per-message parsing state; collects errors instead of stopping at the first one.
class MessageParser {
 public:
  MessageParser(int index, std::string prefix, std::vector<FieldError>* errors)
      : index_(index), prefix_(std::move(prefix)), errors_(errors) {}

  void Error(std::string_view field, std::string message) {
    errors_->push_back({index_, prefix_ + std::string(field), std::move(message)});
    failed_ = true;
  }
  bool failed() const { return failed_; }

  // Reads an identifier that Segment clients send as a string (numbers are accepted and kept as
  // their decimal text, as Segment does).
  bool ReadId(std::string_view field, element v, std::string* out) {
    if (v.is_string()) {
      std::string_view s = v.get_string().value_unsafe();
      if (s.size() > kMaxIdBytes) {
        Error(field, fmt::format("must be at most {} bytes", kMaxIdBytes));
        return false;
      }
      out->assign(s);
      return true;
    }
    if (v.is_int64()) {
      *out = std::to_string(v.get_int64().value_unsafe());
      return true;
    }
    if (v.is_uint64()) {
      *out = std::to_string(v.get_uint64().value_unsafe());
      return true;
    }
    if (v.is_null()) return true;
    Error(field, fmt::format("must be a string, not {}", TypeWord(v.type())));
    return false;
  }

  bool ReadTime(std::string_view field, element v, int64_t* out) {
    if (v.is_null()) return true;
    if (!v.is_string()) {
      Error(field, fmt::format("must be an ISO 8601 string, not {}", TypeWord(v.type())));
      return false;
    }
    auto ms = ParseIso8601Millis(v.get_string().value_unsafe());
    if (!ms) {
      Error(field, "is not an ISO 8601 date-time");
      return false;
    }
    *out = *ms;
    return true;
  }

 private:
  int index_;
  std::string prefix_;
  std::vector<FieldError>* errors_;
  bool failed_ = false;
};

struct Envelope {
  int64_t sent_at_ms = kNoTime;
  std::string context_json;  // minified, empty if none
};

void ParseMessage(element msg, int index, std::string prefix, std::optional<ActivityType> endpoint,
                  const Envelope& env, int64_t received_at_ms, const SegmentLimits& limits,
                  ParsedRequest* out) {
  MessageParser p(index, prefix, &out->errors);
  if (!msg.is_object()) {
    p.Error("", fmt::format("message must be an object, not {}", TypeWord(msg.type())));
    return;
  }
  Activity a;
  a.received_at_ms = received_at_ms;
  std::optional<ActivityType> type = endpoint;
  bool has_context = false;
  std::string message_id;
  std::string group_id, previous_id;
  bool has_event = false;

  auto fields = msg.get_object().value_unsafe();
  // The type decides how other fields read (`name` names a page), so it is read first.
  element type_value;
  bool type_given = !fields["type"].get(type_value);
  if (type_given) {
    auto t = type_value.is_string() ? ParseActivityType(type_value.get_string().value_unsafe())
                                    : std::nullopt;
    if (!t || !IsClientActivityType(*t)) {
      p.Error("type", "must be one of track, identify, page, screen, group, alias");
    } else if (!endpoint) {
      type = t;
    }
  }
  for (auto field : fields) {
    std::string_view key = field.key;
    element v = field.value;
    if (key == "type") continue;
    if (key == "messageId") {
      p.ReadId("messageId", v, &message_id);
      continue;
    }
    if (key == "userId") {
      p.ReadId("userId", v, &a.user_id);
      continue;
    }
    if (key == "anonymousId") {
      p.ReadId("anonymousId", v, &a.anonymous_id);
      continue;
    }
    if (key == "event" || key == "name") {
      // `event` names a track call; `name` names a page or screen. Other calls keep `name` as a
      // plain field.
      bool is_event_field = key == "event";
      bool names_this =
          is_event_field
              ? (!type || *type == ActivityType::kTrack)
              : (type && (*type == ActivityType::kPage || *type == ActivityType::kScreen));
      if (names_this && a.event.empty()) {
        if (v.is_string()) {
          a.event.assign(v.get_string().value_unsafe());
          has_event = is_event_field;
        } else if (!v.is_null()) {
          p.Error(key, fmt::format("must be a string, not {}", TypeWord(v.type())));
        }
        continue;
      }
      // Fall through: kept as an ordinary field.
    }
    if (key == "timestamp") {
      p.ReadTime("timestamp", v, &a.original_timestamp_ms);
      continue;
    }
    if (key == "sentAt") {
      p.ReadTime("sentAt", v, &a.sent_at_ms);
      continue;
    }
    if (key == "receivedAt" || key == "originalTimestamp" || key == "writeKey") {
      continue;  // Set by the server, or credentials: never stored from the client.
    }
    if (key == "properties" || key == "traits" || key == "context" || key == "integrations") {
      if (!v.is_object() && !v.is_null()) {
        p.Error(key, fmt::format("must be an object, not {}", TypeWord(v.type())));
        continue;
      }
      if (key == "context") has_context = !v.is_null();
    }
    if (key == "groupId" && !p.ReadId("groupId", v, &group_id)) continue;
    if (key == "previousId" && !p.ReadId("previousId", v, &previous_id)) continue;
    if (!a.fields_json.empty()) a.fields_json.push_back(',');
    AppendJsonString(&a.fields_json, key);
    a.fields_json.push_back(':');
    a.fields_json.append(simdjson::minify(v));
  }

  if (!type) {
    if (!type_given) p.Error("type", "is required in a batch message");
  } else {
    a.type = *type;
    if (a.type == ActivityType::kAlias) {
      if (a.user_id.empty()) p.Error("userId", "is required for alias");
      if (previous_id.empty()) p.Error("previousId", "is required for alias");
    } else if (a.user_id.empty() && a.anonymous_id.empty()) {
      p.Error("userId", "userId or anonymousId is required");
    }
    if (a.type == ActivityType::kTrack && (!has_event || a.event.empty())) {
      p.Error("event", "is required for track");
    }
    if (a.type == ActivityType::kGroup && group_id.empty()) {
      p.Error("groupId", "is required for group");
    }
  }
  if (!has_context && !env.context_json.empty()) {
    if (!a.fields_json.empty()) a.fields_json.push_back(',');
    a.fields_json.append("\"context\":");
    a.fields_json.append(env.context_json);
  }
  if (a.sent_at_ms == kNoTime) a.sent_at_ms = env.sent_at_ms;

  // Clock-skew correction as Segment does it: the client's clock is off by (sentAt - now).
  if (a.original_timestamp_ms == kNoTime) {
    a.timestamp_ms = received_at_ms;
  } else if (a.sent_at_ms != kNoTime) {
    a.timestamp_ms = received_at_ms - (a.sent_at_ms - a.original_timestamp_ms);
  } else {
    a.timestamp_ms = a.original_timestamp_ms;
  }
  a.message_id = MessageId(message_id.empty() ? GenerateMessageId() : std::move(message_id));

  size_t size = a.fields_json.size() + a.user_id.size() + a.anonymous_id.size() + a.event.size() +
                a.message_id.str().size();
  if (size > limits.max_message_bytes) {
    p.Error("", fmt::format("message is {} bytes; the limit is {} bytes", size,
                            limits.max_message_bytes));
  }
  if (!p.failed()) out->activities.push_back(std::move(a));
}

}  // namespace

std::string GenerateMessageId() {
  thread_local std::mt19937_64 rng(std::random_device{}());
  uint64_t hi = rng(), lo = rng();
  return fmt::format("fw-{:016x}{:016x}", hi, lo);
}

Result<ParsedRequest> ParseSegmentRequest(std::string_view body,
                                          std::optional<ActivityType> endpoint,
                                          int64_t received_at_ms, const SegmentLimits& limits) {
  simdjson::dom::parser& parser = ParserFor(/*batch=*/!endpoint);
  if (parser.max_depth() !=
      kMaxJsonDepth + kSimdjsonDepthOffset + (endpoint ? 0 : kBatchEnvelopeDepth)) {
    return Unavailable("the JSON parser could not allocate its buffers (out of memory)");
  }
  element root;
  auto err = parser.parse(body.data(), body.size(), true).get(root);
  if (err == simdjson::DEPTH_ERROR) return TooDeep(TooDeepPath(body, /*batch=*/!endpoint));
  if (err) {
    return InvalidArgument(fmt::format("body is not valid JSON: {}", simdjson::error_message(err)));
  }
  if (!root.is_object()) {
    return InvalidArgument(
        fmt::format("body must be a JSON object, not {}", TypeWord(root.type())));
  }
  ParsedRequest out;
  auto obj = root.get_object().value_unsafe();
  element wk;
  if (!obj["writeKey"].get(wk) && wk.is_string()) {
    out.body_write_key.assign(wk.get_string().value_unsafe());
  }
  if (endpoint) {
    ParseMessage(root, 0, "", endpoint, Envelope{}, received_at_ms, limits, &out);
    for (auto& e : out.errors) {
      if (e.field.empty()) e.field = "body";
    }
    return out;
  }

  Envelope env;
  element batch;
  if (obj["batch"].get(batch)) return InvalidArgument("field 'batch' is required");
  if (!batch.is_array()) {
    return InvalidArgument(
        fmt::format("field 'batch' must be an array, not {}", TypeWord(batch.type())));
  }
  element v;
  if (!obj["sentAt"].get(v) && !v.is_null()) {
    auto ms = v.is_string() ? ParseIso8601Millis(v.get_string().value_unsafe()) : std::nullopt;
    if (!ms) return InvalidArgument("field 'sentAt' is not an ISO 8601 date-time");
    env.sent_at_ms = *ms;
  }
  if (!obj["context"].get(v) && !v.is_null()) {
    if (!v.is_object()) return InvalidArgument("field 'context' must be an object");
    // Copied into every message, where it sits one level below the message's root.
    if (1 + Nesting(v, kMaxJsonDepth) > kMaxJsonDepth) return TooDeep("context");
    env.context_json = simdjson::minify(v);
  }
  auto arr = batch.get_array().value_unsafe();
  size_t n = arr.size();
  if (n == 0) return InvalidArgument("field 'batch' must not be empty");
  if (n > limits.max_batch_messages) {
    return InvalidArgument(fmt::format("field 'batch' has {} messages; the limit is {}", n,
                                       limits.max_batch_messages));
  }
  out.activities.reserve(n);
  int index = 0;
  for (element msg : arr) {
    ParseMessage(msg, index, fmt::format("batch[{}].", index), std::nullopt, env, received_at_ms,
                 limits, &out);
    ++index;
  }
  // Field paths of whole-message errors end in '.'; trim it ("batch[3]").
  for (auto& e : out.errors) {
    if (!e.field.empty() && e.field.back() == '.') e.field.pop_back();
  }
  return out;
}

}  // namespace fairway::model
