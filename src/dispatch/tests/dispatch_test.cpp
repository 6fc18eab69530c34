#include <curl/curl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "common/crypto.h"
#include "dispatch/delivery.h"
#include "dispatch/delivery_dispatcher.h"
#include "dispatch/tests/peer_process.h"
#include "storage/schema.h"
#include "testing/status_matchers.h"
#include "testing/store_and_log.h"

namespace fairway::dispatch {
namespace {

using ::fairway::testing::TempDir;

using json = nlohmann::json;
using std::chrono::milliseconds;
using testing::PeerProcess;
using testing::ReadJsonLines;

constexpr milliseconds kWait{30'000};
const TenantId kAcme("acme");
const TenantId kBeta("beta");

// Adds the pending row of `d` to `batch`, as a producer does in its commit.
void PutPending(const TenantId& tenant, const Delivery& d, storage::WriteBatch* batch) {
  batch->Put(storage::kDeliveries, PendingKey(tenant, d.created_ms, d.id), EncodeDelivery(d));
}

// Polls `pred` until it holds or `timeout` (real time) passes. Waiting for a condition, not
// sleeping to synchronise.
bool WaitFor(const std::function<bool()>& pred, milliseconds timeout = kWait) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(5));
  }
  return true;
}

class RecordingListener final : public DeliveryListener {
 public:
  void OnDelivered(const TenantId& tenant, const Delivery& d) override {
    std::lock_guard lock(mu_);
    delivered_.push_back(tenant.str() + "/" + d.id);
  }
  void OnDead(const TenantId& tenant, const Delivery& d) override {
    std::lock_guard lock(mu_);
    dead_.push_back(tenant.str() + "/" + d.id);
  }
  std::vector<std::string> delivered() {
    std::lock_guard lock(mu_);
    return delivered_;
  }
  std::vector<std::string> dead() {
    std::lock_guard lock(mu_);
    return dead_;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> delivered_, dead_;
};

class DispatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    OpenStore();
    receiver_ = std::make_unique<PeerProcess>(
        FAIRWAY_PEER_PYTHON,
        std::vector<std::string>{std::string(FAIRWAY_PEERS_DIR) + "/http_receiver.py",
                                 RequestsPath()});
    ASSERT_TRUE(receiver_->ok()) << receiver_->error();
  }

  void TearDown() override {
    dispatcher_.reset();  // aborts whatever hangs on the receiver
    store_.reset();
  }

  void OpenStore() {
    ASSERT_OK_AND_ASSIGN(store_, ::fairway::testing::OpenFairwayStore(dir_.Sub("db"), &clock_));
  }

  // Stops the dispatcher and reopens the store, as a restart of the process would.
  void Restart() {
    dispatcher_.reset();
    store_.reset();
    OpenStore();
  }

  static DeliveryDispatcherOptions Options() {
    DeliveryDispatcherOptions o;
    o.per_destination_rate = 0;  // the clock is frozen: a token bucket would never refill
    o.request_timeout = milliseconds(60'000);
    // The receivers of these tests listen on loopback, which webhooks may not reach by default.
    o.allow_networks = *ParseNetworks("127.0.0.0/8,::1/128");
    return o;
  }

  void StartDispatcher(DeliveryDispatcherOptions options = Options()) {
    dispatcher_ = std::make_unique<DeliveryDispatcher>(store_.get(), &clock_, &metrics_, options);
    dispatcher_->SetListener(&listener_);
    dispatcher_->SetSigningSecrets([](const TenantId& t) -> std::optional<std::string> {
      if (t == kAcme) return std::string("acme-secret");
      return std::nullopt;
    });
    dispatcher_->Start();
  }

  std::string RequestsPath() const { return dir_.Sub("requests.jsonl"); }
  std::string Url(const std::string& path, const std::string& host = "127.0.0.1") const {
    return "http://" + host + ":" + std::to_string(receiver_->port()) + path;
  }

  Delivery Webhook(const std::string& id, const std::string& path, std::string body = "{}") {
    Delivery d;
    d.kind = DeliveryKind::kWebhook;
    d.id = id;
    d.purpose = "webhook";
    d.source = "welcome";
    d.method = "POST";
    d.url = Url(path);
    d.headers = {{"Content-Type", "application/json"}};
    d.body = std::move(body);
    return d;
  }

  // Commits the rows (created one millisecond apart, in order) and notifies the dispatcher.
  void Enqueue(const TenantId& tenant, std::vector<Delivery> rows) {
    storage::WriteBatch batch;
    for (auto& d : rows) {
      clock_.AdvanceMillis(1);
      if (d.created_ms == 0) d.created_ms = clock_.NowMillis();
      Status valid = ValidateDelivery(d);
      ASSERT_TRUE(valid.ok()) << valid.ToString();
      PutPending(tenant, d, &batch);
    }
    ASSERT_TRUE(store_->Write(batch, /*sync=*/true).ok());
    if (dispatcher_) dispatcher_->Notify(tenant);
  }

  std::vector<json> Requests() { return ReadJsonLines(RequestsPath()); }
  std::vector<json> RequestsTo(const std::string& path_prefix) {
    std::vector<json> out;
    for (auto& r : Requests()) {
      if (r["path"].get<std::string>().starts_with(path_prefix)) out.push_back(r);
    }
    return out;
  }

  // POSTs to the receiver's control endpoint.
  void Control(const std::string& path, const std::string& body = "{}") {
    CURL* e = curl_easy_init();
    ASSERT_NE(e, nullptr);
    std::string url = Url(path);
    curl_easy_setopt(e, CURLOPT_URL, url.c_str());
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10'000L);
    curl_easy_setopt(
        e, CURLOPT_WRITEFUNCTION, +[](char*, size_t s, size_t n, void*) { return s * n; });
    CURLcode rc = curl_easy_perform(e);
    long code = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(e);
    ASSERT_EQ(rc, CURLE_OK);
    ASSERT_EQ(code, 200);
  }
  void SetRule(const std::string& prefix, const std::string& behaviour) {
    Control("/__control/rule", json{{"prefix", prefix}, {"behaviour", behaviour}}.dump());
  }

  std::vector<Delivery> List(const TenantId& tenant, bool dead) {
    auto page = dispatcher_->List(tenant, dead, "", 1000);
    EXPECT_TRUE(page.ok()) << page.status().ToString();
    return page.ok() ? page->items : std::vector<Delivery>{};
  }

  uint64_t Count(const TenantId& tenant, const std::string& outcome) {
    return metrics_
        .GetCounter("fairway_dispatch_deliveries_total", "",
                    {{"tenant", tenant.str()}, {"outcome", outcome}})
        ->value();
  }

  TempDir dir_;
  ManualClock clock_;
  MetricsRegistry metrics_;
  RecordingListener listener_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<PeerProcess> receiver_;
  std::unique_ptr<DeliveryDispatcher> dispatcher_;
};

TEST_F(DispatchTest, WebhookCarriesIdempotencyKeyAndAVerifiableSignature) {
  StartDispatcher();
  Delivery a = Webhook("welcome.r7f3a.1", "/ok/acme", R"({"lead":"u1","n":1})");
  a.headers.emplace_back("X-Custom", "v1");
  Delivery b = Webhook("welcome.r9.1", "/ok/beta", "plain body");
  b.method = "PUT";
  b.headers.clear();
  Enqueue(kAcme, {a});
  Enqueue(kBeta, {b});
  ASSERT_TRUE(dispatcher_->WaitIdle(kWait));

  auto acme = RequestsTo("/ok/acme");
  ASSERT_EQ(acme.size(), 1u);
  const json& r = acme[0];
  EXPECT_EQ(r["method"], "POST");
  EXPECT_EQ(r["body"], a.body);
  EXPECT_EQ(r["headers"]["idempotency-key"], "welcome.r7f3a.1");
  EXPECT_EQ(r["headers"]["user-agent"], "Fairway/0.1");
  EXPECT_EQ(r["headers"]["content-type"], "application/json");
  EXPECT_EQ(r["headers"]["x-custom"], "v1");
  // X-Fairway-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
  std::string sig = r["headers"]["x-fairway-signature"];
  ASSERT_TRUE(sig.starts_with("t=")) << sig;
  size_t comma = sig.find(",v1=");
  ASSERT_NE(comma, std::string::npos) << sig;
  std::string t = sig.substr(2, comma - 2);
  std::string v1 = sig.substr(comma + 4);
  EXPECT_EQ(t, std::to_string(clock_.NowMillis() / 1000));
  EXPECT_EQ(v1, HmacSha256Hex("acme-secret", t + "." + a.body));
  EXPECT_NE(v1, HmacSha256Hex("other-secret", t + "." + a.body));

  auto beta = RequestsTo("/ok/beta");
  ASSERT_EQ(beta.size(), 1u);
  EXPECT_EQ(beta[0]["method"], "PUT");
  EXPECT_EQ(beta[0]["body"], "plain body");
  EXPECT_EQ(beta[0]["headers"]["idempotency-key"], "welcome.r9.1");
  EXPECT_FALSE(beta[0]["headers"].contains("x-fairway-signature"));  // no secret: unsigned
  EXPECT_FALSE(beta[0]["headers"].contains("content-type"));         // none invented

  EXPECT_TRUE(List(kAcme, false).empty());
  EXPECT_TRUE(List(kBeta, false).empty());
  auto delivered = listener_.delivered();
  std::sort(delivered.begin(), delivered.end());
  EXPECT_EQ(delivered, (std::vector<std::string>{"acme/welcome.r7f3a.1", "beta/welcome.r9.1"}));
  EXPECT_EQ(Count(kAcme, "delivered"), 1u);
  EXPECT_EQ(Count(kAcme, "retried"), 0u);
  std::string text = metrics_.RenderPrometheus();
  EXPECT_NE(text.find("fairway_dispatch_latency_seconds_count{tenant=\"acme\"} 1"),
            std::string::npos)
      << text;
}

TEST_F(DispatchTest, RetriesWithExponentialBackoffThenSucceeds) {
  StartDispatcher();
  Enqueue(kAcme, {Webhook("r1", "/fail-2/r1")});
  ASSERT_TRUE(dispatcher_->WaitIdle(kWait));
  ASSERT_EQ(RequestsTo("/fail-2/").size(), 1u);
  auto pending = List(kAcme, false);
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].attempts, 1u);
  EXPECT_TRUE(pending[0].last_error.starts_with("HTTP 503")) << pending[0].last_error;
  EXPECT_EQ(pending[0].last_attempt_ms, clock_.NowMillis());
  // First back-off: 1 s plus up to 20% jitter.
  int64_t first = pending[0].next_attempt_ms - clock_.NowMillis();
  EXPECT_GE(first, 1000);
  EXPECT_LE(first, 1200);

  // Not due yet: nothing is sent before the back-off has passed.
  clock_.AdvanceMillis(first - 1);
  ASSERT_TRUE(dispatcher_->WaitIdle(kWait));
  EXPECT_EQ(RequestsTo("/fail-2/").size(), 1u);

  clock_.AdvanceMillis(1);
  ASSERT_TRUE(dispatcher_->WaitIdle(kWait));
  ASSERT_EQ(RequestsTo("/fail-2/").size(), 2u);
  pending = List(kAcme, false);
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].attempts, 2u);
  int64_t second = pending[0].next_attempt_ms - clock_.NowMillis();
  EXPECT_GE(second, 2000);  // doubled
  EXPECT_LE(second, 2400);

  clock_.AdvanceMillis(second);
  ASSERT_TRUE(dispatcher_->WaitIdle(kWait));
  auto requests = RequestsTo("/fail-2/");
  ASSERT_EQ(requests.size(), 3u);
  for (auto& r : requests) EXPECT_EQ(r["headers"]["idempotency-key"], "r1");
  EXPECT_TRUE(List(kAcme, false).empty());
  EXPECT_EQ(Count(kAcme, "retried"), 2u);
  EXPECT_EQ(Count(kAcme, "delivered"), 1u);
  EXPECT_EQ(listener_.delivered(), std::vector<std::string>{"acme/r1"});
}

TEST_F(DispatchTest, RetryAfterOnA429WinsOverAShorterBackoff) {
  StartDispatcher();
  Enqueue(kAcme, {Webhook("t1", "/throttle-30/t1")});
  ASSERT_TRUE(dispatcher_->WaitIdle(kWait));
  auto pending = List(kAcme, false);
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_TRUE(pending[0].last_error.starts_with("HTTP 429")) << pending[0].last_error;
  EXPECT_EQ(pending[0].next_attempt_ms, clock_.NowMillis() + 30'000);
  clock_.AdvanceMillis(29'999);
  ASSERT_TRUE(dispatcher_->WaitIdle(kWait));
  EXPECT_EQ(RequestsTo("/throttle-30/").size(), 1u);
  clock_.AdvanceMillis(1);
  ASSERT_TRUE(dispatcher_->WaitIdle(kWait));
  EXPECT_EQ(RequestsTo("/throttle-30/").size(), 2u);
  EXPECT_TRUE(List(kAcme, false).empty());
}

TEST_F(DispatchTest, DeadAfterMaxAttemptsAndRevivedByRetry) {
  DeliveryDispatcherOptions o = Options();
  o.max_attempts = 3;
  StartDispatcher(o);
  Enqueue(kAcme, {Webhook("m1", "/fail-100/m1")});
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(dispatcher_->WaitIdle(kWait));
    clock_.AdvanceMillis(10'000);  // past any back-off
  }
  ASSERT_TRUE(dispatcher_->WaitIdle(kWait));
  EXPECT_EQ(RequestsTo("/fail-100/").size(), 3u);  // and no more once dead
  EXPECT_TRUE(List(kAcme, false).empty());
  auto dead = List(kAcme, true);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].id, "m1");
  EXPECT_EQ(dead[0].attempts, 3u);
  EXPECT_TRUE(dead[0].last_error.starts_with("HTTP 503")) << dead[0].last_error;
  EXPECT_GT(dead[0].dead_at_ms, 0);
  EXPECT_EQ(listener_.dead(), std::vector<std::string>{"acme/m1"});
  EXPECT_EQ(Count(kAcme, "dead"), 1u);
  EXPECT_EQ(Count(kAcme, "retried"), 2u);

  auto unknown = dispatcher_->Retry(kAcme, {"m1", "nope"});
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), StatusCode::kNotFound);
  EXPECT_NE(unknown.status().message().find("nope"), std::string::npos);
  EXPECT_EQ(List(kAcme, true).size(), 1u);  // nothing moved

  SetRule("/fail-100", "ok");
  auto moved = dispatcher_->Retry(kAcme, {"m1", "m1"});
  ASSERT_TRUE(moved.ok()) << moved.status().ToString();
  EXPECT_EQ(*moved, 1u);
  EXPECT_TRUE(List(kAcme, true).empty());
  ASSERT_TRUE(dispatcher_->WaitIdle(kWait));
  EXPECT_EQ(RequestsTo("/fail-100/").size(), 4u);
  EXPECT_TRUE(List(kAcme, false).empty());
  EXPECT_EQ(listener_.delivered(), std::vector<std::string>{"acme/m1"});
}

TEST_F(DispatchTest, PermanentFailureIsDeadAtOnceAndRetryAllRevivesIt) {
  StartDispatcher();
  Enqueue(kAcme, {Webhook("b1", "/bad/b1"), Webhook("b2", "/bad/b2"), Webhook("ok1", "/ok/1")});
  ASSERT_TRUE(dispatcher_->WaitIdle(kWait));
  EXPECT_EQ(RequestsTo("/bad/").size(), 2u);  // one attempt each
  auto dead = List(kAcme, true);
  ASSERT_EQ(dead.size(), 2u);
  for (auto& d : dead) {
    EXPECT_EQ(d.attempts, 1u);
    EXPECT_TRUE(d.last_error.starts_with("HTTP 400")) << d.last_error;
  }
  EXPECT_TRUE(List(kAcme, false).empty());

  SetRule("/bad/b2", "ok");
  auto moved = dispatcher_->Retry(kAcme, {});  // all of them
  ASSERT_TRUE(moved.ok());
  EXPECT_EQ(*moved, 2u);
  ASSERT_TRUE(dispatcher_->WaitIdle(kWait));
  dead = List(kAcme, true);
  ASSERT_EQ(dead.size(), 1u);  // b1 failed again
  EXPECT_EQ(dead[0].id, "b1");
  EXPECT_EQ(dead[0].attempts, 1u);  // counted afresh
  EXPECT_EQ(RequestsTo("/bad/b2").size(), 2u);
  EXPECT_TRUE(List(kAcme, false).empty());
}

TEST_F(DispatchTest, RestartDeliversEveryPendingRowIncludingTheOnesInFlight) {
  DeliveryDispatcherOptions o = Options();
  o.per_destination_concurrency = 1;
  StartDispatcher(o);
  SetRule("/hook", "slow");
  std::vector<Delivery> rows;
  for (int i = 0; i < 5; ++i)
    rows.push_back(Webhook("h" + std::to_string(i), "/hook/" + std::to_string(i)));
  Enqueue(kAcme, rows);
  Enqueue(kBeta, {Webhook("f1", "/fail-1/f1")});
  ASSERT_TRUE(WaitFor([&] {
    return RequestsTo("/hook/").size() == 1 && List(kBeta, false).size() == 1 &&
           List(kBeta, false)[0].attempts == 1;
  }));
  // h0 hangs in flight, h1..h4 wait behind it, f1 waits for its back-off.
  Restart();  // aborts h0: it stays pending
  {
    // Nothing was lost or finished: all five rows are still pending on disk (List reads the
    // store; this dispatcher is never started).
    DeliveryDispatcher reader(store_.get(), &clock_, &metrics_, Options());
    auto page = reader.List(kAcme, false, "", 100);
    ASSERT_TRUE(page.ok());
    EXPECT_EQ(page->items.size(), 5u);
    for (auto& d : page->items) EXPECT_EQ(d.attempts, 0u);  // an aborted transfer is no attempt
  }

  SetRule("/hook", "ok");
  StartDispatcher(Options());
  clock_.AdvanceMillis(10'000);
  ASSERT_TRUE(dispatcher_->WaitIdle(kWait));
  EXPECT_TRUE(List(kAcme, false).empty());
  EXPECT_TRUE(List(kBeta, false).empty());
  auto hooks = RequestsTo("/hook/");
  std::map<std::string, int> by_key;
  for (auto& r : hooks) by_key[r["headers"]["idempotency-key"]]++;
  EXPECT_EQ(by_key,
            (std::map<std::string, int>{{"h0", 2}, {"h1", 1}, {"h2", 1}, {"h3", 1}, {"h4", 1}}));
  EXPECT_EQ(RequestsTo("/fail-1/").size(), 2u);
}

TEST_F(DispatchTest, DeliveredRowsAreNotSentAgainAfterARestart) {
  StartDispatcher();
  Enqueue(kAcme, {Webhook("d1", "/ok/d1"), Webhook("d2", "/ok/d2"), Webhook("d3", "/ok/d3")});
  ASSERT_TRUE(dispatcher_->WaitIdle(kWait));
  ASSERT_EQ(RequestsTo("/ok/").size(), 3u);
  Restart();
  StartDispatcher();
  dispatcher_->Notify(kAcme);
  clock_.AdvanceMillis(24 * 3'600'000LL);
  ASSERT_TRUE(dispatcher_->WaitIdle(kWait));
  EXPECT_EQ(RequestsTo("/ok/").size(), 3u);
}

TEST_F(DispatchTest, OutcomeWriteFailureIsRetriedAndTheRowIsSentOnce) {
  StartDispatcher();
  Enqueue(kAcme, {Webhook("w1", "/slow/w1")});
  ASSERT_TRUE(WaitFor([&] { return RequestsTo("/slow/").size() == 1; }));
  store_->InjectWriteFailures(3);  // the next three outcome writes fail
  Control("/__control/release");
  ASSERT_TRUE(dispatcher_->WaitIdle(kWait));
  EXPECT_TRUE(List(kAcme, false).empty());
  EXPECT_EQ(listener_.delivered(), std::vector<std::string>{"acme/w1"});
  Restart();
  StartDispatcher();
  ASSERT_TRUE(dispatcher_->WaitIdle(kWait));
  EXPECT_EQ(RequestsTo("/slow/").size(), 1u);
}

TEST_F(DispatchTest, SlowEndpointOfOneTenantDoesNotDelayAnother) {
  DeliveryDispatcherOptions o = Options();
  o.per_destination_concurrency = 4;
  o.tenant_in_flight = 16;
  o.global_in_flight = 6;
  StartDispatcher(o);
  std::vector<Delivery> slow, quick;
  for (int i = 0; i < 10; ++i)
    slow.push_back(Webhook("a" + std::to_string(i), "/slow/a" + std::to_string(i)));
  for (int i = 0; i < 20; ++i)
    quick.push_back(Webhook("b" + std::to_string(i), "/ok/b" + std::to_string(i)));
  Enqueue(kAcme, slow);  // older: a FIFO dispatcher would start these first
  ASSERT_TRUE(WaitFor([&] { return RequestsTo("/slow/").size() == 4; }));
  Enqueue(kBeta, quick);
  ASSERT_TRUE(WaitFor([&] {
    return RequestsTo("/ok/b").size() == 20 && List(kBeta, false).empty();
  })) << "beta's deliveries were held up by acme's hanging endpoint";
  // Meanwhile acme's requests still hang, only as many as its destination allows.
  EXPECT_EQ(RequestsTo("/slow/").size(), 4u);
  EXPECT_EQ(List(kAcme, false).size(), 10u);
  SetRule("/slow", "ok");
  Control("/__control/release");
  ASSERT_TRUE(dispatcher_->WaitIdle(kWait));
  EXPECT_TRUE(List(kAcme, false).empty());
}

TEST_F(DispatchTest, PerDestinationConcurrencyIsCapped) {
  DeliveryDispatcherOptions o = Options();
  o.per_destination_concurrency = 3;
  StartDispatcher(o);
  std::vector<Delivery> rows;
  for (int i = 0; i < 7; ++i)
    rows.push_back(Webhook("c" + std::to_string(i), "/slow/c" + std::to_string(i)));
  Enqueue(kAcme, rows);
  for (size_t arrived : {3u, 6u, 7u}) {
    ASSERT_TRUE(WaitFor([&] { return RequestsTo("/slow/").size() >= arrived; }));
    Control("/__control/release");  // lets the ones waiting now answer
  }
  ASSERT_TRUE(dispatcher_->WaitIdle(kWait));
  auto requests = RequestsTo("/slow/");
  ASSERT_EQ(requests.size(), 7u);
  int max_concurrent = 0;
  for (auto& r : requests) max_concurrent = std::max(max_concurrent, r["concurrent"].get<int>());
  EXPECT_EQ(max_concurrent, 3);
  EXPECT_TRUE(List(kAcme, false).empty());
}

TEST_F(DispatchTest, TenantsTakeTurns) {
  DeliveryDispatcherOptions o = Options();
  o.global_in_flight = 1;
  StartDispatcher(o);
  Enqueue(kAcme, {Webhook("hold", "/slow/hold")});
  ASSERT_TRUE(WaitFor([&] { return RequestsTo("/slow/").size() == 1; }));  // holds the slot
  std::vector<Delivery> many, few;
  for (int i = 0; i < 30; ++i)
    many.push_back(Webhook("a" + std::to_string(i), "/ok/a" + std::to_string(i)));
  for (int i = 0; i < 5; ++i)
    few.push_back(Webhook("b" + std::to_string(i), "/ok/b" + std::to_string(i)));
  Enqueue(kAcme, many);  // first: a FIFO would send all of these before beta's
  Enqueue(kBeta, few);
  auto loaded = [&](const TenantId& t) {
    return metrics_.GetGauge("fairway_dispatch_loaded_rows", "", {{"tenant", t.str()}})->value();
  };
  ASSERT_TRUE(WaitFor([&] { return loaded(kAcme) == 31 && loaded(kBeta) == 5; }));
  Control("/__control/release");
  ASSERT_TRUE(dispatcher_->WaitIdle(kWait));
  auto beta = RequestsTo("/ok/b");
  ASSERT_EQ(beta.size(), 5u);
  int last = 0;
  for (auto& r : beta) last = std::max(last, r["arrived"].get<int>());
  // One slot, alternating tenants: beta's fifth request is at most the 11th overall.
  EXPECT_LE(last, 11);
  EXPECT_EQ(loaded(kAcme), 0);
  EXPECT_EQ(loaded(kBeta), 0);
}

TEST_F(DispatchTest, TenantInFlightIsCappedAcrossItsDestinations) {
  DeliveryDispatcherOptions o = Options();
  o.per_destination_concurrency = 4;
  o.tenant_in_flight = 3;
  StartDispatcher(o);
  std::vector<Delivery> rows;
  for (int i = 0; i < 8; ++i) {
    Delivery d = Webhook("t" + std::to_string(i), "/slow/t" + std::to_string(i));
    // Two destinations (the receiver's "concurrent" counts both: same /slow rule).
    d.url = Url("/slow/t" + std::to_string(i), i % 2 == 0 ? "127.0.0.1" : "localhost");
    rows.push_back(d);
  }
  Enqueue(kAcme, rows);
  for (size_t arrived : {3u, 6u, 8u}) {
    ASSERT_TRUE(WaitFor([&] { return RequestsTo("/slow/").size() >= arrived; }));
    Control("/__control/release");
  }
  ASSERT_TRUE(dispatcher_->WaitIdle(kWait));
  auto requests = RequestsTo("/slow/");
  ASSERT_EQ(requests.size(), 8u);
  int max_concurrent = 0;
  for (auto& r : requests) max_concurrent = std::max(max_concurrent, r["concurrent"].get<int>());
  EXPECT_EQ(max_concurrent, 3);
}

TEST_F(DispatchTest, DestinationWindowKeepsAHungEndpointFromStarvingTheTenantsOthers) {
  DeliveryDispatcherOptions o = Options();
  o.per_destination_concurrency = 2;
  o.max_loaded_per_tenant = 8;
  o.max_loaded_per_destination = 4;
  StartDispatcher(o);
  std::vector<Delivery> hung, other;
  for (int i = 0; i < 12; ++i)
    hung.push_back(Webhook("s" + std::to_string(i), "/slow/s" + std::to_string(i)));
  for (int i = 0; i < 10; ++i) {
    Delivery d = Webhook("o" + std::to_string(i), "/ok/o" + std::to_string(i));
    d.url = Url("/ok/o" + std::to_string(i), "localhost");  // another destination, same receiver
    other.push_back(d);
  }
  Enqueue(kAcme, hung);
  Enqueue(kAcme, other);
  ASSERT_TRUE(WaitFor([&] { return RequestsTo("/ok/o").size() == 10; }))
      << "the tenant's window filled up with rows of its hung destination";
  EXPECT_EQ(RequestsTo("/slow/").size(), 2u);
  SetRule("/slow", "ok");
  Control("/__control/release");
  ASSERT_TRUE(dispatcher_->WaitIdle(kWait));
  EXPECT_EQ(RequestsTo("/slow/").size(), 12u);
  EXPECT_TRUE(List(kAcme, false).empty());
}

TEST_F(DispatchTest, BacklogLargerThanTheWindowIsRefilledFromDisk) {
  DeliveryDispatcherOptions o = Options();
  o.max_loaded_per_tenant = 4;
  o.per_destination_concurrency = 2;
  StartDispatcher(o);
  std::vector<Delivery> rows;
  for (int i = 0; i < 40; ++i)
    rows.push_back(Webhook("k" + std::to_string(i), "/ok/k" + std::to_string(i)));
  Enqueue(kAcme, rows);
  ASSERT_TRUE(dispatcher_->WaitIdle(kWait));
  std::set<std::string> keys;
  for (auto& r : RequestsTo("/ok/k"))
    keys.insert(r["headers"]["idempotency-key"].get<std::string>());
  EXPECT_EQ(keys.size(), 40u);
  EXPECT_EQ(RequestsTo("/ok/k").size(), 40u);
  EXPECT_TRUE(List(kAcme, false).empty());
}

TEST_F(DispatchTest, TokenBucketLimitsTheRatePerDestination) {
  DeliveryDispatcherOptions o = Options();
  o.per_destination_rate = 2;  // burst of 2, then one every 500 ms of the (manual) clock
  StartDispatcher(o);
  std::vector<Delivery> rows;
  for (int i = 0; i < 5; ++i)
    rows.push_back(Webhook("q" + std::to_string(i), "/ok/q" + std::to_string(i)));
  Enqueue(kAcme, rows);
  ASSERT_TRUE(WaitFor([&] { return RequestsTo("/ok/q").size() >= 2; }));
  // The clock stands still, so no token comes back: an observation window, not a sync point.
  EXPECT_FALSE(WaitFor([&] { return RequestsTo("/ok/q").size() > 2; }, milliseconds(300)));
  EXPECT_FALSE(dispatcher_->WaitIdle(milliseconds(0)));  // throttled rows are due: not idle
  clock_.AdvanceMillis(500);
  ASSERT_TRUE(WaitFor([&] { return RequestsTo("/ok/q").size() >= 3; }));
  EXPECT_FALSE(WaitFor([&] { return RequestsTo("/ok/q").size() > 3; }, milliseconds(300)));
  clock_.AdvanceMillis(1000);
  ASSERT_TRUE(dispatcher_->WaitIdle(kWait));
  EXPECT_EQ(RequestsTo("/ok/q").size(), 5u);
}

TEST_F(DispatchTest, RemoveTenantWaitsForItsTransfersAndDeletesItsRows) {
  StartDispatcher();
  Enqueue(kAcme,
          {Webhook("p1", "/fail-100/p1"), Webhook("x1", "/bad/x1"), Webhook("s1", "/slow/s1")});
  Enqueue(kBeta, {Webhook("p2", "/fail-100/p2")});
  ASSERT_TRUE(WaitFor([&] {
    return RequestsTo("/slow/").size() == 1 && List(kAcme, true).size() == 1 &&
           List(kBeta, false).size() == 1 && List(kBeta, false)[0].attempts == 1;
  }));
  auto removed = std::async(std::launch::async, [&] { return dispatcher_->RemoveTenant(kAcme); });
  // It waits for s1, which hangs until released.
  EXPECT_EQ(removed.wait_for(milliseconds(200)), std::future_status::timeout);
  Control("/__control/release");
  ASSERT_EQ(removed.wait_for(kWait), std::future_status::ready);
  Status st = removed.get();
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_TRUE(List(kAcme, false).empty());
  EXPECT_TRUE(List(kAcme, true).empty());
  EXPECT_EQ(List(kBeta, false).size(), 1u);    // another tenant's rows stay
  EXPECT_TRUE(listener_.delivered().empty());  // s1's outcome was discarded with the tenant
  clock_.AdvanceMillis(3'600'000);
  ASSERT_TRUE(dispatcher_->WaitIdle(kWait));
  EXPECT_EQ(RequestsTo("/fail-100/p1").size(), 1u);  // never again
  EXPECT_EQ(RequestsTo("/fail-100/p2").size(), 2u);

  // Without a running dispatcher the rows are deleted directly.
  dispatcher_->Stop();
  ASSERT_TRUE(dispatcher_->RemoveTenant(kBeta).ok());
  EXPECT_TRUE(List(kBeta, false).empty());
}

TEST_F(DispatchTest, AReleasedTenantsRowsStayForItsNextOwnerAndItsLastOutcomesAreWritten) {
  std::atomic<bool> owns_acme{true};
  dispatcher_ = std::make_unique<DeliveryDispatcher>(store_.get(), &clock_, &metrics_, Options());
  dispatcher_->SetListener(&listener_);
  dispatcher_->SetOwnership([&](const TenantId& t) { return t != kAcme || owns_acme.load(); });
  dispatcher_->Start();
  Delivery later = Webhook("later", "/ok/later");
  later.next_attempt_ms = clock_.NowMillis() + 60'000;  // not due yet: stays on disk
  Enqueue(kAcme, {Webhook("s1", "/slow/s1"), later});
  ASSERT_TRUE(WaitFor([&] { return RequestsTo("/slow/").size() == 1; }));
  owns_acme = false;
  auto released = std::async(std::launch::async, [&] { return dispatcher_->ReleaseTenant(kAcme); });
  // It waits for s1 in flight...
  EXPECT_EQ(released.wait_for(milliseconds(200)), std::future_status::timeout);
  Control("/__control/release");
  ASSERT_EQ(released.wait_for(kWait), std::future_status::ready);
  ASSERT_OK(released.get());
  // ...and writes its outcome, so the next owner does not send it again.
  ASSERT_EQ(listener_.delivered().size(), 1u);
  auto pending = List(kAcme, false);
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].id, "later");
  // Not owned: neither a notification nor due time starts it here.
  clock_.AdvanceMillis(120'000);
  dispatcher_->Notify(kAcme);
  ASSERT_TRUE(dispatcher_->WaitIdle(kWait));
  EXPECT_TRUE(RequestsTo("/ok/later").empty());
  // Owned again: delivered once.
  owns_acme = true;
  dispatcher_->Notify(kAcme);
  ASSERT_TRUE(WaitFor([&] { return RequestsTo("/ok/later").size() == 1; }));
  ASSERT_TRUE(dispatcher_->WaitIdle(kWait));
  EXPECT_TRUE(List(kAcme, false).empty());
  EXPECT_EQ(RequestsTo("/slow/s1").size(), 1u);
  // A release of a tenant the dispatcher does not hold, and after Stop, keeps rows too.
  Delivery beta = Webhook("beta", "/ok/beta");
  beta.next_attempt_ms = clock_.NowMillis() + 3'600'000;  // not due: nothing sends it first
  Enqueue(kBeta, {beta});
  dispatcher_->Stop();
  ASSERT_OK(dispatcher_->ReleaseTenant(kBeta));
  EXPECT_EQ(List(kBeta, false).size(), 1u);
}

TEST_F(DispatchTest, ListPaginatesOldestFirstAndRejectsBadCursors) {
  StartDispatcher();
  std::vector<Delivery> rows;
  for (int i = 0; i < 5; ++i) {
    Delivery d = Webhook("l" + std::to_string(4 - i), "/ok/l");  // ids in reverse creation order
    d.next_attempt_ms = clock_.NowMillis() + 3'600'000;          // not due: stays pending
    rows.push_back(d);
  }
  Enqueue(kAcme, rows);
  std::vector<std::string> seen;
  std::string cursor;
  int pages = 0;
  do {
    auto page = dispatcher_->List(kAcme, false, cursor, 2);
    ASSERT_TRUE(page.ok()) << page.status().ToString();
    EXPECT_LE(page->items.size(), 2u);
    for (auto& d : page->items) seen.push_back(d.id);
    cursor = page->next_cursor;
    ++pages;
  } while (!cursor.empty() && pages < 10);
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(seen, (std::vector<std::string>{"l4", "l3", "l2", "l1", "l0"}));
  EXPECT_TRUE(RequestsTo("/ok/l").empty());

  auto first = dispatcher_->List(kAcme, false, "", 2);
  ASSERT_TRUE(first.ok());
  for (std::string bad : {std::string("zz"), std::string("p0"), std::string("pxyz1"),
                          "d" + first->next_cursor.substr(1)}) {
    auto r = dispatcher_->List(kAcme, false, bad, 2);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("cursor"), std::string::npos);
  }
}

TEST_F(DispatchTest, RowThatFailsValidationIsDeadInsteadOfSent) {
  StartDispatcher();
  Delivery d = Webhook("v1", "/ok/v1");
  d.headers = {{"X-A", "a\r\nX-Injected: yes"}};
  d.created_ms = clock_.NowMillis();
  storage::WriteBatch batch;
  PutPending(kAcme, d, &batch);  // bypasses ValidateDelivery, as a buggy producer might
  ASSERT_TRUE(store_->Write(batch, true).ok());
  Delivery e = Webhook("e1", "/ok/e1");
  e.kind = DeliveryKind::kEmail;
  e.mail_from = "a@example.org";
  e.mail_to = "b@example.org";
  e.subject = "s";
  Enqueue(kAcme, {e});  // no smtp_url configured
  ASSERT_TRUE(dispatcher_->WaitIdle(kWait));
  EXPECT_TRUE(Requests().empty());
  auto dead = List(kAcme, true);
  ASSERT_EQ(dead.size(), 2u);
  EXPECT_NE(dead[0].last_error.find("smtp_url"), std::string::npos) << dead[0].last_error;
  EXPECT_NE(dead[1].last_error.find("header X-A"), std::string::npos) << dead[1].last_error;
}

// --- destinations and what tenants see of failures ---

// Enqueues a webhook to `url` (bypassing Url()) and returns its id.
std::string HookTo(std::vector<Delivery>* rows, const std::string& url) {
  Delivery d;
  d.kind = DeliveryKind::kWebhook;
  d.id = "h" + std::to_string(rows->size());
  d.purpose = "webhook";
  d.method = "POST";
  d.url = url;
  d.body = "{}";
  rows->push_back(d);
  return d.id;
}

TEST_F(DispatchTest, DestinationsOutsideThePublicInternetAreRefusedByDefault) {
  DeliveryDispatcherOptions o = Options();
  o.allow_networks.clear();
  StartDispatcher(o);
  const std::string port = std::to_string(receiver_->port());
  // Each URL with the address its connection would reach.
  std::vector<std::pair<std::string, std::string>> cases = {
      {"http://127.0.0.1:" + port + "/ok/a", "127.0.0.1"},
      {"http://localhost:" + port + "/ok/b", ""},  // resolves to 127.0.0.1 and/or ::1
      {"http://[::1]:" + port + "/ok/c", "::1"},
      {"http://[::ffff:127.0.0.1]:" + port + "/ok/d", "127.0.0.1"},
      {"http://2130706433:" + port + "/ok/e", "127.0.0.1"},
      {"http://0x7f.1:" + port + "/ok/f", "127.0.0.1"},
      {"http://127.1:" + port + "/ok/g", "127.0.0.1"},
      {"http://0.0.0.0:" + port + "/ok/h", "0.0.0.0"},
      {"http://169.254.169.254/latest/meta-data/", "169.254.169.254"},
      {"http://10.0.0.1:" + port + "/ok/i", "10.0.0.1"},
      {"http://[fd00::1]:" + port + "/ok/j", "fd00::1"},
      {"http://[fe80::1]:" + port + "/ok/k", "fe80::1"},
      {"http://100.64.0.1:" + port + "/ok/l", "100.64.0.1"},
      {"http://224.0.0.1:" + port + "/ok/m", "224.0.0.1"},
  };
  std::vector<Delivery> rows;
  std::map<std::string, std::string> address_by_id;
  for (const auto& [url, address] : cases) address_by_id[HookTo(&rows, url)] = address;
  Enqueue(kAcme, rows);
  ASSERT_TRUE(dispatcher_->WaitIdle(kWait));
  EXPECT_TRUE(Requests().empty()) << Requests().front().dump();
  EXPECT_TRUE(List(kAcme, false).empty());
  auto dead = List(kAcme, true);
  ASSERT_EQ(dead.size(), cases.size());
  for (const auto& d : dead) {
    const std::string& address = address_by_id[d.id];
    SCOPED_TRACE(d.url);
    EXPECT_EQ(d.attempts, 1u);  // permanent: not retried
    EXPECT_TRUE(d.last_error.starts_with("destination address " + address)) << d.last_error;
    EXPECT_NE(d.last_error.find(" is not allowed ("), std::string::npos) << d.last_error;
  }
  EXPECT_EQ(Count(kAcme, "dead"), cases.size());
}

TEST_F(DispatchTest, AllowNetworksLetsOnlyTheListedNetworksThrough) {
  DeliveryDispatcherOptions o = Options();
  o.allow_networks = *ParseNetworks("127.0.0.1/32");
  StartDispatcher(o);
  std::vector<Delivery> rows;
  std::string allowed = HookTo(&rows, Url("/ok/allowed"));
  std::string other = HookTo(&rows, Url("/ok/other", "127.0.0.2"));
  Enqueue(kAcme, rows);
  ASSERT_TRUE(dispatcher_->WaitIdle(kWait));
  ASSERT_EQ(RequestsTo("/ok/").size(), 1u);
  EXPECT_EQ(RequestsTo("/ok/")[0]["path"], "/ok/allowed");
  EXPECT_EQ(listener_.delivered(), std::vector<std::string>{"acme/" + allowed});
  auto dead = List(kAcme, true);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].id, other);
  EXPECT_EQ(dead[0].last_error, "destination address 127.0.0.2 is not allowed (loopback)");
}

TEST_F(DispatchTest, TenantsSeeTheStatusAndAFixedReasonNeverThePeersAnswer) {
  StartDispatcher();
  Enqueue(kAcme, {Webhook("leak", "/leak/1"), Webhook("bad", "/bad/1"),
                  Webhook("redirect", "/redirect/1")});
  ASSERT_TRUE(dispatcher_->WaitIdle(kWait));
  auto pending = List(kAcme, false);
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].last_error, "HTTP 500 Internal Server Error");
  auto dead = List(kAcme, true);
  ASSERT_EQ(dead.size(), 2u);  // in id order
  EXPECT_EQ(dead[0].id, "bad");
  EXPECT_EQ(dead[0].last_error, "HTTP 400 Bad Request");
  // The redirect (to a metadata address) is not followed: only the first request was made.
  EXPECT_EQ(dead[1].id, "redirect");
  EXPECT_EQ(dead[1].last_error, "HTTP 302 Found (redirects are not followed)");
  EXPECT_EQ(Requests().size(), 3u);
}

TEST_F(DispatchTest, WebhooksDoNotGoThroughAProxyFromTheEnvironment) {
  // A proxy would see (and could reach) the destination instead of the filter. Port 1 on
  // loopback refuses connections: a webhook that used this proxy would fail.
  const char* kVars[] = {"http_proxy",  "HTTP_PROXY", "https_proxy",
                         "HTTPS_PROXY", "ALL_PROXY",  "all_proxy"};
  for (const char* v : kVars) setenv(v, "http://127.0.0.1:1", 1);
  StartDispatcher();
  Enqueue(kAcme, {Webhook("p1", "/ok/p1")});
  bool idle = dispatcher_->WaitIdle(kWait);
  for (const char* v : kVars) unsetenv(v);
  ASSERT_TRUE(idle);
  EXPECT_EQ(RequestsTo("/ok/p1").size(), 1u);
  EXPECT_EQ(listener_.delivered(), std::vector<std::string>{"acme/p1"});
}

// --- email ---

class EmailTest : public DispatchTest {
 protected:
  void StartSink(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {std::string(FAIRWAY_PEERS_DIR) + "/smtp_sink.py", MailPath()};
    args.insert(args.end(), extra.begin(), extra.end());
    sink_ = std::make_unique<PeerProcess>(FAIRWAY_PEER_PYTHON, args);
    ASSERT_TRUE(sink_->ok()) << sink_->error() << " (is python3-aiosmtpd installed?)";
  }
  void TearDown() override {
    DispatchTest::TearDown();
    sink_.reset();
  }
  DeliveryDispatcherOptions SmtpOptions() {
    DeliveryDispatcherOptions o = Options();
    o.smtp_url = "smtp://127.0.0.1:" + std::to_string(sink_->port());
    return o;
  }
  std::string MailPath() const { return dir_.Sub("mail.jsonl"); }
  std::vector<json> Mail() { return ReadJsonLines(MailPath()); }

  Delivery Email(const std::string& id, const std::string& to) {
    Delivery d;
    d.kind = DeliveryKind::kEmail;
    d.id = id;
    d.purpose = "email";
    d.source = "welcome";
    d.mail_from = "news@fairway.example";
    d.mail_to = to;
    d.subject = "Welcome";
    d.text_body = "Hello";
    return d;
  }

  std::unique_ptr<PeerProcess> sink_;
};

TEST_F(EmailTest, DeliveredThroughSmtpWithTheExpectedHeadersAndBody) {
  StartSink();
  StartDispatcher(SmtpOptions());
  Delivery d = Email("welcome.ada.1", "ada@example.org");
  d.subject = "Grüße, Ada ✓ — your trial starts today";
  d.text_body = "Hello Ada,\n.this line starts with a dot\n.\nÜnïcödé and a long line: " +
                std::string(120, 'x') + "\nBye";
  Enqueue(kAcme, {d});
  ASSERT_TRUE(dispatcher_->WaitIdle(kWait));
  auto mail = Mail();
  ASSERT_EQ(mail.size(), 1u);
  const json& m = mail[0];
  EXPECT_EQ(m["mail_from"], "news@fairway.example");
  EXPECT_EQ(m["rcpt_tos"], json::array({"ada@example.org"}));
  EXPECT_EQ(m["headers"]["subject"], d.subject);  // RFC 2047 decoded by Python's parser
  EXPECT_EQ(m["headers"]["from"], "news@fairway.example");
  EXPECT_EQ(m["headers"]["to"], "ada@example.org");
  EXPECT_EQ(m["headers"]["message-id"], "<welcome.ada.1@fairway>");
  EXPECT_EQ(m["headers"]["x-fairway-idempotency-key"], "welcome.ada.1");
  EXPECT_EQ(m["headers"]["mime-version"], "1.0");
  EXPECT_EQ(m["headers"]["date"], "Tue, 14 Nov 2023 22:13:20 +0000");
  std::string content_type = m["headers"]["content-type"];
  EXPECT_NE(content_type.find("text/plain"), std::string::npos) << content_type;
  EXPECT_NE(content_type.find("UTF-8"), std::string::npos) << content_type;
  EXPECT_EQ(m["headers"]["content-transfer-encoding"], "quoted-printable");
  // The body survives transfer encoding and SMTP dot-stuffing (the lone "." line included).
  std::string text = m["text"];
  std::string normalised;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n') continue;
    normalised.push_back(text[i]);
  }
  EXPECT_EQ(normalised, d.text_body + "\n");
  std::string data = m["data"];
  for (size_t i = 0; i < data.size(); ++i) {
    if (data[i] == '\n') {
      ASSERT_TRUE(i > 0 && data[i - 1] == '\r') << "bare LF at " << i;
    }
  }
  EXPECT_TRUE(List(kAcme, false).empty());
  EXPECT_EQ(listener_.delivered(), std::vector<std::string>{"acme/welcome.ada.1"});
}

TEST_F(EmailTest, PermanentRejectionIsDeadTemporaryOneIsRetried) {
  StartSink({"--reject", "^nobody@", "--defer", "^later@"});
  StartDispatcher(SmtpOptions());
  Enqueue(kAcme, {Email("e.reject", "nobody@example.org"), Email("e.defer", "later@example.org"),
                  Email("e.ok", "ada@example.org")});
  ASSERT_TRUE(dispatcher_->WaitIdle(kWait));
  auto dead = List(kAcme, true);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].id, "e.reject");
  EXPECT_EQ(dead[0].attempts, 1u);
  // The code and a fixed text, not the server's words ("550 5.1.1 mailbox unavailable").
  EXPECT_EQ(dead[0].last_error, "SMTP 550 mailbox unavailable");
  auto pending = List(kAcme, false);
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].id, "e.defer");
  EXPECT_EQ(pending[0].attempts, 1u);
  EXPECT_EQ(pending[0].last_error, "SMTP 451 local error in processing");
  EXPECT_GT(pending[0].next_attempt_ms, clock_.NowMillis());
  auto mail = Mail();
  ASSERT_EQ(mail.size(), 1u);
  EXPECT_EQ(mail[0]["rcpt_tos"], json::array({"ada@example.org"}));
  EXPECT_EQ(listener_.dead(), std::vector<std::string>{"acme/e.reject"});
}

TEST_F(EmailTest, AuthenticatesWithConfiguredCredentials) {
  StartSink({"--auth", "fairway:s3cret"});
  DeliveryDispatcherOptions o = SmtpOptions();
  o.smtp_username = "fairway";
  o.smtp_password = "s3cret";
  StartDispatcher(o);
  Enqueue(kAcme, {Email("e.auth", "ada@example.org")});
  ASSERT_TRUE(dispatcher_->WaitIdle(kWait));
  auto mail = Mail();
  ASSERT_EQ(mail.size(), 1u);
  EXPECT_EQ(mail[0]["user"], "fairway");
  EXPECT_TRUE(List(kAcme, false).empty());
}

TEST_F(EmailTest, UnreachableRelayIsRetriedNotDropped) {
  StartSink();
  DeliveryDispatcherOptions o = SmtpOptions();
  int port = sink_->port();
  sink_.reset();  // nothing listens there any more
  o.smtp_url = "smtp://127.0.0.1:" + std::to_string(port);
  StartDispatcher(o);
  Enqueue(kAcme, {Email("e.down", "ada@example.org")});
  ASSERT_TRUE(dispatcher_->WaitIdle(kWait));
  auto pending = List(kAcme, false);
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].attempts, 1u);
  EXPECT_TRUE(pending[0].last_error.starts_with("SMTP connection error")) << pending[0].last_error;
}

}  // namespace
}  // namespace fairway::dispatch
