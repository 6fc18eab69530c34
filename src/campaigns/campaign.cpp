#include "campaigns/campaign.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>

#include "campaigns/definition_parser.h"
#include "common/time_format.h"
#include "model/generated_activities.h"
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

bool ValidCampaignId(std::string_view id) {
  if (id.empty() || id.size() > 63) return false;
  auto ok_first = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!ok_first(id[0])) return false;
  return std::all_of(id.begin() + 1, id.end(),
                     [&](char c) { return ok_first(c) || c == '_' || c == '-'; });
}

namespace {

std::optional<Step> ParseStep(DefinitionParser& p, const json::value& v, const std::string& path) {
  auto* o = p.Object(v, path);
  if (!o) return std::nullopt;
  Step s;
  if (!o->contains("choices")) {
    auto a = ParseAction(p, v, path);
    if (!a) return std::nullopt;
    s.action = std::move(a);
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
      if (a->pauses()) {
        p.Fail(DefinitionParser::At(DefinitionParser::At(ip, "then"), "action"),
               "a wait cannot be a choice; use a wait step");
        return std::nullopt;
      }
      c.then = std::move(a);
    }
    s.choices.push_back(std::move(c));
  }
  if (auto* d = o->if_contains("default"); d && !d->is_null()) {
    auto a = ParseAction(p, *d, DefinitionParser::At(path, "default"));
    if (!a) return std::nullopt;
    if (a->pauses()) {
      p.Fail(DefinitionParser::At(DefinitionParser::At(path, "default"), "action"),
             "a wait cannot be a choice; use a wait step");
      return std::nullopt;
    }
    s.default_action = std::move(a);
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
                   "qualification", "when_deactivated", "tokens", "status", "anonymous"})) {
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
  const bool visitor_trigger =
      std::any_of(c.triggers.begin(), c.triggers.end(), [](const Trigger& t) {
        return t.type == model::ActivityType::kPage || t.type == model::ActivityType::kScreen ||
               t.type == model::ActivityType::kTrack ||
               (t.type == model::ActivityType::kFairway &&
                (t.name == model::SessionStarted::kEvent || t.name == model::SessionEnded::kEvent));
      });
  std::string anonymous =
      p.String(*o, "anonymous", "", false, 32).value_or(visitor_trigger ? "defer" : "run");
  if (anonymous == "defer") {
    c.anonymous = AnonymousPolicy::kDefer;
  } else if (anonymous == "run") {
    c.anonymous = AnonymousPolicy::kRun;
  } else if (anonymous == "ignore") {
    c.anonymous = AnonymousPolicy::kIgnore;
  } else if (!p.failed()) {
    return InvalidArgument("anonymous: must be defer, run or ignore");
  }
  c.tokens = p.StringMap(*o, "tokens", "");
  if (p.failed()) return p.error;
  return c;
}

}  // namespace fairway::campaigns
