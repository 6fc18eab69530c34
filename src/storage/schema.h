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
};

// The column family specs for StoreOptions::column_families, in enum order.
inline std::vector<ColumnFamilySpec> FairwayColumnFamilies() {
  return {
      {.name = "log_blocks", .compress = false, .write_buffer_bytes = 64u << 20},
      {.name = "log_dedup", .ttl = true, .bloom = true},
      {.name = "log_lead_index", .ttl = true},
      {.name = "log_meta"},
      {.name = "tenants"},
  };
}

}  // namespace fairway::storage
