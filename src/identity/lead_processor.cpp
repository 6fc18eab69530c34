#include "identity/lead_processor.h"

#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <functional>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "common/json_writer.h"
#include "identity/lead_keys.h"
#include "identity/lead_profile.h"
#include "log/lead_index.h"
#include "model/generated_activities.h"
#include "storage/schema.h"

namespace fairway::identity {

namespace {

using model::Activity;
using model::ActivityType;
namespace ondemand = simdjson::ondemand;

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>()(s); }
};

// The generated (fairway) activities the processor treats specially; kOther are only counted.
enum class FairwayEvent : uint8_t {
  kNone,  // not a fairway activity
  kOther,
  kScoreChanged,
  kDataValueChanged,
  kAddedToList,
  kRemovedFromList,
  kTagAdded,
  kTagRemoved,
  kAddedToAccount,
  kLeadDeleted,
  kLeadCreated,
  kCampaignWaitElapsed,
  kIdentityLinked,
  kSessionTimeout,
};

FairwayEvent ClassifyFairway(const Activity& a) {
  if (a.type != ActivityType::kFairway) return FairwayEvent::kNone;
  static const std::unordered_map<std::string_view, FairwayEvent> kEvents = {
      {model::ScoreChanged::kEvent, FairwayEvent::kScoreChanged},
      {model::DataValueChanged::kEvent, FairwayEvent::kDataValueChanged},
      {model::ListMembershipChanged::kAddedEvent, FairwayEvent::kAddedToList},
      {model::ListMembershipChanged::kRemovedEvent, FairwayEvent::kRemovedFromList},
      {model::TagChanged::kAddedEvent, FairwayEvent::kTagAdded},
      {model::TagChanged::kRemovedEvent, FairwayEvent::kTagRemoved},
      {model::AddedToAccount::kEvent, FairwayEvent::kAddedToAccount},
      {model::LeadDeleted::kEvent, FairwayEvent::kLeadDeleted},
      {model::LeadCreated::kEvent, FairwayEvent::kLeadCreated},
      {model::CampaignWaitElapsed::kEvent, FairwayEvent::kCampaignWaitElapsed},
      {model::IdentityLinked::kEvent, FairwayEvent::kIdentityLinked},
      {model::SessionTimeout::kEvent, FairwayEvent::kSessionTimeout},
  };
  auto it = kEvents.find(a.event);
  return it == kEvents.end() ? FairwayEvent::kOther : it->second;
}

// Generated activities that say nothing about the lead: not counted, no profile.
bool IsInternal(FairwayEvent fw) {
  return fw == FairwayEvent::kCampaignWaitElapsed || fw == FairwayEvent::kIdentityLinked ||
         fw == FairwayEvent::kSessionTimeout;
}

// Message id prefixes of the activities this processor emits (reserved: see README.md).
constexpr std::string_view kLeadCreatedIdPrefix = "fw:lead_created:";
constexpr std::string_view kIdentityLinkedIdPrefix = "fw:linked:";
constexpr std::string_view kDataValueChangedIdPrefix = "fw:dvc:";
// Most data_value_changed activities one identify emits.
constexpr size_t kMaxChangesPerIdentify = 50;

// True for an activity this processor emitted, back through the log: it never emits anything.
bool IsEcho(const Activity& a, FairwayEvent fw) {
  return (fw == FairwayEvent::kLeadCreated &&
          a.message_id.view().starts_with(kLeadCreatedIdPrefix)) ||
         (fw == FairwayEvent::kDataValueChanged &&
          a.message_id.view().starts_with(kDataValueChangedIdPrefix));
}

// What an activity contributes besides its own columns. Views point into the thread's parse
// buffers and stay valid until the next ParseFields on the thread.
struct ParsedFields {
  // Top-level fields of `traits`: (name, minified JSON value).
  std::vector<std::pair<std::string_view, std::string_view>> traits;
  // traits.email, unescaped, when it is a string.
  std::string_view email;
  bool has_email = false;
  // groupId / previousId as text (numbers keep their decimal text); empty when absent.
  std::string_view group_id;
  std::string_view previous_id;
  // page: properties.path, unescaped, when it is a string.
  std::string_view path;
  // score_changed: properties.change, rounded toward zero, when it is a number within range.
  std::optional<int64_t> change;
  // data_value_changed: properties.field (a string) and properties.to (minified JSON; unescaped
  // text in to_text when it is a string).
  std::string_view field;
  std::optional<std::string_view> to_json;
  std::optional<std::string_view> to_text;
  // added_to_list / removed_from_list: properties.list; tag_added / tag_removed:
  // properties.tag (strings); added_to_account: properties.account_id (string or number text).
  std::string_view list;
  std::string_view tag;
  std::string_view account_id;

  void Clear() {
    traits.clear();
    email = {};
    has_email = false;
    group_id = {};
    previous_id = {};
    path = {};
    change.reset();
    field = {};
    to_json.reset();
    to_text.reset();
    list = {};
    tag = {};
    account_id = {};
  }
};

std::string_view TrimRight(std::string_view s) {
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\n' || s.back() == '\r' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

// The JSON text of `v`, consuming it.
simdjson::error_code RawJson(ondemand::value& v, std::string_view* out) {
  ondemand::json_type type;
  if (auto e = v.type().get(type)) return e;
  if (type == ondemand::json_type::object) {
    ondemand::object o;
    if (auto e = v.get_object().get(o)) return e;
    return o.raw_json().get(*out);
  }
  if (type == ondemand::json_type::array) {
    ondemand::array a;
    if (auto e = v.get_array().get(a)) return e;
    return a.raw_json().get(*out);
  }
  *out = TrimRight(v.raw_json_token());
  return simdjson::SUCCESS;
}

// An id as Segment sends it: a string, or a number kept as its decimal text. Anything else
// (null, objects) reads as absent.
simdjson::error_code ReadIdText(ondemand::value& v, std::string_view* out) {
  ondemand::json_type type;
  if (auto e = v.type().get(type)) return e;
  if (type == ondemand::json_type::string) return v.get_string().get(*out);
  if (type == ondemand::json_type::number) *out = TrimRight(v.raw_json_token());
  return simdjson::SUCCESS;
}

simdjson::error_code ReadTraits(ondemand::value& v, ParsedFields* out) {
  ondemand::json_type type;
  if (auto e = v.type().get(type)) return e;
  if (type != ondemand::json_type::object) return simdjson::SUCCESS;  // null: no traits
  ondemand::object traits;
  if (auto e = v.get_object().get(traits)) return e;
  for (auto f : traits) {
    ondemand::field field;
    if (auto e = std::move(f).get(field)) return e;
    std::string_view name;
    if (auto e = field.unescaped_key().get(name)) return e;
    ondemand::value value = field.value();
    std::string_view json;
    if (name == "email") {
      ondemand::json_type t;
      if (auto e = value.type().get(t)) return e;
      if (t == ondemand::json_type::string) {
        // raw_json_token only peeks, so the string can still be read unescaped.
        json = TrimRight(value.raw_json_token());
        if (auto e = value.get_string().get(out->email)) return e;
        out->has_email = true;
        out->traits.emplace_back(name, json);
        continue;
      }
    }
    if (auto e = RawJson(value, &json)) return e;
    out->traits.emplace_back(name, json);
  }
  return simdjson::SUCCESS;
}

// A JSON number token as an integer, rounded toward zero; nullopt when out of the int64 range or
// not a number.
std::optional<int64_t> NumberToInt(std::string_view token) {
  const char* end = token.data() + token.size();
  int64_t i;
  auto [ptr, ec] = std::from_chars(token.data(), end, i);
  if (ec == std::errc() && ptr == end) return i;
  double d;
  auto [dptr, dec] = std::from_chars(token.data(), end, d);
  if (dec != std::errc() || dptr != end || !std::isfinite(d)) return std::nullopt;
  d = std::trunc(d);
  // [-2^63, 2^63): the doubles that convert to int64 without overflow.
  if (d < -9223372036854775808.0 || d >= 9223372036854775808.0) return std::nullopt;
  return static_cast<int64_t>(d);
}

// Reads a string (unescaped) into `out`; leaves `out` empty for any other type.
simdjson::error_code ReadString(ondemand::value& v, std::string_view* out) {
  ondemand::json_type type;
  if (auto e = v.type().get(type)) return e;
  if (type == ondemand::json_type::string) return v.get_string().get(*out);
  return simdjson::SUCCESS;
}

// Reads the fields of the `properties` object that a page or an applied fairway activity needs.
simdjson::error_code ReadProperties(ondemand::value& v, ActivityType type, FairwayEvent fw,
                                    ParsedFields* out) {
  ondemand::json_type json_type;
  if (auto e = v.type().get(json_type)) return e;
  if (json_type != ondemand::json_type::object) return simdjson::SUCCESS;
  ondemand::object props;
  if (auto e = v.get_object().get(props)) return e;
  for (auto f : props) {
    ondemand::field field;
    if (auto e = std::move(f).get(field)) return e;
    std::string_view key;
    if (auto e = field.unescaped_key().get(key)) return e;
    ondemand::value value = field.value();
    if (type == ActivityType::kPage) {
      if (key == "path") {
        if (auto e = ReadString(value, &out->path)) return e;
      }
      continue;
    }
    switch (fw) {
      case FairwayEvent::kScoreChanged:
        if (key == model::ScoreChanged::kChange) {
          ondemand::json_type t;
          if (auto e = value.type().get(t)) return e;
          out->change.reset();
          if (t == ondemand::json_type::number) {
            out->change = NumberToInt(TrimRight(value.raw_json_token()));
          }
        }
        break;
      case FairwayEvent::kDataValueChanged:
        if (key == model::DataValueChanged::kField) {
          if (auto e = ReadString(value, &out->field)) return e;
        } else if (key == model::DataValueChanged::kTo) {
          ondemand::json_type t;
          if (auto e = value.type().get(t)) return e;
          std::string_view json;
          out->to_text.reset();
          if (t == ondemand::json_type::string) {
            // raw_json_token only peeks, so the string can still be read unescaped.
            json = TrimRight(value.raw_json_token());
            std::string_view text;
            if (auto e = value.get_string().get(text)) return e;
            out->to_text = text;
          } else if (auto e = RawJson(value, &json)) {
            return e;
          }
          out->to_json = json;
        }
        break;
      case FairwayEvent::kAddedToList:
      case FairwayEvent::kRemovedFromList:
        if (key == model::ListMembershipChanged::kList) {
          if (auto e = ReadString(value, &out->list)) return e;
        }
        break;
      case FairwayEvent::kTagAdded:
      case FairwayEvent::kTagRemoved:
        if (key == model::TagChanged::kTag) {
          if (auto e = ReadString(value, &out->tag)) return e;
        }
        break;
      case FairwayEvent::kAddedToAccount:
        if (key == model::AddedToAccount::kAccountId) {
          if (auto e = ReadIdText(value, &out->account_id)) return e;
        }
        break;
      default:
        break;
    }
  }
  return simdjson::SUCCESS;
}

// Reads the fields of `fields_json` that an activity of `type` (and fairway event `fw`) needs.
simdjson::error_code ParseFields(std::string_view fields_json, ActivityType type, FairwayEvent fw,
                                 ParsedFields* out) {
  thread_local ondemand::parser parser;
  thread_local std::string buffer;
  out->Clear();
  buffer.clear();
  buffer.reserve(fields_json.size() + 2 + simdjson::SIMDJSON_PADDING);
  buffer.push_back('{');
  buffer.append(fields_json);
  buffer.push_back('}');
  ondemand::document doc;
  if (auto e = parser
                   .iterate(simdjson::padded_string_view(buffer.data(), buffer.size(),
                                                         buffer.capacity()))
                   .get(doc)) {
    return e;
  }
  ondemand::object obj;
  if (auto e = doc.get_object().get(obj)) return e;
  for (auto f : obj) {
    ondemand::field field;
    if (auto e = std::move(f).get(field)) return e;
    std::string_view key;
    if (auto e = field.unescaped_key().get(key)) return e;
    if (key == "traits" && (type == ActivityType::kIdentify || type == ActivityType::kGroup)) {
      if (auto e = ReadTraits(field.value(), out)) return e;
    } else if (key == "groupId" && type == ActivityType::kGroup) {
      if (auto e = ReadIdText(field.value(), &out->group_id)) return e;
    } else if (key == "previousId" && type == ActivityType::kAlias) {
      if (auto e = ReadIdText(field.value(), &out->previous_id)) return e;
    } else if (key == "properties" &&
               (type == ActivityType::kPage || type == ActivityType::kFairway)) {
      if (auto e = ReadProperties(field.value(), type, fw, out)) return e;
    }
  }
  return simdjson::SUCCESS;
}

bool NeedsFields(const Activity& a, FairwayEvent fw) {
  switch (a.type) {
    case ActivityType::kIdentify:
    case ActivityType::kGroup:
    case ActivityType::kAlias:
      return true;
    case ActivityType::kPage:
      // Most pages are cheap to rule out: no "path" anywhere, no properties.path.
      return a.fields_json.find("\"path\"") != std::string::npos;
    case ActivityType::kFairway:
      return fw == FairwayEvent::kScoreChanged || fw == FairwayEvent::kDataValueChanged ||
             fw == FairwayEvent::kAddedToList || fw == FairwayEvent::kRemovedFromList ||
             fw == FairwayEvent::kTagAdded || fw == FairwayEvent::kTagRemoved ||
             fw == FairwayEvent::kAddedToAccount;
    default:
      return false;
  }
}

// The counter name of an activity: the track or fairway event, the page's properties.path when
// it is a non-empty string (else its name), the screen name, else "".
std::string_view CounterName(const Activity& a, const ParsedFields& fields) {
  switch (a.type) {
    case ActivityType::kPage:
      return fields.path.empty() ? std::string_view(a.event) : fields.path;
    case ActivityType::kTrack:
    case ActivityType::kScreen:
    case ActivityType::kFairway:
      return a.event;
    default:
      return {};
  }
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// "fairway":{"cause":<cause>} context of an emitted activity, after its properties.
void AppendFairwayContext(std::string* out, std::string_view cause) {
  out->append(R"(,"context":{"fairway":{"cause":)");
  AppendJsonString(out, cause);
  out->append("}}");
}

// Applies one work item's activities. Profiles touched by the item are decoded once, updated in
// memory and written back once at Commit: a lead appearing many times in the item costs one read
// and one write. Emits generated activities through the item as it goes (the engine discards
// them unless the item finishes OK). Lives for one Process call; nothing survives the work item.
class ItemApplier {
 public:
  ItemApplier(engine::WorkItem* item, const LeadProcessorOptions& options)
      : item_(item), txn_(&item->state()), options_(options) {}

  Status Apply(const Activity& a);
  // Writes everything the applied activities changed into the txn.
  Status Commit();
  // Activities applied to a lead after one of its activities with a later event time.
  uint64_t late() const { return late_; }

 private:
  struct OpenProfile {
    IdKind kind = IdKind::kUser;
    std::string id;  // the lead key
    // Whether the profile key exists, as of the activities applied so far.
    bool exists = false;
    LeadProfile profile;
    // Links this item created: their claim and member rows must be written.
    std::vector<std::pair<IdKind, std::string>> new_links;
    // Email index key -> latest event time of an identify with that email in this item.
    std::unordered_map<std::string, int64_t, StringHash, std::equal_to<>> emails;
  };

  // The in-memory profile of (kind, id), read from the txn on first use.
  Status Open(IdKind kind, std::string_view id, OpenProfile** out);
  void Link(OpenProfile* owner, IdKind kind, std::string_view id, const Activity& a);
  // Indexes `email` (raw, any case) for the lead.
  void IndexEmail(OpenProfile* open, std::string_view email, int64_t time_ms);
  // lead_deleted: deletes the lead key's profile and the rows it owns (claims, members, emails).
  Status Delete(OpenProfile* open);
  void EmitLeadCreated(const Activity& cause);
  void EmitIdentityLinked(const Activity& cause, const OpenProfile& owner, IdKind kind,
                          std::string_view id);
  void EmitDataValueChanged(const Activity& cause, std::string_view field, std::string_view from,
                            std::string_view to);

  engine::WorkItem* item_;
  engine::StateTxn* txn_;
  const LeadProcessorOptions& options_;
  uint64_t late_ = 0;
  std::unordered_map<std::string, OpenProfile, StringHash, std::equal_to<>> profiles_;
  ParsedFields fields_;
  // Per identify: the traits it touched (first occurrence) and their values before it.
  std::vector<std::pair<std::string_view, std::string>> changes_;
  std::unordered_set<std::string_view> changed_names_;
  std::string key_;
  std::string scratch_;
};

Status ItemApplier::Open(IdKind kind, std::string_view id, OpenProfile** out) {
  keys::Profile(&key_, kind, id);
  if (auto it = profiles_.find(std::string_view(key_)); it != profiles_.end()) {
    *out = &it->second;
    return Status::Ok();
  }
  auto stored = txn_->Get(key_);
  if (!stored.ok()) {
    return Unavailable("leads: reading a profile: " + stored.status().ToString());
  }
  OpenProfile open;
  open.kind = kind;
  open.id.assign(id);
  if (stored->has_value()) {
    auto decoded = LeadProfile::Decode(**stored);
    if (!decoded.ok()) {
      return Internal(fmt::format("leads: profile of {} '{}': {}",
                                  kind == IdKind::kUser ? "user" : "anonymous", id,
                                  decoded.status().message()));
    }
    open.profile = std::move(decoded).value();
    open.exists = true;
  }
  *out = &profiles_.emplace(key_, std::move(open)).first->second;
  return Status::Ok();
}

void ItemApplier::Link(OpenProfile* owner, IdKind kind, std::string_view id, const Activity& a) {
  // Only a new link needs rows of its own; a newer assertion of a known link only moves the
  // link's time in this profile, which is written anyway.
  if (owner->profile.FindLink(kind, id) == nullptr) {
    owner->new_links.emplace_back(kind, std::string(id));
    EmitIdentityLinked(a, *owner, kind, id);
  }
  owner->profile.MergeLink(kind, id, a.timestamp_ms, a.message_id.view());
}

void ItemApplier::IndexEmail(OpenProfile* open, std::string_view email, int64_t time_ms) {
  if (!IsKeySafe(email)) return;  // the lead id ends the key: it may hold anything
  std::string lower = Lower(email);
  keys::Email(&key_, lower, open->kind, open->id);
  auto [it, inserted] = open->emails.try_emplace(key_, time_ms);
  if (!inserted) it->second = std::max(it->second, time_ms);
  open->profile.AddIndexedEmail(lower);
}

Status ItemApplier::Delete(OpenProfile* open) {
  keys::Profile(&key_, open->kind, open->id);
  txn_->Delete(key_);
  const LeadProfile& p = open->profile;
  if (IsKeySafe(open->id)) {
    // Claims and member rows this lead wrote: its links, and (for rows whose link a profile
    // written by older code might lack) its committed member rows.
    std::set<std::pair<IdKind, std::string>> linked;
    for (const auto& l : p.links) linked.emplace(l.kind, l.id);
    if (open->kind == IdKind::kUser) {
      std::string prefix;
      keys::MemberPrefix(&prefix, open->id);
      Status st = txn_->Scan(prefix, [&](std::string_view key, std::string_view) {
        IdKind kind;
        std::string_view id;
        if (keys::SplitKindId(key.substr(prefix.size()), &kind, &id)) {
          linked.emplace(kind, std::string(id));
        }
        return true;
      });
      if (!st.ok()) {
        return Unavailable("leads: reading member rows: " + st.ToString());
      }
    }
    for (const auto& [kind, id] : linked) {
      keys::Claim(&key_, kind, id, open->id);
      txn_->Delete(key_);
      keys::Member(&key_, open->id, kind, id);
      txn_->Delete(key_);
    }
  }
  // Email rows: the indexed emails, and the current email of a profile written before they
  // were recorded.
  std::set<std::string> emails(p.indexed_emails.begin(), p.indexed_emails.end());
  if (const TraitEntry* email = p.FindTrait("email")) {
    if (auto text = JsonStringText(email->json)) emails.insert(Lower(*text));
  }
  for (const auto& email : emails) {
    if (!IsKeySafe(email)) continue;
    keys::Email(&key_, email, open->kind, open->id);
    txn_->Delete(key_);
  }
  open->exists = false;
  open->profile = LeadProfile{};
  open->new_links.clear();
  open->emails.clear();
  return Status::Ok();
}

void ItemApplier::EmitIdentityLinked(const Activity& cause, const OpenProfile& owner, IdKind kind,
                                     std::string_view id) {
  const char k = kind == IdKind::kUser ? 'u' : 'a';
  Activity e;
  e.type = ActivityType::kFairway;
  e.message_id = MessageId(fmt::format("{}{}:{}:{}:{}", kIdentityLinkedIdPrefix, owner.id, k, id,
                                       cause.message_id.view()));
  e.user_id = owner.id;
  e.event = model::IdentityLinked::kEvent;
  e.timestamp_ms = cause.timestamp_ms;
  e.fields_json = R"("properties":{)";
  model::IdentityLinked{.identity = id,
                        .kind = kind == IdKind::kUser ? model::IdentityLinked::kUserId
                                                      : model::IdentityLinked::kAnonymousId}
      .AppendProperties(&e.fields_json);
  e.fields_json.push_back('}');
  AppendFairwayContext(&e.fields_json, cause.message_id.view());
  item_->Emit(std::move(e));
}

void ItemApplier::EmitLeadCreated(const Activity& cause) {
  Activity e;
  e.type = ActivityType::kFairway;
  e.message_id = MessageId(
      fmt::format("{}{}:{}", kLeadCreatedIdPrefix, cause.user_id, cause.message_id.view()));
  e.user_id = cause.user_id;
  e.anonymous_id = cause.anonymous_id;
  e.event = model::LeadCreated::kEvent;
  e.timestamp_ms = cause.timestamp_ms;
  e.fields_json = R"("properties":{)";
  model::LeadCreated{.user_id = cause.user_id}.AppendProperties(&e.fields_json);
  e.fields_json.push_back('}');
  AppendFairwayContext(&e.fields_json, cause.message_id.view());
  item_->Emit(std::move(e));
}

void ItemApplier::EmitDataValueChanged(const Activity& cause, std::string_view field,
                                       std::string_view from, std::string_view to) {
  Activity e;
  e.type = ActivityType::kFairway;
  e.message_id =
      MessageId(fmt::format("{}{}:{}", kDataValueChangedIdPrefix, cause.message_id.view(), field));
  e.user_id = cause.user_id;
  e.anonymous_id = cause.anonymous_id;
  e.event = model::DataValueChanged::kEvent;
  e.timestamp_ms = cause.timestamp_ms;
  e.fields_json = R"("properties":{)";
  model::DataValueChanged{.field = field,
                          .from_json = from,
                          .to_json = to,
                          .origin = model::DataValueChanged::Origin::kIdentify}
      .AppendProperties(&e.fields_json);
  e.fields_json.push_back('}');
  AppendFairwayContext(&e.fields_json, cause.message_id.view());
  item_->Emit(std::move(e));
}

Status ItemApplier::Apply(const Activity& a) {
  const std::string_view lead = a.LeadKey();
  if (lead.empty()) return Status::Ok();  // Nobody to attribute it to (the parser forbids it).
  const FairwayEvent fw = ClassifyFairway(a);
  // Internal signals (a campaign timer, a link announced to the campaigns processor): nothing
  // about the lead.
  if (IsInternal(fw)) return Status::Ok();
  const IdKind kind = a.user_id.empty() ? IdKind::kAnonymous : IdKind::kUser;
  OpenProfile* open = nullptr;
  if (Status st = Open(kind, lead, &open); !st.ok()) return st;
  if (fw == FairwayEvent::kLeadDeleted) return Delete(open);
  const bool echo = IsEcho(a, fw);
  // The echo of a lead deleted since it was emitted: it must not bring the lead back.
  if (echo && !open->exists) return Status::Ok();
  const bool created = !open->exists;
  open->exists = true;
  LeadProfile& p = open->profile;
  const int64_t ts = a.timestamp_ms;

  fields_.Clear();
  if (NeedsFields(a, fw)) {
    if (auto e = ParseFields(a.fields_json, a.type, fw, &fields_)) {
      return InvalidArgument(fmt::format("leads: fields_json of message '{}' is corrupt: {}",
                                         a.message_id.view(), simdjson::error_message(e)));
    }
  }

  // Activities Fairway generated (campaign effects, lead_created, ...) are history the lead's
  // counters keep, but not the lead's own doing: they do not count in activity_count or move
  // first/last seen ("not seen for 30 days" must not be reset by a campaign email).
  if (a.type != ActivityType::kFairway) {
    if (!created && p.activity_count > 0 && ts < p.last_seen_ms) ++late_;
    p.RecordSeen(ts);
  }
  const int64_t day = DayOf(ts);
  if (options_.counter_days == 0 ||
      day > DayOf(p.last_seen_ms) - static_cast<int64_t>(options_.counter_days)) {
    p.AddCount(a.type, CounterName(a, fields_), day);
  }

  // data_value_changed for each trait an identify changes on a userId profile that existed.
  const bool track_changes = a.type == ActivityType::kIdentify && kind == IdKind::kUser && !created;
  changes_.clear();
  changed_names_.clear();

  switch (a.type) {
    case ActivityType::kIdentify:
      for (const auto& [name, json] : fields_.traits) {
        if (track_changes && changed_names_.insert(name).second) {
          const TraitEntry* old = p.FindTrait(name);
          changes_.emplace_back(name, old != nullptr ? old->json : std::string());
        }
        p.MergeTrait(name, ts, json);
      }
      if (fields_.has_email) IndexEmail(open, fields_.email, ts);
      break;
    case ActivityType::kGroup:
      if (fields_.group_id.empty()) break;
      p.MergeAccount(fields_.group_id, ts);
      if (IsKeySafe(fields_.group_id)) {
        // Any lead may write this account: one blind Put per (field, activity), never a
        // read-modify-write; readers pick the latest per field.
        for (const auto& [name, json] : fields_.traits) {
          if (!IsKeySafe(name)) continue;
          keys::AccountTrait(&key_, fields_.group_id, name, ts, a.message_id.view());
          txn_->Put(key_, std::string(json));
        }
      }
      break;
    case ActivityType::kFairway:
      switch (fw) {
        case FairwayEvent::kScoreChanged:
          if (fields_.change) p.AddScore(*fields_.change);
          break;
        case FairwayEvent::kDataValueChanged:
          if (!fields_.field.empty() && fields_.to_json) {
            p.MergeTrait(fields_.field, ts, *fields_.to_json);
            if (fields_.field == "email" && fields_.to_text) IndexEmail(open, *fields_.to_text, ts);
          }
          break;
        case FairwayEvent::kAddedToList:
        case FairwayEvent::kRemovedFromList:
          if (!fields_.list.empty()) {
            p.MergeMembership(MembershipKind::kList, fields_.list, ts,
                              fw == FairwayEvent::kAddedToList);
          }
          break;
        case FairwayEvent::kTagAdded:
        case FairwayEvent::kTagRemoved:
          if (!fields_.tag.empty()) {
            p.MergeMembership(MembershipKind::kTag, fields_.tag, ts, fw == FairwayEvent::kTagAdded);
          }
          break;
        case FairwayEvent::kAddedToAccount:
          p.MergeAccount(fields_.account_id, ts);
          break;
        default:
          break;
      }
      break;
    default:
      break;
  }

  // Identity links. Claims and member rows name the claiming userId in their key, so only this
  // lead's work ever writes them.
  if (kind == IdKind::kUser && IsKeySafe(a.user_id)) {
    if (IsKeySafe(a.anonymous_id)) Link(open, IdKind::kAnonymous, a.anonymous_id, a);
    if (a.type == ActivityType::kAlias && IsKeySafe(fields_.previous_id) &&
        fields_.previous_id != a.user_id && fields_.previous_id != a.anonymous_id) {
      Link(open, IdKind::kUser, fields_.previous_id, a);
    }
  }

  if (created && kind == IdKind::kUser) EmitLeadCreated(a);
  size_t emitted = 0;
  for (const auto& [name, before] : changes_) {
    if (emitted == kMaxChangesPerIdentify) break;
    const std::string& after = p.FindTrait(name)->json;
    // An absent trait and a null one are the same value.
    std::string_view from = before.empty() ? "null" : std::string_view(before);
    if (from == after) continue;
    EmitDataValueChanged(a, name, from, after);
    ++emitted;
  }
  return Status::Ok();
}

Status ItemApplier::Commit() {
  for (auto& [profile_key, open] : profiles_) {
    // Deleted (its rows are deleted in the txn already), or opened for an echo that was dropped.
    if (!open.exists) continue;
    open.profile.PruneCounters(options_.counter_days);
    std::string value;
    open.profile.EncodeTo(&value);
    txn_->Put(profile_key, std::move(value));
    for (const auto& [kind, id] : open.new_links) {
      const LinkEntry* link = open.profile.FindLink(kind, id);
      keys::Claim(&key_, kind, id, open.id);
      EncodeClaimValue(&scratch_, link->time_ms, link->message_id);
      txn_->Put(key_, scratch_);
      keys::Member(&key_, open.id, kind, id);
      txn_->Put(key_, std::string());
    }
    for (const auto& [email_key, time_ms] : open.emails) {
      auto stored = txn_->Get(email_key);
      if (!stored.ok()) {
        return Unavailable("leads: reading the email index: " + stored.status().ToString());
      }
      if (stored->has_value() && (*stored)->size() == 8 &&
          static_cast<int64_t>(DecodeFixed64BE((*stored)->data())) >= time_ms) {
        continue;
      }
      scratch_.clear();
      PutFixed64BE(&scratch_, static_cast<uint64_t>(time_ms));
      txn_->Put(email_key, scratch_);
    }
  }
  return Status::Ok();
}

}  // namespace

LeadProcessor::LeadProcessor(LeadProcessorOptions options) : options_(options) {
  spec_.name = "leads";
  spec_.ordering = engine::Ordering::kPerLead;
  // Large batches: one MultiGet of the profiles and one commit per batch (measured ~15 % faster
  // than 256 in the drain benchmark).
  spec_.batch_size = 1024;
  spec_.enabled_by_default = true;
}

void LeadProcessor::Process(engine::WorkItem& item) {
  // One batched read of every profile the item touches.
  std::vector<std::string> keys;
  keys.reserve(item.entries().size());
  for (const auto& entry : item.entries()) {
    const Activity& a = entry.activity;
    if (a.LeadKey().empty() || IsInternal(ClassifyFairway(a))) continue;
    keys::Profile(&keys.emplace_back(), a.user_id.empty() ? IdKind::kAnonymous : IdKind::kUser,
                  a.LeadKey());
  }
  if (Status st = item.state().Prefetch(keys); !st.ok()) {
    item.Finish(Unavailable("leads: reading profiles: " + st.ToString()));
    return;
  }
  ItemApplier applier(&item, options_);
  for (const auto& entry : item.entries()) {
    if (Status st = applier.Apply(entry.activity); !st.ok()) {
      item.Finish(std::move(st));
      return;
    }
  }
  if (options_.index_retention_ms) {
    const int64_t retention_ms = options_.index_retention_ms(item.tenant());
    std::vector<log::IndexRow> rows;
    for (const auto& entry : item.entries()) {
      const int64_t expiry = retention_ms > 0 ? entry.activity.received_at_ms + retention_ms : 0;
      log::AddLeadIndexRows(item.tenant(), entry.activity, entry.partition.value(),
                            entry.offset.value(), expiry, &rows);
    }
    for (auto& row : rows) {
      item.state().PutIn(storage::kActivityIndex, std::move(row.key), std::move(row.value));
    }
  }
  if (Status st = applier.Commit(); !st.ok()) {
    item.Finish(std::move(st));
    return;
  }
  if (applier.late() > 0 && options_.metrics != nullptr) {
    item.AfterCommit([metrics = options_.metrics, tenant = item.tenant(), n = applier.late()] {
      metrics
          ->GetCounter("fairway_leads_late_activities_total",
                       "Activities the leads processor applied after a newer activity (by event "
                       "time) of the same lead: late-arriving or re-timed data, by tenant.",
                       {{"tenant", tenant.str()}})
          ->Add(n);
    });
  }
  item.Finish();
}

}  // namespace fairway::identity
