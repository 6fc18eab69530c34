#include "campaigns/definition_parser.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <tuple>

#include "common/time_format.h"

namespace fairway::campaigns {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool DefinitionParser::Fail(const std::string& path, std::string_view msg) {
  if (error.ok()) error = InvalidArgument(fmt::format("{}: {}", path, msg));
  return false;
}

std::string DefinitionParser::At(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : fmt::format("{}.{}", path, key);
}

std::string DefinitionParser::Index(const std::string& path, size_t i) {
  return fmt::format("{}[{}]", path, i);
}

const json::object* DefinitionParser::Object(const json::value& v, const std::string& path) {
  if (!v.is_object()) {
    Fail(path, "must be an object");
    return nullptr;
  }
  return &v.get_object();
}

bool DefinitionParser::OnlyKeys(const json::object& o, const std::string& path,
                                std::initializer_list<std::string_view> allowed) {
  for (const auto& kv : o) {
    if (std::find(allowed.begin(), allowed.end(), kv.key()) == allowed.end()) {
      return Fail(At(path, kv.key()), "unknown field");
    }
  }
  return true;
}

std::optional<std::string> DefinitionParser::String(const json::object& o, std::string_view key,
                                                    const std::string& path, bool required,
                                                    size_t max_len) {
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

std::optional<int64_t> DefinitionParser::Int(const json::object& o, std::string_view key,
                                             const std::string& path, bool required, int64_t min,
                                             int64_t max) {
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

std::optional<bool> DefinitionParser::Bool(const json::object& o, std::string_view key,
                                           const std::string& path) {
  auto* v = o.if_contains(key);
  if (!v || v->is_null()) return std::nullopt;
  if (!v->is_bool()) {
    Fail(At(path, key), "must be true or false");
    return std::nullopt;
  }
  return v->get_bool();
}

std::map<std::string, std::string> DefinitionParser::StringMap(const json::object& o,
                                                               std::string_view key,
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

std::optional<ValueTest> DefinitionParser::Test(const json::value& v, const std::string& path,
                                                std::string_view owner_key) {
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

std::optional<Condition> DefinitionParser::ParseCondition(const json::value& v,
                                                          const std::string& path, size_t depth) {
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
        Fail(At(ap, "type"), "must be one of track, identify, page, screen, group, alias, fairway");
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

std::optional<Condition> DefinitionParser::FilterLogic(std::string_view logic,
                                                       std::vector<Condition> filters,
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

void DefinitionParser::SkipSpace(const std::string& s, size_t& pos) {
  while (pos < s.size() && s[pos] == ' ') ++pos;
}

bool DefinitionParser::Word(const std::string& s, size_t& pos, std::string_view w) {
  SkipSpace(s, pos);
  if (s.compare(pos, w.size(), w) != 0) return false;
  size_t end = pos + w.size();
  if (end < s.size() && std::isalnum(static_cast<unsigned char>(s[end]))) return false;
  pos = end;
  return true;
}

std::optional<Condition> DefinitionParser::Expr(const std::string& s, size_t& pos,
                                                const std::vector<Condition>& f,
                                                std::vector<bool>& used, const std::string& path,
                                                size_t depth) {
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

std::optional<Condition> DefinitionParser::Term(const std::string& s, size_t& pos,
                                                const std::vector<Condition>& f,
                                                std::vector<bool>& used, const std::string& path,
                                                size_t depth) {
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

std::optional<Condition> DefinitionParser::Factor(const std::string& s, size_t& pos,
                                                  const std::vector<Condition>& f,
                                                  std::vector<bool>& used, const std::string& path,
                                                  size_t depth) {
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

bool CheckAddress(DefinitionParser& p, std::string_view address, const std::string& path) {
  if (address.empty() || address.find("{{") != std::string_view::npos) return true;
  size_t at = address.find('@');
  if (at == 0 || at == std::string_view::npos || at + 1 == address.size() ||
      address.find_first_of(" \t\r\n<>,;\"") != std::string_view::npos) {
    return p.Fail(path, "must be an email address (or a template that renders one)");
  }
  return true;
}

}  // namespace fairway::campaigns
