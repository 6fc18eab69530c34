#pragma once
// DeliveryDispatcher::Impl and the state its thread owns (internal to the dispatcher). The
// members are defined by concern:
// - delivery_dispatcher.cpp: the public API, the thread's loop, the inbox, tenant removal and
//   the idle state WaitIdle reads;
// - scheduler.cpp: loading due rows from disk and starting transfers fairly within the limits;
// - outcome.cpp: finished transfers classified (outcome.h) and their outcomes written back;
// - delivery_rows.cpp: row I/O for the API and recovery: List, Retry, a tenant's deletion, the
//   tenants with pending rows at Start.
// The transfers themselves are the Transport's (transport.h).

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/clock.h"
#include "common/ids.h"
#include "common/metrics.h"
#include "common/status.h"
#include "dispatch/delivery.h"
#include "dispatch/delivery_dispatcher.h"
#include "dispatch/destination_filter.h"
#include "dispatch/transport.h"
#include "storage/store.h"

namespace fairway::dispatch {

inline constexpr int64_t kNever = std::numeric_limits<int64_t>::max();

struct Row;

struct Destination {
  std::string origin;
  std::deque<Row*> queue;  // loaded, due, not started
  uint32_t in_flight = 0;
  size_t loaded = 0;  // rows of this destination in memory
  double tokens = 0;
  int64_t refill_ns = 0;
  // A scan passed over a due row of this destination because it had max_loaded_per_destination
  // rows in memory: scan again once it has drained to half.
  bool skipped_due = false;
  bool in_ready = false;  // listed in Tenant::ready
};

struct Row {
  std::string key;
  Delivery d;
  Destination* dest = nullptr;
  bool in_flight = false;
};

struct TenantMetrics {
  Counter* delivered = nullptr;
  Counter* retried = nullptr;
  Counter* dead = nullptr;
  Gauge* in_flight = nullptr;
  Gauge* loaded = nullptr;
  Histogram* latency = nullptr;
};

struct Removal {
  TenantId tenant;
  std::promise<Status> done;
  // A release (DeliveryDispatcher::ReleaseTenant): the outcomes of transfers in flight are
  // written, and the rows stay.
  bool keep_rows = false;
};

// One tenant's deliveries as the dispatcher thread sees them. Owned by that thread.
struct Tenant {
  TenantId id;
  std::string pending_prefix, pending_end;
  std::unordered_map<std::string, std::unique_ptr<Row>> rows;  // loaded rows by key
  std::unordered_map<std::string, std::unique_ptr<Destination>> dests;
  std::deque<Destination*> ready;  // destinations with queued rows, round robin
  size_t queued = 0;
  uint32_t in_flight = 0;
  bool in_rr = false;
  // Disk scan. A pass walks the tenant's pending rows once, in key order and in budgeted steps,
  // loading the due ones not yet in memory and noting the earliest next attempt of the others.
  bool pass_active = false;
  std::string pass_cursor;
  int64_t pass_min_due = kNever;
  // Rows may be on disk that no pass has seen (new rows, revived rows): start a pass.
  bool dirty = true;
  // After a pass: the earliest next attempt among rows left on disk.
  int64_t wake_ms = kNever;
  std::shared_ptr<Removal> removal;  // set while being removed
  TenantMetrics m;
};

enum class OutcomeKind { kDelivered, kRetry, kDead };

struct Outcome {
  Tenant* tenant = nullptr;
  Row* row = nullptr;
  OutcomeKind kind = OutcomeKind::kDelivered;
  Delivery updated;  // the row's new state (retry, dead)
};

struct DeliveryDispatcher::Impl {
  Impl(storage::Store* store, const Clock* clock, MetricsRegistry* metrics,
       DeliveryDispatcherOptions o);

  storage::Store* const store;
  const Clock* const clock;
  MetricsRegistry* const metrics;
  DeliveryDispatcherOptions options;
  const DestinationFilter filter;
  std::function<std::optional<std::string>(const TenantId&)> secrets;
  DeliveryListener* listener = nullptr;
  // DeliveryDispatcher::SetOwnership; empty: every tenant.
  std::function<bool(const TenantId&)> owns;
  Transport transport;

  // --- shared with other threads (mu) ---
  std::mutex lifecycle_mu;  // Start / Stop
  bool started = false;
  std::thread thread;
  std::mutex mu;
  std::condition_variable cv;  // WaitIdle
  bool running = false;
  bool stopping = false;
  std::unordered_set<std::string> notified;
  std::vector<std::shared_ptr<Removal>> removals;
  // Published by the dispatcher thread after each turn.
  bool idle = false;
  int64_t next_wake_ms = kNever;

  // --- owned by the dispatcher thread ---
  std::unordered_map<std::string, std::unique_ptr<Tenant>> tenants;
  std::deque<Tenant*> rr;  // tenants with queued rows
  uint32_t in_flight = 0;
  std::vector<Outcome> outcomes;   // decided, not yet written
  std::vector<Outcome> unwritten;  // their write failed; retried every turn
  std::vector<std::shared_ptr<Removal>> removing;
  int64_t token_wait_ns = kNever;
  bool write_failing = false;

  void Loop();
  void DrainInbox();
  Tenant* GetTenant(const TenantId& id);
  void BeginRemoval(std::shared_ptr<Removal> r);
  void FinishRemovals(bool force);
  Status DeleteTenantRows(const TenantId& tenant);
  // RemoveTenant (keep_rows false) and ReleaseTenant (true), from any thread.
  Status Remove(const TenantId& tenant, bool keep_rows);
  // The tenants with at least one pending row on disk (recovery at Start).
  std::vector<std::string> TenantsWithPendingRows();

  bool NeedsScan(const Tenant* t, int64_t now_ms) const;
  void Scan(Tenant* t, int64_t now_ms);
  Destination* GetDestination(Tenant* t, const Delivery& d);
  void Load(Tenant* t, Destination* dest, std::string key, Delivery d);
  void Release(Tenant* t, Row* row);

  bool TakeToken(Destination* d, int64_t now_ns);
  void StartTransfers(int64_t now_ms, int64_t now_ns);
  bool StartOne(Tenant* t, int64_t now_ms, int64_t now_ns);
  void Launch(Tenant* t, Row* row, int64_t now_ms);
  // Returns how many transfers finished.
  size_t CollectCompletions();
  void Record(const Completion& c);
  void Fail(Tenant* t, Row* row, bool permanent, std::string error, int64_t retry_after_ms,
            int64_t started_ms);
  void WriteOutcomes(std::vector<Outcome> batch);
  void Apply(const Outcome& o);
  void AbortAll();
  void ReapIdle(int64_t now_ns);
  void Publish(int64_t now_ms);
  // `freed`: transfers finished this turn, so queued rows may start now.
  int PollTimeoutMs(int64_t now_ms, bool freed) const;
};

}  // namespace fairway::dispatch
