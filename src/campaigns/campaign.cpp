#include "campaigns/campaign.h"

#include <date/tz.h>
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>

#include "campaigns/definition_parser.h"
#include "common/time_format.h"
#include "model/json_limits.h"

namespace fairway::campaigns {

namespace {

bool GlobMatch(std::string_view pattern, std::string_view text) {
  // Iterative '*' matching with backtracking to the last star.
  size_t p = 0, t = 0, star = std::string_view::npos, mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (p < pattern.size() && pattern[p] == text[t]) {
      ++p;
      ++t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

std::optional<int64_t> AsTime(const FieldValue& v) {
  if (v.kind == FieldValue::Kind::kNumber) return static_cast<int64_t>(v.number);
  if (v.kind == FieldValue::Kind::kString) return ParseIso8601Millis(v.text);
  return std::nullopt;
}

std::optional<double> AsNumber(const FieldValue& v) {
  if (v.kind == FieldValue::Kind::kNumber) return v.number;
  if (v.kind == FieldValue::Kind::kString && !v.text.empty()) {
    char* end = nullptr;
    double d = std::strtod(v.text.c_str(), &end);
    if (end == v.text.c_str() + v.text.size() && std::isfinite(d)) return d;
  }
  return std::nullopt;
}

}  // namespace

const std::string& FieldValue::Lowered() const {
  if (!lowered_) lowered_ = Lower(text);
  return *lowered_;
}

FieldValue FieldValue::String(std::string s) {
  FieldValue v;
  v.kind = Kind::kString;
  v.text = std::move(s);
  return v;
}

std::string NumberText(double d) {
  if (std::trunc(d) == d && std::abs(d) < 9e15) return std::to_string(static_cast<int64_t>(d));
  return fmt::format("{}", d);  // shortest text that reads back as d: "9.99", not "9.99E0"
}

FieldValue FieldValue::Number(double d) {
  FieldValue v;
  v.kind = Kind::kNumber;
  v.number = d;
  v.text = NumberText(d);
  return v;
}

FieldValue FieldValue::FromJson(std::string_view text) {
  FieldValue v;
  json::error_code ec;
  json::value jv = json::parse(text, ec, {}, model::JsonParseOptions());
  if (ec) {
    v.kind = Kind::kOther;
    v.text = std::string(text);
    return v;
  }
  switch (jv.kind()) {
    case json::kind::null:
      v.kind = Kind::kNull;
      break;
    case json::kind::string:
      v.kind = Kind::kString;
      v.text = std::string(jv.get_string());
      break;
    case json::kind::int64:
    case json::kind::uint64:
      v.kind = Kind::kNumber;
      v.number = jv.to_number<double>();
      v.text = json::serialize(jv);
      break;
    case json::kind::double_:
      v.kind = Kind::kNumber;
      v.number = jv.get_double();
      v.text = NumberText(v.number);
      break;
    case json::kind::bool_:
      v.kind = Kind::kBool;
      v.text = jv.get_bool() ? "true" : "false";
      break;
    default:
      v.kind = Kind::kOther;
      v.text = std::string(text);
      break;
  }
  return v;
}

bool ValueTest::Test(const FieldValue& v, int64_t now_ms) const {
  const bool empty = v.kind == FieldValue::Kind::kMissing || v.kind == FieldValue::Kind::kNull ||
                     (v.kind == FieldValue::Kind::kString && v.text.empty()) ||
                     (v.kind == FieldValue::Kind::kOther && v.text == "[]");
  switch (op) {
    case Op::kIsEmpty:
      return empty;
    case Op::kIsNotEmpty:
      return !empty;
    default:
      break;
  }
  if (v.kind == FieldValue::Kind::kMissing || v.kind == FieldValue::Kind::kNull) {
    return op == Op::kIsNot || op == Op::kNotContains;
  }
  auto text_any = [&](auto pred) {
    const std::string& lower = v.Lowered();
    return std::any_of(text.begin(), text.end(),
                       [&](const std::string& t) { return pred(lower, t); });
  };
  auto equals = [&] {
    if (auto n = AsNumber(v); n && v.kind == FieldValue::Kind::kNumber) {
      if (std::any_of(numbers.begin(), numbers.end(), [&](double d) { return d == *n; })) {
        return true;
      }
    }
    return text_any([](const std::string& a, const std::string& b) { return a == b; });
  };
  switch (op) {
    case Op::kIs:
      return equals();
    case Op::kIsNot:
      return !equals();
    case Op::kContains:
      return text_any([](const std::string& a, const std::string& b) {
        return a.find(b) != std::string::npos;
      });
    case Op::kNotContains:
      return !text_any([](const std::string& a, const std::string& b) {
        return a.find(b) != std::string::npos;
      });
    case Op::kStartsWith:
      return text_any([](const std::string& a, const std::string& b) { return a.starts_with(b); });
    case Op::kEndsWith:
      return text_any([](const std::string& a, const std::string& b) { return a.ends_with(b); });
    case Op::kMatches:
      return text_any([](const std::string& a, const std::string& b) { return GlobMatch(b, a); });
    case Op::kGreaterThan:
    case Op::kLessThan:
    case Op::kAtLeast:
    case Op::kAtMost:
    case Op::kBetween: {
      auto n = AsNumber(v);
      if (!n || numbers.empty()) return false;
      switch (op) {
        case Op::kGreaterThan:
          return *n > numbers[0];
        case Op::kLessThan:
          return *n < numbers[0];
        case Op::kAtLeast:
          return *n >= numbers[0];
        case Op::kAtMost:
          return *n <= numbers[0];
        default:
          return numbers.size() == 2 && *n >= numbers[0] && *n <= numbers[1];
      }
    }
    case Op::kInPastDays: {
      auto t = AsTime(v);
      return t && *t <= now_ms && *t >= now_ms - days * 86'400'000;
    }
    case Op::kBefore: {
      auto t = AsTime(v);
      return t && *t < time_ms;
    }
    case Op::kAfter: {
      auto t = AsTime(v);
      return t && *t > time_ms;
    }
    default:
      return false;
  }
}

std::string_view ActionKindName(ActionKind k) {
  switch (k) {
    case ActionKind::kSendEmail:
      return "send_email";
    case ActionKind::kSendAlert:
      return "send_alert";
    case ActionKind::kChangeScore:
      return "change_score";
    case ActionKind::kChangeDataValue:
      return "change_data_value";
    case ActionKind::kAddToList:
      return "add_to_list";
    case ActionKind::kRemoveFromList:
      return "remove_from_list";
    case ActionKind::kAddTag:
      return "add_tag";
    case ActionKind::kRemoveTag:
      return "remove_tag";
    case ActionKind::kChangeLifecycleStage:
      return "change_lifecycle_stage";
    case ActionKind::kChangeOwner:
      return "change_owner";
    case ActionKind::kAddToAccount:
      return "add_to_account";
    case ActionKind::kWait:
      return "wait";
    case ActionKind::kCallWebhook:
      return "call_webhook";
    case ActionKind::kRequestCampaign:
      return "request_campaign";
    case ActionKind::kRemoveFromFlow:
      return "remove_from_flow";
    case ActionKind::kInterestingMoment:
      return "interesting_moment";
    case ActionKind::kCreateCrmTask:
      return "create_crm_task";
    case ActionKind::kDeleteLead:
      return "delete_lead";
  }
  return "unknown";
}

bool ValidCampaignId(std::string_view id) {
  if (id.empty() || id.size() > 63) return false;
  auto ok_first = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!ok_first(id[0])) return false;
  return std::all_of(id.begin() + 1, id.end(),
                     [&](char c) { return ok_first(c) || c == '_' || c == '-'; });
}

namespace {

// "90s", "15m", "2h", "3d", "1w", or combinations ("1d12h").
std::optional<int64_t> ParseDuration(std::string_view s) {
  int64_t total = 0;
  size_t i = 0;
  if (s.empty()) return std::nullopt;
  while (i < s.size()) {
    size_t start = i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    if (start == i || i - start > 9 || i >= s.size()) return std::nullopt;
    int64_t n = std::stoll(std::string(s.substr(start, i - start)));
    int64_t unit = 0;
    switch (s[i]) {
      case 's':
        unit = 1'000;
        break;
      case 'm':
        unit = 60'000;
        break;
      case 'h':
        unit = 3'600'000;
        break;
      case 'd':
        unit = 86'400'000;
        break;
      case 'w':
        unit = 7 * 86'400'000LL;
        break;
      default:
        return std::nullopt;
    }
    total += n * unit;
    ++i;
  }
  return total;
}

std::optional<Action> ParseAction(DefinitionParser& p, const json::value& v,
                                  const std::string& path) {
  auto* o = p.Object(v, path);
  if (!o) return std::nullopt;
  auto kind = p.String(*o, "action", path, true, 64);
  if (!kind) return std::nullopt;
  Action a;
  auto only = [&](std::initializer_list<std::string_view> keys) {
    return p.OnlyKeys(*o, path, keys);
  };
  auto str = [&](std::string_view key, bool required, size_t max = 4096) {
    return p.String(*o, key, path, required, max).value_or("");
  };
  if (*kind == "send_email") {
    a.kind = ActionKind::kSendEmail;
    if (!only({"action", "subject", "body", "from", "to", "operational"})) return std::nullopt;
    a.subject = str("subject", true, 900);
    a.body = str("body", true, 256 * 1024);
    a.from = str("from", false, 254);
    a.to = str("to", false, 254);
    if (a.to.empty()) a.to = "{{lead.email}}";
    if (!CheckAddress(p, a.from, DefinitionParser::At(path, "from")) ||
        !CheckAddress(p, a.to, DefinitionParser::At(path, "to"))) {
      return std::nullopt;
    }
    a.operational = p.Bool(*o, "operational", path).value_or(false);
  } else if (*kind == "send_alert") {
    a.kind = ActionKind::kSendAlert;
    if (!only({"action", "subject", "body", "from", "to"})) return std::nullopt;
    a.subject = str("subject", true, 900);
    a.body = str("body", true, 256 * 1024);
    a.from = str("from", false, 254);
    a.to = str("to", false, 254);
    if (a.to.empty()) a.to = "{{lead.owner}}";
    if (!CheckAddress(p, a.from, DefinitionParser::At(path, "from")) ||
        !CheckAddress(p, a.to, DefinitionParser::At(path, "to"))) {
      return std::nullopt;
    }
  } else if (*kind == "change_score") {
    a.kind = ActionKind::kChangeScore;
    if (!only({"action", "change"})) return std::nullopt;
    auto n = p.Int(*o, "change", path, true, -1'000'000, 1'000'000);
    if (!n) return std::nullopt;
    if (*n == 0) {
      p.Fail(DefinitionParser::At(path, "change"), "must not be 0");
      return std::nullopt;
    }
    a.score_change = *n;
  } else if (*kind == "change_data_value") {
    a.kind = ActionKind::kChangeDataValue;
    if (!only({"action", "field", "op", "value"})) return std::nullopt;
    a.field = str("field", true, 200);
    std::string op = str("op", false, 16);
    if (op.empty() || op == "set") {
      a.value_op = Action::ValueOp::kSet;
      auto* value = o->if_contains("value");
      if (!value) {
        p.Fail(DefinitionParser::At(path, "value"), "is required");
        return std::nullopt;
      }
      if (value->is_object() || value->is_array()) {
        p.Fail(DefinitionParser::At(path, "value"), "must be a string, number, boolean or null");
        return std::nullopt;
      }
      a.value_json = json::serialize(*value);
    } else if (op == "increment") {
      a.value_op = Action::ValueOp::kIncrement;
      auto* value = o->if_contains("value");
      if (!value || !value->is_number()) {
        p.Fail(DefinitionParser::At(path, "value"), "must be a number");
        return std::nullopt;
      }
      a.increment = value->to_number<double>();
    } else if (op == "clear") {
      a.value_op = Action::ValueOp::kClear;
    } else {
      p.Fail(DefinitionParser::At(path, "op"), "must be one of set, increment, clear");
      return std::nullopt;
    }
  } else if (*kind == "add_to_list" || *kind == "remove_from_list") {
    a.kind = *kind == "add_to_list" ? ActionKind::kAddToList : ActionKind::kRemoveFromList;
    if (!only({"action", "list"})) return std::nullopt;
    a.name = str("list", true, 200);
  } else if (*kind == "add_tag" || *kind == "remove_tag") {
    a.kind = *kind == "add_tag" ? ActionKind::kAddTag : ActionKind::kRemoveTag;
    if (!only({"action", "tag"})) return std::nullopt;
    a.name = str("tag", true, 200);
  } else if (*kind == "change_lifecycle_stage") {
    a.kind = ActionKind::kChangeLifecycleStage;
    if (!only({"action", "stage"})) return std::nullopt;
    a.field = "lifecycle_stage";
    a.value_json = str("stage", true, 200);
  } else if (*kind == "change_owner") {
    a.kind = ActionKind::kChangeOwner;
    if (!only({"action", "owner"})) return std::nullopt;
    a.field = "owner";
    a.value_json = str("owner", true, 254);
    if (!CheckAddress(p, a.value_json, DefinitionParser::At(path, "owner"))) return std::nullopt;
  } else if (*kind == "add_to_account") {
    a.kind = ActionKind::kAddToAccount;
    if (!only({"action", "account"})) return std::nullopt;
    a.name = str("account", true, 200);
  } else if (*kind == "wait") {
    a.kind = ActionKind::kWait;
    if (!only({"action", "duration", "until", "at", "timezone"})) return std::nullopt;
    int given = o->contains("duration") + o->contains("until") + o->contains("at");
    if (given != 1) {
      p.Fail(path, "a wait needs exactly one of duration, until, at");
      return std::nullopt;
    }
    if (o->contains("duration")) {
      std::string d = str("duration", true, 32);
      auto ms = ParseDuration(d);
      if (!ms || *ms <= 0 || *ms > 3650LL * 86'400'000) {
        p.Fail(DefinitionParser::At(path, "duration"),
               "must be like 90s, 15m, 2h, 3d, 1w or 1d12h (at most 10 years)");
        return std::nullopt;
      }
      a.wait_ms = *ms;
      a.wait_kind = Action::WaitKind::kDuration;
    } else if (o->contains("until")) {
      auto ms = ParseIso8601Millis(str("until", true, 64));
      if (!ms) {
        p.Fail(DefinitionParser::At(path, "until"), "must be an ISO 8601 date or time");
        return std::nullopt;
      }
      a.wait_until_ms = *ms;
      a.wait_kind = Action::WaitKind::kUntil;
    } else {
      std::string at = str("at", true, 8);
      int h = -1, m = -1;
      if (at.size() == 5 && at[2] == ':' && std::isdigit(at[0]) && std::isdigit(at[1]) &&
          std::isdigit(at[3]) && std::isdigit(at[4])) {
        h = (at[0] - '0') * 10 + (at[1] - '0');
        m = (at[3] - '0') * 10 + (at[4] - '0');
      }
      if (h < 0 || h > 23 || m < 0 || m > 59) {
        p.Fail(DefinitionParser::At(path, "at"), "must be a time of day, HH:MM");
        return std::nullopt;
      }
      a.wait_minute_of_day = h * 60 + m;
      a.wait_kind = Action::WaitKind::kTimeOfDay;
      a.wait_timezone = str("timezone", false, 64);
      if (a.wait_timezone.empty()) a.wait_timezone = "lead";
      if (a.wait_timezone != "lead" && a.wait_timezone != "tenant") {
        bool known = false;
        try {
          known = date::locate_zone(a.wait_timezone) != nullptr;
        } catch (const std::exception&) {
          known = false;
        }
        if (!known) {
          p.Fail(DefinitionParser::At(path, "timezone"),
                 "must be lead, tenant or an IANA time zone");
          return std::nullopt;
        }
      }
    }
  } else if (*kind == "call_webhook") {
    a.kind = ActionKind::kCallWebhook;
    if (!only({"action", "method", "url", "headers", "body"})) return std::nullopt;
    a.method = str("method", false, 8);
    if (a.method.empty()) a.method = "POST";
    static const std::string_view kMethods[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};
    if (std::find(std::begin(kMethods), std::end(kMethods), a.method) == std::end(kMethods)) {
      p.Fail(DefinitionParser::At(path, "method"), "must be one of GET, POST, PUT, PATCH, DELETE");
      return std::nullopt;
    }
    a.url = str("url", true, 2048);
    if (!p.failed() && !a.url.starts_with("http://") && !a.url.starts_with("https://") &&
        !a.url.starts_with("{{")) {
      p.Fail(DefinitionParser::At(path, "url"), "must be an http:// or https:// URL");
      return std::nullopt;
    }
    for (auto& [k, val] : p.StringMap(*o, "headers", path)) {
      for (char c : k) {
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') {
          p.Fail(DefinitionParser::At(DefinitionParser::At(path, "headers"), k),
                 "is not a valid header name");
          return std::nullopt;
        }
      }
      static const std::string_view kReserved[] = {
          "idempotency-key", "x-fairway-signature", "user-agent", "host",
          "content-length",  "transfer-encoding",   "expect"};
      if (std::find(std::begin(kReserved), std::end(kReserved), Lower(k)) != std::end(kReserved)) {
        p.Fail(DefinitionParser::At(DefinitionParser::At(path, "headers"), k),
               "is set by Fairway itself");
        return std::nullopt;
      }
      a.headers.emplace_back(k, val);
    }
    if (auto* body = o->if_contains("body")) {
      // A JSON object or array body is sent as JSON (its strings are templates).
      a.body = body->is_string() ? std::string(body->get_string()) : json::serialize(*body);
      if (!body->is_string()) {
        bool has_type = std::any_of(a.headers.begin(), a.headers.end(),
                                    [](const auto& h) { return Lower(h.first) == "content-type"; });
        if (!has_type) a.headers.emplace_back("Content-Type", "application/json");
      }
    }
  } else if (*kind == "request_campaign") {
    a.kind = ActionKind::kRequestCampaign;
    if (!only({"action", "campaign", "tokens"})) return std::nullopt;
    a.name = str("campaign", true, 63);
    if (!p.failed() && !ValidCampaignId(a.name)) {
      p.Fail(DefinitionParser::At(path, "campaign"), "is not a valid campaign id");
      return std::nullopt;
    }
    a.tokens = p.StringMap(*o, "tokens", path);
  } else if (*kind == "remove_from_flow") {
    a.kind = ActionKind::kRemoveFromFlow;
    if (!only({"action", "campaigns"})) return std::nullopt;
    if (auto* c = o->if_contains("campaigns"); c && !c->is_null()) {
      std::string cp = DefinitionParser::At(path, "campaigns");
      if (!c->is_array()) {
        p.Fail(cp, "must be an array of campaign ids (omit it for all other campaigns)");
        return std::nullopt;
      }
      for (size_t i = 0; i < c->get_array().size(); ++i) {
        const auto& x = c->get_array()[i];
        if (!x.is_string() || !ValidCampaignId(x.get_string())) {
          p.Fail(DefinitionParser::Index(cp, i), "is not a valid campaign id");
          return std::nullopt;
        }
        a.campaigns.emplace_back(x.get_string());
      }
    }
  } else if (*kind == "interesting_moment") {
    a.kind = ActionKind::kInterestingMoment;
    if (!only({"action", "moment_type", "description"})) return std::nullopt;
    a.name = str("moment_type", false, 64);
    if (a.name.empty()) a.name = "milestone";
    a.body = str("description", true, 2000);
  } else if (*kind == "create_crm_task") {
    a.kind = ActionKind::kCreateCrmTask;
    if (!only({"action", "subject", "body", "owner", "due_in_days"})) return std::nullopt;
    a.subject = str("subject", true, 900);
    a.body = str("body", false, 16 * 1024);
    a.to = str("owner", false, 254);
    if (a.to.empty()) a.to = "{{lead.owner}}";
    a.due_in_days = p.Int(*o, "due_in_days", path, false, 0, 365).value_or(0);
  } else if (*kind == "delete_lead") {
    a.kind = ActionKind::kDeleteLead;
    if (!only({"action"})) return std::nullopt;
  } else {
    p.Fail(DefinitionParser::At(path, "action"),
           "must be one of send_email, send_alert, change_score, change_data_value, "
           "add_to_list, remove_from_list, add_tag, remove_tag, change_lifecycle_stage, "
           "change_owner, add_to_account, wait, call_webhook, request_campaign, "
           "remove_from_flow, interesting_moment, create_crm_task, delete_lead");
    return std::nullopt;
  }
  if (p.failed()) return std::nullopt;
  return a;
}

std::optional<Step> ParseStep(DefinitionParser& p, const json::value& v, const std::string& path) {
  auto* o = p.Object(v, path);
  if (!o) return std::nullopt;
  Step s;
  if (!o->contains("choices")) {
    auto a = ParseAction(p, v, path);
    if (!a) return std::nullopt;
    s.action = std::move(*a);
    return s;
  }
  if (!p.OnlyKeys(*o, path, {"choices", "default"})) return std::nullopt;
  std::string cp = DefinitionParser::At(path, "choices");
  const json::value& choices = o->at("choices");
  if (!choices.is_array() || choices.get_array().empty() ||
      choices.get_array().size() > kMaxChoices) {
    p.Fail(cp, fmt::format("must list 1 to {} choices", kMaxChoices));
    return std::nullopt;
  }
  for (size_t i = 0; i < choices.get_array().size(); ++i) {
    std::string ip = DefinitionParser::Index(cp, i);
    auto* co = p.Object(choices.get_array()[i], ip);
    if (!co || !p.OnlyKeys(*co, ip, {"if", "then"})) return std::nullopt;
    if (!co->contains("if")) {
      p.Fail(DefinitionParser::At(ip, "if"), "is required");
      return std::nullopt;
    }
    auto when = p.ParseCondition(co->at("if"), DefinitionParser::At(ip, "if"), 0);
    if (!when) return std::nullopt;
    Choice c;
    c.when = std::move(*when);
    auto* then = co->if_contains("then");
    if (!then) {
      p.Fail(DefinitionParser::At(ip, "then"), "is required (null: do nothing)");
      return std::nullopt;
    }
    if (!then->is_null()) {
      auto a = ParseAction(p, *then, DefinitionParser::At(ip, "then"));
      if (!a) return std::nullopt;
      if (a->kind == ActionKind::kWait) {
        p.Fail(DefinitionParser::At(DefinitionParser::At(ip, "then"), "action"),
               "a wait cannot be a choice; use a wait step");
        return std::nullopt;
      }
      c.then = std::move(*a);
    }
    s.choices.push_back(std::move(c));
  }
  if (auto* d = o->if_contains("default"); d && !d->is_null()) {
    auto a = ParseAction(p, *d, DefinitionParser::At(path, "default"));
    if (!a) return std::nullopt;
    if (a->kind == ActionKind::kWait) {
      p.Fail(DefinitionParser::At(DefinitionParser::At(path, "default"), "action"),
             "a wait cannot be a choice; use a wait step");
      return std::nullopt;
    }
    s.default_action = std::move(*a);
  }
  return s;
}

}  // namespace

Result<Campaign> ParseCampaign(std::string_view text, std::string_view id) {
  if (text.size() > kMaxDefinitionBytes) {
    return InvalidArgument(
        fmt::format("body: a definition is at most {} bytes", kMaxDefinitionBytes));
  }
  json::error_code ec;
  json::value root = json::parse(text, ec, {}, model::JsonParseOptions());
  if (ec) return InvalidArgument(fmt::format("body: not valid JSON ({})", ec.message()));
  DefinitionParser p;
  auto* o = p.Object(root, "body");
  if (!o) return p.error;
  if (!p.OnlyKeys(*o, "",
                  {"id", "name", "description", "triggers", "filters", "filter_logic", "flow",
                   "qualification", "when_deactivated", "tokens", "status"})) {
    return p.error;
  }
  Campaign c;
  c.id = std::string(id);
  if (auto given = p.String(*o, "id", "", false, 63); given && *given != id) {
    p.Fail("id", fmt::format("is '{}' but the campaign is '{}'", *given, id));
  }
  c.name = p.String(*o, "name", "", true, 200).value_or("");
  p.String(*o, "description", "", false, 4000);
  if (p.failed()) return p.error;

  // Triggers: at least one (a campaign that only runs on request lists campaign_requested).
  const json::value* triggers = o->if_contains("triggers");
  if (!triggers || !triggers->is_array() || triggers->get_array().empty() ||
      triggers->get_array().size() > kMaxTriggers) {
    return InvalidArgument(fmt::format("triggers: must list 1 to {} triggers", kMaxTriggers));
  }
  for (size_t i = 0; i < triggers->get_array().size(); ++i) {
    auto t = ParseTrigger(p, triggers->get_array()[i], DefinitionParser::Index("triggers", i), id);
    if (!t) return p.error;
    c.triggers.push_back(std::move(*t));
  }

  std::vector<Condition> filters;
  if (auto* f = o->if_contains("filters"); f && !f->is_null()) {
    if (!f->is_array() || f->get_array().size() > kMaxFilters) {
      return InvalidArgument(
          fmt::format("filters: must be an array of at most {} conditions", kMaxFilters));
    }
    for (size_t i = 0; i < f->get_array().size(); ++i) {
      auto cond = p.ParseCondition(f->get_array()[i], DefinitionParser::Index("filters", i), 0);
      if (!cond) return p.error;
      filters.push_back(std::move(*cond));
    }
  }
  std::string logic = p.String(*o, "filter_logic", "", false, 1000).value_or("all");
  if (p.failed()) return p.error;
  if (!filters.empty()) {
    auto combined = p.FilterLogic(logic, std::move(filters), "filter_logic");
    if (!combined) return p.error;
    c.filter = std::move(*combined);
  } else if (logic != "all" && logic != "any") {
    return InvalidArgument("filter_logic: there are no filters to combine");
  }

  const json::value* flow = o->if_contains("flow");
  if (!flow || !flow->is_array() || flow->get_array().size() > kMaxSteps) {
    return InvalidArgument(fmt::format("flow: must be an array of at most {} steps", kMaxSteps));
  }
  for (size_t i = 0; i < flow->get_array().size(); ++i) {
    auto s = ParseStep(p, flow->get_array()[i], DefinitionParser::Index("flow", i));
    if (!s) return p.error;
    c.flow.push_back(std::move(*s));
  }

  if (auto* q = o->if_contains("qualification"); q && !q->is_null()) {
    auto* qo = p.Object(*q, "qualification");
    if (!qo || !p.OnlyKeys(*qo, "qualification", {"rule", "days"})) return p.error;
    std::string rule = p.String(*qo, "rule", "qualification", true, 32).value_or("");
    if (p.failed()) return p.error;
    if (rule == "once") {
      c.qualification = Qualification::kOnce;
    } else if (rule == "every_time") {
      c.qualification = Qualification::kEveryTime;
    } else if (rule == "every_n_days") {
      c.qualification = Qualification::kEveryNDays;
      auto days = p.Int(*qo, "days", "qualification", true, 1, 3650);
      if (!days) return p.error;
      c.qualification_days = static_cast<uint32_t>(*days);
    } else {
      return InvalidArgument("qualification.rule: must be one of once, every_time, every_n_days");
    }
    if (rule != "every_n_days" && qo->contains("days")) {
      return InvalidArgument("qualification.days: only with the every_n_days rule");
    }
  }
  std::string when = p.String(*o, "when_deactivated", "", false, 32).value_or("finish_flow");
  if (when == "finish_flow") {
    c.finish_flow_when_inactive = true;
  } else if (when == "leave_flow") {
    c.finish_flow_when_inactive = false;
  } else if (!p.failed()) {
    return InvalidArgument("when_deactivated: must be finish_flow or leave_flow");
  }
  c.tokens = p.StringMap(*o, "tokens", "");
  if (p.failed()) return p.error;
  return c;
}

}  // namespace fairway::campaigns
