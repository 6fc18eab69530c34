#pragma once
// ActivityLog: the permanent, partitioned record of every tenant's activities, and the queue
// its consumers read. Modelled on Kafka so the embedded (RocksDB) and Kafka backends share it:
// a tenant is a topic, a lead's activities always land in the same partition (hash of the
// lead), and each partition's offsets are contiguous from its start offset.
//
// ActivityQuery is the read-by-lead index over the same data, used by the public API.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/ids.h"
#include "common/status.h"
#include "model/activity.h"
#include "model/tenant.h"
#include "storage/store.h"

namespace fairway::log {

// Picks the partition of a lead: stable across restarts and versions.
PartitionId PartitionFor(std::string_view lead_key, uint32_t partitions);
// The log partition of a lead in the layout of `count` partitions from `first`.
inline uint32_t LayoutPartition(std::string_view lead_key, uint32_t first, uint32_t count) {
  return first + PartitionFor(lead_key, count).value();
}

struct AppendRequest {
  TenantId tenant;
  // The tenant's current layout: `partitions` partitions numbered from `first_partition`. A log
  // that has started a newer layout for the tenant (StartLayout) uses that one instead.
  uint32_t partitions = 1;
  uint32_t first_partition = 0;
  // A messageId seen within this window is not stored again (0 disables the check).
  int64_t dedup_window_ms = 0;
  // Activities' index entries expire after this (0 = never).
  int64_t retention_ms = 0;
  std::vector<model::Activity> activities;
};

// The least dedup window of activities Fairway generates (engine outbox, campaign timers): a
// re-send after a crash is recognised even when the tenant's window is shorter (or 0).
inline constexpr int64_t kGeneratedDedupWindowMs = 7LL * 86'400'000;

// An empty request for `tenant`'s activities, with its partitions, dedup window and retention.
inline AppendRequest AppendRequestFor(const model::TenantConfig& tenant) {
  AppendRequest req;
  req.tenant = tenant.id;
  req.partitions = tenant.partitions;
  req.first_partition = tenant.first_partition();
  req.dedup_window_ms = static_cast<int64_t>(tenant.quotas.dedup_window_seconds) * 1000;
  req.retention_ms = static_cast<int64_t>(tenant.quotas.retention_days) * 86'400'000;
  return req;
}

struct AppendResult {
  // Activities newly stored.
  uint32_t stored = 0;
  // Activities recognised as re-sent (same messageId within the window) and not stored again.
  uint32_t duplicates = 0;
};

// Runs exactly once per request, on the log's writer thread: keep it short (hand off).
using AppendCallback = std::function<void(Result<AppendResult>)>;

struct LogEntry {
  PartitionId partition;
  Offset offset;
  model::Activity activity;
};

// A partition's high watermark moved: records below `next` are now readable.
struct PartitionAdvance {
  TenantId tenant;
  PartitionId partition;
  Offset next;
};
// Runs after each commit that stored records, on the log's writer thread, and (Kafka) on the
// thread of an append that found records this node had not announced: keep it short, and never
// call the log from it.
using AppendListener = std::function<void(const std::vector<PartitionAdvance>&)>;

// How far one processor of one tenant has processed its log: everything below committed[p] of
// log partition p.
struct ProcessingProgress {
  TenantId tenant;
  std::string processor;
  std::vector<uint64_t> committed;
  // The end of each partition as the engine knows it (the log's high watermark when it last
  // heard of an append).
  std::vector<uint64_t> high;
};

// Where a log partition is in the backend's own terms (Kafka: a topic and its partition).
struct LogLocation {
  std::string topic;
  int32_t partition = 0;
};

class ActivityLog {
 public:
  virtual ~ActivityLog() = default;

  // Starts the backend's background work (the embedded writer thread). Set the append listener
  // first: commits before it is set are not reported.
  virtual void Start() = 0;
  // Completes every append queued so far, then stops the background work. Appends after Stop
  // fail with Unavailable.
  virtual void Stop() = 0;

  // Appends a request's activities atomically: all are stored or none. `done` runs once the
  // write is durable (synced to disk), or with the error that prevented it. Concurrent appends
  // share one sync (group commit).
  virtual void Append(AppendRequest request, AppendCallback done) = 0;

  // Reads up to `max_records` entries of one partition from offset `from` (inclusive).
  // Entries below the partition's start offset (removed by retention) are skipped.
  virtual Result<std::vector<LogEntry>> Read(const TenantId& tenant, PartitionId partition,
                                             Offset from, size_t max_records) = 0;

  // The offset the next appended record of the partition will get.
  virtual Result<Offset> HighWatermark(const TenantId& tenant, PartitionId partition) = 0;
  // The first offset still stored (raised by retention).
  virtual Result<Offset> LowWatermark(const TenantId& tenant, PartitionId partition) = 0;

  // Removes records received before `cutoff_ms` from every partition of the tenant.
  // Returns the number of records removed.
  virtual Result<uint64_t> ApplyRetention(const TenantId& tenant, uint32_t partitions,
                                          int64_t cutoff_ms) = 0;

  // Removes everything stored for the tenant. Appends queued before it are removed too; appends
  // that arrive after it fail with NotFound until ReopenTenant, so a request admitted just
  // before the tenant was deleted cannot leave orphaned data.
  virtual Status DropTenant(const TenantId& tenant) = 0;
  // Accepts appends again for a tenant id that was dropped (the id is being reused); called for
  // every tenant created. FailedPrecondition while records of an earlier tenant with this id
  // remain (a backend whose drop removes them later), which would become the new tenant's
  // history.
  virtual Status ReopenTenant(const TenantId& tenant) = 0;

  // Whether AppendInWrite works: the log is kept in the same store as the caller's state.
  virtual bool AppendsInWrite() const { return false; }
  // Appends `request`'s activities as part of the caller's own atomic write: adds their records
  // to `batch` and calls `write(batch)` (which must write it, once), serialised with every other
  // append, so the activities are stored exactly when the caller's other writes are, with no
  // second write and no dedup check (the caller's atomic write is what makes a repeat
  // impossible). Returns write's error, or NotFound for a dropped tenant (nothing written).
  // The append listener hears of the records after the write. Unimplemented unless
  // AppendsInWrite().
  virtual Status AppendInWrite(const AppendRequest& request, storage::WriteBatch* batch,
                               const std::function<Status(storage::WriteBatch*)>& write) {
    return FailedPrecondition("this activity log cannot append inside another write");
  }

  // Starts a new partition layout for `tenant` (its partition count changed to `count`): as soon
  // as this returns, every append of the tenant goes to `count` new partitions numbered after
  // its current layout's (tenant.current_layout()), whatever layout the append's request names.
  // The current layout is sealed once the appends already routed to it are stored; returns its
  // partitions' end offsets. Durable before it returns. Repeating a call that succeeded (a
  // restart between it and recording its result) returns the same ends; FailedPrecondition if
  // the tenant's current layout is not the log's.
  virtual Result<std::vector<uint64_t>> StartLayout(const model::TenantConfig& tenant,
                                                    uint32_t count) = 0;
  // The tenant's layouts as StartLayout recorded them, oldest first, the last one current;
  // empty if the tenant never changed layout.
  virtual Result<std::vector<model::PartitionLayout>> Layouts(const TenantId& tenant) = 0;

  // A layout change with several appending nodes (a cluster), in three steps, so that no node
  // appends to the new layout before every node has stopped appending to the old one:
  // 1. The node changing the count starts the new layout without sealing the current one
  //    (BeginLayout) and tells the others.
  // 2. Every node takes the layouts (FollowLayouts): from then on its appends of the tenant are
  //    refused with Unavailable (the client retries) until the old layout is sealed; it returns
  //    once none of its appends to the old layout is on its way any more.
  // 3. Once every node has, the changing node seals the old layout at the ends the log holds
  //    (SealLayout), and the others take the sealed layouts (FollowLayouts again), after which
  //    appends go to the new layout everywhere.
  // Requires KafkaLogOptions::shared_appends; FailedPrecondition elsewhere.
  virtual Result<std::vector<model::PartitionLayout>> BeginLayout(const model::TenantConfig& tenant,
                                                                  uint32_t count) {
    return FailedPrecondition("this activity log has no shared layout changes");
  }
  virtual Status FollowLayouts(const model::TenantConfig& tenant,
                               const std::vector<model::PartitionLayout>& layouts) {
    return FailedPrecondition("this activity log has no shared layout changes");
  }
  // Seals the layout before the newest (started by BeginLayout or taken by FollowLayouts) at
  // the ends the log holds; returns the layouts. Repeating it returns the same ends.
  virtual Result<std::vector<model::PartitionLayout>> SealLayout(const TenantId& tenant) {
    return FailedPrecondition("this activity log has no shared layout changes");
  }
  // The layouts as recorded, an unsealed one included; never seals anything (Layouts seals a
  // layout a stop left unsealed).
  virtual Result<std::vector<model::PartitionLayout>> RecordedLayouts(const TenantId& tenant) {
    return Layouts(tenant);
  }

  // OK while the log can take appends; otherwise why not (the server's readiness shows it).
  virtual Status Health() { return Status::Ok(); }

  // Shows processing progress where the backend's own tools look for it (Kafka: each
  // processor's committed offsets in a consumer group, so consumer-lag tools see Fairway's lag).
  // For watching only: processing resumes from the offsets the engine stores with its state.
  virtual Status PublishProgress(const std::vector<ProcessingProgress>& progress) {
    return Status::Ok();
  }
  // Where log partition `partition` of `tenant` is, for operators; nullopt when the backend has
  // no name for it (the embedded log) or the partition is in no layout.
  virtual std::optional<LogLocation> Locate(const TenantId& tenant, uint32_t partition) {
    return std::nullopt;
  }

  // Tells `listener` about every commit from now on (consumers wake up on it instead of
  // polling). One listener; set it before appends start.
  virtual void SetAppendListener(AppendListener listener) = 0;

  // Looks for records that other writers (the other nodes of a cluster) appended to the first
  // `partitions` log partitions of each tenant, and tells the listener of the partitions whose
  // end moved. The embedded log has no other writer: nothing to do.
  virtual Status PollForeignAppends(const std::vector<std::pair<TenantId, uint32_t>>& tenants) {
    return Status::Ok();
  }
};

struct ActivityQuery {
  TenantId tenant;
  // userId or anonymousId.
  LeadId lead;
  // More identities of the same person: their activities are merged into one timeline (an
  // activity indexed under several of them appears once).
  std::vector<LeadId> also;
  std::optional<model::ActivityType> type;
  // Event name (track) or page/screen name; empty = any.
  std::string event;
  // Event-time range, inclusive.
  int64_t since_ms = INT64_MIN;
  int64_t until_ms = INT64_MAX;
  bool newest_first = true;
  size_t limit = 100;
  // Opaque position returned by a previous page; empty = start.
  std::string cursor;
};

struct ActivityPage {
  std::vector<LogEntry> entries;
  // Empty when there is nothing more.
  std::string next_cursor;
};

class ActivityIndex {
 public:
  virtual ~ActivityIndex() = default;
  // Reads a lead's activities by event time. InvalidArgument names a bad cursor.
  virtual Result<ActivityPage> Query(const ActivityQuery& query) = 0;
};

}  // namespace fairway::log
