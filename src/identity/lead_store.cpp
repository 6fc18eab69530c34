#include "identity/lead_store.h"

#include <simdjson.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <unordered_map>

#include "common/coding.h"
#include "common/hex.h"
#include "common/json_writer.h"
#include "common/time_format.h"
#include "engine/processor.h"
#include "identity/lead_keys.h"
#include "storage/keys.h"
#include "storage/schema.h"

namespace fairway::identity {

namespace {

constexpr std::string_view kProcessorName = "leads";

struct Identity {
  IdKind kind = IdKind::kUser;
  std::string id;
  bool operator==(const Identity&) const = default;
};

struct Claim {
  std::string target;  // a userId
  int64_t time_ms = 0;
};

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// Cursors: the scan phase ('u' known leads, 'a' anonymous leads) followed by the hex of the
// last profile id returned or examined.
std::string EncodeCursor(IdKind phase, std::string_view id) {
  return std::string(1, static_cast<char>(phase)) + HexEncode(id);
}

Status DecodeCursor(std::string_view cursor, IdKind* phase, std::string* id) {
  Status bad = InvalidArgument("cursor is not a cursor returned by this listing");
  if (cursor.size() < 3 || cursor.size() % 2 == 0 || !IsIdKind(cursor[0])) return bad;
  auto decoded = HexDecode(cursor.substr(1));
  if (!decoded) return bad;
  *phase = static_cast<IdKind>(cursor[0]);
  *id = std::move(*decoded);
  return Status::Ok();
}

// Reads the "leads" state space of one tenant. One per call; not thread-safe.
class LeadReader {
 public:
  LeadReader(storage::Store* store, const TenantId& tenant)
      : store_(store),
        prefix_(engine::StateKeyPrefix(tenant, kProcessorName)),
        txn_(store, prefix_) {}

  // The profile of (kind, id), or nullptr when there is none. Cached for the reader's life: one
  // lead's profiles are needed both to weigh claims and to build the union.
  Result<const LeadProfile*> Profile(IdKind kind, std::string_view id) {
    auto key = std::make_pair(kind, std::string(id));
    if (auto it = profiles_.find(key); it != profiles_.end()) {
      return it->second ? &*it->second : nullptr;
    }
    keys::Profile(&key_, kind, id);
    FAIRWAY_ASSIGN_OR_RETURN(auto stored, txn_.Get(key_));
    std::optional<LeadProfile> profile;
    if (stored) {
      FAIRWAY_ASSIGN_OR_RETURN(profile, LeadProfile::Decode(*stored));
    }
    auto& slot = profiles_.emplace(std::move(key), std::move(profile)).first->second;
    return slot ? &*slot : nullptr;
  }

  // The claim on (kind, id) asserted last (tie: the larger target). A claim row says that the
  // claim exists; its current time is the link's time in the claimant's profile (the row keeps
  // the time it was created with, used only if the profile lacks the link).
  Result<std::optional<Claim>> WinningClaim(IdKind kind, std::string_view id) {
    std::optional<Claim> best;
    if (!IsKeySafe(id)) return best;
    std::string prefix;
    keys::ClaimPrefix(&prefix, kind, id);
    std::vector<Claim> claims;
    FAIRWAY_RETURN_IF_ERROR(txn_.Scan(prefix, [&](std::string_view key, std::string_view value) {
      std::string_view target = key.substr(prefix.size());
      if (value.size() < 8 || target.empty()) return true;  // Not a claim this code wrote.
      claims.push_back(
          Claim{std::string(target), static_cast<int64_t>(DecodeFixed64BE(value.data()))});
      return true;
    }));
    for (auto& c : claims) {
      FAIRWAY_ASSIGN_OR_RETURN(const LeadProfile* owner, Profile(IdKind::kUser, c.target));
      if (owner != nullptr) {
        if (const LinkEntry* link = owner->FindLink(kind, id)) c.time_ms = link->time_ms;
      }
      if (!best || c.time_ms > best->time_ms ||
          (c.time_ms == best->time_ms && c.target > best->target)) {
        best = std::move(c);
      }
    }
    return best;
  }

  // Follows winning claims from `start` to the canonical identity.
  Result<Identity> Resolve(Identity start) {
    std::vector<std::string> path;  // userIds visited, in order
    std::unordered_map<std::string, size_t> position;
    Identity cur = std::move(start);
    while (true) {
      FAIRWAY_ASSIGN_OR_RETURN(auto claim, WinningClaim(cur.kind, cur.id));
      if (!claim) return cur;
      if (cur.kind == IdKind::kUser) {
        position.emplace(cur.id, path.size());
        path.push_back(cur.id);
      }
      if (auto it = position.find(claim->target); it != position.end()) {
        // A cycle: its members all resolve to its smallest userId.
        return Identity{
            IdKind::kUser,
            *std::min_element(path.begin() + static_cast<ptrdiff_t>(it->second), path.end())};
      }
      cur = Identity{IdKind::kUser, std::move(claim->target)};
    }
  }

  // Every identity whose winning claim chain ends at `canonical`, canonical first.
  Result<std::vector<Identity>> Members(const Identity& canonical) {
    std::vector<Identity> members{canonical};
    if (canonical.kind != IdKind::kUser) return members;
    std::set<std::pair<IdKind, std::string>> seen{{canonical.kind, canonical.id}};
    std::deque<std::string> owners{canonical.id};
    std::vector<Identity> candidates;
    while (!owners.empty()) {
      std::string owner = std::move(owners.front());
      owners.pop_front();
      if (!IsKeySafe(owner)) continue;
      std::string prefix;
      keys::MemberPrefix(&prefix, owner);
      candidates.clear();
      FAIRWAY_RETURN_IF_ERROR(txn_.Scan(prefix, [&](std::string_view key, std::string_view) {
        IdKind kind;
        std::string_view id;
        if (keys::SplitKindId(key.substr(prefix.size()), &kind, &id)) {
          candidates.push_back(Identity{kind, std::string(id)});
        }
        return true;
      }));
      for (auto& c : candidates) {
        if (seen.contains({c.kind, c.id})) continue;
        // The member row only says `owner` once claimed `c`; it belongs here only if that claim
        // is still c's winning one.
        FAIRWAY_ASSIGN_OR_RETURN(auto claim, WinningClaim(c.kind, c.id));
        if (!claim || claim->target != owner) continue;
        seen.insert({c.kind, c.id});
        if (c.kind == IdKind::kUser) owners.push_back(c.id);
        members.push_back(std::move(c));
      }
    }
    return members;
  }

  Result<std::optional<AccountView>> LoadAccount(std::string_view group_id) {
    AccountView account;
    account.id.assign(group_id);
    if (!IsKeySafe(group_id)) return std::optional<AccountView>(std::move(account));
    std::string prefix;
    keys::AccountPrefix(&prefix, group_id);
    FAIRWAY_RETURN_IF_ERROR(txn_.Scan(prefix, [&](std::string_view key, std::string_view value) {
      std::string_view rest = key.substr(prefix.size());
      size_t nul = rest.find('\0');
      if (nul == std::string_view::npos || rest.size() < nul + 1 + 8) return true;
      std::string_view field = rest.substr(0, nul);
      auto t = static_cast<int64_t>(DecodeFixed64BE(rest.data() + nul + 1));
      // Keys are sorted by field: a field's claims are adjacent.
      if (account.traits.empty() || account.traits.back().name != field) {
        account.traits.push_back(AccountTrait{std::string(field), t, std::string(value)});
        return true;
      }
      AccountTrait& cur = account.traits.back();
      if (t > cur.time_ms || (t == cur.time_ms && value > cur.json)) {
        cur.time_ms = t;
        cur.json.assign(value);
      }
      return true;
    }));
    return std::optional<AccountView>(std::move(account));
  }

  Result<LeadView> Build(const Identity& canonical) {
    FAIRWAY_ASSIGN_OR_RETURN(auto members, Members(canonical));
    LeadView view;
    view.id = canonical.id;
    view.known = canonical.kind == IdKind::kUser;
    LeadProfile merged;
    for (auto& m : members) {
      FAIRWAY_ASSIGN_OR_RETURN(const LeadProfile* profile, Profile(m.kind, m.id));
      if (profile != nullptr) merged.MergeFrom(*profile);
      (m.kind == IdKind::kUser ? view.user_ids : view.anonymous_ids).push_back(std::move(m.id));
    }
    std::sort(view.user_ids.begin(), view.user_ids.end());
    std::sort(view.anonymous_ids.begin(), view.anonymous_ids.end());
    if (const TraitEntry* email = merged.FindTrait("email"))
      view.email = JsonStringText(email->json);
    if (!merged.account_id.empty()) {
      FAIRWAY_ASSIGN_OR_RETURN(view.account, LoadAccount(merged.account_id));
    }
    view.traits = std::move(merged.traits);
    view.first_seen_ms = merged.first_seen_ms;
    view.last_seen_ms = merged.last_seen_ms;
    view.activity_count = merged.activity_count;
    view.counters = std::move(merged.counters);
    view.score = merged.score;
    view.lists = merged.Members(MembershipKind::kList);
    view.tags = merged.Members(MembershipKind::kTag);
    return view;
  }

  // The identity that most recently identified with `email` (any case).
  Result<std::optional<Identity>> FindByEmail(std::string_view email) {
    std::optional<Identity> best;
    std::string lower = Lower(email);
    if (!IsKeySafe(lower)) return best;
    std::string prefix;
    keys::EmailPrefix(&prefix, lower);
    int64_t best_time = 0;
    std::string best_tail;
    FAIRWAY_RETURN_IF_ERROR(txn_.Scan(prefix, [&](std::string_view key, std::string_view value) {
      std::string_view tail = key.substr(prefix.size());
      IdKind kind;
      std::string_view id;
      if (value.size() != 8 || !keys::SplitKindId(tail, &kind, &id)) return true;
      auto t = static_cast<int64_t>(DecodeFixed64BE(value.data()));
      if (!best || t > best_time || (t == best_time && tail > best_tail)) {
        best = Identity{kind, std::string(id)};
        best_time = t;
        best_tail.assign(tail);
      }
      return true;
    }));
    return best;
  }

  // Drops cached profiles (between the leads of a listing, to bound memory).
  void ForgetProfiles() { profiles_.clear(); }

  // Visits profiles of `kind` in key order, starting after `after` (all when empty).
  Status ScanProfiles(IdKind kind, std::string_view after,
                      const std::function<bool(std::string_view id)>& fn) {
    std::string lower = prefix_;
    lower.append(kind == IdKind::kUser ? keys::kUserProfiles : keys::kAnonymousProfiles);
    const size_t strip = lower.size();
    std::string upper = storage::PrefixEnd(lower);
    std::string start = lower;
    if (!after.empty()) {
      start.append(after);
      start.push_back('\0');  // The smallest key after `after`'s.
    }
    auto it = store_->NewIterator(storage::kEngineState, lower, upper);
    for (it->Seek(start); it->Valid(); it->Next()) {
      if (!fn(it->key().substr(strip))) break;
    }
    return it->status();
  }

 private:
  storage::Store* store_;
  std::string prefix_;
  engine::StateTxn txn_;
  std::string key_;
  std::map<std::pair<IdKind, std::string>, std::optional<LeadProfile>> profiles_;
};

bool TraitMatches(const TraitEntry& trait, std::string_view value) {
  if (auto text = JsonStringText(trait.json)) return *text == value;
  return trait.json == value;
}

bool Matches(const LeadView& v, const LeadFilter& f) {
  if (f.seen_since_ms && (v.activity_count == 0 || v.last_seen_ms < *f.seen_since_ms)) {
    return false;
  }
  for (const auto& [name, value] : f.traits) {
    const TraitEntry* t = v.FindTrait(name);
    if (t == nullptr || !TraitMatches(*t, value)) return false;
  }
  if (f.counter) {
    const CounterCondition& c = *f.counter;
    int64_t since = std::numeric_limits<int64_t>::min();
    int64_t until = std::numeric_limits<int64_t>::max();
    if (c.within_days > 0) {
      since = (DayOf(f.now_ms) - static_cast<int64_t>(c.within_days) + 1) * kDayMs;
      until = f.now_ms;
    }
    uint64_t n = c.type ? v.CountActivities(*c.type, c.name, since, until)
                        : v.CountActivitiesAnyType(c.name, since, until);
    if (n < c.min_count) return false;
  }
  return true;
}

uint64_t SumDays(const CounterSeries& s, int64_t since_ms, int64_t until_ms) {
  const int64_t first = DayOf(since_ms), last = DayOf(until_ms);
  uint64_t n = 0;
  auto it = std::lower_bound(s.days.begin(), s.days.end(), first,
                             [](const DayCount& d, int64_t day) { return d.day < day; });
  for (; it != s.days.end() && it->day <= last; ++it) n += it->count;
  return n;
}

}  // namespace

std::optional<std::string> JsonStringText(std::string_view json) {
  if (json.size() < 2 || json.front() != '"' || json.back() != '"') return std::nullopt;
  std::string_view inner = json.substr(1, json.size() - 2);
  if (inner.find('\\') == std::string_view::npos) return std::string(inner);
  thread_local simdjson::dom::parser parser;
  std::string_view text;
  if (parser.parse(json.data(), json.size(), true).get_string().get(text)) return std::nullopt;
  return std::string(text);
}

uint64_t LeadView::CountActivities(model::ActivityType type, std::string_view name,
                                   int64_t since_ms, int64_t until_ms) const {
  for (const auto& s : counters) {
    if (s.type == type && s.name == name) return SumDays(s, since_ms, until_ms);
  }
  return 0;
}

uint64_t LeadView::CountActivitiesAnyType(std::string_view name, int64_t since_ms,
                                          int64_t until_ms) const {
  uint64_t n = 0;
  for (const auto& s : counters) {
    if (s.name == name) n += SumDays(s, since_ms, until_ms);
  }
  return n;
}

uint64_t LeadView::CountActivitiesMatching(
    std::optional<model::ActivityType> type,
    const std::function<bool(std::string_view name)>& name_matches, int64_t since_ms,
    int64_t until_ms) const {
  uint64_t n = 0;
  for (const auto& s : counters) {
    if (type && s.type != *type) continue;
    if (name_matches(s.name)) n += SumDays(s, since_ms, until_ms);
  }
  return n;
}

bool LeadView::HasList(std::string_view name) const {
  return std::binary_search(lists.begin(), lists.end(), name);
}

bool LeadView::HasTag(std::string_view name) const {
  return std::binary_search(tags.begin(), tags.end(), name);
}

const TraitEntry* LeadView::FindTrait(std::string_view name) const {
  auto it = std::lower_bound(traits.begin(), traits.end(), name,
                             [](const TraitEntry& t, std::string_view n) { return t.name < n; });
  return it != traits.end() && it->name == name ? &*it : nullptr;
}

LeadStore::LeadStore(storage::Store* store) : store_(store) {}

Result<std::optional<LeadView>> LeadStore::Find(const TenantId& tenant, std::string_view id) const {
  std::optional<LeadView> none;
  if (id.empty()) return none;
  LeadReader reader(store_, tenant);
  std::optional<Identity> start;
  for (IdKind kind : {IdKind::kUser, IdKind::kAnonymous}) {
    FAIRWAY_ASSIGN_OR_RETURN(const LeadProfile* profile, reader.Profile(kind, id));
    if (profile != nullptr) {
      start = Identity{kind, std::string(id)};
      break;
    }
  }
  // An id known only as the subject of a claim (an alias previousId that never sent anything).
  for (IdKind kind : {IdKind::kUser, IdKind::kAnonymous}) {
    if (start) break;
    FAIRWAY_ASSIGN_OR_RETURN(auto claim, reader.WinningClaim(kind, id));
    if (claim) start = Identity{kind, std::string(id)};
  }
  if (!start && id.find('@') != std::string_view::npos) {
    FAIRWAY_ASSIGN_OR_RETURN(start, reader.FindByEmail(id));
  }
  if (!start) return none;
  FAIRWAY_ASSIGN_OR_RETURN(Identity canonical, reader.Resolve(std::move(*start)));
  FAIRWAY_ASSIGN_OR_RETURN(LeadView view, reader.Build(canonical));
  return std::optional<LeadView>(std::move(view));
}

Result<LeadPage> LeadStore::List(const TenantId& tenant, const LeadFilter& filter,
                                 std::string_view cursor, size_t limit) const {
  if (limit == 0) return InvalidArgument("limit must be at least 1");
  IdKind phase = IdKind::kUser;
  std::string after;
  if (!cursor.empty()) {
    FAIRWAY_RETURN_IF_ERROR(DecodeCursor(cursor, &phase, &after));
    if (phase == IdKind::kAnonymous && !filter.include_anonymous) {
      return InvalidArgument("cursor continues a listing that included anonymous leads");
    }
  }
  LeadReader reader(store_, tenant);
  LeadPage page;
  size_t scanned = 0;
  const size_t max_scan = std::max<size_t>(filter.max_scan, 1);
  Status error;
  bool stopped = false;  // by limit or max_scan, at `after`
  auto visit = [&](IdKind kind, std::string_view id) {
    ++scanned;
    after.assign(id);
    reader.ForgetProfiles();
    Identity self{kind, std::string(id)};
    Result<Identity> canonical = Identity{};
    if (kind == IdKind::kUser) {
      canonical = reader.Resolve(self);
    } else {
      // An anonymous id with any claim belongs to a known lead (listed there).
      auto claim = reader.WinningClaim(kind, id);
      if (!claim.ok()) {
        canonical = claim.status();
      } else {
        canonical = claim->has_value() ? Identity{IdKind::kUser, (*claim)->target} : self;
      }
    }
    if (!canonical.ok()) {
      error = canonical.status();
      return false;
    }
    if (*canonical == self) {
      auto view = reader.Build(self);
      if (!view.ok()) {
        error = view.status();
        return false;
      }
      if (Matches(*view, filter)) page.leads.push_back(std::move(view).value());
    }
    if (page.leads.size() >= limit || scanned >= max_scan) {
      stopped = true;
      return false;
    }
    return true;
  };

  while (true) {
    FAIRWAY_RETURN_IF_ERROR(
        reader.ScanProfiles(phase, after, [&](std::string_view id) { return visit(phase, id); }));
    FAIRWAY_RETURN_IF_ERROR(error);
    if (stopped) {
      page.next_cursor = EncodeCursor(phase, after);
      return page;
    }
    if (phase == IdKind::kAnonymous || !filter.include_anonymous) return page;
    phase = IdKind::kAnonymous;
    after.clear();
  }
}

void AppendLeadJson(const LeadView& lead, std::string* out) {
  JsonWriter w;
  w.BeginObject();
  w.Key("id").String(lead.id);
  w.Key("known").Bool(lead.known);
  w.Key("user_ids").BeginArray();
  for (const auto& id : lead.user_ids) w.String(id);
  w.EndArray();
  w.Key("anonymous_ids").BeginArray();
  for (const auto& id : lead.anonymous_ids) w.String(id);
  w.EndArray();
  w.Key("email");
  if (lead.email) {
    w.String(*lead.email);
  } else {
    w.Null();
  }
  w.Key("traits").BeginObject();
  for (const auto& t : lead.traits) {
    w.Key(t.name);
    if (t.json.empty()) {
      w.Null();
    } else {
      w.Raw(t.json);
    }
  }
  w.EndObject();
  w.Key("account");
  if (lead.account) {
    w.BeginObject().Key("id").String(lead.account->id).Key("traits").BeginObject();
    for (const auto& t : lead.account->traits) {
      w.Key(t.name);
      if (t.json.empty()) {
        w.Null();
      } else {
        w.Raw(t.json);
      }
    }
    w.EndObject().EndObject();
  } else {
    w.Null();
  }
  w.Key("score").Int(lead.score);
  w.Key("lists").BeginArray();
  for (const auto& name : lead.lists) w.String(name);
  w.EndArray();
  w.Key("tags").BeginArray();
  for (const auto& name : lead.tags) w.String(name);
  w.EndArray();
  if (lead.activity_count > 0) {
    w.Key("first_seen").String(FormatIso8601Millis(lead.first_seen_ms));
    w.Key("last_seen").String(FormatIso8601Millis(lead.last_seen_ms));
  } else {
    w.Key("first_seen").Null();
    w.Key("last_seen").Null();
  }
  w.Key("activity_count").Uint(lead.activity_count);
  w.Key("counters").BeginArray();
  for (const auto& s : lead.counters) {
    for (const auto& d : s.days) {
      w.BeginObject();
      w.Key("type").String(model::ActivityTypeName(s.type));
      w.Key("name").String(s.name);
      w.Key("day").String(FormatIso8601Millis(d.day * kDayMs).substr(0, 10));
      w.Key("count").Uint(d.count);
      w.EndObject();
    }
  }
  w.EndArray();
  w.EndObject();
  out->append(w.str());
}

}  // namespace fairway::identity
