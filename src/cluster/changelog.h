#pragma once
// Changelog: how a slot's state follows it from node to node.
//
// Every write of a tenant's processing state (storage::kTenantStateFamilies: engine offsets and
// state, outbox, dead letters, campaigns, timers, deliveries) goes through store(), which sends
// the slot's part of the write batch to the slot's partition of `<prefix>__changelog` and
// writes it to the local store only once Kafka has acknowledged it (acks=all, idempotent). A
// write the changelog refuses is refused whole: the engine retries it like a full disk.
//
// Taking a slot (Take) fences its earlier owners and restores the slot's rows:
//  1. An owner record is produced to the slot's partition; its offset is the new epoch.
//  2. The local rows of the slot's tenants are kept only when this node released the slot
//     cleanly last time (its release record, and nothing written locally since); otherwise they
//     are deleted, and the whole changelog is replayed.
//  3. Records up to the owner record are applied in order. A batch counts only when written
//     under the epoch current at its position: after an owner record, only that owner's
//     batches; after a release, none. So a node that lost the slot without knowing (it missed
//     its heartbeats) and still writes is ignored by every later restore.
// Releasing (Release) produces a release record once the slot's work has stopped.
//
// The changelog keeps whole batches (atomic, in commit order); its topic is created with
// unlimited retention and is not compacted. So that a restore need not read every batch ever
// written, the owner of a slot writes a snapshot of it (Snapshot) once enough has been
// journaled since the last one:
//  1. With the slot's writes held for a moment, a snapshot-begin record is produced under the
//     owner's epoch, and the local store's view at that moment is taken. The snapshot counts
//     only if every record between the owner record and the begin record is this node's own
//     (their offsets follow on from each other): then no other owner's record lies there, and
//     the epoch was in force at the begin record.
//  2. The slot's rows as of that view are produced in snapshot records, then an end record.
//  3. The begin record's offset is committed as the slot's offset of the consumer group
//     `<prefix>__changelog.snapshots`, and the records before it are deleted (DeleteRecords;
//     a broker without it keeps them).
// A restore then starts at the latest complete snapshot: it applies the snapshot's rows, then
// the batches after the begin record by the epoch rule above (those that arrive before the
// end record are applied after the snapshot's rows).
//
// Thread-safe.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/ids.h"
#include "common/status.h"
#include "log/kafka_log.h"
#include "storage/store.h"

namespace fairway::cluster {

struct ChangelogOptions {
  log::KafkaLogOptions kafka;
  // Written into owner and release records, for people reading the topic.
  std::string node_id;
  // Partitions of the topic: one per slot (MembershipOptions::slots).
  uint32_t slots = 64;
  // The slot of a tenant (cluster::SlotOfTenant); unset: its id's hash slot (SlotOf).
  std::function<uint32_t(const TenantId&)> slot_of;
  // SnapshotDue once this many bytes were journaled for an owned slot since its last snapshot
  // (or since the batches its restore applied); 0: never.
  uint64_t snapshot_bytes = 64u << 20;
  // A snapshot's rows go in records of about this many bytes.
  size_t snapshot_record_bytes = 256u << 10;
  // Test hook: called after the `n`-th (from 1) snapshot record of `slot` was acknowledged.
  std::function<void(uint32_t slot, size_t n)> after_snapshot_record;
};

// What a Snapshot wrote.
struct SnapshotStats {
  int64_t begin = 0;  // the begin record's offset: where restores now start
  uint64_t records = 0;
  uint64_t rows = 0;
  uint64_t bytes = 0;
  // Whether the records before `begin` were deleted (false: the brokers do not delete records).
  bool deleted_before = false;
};

// What a Take did.
struct RestoreStats {
  int64_t epoch = 0;
  // Whether the local rows were kept (a clean release by this node) or replaced.
  bool kept_local = false;
  uint64_t records = 0;
  uint64_t batches_applied = 0;
  // Bytes of batches and snapshot rows applied.
  uint64_t bytes_applied = 0;
  // The begin record of the snapshot the restore started from; -1: none.
  int64_t snapshot = -1;
  uint64_t snapshot_rows = 0;
};

class Changelog {
 public:
  // Creates the topic when it is missing and kafka.create_topics is on (it must otherwise
  // exist with `slots` partitions). `local` (not owned, opened with
  // storage::FairwayColumnFamilies()) must outlive the changelog.
  static Result<std::unique_ptr<Changelog>> Open(ChangelogOptions options, storage::Store* local);
  ~Changelog();

  // The store every module keeping tenant state writes through. Reads go to the local store.
  storage::Store* store();

  // Takes `slot`, whose tenants are `tenants` (their local rows are deleted when they may not
  // be trusted). Returns once the local store holds the slot's state; from then on the slot's
  // writes are journaled under the new epoch.
  Result<RestoreStats> Take(uint32_t slot, const std::vector<TenantId>& tenants);
  // Gives up `slot`: its writes stop being journaled. `clean` (nothing writes for the slot any
  // more and the node still owned it) journals a release record, so that the node may keep its
  // rows when it takes the slot again.
  Status Release(uint32_t slot, bool clean);
  // The epoch of an owned slot.
  std::optional<int64_t> Epoch(uint32_t slot) const;

  // Whether the owned `slot` has journaled ChangelogOptions::snapshot_bytes since its last
  // snapshot.
  bool SnapshotDue(uint32_t slot) const;
  // Writes a snapshot of the owned `slot` (above): the rows of the tenants `tenants()` lists,
  // called while the slot's writes are held, so every tenant that has written is listed.
  // FailedPrecondition when the slot is not owned, or when a record this node did not write
  // may lie among its records since it took the slot (then no snapshot is written until it
  // takes the slot again). Release cuts a snapshot in progress short (Aborted).
  Result<SnapshotStats> Snapshot(uint32_t slot,
                                 const std::function<std::vector<TenantId>()>& tenants);

  // "<prefix>__changelog".
  static std::string TopicFor(std::string_view prefix);
  // "<prefix>__changelog.snapshots": its offsets are the slots' latest snapshots.
  static std::string SnapshotGroupFor(std::string_view prefix);

  struct Impl;

 private:
  explicit Changelog(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace fairway::cluster
