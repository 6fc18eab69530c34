#pragma once
// The campaign processor's durable state and its encodings:
//
// In the engine's (tenant, "campaigns") state space (StateTxn keys), all per lead, so only the
// lead's own work item ever touches them:
//   r/<lead key>\0<campaign>  RunState: the lead's current run through a campaign's flow
//   h/<lead key>\0<campaign>  History: how often and when the lead qualified (qualification rules)
//   m/<lead key>              MailLog: send times of recent emails (communication limits)
//   d/<lead key>\0<time(be64)><campaign>\0<messageId>
//                             DeferredMatch: a trigger of the lead key waiting for its person
//                             (an anonymous visitor's deferred match, or a trigger handed over
//                             to the person the key resolves to); ordered by event time
//
// The "lead key" of run, history and mail rows is the person's: the canonical userId of a
// known lead (identity::LeadView::id), or the anonymousId of an anonymous visitor whose
// campaign runs anyway (AnonymousPolicy::kRun). Deferred rows are written under the
// triggering activity's own lead key and consumed (deleted) by the person's work.
//
// In storage::kTimers (written in the same atomic commit): one row per waiting run,
//   tenant \0 due(be64) len(be32) lead key, campaign \0 run id -> Timer
// released by the TimerService when due.
//
// In storage::kCampaignStats (counters, merge-added in the same commit):
//   tenant \0 campaign \0 day(be32) \0 metric -> count    (day: days since 1970-01-01, UTC)
//   tenant \0 campaign \0 0xffffffff \0 "in_flow" -> leads now in the flow
//
// Plain value types and pure functions; thread-safe.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/ids.h"
#include "common/status.h"
#include "identity/lead_keys.h"

namespace fairway::campaigns {

struct RunState {
  std::string run_id;
  // CampaignRecord::created_ms of the campaign the run belongs to: a campaign deleted and
  // created again under the same id does not continue the old one's runs.
  int64_t campaign_created_ms = 0;
  // The next step to run (flow index).
  uint32_t step = 0;
  // While waiting: when the wait ends (ms since the epoch); 0 = not waiting.
  int64_t wait_due_ms = 0;
  // Generated activities of this run carry depth + 1 (loop protection).
  uint32_t depth = 0;
  int64_t started_ms = 0;
  // The activity that triggered the run, for {{trigger.*}} tokens.
  std::string trigger_message_id;
  std::string trigger_event;
  uint8_t trigger_type = 0;
  int64_t trigger_time_ms = 0;
  std::string trigger_fields_json;
  // Tokens passed by a campaign request ({{request.*}}).
  std::map<std::string, std::string> tokens;
  // The lead's identities when the run started (generated activities carry them).
  std::string user_id;
  std::string anonymous_id;
};

struct History {
  uint64_t runs = 0;
  // Event time of the activity that started the latest run.
  int64_t last_start_event_ms = 0;
  // The latest run's id: the same activity never starts a second run.
  std::string last_run_id;
  // CampaignRecord::created_ms of the campaign this history belongs to.
  int64_t campaign_created_ms = 0;
};

std::string EncodeRunState(const RunState& r);
Result<RunState> DecodeRunState(std::string_view in);
std::string EncodeHistory(const History& h);
Result<History> DecodeHistory(std::string_view in);
// Send times, ascending.
std::string EncodeMailLog(const std::vector<int64_t>& sends);
Result<std::vector<int64_t>> DecodeMailLog(std::string_view in);

std::string RunKey(const LeadId& lead, std::string_view campaign);
std::string RunPrefix(const LeadId& lead);
std::string HistoryKey(const LeadId& lead, std::string_view campaign);
std::string HistoryPrefix(const LeadId& lead);
std::string MailKey(const LeadId& lead);

// A campaign match kept for later: the trigger as a run would record it (run_id empty, step 0,
// started_ms = when it was deferred).
struct DeferredMatch {
  std::string campaign;
  // Handed over to the person the lead key already resolved to (runs whatever its age), rather
  // than deferred until an anonymous visitor becomes known (expires after defer_days).
  bool forwarded = false;
  // The person it was handed over to (forwarded only).
  std::string forward_to;
  RunState trigger;
};
std::string EncodeDeferredMatch(const DeferredMatch& m);
Result<DeferredMatch> DecodeDeferredMatch(std::string_view in);
std::string DeferredKey(const LeadId& lead, int64_t event_ms, std::string_view campaign,
                        std::string_view message_id);
std::string DeferredPrefix(const LeadId& lead);

struct Timer {
  std::string campaign;
  std::string run_id;
  uint32_t step = 0;
  std::string user_id;
  std::string anonymous_id;
  // Filled when decoded from a key.
  int64_t due_ms = 0;
  LeadId lead;
};
// Unique per run: a run that ends and a new run that waits until the same moment have two rows.
std::string TimerKey(const TenantId& tenant, int64_t due_ms, const LeadId& lead,
                     std::string_view campaign, std::string_view run_id);
std::string EncodeTimer(const Timer& t);
// Decodes a row of storage::kTimers (key and value).
Result<Timer> DecodeTimer(std::string_view key, std::string_view value);
// All of a tenant's timers: [TimerTenantPrefix, TimerTenantEnd).
std::string TimerTenantPrefix(const TenantId& tenant);
std::string TimerTenantEnd(const TenantId& tenant);

// Stats keys.
inline constexpr uint32_t kTotalDay = 0xffffffff;
// The UTC day (days since 1970-01-01) of a time: the leads processor's day, so campaign
// statistics and lead counters agree.
using identity::DayOf;
std::string StatsKey(const TenantId& tenant, std::string_view campaign, uint32_t day,
                     std::string_view metric);
std::string StatsPrefix(const TenantId& tenant, std::string_view campaign);

// The deterministic id of the run that `trigger_message_id` starts in `campaign`.
std::string MakeRunId(std::string_view campaign, std::string_view trigger_message_id);

}  // namespace fairway::campaigns
