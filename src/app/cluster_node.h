#pragma once
// ClusterNode: what one node of a cluster does when its slots change (docs/distributed.md).
//
// - Taking a slot: the changelog restores the slot's state (fencing earlier owners); then the
//   slot is active: its tenants' processing, timers and deliveries start here.
// - Releasing a slot: it stops being active first (nothing starts anew for its tenants), then
//   the tenants' processing, timers and deliveries stop, waiting for work in progress, whose
//   writes still reach the changelog; then the changelog hands the slot over.
// - A tenant change from the config topic reaches the engine (which runs only tenants this
//   node owns), and a deletion removes the owner's state of the tenant.
//
// Thread-safe: slot changes arrive on the membership's thread, tenant changes on the config
// topic's, questions from anywhere.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "campaigns/timer_service.h"
#include "cluster/changelog.h"
#include "cluster/config_topic.h"
#include "cluster/slot_membership.h"
#include "common/metrics.h"
#include "dispatch/delivery_dispatcher.h"
#include "engine/engine.h"
#include "log/activity_log.h"
#include "tenancy/tenant_registry.h"

namespace fairway::app {

struct ClusterServices {
  tenancy::TenantRegistry* tenants = nullptr;
  cluster::Changelog* changelog = nullptr;
  engine::Engine* engine = nullptr;
  dispatch::DeliveryDispatcher* dispatcher = nullptr;
  campaigns::TimerService* timers = nullptr;
  MetricsRegistry* metrics = nullptr;
  // Deletes what the node keeps of a tenant being deleted (Api::DeleteTenantState).
  std::function<Status(const TenantId&)> delete_state;
  // Where the slots' owners are published (null: nowhere).
  cluster::ConfigTopic* config_topic = nullptr;
  // This node's name.
  std::string node_id;
  // The activity log, whose partition layouts change through the config topic.
  log::ActivityLog* log = nullptr;
  // How long a layout change waits for every node to stop appending to the old layout.
  std::chrono::milliseconds layout_wait{20'000};
};

class ClusterNode final : public cluster::SlotListener {
 public:
  ClusterNode(ClusterServices services, uint32_t slots);

  // The slot `tenant` belongs to (cluster::SlotOfTenant).
  uint32_t SlotOf(const TenantId& tenant) const;
  // The slot a tenant about to be created here goes to (cluster::ChooseSlot), from the tenants
  // and slot owners this node knows.
  Result<uint32_t> Place(const model::TenantConfig& tenant) const;
  // Whether this node runs `tenant`'s work now: its slot is taken and not being released.
  bool Owns(const TenantId& tenant) const;
  // Unavailable until the node has joined the cluster and while it restores a slot.
  Status Ready() const;
  // The slots active here, ascending.
  std::vector<uint32_t> ActiveSlots() const;

  void OnAssigned(const std::vector<uint32_t>& slots) override;
  void OnRevoked(const std::vector<uint32_t>& slots, bool lost) override;
  // A change of the config topic (ConfigTopic's listener).
  void OnTenantChange(const TenantId& tenant, const tenancy::JournaledChange& change);
  // Stops retrying a slot that cannot be restored (shutdown).
  void Stop() { stopping_ = true; }

  // The address other nodes forward this node's tenants' requests to; publishes this node as
  // the owner of the slots it has (and, from now on, of each slot it takes).
  void SetAdvertisedUrl(std::string url);
  // A slot owner record of the config topic (ConfigTopic's slot owner listener).
  void OnSlotOwner(uint32_t slot, std::string_view value);
  // The address of the node that processes `tenant`, when another node does and it is known.
  std::optional<std::string> OwnerUrl(const TenantId& tenant) const;

  // Partition count changes (docs/distributed.md, "Partition changes in a cluster").
  // Changes the count of `tenant`, processed here, to `count`: starts the new layout
  // (ActivityLog::BeginLayout), tells every node through the config topic, waits until every
  // node named as a slot owner has stopped appending to the old layout, and seals it; returns
  // the layouts, for the registry (TenantRegistry::AdoptLayouts). Unavailable when a node did
  // not answer within layout_wait: the change then completes by itself (CompleteLayoutChanges).
  // Not under the registry's write lock: the answers come through the config topic, whose
  // follower writes to the registry.
  Result<std::vector<model::PartitionLayout>> ChangeLayout(const model::TenantConfig& tenant,
                                                           uint32_t count);
  // Completes the changes of the tenants processed here that a failure cut short (the node
  // that started one died, a node did not answer in time). Called now and then.
  void CompleteLayoutChanges();
  // Writes a snapshot of each slot processed here whose changelog has grown by
  // ChangelogOptions::snapshot_bytes since its last one (cluster::Changelog::Snapshot). Called
  // now and then.
  void SnapshotSlots();
  // Config topic notes: a layout change ("layout/<tenant>": the layouts), which this node takes
  // and acknowledges ("layout-ack/<tenant>/<node>": the change note's offset).
  void OnLayoutNote(std::string_view tenant, std::string_view value, int64_t offset);
  void OnLayoutAck(std::string_view name, std::string_view value);

 private:
  std::vector<model::TenantConfig> TenantsOf(uint32_t slot) const;
  void Take(uint32_t slot);
  void Release(uint32_t slot, bool lost);
  // Publishes this node as the owner of `slot` since `taken_at` (its epoch), or, without it, as
  // its owner no more (a clean release).
  void PublishOwner(uint32_t slot, std::optional<int64_t> taken_at);
  // Tells every node of `layouts` (the newest unsealed), waits for their acknowledgements and
  // seals; the sealed layouts.
  Result<std::vector<model::PartitionLayout>> FinishLayout(
      const TenantId& tenant, const std::vector<model::PartitionLayout>& layouts);

  // Who owns each slot, as the owners published it: the latest epoch wins.
  struct Owner {
    std::string node, url;
    int64_t epoch = -1;
  };

  ClusterServices s_;
  const uint32_t slots_;
  mutable std::mutex mu_;
  std::vector<bool> active_;         // guarded by mu_
  bool joined_ = false;              // guarded by mu_
  std::vector<uint32_t> restoring_;  // guarded by mu_
  std::vector<Owner> owners_;        // guarded by mu_
  std::string url_;                  // guarded by mu_
  // Tenant -> node -> the newest layout change note the node acknowledged (its offset).
  std::map<std::string, std::map<std::string, int64_t>> layout_acks_;  // guarded by mu_
  std::set<std::string> changing_;  // tenants whose layout change runs here; guarded by mu_
  std::condition_variable acks_cv_;
  std::atomic<bool> stopping_{false};
  Gauge* owned_gauge_;
  Counter* taken_;
  Counter* released_;
  Counter* rebalances_;
  Counter* layouts_sealed_;
  Counter* layouts_waiting_;
  Counter* snapshots_written_;
  Counter* snapshots_failed_;
  Counter* snapshot_bytes_;
  Histogram* snapshot_seconds_;
  Counter* restored_bytes_;
  // Restores by where they started: the local rows kept, a snapshot, the changelog's start.
  Counter* restores_local_;
  Counter* restores_snapshot_;
  Counter* restores_start_;
  Histogram* restore_seconds_;
};

}  // namespace fairway::app
