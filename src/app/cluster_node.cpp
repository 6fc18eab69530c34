#include "app/cluster_node.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <boost/json.hpp>
#include <chrono>
#include <thread>

#include "common/json_writer.h"

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
      restored_bytes_(s_.metrics->GetCounter(
          "fairway_cluster_restored_bytes_total",
          "Bytes of state batches applied from the changelog when taking slots.")),
      restore_seconds_(s_.metrics->GetHistogram(
          "fairway_cluster_restore_seconds",
          "Time to restore one slot's state from the changelog when taking it.",
          LatencyBuckets())) {}

bool ClusterNode::Owns(const TenantId& tenant) const {
  std::lock_guard lock(mu_);
  return active_[cluster::SlotOf(tenant, slots_)];
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
    if (cluster::SlotOf(t.id, slots_) == slot) out.push_back(std::move(t));
  }
  return out;
}

void ClusterNode::OnAssigned(const std::vector<uint32_t>& slots) {
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

void ClusterNode::OnRevoked(const std::vector<uint32_t>& slots, bool lost) {
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
  spdlog::info("cluster: slot {} is processed by node {} ({})", slot, owner.node, owner.url);
}

std::optional<std::string> ClusterNode::OwnerUrl(const TenantId& tenant) const {
  const uint32_t slot = cluster::SlotOf(tenant, slots_);
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
  // Starts, changes or (not owned here) releases the tenant's processing.
  if (Status st = s_.engine->UpsertTenant(*change.config); !st.ok()) {
    spdlog::error("cluster: tenant '{}': {}", tenant.str(), st.ToString());
  }
}

}  // namespace fairway::app
