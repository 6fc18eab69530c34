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
// (Delivery::source). Its counter writes are separate from the dispatcher's row updates, so a
// crash at the wrong moment can leave a delivery count off by one (the delivery itself is
// neither lost nor sent under another idempotency key).
class DeliveryStatsRecorder final : public dispatch::DeliveryListener {
 public:
  DeliveryStatsRecorder(storage::Store* store, const Clock* clock) : store_(store), clock_(clock) {}
  void OnDelivered(const TenantId& tenant, const dispatch::Delivery& d) override;
  void OnDead(const TenantId& tenant, const dispatch::Delivery& d) override;

 private:
  void Count(const TenantId& tenant, const dispatch::Delivery& d, std::string_view metric);
  storage::Store* store_;
  const Clock* clock_;
};

}  // namespace fairway::campaigns
