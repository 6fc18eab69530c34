#pragma once
// KafkaMockCluster: a librdkafka mock Kafka cluster in a child process (fairway_kafka_mock),
// reached over loopback TCP like a real cluster, for tests of the Kafka backend and of several
// `fairway serve` processes. The child dies with the test process (PR_SET_PDEATHSIG) and is
// stopped and reaped by the destructor.
//
// What the mock lacks (transactions, CreateTopics, more than a few MB per partition) is listed
// in docs/distributed.md; tests create topics through CreateTopic.

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "testing/child_process.h"

namespace fairway::testing {

class KafkaMockCluster {
 public:
  // Starts a cluster of `brokers` brokers (ids 1..brokers). Check status() afterwards. The
  // process is killed when this object goes.
  explicit KafkaMockCluster(int brokers = 3);
  KafkaMockCluster(const KafkaMockCluster&) = delete;
  KafkaMockCluster& operator=(const KafkaMockCluster&) = delete;

  // OK once the cluster is up; otherwise why it is not.
  const Status& status() const { return status_; }
  // The `bootstrap.servers` list of the cluster ("127.0.0.1:port,...").
  const std::string& bootstrap_servers() const { return bootstraps_; }

  Status CreateTopic(const std::string& topic, int partitions, int replication = 3);
  // Stops (or resumes) accepting and serving connections of broker `id`. Leadership does not
  // move by itself: see SetLeader.
  Status SetBrokerDown(int id);
  Status SetBrokerUp(int id);
  Status SetLeader(const std::string& topic, int partition, int broker);
  // Delays broker `id`'s answers by `ms` (-1: every broker); its requests take effect at once,
  // so a produce is stored while its acknowledgement is late.
  Status SetRoundTrip(int id, int ms);

  // The offsets consumer group `group` has committed for each (topic, partition), as Kafka's
  // consumer-lag tools read them (over the Kafka protocol); kNoOffset where it has none.
  using TopicPartition = std::pair<std::string, int>;
  static constexpr int64_t kNoOffset = -1001;
  Result<std::map<TopicPartition, int64_t>> CommittedOffsets(
      const std::string& group, const std::vector<TopicPartition>& partitions) const;

  // Sends one command line of fairway_kafka_mock and returns its answer as a Status.
  Status Command(const std::string& line);

  // One three-broker cluster for a whole test binary (starting one takes a moment): its tests
  // keep apart by topic prefix (FreshTopicPrefix).
  static KafkaMockCluster& Shared();
  // A topic prefix no other caller in this process got: `stem` followed by a number and '.'.
  static std::string FreshTopicPrefix(std::string_view stem);

 private:
  ChildProcess child_;
  std::string bootstraps_;
  Status status_;
};

}  // namespace fairway::testing
