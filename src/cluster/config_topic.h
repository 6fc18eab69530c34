#pragma once
// ConfigTopic: how the nodes of a cluster share tenants. The compacted topic
// `<prefix>__config` (one partition) holds each tenant's stored configuration keyed by its id,
// and a tombstone once it is gone. A node records its tenant changes there before storing them
// (TenantRegistry's journal), and follows the topic, applying every node's changes to its own
// registry in topic order: the last change recorded wins, on every node alike. Each node
// remembers how far it has read (column family cluster_meta), so a restart reads on from there,
// and the slot owner records it has read.
//
// Thread-safe.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/ids.h"
#include "common/status.h"
#include "log/kafka_log.h"
#include "storage/store.h"
#include "tenancy/tenant_registry.h"

namespace fairway::cluster {

class ConfigTopic final : public tenancy::ConfigJournal {
 public:
  // Told of each change applied to the registry (on the follower's thread, in topic order).
  using ChangeListener =
      std::function<void(const TenantId& tenant, const tenancy::JournaledChange& change)>;

  // Creates the topic when it is missing and kafka.create_topics is on. `local` keeps the
  // follower's position; it and `registry` must outlive the topic.
  static Result<std::unique_ptr<ConfigTopic>> Open(const log::KafkaLogOptions& kafka,
                                                   storage::Store* local,
                                                   tenancy::TenantRegistry* registry);
  ~ConfigTopic() override;

  Result<int64_t> Record(const TenantId& id, const std::optional<std::string>& stored) override;

  // Who processes each slot, for forwarding requests: a record keyed "slot/<n>" (no tenant id
  // has a '/') whose value the owner chooses (ClusterNode: its node id, address and epoch).
  Status PublishSlotOwner(uint32_t slot, const std::string& value);
  // Told of every slot owner record read, in topic order. Requires: before Follow.
  using SlotOwnerListener = std::function<void(uint32_t slot, std::string_view value)>;
  void SetSlotOwnerListener(SlotOwnerListener listener);

  // Notes the nodes send each other, keyed "<kind>/<name>" (ClusterNode: partition layout
  // changes and their acknowledgements). A node hears of the notes after its position only.
  using NoteListener =
      std::function<void(std::string_view name, std::string_view value, int64_t offset)>;
  // Requires: before Follow; `kind` has no '/' and is not "slot".
  void SetNoteListener(std::string kind, NoteListener listener);
  // Produces a note and waits for its acknowledgement; its offset.
  Result<int64_t> PublishNote(std::string_view kind, std::string_view name,
                              const std::string& value);

  // Starts applying the topic's records after this node's position to the registry and returns
  // once every record there at the call is applied (Unavailable if that takes longer than
  // `timeout`). Call once.
  Status Follow(ChangeListener listener, std::chrono::milliseconds timeout);
  // The position up to which this node has applied the topic.
  int64_t Applied() const;

  static std::string TopicFor(std::string_view prefix);

  struct Impl;

 private:
  explicit ConfigTopic(std::unique_ptr<Impl> impl);
  // Produces one record and waits for its acknowledgement; its offset.
  Result<int64_t> Produce(const std::string& key, const std::optional<std::string>& value);
  std::unique_ptr<Impl> impl_;
};

}  // namespace fairway::cluster
