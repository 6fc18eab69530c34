#include "app/cluster_node.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <boost/json.hpp>
#include <charconv>
#include <chrono>
#include <thread>

#include "cluster/placement.h"
#include "common/json_writer.h"
#include "log/lead_index.h"

namespace fairway::app {

ClusterNode::ClusterNode(ClusterServices services, uint32_t slots)
    : s_(std::move(services)),
      slots_(slots),
      active_(slots, false),
      owners_(slots),
      owned_gauge_(s_.metrics->GetGauge("fairway_cluster_slots_owned",
                                        "Slots this node owns and processes now.")),
      taken_(s_.metrics->GetCounter("fairway_cluster_slots_taken_total",
                                    "Slots this node took (restored and started).")),
      released_(s_.metrics->GetCounter("fairway_cluster_slots_released_total",
                                       "Slots this node gave up (released or lost).")),
      rebalances_(s_.metrics->GetCounter(
          "fairway_cluster_rebalances_total",
          "Assignment changes of the cluster's group that gave this node slots or took some.")),
      layouts_sealed_(s_.metrics->GetCounter(
          "fairway_cluster_layout_changes_total",
          "Partition count changes this node made: sealed once every node had stopped "
          "appending to the old layout, or left waiting for nodes that did not answer in time.",
          {{"outcome", "sealed"}})),
      layouts_waiting_(s_.metrics->GetCounter("fairway_cluster_layout_changes_total", "",
                                              {{"outcome", "waiting"}})),
      snapshots_written_(s_.metrics->GetCounter(
          "fairway_cluster_snapshots_total",
          "Snapshots of slots' state this node wrote to the changelog, or gave up on (Kafka "
          "failed, the slot was released meanwhile, another writer's record lay among its own).",
          {{"outcome", "written"}})),
      snapshots_failed_(
          s_.metrics->GetCounter("fairway_cluster_snapshots_total", "", {{"outcome", "failed"}})),
      snapshot_bytes_(s_.metrics->GetCounter(
          "fairway_cluster_snapshot_bytes_total",
          "Bytes of slots' rows this node wrote to the changelog in snapshots.")),
      snapshot_seconds_(s_.metrics->GetHistogram(
          "fairway_cluster_snapshot_seconds", "Time to write one slot's snapshot to the changelog.",
          LatencyBuckets())),
      restored_bytes_(s_.metrics->GetCounter(
          "fairway_cluster_restored_bytes_total",
          "Bytes of state batches and snapshot rows applied from the changelog when taking "
          "slots.")),
      restores_local_(s_.metrics->GetCounter(
          "fairway_cluster_restores_total",
          "Slots this node restored, by where the restore started: the rows it kept from its "
          "own clean release (local), the slot's latest snapshot, or the changelog's start.",
          {{"from", "local"}})),
      restores_snapshot_(
          s_.metrics->GetCounter("fairway_cluster_restores_total", "", {{"from", "snapshot"}})),
      restores_start_(
          s_.metrics->GetCounter("fairway_cluster_restores_total", "", {{"from", "start"}})),
      restore_seconds_(s_.metrics->GetHistogram(
          "fairway_cluster_restore_seconds",
          "Time to restore one slot's state from the changelog when taking it.",
          LatencyBuckets())) {}

uint32_t ClusterNode::SlotOf(const TenantId& tenant) const {
  return cluster::SlotOfTenant(*s_.tenants, tenant, slots_);
}

Result<uint32_t> ClusterNode::Place(const model::TenantConfig& tenant) const {
  std::vector<std::string> owner_of(slots_);
  {
    std::lock_guard lock(mu_);
    for (uint32_t s = 0; s < slots_; ++s)
      owner_of[s] = owners_[s].url.empty() ? "" : owners_[s].node;
  }
  return cluster::ChooseSlot(tenant, s_.tenants->List(), owner_of, slots_);
}

bool ClusterNode::Owns(const TenantId& tenant) const {
  const uint32_t slot = SlotOf(tenant);
  std::lock_guard lock(mu_);
  return active_[slot];
}

Status ClusterNode::Ready() const {
  std::lock_guard lock(mu_);
  if (!joined_) return Unavailable("joining the cluster: no slots assigned yet");
  if (!restoring_.empty()) {
    return Unavailable(
        fmt::format("restoring slots {} from the changelog", fmt::join(restoring_, ",")));
  }
  return Status::Ok();
}

std::vector<uint32_t> ClusterNode::ActiveSlots() const {
  std::lock_guard lock(mu_);
  std::vector<uint32_t> out;
  for (uint32_t s = 0; s < slots_; ++s) {
    if (active_[s]) out.push_back(s);
  }
  return out;
}

std::vector<model::TenantConfig> ClusterNode::TenantsOf(uint32_t slot) const {
  std::vector<model::TenantConfig> out;
  for (auto& t : s_.tenants->List()) {
    if (cluster::SlotOfConfig(t, slots_) == slot) out.push_back(std::move(t));
  }
  return out;
}

void ClusterNode::OnAssigned(const std::vector<uint32_t>& slots) {
  if (!slots.empty()) rebalances_->Add();
  {
    std::lock_guard lock(mu_);
    joined_ = true;
    restoring_ = slots;
  }
  for (uint32_t slot : slots) {
    Take(slot);
    std::lock_guard lock(mu_);
    std::erase(restoring_, slot);
  }
}

void ClusterNode::Take(uint32_t slot) {
  auto started = std::chrono::steady_clock::now();
  std::vector<TenantId> ids;
  for (const auto& t : TenantsOf(slot)) ids.push_back(t.id);
  // Nothing runs for the slot until its state is here: a restore that fails is tried again
  // (the group keeps the slot here meanwhile; Kafka may be briefly away).
  Result<cluster::RestoreStats> restored = Unavailable("not tried");
  for (int attempt = 0; !stopping_.load(); ++attempt) {
    restored = s_.changelog->Take(slot, ids);
    if (restored.ok()) break;
    spdlog::error("cluster: restoring slot {} (attempt {}): {}", slot, attempt + 1,
                  restored.status().ToString());
    std::this_thread::sleep_for(std::chrono::seconds(1));  // back-off between attempts
  }
  if (!restored.ok()) return;
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  restore_seconds_->Observe(seconds);
  restored_bytes_->Add(restored->bytes_applied);
  (restored->kept_local      ? restores_local_
   : restored->snapshot >= 0 ? restores_snapshot_
                             : restores_start_)
      ->Add();
  {
    std::lock_guard lock(mu_);
    active_[slot] = true;
  }
  taken_->Add();
  owned_gauge_->Add(1);
  PublishOwner(slot, restored->epoch);
  // The tenants as they are now (a change meanwhile reached the registry first).
  for (const auto& t : TenantsOf(slot)) {
    if (t.status == model::TenantStatus::kDeleting) {
      if (Status st = s_.delete_state(t.id); !st.ok()) {
        spdlog::error("cluster: deleting tenant '{}': {}", t.id.str(), st.ToString());
      }
      continue;
    }
    if (Status st = s_.engine->UpsertTenant(t); !st.ok()) {
      spdlog::error("cluster: starting tenant '{}': {}", t.id.str(), st.ToString());
    }
    if (Status st = s_.timers->TakeTenant(t.id); !st.ok()) {
      spdlog::error("cluster: timers of tenant '{}': {}", t.id.str(), st.ToString());
    }
    s_.dispatcher->Notify(t.id);
  }
  spdlog::info("cluster: slot {} active ({} tenants, restored in {:.3f} s)", slot, ids.size(),
               seconds);
}

void ClusterNode::SnapshotSlots() {
  for (uint32_t slot : ActiveSlots()) {
    if (stopping_.load()) return;
    if (!s_.changelog->SnapshotDue(slot)) continue;
    auto started = std::chrono::steady_clock::now();
    auto written = s_.changelog->Snapshot(slot, [this, slot] {
      std::vector<TenantId> ids;
      for (const auto& t : TenantsOf(slot)) ids.push_back(t.id);
      return ids;
    });
    if (!written.ok()) {
      snapshots_failed_->Add();
      spdlog::warn("cluster: snapshot of slot {}: {}", slot, written.status().ToString());
      continue;
    }
    snapshots_written_->Add();
    snapshot_bytes_->Add(written->bytes);
    snapshot_seconds_->Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  }
}

void ClusterNode::OnRevoked(const std::vector<uint32_t>& slots, bool lost) {
  if (!slots.empty()) rebalances_->Add();
  for (uint32_t slot : slots) Release(slot, lost);
}

void ClusterNode::Release(uint32_t slot, bool lost) {
  bool was_active = false;
  {
    std::lock_guard lock(mu_);
    was_active = active_[slot];
    active_[slot] = false;
  }
  for (const auto& t : TenantsOf(slot)) {
    if (Status st = s_.engine->ReleaseTenant(t.id); !st.ok()) {
      spdlog::error("cluster: stopping tenant '{}': {}", t.id.str(), st.ToString());
    }
    s_.timers->ReleaseTenant(t.id);
    if (Status st = s_.dispatcher->ReleaseTenant(t.id); !st.ok()) {
      spdlog::error("cluster: stopping deliveries of tenant '{}': {}", t.id.str(), st.ToString());
    }
  }
  if (Status st = s_.changelog->Release(slot, /*clean=*/!lost); !st.ok()) {
    spdlog::error("cluster: releasing slot {}: {}", slot, st.ToString());
  }
  // No longer here: nodes stop forwarding to this one before the next owner is known.
  if (was_active && !lost) PublishOwner(slot, std::nullopt);
  if (was_active) {
    released_->Add();
    owned_gauge_->Add(-1);
  }
}

void ClusterNode::PublishOwner(uint32_t slot, std::optional<int64_t> taken_at) {
  std::string url;
  int64_t epoch = 0;
  {
    std::lock_guard lock(mu_);
    url = url_;
    if (taken_at) {
      epoch = *taken_at;
      // Known at once here (the topic's copy comes back later).
      if (epoch >= owners_[slot].epoch) owners_[slot] = {s_.node_id, url, epoch};
    } else {
      // A release: the same epoch, and no address.
      epoch = owners_[slot].epoch;
      if (owners_[slot].node != s_.node_id) return;
      owners_[slot].url.clear();
    }
  }
  if (url.empty() || s_.config_topic == nullptr) return;  // published once it is set
  JsonWriter w;
  w.BeginObject().Key("node").String(s_.node_id).Key("url").String(taken_at ? url : "");
  w.Key("epoch").Int(epoch).EndObject();
  if (Status st = s_.config_topic->PublishSlotOwner(slot, w.Take()); !st.ok()) {
    spdlog::warn("cluster: publishing the owner of slot {}: {}", slot, st.ToString());
  }
}

void ClusterNode::SetAdvertisedUrl(std::string url) {
  std::vector<std::pair<uint32_t, int64_t>> mine;
  {
    std::lock_guard lock(mu_);
    url_ = std::move(url);
    for (uint32_t s = 0; s < slots_; ++s) {
      if (active_[s]) mine.emplace_back(s, owners_[s].epoch);
    }
  }
  for (auto [slot, epoch] : mine) PublishOwner(slot, epoch);
}

void ClusterNode::OnSlotOwner(uint32_t slot, std::string_view value) {
  if (slot >= slots_) return;
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(value, ec);
  const boost::json::object* o = ec ? nullptr : v.if_object();
  const boost::json::value* node = o ? o->if_contains("node") : nullptr;
  const boost::json::value* url = o ? o->if_contains("url") : nullptr;
  const boost::json::value* epoch = o ? o->if_contains("epoch") : nullptr;
  if (!node || !node->is_string() || !url || !url->is_string() || !epoch || !epoch->is_int64()) {
    spdlog::warn("cluster: slot {} owner record is not one: skipped", slot);
    return;
  }
  std::lock_guard lock(mu_);
  Owner& owner = owners_[slot];
  if (epoch->as_int64() < owner.epoch) return;  // an older owner's late record
  owner = {std::string(node->as_string()), std::string(url->as_string()), epoch->as_int64()};
  acks_cv_.notify_all();  // a layout change may wait for a node no longer named
  spdlog::info("cluster: slot {} is processed by node {} ({})", slot, owner.node, owner.url);
}

std::optional<std::string> ClusterNode::OwnerUrl(const TenantId& tenant) const {
  const uint32_t slot = SlotOf(tenant);
  std::lock_guard lock(mu_);
  if (active_[slot]) return std::nullopt;
  const Owner& o = owners_[slot];
  if (o.url.empty() || o.node == s_.node_id) return std::nullopt;
  return o.url;
}

void ClusterNode::OnTenantChange(const TenantId& tenant, const tenancy::JournaledChange& change) {
  if (!change.config) return;  // gone: its state went when it was marked for deletion
  if (change.config->status == model::TenantStatus::kDeleting) {
    if (!Owns(tenant)) return;
    if (Status st = s_.delete_state(tenant); !st.ok()) {
      spdlog::error("cluster: deleting tenant '{}': {}", tenant.str(), st.ToString());
    }
    return;
  }
  if (!change.config->sealed_layouts.empty() && s_.log != nullptr) {
    // A partition count change is complete: this node's appends go to the new layout now.
    auto layouts = change.config->sealed_layouts;
    layouts.push_back(change.config->current_layout());
    if (Status st = s_.log->FollowLayouts(*change.config, layouts); !st.ok()) {
      spdlog::error("cluster: partition layouts of tenant '{}': {}", tenant.str(), st.ToString());
    }
  }
  // Starts, changes or (not owned here) releases the tenant's processing.
  if (Status st = s_.engine->UpsertTenant(*change.config); !st.ok()) {
    spdlog::error("cluster: tenant '{}': {}", tenant.str(), st.ToString());
  }
}

void ClusterNode::OnLayoutNote(std::string_view tenant, std::string_view value, int64_t offset) {
  const TenantId id{std::string(tenant)};
  auto config = s_.tenants->Get(id);
  auto layouts = log::DecodeLayouts(value);
  if (!config.ok() || !layouts.ok() || s_.log == nullptr) {
    spdlog::warn("cluster: layout change of tenant '{}' at {} skipped: {}", tenant, offset,
                 !config.ok() ? config.status().ToString() : layouts.status().ToString());
    return;
  }
  // Unacknowledged on failure: the changing node asks again.
  if (Status st = s_.log->FollowLayouts(*config, *layouts); !st.ok()) {
    spdlog::warn("cluster: taking the layout change of tenant '{}': {}", tenant, st.ToString());
    return;
  }
  auto acked = s_.config_topic->PublishNote("layout-ack", fmt::format("{}/{}", tenant, s_.node_id),
                                            std::to_string(offset));
  if (!acked.ok()) {
    spdlog::warn("cluster: acknowledging the layout change of tenant '{}': {}", tenant,
                 acked.status().ToString());
  }
}

void ClusterNode::OnLayoutAck(std::string_view name, std::string_view value) {
  const size_t slash = name.find('/');
  int64_t round = -1;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), round);
  if (slash == std::string_view::npos || ec != std::errc() || end != value.data() + value.size()) {
    spdlog::warn("cluster: layout acknowledgement '{}' is not one: skipped", name);
    return;
  }
  std::lock_guard lock(mu_);
  int64_t& seen =
      layout_acks_[std::string(name.substr(0, slash))][std::string(name.substr(slash + 1))];
  seen = std::max(seen, round);
  acks_cv_.notify_all();
}

Result<std::vector<model::PartitionLayout>> ClusterNode::FinishLayout(
    const TenantId& tenant, const std::vector<model::PartitionLayout>& layouts) {
  FAIRWAY_ASSIGN_OR_RETURN(int64_t round, s_.config_topic->PublishNote(
                                              "layout", tenant.str(), log::EncodeLayouts(layouts)));
  // The nodes that may append: every node named as a slot's owner (a node takes ingest once
  // ready, that is once it has slots), and this one.
  auto missing = [&] {
    std::set<std::string> nodes{s_.node_id};
    for (const Owner& o : owners_) {
      if (!o.url.empty()) nodes.insert(o.node);
    }
    const auto& acks = layout_acks_[tenant.str()];
    std::vector<std::string> out;
    for (const auto& n : nodes) {
      auto it = acks.find(n);
      if (it == acks.end() || it->second < round) out.push_back(n);
    }
    return out;
  };
  {
    std::unique_lock lock(mu_);
    if (!acks_cv_.wait_for(lock, s_.layout_wait, [&] { return missing().empty(); })) {
      layouts_waiting_->Add();
      return Unavailable(fmt::format(
          "the partition change of tenant '{}' waits for node(s) {} to stop appending to its "
          "old partitions; it completes by itself once they have",
          tenant.str(), fmt::join(missing(), ", ")));
    }
  }
  FAIRWAY_ASSIGN_OR_RETURN(auto sealed, s_.log->SealLayout(tenant));
  layouts_sealed_->Add();
  return sealed;
}

Result<std::vector<model::PartitionLayout>> ClusterNode::ChangeLayout(
    const model::TenantConfig& tenant, uint32_t count) {
  {
    std::lock_guard lock(mu_);
    if (!changing_.insert(tenant.id.str()).second) {
      return Unavailable(
          fmt::format("tenant '{}' is changing its partition count already", tenant.id.str()));
    }
  }
  auto result = [&]() -> Result<std::vector<model::PartitionLayout>> {
    FAIRWAY_ASSIGN_OR_RETURN(auto layouts, s_.log->BeginLayout(tenant, count));
    if (layouts[layouts.size() - 2].ends.empty()) {
      FAIRWAY_ASSIGN_OR_RETURN(layouts, FinishLayout(tenant.id, layouts));
    }
    return layouts;
  }();
  std::lock_guard lock(mu_);
  changing_.erase(tenant.id.str());
  return result;
}

void ClusterNode::CompleteLayoutChanges() {
  if (s_.log == nullptr) return;
  for (const auto& t : s_.tenants->List()) {
    if (t.status == model::TenantStatus::kDeleting || !Owns(t.id)) continue;
    {
      std::lock_guard lock(mu_);
      if (!changing_.insert(t.id.str()).second) continue;  // PATCH is at it
    }
    Status st = [&]() -> Status {
      FAIRWAY_ASSIGN_OR_RETURN(auto layouts, s_.log->RecordedLayouts(t.id));
      if (layouts.size() < 2) return Status::Ok();
      if (layouts[layouts.size() - 2].ends.empty()) {
        spdlog::info("cluster: completing the partition change of tenant '{}'", t.id.str());
        FAIRWAY_ASSIGN_OR_RETURN(layouts, FinishLayout(t.id, layouts));
      }
      // Sealed here but not recorded for the cluster yet (the change's node stopped between).
      if (layouts.back().first <= t.first_partition()) return Status::Ok();
      FAIRWAY_ASSIGN_OR_RETURN(auto adopted, s_.tenants->AdoptLayouts(t.id, layouts));
      spdlog::info("cluster: tenant '{}' has {} partitions from partition {}", t.id.str(),
                   adopted.partitions, adopted.first_partition());
      return s_.engine->UpsertTenant(adopted);
    }();
    if (!st.ok()) {
      spdlog::warn("cluster: partition change of tenant '{}': {}", t.id.str(), st.ToString());
    }
    std::lock_guard lock(mu_);
    changing_.erase(t.id.str());
  }
}

}  // namespace fairway::app
