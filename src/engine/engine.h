#pragma once
// Engine: runs every registered Processor over every tenant's activity log, fairly.
//
// - Pull: the log is the persistent queue. For each (tenant, processor) pair — a stream — the
//   engine reads ahead only within a per-stream and a global memory budget, so a backlog of any
//   size costs the same memory.
// - Fair: streams with ready work share the worker threads by their tenant's processing weight
//   (deficit round robin counted in activities), capped by the tenant's processing rate and
//   max in-flight quotas. Work-conserving: an idle tenant's share goes to the others.
// - Ordered without head-of-line blocking: per-lead processors see a lead's activities in log
//   order, one work item at a time, while other leads run; a failing or slow lead holds only
//   itself (a per-tenant processor holds its tenant).
// - Exactly once: a work item's state changes, generated activities and offsets are committed in
//   one atomic write. Offsets are the low-water mark of completed work plus the completed ranges
//   above it, so work finished out of order is never redone after a restart.
// - Failures: retried by error class with back-off; an activity that keeps failing is moved to
//   the tenant's dead-letter store (replayable); a circuit breaker suspends a stream whose
//   failure rate crosses its threshold and probes it again after a back-off.
//
// Thread-safe.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "common/metrics.h"
#include "engine/processor.h"
#include "log/activity_log.h"
#include "model/tenant.h"
#include "storage/store.h"

namespace fairway::engine {

struct EngineOptions {
  // Worker threads that read the log and run processors.
  size_t threads = 2;
  // Read-ahead per stream (times the tenant's processing weight, up to 16) and over all
  // streams, in bytes of decoded activities.
  size_t stream_buffer_bytes = 512u << 10;
  size_t global_buffer_bytes = 256u << 20;
  // Records per log read.
  size_t fetch_records = 512;
  // Activities a weight-1 stream may take per round of the fair scheduler (at least one batch
  // of its processor).
  uint32_t quantum = 256;
  // Watchdog: a stream that has work it could run, or work in processing, and neither
  // dispatches nor completes a work item for this long (engine clock) has its circuit breaker
  // opened with the reason logged and shown in its status. It is then probed like any open
  // breaker. Zero turns the watchdog off. A processor that legitimately holds a work item
  // longer than this needs a larger value.
  std::chrono::milliseconds stall_timeout{60'000};
  // A work item whose commit fails (the storage refuses writes: a full disk, an I/O error) is
  // retried whole after this long, as often as it takes. Such failures are not the activities'
  // fault: they count neither as attempts nor as breaker failures, and never dead-letter.
  std::chrono::milliseconds storage_retry{1'000};
  // Processing skips a repeated messageId: an activity whose messageId an earlier record of the
  // tenant's log has, received less than the tenant's dedup window before it, reaches no
  // processor. For logs with several writers (a cluster), whose append-time dedup sees only
  // its own node's appends; a log with one writer drops repeats when they are appended.
  bool skip_repeats = false;
};

// What the API shows about one processor of one tenant.
struct PartitionProgress {
  uint32_t partition = 0;
  // Everything below this offset is processed.
  uint64_t committed = 0;
  // Processed offsets above `committed` (work finished out of order).
  uint64_t completed_above = 0;
  uint64_t high_watermark = 0;
};

struct StreamStatus {
  std::string processor;
  std::string ordering;
  bool enabled = true;
  // running | idle | disabled | tenant_suspended | breaker_open | half_open
  std::string state;
  uint64_t lag_events = 0;
  double lag_seconds = 0;
  uint64_t processed_total = 0;
  uint64_t failures_total = 0;
  uint64_t dead_letters_total = 0;
  double events_per_second = 0;
  uint32_t in_flight = 0;
  uint64_t buffered_bytes = 0;
  // Ingest-to-processed latency of this process's lifetime.
  double latency_p50_s = 0;
  double latency_p99_s = 0;
  std::string last_error;
  int64_t breaker_opened_at_ms = 0;
  int64_t breaker_probe_at_ms = 0;
  std::vector<PartitionProgress> partitions;
};

struct DeadLetter {
  uint32_t partition = 0;
  uint64_t offset = 0;
  std::string id;  // "<partition>-<offset>"
  ErrorClass error_class = ErrorClass::kPermanent;
  std::string reason;
  uint32_t attempts = 0;
  int64_t failed_at_ms = 0;
  model::Activity activity;
};

struct DeadLetterPage {
  std::vector<DeadLetter> items;
  std::string next_cursor;
};

class Engine {
 public:
  // `store` must use storage::FairwayColumnFamilies(); `log` must be backed by it. Neither is
  // owned; both must outlive the engine.
  Engine(storage::Store* store, log::ActivityLog* log, const Clock* clock, MetricsRegistry* metrics,
         EngineOptions options);
  ~Engine();

  // Registers a processor. Only before Start; a processor's ProcessorSpec::after must name one
  // registered before it.
  void AddProcessor(std::unique_ptr<Processor> processor);
  // Subscribes to the log and starts the worker threads.
  void Start();
  // Stops dispatching, waits for work in processing to finish, stops the threads.
  void Stop();

  // Adds a tenant, or applies a changed configuration (quotas take effect at once; a suspended
  // tenant's processing pauses and resumes from where it stopped; kDeleting removes it).
  Status UpsertTenant(const model::TenantConfig& tenant);
  // Stops processing the tenant, waits for its work in processing, and deletes its offsets,
  // processor state, dead letters and settings.
  Status RemoveTenant(const TenantId& tenant);

  // In a cluster, a node processes only the tenants it owns. With `owns` set, UpsertTenant of a
  // tenant `owns` refuses releases it instead (when running) and keeps nothing of it. Requires:
  // before the first UpsertTenant.
  void SetOwnership(std::function<bool(const TenantId&)> owns);
  // Stops processing the tenant and waits for its work in processing, keeping everything it
  // stored (another node, or this one later, resumes from its committed offsets). A no-op for a
  // tenant not running.
  Status ReleaseTenant(const TenantId& tenant);

  // Turns a processor on or off for one tenant (persisted). Turning it on resumes from the
  // committed offsets.
  Status SetEnabled(const TenantId& tenant, std::string_view processor, bool enabled);
  // Closes an open circuit breaker now.
  Status ResumeProcessor(const TenantId& tenant, std::string_view processor);

  Result<std::vector<StreamStatus>> GetStatus(const TenantId& tenant);
  // Every stream's committed offsets (of every tenant not being removed): what
  // log::ActivityLog::PublishProgress shows.
  std::vector<log::ProcessingProgress> Progress();

  // Dead letters of one processor, oldest log position first. `cursor` is a previous page's
  // next_cursor (InvalidArgument names a bad one).
  Result<DeadLetterPage> ListDeadLetters(const TenantId& tenant, std::string_view processor,
                                         std::string_view cursor, size_t limit);
  // Queues dead letters for another try (all of them when `ids` is empty, at most `limit`).
  // A replayed activity that succeeds leaves the dead-letter store in the same atomic write;
  // one that fails again stays there with its new reason. Returns how many were queued.
  Result<size_t> ReplayDeadLetters(const TenantId& tenant, std::string_view processor,
                                   const std::vector<std::string>& ids, size_t limit);

  // True once every enabled stream of every active tenant has processed its log up to the
  // current high watermark and nothing is in processing or waiting to be retried; false if
  // `timeout` passes first. For tests, tools and benchmarks.
  bool WaitIdle(std::chrono::milliseconds timeout);

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace fairway::engine
