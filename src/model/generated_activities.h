#pragma once
// The catalogue of the activities Fairway generates itself (type ActivityType::kFairway): the
// event name of each, the keys of its `properties`, and the encoding of those properties. The
// producers (the leads processor, campaign steps, the campaign timer, the campaign API), the
// consumers (the leads processor, the campaigns processor) and the campaign trigger parser all
// name generated activities through these declarations, never through string literals.
//
// Each struct holds views of its values for one encoding: it is built, encoded and dropped.
// `AppendProperties` appends the members of the activity's `properties` object as `"key":value`
// pairs joined by commas, without the braces, in a fixed order; the stored activities depend on
// these bytes (message ids are derived elsewhere and do not depend on them).

#include <cstdint>
#include <string>
#include <string_view>

namespace fairway::model {

// The first activity of a new userId profile (leads processor).
struct LeadCreated {
  static constexpr std::string_view kEvent = "lead_created";
  static constexpr std::string_view kUserId = "user_id";

  std::string_view user_id = {};

  void AppendProperties(std::string* out) const;
};

// A lead trait changed: by an identify of a known lead, or by a campaign step.
struct DataValueChanged {
  static constexpr std::string_view kEvent = "data_value_changed";
  static constexpr std::string_view kField = "field";
  static constexpr std::string_view kFrom = "from";
  static constexpr std::string_view kTo = "to";
  static constexpr std::string_view kOrigin = "origin";

  enum class Origin : uint8_t { kIdentify, kCampaign };

  std::string_view field = {};
  // Minified JSON values; empty is written as null.
  std::string_view from_json = {};
  std::string_view to_json = {};
  Origin origin = Origin::kIdentify;

  void AppendProperties(std::string* out) const;
};

// The lead's score changed by `change` (campaign step).
struct ScoreChanged {
  static constexpr std::string_view kEvent = "score_changed";
  static constexpr std::string_view kChange = "change";

  int64_t change = 0;

  void AppendProperties(std::string* out) const;
};

// The lead joined (kAddedEvent) or left (kRemovedEvent) a list (campaign step).
struct ListMembershipChanged {
  static constexpr std::string_view kAddedEvent = "added_to_list";
  static constexpr std::string_view kRemovedEvent = "removed_from_list";
  static constexpr std::string_view kList = "list";

  std::string_view list = {};

  void AppendProperties(std::string* out) const;
};

// A tag was added to (kAddedEvent) or removed from (kRemovedEvent) the lead (campaign step).
struct TagChanged {
  static constexpr std::string_view kAddedEvent = "tag_added";
  static constexpr std::string_view kRemovedEvent = "tag_removed";
  static constexpr std::string_view kTag = "tag";

  std::string_view tag = {};

  void AppendProperties(std::string* out) const;
};

// The lead joined an account (campaign step).
struct AddedToAccount {
  static constexpr std::string_view kEvent = "added_to_account";
  static constexpr std::string_view kAccountId = "account_id";

  std::string_view account_id = {};

  void AppendProperties(std::string* out) const;
};

// An email to the lead (kEmailEvent) or an alert about it (kAlertEvent) was queued (campaign
// step).
struct MessageQueued {
  static constexpr std::string_view kEmailEvent = "email_sent";
  static constexpr std::string_view kAlertEvent = "alert_sent";
  static constexpr std::string_view kTo = "to";
  static constexpr std::string_view kSubject = "subject";

  std::string_view to = {};
  std::string_view subject = {};

  void AppendProperties(std::string* out) const;
};

// An email was not sent because the lead reached the tenant's communication limit (campaign
// step).
struct EmailBlocked {
  static constexpr std::string_view kEvent = "email_blocked";
  static constexpr std::string_view kReason = "reason";
  static constexpr std::string_view kTo = "to";
  // The only reason so far.
  static constexpr std::string_view kCommunicationLimit = "communication_limit";

  std::string_view to = {};

  void AppendProperties(std::string* out) const;
};

// A task was queued for the tenant's CRM (campaign step).
struct CrmTaskCreated {
  static constexpr std::string_view kEvent = "crm_task_created";
  static constexpr std::string_view kSubject = "subject";

  std::string_view subject = {};

  void AppendProperties(std::string* out) const;
};

// A request to run campaign `requested` for the lead, with tokens ({{request.*}}): from a
// campaign step or the campaign API. Read back by the campaigns processor, which finds the
// requested campaign by `requested` and copies `tokens` into the run.
struct CampaignRequested {
  static constexpr std::string_view kEvent = "campaign_requested";
  static constexpr std::string_view kRequested = "requested";
  static constexpr std::string_view kTokens = "tokens";

  std::string_view requested = {};
  // A JSON object of token name -> value; empty is written as {}.
  std::string_view tokens_json = {};

  void AppendProperties(std::string* out) const;
};

// A moment worth a salesperson's attention (campaign step).
struct InterestingMoment {
  static constexpr std::string_view kEvent = "interesting_moment";
  static constexpr std::string_view kMomentType = "moment_type";
  static constexpr std::string_view kDescription = "description";

  std::string_view moment_type = {};
  std::string_view description = {};

  void AppendProperties(std::string* out) const;
};

// The lead is to be forgotten (campaign step). Only the campaign step's own properties.
struct LeadDeleted {
  static constexpr std::string_view kEvent = "lead_deleted";

  void AppendProperties(std::string* out) const;
};

// A run's wait ended (campaign timer). Read back by the campaigns processor, which resumes run
// `run` of `campaign` at step `step` if the run still waits there.
struct CampaignWaitElapsed {
  static constexpr std::string_view kEvent = "campaign_wait_elapsed";
  static constexpr std::string_view kCampaign = "campaign";
  static constexpr std::string_view kRun = "run";
  static constexpr std::string_view kStep = "step";
  static constexpr std::string_view kDue = "due";

  std::string_view campaign = {};
  std::string_view run = {};
  uint32_t step = 0;
  int64_t due_ms = 0;

  void AppendProperties(std::string* out) const;
};

// Identity `identity` now belongs to the activity's lead (its userId): a new link made by an
// identify, an alias or any activity carrying both ids (leads processor), or a campaign trigger
// of `identity` handed over to the person it resolves to (campaigns processor). Read back by the
// campaigns processor, which runs the identity's deferred campaign matches for the person.
// Internal: not counted in the lead's counters and no campaign trigger.
struct IdentityLinked {
  static constexpr std::string_view kEvent = "identity_linked";
  static constexpr std::string_view kIdentity = "identity";
  static constexpr std::string_view kKind = "kind";
  // kKind values.
  static constexpr std::string_view kUserId = "user_id";
  static constexpr std::string_view kAnonymousId = "anonymous_id";

  std::string_view identity = {};
  std::string_view kind = {};

  void AppendProperties(std::string* out) const;
};

// A visitor's session began (sessions processor): at its first activity's event time.
struct SessionStarted {
  static constexpr std::string_view kEvent = "session_started";
  static constexpr std::string_view kSessionId = "session_id";
  static constexpr std::string_view kLandingPage = "landing_page";
  static constexpr std::string_view kSource = "source";
  static constexpr std::string_view kCampaign = "campaign";

  std::string_view session_id = {};
  std::string_view landing_page = {};
  std::string_view source = {};
  std::string_view campaign = {};

  void AppendProperties(std::string* out) const;
};

// A visitor's session is over (sessions processor): inactive for the tenant's session timeout,
// or followed by a new session. At its last activity's event time.
struct SessionEnded {
  static constexpr std::string_view kEvent = "session_ended";
  static constexpr std::string_view kSessionId = "session_id";
  static constexpr std::string_view kStart = "start";
  static constexpr std::string_view kDurationSeconds = "duration_s";
  static constexpr std::string_view kPages = "pages";
  static constexpr std::string_view kEvents = "events";
  static constexpr std::string_view kLandingPage = "landing_page";
  static constexpr std::string_view kSource = "source";

  std::string_view session_id = {};
  int64_t start_ms = 0;
  int64_t duration_s = 0;
  uint32_t pages = 0;
  uint32_t events = 0;
  std::string_view landing_page = {};
  std::string_view source = {};

  void AppendProperties(std::string* out) const;
};

// A session may have been idle long enough (session sweeper). Read back by the sessions
// processor, which ends session `session_id` if nothing happened since. Internal: not counted.
struct SessionTimeout {
  static constexpr std::string_view kEvent = "session_timeout";
  static constexpr std::string_view kSessionId = "session_id";
  static constexpr std::string_view kDue = "due";

  std::string_view session_id = {};
  int64_t due_ms = 0;

  void AppendProperties(std::string* out) const;
};

}  // namespace fairway::model
