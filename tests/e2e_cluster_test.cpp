// A cluster of `fairway serve` nodes on one Kafka cluster (the mock, over TCP): tenants created on
// one node are processed by the node owning their slot, wherever their activities are ingested;
// when a node is killed (SIGKILL), restarted, joined by a fourth and left by another (SIGTERM),
// the slots move and their state follows them through the changelog. Once processing has caught
// up, every lead of every tenant equals what one clean embedded pass over the same activities
// computes, and counts each activity once. 100 tenants, 40 leads each.

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "dispatch/tests/peer_process.h"
#include "http/tests/test_client.h"
#include "testing/kafka_mock.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"
#include "tests/e2e.h"
#include "tests/processing_status.h"
#include "tests/server_process.h"

namespace fairway::e2e {
namespace {

constexpr int kTenants = 100;
constexpr int kSlots = 8;
constexpr int kLeads = 40;
constexpr int kRequests = 4;  // per tenant
constexpr int kPerRequest = 50;

// Event g of a tenant (every tenant gets the same ones): an identify for 1 in 10, one "Signed Up"
// per lead (which a campaign answers with a webhook), "Clicked" otherwise; shuffled event times,
// so traits resolve by event time.
std::string Event(int g) {
  int lead = g % kLeads;
  int64_t second = (static_cast<int64_t>(g) * 7919) % 86'400;
  char ts[64];
  snprintf(ts, sizeof ts, "2026-11-20T%02d:%02d:%02dZ", static_cast<int>(second / 3600),
           static_cast<int>(second % 3600 / 60), static_cast<int>(second % 60));
  std::string common = "\"messageId\":\"m-" + std::to_string(g) + "\",\"timestamp\":\"" + ts + "\"";
  std::string u = "u" + std::to_string(lead);
  if ((g / kLeads) % 10 == 0) {
    return R"({"type":"identify","userId":")" + u + R"(",)" + common + R"(,"traits":{"score":)" +
           std::to_string(g) + "}}";
  }
  std::string event = g / kLeads == 1 ? "Signed Up" : "Clicked";
  return R"({"type":"track","userId":")" + u + R"(","event":")" + event + R"(",)" + common + "}";
}

std::string RequestBody(int r) { return BatchOf(r * kPerRequest, kPerRequest, Event); }

std::string TenantName(int t) { return "t" + std::to_string(t); }

// A lead's activities as GET /v1/activities lists them through `url`: the messageIds of those
// clients sent, and how many of each event Fairway generated, but data_value_changed (which
// depends on the order the identifies arrive in, as below).
struct LeadActivities {
  std::set<std::string> sent;
  std::map<std::string, int> generated;
};
LeadActivities ReadActivities(const std::string& url, const std::string& api_key,
                              const std::string& lead) {
  TestClient c(url);
  auto r = c.Request("GET", "/v1/activities?limit=1000&lead=" + lead, {}, {BearerAuth(api_key)});
  EXPECT_EQ(r.status, 200) << r.body;
  LeadActivities out;
  if (r.status != 200) return out;
  auto page = json::parse(r.body);
  EXPECT_TRUE(page["next_cursor"].is_null()) << r.body;
  for (const auto& a : page["data"]) {
    if (a["type"] == "fairway") {
      if (a["event"] != "data_value_changed") ++out.generated[a["event"].get<std::string>()];
    } else {
      out.sent.insert(a["messageId"].get<std::string>());
    }
  }
  return out;
}

struct Keys {
  std::string write, api;
};

// `placement`: the tenant's "placement" object, when not the default.
Keys CreateTenant(const std::string& url, const std::string& id, int processing_rate = 0,
                  const std::string& placement = "") {
  TestClient admin(url);
  auto r = admin.Request("POST", "/admin/v1/tenants",
                         R"({"id":")" + id +
                             R"(","partitions":4,"quotas":{"ingest_rate":1e9,)"
                             R"("ingest_burst":1e9,"processing_rate":)" +
                             std::to_string(processing_rate) + "}" +
                             (placement.empty() ? "" : R"(,"placement":)" + placement) + "}",
                         {BearerAuth(kToken)});
  EXPECT_EQ(r.status, 201) << r.body;
  if (r.status != 201) return {};
  auto j = json::parse(r.body);
  return {j["write_key"], j["api_key"]};
}

// A campaign that calls `path` of the receiver for each lead that signs up.
std::string WebhookCampaign(int port, const std::string& path, const std::string& tenant) {
  return R"({"id": "signup", "name": "Signed up", "status": "active",
    "triggers": [{"type": "track", "event": "Signed Up"}],
    "flow": [{"action": "call_webhook", "url": "http://127.0.0.1:)" +
         std::to_string(port) + path + R"(", "body": {"tenant": ")" + tenant +
         R"(", "lead": "{{lead.id}}"}}]})";
}

void CreateCampaign(const std::string& url, const std::string& api_key, const std::string& body) {
  TestClient c(url);
  auto r = c.Request("POST", "/v1/campaigns", body, {BearerAuth(api_key)});
  ASSERT_EQ(r.status, 201) << r.body;
}

// Waits (bounded, polling) until `url` answers /readyz with 200.
bool WaitReady(const std::string& url, std::chrono::seconds timeout = 60s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  TestClient c(url);
  std::string last;
  while (std::chrono::steady_clock::now() < deadline) {
    auto r = c.Request("GET", "/readyz", {}, {});
    if (r.status == 200) return true;
    last = r.body;
    std::this_thread::sleep_for(50ms);  // polling, with a deadline
  }
  ADD_FAILURE() << url << " never became ready: " << last;
  return false;
}

// A node of the cluster, restartable; its clients wait for it while it is down.
class Node {
 public:
  Node(const TempDir& dir, const std::string& name, const std::string& brokers)
      : server_(FAIRWAY_BINARY, dir.Sub(name), kToken) {
    server_.UseKafka(brokers);
    server_.SetEnv("FAIRWAY_CLUSTER_ENABLED", "true");
    server_.SetEnv("FAIRWAY_CLUSTER_SLOTS", std::to_string(kSlots));
    server_.SetEnv("FAIRWAY_NODE_ID", name);
    server_.SetEnv("FAIRWAY_KAFKA_PROGRESS_INTERVAL_MS", "0");
    // Snapshots of a slot every 16 KiB of its changelog: restores start from them.
    server_.SetEnv("FAIRWAY_CLUSTER_SNAPSHOT_KB", "16");
    // The webhook receiver listens on loopback, which webhooks may not reach by default.
    server_.SetEnv("FAIRWAY_DISPATCH_ALLOW_NETWORKS", "127.0.0.0/8");
    server_.SetLogFile(dir.Sub(name + ".log"));
  }
  void SetEnv(const std::string& name, const std::string& value) { server_.SetEnv(name, value); }
  void Start() {
    std::lock_guard lock(mu_);
    server_.Start();
    up_ = true;
    cv_.notify_all();
  }
  void Signal(int sig) { server_.Signal(sig); }
  void Kill(int sig) {
    std::lock_guard lock(mu_);
    if (sig == SIGTERM) {
      EXPECT_TRUE(server_.Terminate(60s)) << "a node did not stop on SIGTERM";
    } else {
      server_.Kill(sig);
    }
    up_ = false;
  }
  // The node's address once it is up; empty after `timeout` down.
  std::string WaitUrl(std::chrono::milliseconds timeout = 200ms) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return up_; });
    return up_ ? server_.url() : std::string();
  }

 private:
  ServerProcess server_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool up_ = false;
};

// Sends `requests` (tenant, request) to `node`, each re-sent until acknowledged there (its
// dedup window makes a re-send harmless; another node's would not know it).
void Send(Node* node, const std::vector<std::pair<int, int>>& requests,
          const std::vector<Keys>& keys, const std::function<void()>& on_ack) {
  for (auto [tenant, r] : requests) {
    std::string body = RequestBody(r);
    const auto deadline = std::chrono::steady_clock::now() + 180s;
    for (int attempt = 0;; ++attempt) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline)
          << "request " << r << " of tenant " << tenant << " never acknowledged";
      std::string url = node->WaitUrl();
      if (url.empty()) continue;  // down: wait for its restart
      TestClient c(url);
      auto res = c.Request("POST", "/v1/batch", body, {BasicAuth(keys[tenant].write)});
      if (res.status == 200) break;
      if (res.status != 0) {
        std::cerr << "tenant " << tenant << " request " << r << " attempt " << attempt << ": "
                  << res.status << " " << res.body << "\n";
        std::this_thread::sleep_for(50ms);  // a client's back-off before it re-sends
      }
    }
    on_ack();
  }
}

// The slots `url` processes now (empty when it does not answer).
std::set<int> ActiveSlots(const std::string& url) {
  TestClient c(url);
  auto r = c.Request("GET", "/admin/v1/cluster?limit=1", {}, {BearerAuth(kToken)});
  std::set<int> out;
  if (r.status != 200) return out;
  json j = json::parse(r.body);
  for (const auto& s : j["nodes"][0]["slots"]) out.insert(s.get<int>());
  return out;
}

// Waits (bounded, polling) until `urls` together process every slot, each node at least one;
// returns the seconds it took.
double WaitSlotsCovered(const std::vector<std::string>& urls, std::chrono::seconds timeout = 90s) {
  const auto start = std::chrono::steady_clock::now();
  std::string last;
  while (std::chrono::steady_clock::now() < start + timeout) {
    std::set<int> all;
    bool each = true;
    last.clear();
    for (const auto& url : urls) {
      auto mine = ActiveSlots(url);
      each = each && !mine.empty();
      all.insert(mine.begin(), mine.end());
      last += url + ":" + std::to_string(mine.size()) + " ";
    }
    if (each && all.size() == static_cast<size_t>(kSlots)) {
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    std::this_thread::sleep_for(20ms);  // polling, with a deadline
  }
  ADD_FAILURE() << "the slots never moved to " << last;
  return -1;
}

// The node that processes `tenant` now (GET /admin/v1/cluster names it the owner), or "".
std::string OwnerOf(const std::vector<std::string>& urls, const std::string& tenant) {
  for (const auto& url : urls) {
    TestClient c(url);
    auto r = c.Request("GET", "/admin/v1/cluster?tenant=" + tenant, {}, {BearerAuth(kToken)});
    if (r.status != 200) continue;
    json j = json::parse(r.body);
    if (!j["data"].empty() && j["data"][0]["owner"].is_string()) return url;
  }
  return {};
}

// The cluster's topics on the mock (which has no CreateTopics), provisioned as an operator
// would, and `tenant_topics` (name, partitions).
void CreateClusterTopics(testing::KafkaMockCluster& kafka,
                         const std::vector<std::pair<std::string, int>>& tenant_topics) {
  ASSERT_OK(kafka.CreateTopic("fairway.__slots", kSlots, 3));
  ASSERT_OK(kafka.CreateTopic("fairway.__changelog", kSlots, 3));
  ASSERT_OK(kafka.CreateTopic("fairway.__config", 1, 3));
  for (const auto& [topic, partitions] : tenant_topics) {
    ASSERT_OK(kafka.CreateTopic(topic, partitions, 3));
  }
}

// Starts nodes n1-n3 with `env`, and waits until they are ready and share the slots; their
// addresses in `urls`.
std::vector<std::unique_ptr<Node>> StartThreeNodes(
    const TempDir& dir, const std::string& brokers,
    const std::vector<std::pair<std::string, std::string>>& env, std::vector<std::string>* urls) {
  std::vector<std::unique_ptr<Node>> nodes;
  for (const char* name : {"n1", "n2", "n3"}) {
    nodes.push_back(std::make_unique<Node>(dir, name, brokers));
    for (const auto& [k, v] : env) nodes.back()->SetEnv(k, v);
    nodes.back()->Start();
  }
  for (auto& n : nodes) urls->push_back(n->WaitUrl());
  for (const auto& url : *urls) EXPECT_TRUE(WaitReady(url));
  EXPECT_GT(WaitSlotsCovered(*urls), 0);
  return nodes;
}

// Waits (bounded, polling) until every node of `urls` knows `tenant` (the config topic brings
// it a moment after the answer of the node that created it).
void WaitTenantOnEveryNode(const std::vector<std::string>& urls, const std::string& tenant) {
  for (const auto& url : urls) {
    TestClient c(url);
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (c.Request("GET", "/admin/v1/tenants/" + tenant, {}, {BearerAuth(kToken)}).status !=
           200) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << tenant << " never reached " << url;
      std::this_thread::sleep_for(20ms);  // polling, with a deadline
    }
  }
}

// Waits (bounded, polling) until every node of `urls` has taken the layout of `tenant` that
// starts at log partition `first`.
void WaitLayoutOnEveryNode(const std::vector<std::string>& urls, const std::string& tenant,
                           int first, std::chrono::seconds timeout) {
  for (const auto& url : urls) {
    TestClient c(url);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    json t;
    do {
      auto r = c.Request("GET", "/admin/v1/tenants/" + tenant, {}, {BearerAuth(kToken)});
      t = r.status == 200 ? json::parse(r.body) : json{};
      if (t.value("first_partition", 0) == first) break;
      std::this_thread::sleep_for(50ms);  // polling, with a deadline
    } while (std::chrono::steady_clock::now() < deadline);
    EXPECT_EQ(t.value("first_partition", 0), first) << url << " " << t.dump();
  }
}

// Every node of `urls` sees each tenant in the same slot; the group shares one, the slot asked
// for is taken, and the node that processes the heavy tenant (t6) processes the fewest tenants.
void ExpectPlacement(const std::vector<std::string>& urls) {
  std::map<std::string, int> slot_of;
  std::map<std::string, int> tenants_of;
  std::string heavy_node;
  for (const auto& url : urls) {
    TestClient c(url);
    auto r = c.Request("GET", "/admin/v1/cluster?limit=1000", {}, {BearerAuth(kToken)});
    ASSERT_EQ(r.status, 200) << r.body;
    json j = json::parse(r.body);
    ASSERT_EQ(j["data"].size(), static_cast<size_t>(kTenants)) << url;
    for (const auto& t : j["data"]) {
      const std::string id = t["tenant"];
      const int slot = t["slot"];
      auto [it, first] = slot_of.emplace(id, slot);
      EXPECT_EQ(it->second, slot) << id << " is in another slot on " << url;
      if (t["owner"].is_string()) {
        ++tenants_of[url];
        if (id == "t6") heavy_node = url;
      }
    }
  }
  for (int t = 1; t < 5; ++t) EXPECT_EQ(slot_of[TenantName(t)], slot_of["t0"]) << t;
  EXPECT_EQ(slot_of["t5"], kSlots - 1);
  ASSERT_FALSE(heavy_node.empty()) << "no node processes t6";
  std::cout << "tenants per node after placement:";
  for (const auto& [url, n] : tenants_of)
    std::cout << " " << n << (url == heavy_node ? " (t6)" : "");
  std::cout << "\n";
  for (const auto& [url, n] : tenants_of) {
    if (url != heavy_node) {
      EXPECT_LT(tenants_of[heavy_node], n) << url;
    }
  }
}

TEST(E2eClusterTest, NodesDyingJoiningAndLeavingLoseAndRepeatNothing) {
  testing::KafkaMockCluster kafka(3);
  ASSERT_OK(kafka.status());
  std::vector<std::pair<std::string, int>> topics;
  for (int t = 0; t < kTenants; ++t) topics.emplace_back("fairway." + TenantName(t), 4);
  CreateClusterTopics(kafka, topics);

  TempDir dir;
  std::string record = dir.Sub("webhooks.jsonl");
  dispatch::testing::PeerProcess receiver(
      FAIRWAY_PEER_PYTHON, {std::string(FAIRWAY_PEERS_DIR) + "/http_receiver.py", record});
  ASSERT_TRUE(receiver.ok()) << receiver.error();
  std::vector<std::unique_ptr<Node>> nodes;
  for (const char* name : {"n1", "n2", "n3", "n4"}) {
    nodes.push_back(std::make_unique<Node>(dir, name, kafka.bootstrap_servers()));
  }
  for (int i = 0; i < 3; ++i) nodes[i]->Start();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(WaitReady(nodes[i]->WaitUrl()));
  std::vector<std::string> first_three;
  for (int i = 0; i < 3; ++i) first_three.push_back(nodes[i]->WaitUrl());
  ASSERT_GE(WaitSlotsCovered(first_three), 0);
  // Placement: t0-t4 are one group, t5 asks for the last slot, t6 weighs as much as 40 others;
  // the others are placed by load.
  std::vector<Keys> keys;
  for (int t = 0; t < kTenants; ++t) {
    std::string placement = t < 5    ? R"({"group":"grp"})"
                            : t == 5 ? fmt::format(R"({{"slot":{}}})", kSlots - 1)
                            : t == 6 ? R"({"weight":40})"
                                     : "";
    keys.push_back(CreateTenant(nodes[0]->WaitUrl(), TenantName(t), 30, placement));
  }
  for (int t = 0; t < kTenants; ++t) WaitTenantOnEveryNode(first_three, TenantName(t));
  ExpectPlacement(first_three);

  // A tenant's campaigns live with its state on the node that processes it: created through
  // another node, the request is forwarded there; a request forwarded already is not forwarded
  // again (503 naming the slot: it reached a node that no longer owns the slot).
  for (int t = 0; t < kTenants; ++t) {
    std::vector<std::string> up;
    for (int i = 0; i < 3; ++i) up.push_back(nodes[i]->WaitUrl());
    std::string owner = OwnerOf(up, TenantName(t));
    ASSERT_FALSE(owner.empty()) << TenantName(t);
    std::string other = up[0] == owner ? up[1] : up[0];
    TestClient c(other);
    auto refused = c.Request("GET", "/v1/campaigns", {},
                             {BearerAuth(keys[t].api), "Fairway-Forwarded-By: n9"});
    EXPECT_EQ(refused.status, 503) << refused.body;
    EXPECT_NE(refused.body.find("processed by another node"), std::string::npos) << refused.body;
    CreateCampaign(other, keys[t].api,
                   WebhookCampaign(receiver.port(), "/ok/cluster", TenantName(t)));
  }

  // Three clients, one per node, share every tenant's requests.
  std::vector<std::vector<std::pair<int, int>>> work(3);
  for (int r = 0; r < kRequests; ++r) {
    for (int t = 0; t < kTenants; ++t) work[(r + t) % 3].push_back({t, r});
  }
  std::mutex mu;
  std::condition_variable cv;
  int acked = 0;
  auto on_ack = [&] {
    std::lock_guard lock(mu);
    ++acked;
    cv.notify_all();
  };
  auto wait_acked = [&](int n) {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return acked >= n; });
  };
  std::vector<std::thread> clients;
  for (int i = 0; i < 3; ++i) {
    clients.emplace_back([&, i] { Send(nodes[i].get(), work[i], keys, on_ack); });
  }
  constexpr int kTotal = kRequests * kTenants;
  ASSERT_EQ(WaitSlotsCovered({nodes[0]->WaitUrl(), nodes[1]->WaitUrl(), nodes[2]->WaitUrl()}) >= 0,
            true);
  wait_acked(kTotal / 5);
  // n2 dies (processing is behind: the tenants are throttled); once the session timeout has
  // passed, n1 and n3 take its slots.
  nodes[1]->Kill(SIGKILL);
  double failover = WaitSlotsCovered({nodes[0]->WaitUrl(), nodes[2]->WaitUrl()});
  std::cout << "slots of the killed node processed elsewhere after " << failover << " s\n";
  ::testing::Test::RecordProperty("failover_seconds", std::to_string(failover));
  nodes[1]->Start();  // n2 comes back and takes a share again
  nodes[3]->Start();  // n4 joins
  ASSERT_GE(WaitSlotsCovered({nodes[0]->WaitUrl(), nodes[1]->WaitUrl(), nodes[2]->WaitUrl(),
                              nodes[3]->WaitUrl()}),
            0);
  for (auto& c : clients) c.join();
  clients.clear();
  nodes[2]->Kill(SIGTERM);  // n3 leaves: its slots move at once
  std::vector<std::string> urls;
  for (int i : {0, 1, 3}) urls.push_back(nodes[i]->WaitUrl());
  double leave = WaitSlotsCovered(urls);
  std::cout << "slots of the node that left processed elsewhere after " << leave << " s\n";
  for (const auto& url : urls) ASSERT_TRUE(WaitReady(url));
  std::map<std::string, std::map<std::string, json>> state;
  for (int t = 0; t < kTenants; ++t) {
    std::string tenant = TenantName(t);
    std::string owner;
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (owner.empty() && std::chrono::steady_clock::now() < deadline) {
      owner = OwnerOf(urls, tenant);
      if (owner.empty()) std::this_thread::sleep_for(50ms);  // polling, with a deadline
    }
    ASSERT_FALSE(owner.empty()) << "no node processes " << tenant;
    ASSERT_TRUE(WaitLeadsProcessed(owner, kToken, 120s, tenant));
    json status = LeadsStatus(owner, kToken, tenant);
    EXPECT_EQ(status["dead_letters_total"], 0) << tenant;
    // Read through a node that does not process the tenant: forwarded to the one that does.
    std::string other = urls[0] == owner ? urls[1] : urls[0];
    state[tenant] = ReadLeads(other, keys[t].api, kLeads);
  }

  // One clean pass on one embedded node over the same activities.
  ServerProcess clean(FAIRWAY_BINARY, dir.Sub("clean"), kToken);
  clean.SetLogFile(dir.Sub("clean.log"));
  clean.SetEnv("FAIRWAY_DISPATCH_ALLOW_NETWORKS", "127.0.0.0/8");
  clean.Start();
  Keys clean_keys = CreateTenant(clean.url(), "t0");
  CreateCampaign(clean.url(), clean_keys.api, WebhookCampaign(receiver.port(), "/ok/clean", "t0"));
  for (int r = 0; r < kRequests; ++r) {
    TestClient c(clean.url());
    auto res = c.Request("POST", "/v1/batch", RequestBody(r), {BasicAuth(clean_keys.write)});
    ASSERT_EQ(res.status, 200) << res.body;
  }
  ASSERT_TRUE(WaitLeadsProcessed(clean.url(), kToken, 60s, "t0"));
  auto expected = ReadLeads(clean.url(), clean_keys.api, kLeads);

  // Every activity of a lead is listed, whichever node ingested it and wherever its tenant was
  // processed meanwhile (read through a node that does not process the tenant), the generated
  // ones as often as in the clean pass.
  const auto until = std::chrono::steady_clock::now() + 30s;
  for (int t = 0; t < kTenants; t += 9) {
    std::string owner = OwnerOf(urls, TenantName(t));
    std::string other = urls[0] == owner ? urls[1] : urls[0];
    for (int lead : {0, 1, kLeads - 1}) {
      std::string u = "u" + std::to_string(lead);
      std::set<std::string> want;
      for (int g = lead; g < kRequests * kPerRequest; g += kLeads) {
        want.insert("m-" + std::to_string(g));
      }
      // (Activities show once processed: a webhook's outcome may still be on its way.)
      LeadActivities got, clean_pass;
      do {
        got = ReadActivities(other, keys[t].api, u);
        clean_pass = ReadActivities(clean.url(), clean_keys.api, u);
        if (got.sent == want && got.generated == clean_pass.generated) break;
        std::this_thread::sleep_for(50ms);  // polling, with a deadline
      } while (std::chrono::steady_clock::now() < until);
      EXPECT_EQ(got.sent, want) << TenantName(t) << " " << u;
      EXPECT_EQ(clean_pass.sent, want) << u;
      EXPECT_EQ(got.generated, clean_pass.generated) << TenantName(t) << " " << u;
    }
  }

  constexpr int kPerLead = kRequests * kPerRequest / kLeads;
  for (int t = 0; t < kTenants; ++t) {
    for (int i = 0; i < kLeads; ++i) {
      std::string u = "u" + std::to_string(i);
      json& got = state[TenantName(t)][u];
      EXPECT_EQ(got["activity_count"], kPerLead) << TenantName(t) << " " << u;
      // Everything else equals the clean pass, but for the count of data_value_changed: a
      // trait change is announced when an identify changes a value, which depends on the order
      // the identifies arrive in, and the three clients interleave differently from the clean
      // pass's one (traits themselves resolve by event time: they must be equal).
      json got_lead = got, want_lead = expected[u];
      for (auto* j : {&got_lead, &want_lead}) {
        auto& counters = (*j)["counters"];
        for (auto it = counters.begin(); it != counters.end();) {
          it = (*it)["name"] == "data_value_changed" ? counters.erase(it) : it + 1;
        }
      }
      EXPECT_EQ(got_lead, want_lead) << TenantName(t) << " " << u;
    }
  }
  // Every lead's sign-up webhook of every tenant, each under one idempotency key with one body
  // (a transfer in flight when its node died may have been sent again, with the same key).
  std::map<std::string, std::string> body_by_key;
  size_t requests_seen = 0;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  do {
    body_by_key.clear();
    requests_seen = 0;
    for (const auto& r : dispatch::testing::ReadJsonLines(record)) {
      if (r["path"] != "/ok/cluster") continue;
      ++requests_seen;
      // Keys are unique per tenant: every tenant here has the same leads and activities.
      std::string key = json::parse(r["body"].get<std::string>())["tenant"].get<std::string>() +
                        "/" + r["headers"].value("idempotency-key", "");
      auto [it, inserted] = body_by_key.emplace(key, r["body"].get<std::string>());
      EXPECT_EQ(it->second, r["body"].get<std::string>()) << "key " << key << " with two bodies";
    }
    if (body_by_key.size() >= static_cast<size_t>(kTenants * kLeads)) break;
    std::this_thread::sleep_for(50ms);  // polling, with a deadline
  } while (std::chrono::steady_clock::now() < deadline);
  EXPECT_EQ(body_by_key.size(), static_cast<size_t>(kTenants * kLeads));
  // Sent again: at most what was in flight when a node died, four transfers per destination (a
  // tenant's one receiver); a slot whose state did not follow it would send all its tenants'
  // webhooks again.
  EXPECT_LE(requests_seen, body_by_key.size() + 4 * kTenants);
  ::testing::Test::RecordProperty("webhook_requests", std::to_string(requests_seen));
  std::cout << requests_seen << " webhook requests for " << body_by_key.size() << " keys\n";
  // The slots' state moved through snapshots: the nodes wrote them, and the ones that took
  // slots over started their restores there (the state checked above).
  double written = 0, from_snapshot = 0;
  for (const auto& url : urls) {
    TestClient c(url);
    auto m = c.Request("GET", "/metrics", {}, {});
    written += MetricValue(m.body, R"(fairway_cluster_snapshots_total{outcome="written"})");
    from_snapshot += MetricValue(m.body, R"(fairway_cluster_restores_total{from="snapshot"})");
  }
  std::cout << written << " snapshots written, " << from_snapshot
            << " restores from a snapshot (nodes alive at the end)\n";
  EXPECT_GT(written, 0);
  EXPECT_GT(from_snapshot, 0);
  clean.Kill(SIGTERM);
  for (int i : {0, 1, 3}) nodes[i]->Kill(SIGTERM);
}

// A tenant's partitions go from 4 to 8 while clients send through all three nodes, each lead's
// consecutive requests through different nodes, and the change is asked of a node that does not
// process the tenant. The nodes hold the tenant's appends (503, the clients re-send) from the
// moment they learn of the change until every node has stopped appending to the old layout and
// it is sealed: no lead's activity is processed after a later one, and each is counted once.
TEST(E2eClusterTest, APartitionChangeUnderLoadThroughEveryNodeKeepsEveryLeadsOrder) {
  testing::KafkaMockCluster kafka(3);
  ASSERT_OK(kafka.status());
  CreateClusterTopics(kafka, {{"fairway.acme", 4}, {"fairway.acme.1", 8}});
  TempDir dir;
  std::vector<std::string> urls;
  // A small read-ahead keeps the backlog in the log, so the new layout's partitions are there
  // to read while older activities of the same leads still wait.
  auto nodes = StartThreeNodes(dir, kafka.bootstrap_servers(),
                               {{"FAIRWAY_ENGINE_STREAM_BUFFER_KB", "16"}}, &urls);
  const Keys keys = CreateTenant(urls[0], "acme", 2000);
  std::string owner;
  for (const auto deadline = std::chrono::steady_clock::now() + 30s;
       owner.empty() && std::chrono::steady_clock::now() < deadline;) {
    owner = OwnerOf(urls, "acme");
    if (owner.empty()) std::this_thread::sleep_for(20ms);  // polling, with a deadline
  }
  ASSERT_FALSE(owner.empty()) << "no node processes acme";
  WaitTenantOnEveryNode(urls, "acme");

  constexpr int kClients = 4, kLeadsPerClient = 6, kPer = 5;
  auto lead = [](int c, int l) { return fmt::format("c{}-l{}", c, l); };
  std::atomic<int> acknowledged{0}, held{0};
  std::atomic<bool> stop{false};
  std::vector<std::vector<int>> sent(kClients, std::vector<int>(kLeadsPerClient, 0));
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      for (int i = 0; !stop; ++i) {
        const int l = i % kLeadsPerClient;
        int& seq = sent[c][l];
        std::string body = R"({"batch":[)";
        for (int e = 0; e < kPer; ++e) {
          const int n = seq + e;
          body += fmt::format(
              R"({}{{"type":"track","event":"Step","userId":"{}","messageId":"{}-{}",)"
              R"("timestamp":"2026-01-01T{:02}:{:02}:{:02}Z","properties":{{"seq":{}}}}})",
              e ? "," : "", lead(c, l), lead(c, l), n, n / 3600, n / 60 % 60, n % 60, n);
        }
        body += "]}";
        // Each request of a lead goes to another node than the lead's request before; a refused
        // one is re-sent to the same node (its dedup window knows what it stored).
        TestClient client(urls[(c + i + i / kLeadsPerClient) % urls.size()]);
        const auto deadline = std::chrono::steady_clock::now() + 60s;
        auto r = client.Request("POST", "/v1/batch", body, {BasicAuth(keys.write)});
        while (r.status == 503 && std::chrono::steady_clock::now() < deadline) {
          if (r.body.find("changing its partition count") != std::string::npos) ++held;
          std::this_thread::sleep_for(20ms);  // a client's back-off before it re-sends
          r = client.Request("POST", "/v1/batch", body, {BasicAuth(keys.write)});
        }
        ASSERT_EQ(r.status, 200) << r.body;
        seq += kPer;
        ++acknowledged;
      }
    });
  }
  auto wait_acks = [&](int n) { WaitAcknowledged(acknowledged, n); };
  wait_acks(150);
  json before = LeadsStatus(owner, kToken);
  EXPECT_GT(before.value("lag_events", 0), 0) << "processing kept up: nothing to order";
  // Asked of a node that does not process acme: forwarded to the one that does.
  std::string other = urls[0] == owner ? urls[1] : urls[0];
  auto changed = ChangeAcmeFromFourToEightPartitions(other, kToken);
  ASSERT_TRUE(changed.has_value());
  const uint64_t sealed_records = *changed;
  wait_acks(acknowledged + 150);
  stop = true;
  for (auto& t : clients) t.join();
  std::cout << held << " requests held during the change\n";

  // Every lead counts each of its activities once, on the node that processes it.
  TestClient reader(owner);
  const auto deadline = std::chrono::steady_clock::now() + 120s;
  for (int c = 0; c < kClients; ++c) {
    for (int l = 0; l < kLeadsPerClient; ++l) {
      json got;
      do {
        auto r = reader.Request("GET", "/v1/leads/" + lead(c, l), {}, {BearerAuth(keys.api)});
        got = r.status == 200 ? json::parse(r.body) : json{{"http_status", r.status}};
        if (got.value("activity_count", -1) == sent[c][l]) break;
        std::this_thread::sleep_for(50ms);  // polling, with a deadline
      } while (std::chrono::steady_clock::now() < deadline);
      EXPECT_EQ(got.value("activity_count", -1), sent[c][l]) << lead(c, l) << " " << got.dump();
    }
  }
  ASSERT_TRUE(WaitLeadsProcessed(owner, kToken, 60s));
  json status = LeadsStatus(owner, kToken);
  EXPECT_EQ(status["dead_letters_total"], 0);
  ASSERT_EQ(status["partitions"].size(), 12u) << status.dump();
  uint64_t old_committed = 0, new_committed = 0;
  for (size_t p = 0; p < 12; ++p) {
    (p < 4 ? old_committed : new_committed) += status["partitions"][p]["committed"].get<uint64_t>();
  }
  EXPECT_EQ(old_committed, sealed_records) << "appends reached the old layout after its seal";
  EXPECT_GT(new_committed, 0u) << "nothing reached the new layout";
  // Every node took the new layout.
  for (const auto& url : urls) {
    TestClient c(url);
    auto r = c.Request("GET", "/admin/v1/tenants/acme", {}, {BearerAuth(kToken)});
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(json::parse(r.body)["first_partition"], 4) << url;
  }
  TestClient owner_admin(owner);
  auto metrics = owner_admin.Request("GET", "/metrics", {}, {BearerAuth(kToken)});
  ASSERT_EQ(metrics.status, 200);
  EXPECT_EQ(MetricValue(metrics.body, R"(fairway_leads_late_activities_total{tenant="acme"})"), 0)
      << "a lead's activity was processed after a later one of the same lead";
  for (auto& n : nodes) n->Kill(SIGTERM);
}

// A node that does not answer (frozen with SIGSTOP) holds a partition change up: the change
// answers 503 naming it after cluster.layout_change_timeout_ms, the tenant's activities are
// refused (503) meanwhile, and once the node answers again the node processing the tenant
// completes the change by itself; every activity is then counted once, in order. Activities
// re-sent afterwards through other nodes than their first copies are not counted again.
TEST(E2eClusterTest, APartitionChangeHeldUpByASilentNodeCompletesOnceItAnswers) {
  testing::KafkaMockCluster kafka(3);
  ASSERT_OK(kafka.status());
  CreateClusterTopics(kafka, {{"fairway.acme", 4}, {"fairway.acme.1", 8}, {"fairway.acme.2", 12}});
  TempDir dir;
  std::vector<std::string> urls;
  auto nodes = StartThreeNodes(dir, kafka.bootstrap_servers(),
                               {{"FAIRWAY_CLUSTER_LAYOUT_CHANGE_TIMEOUT_MS", "4000"}}, &urls);
  const Keys keys = CreateTenant(urls[0], "acme", 0);
  WaitTenantOnEveryNode(urls, "acme");
  const std::string owner = OwnerOf(urls, "acme");
  ASSERT_FALSE(owner.empty());
  const size_t silent = urls[0] == owner ? 1 : 0;
  const std::string silent_name = fmt::format("n{}", silent + 1);

  // Lead "u" gets activity `seq` through `url`, re-sent while refused with 503.
  int seq = 0;
  auto send = [&](const std::string& url) {
    TestClient c(url);
    std::string body =
        fmt::format(R"({{"type":"track","event":"Step","userId":"u","messageId":"m{}",)"
                    R"("timestamp":"2026-01-01T00:{:02}:{:02}Z"}})",
                    seq, seq / 60, seq % 60);
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    auto r = c.Request("POST", "/v1/track", body, {BasicAuth(keys.write)});
    while (r.status == 503 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(50ms);  // a client's back-off before it re-sends
      r = c.Request("POST", "/v1/track", body, {BasicAuth(keys.write)});
    }
    EXPECT_EQ(r.status, 200) << url << ": " << r.body;
    ++seq;
  };
  for (int i = 0; i < 30; ++i) send(urls[i % 3]);

  nodes[silent]->Signal(SIGSTOP);
  TestClient admin(owner);
  auto patched =
      admin.Request("PATCH", "/admin/v1/tenants/acme", R"({"partitions":8})", {BearerAuth(kToken)});
  EXPECT_EQ(patched.status, 503) << patched.body;
  EXPECT_NE(patched.body.find(silent_name), std::string::npos) << patched.body;
  // Held: nothing reaches either layout while a node may still append to the old one.
  TestClient writer(owner);
  auto refused = writer.Request(
      "POST", "/v1/track", R"({"type":"track","event":"Step","userId":"u","messageId":"held"})",
      {BasicAuth(keys.write)});
  EXPECT_EQ(refused.status, 503) << refused.body;
  EXPECT_NE(refused.body.find("changing its partition count"), std::string::npos) << refused.body;
  nodes[silent]->Signal(SIGCONT);

  // Completed by itself (the node processing acme looks every 10 seconds), on every node.
  WaitLayoutOnEveryNode(urls, "acme", 4, 60s);

  // A second change (8 to 12) while another tenant is created through a third node: the node
  // making the change goes on applying the config topic and answering admin requests while it
  // waits for the answers (were it to wait holding the registry, the new tenant's record would
  // hold up its follower, and with it the answers behind it, until the change timed out).
  nodes[silent]->Signal(SIGSTOP);
  auto second = std::async(std::launch::async, [&] {
    TestClient c(owner);
    return c.Request("PATCH", "/admin/v1/tenants/acme", R"({"partitions":12})",
                     {BearerAuth(kToken)});
  });
  for (const auto begun = std::chrono::steady_clock::now() + 10s;;) {
    // A repeat of the lead's first activity: harmless if taken before the change begins.
    auto r = writer.Request("POST", "/v1/track",
                            R"({"type":"track","event":"Step","userId":"u","messageId":"m0",)"
                            R"("timestamp":"2026-01-01T00:00:00Z"})",
                            {BasicAuth(keys.write)});
    if (r.status == 503 && r.body.find("changing its partition count") != std::string::npos) break;
    ASSERT_LT(std::chrono::steady_clock::now(), begun) << "the change never began: " << r.body;
    std::this_thread::sleep_for(10ms);  // polling, with a deadline
  }
  std::string third;
  for (const auto& url : urls) {
    if (url != owner && url != urls[silent]) third = url;
  }
  CreateTenant(third, "beta");
  // Seen by the owner's admin API: the change does not hold up the node's other admin
  // operations either.
  TestClient owner_client(owner);
  for (const auto seen = std::chrono::steady_clock::now() + 10s;
       owner_client.Request("GET", "/admin/v1/tenants/beta", {}, {BearerAuth(kToken)}).status !=
       200;) {
    ASSERT_LT(std::chrono::steady_clock::now(), seen) << "beta never reached the owner";
    std::this_thread::sleep_for(10ms);  // polling, with a deadline
  }
  EXPECT_EQ(second.wait_for(0s), std::future_status::timeout)
      << "the owner learnt of beta only once the change had given up";
  nodes[silent]->Signal(SIGCONT);
  auto second_answer = second.get();
  EXPECT_EQ(second_answer.status, 200) << second_answer.body;
  WaitLayoutOnEveryNode(urls, "acme", 12, 30s);
  const int after_changes = seq;
  for (int i = 0; i < 30; ++i) send(urls[i % 3]);

  ASSERT_TRUE(WaitLeadsProcessed(owner, kToken, 60s));
  TestClient reader(owner);
  json lead;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  do {
    auto r = reader.Request("GET", "/v1/leads/u", {}, {BearerAuth(keys.api)});
    lead = r.status == 200 ? json::parse(r.body) : json{};
    if (lead.value("activity_count", -1) == seq) break;
    std::this_thread::sleep_for(50ms);  // polling, with a deadline
  } while (std::chrono::steady_clock::now() < deadline);
  EXPECT_EQ(lead.value("activity_count", -1), seq) << lead.dump();

  // A client re-sends activities sent since the last change to other nodes than their first
  // copies went to. A node drops a repeat it knows of (its own appends, and what it read of
  // the old layouts when it took a new one); it stores the others, and processing skips them.
  auto repeats_seen = [&] {
    double n = 0;
    for (const auto& url : urls) {
      TestClient c(url);
      auto m = c.Request("GET", "/metrics", {}, {BearerAuth(kToken)});
      n += MetricValue(m.body, R"(fairway_ingest_events_total{tenant="acme",outcome="duplicate"})");
      n += MetricValue(m.body,
                       R"(fairway_engine_repeats_skipped_total{tenant="acme",processor="leads"})");
    }
    return n;
  };
  const double repeats_before = repeats_seen();
  const int total = seq;
  for (int i = 0; i < 10; ++i) {
    seq = after_changes + i;
    send(urls[(i + 1) % 3]);  // its first copy went to urls[i % 3]
  }
  seq = total;
  send(urls[0]);  // one new activity, processed after the repeats
  const auto settle = std::chrono::steady_clock::now() + 60s;
  do {
    auto r = reader.Request("GET", "/v1/leads/u", {}, {BearerAuth(keys.api)});
    lead = r.status == 200 ? json::parse(r.body) : json{};
    if (lead.value("activity_count", -1) == seq) break;
    std::this_thread::sleep_for(50ms);  // polling, with a deadline
  } while (std::chrono::steady_clock::now() < settle);
  EXPECT_EQ(lead.value("activity_count", -1), seq) << "a re-sent activity was counted again";
  ASSERT_TRUE(WaitLeadsProcessed(owner, kToken, 60s));
  auto metrics = admin.Request("GET", "/metrics", {}, {BearerAuth(kToken)});
  ASSERT_EQ(metrics.status, 200);
  EXPECT_EQ(MetricValue(metrics.body, R"(fairway_leads_late_activities_total{tenant="acme"})"), 0);
  EXPECT_EQ(repeats_seen() - repeats_before, 10)
      << "a re-sent activity was neither dropped at ingest nor skipped by processing";
  EXPECT_GT(MetricValue(metrics.body,
                        R"(fairway_engine_repeats_skipped_total{tenant="acme",processor="leads"})"),
            0);
  // The owner made both changes: one waited for the frozen node, both were sealed.
  EXPECT_EQ(MetricValue(metrics.body, R"(fairway_cluster_layout_changes_total{outcome="sealed"})"),
            2);
  EXPECT_GE(MetricValue(metrics.body, R"(fairway_cluster_layout_changes_total{outcome="waiting"})"),
            1);
  for (const auto& url : urls) {
    TestClient c(url);
    auto m = c.Request("GET", "/metrics", {}, {BearerAuth(kToken)});
    EXPECT_GE(MetricValue(m.body, "fairway_cluster_rebalances_total"), 1) << url;
  }
  for (auto& n : nodes) n->Kill(SIGTERM);
}

}  // namespace
}  // namespace fairway::e2e
