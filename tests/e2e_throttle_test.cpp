// A tenant throttled to a few activities a second, through the real server: it is processed at
// its rate while another tenant is processed at once, status, metrics and quota changes answer,
// SIGTERM stops the server, and after a restart (the quota is stored with the tenant) the same
// holds. A throttle of 10/s or less used to freeze every tenant, on every restart.

#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "http/tests/test_client.h"
#include "testing/temp_dir.h"
#include "tests/e2e.h"
#include "tests/server_process.h"

namespace fairway::e2e {
namespace {

struct Keys {
  std::string write_key, api_key;
};

Keys CreateTenant(TestClient& admin, const std::string& body) {
  auto r = admin.Request("POST", "/admin/v1/tenants", body, {BearerAuth(kToken)});
  EXPECT_EQ(r.status, 201) << r.body;
  auto j = json::parse(r.body, nullptr, false);
  if (r.status != 201 || j.is_discarded()) return {};
  return {j["write_key"], j["api_key"]};
}

void PostBatch(TestClient& c, const std::string& write_key, const std::string& prefix, int n) {
  json batch = json::array();
  for (int i = 0; i < n; ++i) {
    batch.push_back({{"type", "track"},
                     {"event", "Clicked"},
                     {"userId", prefix + std::to_string(i % 4)},
                     {"messageId", prefix + "-" + std::to_string(i)}});
  }
  auto r = c.Request("POST", "/v1/batch", json{{"batch", batch}}.dump(), {BasicAuth(write_key)});
  ASSERT_EQ(r.status, 200) << r.body;
}

// The tenant's processors' lag, summed (0 = everything processed); -1 when status fails.
int64_t Lag(TestClient& admin, const std::string& tenant) {
  auto r =
      admin.Request("GET", "/admin/v1/tenants/" + tenant + "/processing", "", {BearerAuth(kToken)});
  if (r.status != 200) return -1;
  int64_t lag = 0;
  json status = json::parse(r.body);
  for (const auto& p : status["processors"]) lag += p["lag_events"].get<int64_t>();
  return lag;
}

// Polls until `tenant` has no lag; returns how long that took (or nullopt past `limit`).
std::optional<std::chrono::duration<double>> WaitProcessed(TestClient& admin,
                                                           const std::string& tenant,
                                                           std::chrono::seconds limit) {
  auto start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - start < limit) {
    if (Lag(admin, tenant) == 0) return std::chrono::steady_clock::now() - start;
    std::this_thread::sleep_for(20ms);  // polling an outside process's progress
  }
  return std::nullopt;
}

TEST(E2eThrottleTest, LowProcessingRatesFreezeNobodyAcrossRestarts) {
  TempDir dir;
  ServerProcess server(FAIRWAY_BINARY, dir.Sub("data"), kToken);
  server.Start();
  Keys slow, slowest, fast;
  {
    TestClient admin(server.url());
    slow = CreateTenant(admin, R"({"id":"slow","quotas":{"processing_rate":5}})");
    slowest = CreateTenant(admin, R"({"id":"slowest","quotas":{"processing_rate":1}})");
    fast = CreateTenant(admin, R"({"id":"fast"})");
    TestClient c(server.url());
    PostBatch(c, slow.write_key, "s", 40);
    PostBatch(c, slowest.write_key, "z", 40);
    PostBatch(c, fast.write_key, "f", 40);
    // The unthrottled tenant is processed at once; status and metrics answer meanwhile.
    ASSERT_TRUE(WaitProcessed(admin, "fast", 60s));
    EXPECT_GT(Lag(admin, "slow"), 0);
    EXPECT_GT(Lag(admin, "slowest"), 0);
    auto m = admin.Request("GET", "/metrics", "", {BearerAuth(kToken)});
    ASSERT_EQ(m.status, 200);
    EXPECT_NE(m.body.find("fairway_engine_lag_events"), std::string::npos);
    // A quota change answers too (and takes effect).
    auto p = admin.Request("PATCH", "/admin/v1/tenants/slow", R"({"quotas":{"processing_rate":2}})",
                           {BearerAuth(kToken)});
    ASSERT_EQ(p.status, 200) << p.body;
  }
  // SIGTERM stops the server while tenants are throttled.
  ASSERT_TRUE(server.Terminate(30s));
  server.Start();
  TestClient admin(server.url());
  TestClient c(server.url());
  PostBatch(c, fast.write_key, "g", 40);
  ASSERT_TRUE(WaitProcessed(admin, "fast", 60s));
  EXPECT_GT(Lag(admin, "slowest"), 0);
  ASSERT_EQ(admin.Request("GET", "/metrics", "", {BearerAuth(kToken)}).status, 200);
  // The throttled tenants finish at their rates: nothing is stuck.
  auto waited = WaitProcessed(admin, "slow", 120s);
  ASSERT_TRUE(waited);
  ASSERT_TRUE(server.Terminate(30s));
}

}  // namespace
}  // namespace fairway::e2e
