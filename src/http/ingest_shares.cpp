#include "http/ingest_shares.h"

#include <algorithm>

namespace fairway::http {

IngestShares::IngestShares(size_t capacity_events)
    : capacity_(std::max<size_t>(1, capacity_events)) {}

size_t IngestShares::ShareLocked(uint32_t weight, bool active) const {
  uint64_t w = std::max<uint32_t>(1, weight);
  uint64_t all = active_weight_ + (active ? 0 : w);
  return std::max<size_t>(1, static_cast<size_t>(capacity_ * w / std::max<uint64_t>(1, all)));
}

bool IngestShares::OverShare(const TenantId& tenant, uint32_t weight) const {
  std::lock_guard lock(mu_);
  auto it = tenants_.find(tenant.str());
  if (it == tenants_.end()) return false;
  return it->second.events >= ShareLocked(weight, true);
}

IngestShares::Verdict IngestShares::TryAcquire(const TenantId& tenant, uint32_t weight,
                                               size_t events) {
  std::lock_guard lock(mu_);
  auto it = tenants_.find(tenant.str());
  bool active = it != tenants_.end();
  if (active && it->second.weight != std::max<uint32_t>(1, weight)) {
    // The tenant's weight changed while it had events in flight: the total follows at once.
    active_weight_ -= it->second.weight;
    it->second.weight = std::max<uint32_t>(1, weight);
    active_weight_ += it->second.weight;
  }
  if (active && it->second.events + events > ShareLocked(weight, true)) return Verdict::kOverShare;
  if (total_ > 0 && total_ + events > 2 * capacity_) return Verdict::kFull;
  if (!active) {
    it = tenants_.emplace(tenant.str(), Tenant{0, std::max<uint32_t>(1, weight)}).first;
    active_weight_ += it->second.weight;
  }
  it->second.events += events;
  total_ += events;
  return Verdict::kAdmitted;
}

void IngestShares::Release(const TenantId& tenant, size_t events) {
  std::lock_guard lock(mu_);
  auto it = tenants_.find(tenant.str());
  if (it == tenants_.end()) return;
  size_t n = std::min(events, it->second.events);
  it->second.events -= n;
  total_ -= std::min(n, total_);
  if (it->second.events == 0) {
    active_weight_ -= it->second.weight;
    tenants_.erase(it);
  }
}

size_t IngestShares::InFlight(const TenantId& tenant) const {
  std::lock_guard lock(mu_);
  auto it = tenants_.find(tenant.str());
  return it == tenants_.end() ? 0 : it->second.events;
}

size_t IngestShares::total() const {
  std::lock_guard lock(mu_);
  return total_;
}

}  // namespace fairway::http
