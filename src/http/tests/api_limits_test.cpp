// The API's overload limits, called directly over a real store and log: per-tenant shares of
// the ingest queue (IngestShares), refusal from the header (Api::Screen), the metrics token and
// Retry-After on 503.

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <deque>
#include <future>
#include <mutex>

#include "common/crypto.h"
#include "http/api.h"
#include "http/ingest_shares.h"
#include "log/embedded_log.h"
#include "storage/schema.h"
#include "testing/forwarding_log.h"
#include "testing/status_matchers.h"
#include "testing/store_and_log.h"

namespace fairway::http {
namespace {

TEST(IngestSharesTest, AFloodingTenantFillsOnlyItsShare) {
  IngestShares shares(100);
  TenantId flood("flood"), good("good"), big("big");
  // Alone, a tenant may take the whole capacity.
  EXPECT_EQ(shares.TryAcquire(flood, 1, 60), IngestShares::Verdict::kAdmitted);
  EXPECT_EQ(shares.TryAcquire(flood, 1, 40), IngestShares::Verdict::kAdmitted);
  EXPECT_TRUE(shares.OverShare(flood, 1));
  EXPECT_EQ(shares.TryAcquire(flood, 1, 1), IngestShares::Verdict::kOverShare);
  // Another tenant is still admitted up to its share (half, with equal weights).
  EXPECT_FALSE(shares.OverShare(good, 1));
  EXPECT_EQ(shares.TryAcquire(good, 1, 30), IngestShares::Verdict::kAdmitted);
  EXPECT_EQ(shares.TryAcquire(good, 1, 20), IngestShares::Verdict::kAdmitted);
  EXPECT_EQ(shares.TryAcquire(good, 1, 1), IngestShares::Verdict::kOverShare);
  // Weight 3 of 5: a share of 60; the total stays under twice the capacity.
  EXPECT_EQ(shares.TryAcquire(big, 3, 50), IngestShares::Verdict::kAdmitted);
  EXPECT_EQ(shares.TryAcquire(big, 3, 10), IngestShares::Verdict::kFull);
  EXPECT_EQ(shares.total(), 200u);
  shares.Release(flood, 100);
  EXPECT_EQ(shares.InFlight(flood), 0u);
  EXPECT_EQ(shares.TryAcquire(big, 3, 10), IngestShares::Verdict::kAdmitted);
  EXPECT_EQ(shares.total(), 110u);
}

TEST(IngestSharesTest, OneRequestIsAlwaysAdmittedForAnIdleTenant) {
  IngestShares shares(1);
  EXPECT_EQ(shares.TryAcquire(TenantId("a"), 1, 500), IngestShares::Verdict::kAdmitted);
  EXPECT_EQ(shares.TryAcquire(TenantId("a"), 1, 1), IngestShares::Verdict::kOverShare);
  shares.Release(TenantId("a"), 500);
  EXPECT_EQ(shares.total(), 0u);
  EXPECT_EQ(shares.TryAcquire(TenantId("a"), 1, 500), IngestShares::Verdict::kAdmitted);
}

// A weight changed (PATCH) while the tenant has events in flight counts at once, and releasing
// its events afterwards leaves the total weight right: an idle server gives a lone tenant all.
TEST(IngestSharesTest, AWeightChangedInFlightCountsAtOnce) {
  IngestShares shares(100);
  TenantId a("a"), b("b");
  ASSERT_EQ(shares.TryAcquire(a, 1, 10), IngestShares::Verdict::kAdmitted);
  ASSERT_EQ(shares.TryAcquire(b, 1, 10), IngestShares::Verdict::kAdmitted);
  // Equal weights: a's share is 50.
  EXPECT_EQ(shares.TryAcquire(a, 1, 41), IngestShares::Verdict::kOverShare);
  // Weight 3 of 4: 75.
  EXPECT_EQ(shares.TryAcquire(a, 3, 65), IngestShares::Verdict::kAdmitted);
  EXPECT_TRUE(shares.OverShare(a, 3));
  // Back to 1 (while 75 are in flight): b's share is half again.
  EXPECT_EQ(shares.TryAcquire(a, 1, 1), IngestShares::Verdict::kOverShare);
  EXPECT_EQ(shares.TryAcquire(b, 1, 40), IngestShares::Verdict::kAdmitted);
  shares.Release(a, 75);
  shares.Release(b, 50);
  EXPECT_EQ(shares.total(), 0u);
  EXPECT_EQ(shares.TryAcquire(b, 1, 60), IngestShares::Verdict::kAdmitted);
  EXPECT_EQ(shares.TryAcquire(b, 1, 40), IngestShares::Verdict::kAdmitted);
  EXPECT_EQ(shares.TryAcquire(b, 1, 1), IngestShares::Verdict::kOverShare);
}

// An ActivityLog that holds appends until released, so ingest work stays in flight. It never
// appends inside another write, so generated activities would take the outbox path.
class HoldingLog final : public ::fairway::testing::ForwardingLog {
 public:
  using ForwardingLog::ForwardingLog;
  void Append(log::AppendRequest request, log::AppendCallback done) override {
    std::lock_guard lock(mu_);
    held_.emplace_back(std::move(request), std::move(done));
  }
  void ReleaseAll() {
    std::deque<std::pair<log::AppendRequest, log::AppendCallback>> held;
    {
      std::lock_guard lock(mu_);
      held.swap(held_);
    }
    for (auto& [r, d] : held) inner()->Append(std::move(r), std::move(d));
  }
  bool AppendsInWrite() const override { return false; }

 private:
  std::mutex mu_;
  std::deque<std::pair<log::AppendRequest, log::AppendCallback>> held_;
};

// The Api over a real store and log, called directly (no server), on real time.
class ApiLimitsTest : public ::fairway::testing::StoreAndLogTest {
 protected:
  ApiLimitsTest() : StoreAndLogTest({.log = {}, .clock = SystemClock::Default()}) {}

  void SetUp() override {
    StoreAndLogTest::SetUp();
    if (HasFatalFailure()) return;
    holding_ = std::make_unique<HoldingLog>(log_.get());
    tenants_ =
        std::move(tenancy::TenantRegistry::Open(store_.get(), SystemClock::Default())).value();
  }
  void TearDown() override {
    holding_->ReleaseAll();
    log_->Stop();
    if (api_) api_->Stop();
  }
  void MakeApi(ApiOptions ao) {
    api_ = std::make_unique<Api>(ao, tenants_.get(), holding_.get(), log_.get(), nullptr, nullptr,
                                 SystemClock::Default(), metrics_.get());
  }
  std::string CreateTenant(const std::string& id, uint32_t weight = 1) {
    model::TenantConfig c;
    c.id = TenantId(id);
    c.quotas.processing_weight = weight;
    auto created = tenants_->Create(c);
    EXPECT_TRUE(created.ok()) << created.status().ToString();
    return created->keys.write_key;
  }
  // Sends a request; the future is ready once the Api answers.
  std::future<HttpResponse> Send(HttpRequest req) {
    auto p = std::make_shared<std::promise<HttpResponse>>();
    auto f = p->get_future();
    api_->Handle(std::move(req), [p](HttpResponse r) { p->set_value(std::move(r)); });
    return f;
  }
  std::future<HttpResponse> Batch(const std::string& write_key, int events) {
    std::string body = R"({"batch":[)";
    for (int i = 0; i < events; ++i) {
      body += fmt::format(R"({}{{"type":"track","userId":"u{}","event":"e"}})", i ? "," : "", i);
    }
    body += "]}";
    HttpRequest req;
    req.method = "POST";
    req.target = "/v1/batch";
    req.authorization = "Basic " + Base64Encode(write_key + ":");
    req.body = std::move(body);
    return Send(std::move(req));
  }
  static bool Ready(std::future<HttpResponse>& f) {
    return f.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
  }
  static std::string Header(const HttpResponse& r, const std::string& name) {
    for (const auto& [k, v] : r.headers) {
      if (k == name) return v;
    }
    return "";
  }

  std::unique_ptr<HoldingLog> holding_;
  std::unique_ptr<tenancy::TenantRegistry> tenants_;
  std::unique_ptr<Api> api_;
};

TEST_F(ApiLimitsTest, AFloodingTenantGets429WhileAnotherIsStillAdmitted) {
  ApiOptions ao;
  ao.ingest_queue_events = 10;
  MakeApi(ao);
  std::string flood = CreateTenant("flood");
  std::string good = CreateTenant("good");
  // The flood's first two batches wait for disk and fill its share.
  auto f1 = Batch(flood, 5);
  auto f2 = Batch(flood, 5);
  EXPECT_FALSE(Ready(f1));
  EXPECT_FALSE(Ready(f2));
  auto f3 = Batch(flood, 5);
  ASSERT_TRUE(Ready(f3));
  HttpResponse r3 = f3.get();
  EXPECT_EQ(r3.status, 429) << r3.body;
  EXPECT_EQ(Header(r3, "Retry-After"), "1");
  EXPECT_NE(r3.body.find("share of the ingest queue"), std::string::npos) << r3.body;
  // The same refusal comes before the body is read, from the header alone.
  HttpRequest head;
  head.method = "POST";
  head.target = "/v1/batch";
  head.authorization = "Basic " + Base64Encode(flood + ":");
  auto screened = api_->Screen(head);
  ASSERT_TRUE(screened.has_value());
  EXPECT_EQ(screened->status, 429);
  head.authorization = "Basic " + Base64Encode(good + ":");
  EXPECT_FALSE(api_->Screen(head).has_value());
  // The other tenant is admitted (its batch waits for disk like any other).
  auto g1 = Batch(good, 5);
  EXPECT_FALSE(Ready(g1));
  holding_->ReleaseAll();
  EXPECT_EQ(f1.get().status, 200);
  EXPECT_EQ(f2.get().status, 200);
  EXPECT_EQ(g1.get().status, 200);
  // With nothing in flight, the flood is admitted again.
  auto f4 = Batch(flood, 5);
  holding_->ReleaseAll();
  EXPECT_EQ(f4.get().status, 200);
}

TEST_F(ApiLimitsTest, UnderLoadAnonymousVisitorsAreShedBeforeKnownLeads) {
  auto page = [&](const std::string& write_key, const std::string& who) {
    HttpRequest req;
    req.method = "POST";
    req.target = "/v1/batch";
    req.authorization = "Basic " + Base64Encode(write_key + ":");
    req.body = R"({"batch":[{"type":"page","name":"Pricing",)" + who + "}]}";
    return Send(std::move(req));
  };
  for (double at : {0.0, 0.5, 1.0}) {
    SCOPED_TRACE(at);
    ApiOptions ao;
    ao.ingest_queue_events = 10;  // everyone waits at 20 events in flight
    ao.shed_anonymous_at = at;
    MakeApi(ao);
    const std::string busy = CreateTenant(fmt::format("busy{}", at * 10));
    const std::string web = CreateTenant(fmt::format("web{}", at * 10));
    // Idle: anonymous traffic goes on unless the threshold is 0.
    auto idle = page(web, R"("anonymousId":"a0")");
    holding_->ReleaseAll();
    EXPECT_EQ(idle.get().status, at == 0.0 ? 503 : 200);
    // 10 events wait for disk: half of what makes everyone wait.
    auto b1 = Batch(busy, 5);
    auto b2 = Batch(busy, 5);
    auto anonymous = page(web, R"("anonymousId":"a1")");
    auto known = page(web, R"("userId":"u1")");
    HttpRequest identify;
    identify.method = "POST";
    identify.target = "/v1/identify";
    identify.authorization = "Basic " + Base64Encode(web + ":");
    identify.body = R"({"anonymousId":"a1","traits":{"email":"a@example.com"}})";
    auto promoted = Send(std::move(identify));
    if (at <= 0.5) {
      ASSERT_TRUE(Ready(anonymous));
      HttpResponse r = anonymous.get();
      EXPECT_EQ(r.status, 503) << r.body;
      EXPECT_EQ(Header(r, "Retry-After"), "1");
      EXPECT_NE(r.body.find("anonymous"), std::string::npos) << r.body;
    }
    EXPECT_FALSE(Ready(known));     // admitted: waits for disk like any other
    EXPECT_FALSE(Ready(promoted));  // an identify makes a visitor known: never shed
    holding_->ReleaseAll();
    EXPECT_EQ(b1.get().status, 200);
    EXPECT_EQ(b2.get().status, 200);
    EXPECT_EQ(known.get().status, 200);
    EXPECT_EQ(promoted.get().status, 200);
    if (at > 0.5) {
      EXPECT_EQ(anonymous.get().status, 200);
    }
    const std::string metrics = metrics_->RenderPrometheus();
    EXPECT_NE(metrics.find(fmt::format(
                  R"(fairway_ingest_events_total{{tenant="web{}",outcome="shed"}} {})", at * 10,
                  at == 0.0   ? 2
                  : at == 0.5 ? 1
                              : 0)),
              std::string::npos)
        << metrics;
    api_->Stop();
  }
}

TEST_F(ApiLimitsTest, MetricsNeedTheMetricsTokenWhenOneIsSet) {
  ApiOptions ao;
  ao.metrics_token = "m-secret";
  MakeApi(ao);
  HttpRequest req;
  req.method = "GET";
  req.target = "/metrics";
  EXPECT_EQ(Send(req).get().status, 401);
  req.authorization = "Bearer wrong";
  EXPECT_EQ(Send(req).get().status, 401);
  req.authorization = "Bearer m-secret";
  HttpResponse ok = Send(req).get();
  EXPECT_EQ(ok.status, 200);
  EXPECT_NE(ok.body.find("fairway_"), std::string::npos);
  // Without a token, /metrics stays open.
  MakeApi(ApiOptions{});
  req.authorization.clear();
  EXPECT_EQ(Send(req).get().status, 200);
}

TEST_F(ApiLimitsTest, UnavailableAndNotReadyCarryRetryAfter) {
  MakeApi(ApiOptions{});
  HttpRequest req;
  req.method = "GET";
  req.target = "/readyz";
  HttpResponse r = Send(req).get();
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(Header(r, "Retry-After"), "1");
  HttpResponse e = Error(Unavailable("storage write failed"));
  EXPECT_EQ(e.status, 503);
  EXPECT_EQ(Header(e, "Retry-After"), "1");
}

}  // namespace
}  // namespace fairway::http
