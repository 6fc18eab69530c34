#include "campaigns/campaign.h"

#include <date/tz.h>
#include <fmt/format.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cctype>
#include <cmath>

#include "common/time_format.h"
#include "model/json_limits.h"

namespace fairway::campaigns {

namespace json = boost::json;

namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

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

// Parsing with the JSON path of the value in hand; the first error wins.
class Parser {
 public:
  Status error;

  bool Fail(const std::string& path, std::string_view msg) {
    if (error.ok()) error = InvalidArgument(fmt::format("{}: {}", path, msg));
    return false;
  }
  bool failed() const { return !error.ok(); }

  static std::string At(const std::string& path, std::string_view key) {
    return path.empty() ? std::string(key) : fmt::format("{}.{}", path, key);
  }
  static std::string Index(const std::string& path, size_t i) {
    return fmt::format("{}[{}]", path, i);
  }

  const json::object* Object(const json::value& v, const std::string& path) {
    if (!v.is_object()) {
      Fail(path, "must be an object");
      return nullptr;
    }
    return &v.get_object();
  }

  // Rejects keys outside `allowed`, so a typo never silently does nothing.
  bool OnlyKeys(const json::object& o, const std::string& path,
                std::initializer_list<std::string_view> allowed) {
    for (const auto& kv : o) {
      if (std::find(allowed.begin(), allowed.end(), kv.key()) == allowed.end()) {
        return Fail(At(path, kv.key()), "unknown field");
      }
    }
    return true;
  }

  std::optional<std::string> String(const json::object& o, std::string_view key,
                                    const std::string& path, bool required, size_t max_len = 4096) {
    auto* v = o.if_contains(key);
    if (!v || v->is_null()) {
      if (required) Fail(At(path, key), "is required");
      return std::nullopt;
    }
    if (!v->is_string()) {
      Fail(At(path, key), "must be a string");
      return std::nullopt;
    }
    std::string s(v->get_string());
    if (required && s.empty()) {
      Fail(At(path, key), "must not be empty");
      return std::nullopt;
    }
    if (s.size() > max_len) {
      Fail(At(path, key), fmt::format("must be at most {} bytes", max_len));
      return std::nullopt;
    }
    return s;
  }

  std::optional<int64_t> Int(const json::object& o, std::string_view key, const std::string& path,
                             bool required, int64_t min, int64_t max) {
    auto* v = o.if_contains(key);
    if (!v || v->is_null()) {
      if (required) Fail(At(path, key), "is required");
      return std::nullopt;
    }
    int64_t n = 0;
    if (v->is_int64()) {
      n = v->get_int64();
    } else if (v->is_uint64() && v->get_uint64() <= static_cast<uint64_t>(INT64_MAX)) {
      n = static_cast<int64_t>(v->get_uint64());
    } else if (v->is_double() && std::trunc(v->get_double()) == v->get_double() &&
               std::abs(v->get_double()) < 9e15) {
      n = static_cast<int64_t>(v->get_double());
    } else {
      Fail(At(path, key), "must be an integer");
      return std::nullopt;
    }
    if (n < min || n > max) {
      Fail(At(path, key), fmt::format("must be between {} and {}", min, max));
      return std::nullopt;
    }
    return n;
  }

  std::optional<bool> Bool(const json::object& o, std::string_view key, const std::string& path) {
    auto* v = o.if_contains(key);
    if (!v || v->is_null()) return std::nullopt;
    if (!v->is_bool()) {
      Fail(At(path, key), "must be true or false");
      return std::nullopt;
    }
    return v->get_bool();
  }

  std::map<std::string, std::string> StringMap(const json::object& o, std::string_view key,
                                               const std::string& path) {
    std::map<std::string, std::string> out;
    auto* v = o.if_contains(key);
    if (!v || v->is_null()) return out;
    auto* obj = Object(*v, At(path, key));
    if (!obj) return out;
    for (const auto& kv : *obj) {
      std::string p = At(At(path, key), kv.key());
      if (kv.key().empty() || kv.key().size() > 100) {
        Fail(p, "names must be 1 to 100 bytes");
        return out;
      }
      if (kv.value().is_string()) {
        out[std::string(kv.key())] = std::string(kv.value().get_string());
      } else if (kv.value().is_number() || kv.value().is_bool()) {
        out[std::string(kv.key())] = json::serialize(kv.value());
      } else {
        Fail(p, "must be a string, number or boolean");
        return out;
      }
    }
    return out;
  }

  // A value test: {"op": "...", "value": ...} or a bare string / number / array (= "is").
  // `owner_key` is the key of the object the test is part of ("field", "property"), if any.
  std::optional<ValueTest> Test(const json::value& v, const std::string& path,
                                std::string_view owner_key = {}) {
    ValueTest t;
    const json::value* value = &v;
    const json::object* o = v.is_object() ? &v.get_object() : nullptr;
    if (o) {
      bool ok = owner_key.empty() ? OnlyKeys(*o, path, {"op", "value", "days"})
                                  : OnlyKeys(*o, path, {"op", "value", "days", owner_key});
      if (!ok) return std::nullopt;
      auto op = String(*o, "op", path, true);
      if (!op) return std::nullopt;
      static const std::pair<std::string_view, Op> kOps[] = {
          {"is", Op::kIs},
          {"is_not", Op::kIsNot},
          {"contains", Op::kContains},
          {"not_contains", Op::kNotContains},
          {"starts_with", Op::kStartsWith},
          {"ends_with", Op::kEndsWith},
          {"matches", Op::kMatches},
          {"greater_than", Op::kGreaterThan},
          {"less_than", Op::kLessThan},
          {"at_least", Op::kAtLeast},
          {"at_most", Op::kAtMost},
          {"between", Op::kBetween},
          {"is_empty", Op::kIsEmpty},
          {"is_not_empty", Op::kIsNotEmpty},
          {"in_past_days", Op::kInPastDays},
          {"before", Op::kBefore},
          {"after", Op::kAfter},
      };
      auto it = std::find_if(std::begin(kOps), std::end(kOps),
                             [&](const auto& p) { return p.first == *op; });
      if (it == std::end(kOps)) {
        Fail(At(path, "op"),
             "must be one of is, is_not, contains, not_contains, starts_with, ends_with, "
             "matches, greater_than, less_than, at_least, at_most, between, is_empty, "
             "is_not_empty, in_past_days, before, after");
        return std::nullopt;
      }
      t.op = it->second;
      value = o->if_contains("value");
    }
    std::string vpath = o ? At(path, "value") : path;
    switch (t.op) {
      case Op::kIsEmpty:
      case Op::kIsNotEmpty:
        return t;
      case Op::kInPastDays: {
        auto d = Int(*o, "days", path, true, 1, 3650);
        if (!d) return std::nullopt;
        t.days = *d;
        return t;
      }
      case Op::kBefore:
      case Op::kAfter: {
        std::optional<int64_t> ms;
        if (value && value->is_string()) ms = ParseIso8601Millis(value->get_string());
        if (!ms) {
          Fail(vpath, "must be an ISO 8601 date or time");
          return std::nullopt;
        }
        t.time_ms = *ms;
        return t;
      }
      case Op::kGreaterThan:
      case Op::kLessThan:
      case Op::kAtLeast:
      case Op::kAtMost:
        if (!value || !value->is_number()) {
          Fail(vpath, "must be a number");
          return std::nullopt;
        }
        t.numbers.push_back(value->to_number<double>());
        return t;
      case Op::kBetween:
        if (!value || !value->is_array() || value->get_array().size() != 2 ||
            !value->get_array()[0].is_number() || !value->get_array()[1].is_number()) {
          Fail(vpath, "must be [low, high] numbers");
          return std::nullopt;
        }
        t.numbers = {value->get_array()[0].to_number<double>(),
                     value->get_array()[1].to_number<double>()};
        if (t.numbers[0] > t.numbers[1]) {
          Fail(vpath, "low must not exceed high");
          return std::nullopt;
        }
        return t;
      default:
        break;
    }
    // Text operators: one value or a list of alternatives.
    if (!value) {
      Fail(vpath, "is required");
      return std::nullopt;
    }
    auto add = [&](const json::value& x, const std::string& p) {
      if (x.is_string()) {
        if (x.get_string().empty() && t.op != Op::kIs && t.op != Op::kIsNot) {
          return Fail(p, "must not be empty");
        }
        t.text.push_back(Lower(x.get_string()));
      } else if (x.is_number() && (t.op == Op::kIs || t.op == Op::kIsNot)) {
        t.numbers.push_back(x.to_number<double>());
        t.text.push_back(json::serialize(x));
      } else if (x.is_bool() && (t.op == Op::kIs || t.op == Op::kIsNot)) {
        t.text.push_back(x.get_bool() ? "true" : "false");
      } else {
        return Fail(p, "must be a string");
      }
      return true;
    };
    if (value->is_array()) {
      const auto& arr = value->get_array();
      if (arr.empty() || arr.size() > 100) {
        Fail(vpath, "must list 1 to 100 values");
        return std::nullopt;
      }
      for (size_t i = 0; i < arr.size(); ++i) {
        if (!add(arr[i], Index(vpath, i))) return std::nullopt;
      }
    } else if (!add(*value, vpath)) {
      return std::nullopt;
    }
    return t;
  }

  std::optional<Condition> ParseCondition(const json::value& v, const std::string& path,
                                          size_t depth) {
    if (depth > kMaxConditionDepth) {
      Fail(path, fmt::format("conditions nest at most {} deep", kMaxConditionDepth));
      return std::nullopt;
    }
    auto* o = Object(v, path);
    if (!o) return std::nullopt;
    Condition c;
    auto list_of = [&](std::string_view key, Condition::Kind kind) -> std::optional<Condition> {
      const json::value& arr = o->at(key);
      std::string p = At(path, key);
      if (!arr.is_array() || arr.get_array().empty()) {
        Fail(p, "must be a non-empty array of conditions");
        return std::nullopt;
      }
      c.kind = kind;
      for (size_t i = 0; i < arr.get_array().size(); ++i) {
        auto child = ParseCondition(arr.get_array()[i], Index(p, i), depth + 1);
        if (!child) return std::nullopt;
        c.children.push_back(std::move(*child));
      }
      return c;
    };
    if (o->contains("all")) {
      if (!OnlyKeys(*o, path, {"all"})) return std::nullopt;
      return list_of("all", Condition::Kind::kAll);
    }
    if (o->contains("any")) {
      if (!OnlyKeys(*o, path, {"any"})) return std::nullopt;
      return list_of("any", Condition::Kind::kAny);
    }
    if (o->contains("not")) {
      if (!OnlyKeys(*o, path, {"not"})) return std::nullopt;
      auto child = ParseCondition(o->at("not"), At(path, "not"), depth + 1);
      if (!child) return std::nullopt;
      c.kind = Condition::Kind::kNot;
      c.children.push_back(std::move(*child));
      return c;
    }
    for (auto [key, kind, negate] :
         {std::tuple{"member_of_list", Condition::Kind::kMemberOfList, false},
          std::tuple{"not_member_of_list", Condition::Kind::kMemberOfList, true},
          std::tuple{"has_tag", Condition::Kind::kHasTag, false},
          std::tuple{"not_has_tag", Condition::Kind::kHasTag, true}}) {
      if (o->contains(key)) {
        if (!OnlyKeys(*o, path, {key})) return std::nullopt;
        auto name = String(*o, key, path, true, 200);
        if (!name) return std::nullopt;
        c.kind = kind;
        c.negate = negate;
        c.name = *name;
        return c;
      }
    }
    if (o->contains("activity")) {
      if (!OnlyKeys(*o, path, {"activity", "min_count", "max_count", "within_days"})) {
        return std::nullopt;
      }
      c.kind = Condition::Kind::kActivityHistory;
      std::string ap = At(path, "activity");
      auto* a = Object(o->at("activity"), ap);
      if (!a || !OnlyKeys(*a, ap, {"type", "name"})) return std::nullopt;
      if (auto type = String(*a, "type", ap, false)) {
        c.activity_type = model::ParseActivityType(*type);
        if (!c.activity_type) {
          Fail(At(ap, "type"),
               "must be one of track, identify, page, screen, group, alias, fairway");
          return std::nullopt;
        }
      }
      if (auto* n = a->if_contains("name")) {
        c.name_test = Test(*n, At(ap, "name"));
        if (!c.name_test) return std::nullopt;
      }
      auto min = Int(*o, "min_count", path, false, 0, 1'000'000'000);
      auto max = Int(*o, "max_count", path, false, 0, 1'000'000'000);
      auto days = Int(*o, "within_days", path, false, 1, 90);
      if (failed()) return std::nullopt;
      c.min_count = min.value_or(1);
      if (max) c.max_count = static_cast<uint64_t>(*max);
      c.within_days = static_cast<uint32_t>(days.value_or(0));
      if (c.max_count && *c.max_count < c.min_count) {
        Fail(At(path, "max_count"), "must be at least min_count");
        return std::nullopt;
      }
      return c;
    }
    if (o->contains("field")) {
      auto field = String(*o, "field", path, true, 200);
      if (!field) return std::nullopt;
      c.kind = Condition::Kind::kField;
      c.field = *field;
      auto t = Test(v, path, "field");
      if (!t) return std::nullopt;
      c.test = std::move(*t);
      return c;
    }
    Fail(path,
         "must have one of field, member_of_list, not_member_of_list, has_tag, not_has_tag, "
         "activity, all, any, not");
    return std::nullopt;
  }

  // "all", "any", or an expression over filter numbers: "1 and (2 or not 3)".
  std::optional<Condition> FilterLogic(std::string_view logic, std::vector<Condition> filters,
                                       const std::string& path) {
    Condition c;
    std::string lower = Lower(logic);
    if (lower.empty() || lower == "all" || lower == "any") {
      c.kind = lower == "any" ? Condition::Kind::kAny : Condition::Kind::kAll;
      c.children = std::move(filters);
      return c;
    }
    size_t pos = 0;
    std::vector<bool> used(filters.size());
    auto r = Expr(lower, pos, filters, used, path, 0);
    if (!r) return std::nullopt;
    SkipSpace(lower, pos);
    if (pos != lower.size()) {
      Fail(path, fmt::format("unexpected '{}' at position {}", lower.substr(pos), pos + 1));
      return std::nullopt;
    }
    for (size_t i = 0; i < used.size(); ++i) {
      if (!used[i]) {
        Fail(path, fmt::format("does not use filter {}", i + 1));
        return std::nullopt;
      }
    }
    return r;
  }

 private:
  static void SkipSpace(const std::string& s, size_t& pos) {
    while (pos < s.size() && s[pos] == ' ') ++pos;
  }
  static bool Word(const std::string& s, size_t& pos, std::string_view w) {
    SkipSpace(s, pos);
    if (s.compare(pos, w.size(), w) != 0) return false;
    size_t end = pos + w.size();
    if (end < s.size() && std::isalnum(static_cast<unsigned char>(s[end]))) return false;
    pos = end;
    return true;
  }
  // expr := term ("or" term)* ; term := factor ("and" factor)* ;
  // factor := "not" factor | "(" expr ")" | number
  std::optional<Condition> Expr(const std::string& s, size_t& pos, const std::vector<Condition>& f,
                                std::vector<bool>& used, const std::string& path, size_t depth) {
    auto first = Term(s, pos, f, used, path, depth);
    if (!first) return std::nullopt;
    Condition any;
    any.kind = Condition::Kind::kAny;
    any.children.push_back(std::move(*first));
    while (Word(s, pos, "or")) {
      auto next = Term(s, pos, f, used, path, depth);
      if (!next) return std::nullopt;
      any.children.push_back(std::move(*next));
    }
    if (any.children.size() == 1) return std::move(any.children[0]);
    return any;
  }
  std::optional<Condition> Term(const std::string& s, size_t& pos, const std::vector<Condition>& f,
                                std::vector<bool>& used, const std::string& path, size_t depth) {
    auto first = Factor(s, pos, f, used, path, depth);
    if (!first) return std::nullopt;
    Condition all;
    all.kind = Condition::Kind::kAll;
    all.children.push_back(std::move(*first));
    while (Word(s, pos, "and")) {
      auto next = Factor(s, pos, f, used, path, depth);
      if (!next) return std::nullopt;
      all.children.push_back(std::move(*next));
    }
    if (all.children.size() == 1) return std::move(all.children[0]);
    return all;
  }
  std::optional<Condition> Factor(const std::string& s, size_t& pos,
                                  const std::vector<Condition>& f, std::vector<bool>& used,
                                  const std::string& path, size_t depth) {
    if (depth > 32) {
      Fail(path, "nests too deep");
      return std::nullopt;
    }
    if (Word(s, pos, "not")) {
      auto inner = Factor(s, pos, f, used, path, depth + 1);
      if (!inner) return std::nullopt;
      Condition c;
      c.kind = Condition::Kind::kNot;
      c.children.push_back(std::move(*inner));
      return c;
    }
    SkipSpace(s, pos);
    if (pos < s.size() && s[pos] == '(') {
      ++pos;
      auto inner = Expr(s, pos, f, used, path, depth + 1);
      if (!inner) return std::nullopt;
      SkipSpace(s, pos);
      if (pos >= s.size() || s[pos] != ')') {
        Fail(path, fmt::format("expected ')' at position {}", pos + 1));
        return std::nullopt;
      }
      ++pos;
      return inner;
    }
    size_t start = pos;
    while (pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos]))) ++pos;
    if (start == pos || pos - start > 3) {
      Fail(path, fmt::format("expected a filter number at position {}", start + 1));
      return std::nullopt;
    }
    size_t n = std::stoul(s.substr(start, pos - start));
    if (n < 1 || n > f.size()) {
      Fail(path, fmt::format("filter {} does not exist (there are {})", n, f.size()));
      return std::nullopt;
    }
    used[n - 1] = true;
    return f[n - 1];
  }
};

// The trigger kinds of docs/campaigns.md and what they listen to.
std::optional<Trigger> ParseTrigger(Parser& p, const json::value& v, const std::string& path,
                                    std::string_view campaign_id) {
  auto* o = p.Object(v, path);
  if (!o) return std::nullopt;
  auto kind = p.String(*o, "type", path, true, 64);
  if (!kind) return std::nullopt;
  Trigger t;
  t.kind = *kind;
  using model::ActivityType;
  auto prop = [&](std::string_view key, std::vector<std::string> paths, bool any_path = false) {
    if (auto* x = o->if_contains(key)) {
      auto test = p.Test(*x, Parser::At(path, key));
      if (!test) return false;
      t.where.push_back({std::move(paths), std::move(*test), any_path});
    }
    return true;
  };
  auto where = [&]() {
    auto* w = o->if_contains("where");
    if (!w) return true;
    std::string wp = Parser::At(path, "where");
    if (!w->is_array()) return p.Fail(wp, "must be an array of property tests");
    for (size_t i = 0; i < w->get_array().size(); ++i) {
      std::string ip = Parser::Index(wp, i);
      auto* wo = p.Object(w->get_array()[i], ip);
      if (!wo) return false;
      auto property = p.String(*wo, "property", ip, true, 200);
      if (!property) return false;
      auto test = p.Test(w->get_array()[i], ip, "property");
      if (!test) return false;
      t.where.push_back({{*property}, std::move(*test)});
    }
    return true;
  };
  auto only = [&](std::initializer_list<std::string_view> keys) {
    return p.OnlyKeys(*o, path, keys);
  };
  bool ok = true;
  if (*kind == "visits_web_page") {
    t.type = ActivityType::kPage;
    t.name = "*";
    ok = only({"type", "url", "where"}) && prop("url", {"url", "path"}) && where();
  } else if (*kind == "fills_out_form") {
    t.type = ActivityType::kTrack;
    t.name = "Form Submitted";
    ok = only({"type", "form", "where"}) && prop("form", {"form"}) && where();
  } else if (*kind == "clicks_email_link") {
    t.type = ActivityType::kTrack;
    t.name = "Email Link Clicked";
    ok = only({"type", "email", "link", "where"}) &&
         prop("email", {"email_subject", "email_id"}, true) && prop("link", {"link_url"}) &&
         where();
  } else if (*kind == "opens_email" || *kind == "email_bounced" || *kind == "unsubscribes") {
    t.type = ActivityType::kTrack;
    t.name = *kind == "opens_email"     ? "Email Opened"
             : *kind == "email_bounced" ? "Email Bounced"
                                        : "Unsubscribed";
    ok = only({"type", "email", "where"}) && prop("email", {"email_subject", "email_id"}, true) &&
         where();
  } else if (*kind == "data_value_changes") {
    t.type = ActivityType::kFairway;
    t.name = "data_value_changed";
    auto field = p.String(*o, "field", path, true, 200);
    ok = field && only({"type", "field", "from", "to"});
    if (ok) {
      ValueTest is;
      is.op = Op::kIs;
      is.text = {Lower(*field)};
      t.where.push_back({{"field"}, std::move(is)});
      ok = prop("from", {"from"}) && prop("to", {"to"});
    }
  } else if (*kind == "score_changed") {
    t.type = ActivityType::kFairway;
    t.name = "score_changed";
    ok = only({"type", "min_change", "max_change"});
    for (auto [key, op] :
         {std::pair{"min_change", Op::kAtLeast}, std::pair{"max_change", Op::kAtMost}}) {
      if (!ok) break;
      if (auto n = p.Int(*o, key, path, false, -1'000'000'000, 1'000'000'000)) {
        ValueTest test;
        test.op = op;
        test.numbers = {static_cast<double>(*n)};
        t.where.push_back({{"change"}, std::move(test)});
      }
      ok = !p.failed();
    }
  } else if (*kind == "added_to_list") {
    t.type = ActivityType::kFairway;
    t.name = "added_to_list";
    auto list = p.String(*o, "list", path, true, 200);
    ok = list && only({"type", "list"});
    if (ok) {
      ValueTest is;
      is.text = {Lower(*list)};
      t.where.push_back({{"list"}, std::move(is)});
    }
  } else if (*kind == "lead_created") {
    t.type = ActivityType::kFairway;
    t.name = "lead_created";
    ok = only({"type"});
  } else if (*kind == "account_changed") {
    t.type = ActivityType::kGroup;
    t.name = "*";
    ok = only({"type", "where"}) && where();
  } else if (*kind == "campaign_requested") {
    // Indexed by the requested campaign, so a request reaches only its campaign.
    t.type = ActivityType::kFairway;
    t.name = fmt::format("campaign_requested/{}", campaign_id);
    ok = only({"type"});
  } else if (*kind == "track") {
    t.type = ActivityType::kTrack;
    auto event = p.String(*o, "event", path, true, 200);
    ok = event && only({"type", "event", "where"}) && where();
    if (ok) t.name = *event;
  } else if (*kind == "activity") {
    auto type = p.String(*o, "activity_type", path, true, 32);
    ok = type && only({"type", "activity_type", "name", "where"});
    if (ok) {
      auto at = model::ParseActivityType(*type);
      if (!at) {
        return p.Fail(Parser::At(path, "activity_type"),
                      "must be one of track, identify, page, screen, group, alias, fairway")
                   ? std::nullopt
                   : std::nullopt;
      }
      t.type = *at;
      auto name = p.String(*o, "name", path, false, 200);
      t.name = name && !name->empty() ? *name : "*";
      ok = !p.failed() && where();
    }
  } else {
    p.Fail(Parser::At(path, "type"),
           "must be one of visits_web_page, fills_out_form, clicks_email_link, opens_email, "
           "email_bounced, unsubscribes, data_value_changes, score_changed, added_to_list, "
           "lead_created, account_changed, campaign_requested, track, activity");
    return std::nullopt;
  }
  if (!ok || p.failed()) return std::nullopt;
  return t;
}

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

// An email address, or a template that renders one; empty passes (a default applies).
bool CheckAddress(Parser& p, std::string_view address, const std::string& path) {
  if (address.empty() || address.find("{{") != std::string_view::npos) return true;
  size_t at = address.find('@');
  if (at == 0 || at == std::string_view::npos || at + 1 == address.size() ||
      address.find_first_of(" \t\r\n<>,;\"") != std::string_view::npos) {
    return p.Fail(path, "must be an email address (or a template that renders one)");
  }
  return true;
}

std::optional<Action> ParseAction(Parser& p, const json::value& v, const std::string& path) {
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
    if (!CheckAddress(p, a.from, Parser::At(path, "from")) ||
        !CheckAddress(p, a.to, Parser::At(path, "to"))) {
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
    if (!CheckAddress(p, a.from, Parser::At(path, "from")) ||
        !CheckAddress(p, a.to, Parser::At(path, "to"))) {
      return std::nullopt;
    }
  } else if (*kind == "change_score") {
    a.kind = ActionKind::kChangeScore;
    if (!only({"action", "change"})) return std::nullopt;
    auto n = p.Int(*o, "change", path, true, -1'000'000, 1'000'000);
    if (!n) return std::nullopt;
    if (*n == 0) {
      p.Fail(Parser::At(path, "change"), "must not be 0");
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
        p.Fail(Parser::At(path, "value"), "is required");
        return std::nullopt;
      }
      if (value->is_object() || value->is_array()) {
        p.Fail(Parser::At(path, "value"), "must be a string, number, boolean or null");
        return std::nullopt;
      }
      a.value_json = json::serialize(*value);
    } else if (op == "increment") {
      a.value_op = Action::ValueOp::kIncrement;
      auto* value = o->if_contains("value");
      if (!value || !value->is_number()) {
        p.Fail(Parser::At(path, "value"), "must be a number");
        return std::nullopt;
      }
      a.increment = value->to_number<double>();
    } else if (op == "clear") {
      a.value_op = Action::ValueOp::kClear;
    } else {
      p.Fail(Parser::At(path, "op"), "must be one of set, increment, clear");
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
    if (!CheckAddress(p, a.value_json, Parser::At(path, "owner"))) return std::nullopt;
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
        p.Fail(Parser::At(path, "duration"),
               "must be like 90s, 15m, 2h, 3d, 1w or 1d12h (at most 10 years)");
        return std::nullopt;
      }
      a.wait_ms = *ms;
      a.wait_kind = Action::WaitKind::kDuration;
    } else if (o->contains("until")) {
      auto ms = ParseIso8601Millis(str("until", true, 64));
      if (!ms) {
        p.Fail(Parser::At(path, "until"), "must be an ISO 8601 date or time");
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
        p.Fail(Parser::At(path, "at"), "must be a time of day, HH:MM");
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
          p.Fail(Parser::At(path, "timezone"), "must be lead, tenant or an IANA time zone");
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
      p.Fail(Parser::At(path, "method"), "must be one of GET, POST, PUT, PATCH, DELETE");
      return std::nullopt;
    }
    a.url = str("url", true, 2048);
    if (!p.failed() && !a.url.starts_with("http://") && !a.url.starts_with("https://") &&
        !a.url.starts_with("{{")) {
      p.Fail(Parser::At(path, "url"), "must be an http:// or https:// URL");
      return std::nullopt;
    }
    for (auto& [k, val] : p.StringMap(*o, "headers", path)) {
      for (char c : k) {
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') {
          p.Fail(Parser::At(Parser::At(path, "headers"), k), "is not a valid header name");
          return std::nullopt;
        }
      }
      static const std::string_view kReserved[] = {
          "idempotency-key", "x-fairway-signature", "user-agent", "host",
          "content-length",  "transfer-encoding",   "expect"};
      if (std::find(std::begin(kReserved), std::end(kReserved), Lower(k)) != std::end(kReserved)) {
        p.Fail(Parser::At(Parser::At(path, "headers"), k), "is set by Fairway itself");
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
      p.Fail(Parser::At(path, "campaign"), "is not a valid campaign id");
      return std::nullopt;
    }
    a.tokens = p.StringMap(*o, "tokens", path);
  } else if (*kind == "remove_from_flow") {
    a.kind = ActionKind::kRemoveFromFlow;
    if (!only({"action", "campaigns"})) return std::nullopt;
    if (auto* c = o->if_contains("campaigns"); c && !c->is_null()) {
      std::string cp = Parser::At(path, "campaigns");
      if (!c->is_array()) {
        p.Fail(cp, "must be an array of campaign ids (omit it for all other campaigns)");
        return std::nullopt;
      }
      for (size_t i = 0; i < c->get_array().size(); ++i) {
        const auto& x = c->get_array()[i];
        if (!x.is_string() || !ValidCampaignId(x.get_string())) {
          p.Fail(Parser::Index(cp, i), "is not a valid campaign id");
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
    p.Fail(Parser::At(path, "action"),
           "must be one of send_email, send_alert, change_score, change_data_value, "
           "add_to_list, remove_from_list, add_tag, remove_tag, change_lifecycle_stage, "
           "change_owner, add_to_account, wait, call_webhook, request_campaign, "
           "remove_from_flow, interesting_moment, create_crm_task, delete_lead");
    return std::nullopt;
  }
  if (p.failed()) return std::nullopt;
  return a;
}

std::optional<Step> ParseStep(Parser& p, const json::value& v, const std::string& path) {
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
  std::string cp = Parser::At(path, "choices");
  const json::value& choices = o->at("choices");
  if (!choices.is_array() || choices.get_array().empty() ||
      choices.get_array().size() > kMaxChoices) {
    p.Fail(cp, fmt::format("must list 1 to {} choices", kMaxChoices));
    return std::nullopt;
  }
  for (size_t i = 0; i < choices.get_array().size(); ++i) {
    std::string ip = Parser::Index(cp, i);
    auto* co = p.Object(choices.get_array()[i], ip);
    if (!co || !p.OnlyKeys(*co, ip, {"if", "then"})) return std::nullopt;
    if (!co->contains("if")) {
      p.Fail(Parser::At(ip, "if"), "is required");
      return std::nullopt;
    }
    auto when = p.ParseCondition(co->at("if"), Parser::At(ip, "if"), 0);
    if (!when) return std::nullopt;
    Choice c;
    c.when = std::move(*when);
    auto* then = co->if_contains("then");
    if (!then) {
      p.Fail(Parser::At(ip, "then"), "is required (null: do nothing)");
      return std::nullopt;
    }
    if (!then->is_null()) {
      auto a = ParseAction(p, *then, Parser::At(ip, "then"));
      if (!a) return std::nullopt;
      if (a->kind == ActionKind::kWait) {
        p.Fail(Parser::At(Parser::At(ip, "then"), "action"),
               "a wait cannot be a choice; use a wait step");
        return std::nullopt;
      }
      c.then = std::move(*a);
    }
    s.choices.push_back(std::move(c));
  }
  if (auto* d = o->if_contains("default"); d && !d->is_null()) {
    auto a = ParseAction(p, *d, Parser::At(path, "default"));
    if (!a) return std::nullopt;
    if (a->kind == ActionKind::kWait) {
      p.Fail(Parser::At(Parser::At(path, "default"), "action"),
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
  Parser p;
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
    auto t = ParseTrigger(p, triggers->get_array()[i], Parser::Index("triggers", i), id);
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
      auto cond = p.ParseCondition(f->get_array()[i], Parser::Index("filters", i), 0);
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
    auto s = ParseStep(p, flow->get_array()[i], Parser::Index("flow", i));
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
