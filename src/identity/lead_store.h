#pragma once
// LeadStore: reads merged leads out of the "leads" processor's state (lead_processor.h). A lead
// is the union of every identity (userId or anonymousId) whose winning claim chain ends at the
// same canonical id; the union is computed here, at read time, and never stored.
//
// Resolution: from an id, follow the winning claim (latest event time; tie: larger userId) to
// the next userId until an id with no claim. On a cycle the canonical id is the smallest userId
// in the cycle. An anonymousId with no claim is its own (anonymous) lead.
//
// Thread-safe: holds no mutable state; every call reads through its own read-only StateTxn.
// Reads see committed state only, so a lead may lag the log by the processor's backlog.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/ids.h"
#include "common/status.h"
#include "identity/lead_profile.h"
#include "model/activity.h"
#include "storage/store.h"

namespace fairway::identity {

// One trait of an account: its latest value (minified JSON) and the event time that set it.
struct AccountTrait {
  std::string name;
  int64_t time_ms = 0;
  std::string json;
};

struct AccountView {
  std::string id;                    // groupId
  std::vector<AccountTrait> traits;  // sorted by name
};

// A merged lead.
struct LeadView {
  // The canonical id: a userId when `known`, else the anonymousId of an anonymous lead.
  std::string id;
  bool known = false;
  // Every identity of the lead, sorted.
  std::vector<std::string> user_ids;
  std::vector<std::string> anonymous_ids;
  // The "email" trait when it is a JSON string.
  std::optional<std::string> email;
  // Sorted by name; last-write-wins by event time across all the lead's profiles. A cleared
  // trait (data_value_changed to null, identify with null) stays as JSON `null`: read it as unset.
  std::vector<TraitEntry> traits;
  // The account of the latest group call of any of the lead's identities.
  std::optional<AccountView> account;
  // Meaningless when activity_count is 0 (an identity known only through a claim).
  int64_t first_seen_ms = 0;
  int64_t last_seen_ms = 0;
  uint64_t activity_count = 0;
  // Summed per (type, name, day) across the lead's profiles; sorted by (type, name).
  std::vector<CounterSeries> counters;
  // The sum of the score changes of all the lead's profiles.
  int64_t score = 0;
  // The lists and tags the lead is currently in: per name, the latest added / removed activity
  // of any of its profiles (by event time; a tie counts as added). Sorted, unique.
  std::vector<std::string> lists;
  std::vector<std::string> tags;

  // Activities of (type, name) on the UTC days from the day of `since_ms` to the day of
  // `until_ms`, both included (counters have day granularity). Only days still kept by the
  // processor's counter window are counted.
  uint64_t CountActivities(model::ActivityType type, std::string_view name, int64_t since_ms,
                           int64_t until_ms) const;
  // The same summed over every activity type.
  uint64_t CountActivitiesAnyType(std::string_view name, int64_t since_ms, int64_t until_ms) const;
  // The same summed over every counter of `type` (any type when nullopt) whose name satisfies
  // `name_matches` (called once per counter series), for pattern filters ("/pricing*").
  uint64_t CountActivitiesMatching(std::optional<model::ActivityType> type,
                                   const std::function<bool(std::string_view name)>& name_matches,
                                   int64_t since_ms, int64_t until_ms) const;
  // Whether the lead is currently in list / has tag `name`.
  bool HasList(std::string_view name) const;
  bool HasTag(std::string_view name) const;

  const TraitEntry* FindTrait(std::string_view name) const;
};

// "At least `min_count` activities of (type, name) in the last `within_days` days".
struct CounterCondition {
  // Any type when absent.
  std::optional<model::ActivityType> type;
  std::string name;
  uint64_t min_count = 1;
  // The window is the `within_days` UTC days ending with the day of LeadFilter::now_ms (1 =
  // that day only). 0 = every day kept.
  uint32_t within_days = 0;
};

struct LeadFilter {
  // All must match: trait `name` equals `value`. A JSON string trait matches its unquoted
  // (unescaped) text; any other JSON value matches its minified JSON text ("42", "true").
  std::vector<std::pair<std::string, std::string>> traits;
  std::optional<CounterCondition> counter;
  // "Now" for CounterCondition::within_days (the caller's clock, ms since the epoch).
  int64_t now_ms = 0;
  // Also list anonymous leads (anonymousIds never claimed by a userId), after the known ones.
  bool include_anonymous = false;
  // Only leads whose last activity is at or after this time.
  std::optional<int64_t> seen_since_ms;
  // Most profiles examined by one List call, matching or not: bounds the cost of a page when
  // few leads match. Default 10,000.
  size_t max_scan = 10'000;
};

struct LeadPage {
  std::vector<LeadView> leads;
  // Pass back as `cursor` to continue; empty when the scan is complete.
  std::string next_cursor;
};

class LeadStore {
 public:
  // `store` (not owned) must outlive the LeadStore and use storage::FairwayColumnFamilies().
  explicit LeadStore(storage::Store* store);

  // The merged lead of `id`: a userId, an anonymousId, or an email address (tried in that order;
  // the email index is only consulted for ids containing '@', case-insensitively). nullopt when
  // nothing is known about the id.
  Result<std::optional<LeadView>> Find(const TenantId& tenant, std::string_view id) const;

  // Known leads in userId order (then, with include_anonymous, anonymous leads in anonymousId
  // order) that match `filter`, starting after `cursor` (empty = from the start). Returns after
  // `limit` matches or filter.max_scan examined profiles, whichever comes first.
  // InvalidArgument naming "cursor" for a cursor not made by List, or "limit" for 0.
  Result<LeadPage> List(const TenantId& tenant, const LeadFilter& filter, std::string_view cursor,
                        size_t limit) const;

 private:
  storage::Store* store_;
};

// Appends the lead as JSON: {"id","known","user_ids","anonymous_ids","email","traits","account",
// "score","lists","tags","first_seen","last_seen","activity_count",
// "counters":[{"type","name","day","count"}]}.
void AppendLeadJson(const LeadView& lead, std::string* out);

}  // namespace fairway::identity
