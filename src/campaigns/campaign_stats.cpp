#include "campaigns/campaign_stats.h"

#include <spdlog/spdlog.h>

#include "campaigns/campaign_state.h"
#include "common/coding.h"
#include "storage/schema.h"

namespace fairway::campaigns {

Result<CampaignStatsReport> ReadCampaignStats(storage::Store* store, const TenantId& tenant,
                                              std::string_view campaign, int64_t since_day,
                                              int64_t until_day) {
  CampaignStatsReport report;
  std::string prefix = StatsPrefix(tenant, campaign);
  auto it = store->NewIterator(storage::kCampaignStats, prefix, prefix + "\xff\xff\xff\xff\x01");
  for (it->Seek(prefix); it->Valid(); it->Next()) {
    std::string_view key = it->key();
    if (key.size() < prefix.size() + 5) continue;
    int64_t day = DecodeFixed32BE(key.data() + prefix.size());
    std::string metric(key.substr(prefix.size() + 5));
    int64_t value = storage::DecodeCounter(it->value());
    if (static_cast<uint32_t>(day) == kTotalDay) {
      if (metric == "in_flow") report.in_flow = value;
      continue;
    }
    if (day < since_day || day > until_day || value == 0) continue;
    report.days[day][metric] += value;
    report.totals[metric] += value;
  }
  FAIRWAY_RETURN_IF_ERROR(it->status());
  return report;
}

Status RemoveCampaignStats(storage::Store* store, const TenantId& tenant) {
  std::string lower = tenant.str();
  lower.push_back('\0');
  std::string upper = tenant.str();
  upper.push_back('\1');
  storage::WriteBatch batch;
  batch.DeleteRange(storage::kCampaignStats, lower, upper);
  return store->Write(batch, /*sync=*/true);
}

void DeliveryStatsRecorder::Count(const TenantId& tenant, const dispatch::Delivery& d,
                                  std::string_view metric) {
  if (d.source.empty()) return;
  storage::WriteBatch batch;
  batch.Merge(storage::kCampaignStats,
              StatsKey(tenant, d.source, static_cast<uint32_t>(DayOf(clock_->NowMillis())), metric),
              storage::EncodeCounter(1));
  if (Status st = store_->Write(batch, /*sync=*/false); !st.ok()) {
    spdlog::warn("campaigns: counting delivery {} of {}: {}", d.id, tenant.str(), st.ToString());
  }
}

void DeliveryStatsRecorder::OnDelivered(const TenantId& tenant, const dispatch::Delivery& d) {
  if (d.purpose == "email") {
    Count(tenant, d, "emails_sent");
  } else if (d.purpose == "alert") {
    Count(tenant, d, "alerts_sent");
  } else if (d.purpose == "crm_task") {
    Count(tenant, d, "crm_tasks_delivered");
  } else {
    Count(tenant, d, "webhooks_delivered");
  }
}

void DeliveryStatsRecorder::OnDead(const TenantId& tenant, const dispatch::Delivery& d) {
  Count(tenant, d, "deliveries_dead");
  if (d.purpose == "webhook") Count(tenant, d, "webhooks_failed");
}

}  // namespace fairway::campaigns
