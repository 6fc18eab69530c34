#pragma once
// Campaign statistics: counters the campaign processor merge-adds in its commits (see
// campaign_state.h for the keys), and the outcomes of deliveries, read back per day.
//
// Metrics, per campaign and UTC day: triggered, qualified, not_qualified, filtered_out,
// already_in_flow, blocked_chain_depth, completed, left_flow, removed_from_flow, lead_deleted,
// step.<n>.{executed,blocked,failed,skipped}, emails_queued, emails_blocked, alerts_queued,
// webhooks_queued; from the dispatcher: emails_sent, alerts_sent, webhooks_delivered,
// crm_tasks_delivered, deliveries_dead. Plus in_flow (leads in the flow now, not per day).
//
// Thread-safe.

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "common/ids.h"
#include "common/status.h"
#include "dispatch/delivery_dispatcher.h"
#include "storage/store.h"

namespace fairway::campaigns {

struct CampaignStatsReport {
  int64_t in_flow = 0;
  // Summed over the days read.
  std::map<std::string, int64_t> totals;
  // Day (days since 1970-01-01, UTC) -> metric -> count.
  std::map<int64_t, std::map<std::string, int64_t>> days;
};

// Reads a campaign's statistics for the UTC days [since_day, until_day].
Result<CampaignStatsReport> ReadCampaignStats(storage::Store* store, const TenantId& tenant,
                                              std::string_view campaign, int64_t since_day,
                                              int64_t until_day);

// Deletes every statistic of a tenant.
Status RemoveCampaignStats(storage::Store* store, const TenantId& tenant);

// Counts delivery outcomes into the statistics of the campaign that caused them
// (Delivery::source), in the same atomic write as the dispatcher's record of the outcome: each
// delivery is counted once, whatever crashes.
class DeliveryStatsRecorder final : public dispatch::DeliveryListener {
 public:
  explicit DeliveryStatsRecorder(const Clock* clock) : clock_(clock) {}
  void AddDeliveredWrites(const TenantId& tenant, const dispatch::Delivery& d,
                          storage::WriteBatch* batch) override;
  void AddDeadWrites(const TenantId& tenant, const dispatch::Delivery& d,
                     storage::WriteBatch* batch) override;

 private:
  void Count(const TenantId& tenant, const dispatch::Delivery& d, std::string_view metric,
             storage::WriteBatch* batch);
  const Clock* clock_;
};

}  // namespace fairway::campaigns
