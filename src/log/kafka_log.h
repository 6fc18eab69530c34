#pragma once
// KafkaLog: the ActivityLog on a Kafka cluster (librdkafka; its headers stay in kafka_log.cpp).
//
// Each tenant's activities go to its own topic (`<topic prefix><tenant id>`), one record per
// activity, keyed by its lead key and sent to the partition PartitionFor picks, so a lead's
// activities keep their order and Kafka's offsets are the log's offsets. The producer is
// idempotent with acks=all: an append is acknowledged once every broker replica in sync has
// every record of the request.
//
// What the broker cannot do, the node does in its own store (lead_index.h): the messageId dedup
// window (checked before sending, remembered once acknowledged) and the read-by-lead index. The
// node's newest acknowledged records are kept in memory (tail_cache.h), so consumers that keep up
// read without a fetch; other reads fetch from the partition's leader.
//
// Differences from the embedded backend, which the conformance suite states as capabilities:
// - A request that fails may have stored part of its records (Kafka without transactions cannot
//   undo them). The ones acknowledged are remembered in the dedup window, so the client's retry
//   of the request stores each activity once.
// - Retention is the broker's: topics are created with the tenant's retention.ms, and
//   ApplyRetention removes nothing.
// - Dropping a tenant deletes its topic through the admin API (when Fairway creates topics);
//   records already sent stay readable until the broker has deleted it.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/metrics.h"
#include "log/activity_log.h"
#include "storage/store.h"

namespace fairway::log {

struct KafkaLogOptions {
  // bootstrap.servers: "host:port,host:port".
  std::string brokers;
  // A tenant's topic is this prefix followed by its id.
  std::string topic_prefix = "fairway.";
  // librdkafka client properties set on every client after Fairway's own (security.protocol,
  // sasl.*, ssl.*, client.id, ...): how a cluster's security settings reach the clients.
  std::vector<std::pair<std::string, std::string>> client_properties;
  // Create missing topics through the admin API. Off: topics are provisioned by the operator
  // (the tenant's partition count), and an append to a missing one is refused naming it.
  bool create_topics = true;
  // Replication factor of created topics; -1 takes the broker's default.
  int replication_factor = -1;
  // How long the producer keeps trying to deliver a record before the append fails.
  int64_t delivery_timeout_ms = 30'000;
  // Bound of metadata, watermark and fetch calls.
  int64_t request_timeout_ms = 10'000;
  // Appends beyond this many unacknowledged events are refused with Unavailable.
  size_t max_queued_events = 500'000;
  // Memory for the newest acknowledged records, from which consumers that keep up read.
  size_t tail_cache_bytes = 64u << 20;
  // Other nodes append to the same tenants (a cluster): a layout change goes through
  // BeginLayout, FollowLayouts and SealLayout, and a tenant's appends wait while it changes.
  bool shared_appends = false;
  // The leads processor keeps the lead index of what it applies (storage::kActivityIndex, which
  // follows a tenant between a cluster's nodes): appends write no kLogLeadIndex rows, and Query
  // reads that index (activities show once processed).
  bool processed_index = false;
};

// Creates and deletes topics. KafkaLog uses the cluster's admin API unless given another (the
// test cluster, which lacks it, creates topics its own way).
class KafkaTopicAdmin {
 public:
  virtual ~KafkaTopicAdmin() = default;
  // Creates `topic` with `partitions` partitions whose records the broker keeps for
  // `retention_ms` (0: forever). AlreadyExists when it exists.
  virtual Status CreateTopic(const std::string& topic, uint32_t partitions,
                             int64_t retention_ms) = 0;
  // Deletes `topic`. NotFound when it does not exist.
  virtual Status DeleteTopic(const std::string& topic) = 0;
};

class KafkaLog final : public ActivityLog, public ActivityIndex {
 public:
  // Connects the clients (they reach the brokers lazily; a wrong address shows on first use).
  // `store` keeps the dedup window and lead index and must be opened with
  // storage::FairwayColumnFamilies(); it, `clock` and `metrics` must outlive the log. `admin`
  // (may be null) replaces the cluster's admin API for creating and deleting topics.
  // InvalidArgument names a client property librdkafka refuses.
  static Result<std::unique_ptr<KafkaLog>> Open(KafkaLogOptions options, storage::Store* store,
                                                const Clock* clock, MetricsRegistry* metrics,
                                                KafkaTopicAdmin* admin = nullptr);
  ~KafkaLog() override;

  void Start() override;
  // Waits up to the delivery timeout for every record sent; appends still unacknowledged then
  // fail with Unavailable.
  void Stop() override;

  void Append(AppendRequest request, AppendCallback done) override;
  Result<std::vector<LogEntry>> Read(const TenantId& tenant, PartitionId partition, Offset from,
                                     size_t max_records) override;
  Result<Offset> HighWatermark(const TenantId& tenant, PartitionId partition) override;
  Result<Offset> LowWatermark(const TenantId& tenant, PartitionId partition) override;
  // The broker applies the topic's retention.ms: removes nothing here and returns 0.
  Result<uint64_t> ApplyRetention(const TenantId& tenant, uint32_t partitions,
                                  int64_t cutoff_ms) override;
  Status DropTenant(const TenantId& tenant) override;
  Status ReopenTenant(const TenantId& tenant) override;
  void SetAppendListener(AppendListener listener) override;
  // Asks the brokers for the end offsets of every partition named, in one request per broker.
  Status PollForeignAppends(const std::vector<std::pair<TenantId, uint32_t>>& tenants) override;
  // A new layout is a new topic, "<topic>.<n>" for the tenant's n-th layout after its first
  // (created like the first when kafka.create_topics is on). Kafka's own partition growth is
  // not used: it would move keys between a topic's partitions under its consumers.
  Result<std::vector<uint64_t>> StartLayout(const model::TenantConfig& tenant,
                                            uint32_t count) override;
  // With shared_appends, returns the layouts as recorded and seals nothing (the node that
  // changes the count seals).
  Result<std::vector<model::PartitionLayout>> Layouts(const TenantId& tenant) override;
  Result<std::vector<model::PartitionLayout>> BeginLayout(const model::TenantConfig& tenant,
                                                          uint32_t count) override;
  Status FollowLayouts(const model::TenantConfig& tenant,
                       const std::vector<model::PartitionLayout>& layouts) override;
  Result<std::vector<model::PartitionLayout>> SealLayout(const TenantId& tenant) override;
  Result<std::vector<model::PartitionLayout>> RecordedLayouts(const TenantId& tenant) override;
  // Unavailable while no broker answers a metadata request (checked at most once a second).
  Status Health() override;

  // Commits each processor's progress as the offsets of the consumer group
  // ProgressGroupOf(processor), on the topic and topic partition of each log partition, so that
  // Kafka's consumer-lag tools (kafka-consumer-groups.sh, Burrow, a console) show how far Fairway
  // has processed. Only offsets that changed since the last call are sent. The group never has
  // members: it is for watching only (processing resumes from the node's own offsets).
  Status PublishProgress(const std::vector<ProcessingProgress>& progress) override;
  // "<topic prefix>processing.<processor>".
  std::string ProgressGroupOf(std::string_view processor) const;
  // The topic of the partition's layout and its partition there.
  std::optional<LogLocation> Locate(const TenantId& tenant, uint32_t partition) override;

  Result<ActivityPage> Query(const ActivityQuery& query) override;

  // The topic that holds `tenant`'s activities.
  std::string TopicOf(const TenantId& tenant) const;

  // Test probe: the next `n` appends fail with Unavailable before anything is sent.
  void FailNextAppends(int n);

  struct Impl;

 private:
  explicit KafkaLog(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace fairway::log
