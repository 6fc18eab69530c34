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
// unlimited retention and is not compacted. A restore of a slot never seen reads its whole
// partition.
//
// Thread-safe.

#include <cstdint>
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
};

// What a Take did.
struct RestoreStats {
  int64_t epoch = 0;
  // Whether the local rows were kept (a clean release by this node) or replaced.
  bool kept_local = false;
  uint64_t records = 0;
  uint64_t batches_applied = 0;
  uint64_t bytes_applied = 0;
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

  // "<prefix>__changelog".
  static std::string TopicFor(std::string_view prefix);

  struct Impl;

 private:
  explicit Changelog(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace fairway::cluster
