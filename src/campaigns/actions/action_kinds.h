#pragma once
// Internal to the action kinds of actions/: the parse functions the registry lists
// (action_registry.cpp) and what they share. One file per group of related kinds.

#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>

#include "campaigns/action.h"
#include "campaigns/definition_parser.h"
#include "common/json_writer.h"

namespace fairway::campaigns::actions {

// The JSON object of the action being parsed, with its path.
struct ActionInput {
  DefinitionParser& p;
  const json::object& o;
  const std::string& path;

  // Rejects keys outside `keys`.
  bool Only(std::initializer_list<std::string_view> keys) const {
    return p.OnlyKeys(o, path, keys);
  }
  // A string field; "" when absent or bad (the error, if any, is recorded in `p`).
  std::string Str(std::string_view key, bool required, size_t max = 4096) const {
    return p.String(o, key, path, required, max).value_or("");
  }
  // The path of field `key`.
  std::string At(std::string_view key) const { return DefinitionParser::At(path, key); }
};

// Emits the step's generated activity `event` with the properties of `props` (a struct of
// model/generated_activities.h).
template <typename Props>
void EmitGenerated(ActionContext& ctx, std::string_view event, const Props& props) {
  std::string text;
  props.AppendProperties(&text);
  ctx.Emit(event, text);
}

// A JSON string literal of `s`.
inline std::string Quoted(std::string_view s) {
  std::string q;
  AppendJsonString(&q, s);
  return q;
}

// The parse function of each kind (ActionDefinition::parse).
// email.cpp
std::shared_ptr<const Action> ParseSendEmail(DefinitionParser& p, const json::object& o,
                                             const std::string& path);
std::shared_ptr<const Action> ParseSendAlert(DefinitionParser& p, const json::object& o,
                                             const std::string& path);
// lead_data.cpp
std::shared_ptr<const Action> ParseChangeScore(DefinitionParser& p, const json::object& o,
                                               const std::string& path);
std::shared_ptr<const Action> ParseChangeDataValue(DefinitionParser& p, const json::object& o,
                                                   const std::string& path);
std::shared_ptr<const Action> ParseChangeLifecycleStage(DefinitionParser& p, const json::object& o,
                                                        const std::string& path);
std::shared_ptr<const Action> ParseChangeOwner(DefinitionParser& p, const json::object& o,
                                               const std::string& path);
// membership.cpp
std::shared_ptr<const Action> ParseAddToList(DefinitionParser& p, const json::object& o,
                                             const std::string& path);
std::shared_ptr<const Action> ParseRemoveFromList(DefinitionParser& p, const json::object& o,
                                                  const std::string& path);
std::shared_ptr<const Action> ParseAddTag(DefinitionParser& p, const json::object& o,
                                          const std::string& path);
std::shared_ptr<const Action> ParseRemoveTag(DefinitionParser& p, const json::object& o,
                                             const std::string& path);
std::shared_ptr<const Action> ParseAddToAccount(DefinitionParser& p, const json::object& o,
                                                const std::string& path);
// wait.cpp
std::shared_ptr<const Action> ParseWait(DefinitionParser& p, const json::object& o,
                                        const std::string& path);
// webhook.cpp
std::shared_ptr<const Action> ParseCallWebhook(DefinitionParser& p, const json::object& o,
                                               const std::string& path);
std::shared_ptr<const Action> ParseCreateCrmTask(DefinitionParser& p, const json::object& o,
                                                 const std::string& path);
// flow_control.cpp
std::shared_ptr<const Action> ParseRequestCampaign(DefinitionParser& p, const json::object& o,
                                                   const std::string& path);
std::shared_ptr<const Action> ParseRemoveFromFlow(DefinitionParser& p, const json::object& o,
                                                  const std::string& path);
std::shared_ptr<const Action> ParseInterestingMoment(DefinitionParser& p, const json::object& o,
                                                     const std::string& path);
std::shared_ptr<const Action> ParseDeleteLead(DefinitionParser& p, const json::object& o,
                                              const std::string& path);

}  // namespace fairway::campaigns::actions
