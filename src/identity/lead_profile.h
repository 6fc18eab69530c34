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

// What a membership is a membership of.
enum class MembershipKind : uint8_t {
  kList = 1,
  kTag = 2,
};

// Whether the profile is in list or tag `name`, as last set: the latest added_to_list /
// removed_from_list (tag_added / tag_removed) by event time. A removal is kept (member = false)
// so that an older addition arriving late cannot undo it.
struct MembershipEntry {
  MembershipKind kind = MembershipKind::kList;
  std::string name;
  int64_t time_ms = 0;
  bool member = false;
};

// Activities of one UTC day (days since 1970-01-01).
struct DayCount {
  int64_t day = 0;
  uint64_t count = 0;
};

// Daily activity counts of one (type, name): the event of a track or fairway activity, the path
// of a page (properties.path, else its name), the name of a screen, "" for identify, group and
// alias.
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
  // The sum of every applied score change (score_changed), saturating at the int64 limits.
  int64_t score = 0;
  // List and tag memberships, current and removed. Sorted by (kind, name), unique.
  std::vector<MembershipEntry> memberships;
  // The lower-case emails this identity has email index rows for, so that lead_deleted can
  // remove them all (profiles written before format 2 lack it; see README). Sorted, unique.
  std::vector<std::string> indexed_emails;

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
  // Adds `change` to the score, saturating at the int64 limits.
  void AddScore(int64_t change);
  // Last-write-wins by event time; on a tie, membership (an addition) wins over a removal, so
  // the result does not depend on arrival order. Returns true when the entry changed.
  bool MergeMembership(MembershipKind kind, std::string_view name, int64_t time_ms, bool member);
  // Records that an email index row of this identity exists. Returns true when it is new.
  bool AddIndexedEmail(std::string_view email_lower);
  // Merges `other` in as if its activities had been applied here: traits, account and
  // memberships by last-write-wins, seen times by min/max, counts and scores summed. Links and
  // indexed emails (per-identity bookkeeping) are not merged.
  void MergeFrom(const LeadProfile& other);

  const TraitEntry* FindTrait(std::string_view name) const;
  const CounterSeries* FindCounter(model::ActivityType type, std::string_view name) const;
  const LinkEntry* FindLink(IdKind kind, std::string_view id) const;
  const MembershipEntry* FindMembership(MembershipKind kind, std::string_view name) const;
  // True when the latest membership event of (kind, name) added the profile.
  bool IsMember(MembershipKind kind, std::string_view name) const;
  // The names of the current (member) entries of `kind`, sorted.
  std::vector<std::string> Members(MembershipKind kind) const;

  // Appends the binary form (versioned, varint-based; always the newest format) to `out`.
  void EncodeTo(std::string* out) const;
  std::string Encode() const;
  // Decodes the newest format and format 1 (which lacks score, memberships and indexed emails:
  // they decode empty). InvalidArgument naming "lead profile" on corrupt, truncated or
  // unknown-version input.
  static Result<LeadProfile> Decode(std::string_view data);
};

}  // namespace fairway::identity
