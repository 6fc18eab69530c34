#include "testing/kafka_mock.h"

#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

#include <chrono>
#include <functional>
#include <initializer_list>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "testing/status_matchers.h"

namespace fairway::testing {
namespace {

using ::testing::HasSubstr;

// Counts delivery reports of a producer (its opaque is a Deliveries).
struct Deliveries {
  int ok = 0;
  int failed = 0;
  std::string last_error;
};

void OnDelivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
  auto* d = static_cast<Deliveries*>(opaque);
  if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    ++d->ok;
  } else {
    ++d->failed;
    d->last_error = rd_kafka_err2str(m->err);
  }
}

// A client configuration for the mock cluster with `settings` (each must be accepted).
rd_kafka_conf_t* ClientConf(const KafkaMockCluster& cluster,
                            std::initializer_list<std::pair<const char*, std::string>> settings) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  EXPECT_EQ(rd_kafka_conf_set(conf, "bootstrap.servers", cluster.bootstrap_servers().c_str(), err,
                              sizeof err),
            RD_KAFKA_CONF_OK)
      << err;
  for (const auto& [name, value] : settings) {
    EXPECT_EQ(rd_kafka_conf_set(conf, name, value.c_str(), err, sizeof err), RD_KAFKA_CONF_OK)
        << name << ": " << err;
  }
  return conf;
}

// An idempotent producer with acks=all, as Fairway's ingest uses, on the mock cluster.
rd_kafka_t* NewProducer(const KafkaMockCluster& cluster, Deliveries* deliveries,
                        const char* message_timeout_ms = "30000") {
  // Reconnects quickly once a broker is back (the default backs off up to 10 s).
  rd_kafka_conf_t* conf = ClientConf(cluster, {{"enable.idempotence", "true"},
                                               {"acks", "all"},
                                               {"message.timeout.ms", message_timeout_ms},
                                               {"reconnect.backoff.ms", "10"},
                                               {"reconnect.backoff.max.ms", "100"}});
  rd_kafka_conf_set_dr_msg_cb(conf, OnDelivery);
  rd_kafka_conf_set_opaque(conf, deliveries);
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  EXPECT_NE(rk, nullptr) << err;
  return rk;
}

rd_kafka_resp_err_t Produce(rd_kafka_t* rk, const std::string& topic, const std::string& key,
                            const std::string& value) {
  return rd_kafka_producev(
      rk, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
      RD_KAFKA_V_KEY(key.data(), key.size()),
      RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()), RD_KAFKA_V_END);
}

// Reads `want` messages of `topic`'s partitions [0, partitions) from the start, or what arrives
// within 30 s. Returns key -> values in the order read, and each message's (partition, offset).
struct Consumed {
  std::map<std::string, std::vector<std::string>> by_key;
  std::map<int32_t, std::vector<int64_t>> offsets;
  int count = 0;
};
Consumed ConsumeFromStart(const KafkaMockCluster& cluster, const std::string& topic, int partitions,
                          int want) {
  rd_kafka_conf_t* conf =
      ClientConf(cluster, {{"group.id", "kafka-mock-test"}, {"enable.auto.commit", "false"}});
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  EXPECT_NE(rk, nullptr) << err;
  Consumed out;
  if (rk == nullptr) return out;
  rd_kafka_poll_set_consumer(rk);
  rd_kafka_topic_partition_list_t* parts = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p) {
    rd_kafka_topic_partition_list_add(parts, topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
  }
  EXPECT_EQ(rd_kafka_assign(rk, parts), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_topic_partition_list_destroy(parts);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (out.count < want && std::chrono::steady_clock::now() < deadline) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 100);
    if (m == nullptr) continue;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      std::string key(static_cast<const char*>(m->key), m->key_len);
      out.by_key[key].emplace_back(static_cast<const char*>(m->payload), m->len);
      out.offsets[m->partition].push_back(m->offset);
      ++out.count;
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return out;
}

// The helper process hosts a real Kafka protocol endpoint: an idempotent acks=all producer and a
// consumer in this process reach it over TCP, every message arrives once, each partition's
// offsets are contiguous from 0 and each key's messages keep their order.
TEST(KafkaMockClusterTest, ProducesAndConsumesOverTcpWithPerKeyOrder) {
  KafkaMockCluster cluster(3);
  ASSERT_OK(cluster.status());
  EXPECT_THAT(cluster.bootstrap_servers(), HasSubstr("127.0.0.1:"));
  ASSERT_OK(cluster.CreateTopic("acme", 4, 3));
  Deliveries deliveries;
  rd_kafka_t* producer = NewProducer(cluster, &deliveries);
  ASSERT_NE(producer, nullptr);
  constexpr int kLeads = 10, kPerLead = 20;
  for (int i = 0; i < kPerLead; ++i) {
    for (int lead = 0; lead < kLeads; ++lead) {
      ASSERT_EQ(Produce(producer, "acme", "lead" + std::to_string(lead), std::to_string(i)),
                RD_KAFKA_RESP_ERR_NO_ERROR);
    }
  }
  EXPECT_EQ(rd_kafka_flush(producer, 30'000), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_destroy(producer);
  EXPECT_EQ(deliveries.ok, kLeads * kPerLead) << deliveries.last_error;
  EXPECT_EQ(deliveries.failed, 0);

  Consumed got = ConsumeFromStart(cluster, "acme", 4, kLeads * kPerLead);
  ASSERT_EQ(got.count, kLeads * kPerLead);
  for (const auto& [key, values] : got.by_key) {
    ASSERT_EQ(values.size(), size_t{kPerLead}) << key;
    for (int i = 0; i < kPerLead; ++i) EXPECT_EQ(values[i], std::to_string(i)) << key;
  }
  for (const auto& [partition, offsets] : got.offsets) {
    for (size_t i = 0; i < offsets.size(); ++i) EXPECT_EQ(offsets[i], int64_t(i)) << partition;
  }
}

// Faults are real: with every broker down a produce times out, and after they come back (with the
// partition's leadership moved to another broker) the same producer delivers again. Bad commands
// are refused with the reason.
TEST(KafkaMockClusterTest, BrokersGoDownAndComeBackAndBadCommandsAreRefused) {
  KafkaMockCluster cluster(3);
  ASSERT_OK(cluster.status());
  ASSERT_OK(cluster.CreateTopic("acme", 1, 3));
  EXPECT_THAT(cluster.Command("explode"),
              StatusIs(StatusCode::kFailedPrecondition, HasSubstr("unknown command 'explode'")));
  EXPECT_THAT(cluster.CreateTopic("zero", 0, 1),
              StatusIs(StatusCode::kFailedPrecondition, HasSubstr("PARTITIONS")));
  EXPECT_THAT(cluster.Command("down one"),
              StatusIs(StatusCode::kFailedPrecondition, HasSubstr("usage: down BROKER")));

  Deliveries deliveries;
  rd_kafka_t* producer = NewProducer(cluster, &deliveries, "3000");
  ASSERT_NE(producer, nullptr);
  ASSERT_EQ(Produce(producer, "acme", "k", "before"), RD_KAFKA_RESP_ERR_NO_ERROR);
  EXPECT_EQ(rd_kafka_flush(producer, 10'000), RD_KAFKA_RESP_ERR_NO_ERROR);
  EXPECT_EQ(deliveries.ok, 1) << deliveries.last_error;

  ASSERT_OK(cluster.SetBrokerDown(-1));  // -1: every broker
  ASSERT_EQ(Produce(producer, "acme", "k", "lost"), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_flush(producer, 10'000);  // the message times out after 3 s
  EXPECT_EQ(deliveries.failed, 1);

  ASSERT_OK(cluster.SetBrokerUp(-1));
  ASSERT_OK(cluster.SetLeader("acme", 0, 2));  // and the partition's leadership moves
  EXPECT_THAT(cluster.SetLeader("acme", 0, 0), StatusIs(StatusCode::kFailedPrecondition));
  ASSERT_EQ(Produce(producer, "acme", "k", "after"), RD_KAFKA_RESP_ERR_NO_ERROR);
  EXPECT_EQ(rd_kafka_flush(producer, 30'000), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_destroy(producer);
  EXPECT_EQ(deliveries.ok, 2) << deliveries.last_error;

  Consumed got = ConsumeFromStart(cluster, "acme", 1, 2);
  EXPECT_EQ(got.by_key["k"], (std::vector<std::string>{"before", "after"}));
}

// A consumer-group member with the cooperative-sticky strategy (how processing nodes will share
// tasks): its rebalance callback applies incremental assignments. Its opaque is an int counting
// the partitions taken from the member.
void OnRebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                 rd_kafka_topic_partition_list_t* partitions, void* revoked) {
  if (err != RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) *static_cast<int*>(revoked) += partitions->cnt;
  const bool cooperative = std::string(rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE";
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    if (cooperative) {
      rd_kafka_error_t* e = rd_kafka_incremental_assign(rk, partitions);
      if (e != nullptr) rd_kafka_error_destroy(e);
    } else {
      rd_kafka_assign(rk, partitions);
    }
  } else if (cooperative) {
    rd_kafka_error_t* e = rd_kafka_incremental_unassign(rk, partitions);
    if (e != nullptr) rd_kafka_error_destroy(e);
  } else {
    rd_kafka_assign(rk, nullptr);
  }
}

rd_kafka_t* NewGroupMember(const KafkaMockCluster& cluster, const std::string& topic,
                           int* revoked) {
  rd_kafka_conf_t* conf =
      ClientConf(cluster, {{"group.id", "nodes"},
                           {"partition.assignment.strategy", "cooperative-sticky"},
                           {"session.timeout.ms", "6000"},
                           {"heartbeat.interval.ms", "300"}});
  rd_kafka_conf_set_rebalance_cb(conf, OnRebalance);
  rd_kafka_conf_set_opaque(conf, revoked);
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  EXPECT_NE(rk, nullptr) << err;
  if (rk == nullptr) return nullptr;
  rd_kafka_poll_set_consumer(rk);
  rd_kafka_topic_partition_list_t* topics = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(topics, topic.c_str(), RD_KAFKA_PARTITION_UA);
  EXPECT_EQ(rd_kafka_subscribe(rk, topics), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_topic_partition_list_destroy(topics);
  return rk;
}

// The partitions a member holds now.
std::set<int32_t> Assigned(rd_kafka_t* rk) {
  std::set<int32_t> out;
  rd_kafka_topic_partition_list_t* list = nullptr;
  if (rd_kafka_assignment(rk, &list) == RD_KAFKA_RESP_ERR_NO_ERROR && list != nullptr) {
    for (int i = 0; i < list->cnt; ++i) out.insert(list->elems[i].partition);
    rd_kafka_topic_partition_list_destroy(list);
  }
  return out;
}

// Polls every member until `done` holds, or 60 s pass. Returns whether it held.
bool PollUntil(const std::vector<rd_kafka_t*>& members, const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    for (rd_kafka_t* rk : members) {
      if (rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 50)) rd_kafka_message_destroy(m);
    }
    if (done()) return true;
  }
  return false;
}

// Consumer groups work on the mock as the distributed mode needs them: one member takes every
// partition, a second member joining takes half without the first giving up the rest
// (cooperative-sticky: only the two that move are revoked), and when the second leaves its
// partitions go back to the first.
TEST(KafkaMockClusterTest, AGroupSharesPartitionsAndHandsThemBackWhenAMemberLeaves) {
  KafkaMockCluster cluster(3);
  ASSERT_OK(cluster.status());
  ASSERT_OK(cluster.CreateTopic("tasks", 4, 3));
  const std::set<int32_t> all = {0, 1, 2, 3};
  int a_revoked = 0, b_revoked = 0;
  rd_kafka_t* a = NewGroupMember(cluster, "tasks", &a_revoked);
  ASSERT_NE(a, nullptr);
  ASSERT_TRUE(PollUntil({a}, [&] { return Assigned(a) == all; })) << "a never got every partition";

  rd_kafka_t* b = NewGroupMember(cluster, "tasks", &b_revoked);
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(PollUntil({a, b}, [&] {
    auto pa = Assigned(a), pb = Assigned(b);
    if (pa.size() != 2 || pb.size() != 2) return false;
    std::set<int32_t> both = pa;
    both.insert(pb.begin(), pb.end());
    return both == all;
  })) << "the partitions were not split 2 and 2";
  EXPECT_EQ(a_revoked, 2) << "an eager rebalance would have taken all four from a";

  rd_kafka_consumer_close(b);  // leaves the group
  rd_kafka_destroy(b);
  EXPECT_TRUE(PollUntil({a}, [&] { return Assigned(a) == all; }))
      << "a did not take the partitions back";
  rd_kafka_consumer_close(a);
  rd_kafka_destroy(a);
}

}  // namespace
}  // namespace fairway::testing
