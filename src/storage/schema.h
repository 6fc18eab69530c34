#pragma once
// The column families of Fairway's embedded store, in their fixed on-disk order. Every module
// that keeps data in the embedded store owns one or more of these; the app opens the store with
// all of them.

#include <vector>

#include "storage/store.h"

namespace fairway::storage {

enum : ColumnFamily {
  // log: tenant \0 partition(be32) base_offset(be64) -> block of activity records.
  kLogBlocks = 0,
  // log: tenant \0 messageId -> ttl(expiry) partition(be32) offset(be64). Idempotency window.
  kLogDedup = 1,
  // log: tenant \0 len(be32) lead ts(be64) partition(be32) offset(be64) -> ttl(expiry) type.
  kLogLeadIndex = 2,
  // log: tenant \0 partition(be32) -> log start offset (after retention).
  kLogMeta = 3,
  // tenancy: tenant id -> stored tenant JSON.
  kTenants = 4,
  // engine: tenant \0 processor \0 key -> processor state (see engine/processor.h StateTxn).
  kEngineState = 5,
  // engine: tenant \0 processor \0 partition(be32) -> committed offsets (low-water mark plus
  // the completed ranges above it).
  kEngineOffsets = 6,
  // engine: tenant \0 processor \0 partition(be32) offset(be64) -> dead letter.
  kDeadLetters = 7,
  // engine: tenant \0 processor \0 partition(be32) offset(be64) seq(be32) -> generated activity
  // waiting to be appended to the log.
  kOutbox = 8,
  // engine: tenant \0 processor -> per-tenant processor settings (enabled or not).
  kEngineMeta = 9,
  // campaigns: tenant \0 'c' campaign id -> campaign definition and status;
  //            tenant \0 's' -> the tenant's campaign settings.
  kCampaigns = 10,
  // campaigns: tenant \0 due(be64) lead-key-len(be32) lead-key campaign id -> timer (a waiting
  // run's wake-up).
  kTimers = 11,
  // dispatch: tenant \0 'p' created(be64) delivery id -> pending external delivery;
  //           tenant \0 'd' delivery id -> dead delivery (gave up).
  kDeliveries = 12,
  // campaigns: tenant \0 campaign id \0 day(be32) \0 metric -> counter (merge-added).
  kCampaignStats = 13,
  // cluster: slot(be32) -> where the node's copy of the slot's state stands in the slot's
  // changelog (cluster/changelog.h); "config" -> how far the node has read the config topic;
  // "slot/<n>" -> the owner of slot n as last published (cluster/config_topic.h).
  kClusterMeta = 14,
  // engine: tenant \0 messageId -> ttl(expiry) partition(be32) offset(be64): the first copy of
  // each messageId processed, when processing skips repeats (EngineOptions::skip_repeats).
  kProcessedIds = 15,
  // identity: the lead index (as kLogLeadIndex) of the activities the leads processor applied,
  // when it keeps one (a cluster, where each node's kLogLeadIndex holds only what it ingested):
  // tenant state, so it follows the tenant between nodes.
  kActivityIndex = 16,
};

// The families that hold a tenant's processing state (engine, campaigns, deliveries), every key
// beginning with tenant \0: what moves with a tenant between the nodes of a cluster.
inline constexpr ColumnFamily kTenantStateFamilies[] = {
    kEngineState, kEngineOffsets, kDeadLetters,   kOutbox,       kEngineMeta,   kCampaigns,
    kTimers,      kDeliveries,    kCampaignStats, kProcessedIds, kActivityIndex};

// The families that hold what a node keeps of a tenant's log (its records on the embedded
// backend; the dedup window, lead index and checkpoints on both).
inline constexpr ColumnFamily kTenantLogFamilies[] = {kLogBlocks, kLogDedup, kLogLeadIndex,
                                                      kLogMeta};

// The column family specs for StoreOptions::column_families, in enum order.
inline std::vector<ColumnFamilySpec> FairwayColumnFamilies() {
  return {
      {.name = "log_blocks", .compress = false, .write_buffer_bytes = 64u << 20},
      {.name = "log_dedup", .ttl = true, .bloom = true},
      {.name = "log_lead_index", .ttl = true},
      {.name = "log_meta"},
      {.name = "tenants"},
      {.name = "engine_state", .bloom = true},
      {.name = "engine_offsets"},
      {.name = "dead_letters"},
      {.name = "outbox"},
      {.name = "engine_meta"},
      {.name = "campaigns"},
      {.name = "timers"},
      {.name = "deliveries"},
      {.name = "campaign_stats", .counters = true},
      {.name = "cluster_meta"},
      {.name = "processed_ids", .ttl = true, .bloom = true},
      {.name = "activity_index", .ttl = true},
  };
}

}  // namespace fairway::storage
