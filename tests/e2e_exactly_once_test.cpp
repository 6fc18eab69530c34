// Exactly-once processing under kill -9: the real binary ingests a deterministic set of
// activities while it is killed (SIGKILL) and restarted three times mid-processing; every request
// is re-sent until acknowledged (messageId dedup makes re-sends harmless). Once processing has
// caught up, every lead's state must equal the state a second server computes in one clean pass
// over the same activities, and match the counts the test itself expects: a state change
// applied twice, or lost, shows as a difference. The killed server runs once on the embedded
// log and once on the Kafka backend (a mock Kafka cluster over TCP); the clean pass is always
// embedded, so the two backends are held to one result.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "http/tests/test_client.h"
#include "testing/kafka_mock.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"
#include "tests/e2e.h"
#include "tests/processing_status.h"
#include "tests/server_process.h"

namespace fairway::e2e {
namespace {

constexpr int kLeads = 200;
constexpr int kRequests = 600;
constexpr int kPerRequest = 100;
constexpr int kClients = 4;

// Event g: an identify (userId + anonymousId + traits) for 1 in 20, an anonymous page view for
// 3 in 20, a known-user track otherwise. Event times are shuffled, so traits resolve by event
// time, not arrival.
std::string Event(int g) {
  int lead = g % kLeads;
  int kind = (g / kLeads) % 20;
  int64_t second = (static_cast<int64_t>(g) * 7919) % 500'000;
  std::string ts = "\"timestamp\":\"" + std::to_string(2026) + "-11-" +
                   std::to_string(10 + second / 86'400 % 10) + "T" +
                   (second % 86'400 / 3600 < 10 ? "0" : "") +
                   std::to_string(second % 86'400 / 3600) + ":" +
                   (second % 3600 / 60 < 10 ? "0" : "") + std::to_string(second % 3600 / 60) + ":" +
                   (second % 60 < 10 ? "0" : "") + std::to_string(second % 60) + "Z\"";
  std::string id = "\"messageId\":\"m-" + std::to_string(g) + "\"," + ts;
  std::string u = "u" + std::to_string(lead), a = "a" + std::to_string(lead);
  if (kind == 0) {
    return R"({"type":"identify","userId":")" + u + R"(","anonymousId":")" + a + R"(",)" + id +
           R"(,"traits":{"score":)" + std::to_string(g) + R"(,"plan":")" +
           (g % 3 == 0 ? "pro" : "free") + R"("}})";
  }
  if (kind <= 3) {
    return R"({"type":"page","anonymousId":")" + a + R"(","name":"/pricing",)" + id + "}";
  }
  return R"({"type":"track","userId":")" + u + R"(","event":"Clicked",)" + id + "}";
}

std::string RequestBody(int r) { return BatchOf(r * kPerRequest, kPerRequest, Event); }

// A server whose address changes when it is restarted, shared by the client threads.
class Target {
 public:
  Target(ServerProcess* server) : server_(server) {}
  std::string url() {
    std::lock_guard lock(mu_);
    return server_->url();
  }
  uint64_t generation() {
    std::lock_guard lock(mu_);
    return generation_;
  }
  // Kills the server with SIGKILL and starts it again on the same data.
  void Restart() {
    std::lock_guard lock(mu_);
    server_->Kill(SIGKILL);
    server_->Start();
    ++generation_;
    cv_.notify_all();
  }
  // Waits (bounded) for a restart after `seen`.
  void WaitNewGeneration(uint64_t seen) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, 200ms, [&] { return generation_ != seen; });
  }

 private:
  ServerProcess* server_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t generation_ = 0;
};

std::string CreateTenant(const std::string& url, const std::string& quotas) {
  TestClient admin(url);
  auto r = admin.Request("POST", "/admin/v1/tenants",
                         R"({"id":"acme","partitions":4,"quotas":)" + quotas + "}",
                         {BearerAuth(kToken)});
  EXPECT_EQ(r.status, 201) << r.body;
  auto j = json::parse(r.body);
  return j["write_key"].get<std::string>() + "\n" + j["api_key"].get<std::string>();
}

// Sends every request with kClients threads, each re-sent until acknowledged. `on_ack` runs
// after each acknowledgement.
void IngestAll(Target* target, const std::string& write_key, const std::function<void()>& on_ack) {
  std::atomic<int> next{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kClients; ++t) {
    threads.emplace_back([&] {
      for (int r = next++; r < kRequests; r = next++) {
        std::string body = RequestBody(r);
        for (int attempt = 0;; ++attempt) {
          ASSERT_LT(attempt, 200) << "request " << r << " never acknowledged";
          uint64_t gen = target->generation();
          TestClient c(target->url());
          auto res = c.Request("POST", "/v1/batch", body, {BasicAuth(write_key)});
          if (res.status == 200) break;
          if (res.status != 0) {
            // Not a kill: what the server answered goes to the test's output.
            std::cerr << "request " << r << " attempt " << attempt << ": " << res.status << " "
                      << res.body << "\n";
          }
          target->WaitNewGeneration(gen);  // killed: wait for the restart, then re-send
        }
        on_ack();
      }
    });
  }
  for (auto& th : threads) th.join();
}

// Run 1 on a server that `configure` sets up: throttled processing (a backlog builds up), killed
// three times. Run 2: one clean pass on the embedded log. Every lead's state must match.
void ExpectKilledRunEqualsCleanPass(const std::function<void(ServerProcess*)>& configure) {
  TempDir dir;
  ServerProcess server(FAIRWAY_BINARY, dir.Sub("crashed"), kToken);
  configure(&server);
  server.Start();
  // Processing at 5,000/s falls behind ingest even on a loaded machine (the Kafka backend's
  // ingest there can be slower than 15,000/s, which once left no backlog at a kill).
  std::string keys = CreateTenant(
      server.url(), R"({"ingest_rate":1e9,"ingest_burst":1e9,"processing_rate":5000})");
  std::string write_key = keys.substr(0, keys.find('\n')),
              api_key = keys.substr(keys.find('\n') + 1);
  Target target(&server);
  std::mutex mu;
  std::condition_variable cv;
  int acked = 0;
  std::thread killer([&] {
    for (int kill = 1; kill <= 3; ++kill) {
      // A kill tests something only while processing is behind: if it has caught up (ingest
      // was slow for a while), the kill waits for more acknowledgements.
      int64_t lag = 0;
      for (int need = kill * kRequests / 4;; need += kRequests / 50) {
        {
          std::unique_lock lock(mu);
          cv.wait(lock, [&] { return acked >= std::min(need, kRequests); });
        }
        json s = LeadsStatus(target.url(), kToken);
        lag = s.contains("lag_events") ? s["lag_events"].get<int64_t>() : -1;
        if (lag != 0 || need >= kRequests) break;
      }
      ::testing::Test::RecordProperty("lag_at_kill_" + std::to_string(kill), std::to_string(lag));
      EXPECT_GT(lag, 0) << "kill " << kill << " did not interrupt processing";
      target.Restart();
    }
  });
  IngestAll(&target, write_key, [&] {
    std::lock_guard lock(mu);
    ++acked;
    cv.notify_all();
  });
  killer.join();
  ASSERT_TRUE(WaitLeadsProcessed(target.url(), kToken));
  json status = LeadsStatus(target.url(), kToken);
  EXPECT_EQ(status["dead_letters_total"], 0);
  EXPECT_EQ(status["processed_total"].get<int>() > 0, true);
  auto crashed = ReadLeads(target.url(), api_key, kLeads);

  // Run 2: the same activities, one clean pass.
  ServerProcess clean(FAIRWAY_BINARY, dir.Sub("clean"), kToken);
  clean.Start();
  keys = CreateTenant(clean.url(), R"({"ingest_rate":1e9,"ingest_burst":1e9})");
  std::string clean_write = keys.substr(0, keys.find('\n')),
              clean_api = keys.substr(keys.find('\n') + 1);
  Target clean_target(&clean);
  IngestAll(&clean_target, clean_write, [] {});
  ASSERT_TRUE(WaitLeadsProcessed(clean.url(), kToken));
  auto expected = ReadLeads(clean.url(), clean_api, kLeads);

  constexpr int kPerLead = kRequests * kPerRequest / kLeads;
  for (int i = 0; i < kLeads; ++i) {
    std::string u = "u" + std::to_string(i);
    // What the test itself knows: every activity of the lead counted once, its anonymous
    // history merged.
    EXPECT_EQ(crashed[u]["activity_count"], kPerLead) << u;
    EXPECT_EQ(crashed[u]["anonymous_ids"], json::array({"a" + std::to_string(i)})) << u;
    // And everything else equals the clean pass.
    EXPECT_EQ(crashed[u], expected[u]) << u;
  }
  clean.Kill(SIGTERM);
  server.Kill(SIGTERM);
}

TEST(E2eExactlyOnceTest, StateAfterRepeatedSigkillEqualsACleanPass) {
  ExpectKilledRunEqualsCleanPass([](ServerProcess*) {});
}

TEST(E2eExactlyOnceTest, OnTheKafkaBackendStateAfterRepeatedSigkillEqualsACleanPass) {
  testing::KafkaMockCluster kafka(3);
  ASSERT_OK(kafka.status());
  // The mock has no CreateTopics: the topic is provisioned as an operator would.
  ASSERT_OK(kafka.CreateTopic("fairway.acme", 4, 3));
  ExpectKilledRunEqualsCleanPass(
      [&](ServerProcess* server) { server->UseKafka(kafka.bootstrap_servers()); });
}

}  // namespace
}  // namespace fairway::e2e
