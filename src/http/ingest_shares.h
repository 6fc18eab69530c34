#pragma once
// IngestShares: fair admission of ingest requests. Counts, per tenant, the events the API has
// accepted that are not yet durable (waiting in the log's group-commit queue), and bounds each
// tenant's count by its weighted share of a capacity, so that a tenant flooding the server
// fills only its own share and the others keep being admitted.
//
// A tenant's share is capacity * weight / (sum of the weights of the tenants with events in
// flight, itself included). One request of a tenant with nothing in flight is always admitted,
// whatever its size. Since shares shrink as more tenants become active, the total can pass the
// capacity; it is held below twice the capacity (the log's queue should be at least that).
// Thread-safe.

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

#include "common/ids.h"

namespace fairway::http {

class IngestShares {
 public:
  enum class Verdict {
    kAdmitted,
    // The tenant holds its share: it should slow down (429).
    kOverShare,
    // The server as a whole holds twice the capacity: everyone should retry later (503).
    kFull,
  };

  // `capacity_events` >= 1.
  explicit IngestShares(size_t capacity_events);

  // True when the tenant already holds its share, so that a request can be refused before its
  // body is parsed.
  bool OverShare(const TenantId& tenant, uint32_t weight) const;
  // Takes `events` for the tenant when admitted; every admitted call must be paired with
  // Release(tenant, events).
  Verdict TryAcquire(const TenantId& tenant, uint32_t weight, size_t events);
  void Release(const TenantId& tenant, size_t events);

  // Events in flight: of one tenant, and in all.
  size_t InFlight(const TenantId& tenant) const;
  size_t total() const;
  size_t capacity() const { return capacity_; }

 private:
  struct Tenant {
    size_t events = 0;
    uint32_t weight = 1;
  };
  // The share of a tenant of `weight`; `active` says whether it already counts in
  // active_weight_. Requires mu_.
  size_t ShareLocked(uint32_t weight, bool active) const;

  const size_t capacity_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Tenant> tenants_;  // only tenants with events in flight
  uint64_t active_weight_ = 0;
  size_t total_ = 0;
};

}  // namespace fairway::http
