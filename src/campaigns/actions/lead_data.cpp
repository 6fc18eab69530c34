// change_score, change_data_value, change_lifecycle_stage and change_owner: changes to the
// lead's score and traits, made by generated activities (score_changed, data_value_changed) that
// the leads processor applies; later steps of the run see them at once through the overlay.

#include <boost/json.hpp>
#include <cmath>
#include <cstdlib>

#include "campaigns/actions/action_kinds.h"
#include "common/json_writer.h"
#include "model/generated_activities.h"
#include "model/json_limits.h"

namespace fairway::campaigns::actions {

namespace {

class ChangeScoreAction final : public Action {
 public:
  int64_t change = 0;

  std::string_view kind() const override { return "change_score"; }

  void Render(JsonWriter& w) const override {
    w.BeginObject().Key("action").String(kind()).Key("change").Int(change).EndObject();
  }

  Result<Outcome> Execute(ActionContext& ctx) const override {
    ctx.overlay().score_delta += change;
    EmitGenerated(ctx, model::ScoreChanged::kEvent, model::ScoreChanged{.change = change});
    return Outcome::kExecuted;
  }
};

// Sets trait `field` to `to_json` and emits data_value_changed from its current value.
Outcome ChangeTrait(ActionContext& ctx, const std::string& field, const FieldValue& from,
                    const std::string& to_json) {
  std::string from_json =
      from.kind == FieldValue::Kind::kMissing || from.kind == FieldValue::Kind::kNull ? "null"
      : from.kind == FieldValue::Kind::kString ? Quoted(from.text)
                                               : from.text;
  ctx.overlay().traits[field] = to_json;
  EmitGenerated(ctx, model::DataValueChanged::kEvent,
                model::DataValueChanged{.field = field,
                                        .from_json = from_json,
                                        .to_json = to_json,
                                        .origin = model::DataValueChanged::Origin::kCampaign});
  return Outcome::kExecuted;
}

class ChangeDataValueAction final : public Action {
 public:
  enum class ValueOp : uint8_t { kSet, kIncrement, kClear };

  std::string field;
  ValueOp op = ValueOp::kSet;
  // kSet: a JSON value; a string value is a template.
  std::string value_json;
  // kIncrement.
  double increment = 0;

  std::string_view kind() const override { return "change_data_value"; }

  void Render(JsonWriter& w) const override {
    w.BeginObject().Key("action").String(kind()).Key("field").String(field);
    switch (op) {
      case ValueOp::kSet:
        w.Key("op").String("set").Key("value").Raw(value_json);
        break;
      case ValueOp::kIncrement:
        w.Key("op").String("increment").Key("value").Double(increment);
        break;
      case ValueOp::kClear:
        w.Key("op").String("clear");
        break;
    }
    w.EndObject();
  }

  Result<Outcome> Execute(ActionContext& ctx) const override {
    FieldValue from = ctx.LeadField(field);
    std::string to_json;
    if (op == ValueOp::kClear) {
      to_json = "null";
    } else if (op == ValueOp::kIncrement) {
      double base = from.kind == FieldValue::Kind::kNumber ? from.number : 0;
      if (from.kind == FieldValue::Kind::kString) {
        char* end = nullptr;
        double d = std::strtod(from.text.c_str(), &end);
        if (end == from.text.c_str() + from.text.size() && std::isfinite(d)) base = d;
      }
      double sum = base + increment;
      to_json = std::trunc(sum) == sum && std::abs(sum) < 1e15
                    ? std::to_string(static_cast<int64_t>(sum))
                    : json::serialize(json::value(sum));
    } else if (value_json.size() >= 2 && value_json.front() == '"') {
      json::error_code ec;
      json::value v = json::parse(value_json, ec, {}, model::JsonParseOptions());
      to_json = ec ? value_json : Quoted(ctx.Render(v.get_string()));
    } else {
      to_json = value_json;
    }
    return ChangeTrait(ctx, field, from, to_json);
  }
};

// change_lifecycle_stage and change_owner: a string trait set from a template.
class SetTraitAction final : public Action {
 public:
  std::string_view name;  // the kind
  std::string_view key;   // its JSON field
  std::string field;      // the trait
  std::string value;      // a template

  std::string_view kind() const override { return name; }

  void Render(JsonWriter& w) const override {
    w.BeginObject().Key("action").String(kind()).Key(key).String(value).EndObject();
  }

  Result<Outcome> Execute(ActionContext& ctx) const override {
    FieldValue from = ctx.LeadField(field);
    return ChangeTrait(ctx, field, from, Quoted(ctx.Render(value)));
  }
};

}  // namespace

std::shared_ptr<const Action> ParseChangeScore(DefinitionParser& p, const json::object& o,
                                               const std::string& path) {
  ActionInput in{p, o, path};
  if (!in.Only({"action", "change"})) return nullptr;
  auto n = p.Int(o, "change", path, true, -1'000'000, 1'000'000);
  if (!n) return nullptr;
  if (*n == 0) {
    p.Fail(in.At("change"), "must not be 0");
    return nullptr;
  }
  auto a = std::make_shared<ChangeScoreAction>();
  a->change = *n;
  return a;
}

std::shared_ptr<const Action> ParseChangeDataValue(DefinitionParser& p, const json::object& o,
                                                   const std::string& path) {
  using ValueOp = ChangeDataValueAction::ValueOp;
  ActionInput in{p, o, path};
  if (!in.Only({"action", "field", "op", "value"})) return nullptr;
  auto a = std::make_shared<ChangeDataValueAction>();
  a->field = in.Str("field", true, 200);
  std::string op = in.Str("op", false, 16);
  if (op.empty() || op == "set") {
    a->op = ValueOp::kSet;
    auto* value = o.if_contains("value");
    if (!value) {
      p.Fail(in.At("value"), "is required");
      return nullptr;
    }
    if (value->is_object() || value->is_array()) {
      p.Fail(in.At("value"), "must be a string, number, boolean or null");
      return nullptr;
    }
    a->value_json = json::serialize(*value);
  } else if (op == "increment") {
    a->op = ValueOp::kIncrement;
    auto* value = o.if_contains("value");
    if (!value || !value->is_number()) {
      p.Fail(in.At("value"), "must be a number");
      return nullptr;
    }
    a->increment = value->to_number<double>();
  } else if (op == "clear") {
    a->op = ValueOp::kClear;
  } else {
    p.Fail(in.At("op"), "must be one of set, increment, clear");
    return nullptr;
  }
  return a;
}

std::shared_ptr<const Action> ParseChangeLifecycleStage(DefinitionParser& p, const json::object& o,
                                                        const std::string& path) {
  ActionInput in{p, o, path};
  if (!in.Only({"action", "stage"})) return nullptr;
  auto a = std::make_shared<SetTraitAction>();
  a->name = "change_lifecycle_stage";
  a->key = "stage";
  a->field = "lifecycle_stage";
  a->value = in.Str("stage", true, 200);
  return a;
}

std::shared_ptr<const Action> ParseChangeOwner(DefinitionParser& p, const json::object& o,
                                               const std::string& path) {
  ActionInput in{p, o, path};
  if (!in.Only({"action", "owner"})) return nullptr;
  auto a = std::make_shared<SetTraitAction>();
  a->name = "change_owner";
  a->key = "owner";
  a->field = "owner";
  a->value = in.Str("owner", true, 254);
  if (!CheckAddress(p, a->value, in.At("owner"))) return nullptr;
  return a;
}

}  // namespace fairway::campaigns::actions
