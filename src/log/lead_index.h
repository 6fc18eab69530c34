#pragma once
// The lead index and the messageId dedup window in Fairway's embedded store, shared by every
// backend: the embedded log writes them in its commits; the Kafka backend keeps them in the
// node's store once the broker has acknowledged the records they point at. Both point at records
// by (partition, offset), which the backend reads back for a query page.
//
//   kLogLeadIndex: tenant \0 len(be32) lead ts(be64) partition(be32) offset(be64)
//                  -> ttl(expiry) type event
//   kLogDedup:     tenant \0 messageId -> ttl(expiry) partition(be32) offset(be64)

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/ids.h"
#include "common/status.h"
#include "log/activity_log.h"
#include "model/activity.h"
#include "storage/schema.h"
#include "storage/store.h"

namespace fairway::log {

// "tenant \0": the prefix of every row of a tenant in the log's column families.
std::string TenantKeyPrefix(const TenantId& tenant);
// The end of that prefix's range (for DeleteRange and iterators).
std::string TenantKeyEnd(const TenantId& tenant);

// A row to write: key and value.
struct IndexRow {
  std::string key;
  std::string value;
  bool operator<(const IndexRow& o) const { return key < o.key; }
};

// The dedup row key of a messageId.
std::string DedupKey(const TenantId& tenant, std::string_view message_id);
// The dedup row of a record stored at (partition, offset) until `expiry_ms`.
IndexRow DedupRow(std::string key, uint32_t partition, uint64_t offset, int64_t expiry_ms);

// Adds the lead-index rows of `a` (one per distinct userId/anonymousId) stored at
// (partition, offset) to `out`; they expire at `expiry_ms` (0: never). Internal timers
// (session_timeout) get none.
void AddLeadIndexRows(const TenantId& tenant, const model::Activity& a, uint32_t partition,
                      uint64_t offset, int64_t expiry_ms, std::vector<IndexRow>* out);

// The tenant's partition layouts (ActivityLog::StartLayout) in kLogMeta: tenant \0 "layouts".
std::string LayoutsKey(const TenantId& tenant);
std::string EncodeLayouts(const std::vector<model::PartitionLayout>& layouts);
Result<std::vector<model::PartitionLayout>> DecodeLayouts(std::string_view value);

// The layouts after sealing `current` at `ends` and starting a layout of `count` partitions
// after it: `recorded` (the log's record, empty if none) must end with `current`.
// FailedPrecondition when it does not. When `recorded` already ends with that new layout (the
// call is repeated), returns it unchanged with `*repeated` set.
Result<std::vector<model::PartitionLayout>> NextLayouts(
    std::vector<model::PartitionLayout> recorded, const model::PartitionLayout& current,
    uint32_t count, const std::vector<uint64_t>& ends, bool* repeated);

// `recorded` (the log's record, empty if none) with what `incoming` (another node's record of
// the same tenant's layouts) adds: the layouts after the recorded ones, and the ends of layouts
// sealed since. FailedPrecondition when the two disagree on a layout or on a sealed end.
Result<std::vector<model::PartitionLayout>> MergeLayouts(
    std::vector<model::PartitionLayout> recorded,
    const std::vector<model::PartitionLayout>& incoming);

// Reads the record at (partition, offset): nullopt when it is no longer stored (retention).
using RecordFetcher =
    std::function<Result<std::optional<model::Activity>>(uint32_t partition, uint64_t offset)>;

// One page of a lead's activities by event time, from the index in `store`'s family `cf`
// (kLogLeadIndex, or kActivityIndex) and the records `fetch` reads. InvalidArgument names a bad
// cursor or a missing lead.
Result<ActivityPage> QueryLeadIndex(storage::Store* store, const ActivityQuery& query,
                                    const RecordFetcher& fetch,
                                    storage::ColumnFamily cf = storage::kLogLeadIndex);

}  // namespace fairway::log
