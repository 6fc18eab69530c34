#include "campaigns/campaign_registry.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/json.hpp>

#include "common/coding.h"
#include "common/crypto.h"
#include "model/json_limits.h"
#include "storage/schema.h"

namespace fairway::campaigns {

namespace json = boost::json;

namespace {

constexpr uint8_t kRecordVersion = 1;

std::string TenantPrefix(const TenantId& tenant) {
  std::string k = tenant.str();
  k.push_back('\0');
  return k;
}

std::string EncodeRecord(const CampaignRecord& r) {
  std::string out;
  out.push_back(static_cast<char>(kRecordVersion));
  out.push_back(r.active ? 1 : 0);
  PutVarint64(&out, r.version);
  PutVarintSigned64(&out, r.created_ms);
  PutVarintSigned64(&out, r.updated_ms);
  PutLengthPrefixed(&out, r.id);
  PutLengthPrefixed(&out, r.definition_json);
  return out;
}

Result<CampaignRecord> DecodeRecord(std::string_view in) {
  Decoder d(in);
  uint8_t version = 0, active = 0;
  CampaignRecord r;
  std::string_view id, def;
  if (!d.GetByte(&version) || version != kRecordVersion || !d.GetByte(&active) ||
      !d.GetVarint64(&r.version) || !d.GetVarintSigned64(&r.created_ms) ||
      !d.GetVarintSigned64(&r.updated_ms) || !d.GetLengthPrefixed(&id) ||
      !d.GetLengthPrefixed(&def)) {
    return Internal("stored campaign: corrupt record");
  }
  r.active = active != 0;
  r.id = std::string(id);
  r.definition_json = std::string(def);
  return r;
}

std::string EncodeSettings(const CampaignSettings& s) {
  json::object o;
  o["emails_per_day"] = s.emails_per_day;
  o["emails_per_week"] = s.emails_per_week;
  o["max_chain_depth"] = s.max_chain_depth;
  o["defer_days"] = s.defer_days;
  o["email_from"] = s.email_from;
  o["crm_url"] = s.crm_url;
  o["webhook_secret"] = s.webhook_secret;
  return json::serialize(o);
}

// Applies the fields of `o` to `s`; InvalidArgument naming the field.
Status ApplySettings(const json::object& o, CampaignSettings* s, bool* rotate) {
  for (const auto& kv : o) {
    std::string_view k = kv.key();
    const json::value& v = kv.value();
    auto count = [&](uint32_t* out, uint32_t max) -> Status {
      if (!v.is_int64() || v.get_int64() < 0 || v.get_int64() > max) {
        return InvalidArgument(fmt::format("{}: must be an integer from 0 to {}", k, max));
      }
      *out = static_cast<uint32_t>(v.get_int64());
      return Status::Ok();
    };
    if (k == "emails_per_day") {
      FAIRWAY_RETURN_IF_ERROR(count(&s->emails_per_day, 1000));
    } else if (k == "emails_per_week") {
      FAIRWAY_RETURN_IF_ERROR(count(&s->emails_per_week, 7000));
    } else if (k == "max_chain_depth") {
      FAIRWAY_RETURN_IF_ERROR(count(&s->max_chain_depth, 100));
      if (s->max_chain_depth == 0) return InvalidArgument("max_chain_depth: must be at least 1");
    } else if (k == "defer_days") {
      FAIRWAY_RETURN_IF_ERROR(count(&s->defer_days, 365));
    } else if (k == "email_from") {
      if (!v.is_string() || v.get_string().find('@') == json::string::npos ||
          v.get_string().size() > 254 ||
          v.get_string().find_first_of("\r\n <>") != json::string::npos) {
        return InvalidArgument("email_from: must be an email address");
      }
      s->email_from = std::string(v.get_string());
    } else if (k == "crm_url") {
      if (!v.is_string() || (!v.get_string().empty() && !v.get_string().starts_with("http://") &&
                             !v.get_string().starts_with("https://"))) {
        return InvalidArgument("crm_url: must be an http:// or https:// URL, or empty");
      }
      s->crm_url = std::string(v.get_string());
    } else if (k == "rotate_webhook_secret") {
      if (!v.is_bool()) return InvalidArgument("rotate_webhook_secret: must be true or false");
      *rotate = v.get_bool();
    } else if (k == "webhook_secret") {
      return InvalidArgument("webhook_secret: is generated; use rotate_webhook_secret");
    } else {
      return InvalidArgument(fmt::format("{}: unknown field", k));
    }
  }
  return Status::Ok();
}

Result<CampaignSettings> DecodeSettings(std::string_view text) {
  json::error_code ec;
  json::value v = json::parse(text, ec, {}, model::JsonParseOptions());
  if (ec || !v.is_object()) return Internal("stored campaign settings: corrupt");
  CampaignSettings s;
  json::object o = v.get_object();
  std::string secret;
  if (auto* w = o.if_contains("webhook_secret"); w && w->is_string()) secret = w->get_string();
  o.erase("webhook_secret");
  bool rotate = false;
  FAIRWAY_RETURN_IF_ERROR(ApplySettings(o, &s, &rotate));
  s.webhook_secret = secret;
  return s;
}

// The definition's "status", if it gives one.
Result<std::optional<bool>> StatusOf(std::string_view definition) {
  json::error_code ec;
  json::value v = json::parse(definition, ec, {}, model::JsonParseOptions());
  if (ec || !v.is_object()) return std::optional<bool>();
  auto* s = v.get_object().if_contains("status");
  if (!s || s->is_null()) return std::optional<bool>();
  if (s->is_string() && s->get_string() == "active") return std::optional<bool>(true);
  if (s->is_string() && s->get_string() == "inactive") return std::optional<bool>(false);
  return InvalidArgument("status: must be active or inactive");
}

}  // namespace

std::string CampaignKey(const TenantId& tenant, std::string_view id) {
  std::string k = TenantPrefix(tenant);
  k.push_back('c');
  k.append(id);
  return k;
}

std::string SettingsKey(const TenantId& tenant) {
  std::string k = TenantPrefix(tenant);
  k.push_back('s');
  return k;
}

std::string TenantCampaigns::IndexKey(model::ActivityType type, std::string_view name) {
  std::string k;
  k.reserve(name.size() + 1);
  k.push_back(static_cast<char>(type));
  k.append(name);
  return k;
}

void TenantCampaigns::Lookup(model::ActivityType type, std::string_view name,
                             std::vector<TriggerRef>* out) const {
  if (index.empty()) return;
  std::string key = IndexKey(type, name);
  if (auto it = index.find(key); it != index.end()) {
    out->insert(out->end(), it->second.begin(), it->second.end());
  }
  key.resize(1);
  key.push_back('*');
  if (auto it = index.find(key); it != index.end()) {
    out->insert(out->end(), it->second.begin(), it->second.end());
  }
}

const CompiledCampaign* TenantCampaigns::Find(std::string_view id) const {
  auto it = by_id.find(std::string(id));
  return it == by_id.end() ? nullptr : it->second.get();
}

CampaignRegistry::CampaignRegistry(storage::Store* store, const Clock* clock)
    : store_(store), clock_(clock) {}

Result<std::shared_ptr<const TenantCampaigns>> CampaignRegistry::LoadLocked(
    const TenantId& tenant) {
  {
    std::lock_guard snap_lock(snap_mu_);
    if (auto it = tenants_.find(tenant.str()); it != tenants_.end()) return it->second;
  }
  auto snap = std::make_shared<TenantCampaigns>();
  std::string lower = TenantPrefix(tenant) + "c";
  std::string upper = TenantPrefix(tenant) + "d";
  auto it = store_->NewIterator(storage::kCampaigns, lower, upper);
  for (it->Seek(lower); it->Valid(); it->Next()) {
    FAIRWAY_ASSIGN_OR_RETURN(auto record, DecodeRecord(it->value()));
    auto compiled = ParseCampaign(record.definition_json, record.id);
    if (!compiled.ok()) {
      // Stored definitions were valid when written; one that no longer parses (a newer
      // server's format) is skipped rather than stopping the tenant's campaigns.
      spdlog::error("campaigns: {} campaign '{}' does not load: {}", tenant.str(), record.id,
                    compiled.status().ToString());
      continue;
    }
    auto c = std::make_shared<CompiledCampaign>();
    c->record = std::move(record);
    c->campaign = std::move(compiled).value();
    snap->by_id.emplace(c->record.id, std::move(c));
  }
  FAIRWAY_RETURN_IF_ERROR(it->status());
  FAIRWAY_ASSIGN_OR_RETURN(auto settings, store_->Get(storage::kCampaigns, SettingsKey(tenant)));
  if (settings) {
    FAIRWAY_ASSIGN_OR_RETURN(snap->settings, DecodeSettings(*settings));
  }
  for (const auto& [id, c] : snap->by_id) {
    if (!c->record.active) continue;
    for (const auto& t : c->campaign.triggers) {
      snap->index[TenantCampaigns::IndexKey(t.type, t.name)].push_back({c.get(), &t});
    }
  }
  std::shared_ptr<const TenantCampaigns> out = std::move(snap);
  std::lock_guard snap_lock(snap_mu_);
  tenants_[tenant.str()] = out;
  return out;
}

void CampaignRegistry::PublishLocked(const TenantId& tenant, const std::string& id,
                                     std::shared_ptr<const CompiledCampaign> changed,
                                     const CampaignSettings* settings) {
  std::shared_ptr<const TenantCampaigns> old;
  {
    std::lock_guard snap_lock(snap_mu_);
    if (auto it = tenants_.find(tenant.str()); it != tenants_.end()) old = it->second;
  }
  auto snap = std::make_shared<TenantCampaigns>();
  if (old) {
    snap->by_id = old->by_id;
    snap->settings = old->settings;
  }
  if (settings) snap->settings = *settings;
  if (!id.empty()) {
    if (changed) {
      snap->by_id[id] = std::move(changed);
    } else {
      snap->by_id.erase(id);
    }
  }
  for (const auto& [cid, c] : snap->by_id) {
    if (!c->record.active) continue;
    for (const auto& t : c->campaign.triggers) {
      snap->index[TenantCampaigns::IndexKey(t.type, t.name)].push_back({c.get(), &t});
    }
  }
  std::lock_guard snap_lock(snap_mu_);
  tenants_[tenant.str()] = std::move(snap);
}

Status CampaignRegistry::WriteRecordLocked(const TenantId& tenant, const CampaignRecord& record) {
  storage::WriteBatch batch;
  batch.Put(storage::kCampaigns, CampaignKey(tenant, record.id), EncodeRecord(record));
  return store_->Write(batch, /*sync=*/true);
}

Result<CampaignRecord> CampaignRegistry::Create(const TenantId& tenant, std::string_view id,
                                                std::string_view definition_json) {
  if (!ValidCampaignId(id)) {
    return InvalidArgument("id: must match [a-z0-9][a-z0-9_-]{0,62}");
  }
  FAIRWAY_ASSIGN_OR_RETURN(auto campaign, ParseCampaign(definition_json, id));
  FAIRWAY_ASSIGN_OR_RETURN(auto status, StatusOf(definition_json));
  std::lock_guard lock(write_mu_);
  FAIRWAY_RETURN_IF_ERROR(LoadLocked(tenant).status());
  FAIRWAY_ASSIGN_OR_RETURN(auto existing,
                           store_->Get(storage::kCampaigns, CampaignKey(tenant, id)));
  if (existing) return AlreadyExists(fmt::format("campaign '{}' already exists", id));
  auto c = std::make_shared<CompiledCampaign>();
  c->record.id = std::string(id);
  c->record.definition_json = std::string(definition_json);
  c->record.active = status.value_or(false);
  c->record.version = 1;
  c->record.created_ms = c->record.updated_ms = clock_->NowMillis();
  c->campaign = std::move(campaign);
  FAIRWAY_RETURN_IF_ERROR(WriteRecordLocked(tenant, c->record));
  CampaignRecord out = c->record;
  PublishLocked(tenant, out.id, std::move(c));
  return out;
}

Result<CampaignRecord> CampaignRegistry::Replace(const TenantId& tenant, std::string_view id,
                                                 std::string_view definition_json) {
  FAIRWAY_ASSIGN_OR_RETURN(auto campaign, ParseCampaign(definition_json, id));
  FAIRWAY_ASSIGN_OR_RETURN(auto status, StatusOf(definition_json));
  std::lock_guard lock(write_mu_);
  FAIRWAY_ASSIGN_OR_RETURN(auto snap, LoadLocked(tenant));
  const CompiledCampaign* old = snap->Find(id);
  if (!old) return NotFound(fmt::format("campaign '{}' not found", id));
  auto c = std::make_shared<CompiledCampaign>();
  c->record = old->record;
  c->record.definition_json = std::string(definition_json);
  c->record.active = status.value_or(old->record.active);
  c->record.version++;
  c->record.updated_ms = clock_->NowMillis();
  c->campaign = std::move(campaign);
  FAIRWAY_RETURN_IF_ERROR(WriteRecordLocked(tenant, c->record));
  CampaignRecord out = c->record;
  PublishLocked(tenant, out.id, std::move(c));
  return out;
}

Result<CampaignRecord> CampaignRegistry::Get(const TenantId& tenant, std::string_view id) {
  FAIRWAY_ASSIGN_OR_RETURN(auto snap, Snapshot(tenant));
  const CompiledCampaign* c = snap->Find(id);
  if (!c) return NotFound(fmt::format("campaign '{}' not found", id));
  return c->record;
}

Result<CampaignPage> CampaignRegistry::List(const TenantId& tenant, std::string_view cursor,
                                            size_t limit) {
  if (limit == 0) return InvalidArgument("limit: must be at least 1");
  std::string lower = cursor.empty() ? TenantPrefix(tenant) + "c" : CampaignKey(tenant, cursor);
  if (!cursor.empty()) lower.push_back('\0');  // strictly after the cursor
  std::string upper = TenantPrefix(tenant) + "d";
  CampaignPage page;
  auto it = store_->NewIterator(storage::kCampaigns, lower, upper);
  for (it->Seek(lower); it->Valid(); it->Next()) {
    if (page.items.size() == limit) {
      page.next_cursor = page.items.back().id;
      break;
    }
    FAIRWAY_ASSIGN_OR_RETURN(auto record, DecodeRecord(it->value()));
    page.items.push_back(std::move(record));
  }
  FAIRWAY_RETURN_IF_ERROR(it->status());
  return page;
}

Status CampaignRegistry::Delete(const TenantId& tenant, std::string_view id) {
  std::lock_guard lock(write_mu_);
  FAIRWAY_ASSIGN_OR_RETURN(auto snap, LoadLocked(tenant));
  if (!snap->Find(id)) return NotFound(fmt::format("campaign '{}' not found", id));
  storage::WriteBatch batch;
  batch.Delete(storage::kCampaigns, CampaignKey(tenant, id));
  FAIRWAY_RETURN_IF_ERROR(store_->Write(batch, /*sync=*/true));
  PublishLocked(tenant, std::string(id), nullptr);
  return Status::Ok();
}

Result<CampaignRecord> CampaignRegistry::SetActive(const TenantId& tenant, std::string_view id,
                                                   bool active) {
  std::lock_guard lock(write_mu_);
  FAIRWAY_ASSIGN_OR_RETURN(auto snap, LoadLocked(tenant));
  const CompiledCampaign* old = snap->Find(id);
  if (!old) return NotFound(fmt::format("campaign '{}' not found", id));
  if (old->record.active == active) return old->record;
  auto c = std::make_shared<CompiledCampaign>(*old);
  c->record.active = active;
  c->record.updated_ms = clock_->NowMillis();
  FAIRWAY_RETURN_IF_ERROR(WriteRecordLocked(tenant, c->record));
  CampaignRecord out = c->record;
  PublishLocked(tenant, out.id, std::move(c));
  return out;
}

Status CampaignRegistry::WriteSettingsLocked(const TenantId& tenant, const CampaignSettings& s) {
  storage::WriteBatch batch;
  batch.Put(storage::kCampaigns, SettingsKey(tenant), EncodeSettings(s));
  return store_->Write(batch, /*sync=*/true);
}

Result<CampaignSettings> CampaignRegistry::GetSettings(const TenantId& tenant) {
  {
    FAIRWAY_ASSIGN_OR_RETURN(auto snap, Snapshot(tenant));
    if (!snap->settings.webhook_secret.empty()) return snap->settings;
  }
  std::lock_guard lock(write_mu_);
  FAIRWAY_ASSIGN_OR_RETURN(auto snap, LoadLocked(tenant));
  if (!snap->settings.webhook_secret.empty()) return snap->settings;
  CampaignSettings s = snap->settings;
  s.webhook_secret = RandomToken("whsec_", 32);
  FAIRWAY_RETURN_IF_ERROR(WriteSettingsLocked(tenant, s));
  PublishLocked(tenant, "", nullptr, &s);
  return s;
}

Result<CampaignSettings> CampaignRegistry::UpdateSettings(const TenantId& tenant,
                                                          std::string_view text) {
  json::error_code ec;
  json::value v = json::parse(text, ec, {}, model::JsonParseOptions());
  if (ec) return InvalidArgument(fmt::format("body: not valid JSON ({})", ec.message()));
  if (!v.is_object()) return InvalidArgument("body: must be an object");
  std::lock_guard lock(write_mu_);
  FAIRWAY_ASSIGN_OR_RETURN(auto snap, LoadLocked(tenant));
  CampaignSettings s = snap->settings;
  bool rotate = false;
  FAIRWAY_RETURN_IF_ERROR(ApplySettings(v.get_object(), &s, &rotate));
  if (rotate || s.webhook_secret.empty()) s.webhook_secret = RandomToken("whsec_", 32);
  FAIRWAY_RETURN_IF_ERROR(WriteSettingsLocked(tenant, s));
  PublishLocked(tenant, "", nullptr, &s);
  return s;
}

Result<std::shared_ptr<const TenantCampaigns>> CampaignRegistry::Snapshot(const TenantId& tenant) {
  {
    std::lock_guard snap_lock(snap_mu_);
    if (auto it = tenants_.find(tenant.str()); it != tenants_.end()) return it->second;
  }
  // First use: load it, once (writers hold the same lock).
  std::lock_guard lock(write_mu_);
  return LoadLocked(tenant);
}

Status CampaignRegistry::RemoveTenant(const TenantId& tenant) {
  std::lock_guard lock(write_mu_);
  std::string lower = TenantPrefix(tenant);
  std::string upper = tenant.str();
  upper.push_back('\1');
  storage::WriteBatch batch;
  batch.DeleteRange(storage::kCampaigns, lower, upper);
  FAIRWAY_RETURN_IF_ERROR(store_->Write(batch, /*sync=*/true));
  std::lock_guard snap_lock(snap_mu_);
  tenants_.erase(tenant.str());
  return Status::Ok();
}

}  // namespace fairway::campaigns
