// A tenant's partitions go from 4 to 8 while clients send: the real binary, on the embedded
// backend and on a mock Kafka cluster of three brokers reached over TCP. Each client sends its
// leads' activities in sequence (one request at a time, each lead's event times counting up with
// its sequence numbers), and the partition count changes in the middle. Afterwards every
// activity is stored once and processed once, and no lead's activity was processed after a
// later one of the same lead (the leads processor counts such late activities).

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "http/tests/test_client.h"
#include "testing/kafka_mock.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"
#include "tests/e2e.h"
#include "tests/processing_status.h"
#include "tests/server_process.h"

namespace fairway::e2e {
namespace {

using ::fairway::testing::KafkaMockCluster;

constexpr int kClients = 4;
constexpr int kLeadsPerClient = 6;
constexpr int kPerRequest = 5;

std::string Lead(int client, int lead) { return fmt::format("c{}-l{}", client, lead); }

// Event time of a lead's `seq`-th activity: one second apart.
std::string EventTime(int seq) {
  return fmt::format("2026-01-01T{:02}:{:02}:{:02}Z", seq / 3600, seq / 60 % 60, seq % 60);
}

class E2ePartitionsTest : public ::testing::TestWithParam<std::string> {};

TEST_P(E2ePartitionsTest, FourToEightPartitionsUnderLoadKeepEveryLeadsOrderAndLoseNothing) {
  const bool on_kafka = GetParam() == "kafka";
  std::unique_ptr<KafkaMockCluster> kafka;
  TempDir dir;
  ServerProcess server(FAIRWAY_BINARY, dir.Sub("data"), kToken);
  if (on_kafka) {
    kafka = std::make_unique<KafkaMockCluster>(3);
    ASSERT_OK(kafka->status());
    // The operator creates the topics (the mock has no CreateTopics): the tenant's, and the one
    // of its second layout, "<topic>.1".
    ASSERT_OK(kafka->CreateTopic("fairway.acme", 4, 3));
    ASSERT_OK(kafka->CreateTopic("fairway.acme.1", 8, 3));
    server.UseKafka(kafka->bootstrap_servers());
    server.SetEnv("FAIRWAY_KAFKA_PROGRESS_INTERVAL_MS", "200");
  }
  // A small read-ahead: the backlog stays in the log rather than in the engine's memory, so
  // the new layout's partitions are read while older activities of the same leads wait there.
  server.SetEnv("FAIRWAY_ENGINE_STREAM_BUFFER_KB", "16");
  server.SetLogFile(dir.Sub("server.log"));
  server.Start();
  std::string write_key, api_key;
  {
    TestClient admin(server.url());
    auto r = admin.Request(
        "POST", "/admin/v1/tenants",
        R"({"id":"acme","partitions":4,"quotas":{"ingest_rate":1e9,"ingest_burst":1e9,)"
        R"("processing_rate":2000}})",
        {BearerAuth(kToken)});
    ASSERT_EQ(r.status, 201) << r.body;
    auto j = json::parse(r.body);
    write_key = j["write_key"];
    api_key = j["api_key"];
  }

  // Processing is held to 2,000 activities a second, below what the clients send, so the old
  // layout still has a backlog when the count changes. Each client sends its leads' next
  // activities in turn, one acknowledged request at a time, until told to stop: appends are in
  // flight when the partition count changes.
  std::atomic<int> acknowledged{0};
  std::atomic<bool> stop{false};
  std::vector<std::vector<int>> sent(kClients, std::vector<int>(kLeadsPerClient, 0));
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      TestClient client(server.url());
      for (int i = 0; !stop; ++i) {
        const int l = i % kLeadsPerClient;
        int& seq = sent[c][l];
        std::string body = R"({"batch":[)";
        for (int e = 0; e < kPerRequest; ++e) {
          if (e) body += ",";
          body +=
              fmt::format(R"({{"type":"track","event":"Step","userId":"{}","messageId":"{}-{}",)"
                          R"("timestamp":"{}","properties":{{"seq":{}}}}})",
                          Lead(c, l), Lead(c, l), seq + e, EventTime(seq + e), seq + e);
        }
        body += "]}";
        auto r = client.Request("POST", "/v1/batch", body, {BasicAuth(write_key)});
        ASSERT_EQ(r.status, 200) << r.body;
        seq += kPerRequest;
        ++acknowledged;
      }
    });
  }
  auto wait_acks = [&](int n) { WaitAcknowledged(acknowledged, n); };
  wait_acks(150);
  // The test is only a test while the old layout has a backlog when the count changes.
  json before = LeadsStatus(server.url(), kToken);
  ASSERT_EQ(before["partitions"].size(), 4u) << before.dump();
  EXPECT_GT(before["lag_events"].get<uint64_t>(), 0u) << "processing kept up: nothing to order";
  auto changed = ChangeAcmeFromFourToEightPartitions(server.url(), kToken);
  ASSERT_TRUE(changed.has_value());
  const uint64_t sealed_records = *changed;
  wait_acks(acknowledged + 150);
  stop = true;
  for (auto& t : clients) t.join();

  ASSERT_TRUE(WaitLeadsProcessed(server.url(), kToken, 120s));
  json status = LeadsStatus(server.url(), kToken);
  EXPECT_EQ(status["dead_letters_total"], 0);
  ASSERT_EQ(status["partitions"].size(), 12u);
  uint64_t old_committed = 0, new_committed = 0;
  for (size_t p = 0; p < 12; ++p) {
    (p < 4 ? old_committed : new_committed) += status["partitions"][p]["committed"].get<uint64_t>();
  }
  EXPECT_EQ(old_committed, sealed_records) << "the old layout was processed to its sealed end";
  EXPECT_GT(new_committed, 0u) << "nothing reached the new layout";

  TestClient reader(server.url());
  for (int c = 0; c < kClients; ++c) {
    for (int l = 0; l < kLeadsPerClient; ++l) {
      const int n = sent[c][l];
      auto r = reader.Request(
          "GET", fmt::format("/v1/activities?limit=1000&type=track&lead={}", Lead(c, l)), {},
          {BearerAuth(api_key)});
      ASSERT_EQ(r.status, 200) << r.body;
      json page = json::parse(r.body);
      std::set<std::string> ids;
      for (const auto& a : page["data"]) ids.insert(a["messageId"].get<std::string>());
      EXPECT_EQ(page["data"].size(), static_cast<size_t>(n)) << Lead(c, l);
      EXPECT_EQ(ids.size(), static_cast<size_t>(n)) << Lead(c, l) << ": stored twice";
      auto lead = reader.Request("GET", "/v1/leads/" + Lead(c, l), {}, {BearerAuth(api_key)});
      ASSERT_EQ(lead.status, 200) << lead.body;
      EXPECT_EQ(json::parse(lead.body)["activity_count"], n) << Lead(c, l);
    }
  }
  // Every lead's activities were processed in their sequence: none came after a later one.
  TestClient admin(server.url());
  auto metrics = admin.Request("GET", "/metrics", {}, {BearerAuth(kToken)});
  ASSERT_EQ(metrics.status, 200);
  EXPECT_EQ(MetricValue(metrics.body, R"(fairway_leads_late_activities_total{tenant="acme"})"), 0)
      << "a lead's activity was processed after a later one of the same lead";
  if (on_kafka) {
    // Kafka's lag tools see the same progress: the leads processor's consumer group has
    // committed each partition's processed offset on the topic of its layout.
    std::vector<KafkaMockCluster::TopicPartition> partitions;
    std::map<KafkaMockCluster::TopicPartition, int64_t> expected;
    for (int p = 0; p < 12; ++p) {
      KafkaMockCluster::TopicPartition tp =
          p < 4 ? std::pair{std::string("fairway.acme"), p} : std::pair{"fairway.acme.1", p - 4};
      partitions.push_back(tp);
      const auto committed = status["partitions"][p]["committed"].get<int64_t>();
      expected[tp] = committed > 0 ? committed : KafkaMockCluster::kNoOffset;
    }
    std::map<KafkaMockCluster::TopicPartition, int64_t> seen;
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (seen != expected && std::chrono::steady_clock::now() < deadline) {
      ASSERT_OK_AND_ASSIGN(seen, kafka->CommittedOffsets("fairway.processing.leads", partitions));
      if (seen != expected) std::this_thread::sleep_for(50ms);  // polling progress, bounded
    }
    EXPECT_EQ(seen, expected);
    // The cluster view names each task's topic and topic partition, its owner and its lag.
    auto view = admin.Request("GET", "/admin/v1/cluster?tenant=acme", {}, {BearerAuth(kToken)});
    ASSERT_EQ(view.status, 200) << view.body;
    json tasks = json::parse(view.body)["data"][0]["tasks"];
    ASSERT_EQ(tasks.size(), 12u);
    for (int p = 0; p < 12; ++p) {
      EXPECT_EQ(tasks[p]["topic"], p < 4 ? "fairway.acme" : "fairway.acme.1") << p;
      EXPECT_EQ(tasks[p]["topic_partition"], p < 4 ? p : p - 4) << p;
      for (const auto& proc : tasks[p]["processors"]) EXPECT_EQ(proc["lag_events"], 0) << p;
    }
  }
  server.Kill(SIGTERM);
}

INSTANTIATE_TEST_SUITE_P(Backends, E2ePartitionsTest, ::testing::Values("embedded", "kafka"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace fairway::e2e
