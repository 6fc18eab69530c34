// request_campaign, remove_from_flow, interesting_moment and delete_lead: actions on the lead's
// campaigns and on the lead itself.

#include "campaigns/actions/action_kinds.h"
#include "common/json_writer.h"
#include "model/generated_activities.h"

namespace fairway::campaigns::actions {

namespace {

class RequestCampaignAction final : public Action {
 public:
  std::string campaign;
  std::map<std::string, std::string> tokens;  // values are templates

  std::string_view kind() const override { return "request_campaign"; }

  void Render(JsonWriter& w) const override {
    w.BeginObject().Key("action").String(kind()).Key("campaign").String(campaign);
    if (!tokens.empty()) {
      w.Key("tokens").BeginObject();
      for (const auto& [k, v] : tokens) w.Key(k).String(v);
      w.EndObject();
    }
    w.EndObject();
  }

  Result<Outcome> Execute(ActionContext& ctx) const override {
    std::string tokens_json = "{";
    for (const auto& [k, v] : tokens) {
      if (tokens_json.size() > 1) tokens_json.push_back(',');
      AppendJsonString(&tokens_json, k);
      tokens_json.push_back(':');
      AppendJsonString(&tokens_json, ctx.Render(v));
    }
    tokens_json.push_back('}');
    EmitGenerated(ctx, model::CampaignRequested::kEvent,
                  model::CampaignRequested{.requested = campaign, .tokens_json = tokens_json});
    return Outcome::kExecuted;
  }
};

class RemoveFromFlowAction final : public Action {
 public:
  std::vector<std::string> campaigns;  // empty: every other campaign

  std::string_view kind() const override { return "remove_from_flow"; }

  void Render(JsonWriter& w) const override {
    w.BeginObject().Key("action").String(kind());
    if (!campaigns.empty()) {
      w.Key("campaigns").BeginArray();
      for (const auto& c : campaigns) w.String(c);
      w.EndArray();
    }
    w.EndObject();
  }

  Result<Outcome> Execute(ActionContext& ctx) const override {
    FAIRWAY_RETURN_IF_ERROR(ctx.RemoveFromFlows(campaigns));
    return Outcome::kExecuted;
  }
};

class InterestingMomentAction final : public Action {
 public:
  std::string moment_type;
  std::string description;  // a template

  std::string_view kind() const override { return "interesting_moment"; }

  void Render(JsonWriter& w) const override {
    w.BeginObject().Key("action").String(kind());
    w.Key("moment_type").String(moment_type).Key("description").String(description).EndObject();
  }

  Result<Outcome> Execute(ActionContext& ctx) const override {
    EmitGenerated(ctx, model::InterestingMoment::kEvent,
                  model::InterestingMoment{.moment_type = moment_type,
                                           .description = ctx.Render(description)});
    return Outcome::kExecuted;
  }
};

class DeleteLeadAction final : public Action {
 public:
  std::string_view kind() const override { return "delete_lead"; }

  void Render(JsonWriter& w) const override {
    w.BeginObject().Key("action").String(kind()).EndObject();
  }

  Result<Outcome> Execute(ActionContext& ctx) const override {
    EmitGenerated(ctx, model::LeadDeleted::kEvent, model::LeadDeleted{});
    return Outcome::kLeadDeleted;
  }
};

}  // namespace

std::shared_ptr<const Action> ParseRequestCampaign(DefinitionParser& p, const json::object& o,
                                                   const std::string& path) {
  ActionInput in{p, o, path};
  if (!in.Only({"action", "campaign", "tokens"})) return nullptr;
  auto a = std::make_shared<RequestCampaignAction>();
  a->campaign = in.Str("campaign", true, 63);
  if (!p.failed() && !ValidCampaignId(a->campaign)) {
    p.Fail(in.At("campaign"), "is not a valid campaign id");
    return nullptr;
  }
  a->tokens = p.StringMap(o, "tokens", path);
  return a;
}

std::shared_ptr<const Action> ParseRemoveFromFlow(DefinitionParser& p, const json::object& o,
                                                  const std::string& path) {
  ActionInput in{p, o, path};
  if (!in.Only({"action", "campaigns"})) return nullptr;
  auto a = std::make_shared<RemoveFromFlowAction>();
  if (auto* c = o.if_contains("campaigns"); c && !c->is_null()) {
    std::string cp = in.At("campaigns");
    if (!c->is_array()) {
      p.Fail(cp, "must be an array of campaign ids (omit it for all other campaigns)");
      return nullptr;
    }
    for (size_t i = 0; i < c->get_array().size(); ++i) {
      const auto& x = c->get_array()[i];
      if (!x.is_string() || !ValidCampaignId(x.get_string())) {
        p.Fail(DefinitionParser::Index(cp, i), "is not a valid campaign id");
        return nullptr;
      }
      a->campaigns.emplace_back(x.get_string());
    }
  }
  return a;
}

std::shared_ptr<const Action> ParseInterestingMoment(DefinitionParser& p, const json::object& o,
                                                     const std::string& path) {
  ActionInput in{p, o, path};
  if (!in.Only({"action", "moment_type", "description"})) return nullptr;
  auto a = std::make_shared<InterestingMomentAction>();
  a->moment_type = in.Str("moment_type", false, 64);
  if (a->moment_type.empty()) a->moment_type = "milestone";
  a->description = in.Str("description", true, 2000);
  return a;
}

std::shared_ptr<const Action> ParseDeleteLead(DefinitionParser& p, const json::object& o,
                                              const std::string& path) {
  ActionInput in{p, o, path};
  if (!in.Only({"action"})) return nullptr;
  return std::make_shared<DeleteLeadAction>();
}

}  // namespace fairway::campaigns::actions
