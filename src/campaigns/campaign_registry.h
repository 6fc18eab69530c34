#pragma once
// CampaignRegistry: a tenant's campaign definitions and campaign settings, stored in the
// `campaigns` column family, and their compiled, indexed form that the campaign processor runs.
//
// Reads by the processor go through Snapshot(): an immutable TenantCampaigns, swapped whole on
// every change, so a work item sees one consistent set of campaigns while definitions are
// created, edited, activated and deactivated under traffic. The trigger index maps an
// activity's (type, name) to the triggers listening for it: finding an activity's campaigns
// costs two hash lookups, however many campaigns the tenant has.
//
// Thread-safe. Writes (and the first load of a tenant) are serialised by one mutex and do their
// I/O under it; Snapshot() of a loaded tenant only takes a second, short-held mutex, so work
// items never wait for another tenant's synced write.

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "campaigns/campaign.h"
#include "common/clock.h"
#include "common/ids.h"
#include "common/status.h"
#include "storage/store.h"

namespace fairway::campaigns {

// A stored campaign: its definition as submitted, plus state the API shows.
struct CampaignRecord {
  std::string id;
  std::string definition_json;
  bool active = false;
  uint64_t version = 0;
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
};

// A tenant's campaign settings (docs/campaigns.md "Settings").
struct CampaignSettings {
  // Communication limits: most non-operational emails a lead gets from campaigns in any
  // rolling 24 hours / 7 days. 0 = no limit.
  uint32_t emails_per_day = 0;
  uint32_t emails_per_week = 0;
  // A campaign does not start from an activity that campaigns generated `max_chain_depth`
  // times in a row (loop protection).
  uint32_t max_chain_depth = 5;
  // How long a deferred match of an anonymous visitor (AnonymousPolicy::kDefer) waits for the
  // visitor to become known, in days by event time. 0 = matches are not kept (defer acts as
  // ignore).
  uint32_t defer_days = 30;
  // Default sender of campaign emails and alerts.
  std::string email_from = "no-reply@fairway.local";
  // Where create_crm_task actions post their task (empty: those steps fail).
  std::string crm_url;
  // HMAC-SHA256 key that signs the tenant's webhooks (X-Fairway-Signature).
  std::string webhook_secret;
};

struct CompiledCampaign {
  CampaignRecord record;
  Campaign campaign;
};

// One immutable view of a tenant's campaigns.
struct TenantCampaigns {
  struct TriggerRef {
    const CompiledCampaign* campaign;
    const Trigger* trigger;
  };
  std::unordered_map<std::string, std::shared_ptr<const CompiledCampaign>> by_id;
  // IndexKey(type, name) -> triggers of active campaigns.
  std::unordered_map<std::string, std::vector<TriggerRef>> index;
  CampaignSettings settings;

  static std::string IndexKey(model::ActivityType type, std::string_view name);
  // The triggers listening for activities of (type, name): exact-name ones, then any-name ones.
  // Valid while this snapshot lives.
  void Lookup(model::ActivityType type, std::string_view name, std::vector<TriggerRef>* out) const;
  const CompiledCampaign* Find(std::string_view id) const;
};

struct CampaignPage {
  std::vector<CampaignRecord> items;
  std::string next_cursor;
};

class CampaignRegistry {
 public:
  // `store` must use storage::FairwayColumnFamilies(); not owned.
  CampaignRegistry(storage::Store* store, const Clock* clock);

  // Creates a campaign, inactive unless the definition says "status": "active".
  // AlreadyExists when the id is taken; InvalidArgument naming the bad field.
  Result<CampaignRecord> Create(const TenantId& tenant, std::string_view id,
                                std::string_view definition_json);
  // Replaces a definition, keeping its status (or taking the definition's "status"). Leads in
  // its flow continue at their next step of the new flow. NotFound when absent.
  Result<CampaignRecord> Replace(const TenantId& tenant, std::string_view id,
                                 std::string_view definition_json);
  Result<CampaignRecord> Get(const TenantId& tenant, std::string_view id);
  // Campaigns in id order after `cursor` (a previous next_cursor).
  Result<CampaignPage> List(const TenantId& tenant, std::string_view cursor, size_t limit);
  // Deletes a campaign; its waiting leads leave the flow when their wait ends. Its statistics
  // stay readable until the tenant is removed. NotFound when absent.
  Status Delete(const TenantId& tenant, std::string_view id);
  Result<CampaignRecord> SetActive(const TenantId& tenant, std::string_view id, bool active);

  // The settings (a webhook secret is generated and stored on first use).
  Result<CampaignSettings> GetSettings(const TenantId& tenant);
  // Applies a JSON object of settings fields; the others keep their value. InvalidArgument
  // naming the field. "rotate_webhook_secret": true makes a new secret.
  Result<CampaignSettings> UpdateSettings(const TenantId& tenant, std::string_view json);

  // The tenant's compiled campaigns, loaded from storage on first use.
  Result<std::shared_ptr<const TenantCampaigns>> Snapshot(const TenantId& tenant);

  // Deletes every campaign and the settings of a tenant.
  Status RemoveTenant(const TenantId& tenant);

 private:
  // Requires: write_mu_ held.
  Result<std::shared_ptr<const TenantCampaigns>> LoadLocked(const TenantId& tenant);
  Status WriteRecordLocked(const TenantId& tenant, const CampaignRecord& record);
  // Publishes a new snapshot with `changed` replaced (or removed when null).
  void PublishLocked(const TenantId& tenant, const std::string& id,
                     std::shared_ptr<const CompiledCampaign> changed,
                     const CampaignSettings* settings = nullptr);
  Status WriteSettingsLocked(const TenantId& tenant, const CampaignSettings& s);

  storage::Store* store_;
  const Clock* clock_;
  std::mutex write_mu_;
  // Guards tenants_; held only to look up or swap a snapshot.
  std::mutex snap_mu_;
  std::unordered_map<std::string, std::shared_ptr<const TenantCampaigns>> tenants_;
};

// Storage keys (storage::kCampaigns).
std::string CampaignKey(const TenantId& tenant, std::string_view id);
std::string SettingsKey(const TenantId& tenant);

}  // namespace fairway::campaigns
