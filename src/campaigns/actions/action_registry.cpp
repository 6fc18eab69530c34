// The table of action kinds (action.h) and the parse of a step's action through it.

#include <algorithm>
#include <iterator>

#include "campaigns/actions/action_kinds.h"
#include "common/json_writer.h"

namespace fairway::campaigns {

namespace {

// In the order docs/campaigns.md lists them (and the error message names them).
constexpr ActionDefinition kActions[] = {
    {"send_email", actions::ParseSendEmail},
    {"send_alert", actions::ParseSendAlert},
    {"change_score", actions::ParseChangeScore},
    {"change_data_value", actions::ParseChangeDataValue},
    {"add_to_list", actions::ParseAddToList},
    {"remove_from_list", actions::ParseRemoveFromList},
    {"add_tag", actions::ParseAddTag},
    {"remove_tag", actions::ParseRemoveTag},
    {"change_lifecycle_stage", actions::ParseChangeLifecycleStage},
    {"change_owner", actions::ParseChangeOwner},
    {"add_to_account", actions::ParseAddToAccount},
    {"wait", actions::ParseWait},
    {"call_webhook", actions::ParseCallWebhook},
    {"request_campaign", actions::ParseRequestCampaign},
    {"remove_from_flow", actions::ParseRemoveFromFlow},
    {"interesting_moment", actions::ParseInterestingMoment},
    {"create_crm_task", actions::ParseCreateCrmTask},
    {"delete_lead", actions::ParseDeleteLead},
};

}  // namespace

std::span<const ActionDefinition> ActionDefinitions() { return kActions; }

const ActionDefinition* FindActionDefinition(std::string_view name) {
  auto it = std::find_if(std::begin(kActions), std::end(kActions),
                         [&](const ActionDefinition& d) { return d.name == name; });
  return it == std::end(kActions) ? nullptr : &*it;
}

std::string ActionJson(const Action& a) {
  JsonWriter w;
  a.Render(w);
  return w.Take();
}

std::shared_ptr<const Action> ParseAction(DefinitionParser& p, const json::value& v,
                                          const std::string& path) {
  auto* o = p.Object(v, path);
  if (!o) return nullptr;
  auto kind = p.String(*o, "action", path, true, 64);
  if (!kind) return nullptr;
  const ActionDefinition* def = FindActionDefinition(*kind);
  if (!def) {
    std::string names;
    for (const auto& d : kActions) {
      if (!names.empty()) names.append(", ");
      names.append(d.name);
    }
    p.Fail(DefinitionParser::At(path, "action"), "must be one of " + names);
    return nullptr;
  }
  auto a = def->parse(p, *o, path);
  if (!a || p.failed()) return nullptr;
  return a;
}

}  // namespace fairway::campaigns
