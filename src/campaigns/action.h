#pragma once
// Campaign actions: the steps of a flow (docs/campaigns.md "Actions"). Each action kind is one
// definition in actions/ (its parse from the definition's JSON, its JSON rendering, and its
// execution for a lead), registered once in the table of actions/action_registry.cpp and looked
// up by its name ("send_email", "wait", ...). Adding a kind touches its file, the table and the
// tests.
//
// A parsed action is immutable and shared by every thread that runs its campaign. Execution
// goes through ActionContext, which the campaigns processor implements for one step of one run:
// an action never writes storage or calls anything external itself.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "campaigns/campaign.h"
#include "campaigns/template.h"
#include "common/status.h"

namespace boost::json {
class object;
}  // namespace boost::json

namespace fairway {
class JsonWriter;
}  // namespace fairway

namespace fairway::engine {
class StateTxn;
}  // namespace fairway::engine

namespace fairway::dispatch {
struct Delivery;
}  // namespace fairway::dispatch

namespace fairway::campaigns {

class DefinitionParser;
struct CampaignSettings;

// What a step did, as counted in the campaign's statistics (step.N.executed, ...).
enum class Outcome { kExecuted, kBlocked, kFailed, kLeadDeleted };

// Changes a run made to its lead in this work item: what later steps must see before the
// leads processor applies the generated activities.
struct LeadOverlay {
  int64_t score_delta = 0;
  std::map<std::string, std::string> traits;  // name -> JSON ("null" when cleared)
  std::map<std::string, bool> lists;
  std::map<std::string, bool> tags;
  std::optional<std::string> account;
};

// One step of one run of a campaign for one lead, as an action sees it. Implemented by the
// campaigns processor; lives for the step. Runs on: the engine thread of the work item.
class ActionContext {
 public:
  virtual ~ActionContext() = default;

  virtual int64_t now_ms() const = 0;
  virtual const CampaignSettings& settings() const = 0;
  virtual const Campaign& campaign() const = 0;
  // The lead key the run belongs to: the person's (campaign_state.h).
  virtual const LeadId& lead() const = 0;
  // The person's other identities (userIds, anonymousIds) whose campaign state counts with the
  // lead's: rows written under them before the identities merged. Excludes lead().
  virtual const std::vector<LeadId>& other_identities() = 0;
  // "<campaign>.<run>.<step>": the id of the step's outbox delivery, unique per step.
  virtual const std::string& delivery_id() const = 0;

  // Renders a template of the campaign with the lead, trigger, request, campaign and run
  // tokens of this step.
  virtual std::string Render(std::string_view tmpl, Escape escape = Escape::kNone) = 0;
  // A field of the lead as filters see it, including this work item's overlay.
  virtual FieldValue LeadField(std::string_view field) = 0;
  // This work item's changes to the lead; an action that changes the lead records them here.
  virtual LeadOverlay& overlay() = 0;
  // The work item's state (the run's lead's rows), for reads and writes in its commit.
  virtual engine::StateTxn& state() = 0;
  // The tenant's IANA time zone (empty: unknown); nullopt when the processor has no source
  // of tenant time zones.
  virtual std::optional<std::string> TenantTimezone() = 0;

  // Emits the step's generated activity `event` with `properties` (`"key":value` pairs; the
  // campaign and step are added).
  virtual void Emit(std::string_view event, std::string_view properties) = 0;
  // Adds an outbox delivery to the work item's commit.
  virtual Status Enqueue(dispatch::Delivery d) = 0;
  // Counts `metric` for the campaign.
  virtual void Stat(std::string_view metric) = 0;
  // Takes the lead out of `campaigns` (every other campaign if empty).
  virtual Status RemoveFromFlows(const std::vector<std::string>& campaigns) = 0;
  // Logs why the step failed; returns Outcome::kFailed.
  virtual Outcome Fail(std::string_view why) = 0;
};

// A parsed action of a campaign definition.
class Action {
 public:
  virtual ~Action() = default;

  // The registered name of the action's kind ("send_email").
  virtual std::string_view kind() const = 0;
  // Writes the action as a definition object ({"action": ..., fields}) that parses back to an
  // equal action: fields at their parsed values, defaults filled in.
  virtual void Render(JsonWriter& w) const = 0;
  // Runs the action. Errors are storage errors (the work item retries); a step that cannot run
  // for this lead is Outcome::kFailed.
  virtual Result<Outcome> Execute(ActionContext& ctx) const = 0;

  // A wait pauses the run instead of executing; it cannot be a choice.
  virtual bool pauses() const { return false; }
  // Requires: pauses(). When the run continues (ms since the epoch).
  virtual int64_t ResumeAt(ActionContext& ctx) const { return ctx.now_ms(); }
};

// One action kind.
struct ActionDefinition {
  std::string_view name;
  // Parses the fields of an action of this kind from `o` (its "action" key is the name).
  // Errors go to `p`, naming the field under `path`; nullptr then.
  std::shared_ptr<const Action> (*parse)(DefinitionParser& p, const boost::json::object& o,
                                         const std::string& path);
};

// Every action kind, in the order docs/campaigns.md lists them.
std::span<const ActionDefinition> ActionDefinitions();
// The kind named `name`, or nullptr.
const ActionDefinition* FindActionDefinition(std::string_view name);

// `a` rendered as a definition object.
std::string ActionJson(const Action& a);

}  // namespace fairway::campaigns
