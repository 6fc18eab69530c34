#include "http/api.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/crypto.h"
#include "http/server.h"
#include "http/tests/test_client.h"
#include "identity/lead_processor.h"
#include "log/embedded_log.h"
#include "storage/schema.h"
#include "testing/status_matchers.h"
#include "testing/store_and_log.h"

namespace fairway::http {
namespace {

using nlohmann::json;

constexpr char kAdminToken[] = "test-admin-token";

// A second processor for the dead-letter routes: activities named "Poison" fail for good until
// it is healed.
class PoisonProcessor final : public engine::Processor {
 public:
  PoisonProcessor() {
    spec_.name = "poison";
    spec_.retry.max_attempts = 2;
    spec_.retry.initial_backoff = std::chrono::milliseconds(1);
  }
  const engine::ProcessorSpec& spec() const override { return spec_; }
  void Process(engine::WorkItem& item) override {
    for (const auto& e : item.entries()) {
      if (e.activity.event == "Poison" && !healed) {
        return item.Finish(InvalidArgument("poisoned"));
      }
    }
    item.Finish();
  }
  std::atomic<bool> healed{false};

 private:
  engine::ProcessorSpec spec_;
};

// The real server, API, log and store on a temporary directory and an ephemeral port, on real
// time.
class ApiTest : public ::fairway::testing::StoreAndLogTest {
 protected:
  // The engine subscribes to the log before the log starts.
  ApiTest() : StoreAndLogTest({.log = {}, .clock = SystemClock::Default(), .start_log = false}) {}

  void SetUp() override {
    StoreAndLogTest::SetUp();
    if (HasFatalFailure()) return;
    engine_ = std::make_unique<engine::Engine>(store_.get(), log_.get(), SystemClock::Default(),
                                               metrics_.get(), engine::EngineOptions{});
    engine_->AddProcessor(std::make_unique<identity::LeadProcessor>());
    auto poison = std::make_unique<PoisonProcessor>();
    poison_ = poison.get();
    engine_->AddProcessor(std::move(poison));
    engine_->Start();
    log_->Start();
    leads_ = std::make_unique<identity::LeadStore>(store_.get());
    tenants_ =
        std::move(tenancy::TenantRegistry::Open(store_.get(), SystemClock::Default())).value();
    ApiOptions ao;
    ao.admin_token = kAdminToken;
    api_ = std::make_unique<Api>(ao, tenants_.get(), ApiLog(), log_.get(), engine_.get(),
                                 leads_.get(), SystemClock::Default(), metrics_.get());
    // The campaign routes' services (the dispatcher and timers are not started: the routes
    // only read and write their rows).
    campaigns_ =
        std::make_unique<campaigns::CampaignRegistry>(store_.get(), SystemClock::Default());
    dispatcher_ = std::make_unique<dispatch::DeliveryDispatcher>(
        store_.get(), SystemClock::Default(), metrics_.get(),
        dispatch::DeliveryDispatcherOptions{});
    timers_ = std::make_unique<campaigns::TimerService>(
        store_.get(), log_.get(), SystemClock::Default(),
        [](const TenantId&) -> std::optional<model::TenantConfig> { return std::nullopt; });
    api_->SetCampaignServices({campaigns_.get(), timers_.get(), dispatcher_.get(), store_.get()});
    api_->SetEnricher(&Enricher());
    ServerOptions opts;
    opts.port = 0;
    server_ = std::make_unique<HttpServer>(opts, api_.get());
    ASSERT_TRUE(server_->Start().ok());
    api_->SetReady(true);
    base_ = "http://127.0.0.1:" + std::to_string(server_->port());
    client_ = std::make_unique<TestClient>(base_);
  }
  // The enrichment of browsers' events, with Debian's patterns and GeoIP databases.
  static const enrich::Enricher& Enricher() {
    static auto user_agents = enrich::UserAgentParser::Load(enrich::kDefaultRegexesPath);
    static auto countries =
        enrich::CountryLookup::Open(enrich::kDefaultGeoIpPath, enrich::kDefaultGeoIpV6Path);
    static enrich::Enricher enricher(user_agents.ok() ? user_agents->get() : nullptr,
                                     countries.ok() ? countries->get() : nullptr);
    EXPECT_OK(user_agents);
    EXPECT_OK(countries);
    return enricher;
  }
  // The log the API is given (the engine always has the real one).
  virtual log::ActivityLog* ApiLog() { return log_.get(); }
  void TearDown() override {
    // Whatever can still hold a connection (log callbacks, admin tasks) stops before the
    // server that owns the connections' event loop is destroyed.
    server_->Stop();
    engine_->Stop();
    log_->Stop();
    api_->Stop();
    server_.reset();
    api_.reset();
  }

  struct Keys {
    std::string write, api;
  };
  Keys CreateTenant(const std::string& id, const std::string& quotas = "{}") {
    auto r = Admin(
        "POST", "/admin/v1/tenants",
        R"({"id":")" + id + R"(","name":"T","timezone":"Europe/Berlin","quotas":)" + quotas + "}");
    EXPECT_EQ(r.status, 201) << r.body;
    auto j = json::parse(r.body);
    return {j["write_key"], j["api_key"]};
  }
  ClientResponse Admin(const std::string& method, const std::string& path,
                       const std::string& body = {}) {
    return client_->Request(method, path, body, {BearerAuth(kAdminToken)});
  }
  ClientResponse Ingest(const std::string& write_key, const std::string& endpoint,
                        const std::string& body) {
    return client_->Request("POST", "/v1/" + endpoint, body, {BasicAuth(write_key)});
  }
  json Activities(const std::string& api_key, const std::string& query) {
    auto r = client_->Request("GET", "/v1/activities?" + query, {}, {BearerAuth(api_key)});
    EXPECT_EQ(r.status, 200) << r.body;
    return r.status == 200 ? json::parse(r.body) : json();
  }
  // 20 tracks of one round, 4 for each of the leads u0-u4.
  void SendRound(const std::string& write_key, int round) {
    std::string batch = R"({"batch":[)";
    for (int i = 0; i < 20; ++i) {
      if (i > 0) batch += ",";
      batch += fmt::format(R"({{"type":"track","userId":"u{}","event":"e","messageId":"r{}-{}"}})",
                           i % 5, round, i);
    }
    ASSERT_EQ(Ingest(write_key, "batch", batch + "]}").status, 200);
  }
  // Once processing is idle: u0-u4 each have `per_lead` activities stored and counted, and every
  // processor has `partitions` partitions and no lag.
  void ExpectRoundsProcessed(const Keys& k, size_t per_lead, size_t partitions);
  // Activities the clients sent (not those Fairway generated, such as lead_created).
  size_t StoredCount(const std::string& api_key, const std::string& lead) {
    json page = Activities(api_key, "lead=" + lead + "&limit=1000");
    size_t n = 0;
    for (const auto& a : page["data"]) n += a["type"] != "fairway" ? 1 : 0;
    return n;
  }

  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<identity::LeadStore> leads_;
  PoisonProcessor* poison_ = nullptr;
  std::unique_ptr<tenancy::TenantRegistry> tenants_;
  std::unique_ptr<Api> api_;
  std::unique_ptr<campaigns::CampaignRegistry> campaigns_;
  std::unique_ptr<dispatch::DeliveryDispatcher> dispatcher_;
  std::unique_ptr<campaigns::TimerService> timers_;
  std::unique_ptr<HttpServer> server_;
  std::string base_;
  std::unique_ptr<TestClient> client_;
};

TEST_F(ApiTest, TrackThenReadBack) {
  Keys k = CreateTenant("acme");
  auto r = Ingest(k.write, "track",
                  R"({"userId":"alice","event":"Viewed Pricing","messageId":"m1",
                      "properties":{"url":"/pricing"},"timestamp":"2024-02-29T12:00:00Z"})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body), json::parse(R"({"success":true})"));
  json page = Activities(k.api, "lead=alice&type=track");
  ASSERT_EQ(page["data"].size(), 1u);
  EXPECT_EQ(page["data"][0]["event"], "Viewed Pricing");
  EXPECT_EQ(page["data"][0]["properties"]["url"], "/pricing");
  EXPECT_EQ(page["data"][0]["timestamp"], "2024-02-29T12:00:00.000Z");
  EXPECT_TRUE(page["data"][0].contains("receivedAt"));
  EXPECT_TRUE(page["next_cursor"].is_null());
}

TEST_F(ApiTest, AllSegmentCallsAndBatch) {
  Keys k = CreateTenant("acme");
  EXPECT_EQ(Ingest(k.write, "identify", R"({"userId":"u1","traits":{"email":"a@b.c"}})").status,
            200);
  EXPECT_EQ(Ingest(k.write, "page", R"({"userId":"u1","name":"Home"})").status, 200);
  EXPECT_EQ(Ingest(k.write, "screen", R"({"userId":"u1","name":"Main"})").status, 200);
  EXPECT_EQ(Ingest(k.write, "group", R"({"userId":"u1","groupId":"g1","traits":{}})").status, 200);
  EXPECT_EQ(Ingest(k.write, "alias", R"({"userId":"u1","previousId":"anon-9"})").status, 200);
  auto r = Ingest(k.write, "batch", R"({"batch":[{"type":"track","userId":"u1","event":"A"},
      {"type":"track","userId":"u1","event":"B"}]})");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(StoredCount(k.api, "u1"), 7u);
  json pages = Activities(k.api, "lead=u1&type=page");
  ASSERT_EQ(pages["data"].size(), 1u);
  EXPECT_EQ(pages["data"][0]["name"], "Home");
  // writeKey in the body works like Basic auth (Segment allows both).
  r = client_->Request("POST", "/v1/track",
                       R"({"writeKey":")" + k.write + R"(","userId":"u2","event":"x"})");
  EXPECT_EQ(r.status, 200) << r.body;
}

TEST_F(ApiTest, EachBadRequestHasItsOwnErrorAndWritesNothing) {
  Keys k = CreateTenant("acme");
  struct Case {
    std::string endpoint, body;
    int status;
    std::string must_mention;
  };
  std::vector<Case> cases = {
      {"track", R"({"userId":"bad","event":)", 400, "not valid JSON"},
      {"track", R"({"userId":"bad","event":"e","properties":[1]})", 400, "properties"},
      {"track", R"({"event":"e"})", 400, "userId"},
      {"track", R"({"userId":"bad"})", 400, "event"},
      {"track", R"({"userId":"bad","event":"e","timestamp":12})", 400, "timestamp"},
      {"track",
       R"({"userId":"bad","event":"e","properties":{"b":")" + std::string(33000, 'x') + "\"}}", 400,
       "limit"},
      {"batch", R"({"batch":[{"type":"track","userId":"bad","event":"ok"},
                     {"type":"track","userId":"bad"}]})",
       400, "batch[1].event"},
      {"batch", R"({"batch":"nope"})", 400, "batch"},
  };
  for (const auto& c : cases) {
    auto r = Ingest(k.write, c.endpoint, c.body);
    EXPECT_EQ(r.status, c.status) << c.body.substr(0, 100);
    EXPECT_NE(r.body.find(c.must_mention), std::string::npos) << r.body;
  }
  // Over 500 KB: 413.
  std::string big = R"({"batch":[)";
  for (int i = 0; i < 30; ++i) {
    if (i) big += ",";
    big += R"({"type":"track","userId":"bad","event":"e","properties":{"b":")" +
           std::string(20000, 'y') + "\"}}";
  }
  big += "]}";
  auto r = Ingest(k.write, "batch", big);
  EXPECT_EQ(r.status, 413) << r.body;
  client_ = std::make_unique<TestClient>(base_);  // the server closed that connection
  // Auth failures.
  EXPECT_EQ(client_->Request("POST", "/v1/track", R"({"userId":"bad","event":"e"})").status, 401);
  EXPECT_EQ(Ingest("wk_unknown", "track", R"({"userId":"bad","event":"e"})").status, 401);
  auto bad_scheme = client_->Request("POST", "/v1/track", R"({"userId":"bad","event":"e"})",
                                     {"Authorization: Basic !!!"});
  EXPECT_EQ(bad_scheme.status, 401);
  // Suspended tenant.
  ASSERT_EQ(Admin("POST", "/admin/v1/tenants/acme/suspend").status, 200);
  r = Ingest(k.write, "track", R"({"userId":"bad","event":"e"})");
  EXPECT_EQ(r.status, 403);
  EXPECT_NE(r.body.find("suspended"), std::string::npos);
  ASSERT_EQ(Admin("POST", "/admin/v1/tenants/acme/resume").status, 200);

  EXPECT_EQ(StoredCount(k.api, "bad"), 0u) << "a rejected request must write nothing";
  for (uint32_t p = 0; p < 4; ++p) {
    EXPECT_EQ(log_->HighWatermark(TenantId("acme"), PartitionId(p))->value(), 0u);
  }
}

TEST_F(ApiTest, BatchErrorsListEveryBadMessage) {
  Keys k = CreateTenant("acme");
  auto r = Ingest(k.write, "batch", R"({"batch":[{"type":"track","userId":"u","event":"ok"},
      {"type":"track","userId":"u"},{"type":"identify"},{"type":"group","userId":"u"}]})");
  ASSERT_EQ(r.status, 400);
  json j = json::parse(r.body);
  ASSERT_EQ(j["errors"].size(), 3u);
  EXPECT_EQ(j["errors"][0]["index"], 1);
  EXPECT_EQ(j["errors"][0]["field"], "batch[1].event");
  EXPECT_EQ(j["errors"][1]["index"], 2);
  EXPECT_EQ(j["errors"][2]["field"], "batch[3].groupId");
  EXPECT_EQ(StoredCount(k.api, "u"), 0u);
}

TEST_F(ApiTest, ResentMessageIdIsStoredOnceAndStillAnswers200) {
  Keys k = CreateTenant("acme");
  std::string body = R"({"userId":"u","event":"e","messageId":"same"})";
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Ingest(k.write, "track", body).status, 200);
  EXPECT_EQ(StoredCount(k.api, "u"), 1u);
  std::string text = metrics_->RenderPrometheus();
  EXPECT_NE(text.find(R"(fairway_ingest_events_total{tenant="acme",outcome="duplicate"} 2)"),
            std::string::npos);
}

TEST_F(ApiTest, QuotaAnswers429WithRetryAfter) {
  Keys k = CreateTenant("acme", R"({"ingest_rate":1,"ingest_burst":3})");
  std::string batch3 = R"({"batch":[{"type":"track","userId":"u","event":"a"},
      {"type":"track","userId":"u","event":"b"},{"type":"track","userId":"u","event":"c"}]})";
  EXPECT_EQ(Ingest(k.write, "batch", batch3).status, 200);
  auto r = Ingest(k.write, "batch", batch3);
  ASSERT_EQ(r.status, 429) << r.body;
  EXPECT_GE(std::stoi(r.headers["retry-after"]), 1);
  EXPECT_EQ(r.headers["ratelimit-limit"], "3");
  EXPECT_NE(r.body.find("ingest rate"), std::string::npos);
  EXPECT_EQ(StoredCount(k.api, "u"), 3u);
  // Raising the quota takes effect at once.
  ASSERT_EQ(Admin("PATCH", "/admin/v1/tenants/acme",
                  R"({"quotas":{"ingest_rate":100000,"ingest_burst":100000}})")
                .status,
            200);
  EXPECT_EQ(Ingest(k.write, "batch", batch3).status, 200);
}

TEST_F(ApiTest, FloodingOneTenantNeverThrottlesAnother) {
  Keys a = CreateTenant("noisy", R"({"ingest_rate":50,"ingest_burst":50})");
  Keys b = CreateTenant("quiet", R"({"ingest_rate":1000,"ingest_burst":1000})");
  std::atomic<bool> stop{false};
  std::atomic<int> a_limited{0};
  std::vector<std::thread> flooders;
  for (int t = 0; t < 3; ++t) {
    flooders.emplace_back([&] {
      TestClient c(base_);
      while (!stop) {
        auto r = c.Request("POST", "/v1/track", R"({"userId":"x","event":"flood"})",
                           {BasicAuth(a.write)});
        if (r.status == 429) ++a_limited;
      }
    });
  }
  TestClient quiet(base_);
  int b_ok = 0;
  std::vector<double> b_latency_ms;
  // Tenant B keeps sending while A is being refused.
  for (int i = 0; i < 200 || a_limited < 100; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    auto r = quiet.Request("POST", "/v1/track", R"({"userId":"y","event":"calm"})",
                           {BasicAuth(b.write)});
    b_latency_ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    ASSERT_EQ(r.status, 200) << r.body;
    ++b_ok;
    if (i > 100'000) break;
  }
  stop = true;
  for (auto& t : flooders) t.join();
  EXPECT_GE(a_limited.load(), 100);
  EXPECT_EQ(StoredCount(b.api, "y"), std::min<size_t>(b_ok, 1000));
  // Reported, not asserted (timings belong in benchmarks): tenant B's latency under the flood.
  std::sort(b_latency_ms.begin(), b_latency_ms.end());
  RecordProperty("quiet_tenant_p50_ms", std::to_string(b_latency_ms[b_latency_ms.size() / 2]));
  RecordProperty("quiet_tenant_p99_ms",
                 std::to_string(b_latency_ms[b_latency_ms.size() * 99 / 100]));
}

TEST_F(ApiTest, IsolationMatrix) {
  Keys a = CreateTenant("a");
  Keys b = CreateTenant("b");
  ASSERT_EQ(Ingest(a.write, "track", R"({"userId":"shared","event":"from-a"})").status, 200);
  ASSERT_EQ(Ingest(b.write, "track", R"({"userId":"shared","event":"from-b"})").status, 200);
  // An API key reads only its own tenant.
  json pa = Activities(a.api, "lead=shared&type=track");
  ASSERT_EQ(pa["data"].size(), 1u);
  EXPECT_EQ(pa["data"][0]["event"], "from-a");
  json pb = Activities(b.api, "lead=shared&type=track");
  ASSERT_EQ(pb["data"].size(), 1u);
  EXPECT_EQ(pb["data"][0]["event"], "from-b");
  // A write key reads nothing.
  EXPECT_EQ(client_->Request("GET", "/v1/activities?lead=shared", {}, {BearerAuth(a.write)}).status,
            401);
  EXPECT_EQ(client_->Request("GET", "/v1/activities?lead=shared").status, 401);
  // An API key cannot ingest.
  EXPECT_EQ(Ingest(a.api, "track", R"({"userId":"x","event":"e"})").status, 401);
  // Admin routes need the admin token, not a tenant key.
  for (const std::string& key : {a.api, a.write, std::string("wrong")}) {
    EXPECT_EQ(client_->Request("GET", "/admin/v1/tenants", {}, {BearerAuth(key)}).status, 401);
  }
  EXPECT_EQ(client_->Request("GET", "/admin/v1/tenants").status, 401);
  EXPECT_EQ(Admin("GET", "/admin/v1/tenants").status, 200);
}

TEST_F(ApiTest, StorageFailureAnswers503AndStoresNothing) {
  Keys k = CreateTenant("acme");
  store_->InjectWriteFailures(1);
  auto r = Ingest(k.write, "batch", R"({"batch":[{"type":"track","userId":"u","event":"a"},
      {"type":"track","userId":"u","event":"b"}]})");
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_NE(r.body.find("storage"), std::string::npos);
  EXPECT_EQ(StoredCount(k.api, "u"), 0u);
  // The client's retry of the same request then succeeds.
  EXPECT_EQ(Ingest(k.write, "batch", R"({"batch":[{"type":"track","userId":"u","event":"a"},
      {"type":"track","userId":"u","event":"b"}]})")
                .status,
            200);
  EXPECT_EQ(StoredCount(k.api, "u"), 2u);
}

TEST_F(ApiTest, InterruptedDeletionIsFinishedAtStart) {
  Keys k = CreateTenant("acme");
  ASSERT_EQ(Ingest(k.write, "track", R"({"userId":"u","event":"e"})").status, 200);
  // A crash after marking the tenant 'deleting' leaves it in that state.
  ASSERT_TRUE(tenants_->SetStatus(TenantId("acme"), model::TenantStatus::kDeleting).ok());
  EXPECT_EQ(Ingest(k.write, "track", R"({"userId":"u","event":"e"})").status, 403);
  ASSERT_TRUE(api_->ResumeDeletions().ok());
  EXPECT_EQ(Admin("GET", "/admin/v1/tenants/acme").status, 404);
  EXPECT_TRUE(log_->Read(TenantId("acme"), log::PartitionFor("u", 4), Offset(0), 10)->empty());
}

TEST_F(ApiTest, PlacementIsKeptOnOneNodeButASlotIsRefusedOutsideACluster) {
  auto slot = Admin("POST", "/admin/v1/tenants", R"({"id":"acme","placement":{"slot":3}})");
  EXPECT_EQ(slot.status, 400);
  EXPECT_NE(slot.body.find("'placement.slot'"), std::string::npos) << slot.body;
  EXPECT_EQ(Admin("GET", "/admin/v1/tenants/acme").status, 404);  // nothing half-created
  auto made =
      Admin("POST", "/admin/v1/tenants", R"({"id":"acme","placement":{"weight":20,"group":"eu"}})");
  ASSERT_EQ(made.status, 201) << made.body;
  EXPECT_EQ(json::parse(made.body)["placement"],
            json::parse(R"({"weight":20,"group":"eu","slot":null})"));
  auto heavier = Admin("PATCH", "/admin/v1/tenants/acme", R"({"placement":{"weight":30}})");
  ASSERT_EQ(heavier.status, 200) << heavier.body;
  EXPECT_EQ(json::parse(heavier.body)["placement"]["weight"], 30);
  auto regroup = Admin("PATCH", "/admin/v1/tenants/acme", R"({"placement":{"group":"us"}})");
  EXPECT_EQ(regroup.status, 409) << regroup.body;
  EXPECT_NE(regroup.body.find("'placement.group'"), std::string::npos) << regroup.body;
  EXPECT_EQ(json::parse(Admin("GET", "/admin/v1/tenants/acme").body)["placement"]["group"], "eu");
}

// analytics.js in a browser: the short routes, text/plain bodies with the write key inside.
TEST_F(ApiTest, TheShortRoutesOfAnalyticsJsStoreLikeTheLongOnes) {
  Keys k = CreateTenant("acme");
  auto send = [&](const std::string& route, const std::string& fields) {
    return client_->Request("POST", "/v1/" + route,
                            R"({"writeKey":")" + k.write + R"(",)" + fields + "}",
                            {"Content-Type: text/plain;charset=UTF-8"});
  };
  EXPECT_EQ(send("t", R"("anonymousId":"a1","event":"Viewed","messageId":"t1")").status, 200);
  EXPECT_EQ(send("p", R"("anonymousId":"a1","name":"Pricing","messageId":"p1")").status, 200);
  EXPECT_EQ(send("i", R"("anonymousId":"a1","userId":"u1","messageId":"i1")").status, 200);
  EXPECT_EQ(send("g", R"("userId":"u1","groupId":"g1","messageId":"g1")").status, 200);
  EXPECT_EQ(send("s", R"("userId":"u1","name":"Home","messageId":"s1")").status, 200);
  EXPECT_EQ(send("a", R"("userId":"u1","previousId":"a1","messageId":"a1")").status, 200);
  EXPECT_EQ(
      send("b", R"("batch":[{"type":"track","userId":"u2","event":"x","messageId":"b1"}])").status,
      200);
  // a1 is u1's anonymous id: its person's timeline holds the track and page of a1 and the
  // identify, group, screen and alias of u1.
  EXPECT_EQ(StoredCount(k.api, "a1"), 6u);
  EXPECT_EQ(StoredCount(k.api, "u2"), 1u);
  EXPECT_EQ(send("x", R"("userId":"u1")").status, 404);
  // A type's first letter is a route; a wrong type in a short route's body is named.
  auto wrong = send("t", R"("type":"page","userId":"u1","name":"n")");
  EXPECT_EQ(wrong.status, 400) << wrong.body;
}

TEST_F(ApiTest, BrowserRequestsGetCorsAnswersAndOnlyAllowedOriginsStore) {
  Keys k = CreateTenant("acme");
  auto patched = Admin("PATCH", "/admin/v1/tenants/acme",
                       R"({"web":{"allowed_origins":["https://Shop.Example.com",
                           "http://localhost:8080","https://*.example.org"]}})");
  ASSERT_EQ(patched.status, 200) << patched.body;
  EXPECT_EQ(json::parse(patched.body)["web"]["allowed_origins"][0], "https://shop.example.com");

  // Preflights name no tenant: answered for any origin, cached a day.
  auto pre =
      client_->Request("OPTIONS", "/v1/t", {},
                       {"Origin: https://elsewhere.com", "Access-Control-Request-Method: POST"});
  EXPECT_EQ(pre.status, 204);
  EXPECT_EQ(pre.headers["access-control-allow-origin"], "https://elsewhere.com");
  EXPECT_NE(pre.headers["access-control-allow-methods"].find("POST"), std::string::npos);
  EXPECT_EQ(pre.headers["access-control-max-age"], "86400");
  // Routes for servers (API key) get no CORS answer.
  auto leads = client_->Request("OPTIONS", "/v1/leads", {}, {"Origin: https://a.com"});
  EXPECT_NE(leads.status, 204);
  EXPECT_EQ(leads.headers.count("access-control-allow-origin"), 0u);

  auto from = [&](const std::string& origin, const std::string& id) {
    return client_->Request(
        "POST", "/v1/t",
        R"({"writeKey":")" + k.write + R"(","userId":"u","event":"e","messageId":")" + id + "\"}",
        {"Content-Type: text/plain", "Origin: " + origin});
  };
  for (const char* ok : {"https://shop.example.com", "http://localhost:8080",
                         "https://a.example.org", "https://x.y.example.org"}) {
    auto r = from(ok, std::string("ok-") + ok);
    EXPECT_EQ(r.status, 200) << ok << " " << r.body;
    EXPECT_EQ(r.headers["access-control-allow-origin"], ok);
  }
  for (const char* refused :
       {"https://evil.com", "http://shop.example.com", "https://example.org",
        "http://localhost:8081", "https://shop.example.com.evil.com", "null"}) {
    auto r = from(refused, std::string("no-") + refused);
    EXPECT_EQ(r.status, 403) << refused << " " << r.body;
    EXPECT_NE(r.body.find("web.allowed_origins"), std::string::npos) << r.body;
    EXPECT_EQ(r.headers.count("access-control-allow-origin"), 0u) << refused;
  }
  // Servers send no Origin: not checked.
  EXPECT_EQ(Ingest(k.write, "track", R"({"userId":"u","event":"e","messageId":"server"})").status,
            200);
  EXPECT_EQ(StoredCount(k.api, "u"), 5u);
  // An unknown write key's refusal is readable by the page.
  auto unknown = client_->Request("POST", "/v1/t", R"({"writeKey":"nope","userId":"u"})",
                                  {"Origin: https://shop.example.com"});
  EXPECT_EQ(unknown.status, 401);
  EXPECT_EQ(unknown.headers["access-control-allow-origin"], "https://shop.example.com");
}

TEST_F(ApiTest, TheSettingsAnalyticsJsLoadsPointItBackHere) {
  Keys k = CreateTenant("acme");
  auto r = client_->Request("GET", "/v1/projects/" + k.write + "/settings", {},
                            {"Host: track.example.com:8443", "X-Forwarded-Proto: https",
                             "Origin: https://shop.example.com"});
  ASSERT_EQ(r.status, 200) << r.body;
  json s = json::parse(r.body);
  EXPECT_EQ(s["integrations"]["Segment.io"]["apiKey"], k.write);
  EXPECT_EQ(s["integrations"]["Segment.io"]["apiHost"], "track.example.com:8443/v1");
  EXPECT_EQ(s["integrations"]["Segment.io"]["protocol"], "https");
  EXPECT_EQ(r.headers["access-control-allow-origin"], "https://shop.example.com");
  auto plain = client_->Request("GET", "/v1/projects/" + k.write + "/settings");
  EXPECT_EQ(json::parse(plain.body)["integrations"]["Segment.io"]["protocol"], "http");
  EXPECT_EQ(client_->Request("GET", "/v1/projects/nope/settings").status, 404);
  ASSERT_EQ(Admin("PATCH", "/admin/v1/tenants/acme",
                  R"({"web":{"allowed_origins":["https://shop.example.com"]}})")
                .status,
            200);
  EXPECT_EQ(client_
                ->Request("GET", "/v1/projects/" + k.write + "/settings", {},
                          {"Origin: https://evil.com"})
                .status,
            403);
}

TEST_F(ApiTest, ThePixelStoresItsBase64EventAndAnswersAGif) {
  Keys k = CreateTenant("acme");
  const std::string event = R"({"writeKey":")" + k.write +
                            R"(","userId":"reader","event":"Email Opened","messageId":"px1"})";
  auto r = client_->Request("GET", "/v1/pixel/track?data=" + Base64Encode(event));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.headers["content-type"], "image/gif");
  EXPECT_EQ(r.body.substr(0, 6), "GIF89a");
  EXPECT_EQ(r.body.size(), 43u);
  // URL-safe base64 without padding, and standard base64 whose '+' the URL turned into a space.
  std::string url_safe = Base64Encode(R"({"writeKey":")" + k.write +
                                      R"(","userId":"reader","event":"?>?","messageId":"px2"})");
  std::replace(url_safe.begin(), url_safe.end(), '+', '-');
  std::replace(url_safe.begin(), url_safe.end(), '/', '_');
  while (!url_safe.empty() && url_safe.back() == '=') url_safe.pop_back();
  EXPECT_EQ(client_->Request("GET", "/v1/pixel/track?data=" + url_safe).status, 200);
  EXPECT_EQ(StoredCount(k.api, "reader"), 2u);

  auto missing = client_->Request("GET", "/v1/pixel/track");
  EXPECT_EQ(missing.status, 400);
  EXPECT_NE(missing.body.find("'data'"), std::string::npos) << missing.body;
  auto garbled = client_->Request("GET", "/v1/pixel/track?data=%25%25%25");
  EXPECT_EQ(garbled.status, 400);
  EXPECT_NE(garbled.body.find("'data'"), std::string::npos) << garbled.body;
  auto invalid = client_->Request(
      "GET", "/v1/pixel/track?data=" +
                 Base64Encode(R"({"writeKey":")" + k.write + R"(","userId":"reader"})"));
  EXPECT_EQ(invalid.status, 400);
  EXPECT_NE(invalid.body.find("event"), std::string::npos) << invalid.body;
  // JSON that cannot be read has no write key either.
  EXPECT_EQ(client_->Request("GET", "/v1/pixel/track?data=" + Base64Encode("[1,2")).status, 401);
  auto no_key = client_->Request(
      "GET", "/v1/pixel/track?data=" + Base64Encode(R"({"userId":"u","event":"e"})"));
  EXPECT_EQ(no_key.status, 401);
  EXPECT_EQ(client_->Request("GET", "/v1/pixel/bogus?data=" + Base64Encode(event)).status, 404);
  EXPECT_EQ(StoredCount(k.api, "reader"), 2u);
}

TEST_F(ApiTest, BotsAreDroppedAndCountedUnlessTheTenantKeepsThem) {
  Keys k = CreateTenant("acme");
  auto send = [&](const std::string& ua, const std::string& id) {
    return client_->Request("POST", "/v1/track",
                            R"({"userId":"u","event":"e","messageId":")" + id + "\"}",
                            {BasicAuth(k.write), "User-Agent: " + ua});
  };
  const std::string googlebot =
      "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
  auto dropped = send(googlebot, "b1");
  EXPECT_EQ(dropped.status, 200);
  EXPECT_EQ(json::parse(dropped.body)["dropped"], "bot");
  EXPECT_EQ(send("Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0 Safari/537.36", "h1").status, 200);
  EXPECT_EQ(StoredCount(k.api, "u"), 1u);
  EXPECT_NE(client_->Request("GET", "/metrics")
                .body.find(R"(fairway_ingest_events_total{tenant="acme",outcome="bot"} 1)"),
            std::string::npos);
  ASSERT_EQ(Admin("PATCH", "/admin/v1/tenants/acme", R"({"web":{"drop_bots":false}})").status, 200);
  EXPECT_EQ(send(googlebot, "b2").status, 200);
  EXPECT_EQ(StoredCount(k.api, "u"), 2u);
}

TEST_F(ApiTest, BrowsersEventsAreEnrichedAndServersEventsKeepWhatTheySent) {
  Keys k = CreateTenant("acme");
  const std::string iphone =
      "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
      "like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
  auto browser = client_->Request(
      "POST", "/v1/p",
      R"({"writeKey":")" + k.write +
          R"(","userId":"v","name":"Pricing","messageId":"p1","context":{"page":{"url":"https://shop.example.com/pricing?utm_source=news&utm_medium=email","referrer":"https://t.co/x"}}})",
      {"Content-Type: text/plain", "Origin: https://shop.example.com", "User-Agent: " + iphone});
  ASSERT_EQ(browser.status, 200) << browser.body;
  // A server's message: nothing of the visitor in it (its own page URL is not), nothing added.
  ASSERT_EQ(
      client_
          ->Request(
              "POST", "/v1/track",
              R"({"userId":"v","event":"Server Side","messageId":"s1","properties":{"url":"https://a.com/?utm_source=x"}})",
              {BasicAuth(k.write), "User-Agent: analytics-node-next/1.0"})
          .status,
      200);
  json page = Activities(k.api, "lead=v&limit=10");
  json stored_page, stored_track;
  for (const auto& a : page["data"]) {
    if (a["messageId"] == "p1") stored_page = a;
    if (a["messageId"] == "s1") stored_track = a;
  }
  ASSERT_FALSE(stored_page.is_null()) << page.dump();
  const json& ctx = stored_page["context"];
  EXPECT_EQ(ctx["ip"], "127.0.0.1");
  EXPECT_EQ(ctx["userAgent"], iphone);
  EXPECT_EQ(ctx["os"]["name"], "iOS");
  EXPECT_EQ(ctx["device"]["type"], "mobile");
  EXPECT_EQ(ctx["browser"]["name"], "Mobile Safari");
  EXPECT_EQ(ctx["campaign"], json::parse(R"({"source":"news","medium":"email"})"));
  EXPECT_EQ(ctx["referrer"], json::parse(R"({"type":"social","url":"https://t.co/x"})"));
  EXPECT_FALSE(ctx.contains("location")) << "loopback has no country";
  ASSERT_FALSE(stored_track.is_null());
  EXPECT_FALSE(stored_track.contains("context")) << stored_track.dump();

  // A server passing a visitor's address on: its country is found; the tenant may keep only an
  // anonymous address, and may turn enrichment off.
  ASSERT_EQ(Admin("PATCH", "/admin/v1/tenants/acme", R"({"web":{"anonymize_ip":true}})").status,
            200);
  ASSERT_EQ(Ingest(k.write, "track",
                   R"({"userId":"w","event":"e","messageId":"w1","context":{"ip":"8.8.8.8"}})")
                .status,
            200);
  ASSERT_EQ(Admin("PATCH", "/admin/v1/tenants/acme", R"({"web":{"enrich":false}})").status, 200);
  ASSERT_EQ(Ingest(k.write, "track",
                   R"({"userId":"w","event":"e","messageId":"w2","context":{"ip":"8.8.8.8"}})")
                .status,
            200);
  json w = Activities(k.api, "lead=w&limit=10");
  std::map<std::string, json> by_id;
  for (const auto& a : w["data"]) by_id[a["messageId"]] = a["context"];
  EXPECT_EQ(by_id["w1"]["ip"], "8.8.8.0");
  EXPECT_EQ(by_id["w1"]["location"]["country_code"], "US");
  EXPECT_EQ(by_id["w2"], json::parse(R"({"ip":"8.8.8.8"})"));
}

TEST_F(ApiTest, TenantLifecycle) {
  auto bad = Admin("POST", "/admin/v1/tenants", R"({"id":"acme","timezone":"Nowhere/Land"})");
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.body.find("timezone"), std::string::npos);
  EXPECT_EQ(Admin("POST", "/admin/v1/tenants", R"({"name":"x"})").status, 400);
  Keys k = CreateTenant("acme");
  EXPECT_EQ(Admin("POST", "/admin/v1/tenants", R"({"id":"acme"})").status, 409);
  auto list = json::parse(Admin("GET", "/admin/v1/tenants").body);
  ASSERT_EQ(list["tenants"].size(), 1u);
  EXPECT_FALSE(list["tenants"][0].contains("write_key"));
  auto got = json::parse(Admin("GET", "/admin/v1/tenants/acme").body);
  EXPECT_EQ(got["timezone"], "Europe/Berlin");
  EXPECT_EQ(Admin("GET", "/admin/v1/tenants/nope").status, 404);
  auto patched = Admin("PATCH", "/admin/v1/tenants/acme", R"({"quotas":{"retention_days":7}})");
  ASSERT_EQ(patched.status, 200);
  EXPECT_EQ(json::parse(patched.body)["quotas"]["retention_days"], 7);

  ASSERT_EQ(Ingest(k.write, "track", R"({"userId":"u","event":"e"})").status, 200);
  auto rotated = Admin("POST", "/admin/v1/tenants/acme/rotate-keys");
  ASSERT_EQ(rotated.status, 200);
  Keys k2{json::parse(rotated.body)["write_key"], json::parse(rotated.body)["api_key"]};
  EXPECT_EQ(Ingest(k.write, "track", R"({"userId":"u","event":"e"})").status, 401);
  EXPECT_EQ(StoredCount(k2.api, "u"), 1u);

  ASSERT_EQ(Admin("DELETE", "/admin/v1/tenants/acme").status, 200);
  EXPECT_EQ(Admin("GET", "/admin/v1/tenants/acme").status, 404);
  EXPECT_EQ(Ingest(k2.write, "track", R"({"userId":"u","event":"e"})").status, 401);
  // Re-created with the same id: no data of the old tenant is visible.
  Keys k3 = CreateTenant("acme");
  EXPECT_EQ(StoredCount(k3.api, "u"), 0u);
}

TEST_F(ApiTest, ActivitiesPaginationAndParameterErrors) {
  Keys k = CreateTenant("acme");
  std::string batch = R"({"batch":[)";
  for (int i = 0; i < 25; ++i) {
    if (i) batch += ",";
    batch += R"({"type":"track","userId":"u","event":"e)" + std::to_string(i) +
             R"(","timestamp":"2024-01-01T00:00:)" + (i < 10 ? "0" : "") + std::to_string(i) +
             R"(Z"})";
  }
  batch += "]}";
  ASSERT_EQ(Ingest(k.write, "batch", batch).status, 200);
  std::vector<std::string> events;
  std::string cursor;
  do {
    json page = Activities(
        k.api, "lead=u&type=track&limit=10" + (cursor.empty() ? "" : "&cursor=" + cursor));
    for (auto& a : page["data"]) events.push_back(a["event"]);
    cursor = page["next_cursor"].is_null() ? "" : page["next_cursor"].get<std::string>();
  } while (!cursor.empty());
  ASSERT_EQ(events.size(), 25u);
  EXPECT_EQ(events.front(), "e24");
  EXPECT_EQ(events.back(), "e0");
  json asc = Activities(
      k.api, "lead=u&type=track&order=asc&since=2024-01-01T00:00:05Z&until=2024-01-01T00:00:07Z");
  ASSERT_EQ(asc["data"].size(), 3u);
  EXPECT_EQ(asc["data"][0]["event"], "e5");
  for (const char* q : {"", "lead=u&limit=0", "lead=u&since=yesterday", "lead=u&type=click",
                        "lead=u&order=up", "lead=u&bogus=1", "lead=u&cursor=zzz"}) {
    auto r = client_->Request("GET", std::string("/v1/activities?") + q, {}, {BearerAuth(k.api)});
    EXPECT_EQ(r.status, 400) << q << " -> " << r.body;
  }
}

TEST_F(ApiTest, OpsEndpoints) {
  EXPECT_EQ(client_->Request("GET", "/healthz").status, 200);
  EXPECT_EQ(client_->Request("GET", "/readyz").status, 200);
  Keys k = CreateTenant("acme");
  ASSERT_EQ(Ingest(k.write, "track", R"({"userId":"u","event":"e"})").status, 200);
  auto m = client_->Request("GET", "/metrics");
  ASSERT_EQ(m.status, 200);
  for (const char* want : {R"(fairway_ingest_events_total{tenant="acme",outcome="accepted"} 1)",
                           "fairway_http_request_seconds_bucket", "fairway_log_commit_events_count",
                           "fairway_log_sync_seconds_bucket", "fairway_log_disk_bytes"}) {
    EXPECT_NE(m.body.find(want), std::string::npos) << want;
  }
  EXPECT_EQ(client_->Request("GET", "/nope").status, 404);
}

json Get(const ClientResponse& r, int status) {
  EXPECT_EQ(r.status, status) << r.body;
  return r.body.empty() ? json() : json::parse(r.body);
}

// PATCH of the partition count: the current layout is sealed and a new one follows it; every
// activity before and after is kept and processed; bad counts are refused naming the field.
void ApiTest::ExpectRoundsProcessed(const Keys& k, size_t per_lead, size_t partitions) {
  ASSERT_TRUE(engine_->WaitIdle(std::chrono::seconds(60)));
  auto auth = std::vector<std::string>{BearerAuth(k.api)};
  for (int u = 0; u < 5; ++u) {
    const std::string lead = fmt::format("u{}", u);
    EXPECT_EQ(StoredCount(k.api, lead), per_lead) << lead;
    json profile = Get(client_->Request("GET", "/v1/leads/" + lead, {}, auth), 200);
    EXPECT_EQ(profile["activity_count"], per_lead) << lead;
  }
  json status = Get(Admin("GET", "/admin/v1/tenants/acme/processing"), 200);
  for (const auto& p : status["processors"]) {
    EXPECT_EQ(p["partitions"].size(), partitions) << p["name"];
    EXPECT_EQ(p["lag_events"], 0) << p["name"];
  }
}

TEST_F(ApiTest, APartitionCountChangeStartsANewLayoutAndLosesNothing) {
  Keys k = CreateTenant("acme");
  SendRound(k.write, 1);
  const uint32_t before = json::parse(Admin("GET", "/admin/v1/tenants/acme").body)["partitions"];
  json grown = Get(Admin("PATCH", "/admin/v1/tenants/acme", R"({"partitions":8})"), 200);
  EXPECT_EQ(grown["partitions"], 8);
  EXPECT_EQ(grown["first_partition"], before);
  ASSERT_EQ(grown["sealed_layouts"].size(), 1u);
  EXPECT_EQ(grown["sealed_layouts"][0]["partitions"], before);
  EXPECT_EQ(grown["sealed_layouts"][0]["first_partition"], 0);
  uint64_t sealed = 0;
  for (const auto& e : grown["sealed_layouts"][0]["ends"]) sealed += e.get<uint64_t>();
  EXPECT_GE(sealed, 20u);  // the 20 tracks, and any lead_created already appended

  for (const char* bad : {R"({"partitions":0})", R"({"partitions":257})", R"({"partitions":"8"})",
                          R"({"partitions":2.5})"}) {
    json refused = Get(Admin("PATCH", "/admin/v1/tenants/acme", bad), 400);
    EXPECT_NE(refused["error"]["message"].get<std::string>().find("'partitions'"),
              std::string::npos)
        << bad;
  }
  // The same count again changes nothing.
  json same = Get(Admin("PATCH", "/admin/v1/tenants/acme", R"({"partitions":8})"), 200);
  EXPECT_EQ(same["sealed_layouts"].size(), 1u);
  EXPECT_EQ(same["first_partition"], before);

  SendRound(k.write, 2);
  // A messageId of the old layout sent again is still recognised.
  ASSERT_EQ(Ingest(k.write, "track", R"({"userId":"u0","event":"e","messageId":"r1-0"})").status,
            200);
  ExpectRoundsProcessed(k, 8, before + 8);
}

// The real log, whose partition-layout changes can be made to fail once the new layout has
// started (a seal that timed out on Kafka), and whose record of layouts can be made unreadable
// for a while (Kafka down).
class FlakyLayoutsLog final : public log::ActivityLog {
 public:
  explicit FlakyLayoutsLog(log::ActivityLog* log) : log_(log) {}
  std::atomic<bool> fail_seal{false};
  std::atomic<bool> layouts_unreadable{false};

  void Start() override { log_->Start(); }
  void Stop() override { log_->Stop(); }
  void Append(log::AppendRequest request, log::AppendCallback done) override {
    log_->Append(std::move(request), std::move(done));
  }
  Result<std::vector<log::LogEntry>> Read(const TenantId& t, PartitionId p, Offset from,
                                          size_t max) override {
    return log_->Read(t, p, from, max);
  }
  Result<Offset> HighWatermark(const TenantId& t, PartitionId p) override {
    return log_->HighWatermark(t, p);
  }
  Result<Offset> LowWatermark(const TenantId& t, PartitionId p) override {
    return log_->LowWatermark(t, p);
  }
  Result<uint64_t> ApplyRetention(const TenantId& t, uint32_t n, int64_t cutoff) override {
    return log_->ApplyRetention(t, n, cutoff);
  }
  Status DropTenant(const TenantId& t) override { return log_->DropTenant(t); }
  Status ReopenTenant(const TenantId& t) override { return log_->ReopenTenant(t); }
  Result<std::vector<uint64_t>> StartLayout(const model::TenantConfig& t, uint32_t n) override {
    auto ends = log_->StartLayout(t, n);
    if (ends.ok() && fail_seal) return Unavailable("sealing the old layout timed out");
    return ends;
  }
  Result<std::vector<model::PartitionLayout>> Layouts(const TenantId& t) override {
    if (layouts_unreadable) return Unavailable("the log's layouts cannot be read now");
    return log_->Layouts(t);
  }
  Status Health() override { return log_->Health(); }
  void SetAppendListener(log::AppendListener listener) override {
    log_->SetAppendListener(std::move(listener));
  }

 private:
  log::ActivityLog* log_;
};

class ApiFlakyLayoutsTest : public ApiTest {
 protected:
  log::ActivityLog* ApiLog() override {
    flaky_ = std::make_unique<FlakyLayoutsLog>(log_.get());
    return flaky_.get();
  }
  std::unique_ptr<FlakyLayoutsLog> flaky_;
};

// A partition-count change whose new layout the log started, but whose answer was an error
// (the seal timed out) while the log's record could not be read: the registry and processing
// take the new layout once it can be read, without another PATCH or a restart, and nothing
// appended meanwhile is lost.
TEST_F(ApiFlakyLayoutsTest, ALayoutTheLogStartedWithoutTheRegistryIsTakenOnceReadable) {
  Keys k = CreateTenant("acme");
  SendRound(k.write, 1);
  const uint32_t before = json::parse(Admin("GET", "/admin/v1/tenants/acme").body)["partitions"];
  flaky_->fail_seal = true;
  flaky_->layouts_unreadable = true;
  json failed = Get(Admin("PATCH", "/admin/v1/tenants/acme", R"({"partitions":8})"), 503);
  EXPECT_NE(failed["error"]["message"].get<std::string>().find("timed out"), std::string::npos);
  flaky_->fail_seal = false;
  json unchanged = Get(Admin("GET", "/admin/v1/tenants/acme"), 200);
  EXPECT_EQ(unchanged["partitions"], before);
  EXPECT_TRUE(unchanged["sealed_layouts"].empty());
  // The log routes appends to the layout it started; processing does not know it yet.
  SendRound(k.write, 2);
  json waiting = Get(Admin("GET", "/admin/v1/tenants/acme/processing"), 200);
  EXPECT_EQ(waiting["processors"][0]["partitions"].size(), before);

  // The periodic pass, once the log's record can be read.
  api_->FollowLogLayouts();  // still unreadable: nothing changes, and nothing breaks
  flaky_->layouts_unreadable = false;
  api_->FollowLogLayouts();
  json taken = Get(Admin("GET", "/admin/v1/tenants/acme"), 200);  // after the pass, in order
  EXPECT_EQ(taken["partitions"], 8);
  EXPECT_EQ(taken["first_partition"], before);
  ASSERT_EQ(taken["sealed_layouts"].size(), 1u);
  ExpectRoundsProcessed(k, 8, before + 8);
}

// GET /admin/v1/cluster: every tenant's tasks (one per log partition) with their owner (this
// node), each processor's committed offset and lag, and what the node keeps of the tenant.
TEST_F(ApiTest, TheClusterViewShowsEachTasksOwnerLagAndStateSize) {
  Keys acme = CreateTenant("acme");
  CreateTenant("beta");
  std::string batch = R"({"batch":[)";
  for (int i = 0; i < 2000; ++i) {
    if (i > 0) batch += ",";
    batch += fmt::format(
        R"({{"type":"identify","userId":"user-{}","traits":{{"email":"user-{}@example.com",)"
        R"("plan":"pro","company":"Company number {}"}}}})",
        i, i, i);
  }
  ASSERT_EQ(Ingest(acme.write, "batch", batch + "]}").status, 200);
  ASSERT_TRUE(engine_->WaitIdle(std::chrono::seconds(60)));
  ASSERT_OK(store_->Flush());
  // With the leads processor paused, what acme is sent next waits: its lag.
  Get(Admin("POST", "/admin/v1/tenants/acme/processing/leads/disable"), 200);
  for (int i = 0; i < 10; ++i) {
    ASSERT_EQ(
        Ingest(acme.write, "track", fmt::format(R"({{"userId":"late-{}","event":"e"}})", i)).status,
        200);
  }
  ASSERT_TRUE(engine_->WaitIdle(std::chrono::seconds(60)));

  json view = Get(Admin("GET", "/admin/v1/cluster"), 200);
  EXPECT_EQ(view["node"], "fairway");
  ASSERT_EQ(view["nodes"].size(), 1u);
  EXPECT_EQ(view["nodes"][0]["id"], "fairway");
  ASSERT_EQ(view["data"].size(), 2u);
  EXPECT_TRUE(view["next_cursor"].is_null());
  const json& a = view["data"][0];
  const json& b = view["data"][1];
  EXPECT_EQ(a["tenant"], "acme");
  EXPECT_EQ(b["tenant"], "beta");
  EXPECT_EQ(a["owner"], "fairway");
  ASSERT_EQ(a["tasks"].size(), 4u);
  uint64_t leads_lag = 0, committed = 0;
  for (const auto& task : a["tasks"]) {
    EXPECT_EQ(task["owner"], "fairway");
    EXPECT_FALSE(task.contains("topic")) << "the embedded log has no topics";
    for (const auto& p : task["processors"]) {
      if (p["name"] == "leads") {
        leads_lag += p["lag_events"].get<uint64_t>();
        committed += p["committed"].get<uint64_t>();
      } else {
        EXPECT_EQ(p["lag_events"], 0) << p["name"];
      }
    }
  }
  EXPECT_EQ(leads_lag, 10u);
  EXPECT_GE(committed, 2000u);
  // 2,000 profiles take room (compressed); a tenant with nothing takes next to none.
  EXPECT_GT(a["state_bytes"].get<uint64_t>(), 20'000u);
  EXPECT_GT(a["log_bytes"].get<uint64_t>(), 0u);
  EXPECT_LT(b["state_bytes"].get<uint64_t>(), a["state_bytes"].get<uint64_t>() / 10);

  // Pages of tenants, in id order.
  json first = Get(Admin("GET", "/admin/v1/cluster?limit=1"), 200);
  ASSERT_EQ(first["data"].size(), 1u);
  EXPECT_EQ(first["data"][0]["tenant"], "acme");
  ASSERT_EQ(first["next_cursor"], "acme");
  json second = Get(Admin("GET", "/admin/v1/cluster?limit=1&cursor=acme"), 200);
  ASSERT_EQ(second["data"].size(), 1u);
  EXPECT_EQ(second["data"][0]["tenant"], "beta");
  EXPECT_TRUE(second["next_cursor"].is_null());
  json only = Get(Admin("GET", "/admin/v1/cluster?tenant=beta"), 200);
  ASSERT_EQ(only["data"].size(), 1u);
  EXPECT_EQ(only["data"][0]["tenant"], "beta");
  Get(Admin("GET", "/admin/v1/cluster?tenant=nope"), 404);
  for (const auto& [query, name] :
       std::vector<std::pair<std::string, std::string>>{{"limit=0", "'limit'"},
                                                        {"limit=1001", "'limit'"},
                                                        {"limit=x", "'limit'"},
                                                        {"owner=me", "'owner'"}}) {
    json refused = Get(Admin("GET", "/admin/v1/cluster?" + query), 400);
    EXPECT_NE(refused["error"]["message"].get<std::string>().find(name), std::string::npos)
        << query;
  }
  Get(Admin("POST", "/admin/v1/cluster"), 400);
  EXPECT_EQ(client_->Request("GET", "/admin/v1/cluster").status, 401);
}

TEST_F(ApiTest, LeadsMergeAnonymousHistoryAndAreFoundByAnyIdentity) {
  Keys k = CreateTenant("acme");
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(Ingest(k.write, "page",
                     R"({"anonymousId":"anon-1","name":"/pricing","timestamp":"2026-11-20T10:0)" +
                         std::to_string(i) + R"(:00Z"})")
                  .status,
              200);
  }
  ASSERT_EQ(Ingest(k.write, "identify",
                   R"({"userId":"u1","anonymousId":"anon-1","timestamp":"2026-11-21T09:00:00Z",)"
                   R"("traits":{"email":"Ada@Example.com","plan":"pro"}})")
                .status,
            200);
  ASSERT_TRUE(engine_->WaitIdle(std::chrono::seconds(60)));
  auto auth = std::vector<std::string>{BearerAuth(k.api)};
  for (const std::string id : {"u1", "anon-1", "ada%40example.com"}) {
    json lead = Get(client_->Request("GET", "/v1/leads/" + id, {}, auth), 200);
    EXPECT_EQ(lead["id"], "u1") << id;
    EXPECT_EQ(lead["known"], true);
    EXPECT_EQ(lead["anonymous_ids"], json::array({"anon-1"}));
    EXPECT_EQ(lead["traits"]["plan"], "pro");
    EXPECT_EQ(lead["activity_count"], 4);
    uint64_t pricing = 0;
    for (const auto& c : lead["counters"]) {
      if (c["type"] == "page" && c["name"] == "/pricing") pricing += c["count"].get<uint64_t>();
    }
    EXPECT_EQ(pricing, 3u);
    // Any identity reads the person's whole timeline, each activity once: the anonymous
    // visits before the identify included, and the identify (indexed under both ids) once.
    json timeline =
        Get(client_->Request("GET", "/v1/activities?lead=" + id + "&limit=2", {}, auth), 200);
    std::vector<std::string> types;
    for (int pages = 0; pages < 5; ++pages) {
      for (const auto& a : timeline["data"]) types.push_back(a["type"]);
      if (timeline["next_cursor"].is_null()) break;
      timeline = Get(client_->Request("GET",
                                      "/v1/activities?lead=" + id + "&limit=2&cursor=" +
                                          timeline["next_cursor"].get<std::string>(),
                                      {}, auth),
                     200);
    }
    // The identify, then the three visits; the leads processor's own activities (lead_created,
    // identity_linked) are generated under u1 and listed too.
    std::vector<std::string> client;
    for (const auto& t : types) {
      if (t != "fairway") client.push_back(t);
    }
    EXPECT_EQ(client, (std::vector<std::string>{"identify", "page", "page", "page"})) << id;
  }
  // An id nobody knows lists what is indexed under exactly it: nothing.
  json none = Get(client_->Request("GET", "/v1/activities?lead=nobody", {}, auth), 200);
  EXPECT_TRUE(none["data"].empty());
  Get(client_->Request("GET", "/v1/leads/nobody", {}, auth), 404);
  // A write key reads nothing; another tenant's key does not see acme's leads.
  EXPECT_EQ(client_->Request("GET", "/v1/leads/u1", {}, {BasicAuth(k.write)}).status, 401);
  Keys other = CreateTenant("globex");
  EXPECT_EQ(client_->Request("GET", "/v1/leads/u1", {}, {BearerAuth(other.api)}).status, 404);
  EXPECT_EQ(client_->Request("POST", "/v1/leads/u1", "{}", auth).status, 400);
}

TEST_F(ApiTest, LeadListingFiltersAndPaginates) {
  Keys k = CreateTenant("acme");
  for (int i = 0; i < 5; ++i) {
    std::string plan = i % 2 == 0 ? "pro" : "free";
    ASSERT_EQ(Ingest(k.write, "identify",
                     R"({"userId":"user)" + std::to_string(i) + R"(","traits":{"plan":")" + plan +
                         R"("}})")
                  .status,
              200);
  }
  ASSERT_EQ(Ingest(k.write, "track", R"({"userId":"user1","event":"Demo Booked"})").status, 200);
  ASSERT_TRUE(engine_->WaitIdle(std::chrono::seconds(60)));
  auto auth = std::vector<std::string>{BearerAuth(k.api)};
  json pro = Get(client_->Request("GET", "/v1/leads?trait.plan=pro", {}, auth), 200);
  ASSERT_EQ(pro["data"].size(), 3u);
  EXPECT_EQ(pro["data"][0]["id"], "user0");
  EXPECT_TRUE(pro["next_cursor"].is_null());
  json booked = Get(client_->Request("GET",
                                     "/v1/leads?activity_type=track&activity_name=Demo+Booked"
                                     "&min_count=1&within_days=7",
                                     {}, auth),
                    200);
  ASSERT_EQ(booked["data"].size(), 1u);
  EXPECT_EQ(booked["data"][0]["id"], "user1");
  // Pages of two, following the cursor, visit every lead once.
  std::vector<std::string> seen;
  std::string cursor;
  for (int page = 0; page < 5; ++page) {
    json r =
        Get(client_->Request(
                "GET", "/v1/leads?limit=2" + (cursor.empty() ? "" : "&cursor=" + cursor), {}, auth),
            200);
    for (const auto& l : r["data"]) seen.push_back(l["id"]);
    if (r["next_cursor"].is_null()) break;
    cursor = r["next_cursor"];
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"user0", "user1", "user2", "user3", "user4"}));
  json bad = Get(client_->Request("GET", "/v1/leads?colour=red", {}, auth), 400);
  EXPECT_NE(bad["error"]["message"].get<std::string>().find("colour"), std::string::npos);
  bad = Get(client_->Request("GET", "/v1/leads?cursor=garbage", {}, auth), 400);
  EXPECT_NE(bad["error"]["message"].get<std::string>().find("cursor"), std::string::npos);
  bad = Get(client_->Request("GET", "/v1/leads?min_count=zero", {}, auth), 400);
  EXPECT_NE(bad["error"]["message"].get<std::string>().find("min_count"), std::string::npos);
}

TEST_F(ApiTest, ProcessingStatusDeadLettersAndReplay) {
  Keys k = CreateTenant("acme");
  ASSERT_EQ(Ingest(k.write, "track", R"({"userId":"u1","event":"Signed Up"})").status, 200);
  ASSERT_EQ(Ingest(k.write, "track", R"({"userId":"u1","event":"Poison"})").status, 200);
  ASSERT_EQ(Ingest(k.write, "track", R"({"userId":"u1","event":"Upgraded"})").status, 200);
  ASSERT_TRUE(engine_->WaitIdle(std::chrono::seconds(60)));

  json status = Get(Admin("GET", "/admin/v1/tenants/acme/processing"), 200);
  ASSERT_EQ(status["processors"].size(), 2u);
  json leads = status["processors"][0], poison = status["processors"][1];
  EXPECT_EQ(leads["name"], "leads");
  EXPECT_EQ(leads["state"], "idle");
  // The three tracks and the lead_created the first one generated.
  EXPECT_EQ(leads["processed_total"], 4);
  EXPECT_EQ(leads["lag_events"], 0);
  EXPECT_EQ(poison["processed_total"], 3);
  EXPECT_EQ(poison["dead_letters_total"], 1);
  EXPECT_EQ(poison["last_error"], "poisoned");

  json dl = Get(Admin("GET", "/admin/v1/tenants/acme/dead-letters?processor=poison"), 200);
  ASSERT_EQ(dl["data"].size(), 1u);
  EXPECT_EQ(dl["data"][0]["reason"], "poisoned");
  EXPECT_EQ(dl["data"][0]["error_class"], "permanent");
  EXPECT_EQ(dl["data"][0]["activity"]["event"], "Poison");
  EXPECT_TRUE(dl["next_cursor"].is_null());
  // Bad requests name what is wrong.
  json bad = Get(Admin("GET", "/admin/v1/tenants/acme/dead-letters"), 400);
  EXPECT_NE(bad["error"]["message"].get<std::string>().find("processor"), std::string::npos);
  bad = Get(Admin("POST", "/admin/v1/tenants/acme/dead-letters/replay", R"({"ids":"x"})"), 400);
  EXPECT_NE(bad["error"]["message"].get<std::string>().find("ids"), std::string::npos);
  Get(Admin("GET", "/admin/v1/tenants/acme/dead-letters?processor=nope"), 404);
  Get(Admin("GET", "/admin/v1/tenants/nope/processing"), 404);

  poison_->healed = true;
  json replay = Get(Admin("POST", "/admin/v1/tenants/acme/dead-letters/replay",
                          R"({"processor":"poison","ids":[")" +
                              dl["data"][0]["id"].get<std::string>() + R"("]})"),
                    200);
  EXPECT_EQ(replay["queued"], 1);
  ASSERT_TRUE(engine_->WaitIdle(std::chrono::seconds(60)));
  dl = Get(Admin("GET", "/admin/v1/tenants/acme/dead-letters?processor=poison"), 200);
  EXPECT_TRUE(dl["data"].empty());

  // Disable and enable by API; the metrics carry the engine's series.
  json off = Get(Admin("POST", "/admin/v1/tenants/acme/processing/leads/disable"), 200);
  EXPECT_EQ(off["state"], "disabled");
  json on = Get(Admin("POST", "/admin/v1/tenants/acme/processing/leads/enable"), 200);
  EXPECT_EQ(on["enabled"], true);
  Get(Admin("POST", "/admin/v1/tenants/acme/processing/leads/explode"), 404);
  Get(Admin("POST", "/admin/v1/tenants/acme/processing/nope/resume"), 404);
  std::string metrics = client_->Request("GET", "/metrics").body;
  EXPECT_NE(metrics.find(R"(fairway_engine_processed_total{tenant="acme",processor="leads"} 4)"),
            std::string::npos);
  EXPECT_NE(metrics.find("fairway_engine_lag_events"), std::string::npos);

  // Deleting the tenant removes its processing too.
  Get(Admin("DELETE", "/admin/v1/tenants/acme"), 200);
  Get(Admin("GET", "/admin/v1/tenants/acme/processing"), 404);
}

}  // namespace
}  // namespace fairway::http

namespace fairway::http {
namespace {

TEST_F(ApiTest, CampaignsAreManagedAndValidatedWithTheApiKey) {
  Keys k = CreateTenant("acme");
  Keys other = CreateTenant("other");
  auto call = [&](const std::string& method, const std::string& path, const std::string& body,
                  const std::string& key) {
    return client_->Request(method, path, body, {BearerAuth(key)});
  };
  const std::string def = R"({"id":"welcome","name":"Welcome",
    "triggers":[{"type":"track","event":"Signed Up"},{"type":"campaign_requested"}],
    "flow":[{"action":"change_score","change":5},
            {"choices":[{"if":{"field":"plan","op":"is","value":"pro"},"then":{"action":"add_tag","tag":"pro"}}]}]})";
  // Validation names the path of the bad field.
  auto bad = call("POST", "/v1/campaigns",
                  R"({"id":"x","name":"X","triggers":[{"type":"track","event":"E"}],
                      "flow":[{"action":"change_score","change":1},
                              {"choices":[{"if":{"field":3},"then":null}]}]})",
                  k.api);
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_EQ(json::parse(bad.body)["error"]["message"],
            "flow[1].choices[0].if.field: must be a string");
  EXPECT_EQ(call("POST", "/v1/campaigns", def, k.write).status, 401);

  auto created = call("POST", "/v1/campaigns", def, k.api);
  ASSERT_EQ(created.status, 201) << created.body;
  json c = json::parse(created.body);
  EXPECT_EQ(c["id"], "welcome");
  EXPECT_EQ(c["status"], "inactive");
  EXPECT_EQ(c["version"], 1);
  EXPECT_EQ(c["definition"]["name"], "Welcome");
  EXPECT_EQ(call("POST", "/v1/campaigns", def, k.api).status, 409);
  // Another tenant's key sees nothing of it.
  EXPECT_EQ(call("GET", "/v1/campaigns/welcome", {}, other.api).status, 404);
  EXPECT_EQ(json::parse(call("GET", "/v1/campaigns", {}, other.api).body)["data"].size(), 0u);

  std::string renamed = def;
  renamed.replace(renamed.find("\"Welcome\""), 9, "\"Hello\"");
  auto put = call("PUT", "/v1/campaigns/welcome", renamed, k.api);
  ASSERT_EQ(put.status, 200) << put.body;
  EXPECT_EQ(json::parse(put.body)["version"], 2);
  EXPECT_EQ(json::parse(put.body)["definition"]["name"], "Hello");
  auto mismatch = call("PUT", "/v1/campaigns/nope", renamed, k.api);
  EXPECT_EQ(mismatch.status, 400);
  EXPECT_EQ(json::parse(mismatch.body)["error"]["message"],
            "id: is 'welcome' but the campaign is 'nope'");
  std::string no_id = renamed;
  no_id.erase(no_id.find(R"("id":"welcome",)"), 15);
  EXPECT_EQ(call("PUT", "/v1/campaigns/nope", no_id, k.api).status, 404);
  auto on = call("POST", "/v1/campaigns/welcome/activate", {}, k.api);
  EXPECT_EQ(json::parse(on.body)["status"], "active");
  json list = json::parse(call("GET", "/v1/campaigns?limit=10", {}, k.api).body);
  ASSERT_EQ(list["data"].size(), 1u);
  EXPECT_EQ(list["data"][0]["status"], "active");
  EXPECT_TRUE(list["next_cursor"].is_null());

  // Settings: a generated webhook secret; bad fields are named.
  json settings = json::parse(call("GET", "/v1/campaign-settings", {}, k.api).body);
  EXPECT_TRUE(settings["webhook_secret"].get<std::string>().starts_with("whsec_"));
  auto patched = call("PATCH", "/v1/campaign-settings", R"({"emails_per_day":3})", k.api);
  ASSERT_EQ(patched.status, 200) << patched.body;
  EXPECT_EQ(json::parse(patched.body)["emails_per_day"], 3);
  EXPECT_EQ(json::parse(patched.body)["webhook_secret"], settings["webhook_secret"]);
  auto bad_setting = call("PATCH", "/v1/campaign-settings", R"({"emails_per_day":-1})", k.api);
  EXPECT_EQ(bad_setting.status, 400);
  EXPECT_NE(bad_setting.body.find("emails_per_day"), std::string::npos);

  // A request reaches the log as a campaign_requested activity for the lead, with its tokens.
  auto trig = call("POST", "/v1/campaigns/welcome/trigger",
                   R"({"leads":["u1"],"tokens":{"offer":"20%"}})", k.api);
  EXPECT_EQ(trig.status, 202) << trig.body;
  json requested = Activities(k.api, "lead=u1&type=fairway");
  ASSERT_EQ(requested["data"].size(), 1u);
  EXPECT_EQ(requested["data"][0]["event"], "campaign_requested");
  EXPECT_EQ(requested["data"][0]["properties"]["requested"], "welcome");
  EXPECT_EQ(requested["data"][0]["properties"]["tokens"]["offer"], "20%");
  auto bad_trig = call("POST", "/v1/campaigns/welcome/trigger", R"({"leads":[]})", k.api);
  EXPECT_EQ(bad_trig.status, 400);
  EXPECT_NE(bad_trig.body.find("leads"), std::string::npos);

  // Statistics and the deliveries answer, and validate their parameters.
  auto stats =
      call("GET", "/v1/campaigns/welcome/stats?since=2026-01-01&until=2026-01-31", {}, k.api);
  ASSERT_EQ(stats.status, 200) << stats.body;
  EXPECT_EQ(json::parse(stats.body)["since"], "2026-01-01");
  EXPECT_EQ(json::parse(stats.body)["in_flow"], 0);
  EXPECT_EQ(call("GET", "/v1/campaigns/welcome/stats?since=yesterday", {}, k.api).status, 400);
  EXPECT_EQ(json::parse(call("GET", "/v1/deliveries?state=dead", {}, k.api).body)["data"].size(),
            0u);
  EXPECT_EQ(call("GET", "/v1/deliveries?state=lost", {}, k.api).status, 400);

  EXPECT_EQ(call("DELETE", "/v1/campaigns/welcome", {}, k.api).status, 200);
  EXPECT_EQ(call("GET", "/v1/campaigns/welcome", {}, k.api).status, 404);
}

TEST_F(ApiTest, CampaignRequestsGoThroughTheTenantsIngestAdmission) {
  const std::string def = R"({"id":"promo","name":"Promo",
      "triggers":[{"type":"campaign_requested"}],"flow":[{"action":"add_tag","tag":"x"}]})";
  auto leads = [](const std::string& prefix, int n) {
    std::string body = R"({"leads":[)";
    for (int i = 0; i < n; ++i) body += (i ? ",\"" : "\"") + prefix + std::to_string(i) + "\"";
    return body + "]}";
  };
  Keys k = CreateTenant("acme", R"({"ingest_rate":1,"ingest_burst":5})");
  auto call = [&](const Keys& keys, const std::string& path, const std::string& body) {
    return client_->Request("POST", path, body, {BearerAuth(keys.api)});
  };
  ASSERT_EQ(call(k, "/v1/campaigns", def).status, 201);
  ASSERT_EQ(call(k, "/v1/campaigns/promo/activate", {}).status, 200);
  // The burst admits 5 requested leads; 5 more a moment later are over the rate of 1/s.
  auto first = call(k, "/v1/campaigns/promo/trigger", leads("a", 5));
  ASSERT_EQ(first.status, 202) << first.body;
  auto refused = call(k, "/v1/campaigns/promo/trigger", leads("b", 5));
  ASSERT_EQ(refused.status, 429) << refused.body;
  EXPECT_GE(std::stoi(refused.headers["retry-after"]), 1);
  EXPECT_EQ(refused.headers["ratelimit-limit"], "5");
  EXPECT_NE(refused.body.find("ingest rate"), std::string::npos) << refused.body;
  // Nothing of the refused request was written.
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(Activities(k.api, "lead=b" + std::to_string(i))["data"].size(), 0u) << i;
  }
  EXPECT_EQ(Activities(k.api, "lead=a0&type=fairway")["data"].size(), 1u);
  // One bucket: ingest is refused too after the requests spent it.
  auto ingest = Ingest(k.write, "track", R"({"userId":"u","event":"E"})");
  EXPECT_EQ(ingest.status, 429) << ingest.body;

  // A flood of large requests (the way around the quota before) gets one request through: a
  // request larger than the burst is admitted only when the bucket is full, as for ingest.
  Keys f = CreateTenant("flood", R"({"ingest_rate":1,"ingest_burst":5})");
  ASSERT_EQ(call(f, "/v1/campaigns", def).status, 201);
  ASSERT_EQ(call(f, "/v1/campaigns/promo/activate", {}).status, 200);
  std::string thousand = leads("l", 1000);
  int accepted = 0, limited = 0;
  for (int i = 0; i < 10; ++i) {
    auto r = call(f, "/v1/campaigns/promo/trigger", thousand);
    accepted += r.status == 202;
    limited += r.status == 429;
  }
  EXPECT_EQ(accepted, 1);
  EXPECT_EQ(limited, 9);
  // A suspended tenant requests nothing, as it ingests nothing.
  ASSERT_EQ(Admin("POST", "/admin/v1/tenants/flood/suspend").status, 200);
  EXPECT_EQ(call(f, "/v1/campaigns/promo/trigger", leads("s", 1)).status, 403);
}

TEST_F(ApiTest, IngestRefusesMessagesNestedDeeperThanEveryReaderAcceptsNamingTheField) {
  Keys k = CreateTenant("acme");
  auto nested = [](size_t levels) {  // innermost object at 2 + levels below the message
    std::string s;
    for (size_t i = 0; i < levels; ++i) s += R"({"a":)";
    return s + R"({"x":1})" + std::string(levels, '}');
  };
  auto track = [&](const std::string& user, size_t levels) {
    return R"({"type":"track","userId":")" + user + R"(","event":"E","properties":)" +
           nested(levels) + "}";
  };
  EXPECT_EQ(Ingest(k.write, "track", track("ok", 30)).status, 200);
  auto single = Ingest(k.write, "track", track("deep", 31));
  EXPECT_EQ(single.status, 400) << single.body;
  EXPECT_NE(single.body.find("field 'properties.a.a."), std::string::npos) << single.body;
  auto batch =
      Ingest(k.write, "batch", R"({"batch":[)" + track("b1", 1) + "," + track("b2", 31) + "]}");
  EXPECT_EQ(batch.status, 400) << batch.body;
  EXPECT_NE(batch.body.find("field 'batch[1].properties.a."), std::string::npos) << batch.body;
  auto huge = Ingest(k.write, "track",
                     R"({"userId":"h","event":"E","properties":{"p":)" + std::string(1000, '[') +
                         std::string(1000, ']') + "}}");
  EXPECT_EQ(huge.status, 400) << huge.body.substr(0, 300);
  // A rejected request stores nothing.
  EXPECT_EQ(StoredCount(k.api, "ok"), 1u);
  EXPECT_EQ(StoredCount(k.api, "deep"), 0u);
  EXPECT_EQ(StoredCount(k.api, "b1"), 0u);
  EXPECT_EQ(StoredCount(k.api, "h"), 0u);
}

}  // namespace
}  // namespace fairway::http
