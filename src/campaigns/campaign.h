#pragma once
// Campaign definitions: the JSON format of docs/campaigns.md, validated and compiled into the
// structures the campaign processor runs. A definition is validated once, on write; every error
// names the JSON path of the bad field ("flow[2].choices[0].if.field").
//
// Plain value types; immutable once compiled, so one compiled campaign is shared by every
// thread that runs it.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "model/activity.h"

namespace fairway::campaigns {

// How a value (a lead field, an activity property) is tested.
enum class Op : uint8_t {
  kIs,           // equals one of `text` (case-insensitive) or `number`
  kIsNot,        // equals none of them
  kContains,     // contains one of `text` (case-insensitive)
  kNotContains,  //
  kStartsWith,   //
  kEndsWith,     //
  kMatches,      // glob over the text: '*' is any run of characters, case-insensitive
  kGreaterThan,  // numeric
  kLessThan,     //
  kAtLeast,      //
  kAtMost,       //
  kBetween,      // lo <= v <= hi
  kIsEmpty,      // missing, null, "" or []
  kIsNotEmpty,   //
  kInPastDays,   // a time (ISO 8601 string or ms number) within the last `days` days
  kBefore,       // a time before `time_ms`
  kAfter,        // a time after `time_ms`
};

// A value as tests see it.
struct FieldValue {
  enum class Kind : uint8_t { kMissing, kNull, kString, kNumber, kBool, kOther };
  Kind kind = Kind::kMissing;
  std::string text;  // string contents, number/bool/other as JSON text
  double number = 0;

  static FieldValue Missing() { return {}; }
  static FieldValue String(std::string s);
  static FieldValue Number(double d);
  // From minified JSON text (a trait's stored value); malformed text counts as kOther.
  static FieldValue FromJson(std::string_view json);

  // `text` lower-cased, computed once (a value is often tested by many triggers).
  const std::string& Lowered() const;

 private:
  mutable std::optional<std::string> lowered_;
};

struct ValueTest {
  Op op = Op::kIs;
  std::vector<std::string> text;  // lower-cased
  std::vector<double>
      numbers;  // kIs/kIsNot numeric alternatives; kBetween {lo, hi}; numeric ops {x}
  int64_t days = 0;
  int64_t time_ms = 0;

  bool Test(const FieldValue& v, int64_t now_ms) const;
};

// A filter / choice condition over a lead (and, for tokens, the trigger).
struct Condition {
  enum class Kind : uint8_t {
    kField,            // field + test
    kMemberOfList,     // name; negate for "not member"
    kHasTag,           // name; negate
    kActivityHistory,  // activity_type (optional), name test, min/max count in within_days
    kAll,
    kAny,
    kNot,
  };
  Kind kind = Kind::kField;
  // kField: a trait name, or "score", "email", "id", "known", "lists", "tags",
  // "first_seen", "last_seen", "activity_count", "account.id", "account.<trait>".
  std::string field;
  ValueTest test;
  std::string name;
  bool negate = false;
  std::optional<model::ActivityType> activity_type;
  std::optional<ValueTest> name_test;  // kActivityHistory: which counter names count
  uint64_t min_count = 1;
  std::optional<uint64_t> max_count;
  uint32_t within_days = 0;  // 0: every day kept
  std::vector<Condition> children;
};

// One trigger: an activity (type, name) plus tests on its properties. Indexed by (type, name),
// so finding the campaigns an activity triggers never scans all campaigns.
struct Trigger {
  std::string kind;  // as written ("visits_web_page", "track", ...), for reports
  model::ActivityType type = model::ActivityType::kTrack;
  // Exact activity name; "*" = any name of this type.
  std::string name;
  struct PropertyTest {
    // Path into the activity's properties ("url", "form", "a.b"); alternatives are tried in
    // order and the first present one is tested (url, then path).
    std::vector<std::string> paths;
    ValueTest test;
    // Passes when any present path passes (an email's subject or its id), instead of testing
    // the first present one.
    bool any_path = false;
  };
  std::vector<PropertyTest> where;
};

// A step's action: one of the kinds registered in action.h.
class Action;

struct Choice {
  Condition when;
  std::shared_ptr<const Action> then;  // nullptr: "do nothing" for this choice
};

struct Step {
  // Either a plain action, or choices (first match wins) with a default (nullptr: none).
  std::shared_ptr<const Action> action;
  std::vector<Choice> choices;
  std::shared_ptr<const Action> default_action;
  bool has_choices() const { return !choices.empty(); }
};

enum class Qualification : uint8_t { kOnce, kEveryTime, kEveryNDays };

// What a trigger by an anonymous visitor (a person with no userId yet) does.
enum class AnonymousPolicy : uint8_t {
  // The match is remembered (CampaignSettings::defer_days) and evaluated, filters included,
  // against the merged person once an identify or alias makes the visitor known.
  kDefer,
  // The flow runs at once for the anonymous visitor.
  kRun,
  // Nothing happens.
  kIgnore,
};

struct Campaign {
  std::string id;
  std::string name;
  std::vector<Trigger> triggers;
  // The campaign's filters combined by its filter logic; nullopt = no filters.
  std::optional<Condition> filter;
  std::vector<Step> flow;
  Qualification qualification = Qualification::kOnce;
  uint32_t qualification_days = 0;
  // "anonymous": defer / run / ignore. Default: defer when a trigger listens to visitor activity
  // (page, screen, track), else run.
  AnonymousPolicy anonymous = AnonymousPolicy::kRun;
  // What happens to leads waiting in the flow when the campaign is deactivated: finish the flow
  // (true) or leave it when their wait ends.
  bool finish_flow_when_inactive = true;
  // "My tokens": {{my.<name>}} in templates.
  std::map<std::string, std::string> tokens;
};

// Limits on definitions.
inline constexpr size_t kMaxSteps = 100;
inline constexpr size_t kMaxChoices = 20;
inline constexpr size_t kMaxTriggers = 20;
inline constexpr size_t kMaxFilters = 50;
inline constexpr size_t kMaxConditionDepth = 8;
inline constexpr size_t kMaxDefinitionBytes = 256 * 1024;

// Parses and validates a definition (the JSON of docs/campaigns.md). `id` is the campaign's id
// (from the URL or generated); the JSON's own "id", if any, must match it. InvalidArgument
// whose message starts with the JSON path of the first bad field ("flow[2].choices[0].if.field:
// ...").
Result<Campaign> ParseCampaign(std::string_view json, std::string_view id);

// Campaign ids: [a-z0-9][a-z0-9_-]{0,62}, like tenant ids.
bool ValidCampaignId(std::string_view id);

// The trigger name under which campaign `campaign_id` listens for requests
// (model::CampaignRequested naming it): a request reaches only its campaign.
std::string RequestTriggerName(std::string_view campaign_id);

// Whether the campaign can be requested (it has a campaign_requested trigger).
bool AcceptsRequests(const Campaign& c);

}  // namespace fairway::campaigns
