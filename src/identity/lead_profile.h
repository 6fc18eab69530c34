#pragma once
// LeadProfile: what the "leads" processor knows about ONE identity (one userId or one
// anonymousId), stored under that identity's profile key. A merged lead is never stored: readers
// compute it as the union of the profiles whose claims resolve to the same lead (lead_store.h).
//
// Every field merges commutatively (min/max, last-write-wins by event time with a deterministic
// tie-break, sums), so the profile does not depend on the order activities arrive in.
//
// A plain value type; not thread-safe.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "identity/lead_keys.h"
#include "model/activity.h"

namespace fairway::identity {

// One trait: its latest value (minified JSON) and the event time that set it.
struct TraitEntry {
  std::string name;
  int64_t time_ms = 0;
  std::string json;
};

// Activities of one UTC day (days since 1970-01-01).
struct DayCount {
  int64_t day = 0;
  uint64_t count = 0;
};

// Daily activity counts of one (type, name): the event of a track, the name of a page or
// screen, "" for identify, group and alias.
struct CounterSeries {
  model::ActivityType type = model::ActivityType::kTrack;
  std::string name;
  std::vector<DayCount> days;  // ascending, unique days, counts > 0
};

// "(kind, id) belongs to this profile's userId", as last asserted: the latest activity (by event
// time, then messageId) that carried both ids. The claim row only records that the claim exists;
// its current time lives here, because this profile is rewritten by every activity of the lead
// anyway, while rewriting the claim row on every activity would double the writes.
struct LinkEntry {
  IdKind kind = IdKind::kAnonymous;
  std::string id;
  int64_t time_ms = 0;
  std::string message_id;
};

struct LeadProfile {
  // Event times (Activity::timestamp_ms) of the earliest and the latest activity; meaningless
  // while activity_count is 0.
  int64_t first_seen_ms = 0;
  int64_t last_seen_ms = 0;
  uint64_t activity_count = 0;
  // Sorted by name, unique.
  std::vector<TraitEntry> traits;
  // The account (groupId) of the latest group call; empty when none.
  std::string account_id;
  int64_t account_time_ms = 0;
  // Sorted by (type, name), unique.
  std::vector<CounterSeries> counters;
  // Only in known (userId) profiles. Sorted by (kind, id), unique.
  std::vector<LinkEntry> links;

  // Counts one activity at `time_ms` and widens first/last seen.
  void RecordSeen(int64_t time_ms);
  // Last-write-wins by event time; a tie goes to the larger JSON text, so the result does not
  // depend on arrival order. Returns true when the trait changed.
  bool MergeTrait(std::string_view name, int64_t time_ms, std::string_view json);
  // Last-write-wins by event time; a tie goes to the larger groupId. Returns true on change.
  bool MergeAccount(std::string_view account_id, int64_t time_ms);
  // Adds `n` to the counter of (type, name, day).
  void AddCount(model::ActivityType type, std::string_view name, int64_t day, uint64_t n = 1);
  // Drops counter days more than `counter_days - 1` days before the day of last_seen_ms (so
  // `counter_days` days are kept, the newest included). 0 keeps everything.
  void PruneCounters(uint32_t counter_days);
  // Keeps the later of the stored and the given claim of (kind, id): by time, then messageId.
  // Returns true when the stored link changed.
  bool MergeLink(IdKind kind, std::string_view id, int64_t time_ms, std::string_view message_id);
  // Merges `other` in as if its activities had been applied here: traits and account by
  // last-write-wins, seen times by min/max, counts summed. Links are not merged.
  void MergeFrom(const LeadProfile& other);

  const TraitEntry* FindTrait(std::string_view name) const;
  const CounterSeries* FindCounter(model::ActivityType type, std::string_view name) const;
  const LinkEntry* FindLink(IdKind kind, std::string_view id) const;

  // Appends the binary form (versioned, varint-based) to `out`.
  void EncodeTo(std::string* out) const;
  std::string Encode() const;
  // InvalidArgument naming "lead profile" on corrupt, truncated or unknown-version input.
  static Result<LeadProfile> Decode(std::string_view data);
};

}  // namespace fairway::identity
