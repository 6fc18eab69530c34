#include "testing/kafka_mock.h"

#include <fmt/format.h>

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

Status KafkaMockCluster::CreateTopic(const std::string& topic, int partitions, int replication) {
  return Command(fmt::format("create {} {} {}", topic, partitions, replication));
}
Status KafkaMockCluster::SetBrokerDown(int id) { return Command(fmt::format("down {}", id)); }
Status KafkaMockCluster::SetBrokerUp(int id) { return Command(fmt::format("up {}", id)); }
Status KafkaMockCluster::SetLeader(const std::string& topic, int partition, int broker) {
  return Command(fmt::format("leader {} {} {}", topic, partition, broker));
}

}  // namespace fairway::testing
