#pragma once
// TimerService: releases campaign waits that are due. A waiting run is a row in
// storage::kTimers (written by the campaign processor in the step's atomic commit); when its
// time comes (by the injected clock), the service appends a `campaign_wait_elapsed` activity
// for the lead to the tenant's log and then deletes the row. The campaign processor picks the
// activity up in the lead's order, under the engine's fair scheduling, and continues the run.
//
// Exactly once: the appended activity's message id is derived from (campaign, run, step), so a
// crash between the append and the delete appends a duplicate that the log's dedup drops; and
// the processor continues a run only if it is still waiting at that step.
//
// Bounded memory: only the earliest due time per tenant is kept in memory; rows are read in
// chunks. Fair: due tenants take turns, one chunk each per round.
//
// One thread; Notify and RemoveTenant are thread-safe.

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>

#include "common/clock.h"
#include "common/ids.h"
#include "common/status.h"
#include "log/activity_log.h"
#include "model/tenant.h"
#include "storage/store.h"

namespace fairway::campaigns {

struct TimerServiceOptions {
  // Timers released per tenant per round (one log append).
  size_t chunk = 1000;
};

class TimerService {
 public:
  // `tenant_config` returns the tenant's current configuration (nullopt: unknown tenant, its
  // timers wait). None of the pointers is owned; all must outlive the service.
  TimerService(storage::Store* store, log::ActivityLog* log, const Clock* clock,
               std::function<std::optional<model::TenantConfig>(const TenantId&)> tenant_config,
               TimerServiceOptions options = {});
  ~TimerService();

  // Finds every tenant with stored timers and starts the thread.
  Status Start();
  void Stop();

  // A commit stored a timer of `tenant` due at `due_ms`.
  void Notify(const TenantId& tenant, int64_t due_ms);
  // Deletes a tenant's timers.
  Status RemoveTenant(const TenantId& tenant);

  // In a cluster, a node releases the timers of the tenants it owns only: Start and Notify skip
  // the others. Requires: before Start.
  void SetOwnership(std::function<bool(const TenantId&)> owns);
  // Stops releasing the tenant's timers (waiting for a release in progress); its rows stay.
  void ReleaseTenant(const TenantId& tenant);
  // Looks for the tenant's stored timers (the node has just taken it, rows and all).
  Status TakeTenant(const TenantId& tenant);

  // For tests: true once no stored timer is due (by the clock) and nothing is being released;
  // false after `timeout`.
  bool WaitIdle(std::chrono::milliseconds timeout);
  // Timers released so far (appended to the log).
  uint64_t released() const;

 private:
  void Run();
  // Releases up to one chunk of `tenant`'s due timers; returns the tenant's next due time.
  int64_t ReleaseChunk(const std::string& tenant, int64_t now_ms);

  storage::Store* store_;
  log::ActivityLog* log_;
  const Clock* clock_;
  std::function<std::optional<model::TenantConfig>(const TenantId&)> tenant_config_;
  TimerServiceOptions options_;
  std::function<bool(const TenantId&)> owns_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable idle_cv_;
  bool stopping_ = false;
  bool busy_ = false;
  // The tenant whose chunk is being released now (empty: none).
  std::string releasing_;
  // Earliest known due time per tenant (INT64_MAX: none).
  std::unordered_map<std::string, int64_t> next_due_;
  uint64_t released_ = 0;
  std::thread thread_;
};

}  // namespace fairway::campaigns
