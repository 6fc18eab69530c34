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
                                  std::string_view metric, storage::WriteBatch* batch) {
  if (d.source.empty()) return;
  batch->Merge(
      storage::kCampaignStats,
      StatsKey(tenant, d.source, static_cast<uint32_t>(DayOf(clock_->NowMillis())), metric),
      storage::EncodeCounter(1));
}

void DeliveryStatsRecorder::AddDeliveredWrites(const TenantId& tenant, const dispatch::Delivery& d,
                                               storage::WriteBatch* batch) {
  if (d.purpose == "email") {
    Count(tenant, d, "emails_sent", batch);
  } else if (d.purpose == "alert") {
    Count(tenant, d, "alerts_sent", batch);
  } else if (d.purpose == "crm_task") {
    Count(tenant, d, "crm_tasks_delivered", batch);
  } else {
    Count(tenant, d, "webhooks_delivered", batch);
  }
}

void DeliveryStatsRecorder::AddDeadWrites(const TenantId& tenant, const dispatch::Delivery& d,
                                          storage::WriteBatch* batch) {
  Count(tenant, d, "deliveries_dead", batch);
  if (d.purpose == "webhook") Count(tenant, d, "webhooks_failed", batch);
}

}  // namespace fairway::campaigns
