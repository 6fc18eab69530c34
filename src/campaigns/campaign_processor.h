#pragma once
// CampaignProcessor: the "campaigns" processor. For every activity of a tenant it finds the
// active campaigns the activity triggers (an index lookup, never a scan), checks qualification
// rules, chain depth and filters against the lead, and runs the campaign's flow for the lead
// until the flow ends or reaches a wait.
//
// Exactly once: the processor never writes storage or calls anything external itself. Every
// effect of a step is part of the work item's atomic commit (engine/processor.h): run state,
// qualification history, communication-limit log, timers (storage::kTimers), deliveries
// (storage::kDeliveries: emails, webhooks, CRM tasks, alerts), statistics (counters) and
// generated activities (email_sent, score_changed, ...; message ids derived from (campaign,
// run, step), so the log stores each once). A redelivered activity after a crash re-runs
// nothing that was committed, and a step whose commit was lost runs again with the same keys.
//
// Runs after the "leads" processor (ProcessorSpec::after): the lead it reads for filters and
// tokens includes the triggering activity. Changes a run makes to the lead (score, data values,
// lists, tags) reach the lead through generated activities; later steps of the same run see
// them at once (an overlay), other runs once the leads processor has applied them.
//
// Runs on engine threads; holds no mutable state of its own (Process may run concurrently).

#include <cstdint>
#include <functional>
#include <string>

#include "campaigns/campaign_registry.h"
#include "common/clock.h"
#include "engine/processor.h"
#include "identity/lead_store.h"

namespace fairway::campaigns {

struct CampaignProcessorOptions {
  // Activities per work item.
  uint32_t batch_size = 128;
  // After a commit that stored timers: the tenant and the earliest due time among them
  // (TimerService::Notify).
  std::function<void(const TenantId&, int64_t due_ms)> on_timers;
  // After a commit that stored deliveries (DeliveryDispatcher::Notify).
  std::function<void(const TenantId&)> on_deliveries;
  // The tenant's IANA time zone, for waits "at HH:MM" in the tenant's (or a lead's unknown)
  // time zone. Empty or unset: UTC.
  std::function<std::string(const TenantId&)> tenant_timezone;
};

class CampaignProcessor final : public engine::Processor {
 public:
  // Not owned; all must outlive the processor.
  CampaignProcessor(CampaignRegistry* registry, const identity::LeadStore* leads,
                    const Clock* clock, CampaignProcessorOptions options = {});

  // name "campaigns", per lead, after "leads".
  const engine::ProcessorSpec& spec() const override { return spec_; }
  void Process(engine::WorkItem& item) override;

 private:
  friend class Execution;
  CampaignRegistry* registry_;
  const identity::LeadStore* leads_;
  const Clock* clock_;
  CampaignProcessorOptions options_;
  engine::ProcessorSpec spec_;
};

// The message id of the activity a timer appends when a run's wait ends.
std::string WaitElapsedMessageId(std::string_view campaign, std::string_view run_id, uint32_t step);

}  // namespace fairway::campaigns
