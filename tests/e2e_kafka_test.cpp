// Fairway on the Kafka backend when brokers fail: the real binary, on a mock Kafka cluster of
// three brokers reached over TCP, ingests from clients that re-send every request until it is
// acknowledged, while brokers go down and come back. Afterwards every acknowledged activity is
// stored once and processed once.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
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
constexpr int kPerRequest = 10;

std::string Lead(int client, int request) {
  return "c" + std::to_string(client) + "-r" + std::to_string(request);
}

TEST(E2eKafkaTest, BrokersThatFailAndComeBackLoseNoAcknowledgedActivity) {
  KafkaMockCluster kafka(3);
  ASSERT_OK(kafka.status());
  ASSERT_OK(kafka.CreateTopic("fairway.acme", 4, 3));
  TempDir dir;
  ServerProcess server(FAIRWAY_BINARY, dir.Sub("data"), kToken);
  server.UseKafka(kafka.bootstrap_servers());
  // Short, so that appends caught by an outage fail (503) and are re-sent, not only delayed.
  server.SetEnv("FAIRWAY_KAFKA_DELIVERY_TIMEOUT_MS", "1500");
  server.SetLogFile(dir.Sub("server.log"));
  server.Start();
  std::string write_key, api_key;
  {
    TestClient admin(server.url());
    auto r = admin.Request(
        "POST", "/admin/v1/tenants",
        R"({"id":"acme","partitions":4,"quotas":{"ingest_rate":1e9,"ingest_burst":1e9}})",
        {BearerAuth(kToken)});
    ASSERT_EQ(r.status, 201) << r.body;
    auto j = json::parse(r.body);
    write_key = j["write_key"];
    api_key = j["api_key"];
  }

  // The clients send until the outages are over, so that appends are in flight during both.
  std::atomic<int> acknowledged{0};
  std::atomic<int> refused{0};
  std::atomic<bool> stop{false};
  std::vector<int> sent(kClients, 0);
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      TestClient client(server.url());
      for (int i = 0; !stop; ++i) {
        std::string body = R"({"batch":[)";
        for (int e = 0; e < kPerRequest; ++e) {
          if (e) body += ",";
          body += R"({"type":"track","event":"Load","userId":")" + Lead(c, i) +
                  R"(","messageId":")" + Lead(c, i) + "-" + std::to_string(e) + R"("})";
        }
        body += "]}";
        for (int attempt = 0;; ++attempt) {
          ASSERT_LT(attempt, 400) << "request " << Lead(c, i) << " never acknowledged";
          auto r = client.Request("POST", "/v1/batch", body, {BasicAuth(write_key)});
          if (r.status == 200) break;
          ASSERT_EQ(r.status, 503) << r.body;
          ++refused;
          std::this_thread::sleep_for(50ms);  // a client's back-off before it re-sends
        }
        sent[c] = i + 1;
        ++acknowledged;
      }
    });
  }
  // Two outages while the clients send: one broker, then every broker.
  auto wait_acks = [&](int n) { WaitAcknowledged(acknowledged, n); };
  wait_acks(60);
  ASSERT_OK(kafka.SetBrokerDown(2));
  std::this_thread::sleep_for(2500ms);  // the outage itself: how long the broker stays down
  ASSERT_OK(kafka.SetBrokerUp(2));
  wait_acks(acknowledged + 60);
  // With every broker down the server says it is not ready, and says so again once they are
  // back. (The outage lasts at least 2.5 s, longer than an append waits for Kafka.)
  auto readiness = [&] {
    TestClient probe(server.url());
    auto r = probe.Request("GET", "/readyz", {}, {});
    return std::make_pair(r.status, r.body);
  };
  ASSERT_OK(kafka.SetBrokerDown(-1));
  const auto outage_start = std::chrono::steady_clock::now();
  std::pair<int, std::string> ready{0, ""};
  for (int i = 0; i < 200 && ready.first != 503; ++i) {
    ready = readiness();
    if (ready.first != 503) std::this_thread::sleep_for(50ms);  // polling, bounded
  }
  EXPECT_EQ(ready.first, 503) << ready.second;
  EXPECT_NE(ready.second.find("no Kafka broker"), std::string::npos) << ready.second;
  std::this_thread::sleep_until(outage_start + 2500ms);
  ASSERT_OK(kafka.SetBrokerUp(-1));
  for (int i = 0; i < 400 && ready.first != 200; ++i) {
    ready = readiness();
    if (ready.first != 200) std::this_thread::sleep_for(50ms);  // polling, bounded
  }
  EXPECT_EQ(ready.first, 200) << ready.second;
  wait_acks(acknowledged + 60);
  stop = true;
  for (auto& t : clients) t.join();
  RecordProperty("requests_refused_during_outages", refused.load());
  EXPECT_GT(refused.load(), 0) << "no append failed: the outages were not exercised";

  // Processing catches up; then every lead holds its activities once, stored and processed.
  if (!WaitLeadsProcessed(server.url(), kToken, 120s)) {
    std::ifstream log(dir.Sub("server.log"));
    std::vector<std::string> lines;
    for (std::string line; std::getline(log, line);) lines.push_back(line);
    std::string tail;
    for (size_t i = lines.size() > 40 ? lines.size() - 40 : 0; i < lines.size(); ++i) {
      tail += lines[i] + "\n";
    }
    FAIL() << "server log:\n" << tail;
  }
  json status = LeadsStatus(server.url(), kToken);
  EXPECT_EQ(status["dead_letters_total"], 0);
  TestClient reader(server.url());
  for (int c = 0; c < kClients; ++c) {
    for (int i = 0; i < sent[c]; ++i) {
      auto r = reader.Request("GET", "/v1/activities?limit=100&type=track&lead=" + Lead(c, i), {},
                              {BearerAuth(api_key)});
      ASSERT_EQ(r.status, 200) << r.body;
      std::multiset<std::string> ids;
      json page = json::parse(r.body);
      for (auto& a : page["data"]) ids.insert(a["messageId"].get<std::string>());
      ASSERT_EQ(ids.size(), static_cast<size_t>(kPerRequest)) << Lead(c, i);
      EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), ids.size())
          << Lead(c, i) << ": an activity was stored twice";
      auto lead = reader.Request("GET", "/v1/leads/" + Lead(c, i), {}, {BearerAuth(api_key)});
      ASSERT_EQ(lead.status, 200) << lead.body;
      EXPECT_EQ(json::parse(lead.body)["activity_count"], kPerRequest) << Lead(c, i);
    }
  }
  server.Kill(SIGTERM);
}

}  // namespace
}  // namespace fairway::e2e
