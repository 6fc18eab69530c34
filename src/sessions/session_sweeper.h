#pragma once
// SessionSweeper: ends sessions nobody came back to. Reads the sessions processor's index of
// open sessions (session_state.h, "o/" rows: idle from their due time on) and, for every row
// due by the clock, appends a session_timeout activity for the visitor to the tenant's log; the
// sessions processor, in the visitor's order, ends the session unless the visitor came back
// (then it arms a later row). The sweeper never writes the processor's state.
//
// Exactly once: the activity's message id is derived from (session, due), so re-releasing a
// row (after a restart, or before the processor consumed it) appends a duplicate the log's
// dedup drops, and the processor ignores a timeout whose row is no longer current.
//
// Thread-safe: Sweep may be called from one thread at a time (a PeriodicService).

#include <cstddef>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "log/activity_log.h"
#include "model/tenant.h"
#include "storage/store.h"

namespace fairway::sessions {

struct SessionSweeperOptions {
  // Rows released per tenant per sweep (one log append).
  size_t chunk = 1000;
};

class SessionSweeper {
 public:
  // None of the pointers is owned; all must outlive the sweeper.
  SessionSweeper(storage::Store* store, log::ActivityLog* log, const Clock* clock,
                 SessionSweeperOptions options = {});

  // One pass over `tenants` (those `owns` accepts, when set): releases their due rows not
  // released before. Returns how many activities were appended; the first failure otherwise
  // (the other tenants are still swept).
  Result<size_t> Sweep(const std::vector<model::TenantConfig>& tenants,
                       const std::function<bool(const TenantId&)>& owns = {});

 private:
  Result<size_t> SweepTenant(const model::TenantConfig& tenant, int64_t now_ms);

  storage::Store* store_;
  log::ActivityLog* log_;
  const Clock* clock_;
  SessionSweeperOptions options_;
  std::mutex mu_;
  // Per tenant: rows released and still present (the processor deletes them as it goes).
  std::unordered_map<std::string, std::set<std::string>> released_;
};

}  // namespace fairway::sessions
