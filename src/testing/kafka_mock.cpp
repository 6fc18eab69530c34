#include "testing/kafka_mock.h"

#include <fmt/format.h>
#include <librdkafka/rdkafka.h>

#include <atomic>
#include <string>

namespace fairway::testing {

KafkaMockCluster::KafkaMockCluster(int brokers)
    : child_(FAIRWAY_KAFKA_MOCK_BIN, {std::to_string(brokers)}) {
  if (!child_.started()) {
    status_ = Internal(child_.error());
  } else if (!child_.ReadLine(&bootstraps_) || bootstraps_.empty()) {
    status_ = Internal(
        fmt::format("{} exited before printing its bootstrap servers", FAIRWAY_KAFKA_MOCK_BIN));
  }
}

KafkaMockCluster& KafkaMockCluster::Shared() {
  static auto* cluster = new KafkaMockCluster(3);  // never destroyed: its child dies with us
  return *cluster;
}

std::string KafkaMockCluster::FreshTopicPrefix(std::string_view stem) {
  static std::atomic<int> next{0};
  return fmt::format("{}{}.", stem, next++);
}

Status KafkaMockCluster::Command(const std::string& line) {
  if (!status_.ok()) return status_;
  std::string answer;
  if (!child_.WriteLine(line) || !child_.ReadLine(&answer)) {
    return Unavailable("the mock cluster process is gone");
  }
  if (answer == "ok") return Status::Ok();
  if (answer.starts_with("error ")) answer.erase(0, 6);
  return FailedPrecondition(fmt::format("mock cluster: '{}': {}", line, answer));
}

Result<std::map<KafkaMockCluster::TopicPartition, int64_t>> KafkaMockCluster::CommittedOffsets(
    const std::string& group, const std::vector<TopicPartition>& partitions) const {
  if (!status_.ok()) return status_;
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps_.c_str(), err, sizeof err) !=
          RD_KAFKA_CONF_OK ||
      rd_kafka_conf_set(conf, "group.id", group.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
    rd_kafka_conf_destroy(conf);
    return InvalidArgument(err);
  }
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);
    return InvalidArgument(err);
  }
  rd_kafka_topic_partition_list_t* list =
      rd_kafka_topic_partition_list_new(static_cast<int>(partitions.size()));
  for (const auto& [topic, p] : partitions)
    rd_kafka_topic_partition_list_add(list, topic.c_str(), p);
  std::map<TopicPartition, int64_t> out;
  Status st;
  if (rd_kafka_resp_err_t e = rd_kafka_committed(rk, list, 10'000);
      e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    st = Unavailable(fmt::format("offsets of group '{}': {}", group, rd_kafka_err2str(e)));
  }
  for (int i = 0; st.ok() && i < list->cnt; ++i) {
    out[{list->elems[i].topic, list->elems[i].partition}] = list->elems[i].offset;
  }
  rd_kafka_topic_partition_list_destroy(list);
  rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
  if (!st.ok()) return st;
  return out;
}

Status KafkaMockCluster::CreateTopic(const std::string& topic, int partitions, int replication) {
  return Command(fmt::format("create {} {} {}", topic, partitions, replication));
}
Status KafkaMockCluster::SetBrokerDown(int id) { return Command(fmt::format("down {}", id)); }
Status KafkaMockCluster::SetBrokerUp(int id) { return Command(fmt::format("up {}", id)); }
Status KafkaMockCluster::SetRoundTrip(int id, int ms) {
  return Command(fmt::format("rtt {} {}", id, ms));
}
Status KafkaMockCluster::SetLeader(const std::string& topic, int partition, int broker) {
  return Command(fmt::format("leader {} {} {}", topic, partition, broker));
}

}  // namespace fairway::testing
