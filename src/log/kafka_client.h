#pragma once
// What Fairway's Kafka clients share: a client configuration built from KafkaLogOptions, the
// classes of broker errors the clients handle alike, and the cluster's admin API. Includes
// librdkafka's header: only the .cpp files that talk to Kafka include this one.

#include <librdkafka/rdkafka.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "log/kafka_log.h"

namespace fairway::log {

bool IsUnknownTopic(rd_kafka_resp_err_t err);

// The client's view of a partition's leader is out of date (an election moved it).
bool IsStaleLeader(rd_kafka_resp_err_t err);

// A client configuration: bootstrap.servers and Fairway's `settings`, then the operator's
// client properties (options.client_properties); librdkafka's log lines go to Fairway's log.
// InvalidArgument names a property librdkafka refuses.
Result<rd_kafka_conf_t*> NewConf(const KafkaLogOptions& options,
                                 std::vector<std::pair<std::string, std::string>> settings);

// A client of `type` with `conf`, which it takes (destroyed when the client cannot be made).
// InvalidArgument names `what` and librdkafka's reason.
Result<rd_kafka_t*> NewClient(rd_kafka_type_t type, rd_kafka_conf_t* conf, std::string_view what);

// The cluster's admin API (CreateTopics, DeleteTopics) through the client `rk` (not owned).
class ClusterTopicAdmin final : public KafkaTopicAdmin {
 public:
  ClusterTopicAdmin(rd_kafka_t* rk, int replication_factor, int64_t timeout_ms)
      : rk_(rk), replication_factor_(replication_factor), timeout_ms_(timeout_ms) {}

  Status CreateTopic(const std::string& topic, uint32_t partitions, int64_t retention_ms) override;
  // The same, with cleanup.policy=compact: Kafka keeps each key's latest record.
  Status CreateCompactedTopic(const std::string& topic, uint32_t partitions);
  Status DeleteTopic(const std::string& topic) override;

 private:
  Status Create(const std::string& topic, uint32_t partitions, int64_t retention_ms, bool compact);

  rd_kafka_t* rk_;
  int replication_factor_;
  int64_t timeout_ms_;
};

// Commits `offsets` as the offsets of the consumer group `group` through `client` (a consumer
// with that group.id and no subscription), waiting up to `timeout_ms`. The partitions Kafka
// took go to `*committed` (the caller destroys it; set unless the request failed as a whole);
// a partition of a topic Kafka does not know is left out, not an error. Unavailable names the
// group and Kafka's reason.
Status CommitGroupOffsets(rd_kafka_t* client, const std::string& group,
                          rd_kafka_topic_partition_list_t* offsets, int64_t timeout_ms,
                          rd_kafka_topic_partition_list_t** committed);

// Makes sure `topic` exists with `partitions` partitions, through the client `rk`: creates it
// (unlimited retention; compacted with `compacted`) when it is missing and
// options.create_topics is on. FailedPrecondition says what differs, naming the config key
// `count_key` that sets the count.
Status EnsureTopic(rd_kafka_t* rk, const KafkaLogOptions& options, const std::string& topic,
                   uint32_t partitions, std::string_view count_key, bool compacted = false);

}  // namespace fairway::log
