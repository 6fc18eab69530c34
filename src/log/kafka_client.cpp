#include "log/kafka_client.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace fairway::log {

bool IsUnknownTopic(rd_kafka_resp_err_t err) {
  return err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
         err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC || err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION;
}

bool IsStaleLeader(rd_kafka_resp_err_t err) {
  return err == RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION ||
         err == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE ||
         err == RD_KAFKA_RESP_ERR_FENCED_LEADER_EPOCH ||
         err == RD_KAFKA_RESP_ERR_UNKNOWN_LEADER_EPOCH;
}

Result<rd_kafka_conf_t*> NewConf(const KafkaLogOptions& options,
                                 std::vector<std::pair<std::string, std::string>> settings) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  settings.insert(settings.begin(), {"bootstrap.servers", options.brokers});
  // Acknowledgements are small writes: Nagle's algorithm would hold them for the peer's
  // delayed ACK (tens of milliseconds on every append).
  settings.insert(settings.begin() + 1, {"socket.nagle.disable", "true"});
  settings.insert(settings.end(), options.client_properties.begin(),
                  options.client_properties.end());
  // librdkafka's own log lines go to Fairway's log.
  rd_kafka_conf_set_log_cb(conf,
                           [](const rd_kafka_t* rk, int level, const char* fac, const char* buf) {
                             const auto lvl = level <= 3   ? spdlog::level::err
                                              : level == 4 ? spdlog::level::warn
                                              : level <= 6 ? spdlog::level::info
                                                           : spdlog::level::debug;
                             spdlog::log(lvl, "kafka {} {}: {}", rd_kafka_name(rk), fac, buf);
                           });
  char err[512];
  for (const auto& [name, value] : settings) {
    if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      return InvalidArgument(fmt::format("config key 'kafka.properties': '{}': {}", name, err));
    }
  }
  return conf;
}

Result<rd_kafka_t*> NewClient(rd_kafka_type_t type, rd_kafka_conf_t* conf, std::string_view what) {
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(type, conf, err, sizeof err);
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);  // kept by rd_kafka_new only when it succeeds
    return InvalidArgument(fmt::format("Kafka client for {}: {}", what, err));
  }
  return rk;
}

namespace {

// Waits for the result of one admin call on `queue`.
Status AdminResult(rd_kafka_queue_t* queue, int64_t timeout_ms, bool create,
                   const std::string& topic) {
  rd_kafka_event_t* ev = rd_kafka_queue_poll(queue, static_cast<int>(timeout_ms + 2000));
  if (ev == nullptr) return Unavailable(fmt::format("Kafka admin call on '{}' timed out", topic));
  Status st;
  if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    st = Unavailable(
        fmt::format("Kafka admin call on '{}' failed: {}", topic, rd_kafka_event_error_string(ev)));
  } else {
    size_t n = 0;
    const rd_kafka_topic_result_t** results =
        create ? rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n)
               : rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev), &n);
    rd_kafka_resp_err_t err =
        n == 1 ? rd_kafka_topic_result_error(results[0]) : RD_KAFKA_RESP_ERR__BAD_MSG;
    if (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
      st = AlreadyExists(fmt::format("Kafka topic '{}' exists", topic));
    } else if (err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
      st = NotFound(fmt::format("Kafka topic '{}' does not exist", topic));
    } else if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      const char* why = n == 1 ? rd_kafka_topic_result_error_string(results[0]) : nullptr;
      st = Unavailable(fmt::format("Kafka admin call on '{}' failed: {}", topic,
                                   why ? why : rd_kafka_err2str(err)));
    }
  }
  rd_kafka_event_destroy(ev);
  return st;
}

}  // namespace

Status ClusterTopicAdmin::CreateTopic(const std::string& topic, uint32_t partitions,
                                      int64_t retention_ms) {
  return Create(topic, partitions, retention_ms, /*compact=*/false);
}

Status ClusterTopicAdmin::CreateCompactedTopic(const std::string& topic, uint32_t partitions) {
  return Create(topic, partitions, 0, /*compact=*/true);
}

Status ClusterTopicAdmin::Create(const std::string& topic, uint32_t partitions,
                                 int64_t retention_ms, bool compact) {
  char err[512];
  rd_kafka_NewTopic_t* nt = rd_kafka_NewTopic_new(topic.c_str(), static_cast<int>(partitions),
                                                  replication_factor_, err, sizeof err);
  if (nt == nullptr) return InvalidArgument(fmt::format("topic '{}': {}", topic, err));
  std::string retention = retention_ms > 0 ? std::to_string(retention_ms) : "-1";
  rd_kafka_NewTopic_set_config(nt, "retention.ms", retention.c_str());
  if (compact) rd_kafka_NewTopic_set_config(nt, "cleanup.policy", "compact");
  rd_kafka_queue_t* queue = rd_kafka_queue_new(rk_);
  rd_kafka_AdminOptions_t* opts = rd_kafka_AdminOptions_new(rk_, RD_KAFKA_ADMIN_OP_CREATETOPICS);
  rd_kafka_AdminOptions_set_request_timeout(opts, static_cast<int>(timeout_ms_), err, sizeof err);
  rd_kafka_CreateTopics(rk_, &nt, 1, opts, queue);
  Status st = AdminResult(queue, timeout_ms_, /*create=*/true, topic);
  rd_kafka_AdminOptions_destroy(opts);
  rd_kafka_NewTopic_destroy(nt);
  rd_kafka_queue_destroy(queue);
  return st;
}

Status ClusterTopicAdmin::DeleteTopic(const std::string& topic) {
  char err[512];
  rd_kafka_DeleteTopic_t* dt = rd_kafka_DeleteTopic_new(topic.c_str());
  rd_kafka_queue_t* queue = rd_kafka_queue_new(rk_);
  rd_kafka_AdminOptions_t* opts = rd_kafka_AdminOptions_new(rk_, RD_KAFKA_ADMIN_OP_DELETETOPICS);
  rd_kafka_AdminOptions_set_request_timeout(opts, static_cast<int>(timeout_ms_), err, sizeof err);
  rd_kafka_DeleteTopics(rk_, &dt, 1, opts, queue);
  Status st = AdminResult(queue, timeout_ms_, /*create=*/false, topic);
  rd_kafka_AdminOptions_destroy(opts);
  rd_kafka_DeleteTopic_destroy(dt);
  rd_kafka_queue_destroy(queue);
  return st;
}

namespace {

// The partition count of `topic`, 0 when it does not exist. Asks for every topic's metadata: a
// request naming the topic would have a broker with automatic creation create it with the
// broker's default count.
Result<uint32_t> TopicPartitions(rd_kafka_t* rk, const std::string& topic, int64_t timeout_ms) {
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, nullptr, &md, static_cast<int>(timeout_ms));
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Unavailable(
        fmt::format("reading metadata of Kafka topic '{}': {}", topic, rd_kafka_err2str(err)));
  }
  uint32_t n = 0;
  rd_kafka_resp_err_t topic_err = RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
  for (int i = 0; i < md->topic_cnt; ++i) {
    if (topic != md->topics[i].topic) continue;
    topic_err = md->topics[i].err;
    n = static_cast<uint32_t>(md->topics[i].partition_cnt);
  }
  rd_kafka_metadata_destroy(md);
  if (IsUnknownTopic(topic_err)) return 0u;
  if (topic_err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Unavailable(fmt::format("reading metadata of Kafka topic '{}': {}", topic,
                                   rd_kafka_err2str(topic_err)));
  }
  return n;
}

}  // namespace

Status CommitGroupOffsets(rd_kafka_t* client, const std::string& group,
                          rd_kafka_topic_partition_list_t* offsets, int64_t timeout_ms,
                          rd_kafka_topic_partition_list_t** committed) {
  rd_kafka_queue_t* queue = rd_kafka_queue_new(client);
  rd_kafka_resp_err_t err = rd_kafka_commit_queue(client, offsets, queue, nullptr, nullptr);
  Status st;
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    st = Unavailable(fmt::format("committing the offsets of Kafka consumer group '{}': {}", group,
                                 rd_kafka_err2str(err)));
  } else if (rd_kafka_event_t* ev = rd_kafka_queue_poll(queue, static_cast<int>(timeout_ms));
             ev == nullptr) {
    st = Unavailable(
        fmt::format("committing the offsets of Kafka consumer group '{}' timed out", group));
  } else {
    if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      st = Unavailable(fmt::format("committing the offsets of Kafka consumer group '{}': {}", group,
                                   rd_kafka_event_error_string(ev)));
    }
    // Per partition: the ones Kafka took; an unknown topic is not an error here. A request
    // that failed as a whole leaves the partitions' own errors unset: none was taken.
    const rd_kafka_resp_err_t request_err = rd_kafka_event_error(ev);
    const rd_kafka_topic_partition_list_t* answered = request_err == RD_KAFKA_RESP_ERR_NO_ERROR
                                                          ? rd_kafka_event_topic_partition_list(ev)
                                                          : nullptr;
    *committed = rd_kafka_topic_partition_list_new(answered ? answered->cnt : 0);
    for (int i = 0; answered && i < answered->cnt; ++i) {
      const rd_kafka_topic_partition_t& tp = answered->elems[i];
      if (tp.err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_topic_partition_list_add(*committed, tp.topic, tp.partition)->offset = tp.offset;
      } else if (!IsUnknownTopic(tp.err) && st.ok()) {
        st = Unavailable(fmt::format("committing the offset of '{}' [{}] for group '{}': {}",
                                     tp.topic, tp.partition, group, rd_kafka_err2str(tp.err)));
      }
    }
    if (IsUnknownTopic(rd_kafka_event_error(ev))) st = Status::Ok();
    rd_kafka_event_destroy(ev);
  }
  rd_kafka_queue_destroy(queue);
  return st;
}

Status EnsureTopic(rd_kafka_t* rk, const KafkaLogOptions& options, const std::string& topic,
                   uint32_t partitions, std::string_view count_key, bool compacted) {
  FAIRWAY_ASSIGN_OR_RETURN(uint32_t have, TopicPartitions(rk, topic, options.request_timeout_ms));
  if (have == 0) {
    if (!options.create_topics) {
      return FailedPrecondition(
          fmt::format("Kafka topic '{}' does not exist: create it with {} partitions ({}), or turn "
                      "kafka.create_topics on",
                      topic, partitions, count_key));
    }
    ClusterTopicAdmin admin(rk, options.replication_factor, options.request_timeout_ms);
    Status st = compacted ? admin.CreateCompactedTopic(topic, partitions)
                          : admin.CreateTopic(topic, partitions, 0);
    if (!st.ok() && st.code() != StatusCode::kAlreadyExists) return st;
    FAIRWAY_ASSIGN_OR_RETURN(have, TopicPartitions(rk, topic, options.request_timeout_ms));
  }
  if (have != partitions) {
    return FailedPrecondition(
        fmt::format("Kafka topic '{}' has {} partitions but {} is {}: every node of a cluster "
                    "must use the topic's count",
                    topic, have, count_key, partitions));
  }
  return Status::Ok();
}

}  // namespace fairway::log
