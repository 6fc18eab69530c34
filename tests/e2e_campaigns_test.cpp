// Exactly-once campaign steps under kill -9: the real binary runs two campaigns (one with a
// choice, a wait, two webhooks and an email; one that runs on every click) while it is killed
// (SIGKILL) and restarted four times: during ingest and while leads wait. A real HTTP receiver
// records every webhook request and a real SMTP sink (aiosmtpd) every email. Afterwards every
// expected step ran exactly once: the statistics count each once, every lead's score and tags
// are what the flows imply, the receiver saw, after de-duplication by Idempotency-Key, exactly
// one request per lead and webhook step, each correctly signed, and each lead got one email. A
// second test shows that a hanging webhook endpoint of one tenant delays neither another tenant's
// steps nor its deliveries. A third shows that, by default, webhooks to loopback, link-local and
// other internal addresses are refused (dead, with a fixed reason) and that a tenant never sees
// what an endpoint answered.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "common/crypto.h"
#include "dispatch/tests/peer_process.h"
#include "http/tests/test_client.h"
#include "testing/temp_dir.h"
#include "tests/e2e.h"
#include "tests/server_process.h"

namespace fairway::e2e {
namespace {

constexpr int kLeads = 120;
constexpr int kClicks = 4;

struct Keys {
  std::string write, api;
};

Keys CreateTenant(const std::string& url, const std::string& id, const std::string& quotas) {
  TestClient admin(url);
  auto r = admin.Request("POST", "/admin/v1/tenants",
                         R"({"id":")" + id + R"(","partitions":4,"quotas":)" + quotas + "}",
                         {BearerAuth(kToken)});
  EXPECT_EQ(r.status, 201) << r.body;
  auto j = json::parse(r.body);
  return {j["write_key"].get<std::string>(), j["api_key"].get<std::string>()};
}

void CreateCampaign(const std::string& url, const std::string& api_key, const std::string& body) {
  TestClient c(url);
  auto r = c.Request("POST", "/v1/campaigns", body, {BearerAuth(api_key)});
  ASSERT_EQ(r.status, 201) << r.body;
}

std::string FlowCampaign(int port) {
  std::string base = "http://127.0.0.1:" + std::to_string(port);
  return R"({"id": "onboard", "name": "Onboarding", "status": "active",
    "triggers": [{"type": "track", "event": "Signed Up"}],
    "flow": [
      {"action": "change_score", "change": 5},
      {"action": "call_webhook", "url": ")" +
         base + R"(/ok/signup", "body": {"lead": "{{lead.id}}", "plan": "{{lead.plan}}"}},
      {"choices": [{"if": {"field": "plan", "op": "is", "value": "pro"},
                    "then": {"action": "add_tag", "tag": "pro_path"}}],
       "default": {"action": "add_tag", "tag": "free_path"}},
      {"action": "wait", "duration": "2s"},
      {"action": "call_webhook", "url": ")" +
         base + R"(/ok/followup", "body": {"lead": "{{lead.id}}"}},
      {"action": "change_score", "change": 1},
      {"action": "send_email", "subject": "Welcome, {{lead.id}}", "body": "Your plan: {{lead.plan}}."}
    ]})";
}

constexpr char kClickCampaign[] = R"({"id": "clicks", "name": "Clicks", "status": "active",
  "triggers": [{"type": "track", "event": "Clicked"}],
  "qualification": {"rule": "every_time"},
  "flow": [{"action": "change_score", "change": 10}]})";

// Lead i: an identify (plan pro for every third), "Signed Up", then kClicks clicks.
std::vector<std::string> Requests() {
  std::vector<std::string> out;
  std::string body;
  int n = 0;
  auto add = [&](const std::string& event) {
    body += (body.empty() ? R"({"batch":[)" : ",") + event;
    if (++n % 40 == 0) {
      out.push_back(body + "]}");
      body.clear();
    }
  };
  for (int round = 0; round < 2 + kClicks; ++round) {
    for (int i = 0; i < kLeads; ++i) {
      std::string u = "u" + std::to_string(i);
      std::string id = "\"messageId\":\"m-" + std::to_string(round) + "-" + u + "\"";
      if (round == 0) {
        add(R"({"type":"identify","userId":")" + u + R"(",)" + id + R"(,"traits":{"plan":")" +
            (i % 3 == 0 ? "pro" : "free") + R"(","email":")" + u + R"(@example.test"}})");
      } else if (round == 1) {
        add(R"({"type":"track","userId":")" + u + R"(","event":"Signed Up",)" + id + "}");
      } else {
        add(R"({"type":"track","userId":")" + u + R"(","event":"Clicked",)" + id + "}");
      }
    }
  }
  if (!body.empty()) out.push_back(body + "]}");
  return out;
}

TEST(E2eCampaignsTest, StepsRunExactlyOnceThroughRepeatedSigkill) {
  TempDir dir;
  std::string record = dir.Sub("webhooks.jsonl");
  dispatch::testing::PeerProcess receiver(
      FAIRWAY_PEER_PYTHON, {std::string(FAIRWAY_PEERS_DIR) + "/http_receiver.py", record});
  ASSERT_TRUE(receiver.ok()) << receiver.error();

  std::string mail_record = dir.Sub("mail.jsonl");
  dispatch::testing::PeerProcess smtp(
      FAIRWAY_PEER_PYTHON, {std::string(FAIRWAY_PEERS_DIR) + "/smtp_sink.py", mail_record});
  ASSERT_TRUE(smtp.ok()) << smtp.error();
  // The server (a child process) inherits the relay's address, and may reach the loopback
  // receiver (webhooks reach public addresses only by default).
  setenv("FAIRWAY_SMTP_URL", ("smtp://127.0.0.1:" + std::to_string(smtp.port())).c_str(), 1);
  setenv("FAIRWAY_DISPATCH_ALLOW_NETWORKS", "127.0.0.0/8,::1/128", 1);

  ServerProcess server(FAIRWAY_BINARY, dir.Sub("data"), kToken);
  server.Start();
  // Processing is throttled so that work is in progress at every kill.
  Keys keys = CreateTenant(server.url(), "acme",
                           R"({"ingest_rate":1e9,"ingest_burst":1e9,"processing_rate":400})");
  CreateCampaign(server.url(), keys.api, FlowCampaign(receiver.port()));
  CreateCampaign(server.url(), keys.api, kClickCampaign);
  json settings = Get(server.url(), "/v1/campaign-settings", keys.api);
  std::string secret = settings["webhook_secret"];
  ASSERT_FALSE(secret.empty());

  auto requests = Requests();
  int kills = 0;
  auto kill_and_restart = [&] {
    server.Kill(SIGKILL);
    server.Start();
    ++kills;
  };
  for (size_t r = 0; r < requests.size(); ++r) {
    for (int attempt = 0;; ++attempt) {
      ASSERT_LT(attempt, 50) << "request " << r << " never acknowledged";
      TestClient c(server.url());
      if (c.Request("POST", "/v1/batch", requests[r], {BasicAuth(keys.write)}).status == 200) {
        break;
      }
    }
    // Three kills while ingesting and processing.
    if (r + 1 == requests.size() / 4 || r + 1 == requests.size() / 2 ||
        r + 1 == 3 * requests.size() / 4) {
      json s = CampaignsStream(server.url(), "acme");
      EXPECT_GT(s.value("lag_events", 0), 0) << "the kill would not interrupt processing";
      kill_and_restart();
    }
  }
  // A fourth while leads wait in the flow.
  ASSERT_TRUE(Eventually([&] {
    json st = Get(server.url(), "/v1/campaigns/onboard/stats", keys.api);
    return !st.is_null() && st["in_flow"].get<int>() > 0 &&
           st["totals"].value("qualified", 0) > kLeads / 2;
  }));
  kill_and_restart();
  EXPECT_EQ(kills, 4);

  // Everything settles: processing caught up, nobody waits, no delivery is pending.
  ASSERT_TRUE(Eventually([&] {
    json s = CampaignsStream(server.url(), "acme");
    json st = Get(server.url(), "/v1/campaigns/onboard/stats", keys.api);
    json pending = Get(server.url(), "/v1/deliveries?state=pending", keys.api);
    return !s.is_null() && s["lag_events"] == 0 && s["in_flight"] == 0 && !st.is_null() &&
           st["in_flow"] == 0 && st["totals"].value("completed", 0) == kLeads &&
           !pending.is_null() && pending["data"].empty();
  })) << Get(server.url(), "/v1/campaigns/onboard/stats", keys.api).dump();

  json st = Get(server.url(), "/v1/campaigns/onboard/stats", keys.api);
  EXPECT_EQ(st["totals"]["qualified"], kLeads);
  EXPECT_EQ(st["totals"]["completed"], kLeads);
  EXPECT_EQ(st["totals"].value("already_in_flow", 0) + st["totals"].value("not_qualified", 0), 0);
  for (const auto& step : st["steps"]) {
    EXPECT_EQ(step["executed"], kLeads) << step.dump();
    EXPECT_EQ(step["failed"], 0) << step.dump();
  }
  EXPECT_EQ(st["steps"].size(), 7u);
  // Delivery outcomes are counted in the write that records them: exactly, through every kill.
  EXPECT_EQ(st["totals"]["webhooks_delivered"].get<int>(), 2 * kLeads);
  json clicks = Get(server.url(), "/v1/campaigns/clicks/stats", keys.api);
  EXPECT_EQ(clicks["totals"]["qualified"], kLeads * kClicks);
  EXPECT_EQ(clicks["steps"][0]["executed"], kLeads * kClicks);

  // Every lead: score 5 + 1 + 10 per click, exactly one of the two tags.
  for (int i = 0; i < kLeads; ++i) {
    std::string u = "u" + std::to_string(i);
    json lead = Get(server.url(), "/v1/leads/" + u, keys.api);
    ASSERT_FALSE(lead.is_null()) << u;
    EXPECT_EQ(lead["score"], 6 + 10 * kClicks) << u;
    EXPECT_EQ(lead["tags"], json::array({i % 3 == 0 ? "pro_path" : "free_path"})) << u;
  }

  // The receiver: after de-duplication by Idempotency-Key, one request per lead and webhook
  // step, all signed with the tenant's secret; a key never carries two different bodies.
  std::map<std::string, std::string> body_by_key;
  std::map<std::string, std::set<std::string>> leads_by_path;
  size_t requests_seen = 0;
  for (const auto& r : dispatch::testing::ReadJsonLines(record)) {
    ++requests_seen;
    const auto& h = r["headers"];
    std::string key = h.value("idempotency-key", "");
    ASSERT_FALSE(key.empty());
    std::string body = r["body"];
    auto [it, inserted] = body_by_key.emplace(key, body);
    EXPECT_EQ(it->second, body) << "key " << key << " sent with two bodies";
    std::string sig = h.value("x-fairway-signature", "");
    auto comma = sig.find(',');
    ASSERT_TRUE(sig.starts_with("t=") && comma != std::string::npos) << sig;
    EXPECT_EQ(sig.substr(comma + 1),
              "v1=" + HmacSha256Hex(secret, sig.substr(2, comma - 2) + "." + body));
    if (inserted) {
      std::string lead = json::parse(body)["lead"];
      EXPECT_TRUE(leads_by_path[r["path"]].insert(lead).second)
          << lead << " got two different " << r["path"] << " requests";
    }
  }
  EXPECT_EQ(body_by_key.size(), 2u * kLeads);
  EXPECT_EQ(leads_by_path["/ok/signup"].size(), static_cast<size_t>(kLeads));
  EXPECT_EQ(leads_by_path["/ok/followup"].size(), static_cast<size_t>(kLeads));
  RecordProperty("webhook_requests", std::to_string(requests_seen));

  // The SMTP sink: one email per lead after de-duplication by idempotency key, to its address.
  std::map<std::string, std::string> to_by_key;
  for (const auto& m : dispatch::testing::ReadJsonLines(mail_record)) {
    std::string key = m["headers"].value("x-fairway-idempotency-key", "");
    ASSERT_FALSE(key.empty());
    std::string to = m["rcpt_tos"][0];
    auto [it, inserted] = to_by_key.emplace(key, to);
    EXPECT_EQ(it->second, to);
    EXPECT_EQ(m["headers"]["subject"], "Welcome, " + to.substr(0, to.find('@')));
  }
  std::set<std::string> recipients;
  for (const auto& [key, to] : to_by_key) {
    EXPECT_TRUE(recipients.insert(to).second) << to << " got two different emails";
  }
  EXPECT_EQ(recipients.size(), static_cast<size_t>(kLeads));
  EXPECT_EQ(st["totals"]["emails_sent"].get<int>(), kLeads);
  RecordProperty("distinct_idempotency_keys", std::to_string(body_by_key.size()));
  server.Kill(SIGTERM);
}

TEST(E2eCampaignsTest, AHangingWebhookOfOneTenantDelaysNeitherStepsNorDeliveriesOfAnother) {
  TempDir dir;
  std::string record = dir.Sub("webhooks.jsonl");
  dispatch::testing::PeerProcess receiver(
      FAIRWAY_PEER_PYTHON, {std::string(FAIRWAY_PEERS_DIR) + "/http_receiver.py", record});
  ASSERT_TRUE(receiver.ok()) << receiver.error();
  setenv("FAIRWAY_DISPATCH_ALLOW_NETWORKS", "127.0.0.0/8,::1/128", 1);
  ServerProcess server(FAIRWAY_BINARY, dir.Sub("data"), kToken);
  server.Start();
  std::string base = "http://127.0.0.1:" + std::to_string(receiver.port());
  auto campaign = [&](const std::string& path) {
    return R"({"id": "hook", "name": "Hook", "status": "active",
      "triggers": [{"type": "track", "event": "Go"}], "qualification": {"rule": "every_time"},
      "flow": [{"action": "call_webhook", "url": ")" +
           base + path + R"(", "body": {"lead": "{{lead.id}}"}},
               {"action": "add_tag", "tag": "done"}]})";
  };
  Keys slow = CreateTenant(server.url(), "slowco", R"({"ingest_rate":1e9,"ingest_burst":1e9})");
  Keys fast = CreateTenant(server.url(), "fastco", R"({"ingest_rate":1e9,"ingest_burst":1e9})");
  CreateCampaign(server.url(), slow.api, campaign("/slow/a"));
  CreateCampaign(server.url(), fast.api, campaign("/ok/b"));
  auto go = [&](const Keys& k, int n) {
    std::string body = R"({"batch":[)";
    for (int i = 0; i < n; ++i) {
      body += (i ? "," : "") + std::string(R"({"type":"track","event":"Go","userId":"l)") +
              std::to_string(i) + R"("})";
    }
    TestClient c(server.url());
    ASSERT_EQ(c.Request("POST", "/v1/batch", body + "]}", {BasicAuth(k.write)}).status, 200);
  };
  // The slow tenant's endpoint hangs: its requests fill its destination's slots and wait.
  go(slow, 50);
  ASSERT_TRUE(Eventually([&] {
    json s = Get(server.url(), "/v1/campaigns/hook/stats", slow.api);
    return !s.is_null() && s["totals"].value("completed", 0) == 50;
  }));
  // The other tenant's steps and deliveries all complete while those requests still hang.
  go(fast, 50);
  ASSERT_TRUE(Eventually([&] {
    json s = Get(server.url(), "/v1/campaigns/hook/stats", fast.api);
    return !s.is_null() && s["totals"].value("webhooks_delivered", 0) == 50;
  }));
  json fast_stats = Get(server.url(), "/v1/campaigns/hook/stats", fast.api);
  EXPECT_EQ(fast_stats["totals"]["completed"], 50);
  json slow_stats = Get(server.url(), "/v1/campaigns/hook/stats", slow.api);
  EXPECT_EQ(slow_stats["totals"].value("webhooks_delivered", 0), 0) << "the slow endpoint answered";
  json pending = Get(server.url(), "/v1/deliveries?state=pending", slow.api);
  EXPECT_EQ(pending["data"].size(), 50u);
  int slow_requests = 0, most_at_once = 0;
  for (const auto& r : dispatch::testing::ReadJsonLines(record)) {
    if (r["path"] != "/slow/a") continue;
    ++slow_requests;
    most_at_once = std::max(most_at_once, r["concurrent"].get<int>());
  }
  EXPECT_GE(slow_requests, 1);
  EXPECT_LE(most_at_once, 4) << "more than the per-destination concurrency in flight";
  server.Kill(SIGKILL);
}

TEST(E2eCampaignsTest, WebhooksToInternalAddressesAreRefusedAndTenantsSeeNoPeerBytes) {
  TempDir dir;
  std::string record = dir.Sub("webhooks.jsonl");
  dispatch::testing::PeerProcess receiver(
      FAIRWAY_PEER_PYTHON, {std::string(FAIRWAY_PEERS_DIR) + "/http_receiver.py", record});
  ASSERT_TRUE(receiver.ok()) << receiver.error();
  const std::string port = std::to_string(receiver.port());
  auto hooks = [&](const std::vector<std::string>& urls) {
    std::string flow;
    for (const auto& u : urls) {
      flow += (flow.empty() ? "" : ",") + std::string(R"({"action": "call_webhook", "url": ")") +
              u + R"(", "body": {"lead": "{{lead.id}}"}})";
    }
    return R"({"id": "hook", "name": "Hook", "status": "active",
      "triggers": [{"type": "track", "event": "Go"}], "flow": [)" +
           flow + "]}";
  };
  auto go = [&](const std::string& url, const std::string& write_key) {
    TestClient c(url);
    ASSERT_EQ(
        c.Request("POST", "/v1/track", R"({"userId":"u1","event":"Go"})", {BasicAuth(write_key)})
            .status,
        200);
  };
  // Default configuration: no network is allowed beyond the public internet.
  unsetenv("FAIRWAY_DISPATCH_ALLOW_NETWORKS");
  {
    ServerProcess server(FAIRWAY_BINARY, dir.Sub("data"), kToken);
    server.Start();
    Keys k = CreateTenant(server.url(), "acme", R"({"ingest_rate":1e9,"ingest_burst":1e9})");
    CreateCampaign(
        server.url(), k.api,
        hooks({"http://127.0.0.1:" + port + "/ok/a", "http://2130706433:" + port + "/ok/b",
               "http://localhost:" + port + "/ok/c", "http://169.254.169.254/latest/"}));
    go(server.url(), k.write);
    json dead;
    ASSERT_TRUE(Eventually([&] {
      dead = Get(server.url(), "/v1/deliveries?state=dead", k.api);
      return !dead.is_null() && dead["data"].size() == 4;
    })) << dead.dump();
    for (const auto& d : dead["data"]) {
      std::string error = d["last_error"];
      EXPECT_TRUE(error.starts_with("destination address ")) << error;
      EXPECT_NE(error.find(" is not allowed ("), std::string::npos) << error;
    }
    server.Kill(SIGTERM);
  }
  EXPECT_TRUE(dispatch::testing::ReadJsonLines(record).empty());

  // Allowed by the operator, the loopback receiver is reached; its answer is not shown.
  setenv("FAIRWAY_DISPATCH_ALLOW_NETWORKS", "127.0.0.0/8", 1);
  ServerProcess server(FAIRWAY_BINARY, dir.Sub("data2"), kToken);
  server.Start();
  unsetenv("FAIRWAY_DISPATCH_ALLOW_NETWORKS");
  Keys k = CreateTenant(server.url(), "acme", R"({"ingest_rate":1e9,"ingest_burst":1e9})");
  CreateCampaign(server.url(), k.api, hooks({"http://127.0.0.1:" + port + "/leak/x"}));
  go(server.url(), k.write);
  json pending;
  ASSERT_TRUE(Eventually([&] {
    pending = Get(server.url(), "/v1/deliveries?state=pending", k.api);
    return !pending.is_null() && pending["data"].size() == 1 &&
           pending["data"][0]["attempts"].get<int>() >= 1;
  })) << pending.dump();
  EXPECT_EQ(pending["data"][0]["last_error"], "HTTP 500 Internal Server Error");
  EXPECT_GE(dispatch::testing::ReadJsonLines(record).size(), 1u);
  server.Kill(SIGTERM);
}

}  // namespace
}  // namespace fairway::e2e
