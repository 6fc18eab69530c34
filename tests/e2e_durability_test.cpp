// Durability under kill -9: every acknowledged activity survives, and a request that was not
// acknowledged is either entirely stored or not at all.

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "http/tests/test_client.h"
#include "testing/temp_dir.h"
#include "tests/e2e.h"
#include "tests/server_process.h"

namespace fairway::e2e {
namespace {

constexpr int kEventsPerRequest = 5;

std::string Lead(int thread, int request) {
  return "t" + std::to_string(thread) + "-r" + std::to_string(request);
}

TEST(E2eDurabilityTest, AcknowledgedActivitiesSurviveSigkill) {
  TempDir dir;
  ServerProcess server(FAIRWAY_BINARY, dir.Sub("data"), kToken);
  server.Start();
  std::string write_key, api_key;
  {
    TestClient admin(server.url());
    auto r = admin.Request("POST", "/admin/v1/tenants",
                           R"({"id":"acme","quotas":{"ingest_rate":1e9,"ingest_burst":1e9}})",
                           {BearerAuth(kToken)});
    ASSERT_EQ(r.status, 201) << r.body;
    auto j = json::parse(r.body);
    write_key = j["write_key"];
    api_key = j["api_key"];
  }

  constexpr int kThreads = 8;
  constexpr int kKillAfterAcks = 2500;
  std::atomic<int> acked{0};
  std::atomic<bool> killed{false};
  std::atomic<int> clients_done{0};
  std::mutex mu;
  std::set<std::string> acked_leads;
  std::vector<int> sent(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      struct Done {
        std::atomic<int>& n;
        ~Done() { ++n; }
      } done{clients_done};
      TestClient c(server.url());
      for (int i = 0; !killed; ++i) {
        std::string body = R"({"batch":[)";
        for (int e = 0; e < kEventsPerRequest; ++e) {
          if (e) body += ",";
          body += R"({"type":"track","event":"Load","userId":")" + Lead(t, i) +
                  R"(","messageId":")" + Lead(t, i) + "-" + std::to_string(e) +
                  R"(","properties":{"seq":)" + std::to_string(e) + "}}";
        }
        body += "]}";
        sent[t] = i + 1;
        auto r = c.Request("POST", "/v1/batch", body, {BasicAuth(write_key)});
        if (r.status == 200) {
          std::lock_guard lock(mu);
          acked_leads.insert(Lead(t, i));
          ++acked;
        } else if (r.status != 0) {
          ADD_FAILURE() << "unexpected answer " << r.status << ": " << r.body;
          return;
        } else {
          return;  // connection died: the server was killed
        }
      }
    });
  }
  // Kill while requests are in flight, once enough have been acknowledged.
  // (If every client stopped early, the failure is already recorded: do not wait forever.)
  while (acked < kKillAfterAcks && clients_done < kThreads) std::this_thread::yield();
  server.Kill(SIGKILL);
  killed = true;
  for (auto& th : threads) th.join();

  ServerProcess restarted(FAIRWAY_BINARY, dir.Sub("data"), kToken);
  restarted.Start();
  TestClient reader(restarted.url());
  size_t complete_unacked = 0;
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < sent[t]; ++i) {
      // The activities sent (not the lead_created Fairway generates for a new lead).
      auto r = reader.Request("GET", "/v1/activities?limit=100&type=track&lead=" + Lead(t, i), {},
                              {BearerAuth(api_key)});
      ASSERT_EQ(r.status, 200) << r.body;
      auto data = json::parse(r.body)["data"];  // parses: no torn record
      bool was_acked = acked_leads.count(Lead(t, i)) > 0;
      if (was_acked) {
        ASSERT_EQ(data.size(), static_cast<size_t>(kEventsPerRequest))
            << "acknowledged request " << Lead(t, i) << " lost events";
      } else {
        ASSERT_TRUE(data.empty() || data.size() == static_cast<size_t>(kEventsPerRequest))
            << "unacknowledged request " << Lead(t, i) << " is half-written: " << data.size();
        if (!data.empty()) ++complete_unacked;
      }
      std::set<std::string> ids;
      for (auto& a : data) {
        EXPECT_EQ(a["userId"], Lead(t, i));
        ids.insert(a["messageId"].get<std::string>());
      }
      EXPECT_EQ(ids.size(), data.size()) << "an activity was stored twice";
    }
  }
  EXPECT_GE(acked.load(), kKillAfterAcks);
  RecordProperty("acknowledged_requests", acked.load());
  RecordProperty("stored_but_unacknowledged", static_cast<int>(complete_unacked));

  // Retrying an acknowledged request after the restart is a no-op (idempotency survives).
  std::string lead = *acked_leads.begin();
  std::string retry = R"({"batch":[{"type":"track","event":"Load","userId":")" + lead +
                      R"(","messageId":")" + lead + R"(-0"}]})";
  ASSERT_EQ(reader.Request("POST", "/v1/batch", retry, {BasicAuth(write_key)}).status, 200);
  auto again =
      reader.Request("GET", "/v1/activities?type=track&lead=" + lead, {}, {BearerAuth(api_key)});
  EXPECT_EQ(json::parse(again.body)["data"].size(), static_cast<size_t>(kEventsPerRequest));
  restarted.Kill(SIGTERM);
}

}  // namespace
}  // namespace fairway::e2e
