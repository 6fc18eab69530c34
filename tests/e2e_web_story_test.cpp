// The web-tracking story of the seeds, on the real binary: anonymous visitors look at the
// pricing page; a campaign "visited pricing, email ends with @example.com" cannot judge them
// yet and defers; the visitors identify; the campaign runs once per person, with the email and
// the original visit's URL, while the server is killed (SIGKILL) and restarted in the middle
// of the promotions. A real HTTP receiver records the webhooks and a real SMTP sink the emails.
// Later visits under either identity run nothing again, an email limit counts across a
// person's identities, and the person's timeline and sessions are read by any identity.

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "dispatch/tests/peer_process.h"
#include "http/tests/test_client.h"
#include "testing/temp_dir.h"
#include "tests/e2e.h"
#include "tests/server_process.h"

namespace fairway::e2e {
namespace {

constexpr int kVisitors = 60;

int Total(const std::string& url, const std::string& api, const std::string& campaign,
          const std::string& metric) {
  json st = Get(url, "/v1/campaigns/" + campaign + "/stats", api);
  return st.is_null() ? -1 : st["totals"].value(metric, 0);
}

std::string Email(int i) {
  return "user-" + std::to_string(i) + (i % 5 == 0 ? "@other.test" : "@example.com");
}
std::string Url(int i) { return "https://shop.test/pricing?v=" + std::to_string(i); }

void Post(const std::string& url, const std::string& write_key, const std::string& route,
          const json& body) {
  for (int attempt = 0;; ++attempt) {
    ASSERT_LT(attempt, 50) << "never acknowledged: " << body.dump();
    TestClient c(url);
    if (c.Request("POST", route, body.dump(), {BasicAuth(write_key)}).status == 200) return;
  }
}

TEST(E2eWebStoryTest, DeferredMatchesRunOncePerPersonThroughSigkillDuringPromotion) {
  TempDir dir;
  std::string record = dir.Sub("webhooks.jsonl");
  dispatch::testing::PeerProcess receiver(
      FAIRWAY_PEER_PYTHON, {std::string(FAIRWAY_PEERS_DIR) + "/http_receiver.py", record});
  ASSERT_TRUE(receiver.ok()) << receiver.error();
  std::string mail_record = dir.Sub("mail.jsonl");
  dispatch::testing::PeerProcess smtp(
      FAIRWAY_PEER_PYTHON, {std::string(FAIRWAY_PEERS_DIR) + "/smtp_sink.py", mail_record});
  ASSERT_TRUE(smtp.ok()) << smtp.error();
  setenv("FAIRWAY_SMTP_URL", ("smtp://127.0.0.1:" + std::to_string(smtp.port())).c_str(), 1);
  setenv("FAIRWAY_DISPATCH_ALLOW_NETWORKS", "127.0.0.0/8,::1/128", 1);

  ServerProcess server(FAIRWAY_BINARY, dir.Sub("data"), kToken);
  server.Start();
  TestClient admin(server.url());
  // Processing is throttled so that promotions are in progress at the kills.
  auto created = admin.Request(
      "POST", "/admin/v1/tenants",
      R"({"id":"shop","partitions":4,"quotas":{"ingest_rate":1e9,"ingest_burst":1e9,"processing_rate":100}})",
      {BearerAuth(kToken)});
  ASSERT_EQ(created.status, 201) << created.body;
  const json keys = json::parse(created.body);
  const std::string write_key = keys["write_key"], api = keys["api_key"];
  const std::string hook = "http://127.0.0.1:" + std::to_string(receiver.port()) + "/ok/sales";
  auto create = [&](const json& definition) {
    auto r = admin.Request("POST", "/v1/campaigns", definition.dump(), {BearerAuth(api)});
    ASSERT_EQ(r.status, 201) << r.body;
  };
  create(json::parse(R"({"id": "pricing", "name": "Pricing, example.com", "status": "active",
    "triggers": [{"type": "visits_web_page", "url": {"op": "contains", "value": "/pricing"}}],
    "filters": [{"field": "email", "op": "ends_with", "value": "@example.com"}],
    "flow": [
      {"action": "call_webhook", "url": ")" +
                     hook + R"(",
       "body": {"email": "{{lead.email}}", "url": "{{trigger.url}}", "lead": "{{lead.id}}"}},
      {"action": "send_email", "subject": "Pricing", "body": "You looked at {{trigger.url}}"}]})"));
  create(json::parse(R"({"id": "news", "name": "Newsletter", "status": "active",
    "qualification": {"rule": "every_time"},
    "triggers": [{"type": "track", "event": "Subscribed"}],
    "flow": [{"action": "send_email", "subject": "News", "body": "b"}]})"));
  ASSERT_EQ(
      admin.Request("PATCH", "/v1/campaign-settings", R"({"emails_per_day": 1})", {BearerAuth(api)})
          .status,
      200);

  // Anonymous visits: deferred, nothing runs.
  json visits = {{"batch", json::array()}};
  for (int i = 0; i < kVisitors; ++i) {
    visits["batch"].push_back({{"type", "page"},
                               {"anonymousId", "anon-" + std::to_string(i)},
                               {"messageId", "visit-" + std::to_string(i)},
                               {"properties", {{"url", Url(i)}, {"path", "/pricing"}}}});
  }
  Post(server.url(), write_key, "/v1/batch", visits);
  ASSERT_TRUE(Eventually([&] {
    return Total(server.url(), api, "pricing", "deferred") == kVisitors;
  })) << Get(server.url(), "/v1/campaigns/pricing/stats", api).dump();
  EXPECT_EQ(Total(server.url(), api, "pricing", "triggered"), 0);

  // They identify; the server is killed twice while the promotions run.
  json identifies = {{"batch", json::array()}};
  for (int i = 0; i < kVisitors; ++i) {
    identifies["batch"].push_back({{"type", "identify"},
                                   {"userId", "user-" + std::to_string(i)},
                                   {"anonymousId", "anon-" + std::to_string(i)},
                                   {"messageId", "identify-" + std::to_string(i)},
                                   {"traits", {{"email", Email(i)}}}});
  }
  Post(server.url(), write_key, "/v1/batch", identifies);
  for (int kill = 0; kill < 2; ++kill) {
    if (kill == 1) {
      ASSERT_TRUE(Eventually([&] { return Total(server.url(), api, "pricing", "promoted") > 0; }));
    }
    json s = CampaignsStream(server.url(), "shop");
    EXPECT_GT(s.value("lag_events", 0), 0) << "the kill would not interrupt the promotions";
    server.Kill(SIGKILL);
    server.Start();
  }
  const int expected = kVisitors - kVisitors / 5;
  ASSERT_TRUE(Eventually([&] {
    json s = CampaignsStream(server.url(), "shop");
    json pending = Get(server.url(), "/v1/deliveries?state=pending", api);
    return !s.is_null() && s["lag_events"] == 0 && s["in_flight"] == 0 &&
           Total(server.url(), api, "pricing", "completed") == expected && !pending.is_null() &&
           pending["data"].empty();
  })) << Get(server.url(), "/v1/campaigns/pricing/stats", api).dump();
  EXPECT_EQ(Total(server.url(), api, "pricing", "promoted"), kVisitors);
  EXPECT_EQ(Total(server.url(), api, "pricing", "qualified"), expected);
  EXPECT_EQ(Total(server.url(), api, "pricing", "filtered_out"), kVisitors / 5);

  // One webhook per person (after de-duplication by Idempotency-Key), with the email and the
  // original visit's URL.
  std::map<std::string, json> by_key;
  for (const auto& r : dispatch::testing::ReadJsonLines(record)) {
    std::string key = r["headers"].value("idempotency-key", "");
    json body = json::parse(r["body"].get<std::string>());
    auto [it, inserted] = by_key.emplace(key, body);
    EXPECT_EQ(it->second, body) << key;
  }
  std::set<std::string> people;
  for (const auto& [key, body] : by_key) {
    std::string lead = body["lead"];
    EXPECT_TRUE(people.insert(lead).second) << lead << " got two webhooks";
    int i = std::stoi(lead.substr(5));
    EXPECT_EQ(body["email"], Email(i));
    EXPECT_EQ(body["url"], Url(i));
  }
  EXPECT_EQ(people.size(), static_cast<size_t>(expected));
  std::set<std::string> recipients;
  for (const auto& m : dispatch::testing::ReadJsonLines(mail_record)) {
    recipients.insert(m["rcpt_tos"][0].get<std::string>());
  }
  EXPECT_EQ(recipients.size(), static_cast<size_t>(expected));

  // Later visits under either identity: nothing runs again.
  Post(server.url(), write_key, "/v1/page",
       {{"userId", "user-1"}, {"properties", {{"url", Url(1)}}}, {"messageId", "again-1"}});
  Post(server.url(), write_key, "/v1/page",
       {{"anonymousId", "anon-2"}, {"properties", {{"url", Url(2)}}}, {"messageId", "again-2"}});
  ASSERT_TRUE(
      Eventually([&] { return Total(server.url(), api, "pricing", "not_qualified") == 2; }));
  EXPECT_EQ(Total(server.url(), api, "pricing", "qualified"), expected);

  // The email limit (1 a day) counts across identities. legacy-5, a userId of its own, gets a
  // newsletter; an alias then merges it into user-5 (who got no pricing email: other.test):
  // user-5's newsletter is blocked by the email legacy-5 got. And user-3 got the pricing email:
  // a newsletter triggered under its anonymous id (handed over to user-3) is blocked too.
  auto news_steps = [&](const char* outcome) {
    json st = Get(server.url(), "/v1/campaigns/news/stats", api);
    return st.is_null() || st["steps"].empty() ? 0 : st["steps"][0][outcome].get<int>();
  };
  Post(server.url(), write_key, "/v1/identify",
       {{"userId", "legacy-5"},
        {"traits", {{"email", "legacy-5@example.org"}}},
        {"messageId", "legacy"}});
  Post(server.url(), write_key, "/v1/track",
       {{"userId", "legacy-5"}, {"event", "Subscribed"}, {"messageId", "sub-legacy"}});
  ASSERT_TRUE(Eventually([&] { return news_steps("executed") == 1; }));
  Post(server.url(), write_key, "/v1/alias",
       {{"userId", "user-5"}, {"previousId", "legacy-5"}, {"messageId", "alias-5"}});
  Post(server.url(), write_key, "/v1/track",
       {{"userId", "user-5"}, {"event", "Subscribed"}, {"messageId", "sub-5"}});
  Post(server.url(), write_key, "/v1/track",
       {{"anonymousId", "anon-3"}, {"event", "Subscribed"}, {"messageId", "sub-3"}});
  ASSERT_TRUE(Eventually([&] { return news_steps("blocked") == 2; }))
      << Get(server.url(), "/v1/campaigns/news/stats", api).dump();
  EXPECT_EQ(news_steps("executed"), 1);

  // The person's timeline by its email: the anonymous visit before the identify included, with
  // its session.
  json timeline = Get(server.url(), "/v1/activities?lead=user-1%40example.com", api);
  bool visit = false;
  for (const auto& a : timeline["data"]) {
    if (a["type"] == "page" && a.value("anonymousId", "") == "anon-1" &&
        a["messageId"] == "visit-1") {
      visit = true;
      EXPECT_TRUE(a.contains("sessionId")) << a.dump();
    }
  }
  EXPECT_TRUE(visit) << timeline.dump();
  json sessions = Get(server.url(), "/v1/sessions?lead=user-1", api);
  ASSERT_FALSE(sessions.is_null());
  std::set<std::string> leads;
  for (const auto& s : sessions["data"]) leads.insert(s["lead"].get<std::string>());
  EXPECT_EQ(leads, (std::set<std::string>{"anon-1", "user-1"})) << sessions.dump();
  server.Kill(SIGTERM);
}

}  // namespace
}  // namespace fairway::e2e
