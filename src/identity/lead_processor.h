#pragma once
// LeadProcessor: the "leads" processor. Folds every activity of a tenant into the profile of the
// activity's identity (userId, else anonymousId) and records identity links (anonymousId and
// alias previousId -> userId), the email index and account traits, all inside the engine's
// (tenant, "leads") state space. Merged leads are computed at read time (lead_store.h).
//
// The single writer of lead state: other processors (campaigns) change leads only by emitting
// fairway activities, which this processor applies when they come back through the log
// (score_changed, data_value_changed, added_to_list / removed_from_list, tag_added /
// tag_removed, added_to_account, lead_deleted; campaign_wait_elapsed is ignored). It emits
// lead_created (a userId profile is created) and data_value_changed (an identify changed a
// trait of an existing userId profile) with message ids derived from their cause, so a redone
// work item emits the same activities. See README.md for the exact rules.
//
// Concurrency: the engine runs work items of different leads on different threads at once, each
// with its own StateTxn. The processor read-modify-writes only keys owned by the activity's own
// lead key (its profile, and claim / member / email rows whose key names that lead as writer);
// keys any lead may write (account traits) are written as blind, idempotent Puts of keys unique
// to the writing activity. Holds no mutable state: Process may run on many threads at once.

#include <cstdint>
#include <functional>

#include "common/metrics.h"
#include "engine/processor.h"

namespace fairway::identity {

struct LeadProcessorOptions {
  // Days of daily activity counters kept per profile, counted back from (and including) the day
  // of the profile's newest activity; older days are dropped when the profile is written, and
  // older activities add no counter (they still count in activity_count and first_seen).
  // Longer windows make profiles larger (about 2 bytes per counter per day). 0 keeps all days.
  // Default 90.
  uint32_t counter_days = 90;
  // Where fairway_leads_late_activities_total is counted (nullptr: not counted). Must outlive
  // the processor.
  MetricsRegistry* metrics = nullptr;
  // Keep a lead index of the activities applied (storage::kActivityIndex, committed with the
  // profiles), which GET /v1/activities reads on a cluster's node: its rows expire
  // `retention_ms(tenant)` after each activity was received (0: never). Unset: no index.
  std::function<int64_t(const TenantId&)> index_retention_ms = nullptr;
};

class LeadProcessor final : public engine::Processor {
 public:
  explicit LeadProcessor(LeadProcessorOptions options = {});

  // name "leads", Ordering::kPerLead, batch_size 1024, enabled by default.
  const engine::ProcessorSpec& spec() const override { return spec_; }

  // Applies the item's activities to its StateTxn, emits the generated activities they cause and
  // finishes the item synchronously. Finishes with a kRetryLater error when the state cannot be
  // read, and with kPermanent when an activity's fields_json or a stored profile is corrupt.
  // Runs on: any engine thread.
  void Process(engine::WorkItem& item) override;

 private:
  LeadProcessorOptions options_;
  engine::ProcessorSpec spec_;
};

}  // namespace fairway::identity
