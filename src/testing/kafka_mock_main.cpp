// fairway_kafka_mock: hosts librdkafka's mock Kafka cluster (it speaks the Kafka protocol on
// loopback TCP) for tests of the Kafka backend and of clusters of `fairway serve` processes.
//
//   fairway_kafka_mock [BROKERS]        (default 3 brokers, ids 1..BROKERS)
//
// Prints the cluster's bootstrap servers as its first stdout line, then answers one line per
// command read from stdin ("ok", or "error <reason>"), and exits when stdin closes:
//   create TOPIC PARTITIONS REPLICATION   creates a topic (the mock has no CreateTopics)
//   down BROKER | up BROKER               stops or resumes a broker's connections
//   leader TOPIC PARTITION BROKER         moves a partition's leadership
//   rtt BROKER MS                         delays a broker's answers (requests still take
//                                         effect at once: a produce is stored, its answer late)
// Test support only: never linked into the server.

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <charconv>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>

namespace {

// Parses a whole decimal int32; false for anything else.
bool ParseInt(const std::string& s, int32_t* out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && end == s.data() + s.size();
}

std::string Answer(rd_kafka_resp_err_t err) {
  return err == RD_KAFKA_RESP_ERR_NO_ERROR ? "ok" : std::string("error ") + rd_kafka_err2str(err);
}

std::string Run(rd_kafka_mock_cluster_t* cluster, const std::string& line) {
  std::istringstream in(line);
  std::string cmd, a, b, c, extra;
  in >> cmd >> a >> b >> c >> extra;
  int32_t x = 0, y = 0;
  if (cmd == "create") {
    if (a.empty() || !ParseInt(b, &x) || x < 1 || !ParseInt(c, &y) || y < 1 || !extra.empty()) {
      return "error usage: create TOPIC PARTITIONS REPLICATION (both at least 1)";
    }
    return Answer(rd_kafka_mock_topic_create(cluster, a.c_str(), x, y));
  }
  if (cmd == "down" || cmd == "up") {
    if (!ParseInt(a, &x) || !b.empty()) return "error usage: " + cmd + " BROKER";
    return Answer(cmd == "down" ? rd_kafka_mock_broker_set_down(cluster, x)
                                : rd_kafka_mock_broker_set_up(cluster, x));
  }
  if (cmd == "leader") {
    if (a.empty() || !ParseInt(b, &x) || !ParseInt(c, &y) || !extra.empty()) {
      return "error usage: leader TOPIC PARTITION BROKER";
    }
    return Answer(rd_kafka_mock_partition_set_leader(cluster, a.c_str(), x, y));
  }
  if (cmd == "rtt") {
    if (!ParseInt(a, &x) || !ParseInt(b, &y) || y < 0 || !c.empty()) {
      return "error usage: rtt BROKER MS";
    }
    return Answer(rd_kafka_mock_broker_set_rtt(cluster, x, y));
  }
  return "error unknown command '" + cmd + "' (create, down, up, leader, rtt)";
}

}  // namespace

int main(int argc, char** argv) {
  int32_t brokers = 3;
  if (argc > 2 || (argc == 2 && (!ParseInt(argv[1], &brokers) || brokers < 1 || brokers > 16))) {
    std::cerr << "usage: fairway_kafka_mock [BROKERS (1-16)]\n";
    return 2;
  }
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  // The brokers' sockets take the handle's settings: without TCP_NODELAY each answer waits for
  // the client's delayed ACK (about 40 ms a request), which a real broker never does.
  if (rd_kafka_conf_set(conf, "socket.nagle.disable", "true", errstr, sizeof errstr) !=
      RD_KAFKA_CONF_OK) {
    std::cerr << "fairway_kafka_mock: " << errstr << "\n";
    return 1;
  }
  // The handle only keeps the cluster's books; it never connects anywhere.
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (rk == nullptr) {
    std::cerr << "fairway_kafka_mock: " << errstr << "\n";
    return 1;
  }
  rd_kafka_mock_cluster_t* cluster = rd_kafka_mock_cluster_new(rk, brokers);
  if (cluster == nullptr) {
    std::cerr << "fairway_kafka_mock: could not start the mock cluster\n";
    rd_kafka_destroy(rk);
    return 1;
  }
  std::cout << rd_kafka_mock_cluster_bootstraps(cluster) << std::endl;
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    std::cout << Run(cluster, line) << std::endl;
  }
  rd_kafka_mock_cluster_destroy(cluster);
  rd_kafka_destroy(rk);
  return 0;
}
