// analytics.js as a browser runs it: Segment's library from npm, unchanged, on a page served from
// a local origin and loaded in headless Chromium. It loads its settings from Fairway, which point
// it back at Fairway, and sends page, track and identify through the short routes with
// text/plain bodies, which Fairway enriches; a page on an origin the tenant does not allow
// stores nothing. The seed's story in the browser: an anonymous visit to a pricing page defers
// a campaign, and the identify of the same browser later runs it once, with the email and the
// original visit's URL.

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <thread>

#include "dispatch/tests/peer_process.h"
#include "http/tests/test_client.h"
#include "testing/child_process.h"
#include "testing/temp_dir.h"
#include "tests/e2e.h"
#include "tests/server_process.h"

namespace fairway::e2e {
namespace {

// The page: loads analytics.js, sends three calls for the lead named in its query string (the
// identify first, so that the others carry its userId too), and writes what happened into its
// title.
constexpr char kPage[] = R"(<!doctype html>
<html><head><title>loading</title>
<script src="analytics.js"></script>
<script>
  const params = new URLSearchParams(location.search);
  const user = params.get('user');
  const settings = { writeKey: params.get('key'), cdnURL: params.get('fairway') };
  if (params.get('api')) {
    // Settings given in the page, as a site that does not load them would: sent to `api`.
    settings.cdnSettings = { integrations: { 'Segment.io': {
        apiKey: params.get('key'), apiHost: params.get('api'), protocol: 'http' } } };
  }
  const analytics = window.AnalyticsNext.AnalyticsBrowser.load(settings);
  (async () => {
    try {
      await analytics.identify(user, { email: user + '@example.com' });
      await analytics.page('Pricing', { plan: 'pro' });
      await analytics.track('Viewed Pricing', { plan: 'pro' });
      document.title = 'sent';
    } catch (e) {
      document.title = 'failed: ' + e;
    }
  })();
</script></head><body>page</body></html>
)";

// The story's page: an anonymous page view, or (with ?user=) an identify of that user.
constexpr char kStoryPage[] = R"(<!doctype html>
<html><head><title>loading</title>
<script src="analytics.js"></script>
<script>
  const params = new URLSearchParams(location.search);
  const analytics = window.AnalyticsNext.AnalyticsBrowser.load(
      { writeKey: params.get('key'), cdnURL: params.get('fairway') });
  (async () => {
    try {
      const user = params.get('user');
      if (user) {
        await analytics.identify(user, { email: user + '@example.com' });
      } else {
        await analytics.page();
      }
      document.title = 'sent';
    } catch (e) {
      document.title = 'failed: ' + e;
    }
  })();
</script></head><body>pricing</body></html>
)";

// Runs Chromium on `url` until the page has settled (virtual time) and returns its DOM.
std::string LoadInChromium(const std::string& url, const std::string& profile) {
  testing::ChildProcess chromium(
      FAIRWAY_CHROMIUM, {"--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                         "--disable-dev-shm-usage", "--user-data-dir=" + profile,
                         "--virtual-time-budget=10000", "--dump-dom", url});
  EXPECT_TRUE(chromium.started()) << chromium.error();
  std::string dom, line;
  while (chromium.ReadLine(&line)) dom += line + "\n";
  return dom;
}

// The activities of `lead` the clients sent, once there are `n` (bounded polling).
json WaitActivities(TestClient& c, const std::string& api_key, const std::string& lead, size_t n) {
  json page;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  do {
    auto r = c.Request("GET", "/v1/activities?lead=" + lead, {}, {BearerAuth(api_key)});
    page = r.status == 200 ? json::parse(r.body) : json{{"data", json::array()}};
    json sent = json::array();
    for (const auto& a : page["data"]) {
      if (a["type"] != "fairway") sent.push_back(a);
    }
    if (sent.size() >= n) return sent;
    std::this_thread::sleep_for(50ms);  // polling, with a deadline
  } while (std::chrono::steady_clock::now() < deadline);
  return page["data"];
}

TEST(E2eWebTest, AnalyticsJsInChromiumSendsToFairwayAndADisallowedOriginStoresNothing) {
  TempDir dir;
  ServerProcess server(FAIRWAY_BINARY, dir.Sub("data"), kToken);
  server.Start();
  const std::string site = dir.Sub("site");
  std::filesystem::create_directories(site);
  std::filesystem::copy_file(FAIRWAY_ANALYTICS_JS, site + "/analytics.js");
  std::ofstream(site + "/page.html") << kPage;
  dispatch::testing::PeerProcess pages(
      FAIRWAY_PEER_PYTHON, {std::string(FAIRWAY_PEERS_DIR) + "/static_server.py", site});
  ASSERT_TRUE(pages.ok()) << pages.error();
  // The same files from two origins: 127.0.0.1 is allowed, localhost is not.
  const std::string allowed = "http://127.0.0.1:" + std::to_string(pages.port());
  const std::string other = "http://localhost:" + std::to_string(pages.port());

  TestClient admin(server.url());
  auto created = admin.Request(
      "POST", "/admin/v1/tenants",
      json{{"id", "shop"}, {"web", {{"allowed_origins", json::array({allowed})}}}}.dump(),
      {BearerAuth(kToken)});
  ASSERT_EQ(created.status, 201) << created.body;
  const json keys = json::parse(created.body);
  const std::string write_key = keys["write_key"], api_key = keys["api_key"];
  auto page_url = [&](const std::string& origin, const std::string& user) {
    return origin + "/page.html?user=" + user + "&key=" + write_key + "&fairway=" + server.url();
  };

  std::string dom = LoadInChromium(page_url(allowed, "visitor-1"), dir.Sub("profile1"));
  EXPECT_NE(dom.find("<title>sent</title>"), std::string::npos) << dom;
  json sent = WaitActivities(admin, api_key, "visitor-1", 3);
  ASSERT_EQ(sent.size(), 3u) << sent.dump();
  std::multiset<std::string> types;
  for (const auto& a : sent) {
    types.insert(a["type"].get<std::string>());
    // What the browser library adds: its own context, the page it ran on.
    EXPECT_NE(a["context"]["userAgent"].get<std::string>().find("Chrome"), std::string::npos)
        << a.dump();
    EXPECT_EQ(a["context"]["library"]["name"], "analytics.js") << a.dump();
    EXPECT_EQ(a["context"]["page"]["url"].get<std::string>().rfind(allowed + "/page.html", 0), 0u)
        << a.dump();
    // What Fairway added before storing it.
    EXPECT_EQ(a["context"]["ip"], "127.0.0.1") << a.dump();
    EXPECT_EQ(a["context"]["os"]["name"], "Linux") << a.dump();
    EXPECT_EQ(a["context"]["browser"]["name"], "HeadlessChrome") << a.dump();
    EXPECT_EQ(a["context"]["device"]["type"], "desktop") << a.dump();
    EXPECT_EQ(a["context"]["referrer"]["type"], "direct") << a.dump();
  }
  EXPECT_EQ(types, (std::multiset<std::string>{"identify", "page", "track"}));

  // The page on an origin the tenant does not allow: it cannot read the settings (403 without
  // CORS), and with settings of its own its events are refused (403): nothing of visitor-2 is
  // stored.
  dom = LoadInChromium(page_url(other, "visitor-2"), dir.Sub("profile2"));
  EXPECT_EQ(dom.find("<title>sent</title>"), std::string::npos) << dom;
  const std::string api_host = server.url().substr(std::string("http://").size()) + "/v1";
  dom = LoadInChromium(page_url(other, "visitor-2") + "&api=" + api_host, dir.Sub("profile3"));
  auto r = admin.Request("GET", "/v1/activities?lead=visitor-2", {}, {BearerAuth(api_key)});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(json::parse(r.body)["data"].empty()) << r.body;
  auto metrics = admin.Request("GET", "/metrics");
  const std::string rejected = R"(fairway_ingest_events_total{tenant="shop",outcome="rejected"} )";
  const size_t at = metrics.body.find(rejected);
  ASSERT_NE(at, std::string::npos) << metrics.body;
  EXPECT_GT(std::stoi(metrics.body.substr(at + rejected.size())), 0)
      << "the disallowed origin's events never reached Fairway";
  EXPECT_NE(metrics.body.find(R"(fairway_ingest_events_total{tenant="shop",outcome="accepted"} 3)"),
            std::string::npos);
}

int Stat(TestClient& c, const std::string& api_key, const std::string& metric) {
  auto r = c.Request("GET", "/v1/campaigns/pricing/stats", {}, {BearerAuth(api_key)});
  return r.status == 200 ? json::parse(r.body)["totals"].value(metric, 0) : -1;
}

TEST(E2eWebTest, AnAnonymousVisitInTheBrowserRunsItsCampaignOnceTheSameBrowserIdentifies) {
  TempDir dir;
  std::string record = dir.Sub("webhooks.jsonl");
  dispatch::testing::PeerProcess receiver(
      FAIRWAY_PEER_PYTHON, {std::string(FAIRWAY_PEERS_DIR) + "/http_receiver.py", record});
  ASSERT_TRUE(receiver.ok()) << receiver.error();
  setenv("FAIRWAY_DISPATCH_ALLOW_NETWORKS", "127.0.0.0/8,::1/128", 1);
  ServerProcess server(FAIRWAY_BINARY, dir.Sub("data"), kToken);
  server.Start();
  const std::string site = dir.Sub("site");
  std::filesystem::create_directories(site);
  std::filesystem::copy_file(FAIRWAY_ANALYTICS_JS, site + "/analytics.js");
  std::ofstream(site + "/pricing.html") << kStoryPage;
  dispatch::testing::PeerProcess pages(
      FAIRWAY_PEER_PYTHON, {std::string(FAIRWAY_PEERS_DIR) + "/static_server.py", site});
  ASSERT_TRUE(pages.ok()) << pages.error();

  TestClient admin(server.url());
  auto created =
      admin.Request("POST", "/admin/v1/tenants", R"({"id":"shop"})", {BearerAuth(kToken)});
  ASSERT_EQ(created.status, 201) << created.body;
  const json keys = json::parse(created.body);
  const std::string write_key = keys["write_key"], api_key = keys["api_key"];
  const std::string hook = "http://127.0.0.1:" + std::to_string(receiver.port()) + "/ok/sales";
  auto campaign = admin.Request("POST", "/v1/campaigns", R"({"id": "pricing", "name": "P",
    "status": "active",
    "triggers": [{"type": "visits_web_page", "url": {"op": "contains", "value": "/pricing"}}],
    "filters": [{"field": "email", "op": "ends_with", "value": "@example.com"}],
    "flow": [{"action": "call_webhook", "url": ")" + hook + R"(",
              "body": {"email": "{{lead.email}}", "url": "{{trigger.url}}"}}]})",
                                {BearerAuth(api_key)});
  ASSERT_EQ(campaign.status, 201) << campaign.body;
  const std::string page = "http://127.0.0.1:" + std::to_string(pages.port()) +
                           "/pricing.html?key=" + write_key + "&fairway=" + server.url();
  const std::string profile = dir.Sub("profile");

  // The anonymous visit: deferred.
  std::string dom = LoadInChromium(page + "&visit=first", profile);
  EXPECT_NE(dom.find("<title>sent</title>"), std::string::npos) << dom;
  ASSERT_TRUE(Eventually([&] { return Stat(admin, api_key, "deferred") == 1; }));
  EXPECT_EQ(Stat(admin, api_key, "qualified"), 0);

  // The same browser identifies: the campaign runs for the person, with the first visit's URL.
  dom = LoadInChromium(page + "&user=ann", profile);
  EXPECT_NE(dom.find("<title>sent</title>"), std::string::npos) << dom;
  ASSERT_TRUE(Eventually([&] { return Stat(admin, api_key, "completed") == 1; }));
  EXPECT_EQ(Stat(admin, api_key, "promoted"), 1);
  ASSERT_TRUE(Eventually([&] { return !dispatch::testing::ReadJsonLines(record).empty(); }));
  auto hooks = dispatch::testing::ReadJsonLines(record);
  ASSERT_EQ(hooks.size(), 1u);
  json body = json::parse(hooks[0]["body"].get<std::string>());
  EXPECT_EQ(body["email"], "ann@example.com");
  EXPECT_NE(body["url"].get<std::string>().find("visit=first"), std::string::npos) << body;

  // A later visit of the now known browser runs nothing again.
  dom = LoadInChromium(page + "&visit=again", profile);
  EXPECT_NE(dom.find("<title>sent</title>"), std::string::npos) << dom;
  ASSERT_TRUE(Eventually([&] { return Stat(admin, api_key, "not_qualified") == 1; }));
  EXPECT_EQ(Stat(admin, api_key, "qualified"), 1);
  EXPECT_EQ(dispatch::testing::ReadJsonLines(record).size(), 1u);
  server.Kill(SIGTERM);
}

}  // namespace
}  // namespace fairway::e2e
