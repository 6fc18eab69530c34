#include "identity/lead_processor.h"

#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>
#include <functional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "identity/lead_keys.h"
#include "identity/lead_profile.h"

namespace fairway::identity {

namespace {

using model::Activity;
using model::ActivityType;
namespace ondemand = simdjson::ondemand;

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>()(s); }
};

// What an identify, group or alias contributes besides the activity's own columns. Views point
// into the thread's parse buffers and stay valid until the next ParseFields on the thread.
struct ParsedFields {
  // Top-level fields of `traits`: (name, minified JSON value).
  std::vector<std::pair<std::string_view, std::string_view>> traits;
  // traits.email, unescaped, when it is a string.
  std::string_view email;
  bool has_email = false;
  // groupId / previousId as text (numbers keep their decimal text); empty when absent.
  std::string_view group_id;
  std::string_view previous_id;

  void Clear() {
    traits.clear();
    email = {};
    has_email = false;
    group_id = {};
    previous_id = {};
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

// Reads the fields of `fields_json` that an activity of `type` needs.
simdjson::error_code ParseFields(std::string_view fields_json, ActivityType type,
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
    }
  }
  return simdjson::SUCCESS;
}

bool NeedsFields(ActivityType t) {
  return t == ActivityType::kIdentify || t == ActivityType::kGroup || t == ActivityType::kAlias;
}

// The counter name of an activity: the track event, the page or screen name, else "".
std::string_view CounterName(const Activity& a) {
  switch (a.type) {
    case ActivityType::kTrack:
    case ActivityType::kPage:
    case ActivityType::kScreen:
      return a.event;
    default:
      return {};
  }
}

// Applies one work item's activities. Profiles touched by the item are decoded once, updated in
// memory and written back once at Commit: a lead appearing many times in the item costs one read
// and one write. Lives for one Process call; nothing survives the work item.
class ItemApplier {
 public:
  ItemApplier(engine::StateTxn* txn, const LeadProcessorOptions& options)
      : txn_(txn), options_(options) {}

  std::optional<engine::ProcessError> Apply(const Activity& a);
  // Writes everything the applied activities changed into the txn.
  std::optional<engine::ProcessError> Commit();

 private:
  struct OpenProfile {
    std::string id;  // the lead key
    LeadProfile profile;
    // Links this item created: their claim and member rows must be written.
    std::vector<std::pair<IdKind, std::string>> new_links;
  };

  // The in-memory profile of (kind, id), read from the txn on first use.
  std::optional<engine::ProcessError> Open(IdKind kind, std::string_view id, OpenProfile** out);
  void Link(OpenProfile* owner, IdKind kind, std::string_view id, const Activity& a);

  engine::StateTxn* txn_;
  const LeadProcessorOptions& options_;
  std::unordered_map<std::string, OpenProfile, StringHash, std::equal_to<>> profiles_;
  // Email index key -> latest event time seen in this item.
  std::unordered_map<std::string, int64_t, StringHash, std::equal_to<>> emails_;
  ParsedFields fields_;
  std::string key_;
  std::string scratch_;
};

std::optional<engine::ProcessError> ItemApplier::Open(IdKind kind, std::string_view id,
                                                      OpenProfile** out) {
  keys::Profile(&key_, kind, id);
  if (auto it = profiles_.find(std::string_view(key_)); it != profiles_.end()) {
    *out = &it->second;
    return std::nullopt;
  }
  auto stored = txn_->Get(key_);
  if (!stored.ok()) {
    return engine::ProcessError{engine::ErrorClass::kRetryLater,
                                "leads: reading a profile: " + stored.status().ToString()};
  }
  OpenProfile open;
  open.id.assign(id);
  if (stored->has_value()) {
    auto decoded = LeadProfile::Decode(**stored);
    if (!decoded.ok()) {
      return engine::ProcessError{
          engine::ErrorClass::kPermanent,
          fmt::format("leads: profile of {} '{}': {}", kind == IdKind::kUser ? "user" : "anonymous",
                      id, decoded.status().message())};
    }
    open.profile = std::move(decoded).value();
  }
  *out = &profiles_.emplace(key_, std::move(open)).first->second;
  return std::nullopt;
}

void ItemApplier::Link(OpenProfile* owner, IdKind kind, std::string_view id, const Activity& a) {
  // Only a new link needs rows of its own; a newer assertion of a known link only moves the
  // link's time in this profile, which is written anyway.
  if (owner->profile.FindLink(kind, id) == nullptr) {
    owner->new_links.emplace_back(kind, std::string(id));
  }
  owner->profile.MergeLink(kind, id, a.timestamp_ms, a.message_id.view());
}

std::optional<engine::ProcessError> ItemApplier::Apply(const Activity& a) {
  const std::string_view lead = a.LeadKey();
  if (lead.empty()) return std::nullopt;  // Nobody to attribute it to (the parser forbids it).
  const IdKind kind = a.user_id.empty() ? IdKind::kAnonymous : IdKind::kUser;
  OpenProfile* open = nullptr;
  if (auto err = Open(kind, lead, &open)) return err;
  LeadProfile& p = open->profile;
  const int64_t ts = a.timestamp_ms;

  p.RecordSeen(ts);
  const int64_t day = DayOf(ts);
  if (options_.counter_days == 0 ||
      day > DayOf(p.last_seen_ms) - static_cast<int64_t>(options_.counter_days)) {
    p.AddCount(a.type, CounterName(a), day);
  }

  if (NeedsFields(a.type)) {
    if (auto e = ParseFields(a.fields_json, a.type, &fields_)) {
      return engine::ProcessError{engine::ErrorClass::kPermanent,
                                  fmt::format("leads: fields_json of message '{}' is corrupt: {}",
                                              a.message_id.view(), simdjson::error_message(e))};
    }
    if (a.type == ActivityType::kIdentify) {
      for (const auto& [name, json] : fields_.traits) p.MergeTrait(name, ts, json);
      if (fields_.has_email && IsKeySafe(fields_.email)) {
        scratch_.assign(fields_.email);
        for (char& c : scratch_) {
          if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        }
        keys::Email(&key_, scratch_, kind, lead);
        auto [it, inserted] = emails_.try_emplace(key_, ts);
        if (!inserted) it->second = std::max(it->second, ts);
      }
    } else if (a.type == ActivityType::kGroup && !fields_.group_id.empty()) {
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
    }
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
  return std::nullopt;
}

std::optional<engine::ProcessError> ItemApplier::Commit() {
  for (auto& [profile_key, open] : profiles_) {
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
  }
  for (const auto& [email_key, time_ms] : emails_) {
    auto stored = txn_->Get(email_key);
    if (!stored.ok()) {
      return engine::ProcessError{engine::ErrorClass::kRetryLater,
                                  "leads: reading the email index: " + stored.status().ToString()};
    }
    if (stored->has_value() && (*stored)->size() == 8 &&
        static_cast<int64_t>(DecodeFixed64BE((*stored)->data())) >= time_ms) {
      continue;
    }
    scratch_.clear();
    PutFixed64BE(&scratch_, static_cast<uint64_t>(time_ms));
    txn_->Put(email_key, scratch_);
  }
  return std::nullopt;
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
    if (a.LeadKey().empty()) continue;
    keys::Profile(&keys.emplace_back(), a.user_id.empty() ? IdKind::kAnonymous : IdKind::kUser,
                  a.LeadKey());
  }
  if (Status st = item.state().Prefetch(keys); !st.ok()) {
    item.Finish(engine::ProcessError{engine::ErrorClass::kRetryLater,
                                     "leads: reading profiles: " + st.ToString()});
    return;
  }
  ItemApplier applier(&item.state(), options_);
  for (const auto& entry : item.entries()) {
    if (auto err = applier.Apply(entry.activity)) {
      item.Finish(std::move(err));
      return;
    }
  }
  if (auto err = applier.Commit()) {
    item.Finish(std::move(err));
    return;
  }
  item.Finish();
}

}  // namespace fairway::identity
