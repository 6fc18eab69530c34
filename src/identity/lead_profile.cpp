#include "identity/lead_profile.h"

#include <algorithm>
#include <limits>
#include <tuple>

#include "common/coding.h"

namespace fairway::identity {

namespace {

// Format 2 appended score, memberships and indexed emails to format 1.
constexpr uint8_t kFormatVersion = 2;
constexpr uint8_t kFormatVersion1 = 1;

// True when (t1, v1) should replace (t0, v0) under last-write-wins with a value tie-break.
bool Later(int64_t t1, std::string_view v1, int64_t t0, std::string_view v0) {
  return t1 != t0 ? t1 > t0 : v1 > v0;
}

bool ValidType(uint8_t t) {
  return t >= static_cast<uint8_t>(model::ActivityType::kTrack) &&
         t <= static_cast<uint8_t>(model::ActivityType::kFairway);
}

bool ValidMembershipKind(uint8_t k) {
  return k == static_cast<uint8_t>(MembershipKind::kList) ||
         k == static_cast<uint8_t>(MembershipKind::kTag);
}

// (time, member) ordered so that a later time wins and, on a tie, membership wins.
bool LaterMembership(int64_t t1, bool m1, int64_t t0, bool m0) {
  return t1 != t0 ? t1 > t0 : (m1 && !m0);
}

// The first entry not before (kind, name), in a const or mutable vector. The keys compare as
// string_views: clang 14 with libstdc++ 12 cannot compare a tuple of `const std::string&` with
// one of `std::string_view&` (the fuzz build uses clang).
template <typename Vector>
auto FindMembershipIt(Vector& v, MembershipKind kind, std::string_view name) {
  return std::lower_bound(v.begin(), v.end(), std::tie(kind, name),
                          [](const MembershipEntry& e, const auto& key) {
                            return std::make_tuple(e.kind, std::string_view(e.name)) < key;
                          });
}

Status Corrupt(std::string_view what) {
  return InvalidArgument("lead profile is corrupt: " + std::string(what));
}

}  // namespace

void LeadProfile::RecordSeen(int64_t time_ms) {
  if (activity_count == 0) {
    first_seen_ms = last_seen_ms = time_ms;
  } else {
    first_seen_ms = std::min(first_seen_ms, time_ms);
    last_seen_ms = std::max(last_seen_ms, time_ms);
  }
  ++activity_count;
}

bool LeadProfile::MergeTrait(std::string_view name, int64_t time_ms, std::string_view json) {
  auto it = std::lower_bound(traits.begin(), traits.end(), name,
                             [](const TraitEntry& t, std::string_view n) { return t.name < n; });
  if (it != traits.end() && it->name == name) {
    if (!Later(time_ms, json, it->time_ms, it->json)) return false;
    it->time_ms = time_ms;
    it->json.assign(json);
    return true;
  }
  traits.insert(it, TraitEntry{std::string(name), time_ms, std::string(json)});
  return true;
}

bool LeadProfile::MergeAccount(std::string_view id, int64_t time_ms) {
  if (id.empty()) return false;
  if (!account_id.empty() && !Later(time_ms, id, account_time_ms, account_id)) return false;
  account_id.assign(id);
  account_time_ms = time_ms;
  return true;
}

void LeadProfile::AddCount(model::ActivityType type, std::string_view name, int64_t day,
                           uint64_t n) {
  if (n == 0) return;
  auto it = std::lower_bound(counters.begin(), counters.end(), std::tie(type, name),
                             [](const CounterSeries& s, const auto& key) {
                               return std::make_tuple(s.type, std::string_view(s.name)) < key;
                             });
  if (it == counters.end() || it->type != type || it->name != name) {
    it = counters.insert(it, CounterSeries{type, std::string(name), {}});
  }
  auto& days = it->days;
  // Activities mostly arrive in time order: the newest day is the usual target.
  if (days.empty() || days.back().day < day) {
    days.push_back({day, n});
    return;
  }
  auto d = std::lower_bound(days.begin(), days.end(), day,
                            [](const DayCount& dc, int64_t v) { return dc.day < v; });
  if (d != days.end() && d->day == day) {
    d->count += n;
  } else {
    days.insert(d, {day, n});
  }
}

void LeadProfile::PruneCounters(uint32_t counter_days) {
  if (counter_days == 0 || activity_count == 0) return;
  const int64_t cutoff = DayOf(last_seen_ms) - static_cast<int64_t>(counter_days) + 1;
  for (auto& s : counters) {
    auto keep = std::lower_bound(s.days.begin(), s.days.end(), cutoff,
                                 [](const DayCount& dc, int64_t v) { return dc.day < v; });
    s.days.erase(s.days.begin(), keep);
  }
  std::erase_if(counters, [](const CounterSeries& s) { return s.days.empty(); });
}

bool LeadProfile::MergeLink(IdKind kind, std::string_view id, int64_t time_ms,
                            std::string_view message_id) {
  auto it = std::lower_bound(links.begin(), links.end(), std::tie(kind, id),
                             [](const LinkEntry& l, const auto& key) {
                               return std::make_tuple(l.kind, std::string_view(l.id)) < key;
                             });
  if (it != links.end() && it->kind == kind && it->id == id) {
    if (!Later(time_ms, message_id, it->time_ms, it->message_id)) return false;
    it->time_ms = time_ms;
    it->message_id.assign(message_id);
    return true;
  }
  links.insert(it, LinkEntry{kind, std::string(id), time_ms, std::string(message_id)});
  return true;
}

void LeadProfile::AddScore(int64_t change) {
  if (__builtin_add_overflow(score, change, &score)) {
    score = change > 0 ? std::numeric_limits<int64_t>::max() : std::numeric_limits<int64_t>::min();
  }
}

bool LeadProfile::MergeMembership(MembershipKind kind, std::string_view name, int64_t time_ms,
                                  bool member) {
  auto it = FindMembershipIt(memberships, kind, name);
  if (it != memberships.end() && it->kind == kind && it->name == name) {
    if (!LaterMembership(time_ms, member, it->time_ms, it->member)) return false;
    it->time_ms = time_ms;
    it->member = member;
    return true;
  }
  memberships.insert(it, MembershipEntry{kind, std::string(name), time_ms, member});
  return true;
}

bool LeadProfile::AddIndexedEmail(std::string_view email_lower) {
  auto it = std::lower_bound(indexed_emails.begin(), indexed_emails.end(), email_lower);
  if (it != indexed_emails.end() && *it == email_lower) return false;
  indexed_emails.insert(it, std::string(email_lower));
  return true;
}

void LeadProfile::MergeFrom(const LeadProfile& other) {
  if (other.activity_count > 0) {
    if (activity_count == 0) {
      first_seen_ms = other.first_seen_ms;
      last_seen_ms = other.last_seen_ms;
    } else {
      first_seen_ms = std::min(first_seen_ms, other.first_seen_ms);
      last_seen_ms = std::max(last_seen_ms, other.last_seen_ms);
    }
    activity_count += other.activity_count;
  }
  for (const auto& t : other.traits) MergeTrait(t.name, t.time_ms, t.json);
  MergeAccount(other.account_id, other.account_time_ms);
  for (const auto& s : other.counters) {
    for (const auto& d : s.days) AddCount(s.type, s.name, d.day, d.count);
  }
  AddScore(other.score);
  for (const auto& m : other.memberships) MergeMembership(m.kind, m.name, m.time_ms, m.member);
}

const TraitEntry* LeadProfile::FindTrait(std::string_view name) const {
  auto it = std::lower_bound(traits.begin(), traits.end(), name,
                             [](const TraitEntry& t, std::string_view n) { return t.name < n; });
  return it != traits.end() && it->name == name ? &*it : nullptr;
}

const CounterSeries* LeadProfile::FindCounter(model::ActivityType type,
                                              std::string_view name) const {
  auto it = std::lower_bound(counters.begin(), counters.end(), std::tie(type, name),
                             [](const CounterSeries& s, const auto& key) {
                               return std::make_tuple(s.type, std::string_view(s.name)) < key;
                             });
  return it != counters.end() && it->type == type && it->name == name ? &*it : nullptr;
}

const LinkEntry* LeadProfile::FindLink(IdKind kind, std::string_view id) const {
  auto it = std::lower_bound(links.begin(), links.end(), std::tie(kind, id),
                             [](const LinkEntry& l, const auto& key) {
                               return std::make_tuple(l.kind, std::string_view(l.id)) < key;
                             });
  return it != links.end() && it->kind == kind && it->id == id ? &*it : nullptr;
}

const MembershipEntry* LeadProfile::FindMembership(MembershipKind kind,
                                                   std::string_view name) const {
  auto it = FindMembershipIt(memberships, kind, name);
  return it != memberships.end() && it->kind == kind && it->name == name ? &*it : nullptr;
}

bool LeadProfile::IsMember(MembershipKind kind, std::string_view name) const {
  const MembershipEntry* m = FindMembership(kind, name);
  return m != nullptr && m->member;
}

std::vector<std::string> LeadProfile::Members(MembershipKind kind) const {
  std::vector<std::string> names;
  for (const auto& m : memberships) {
    if (m.kind == kind && m.member) names.push_back(m.name);
  }
  return names;  // sorted: entries are sorted by (kind, name)
}

void LeadProfile::EncodeTo(std::string* out) const {
  out->push_back(static_cast<char>(kFormatVersion));
  PutVarint64(out, activity_count);
  PutVarintSigned64(out, first_seen_ms);
  PutVarintSigned64(out, last_seen_ms);
  PutVarint64(out, traits.size());
  for (const auto& t : traits) {
    PutLengthPrefixed(out, t.name);
    PutVarintSigned64(out, t.time_ms);
    PutLengthPrefixed(out, t.json);
  }
  PutLengthPrefixed(out, account_id);
  PutVarintSigned64(out, account_time_ms);
  PutVarint64(out, counters.size());
  for (const auto& s : counters) {
    out->push_back(static_cast<char>(s.type));
    PutLengthPrefixed(out, s.name);
    PutVarint64(out, s.days.size());
    int64_t prev = 0;
    for (size_t i = 0; i < s.days.size(); ++i) {
      // The first day in full, then gaps, which are small: near days cost one byte each.
      if (i == 0) {
        PutVarintSigned64(out, s.days[i].day);
      } else {
        PutVarint64(out, static_cast<uint64_t>(s.days[i].day - prev));
      }
      prev = s.days[i].day;
      PutVarint64(out, s.days[i].count);
    }
  }
  PutVarint64(out, links.size());
  for (const auto& l : links) {
    out->push_back(static_cast<char>(l.kind));
    PutLengthPrefixed(out, l.id);
    PutVarintSigned64(out, l.time_ms);
    PutLengthPrefixed(out, l.message_id);
  }
  // Format 2.
  PutVarintSigned64(out, score);
  PutVarint64(out, memberships.size());
  for (const auto& m : memberships) {
    out->push_back(static_cast<char>(m.kind));
    PutLengthPrefixed(out, m.name);
    PutVarintSigned64(out, m.time_ms);
    out->push_back(m.member ? 1 : 0);
  }
  PutVarint64(out, indexed_emails.size());
  for (const auto& e : indexed_emails) PutLengthPrefixed(out, e);
}

std::string LeadProfile::Encode() const {
  std::string out;
  EncodeTo(&out);
  return out;
}

Result<LeadProfile> LeadProfile::Decode(std::string_view data) {
  Decoder d(data);
  LeadProfile p;
  uint8_t version;
  if (!d.GetByte(&version)) return Corrupt("empty");
  if (version != kFormatVersion && version != kFormatVersion1) {
    return Corrupt("unknown format version");
  }
  if (!d.GetVarint64(&p.activity_count) || !d.GetVarintSigned64(&p.first_seen_ms) ||
      !d.GetVarintSigned64(&p.last_seen_ms)) {
    return Corrupt("truncated header");
  }
  // Every element takes at least one byte: a count beyond the rest is corruption, and checking
  // it keeps a corrupt count from reserving gigabytes.
  uint64_t n;
  if (!d.GetVarint64(&n) || n > d.rest().size()) return Corrupt("bad trait count");
  p.traits.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    std::string_view name, json;
    int64_t t;
    if (!d.GetLengthPrefixed(&name) || !d.GetVarintSigned64(&t) || !d.GetLengthPrefixed(&json)) {
      return Corrupt("truncated trait");
    }
    if (!p.traits.empty() && p.traits.back().name >= name) return Corrupt("traits out of order");
    p.traits.push_back(TraitEntry{std::string(name), t, std::string(json)});
  }
  std::string_view account;
  if (!d.GetLengthPrefixed(&account) || !d.GetVarintSigned64(&p.account_time_ms)) {
    return Corrupt("truncated account");
  }
  p.account_id.assign(account);
  if (!d.GetVarint64(&n) || n > d.rest().size()) return Corrupt("bad counter count");
  p.counters.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    uint8_t type;
    std::string_view name;
    uint64_t ndays;
    if (!d.GetByte(&type) || !d.GetLengthPrefixed(&name) || !d.GetVarint64(&ndays)) {
      return Corrupt("truncated counter");
    }
    if (!ValidType(type)) return Corrupt("bad activity type in counter");
    if (ndays == 0 || ndays > d.rest().size()) return Corrupt("bad day count");
    CounterSeries s{static_cast<model::ActivityType>(type), std::string(name), {}};
    if (!p.counters.empty() &&
        std::tie(p.counters.back().type, p.counters.back().name) >= std::tie(s.type, s.name)) {
      return Corrupt("counters out of order");
    }
    s.days.reserve(ndays);
    int64_t day = 0;
    for (uint64_t j = 0; j < ndays; ++j) {
      if (j == 0) {
        if (!d.GetVarintSigned64(&day)) return Corrupt("truncated day");
      } else {
        uint64_t gap;
        if (!d.GetVarint64(&gap)) return Corrupt("truncated day");
        if (gap == 0 || gap > (1ull << 40)) return Corrupt("days out of order");
        day += static_cast<int64_t>(gap);
      }
      uint64_t count;
      if (!d.GetVarint64(&count)) return Corrupt("truncated count");
      if (count == 0) return Corrupt("zero count");
      s.days.push_back({day, count});
    }
    p.counters.push_back(std::move(s));
  }
  if (!d.GetVarint64(&n) || n > d.rest().size()) return Corrupt("bad link count");
  p.links.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    uint8_t kind;
    std::string_view id, message_id;
    int64_t t;
    if (!d.GetByte(&kind) || !d.GetLengthPrefixed(&id) || !d.GetVarintSigned64(&t) ||
        !d.GetLengthPrefixed(&message_id)) {
      return Corrupt("truncated link");
    }
    if (!IsIdKind(static_cast<char>(kind))) return Corrupt("bad link kind");
    LinkEntry l{static_cast<IdKind>(kind), std::string(id), t, std::string(message_id)};
    if (!p.links.empty() &&
        std::tie(p.links.back().kind, p.links.back().id) >= std::tie(l.kind, l.id)) {
      return Corrupt("links out of order");
    }
    p.links.push_back(std::move(l));
  }
  if (version == kFormatVersion1) {
    if (!d.empty()) return Corrupt("trailing bytes");
    return p;
  }
  if (!d.GetVarintSigned64(&p.score)) return Corrupt("truncated score");
  if (!d.GetVarint64(&n) || n > d.rest().size()) return Corrupt("bad membership count");
  p.memberships.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    uint8_t kind, member;
    std::string_view name;
    int64_t t;
    if (!d.GetByte(&kind) || !d.GetLengthPrefixed(&name) || !d.GetVarintSigned64(&t) ||
        !d.GetByte(&member)) {
      return Corrupt("truncated membership");
    }
    if (!ValidMembershipKind(kind) || member > 1) return Corrupt("bad membership");
    MembershipEntry m{static_cast<MembershipKind>(kind), std::string(name), t, member == 1};
    if (!p.memberships.empty() && std::tie(p.memberships.back().kind, p.memberships.back().name) >=
                                      std::tie(m.kind, m.name)) {
      return Corrupt("memberships out of order");
    }
    p.memberships.push_back(std::move(m));
  }
  if (!d.GetVarint64(&n) || n > d.rest().size()) return Corrupt("bad email count");
  p.indexed_emails.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    std::string_view email;
    if (!d.GetLengthPrefixed(&email)) return Corrupt("truncated email");
    if (!p.indexed_emails.empty() && p.indexed_emails.back() >= email) {
      return Corrupt("emails out of order");
    }
    p.indexed_emails.emplace_back(email);
  }
  if (!d.empty()) return Corrupt("trailing bytes");
  return p;
}

}  // namespace fairway::identity
