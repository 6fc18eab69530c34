#include "cluster/config_topic.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "storage/schema.h"
#include "testing/kafka_mock.h"
#include "testing/status_matchers.h"
#include "testing/store_and_log.h"
#include "testing/temp_dir.h"

namespace fairway::cluster {
namespace {

using ::fairway::testing::KafkaMockCluster;
using ::fairway::testing::TempDir;
using namespace std::chrono_literals;

KafkaMockCluster& Cluster() { return KafkaMockCluster::Shared(); }
std::string FreshPrefix() { return KafkaMockCluster::FreshTopicPrefix("g"); }

log::KafkaLogOptions Kafka(const std::string& prefix) {
  log::KafkaLogOptions o;
  o.brokers = Cluster().bootstrap_servers();
  o.topic_prefix = prefix;
  o.create_topics = false;
  return o;
}

// A node's registry, following the config topic; remembers the changes it was told of.
struct Node {
  explicit Node(const std::string& prefix, TempDir* dir = nullptr) {
    if (dir == nullptr) dir = &own_dir;
    auto s = testing::OpenFairwayStore(dir->Sub("store"));
    EXPECT_OK(s);
    if (!s.ok()) return;
    store = std::move(s).value();
    auto r = tenancy::TenantRegistry::Open(store.get(), &clock);
    EXPECT_OK(r);
    if (!r.ok()) return;
    registry = std::move(r).value();
    auto c = ConfigTopic::Open(Kafka(prefix), store.get(), registry.get());
    EXPECT_OK(c);
    if (!c.ok()) return;
    config = std::move(c).value();
    registry->SetJournal(config.get());
  }
  Status Follow() {
    return config->Follow(
        [this](const TenantId& id, const tenancy::JournaledChange& c) {
          std::lock_guard lock(mu);
          heard.push_back(fmt::format(
              "{}:{}", id.str(), c.config ? model::TenantStatusName(c.config->status) : "gone"));
          cv.notify_all();
        },
        30s);
  }
  bool WaitHeard(size_t n) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, 30s, [&] { return heard.size() >= n; });
  }
  std::vector<std::string> Heard() {
    std::lock_guard lock(mu);
    return heard;
  }
  TempDir own_dir;
  ManualClock clock;
  std::unique_ptr<storage::Store> store;
  std::unique_ptr<tenancy::TenantRegistry> registry;
  std::unique_ptr<ConfigTopic> config;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> heard;
};

model::TenantConfig Config(const std::string& id) {
  model::TenantConfig c;
  c.id = TenantId(id);
  c.name = id;
  return c;
}

TEST(ConfigTopicTest, EveryNodesTenantChangesReachEveryNodeInOneOrder) {
  ASSERT_OK(Cluster().status());
  std::string prefix = FreshPrefix();
  ASSERT_OK(Cluster().CreateTopic(ConfigTopic::TopicFor(prefix), 1, 3));
  Node a(prefix);
  ASSERT_OK_AND_ASSIGN(auto acme, a.registry->Create(Config("acme")));
  ASSERT_OK(a.Follow());  // reads its own record: already held, nothing to tell
  EXPECT_TRUE(a.Heard().empty());

  TempDir b_dir;
  {
    Node b(prefix, &b_dir);
    ASSERT_OK(b.Follow());  // returns once what was there is applied
    ASSERT_OK_AND_ASSIGN(auto seen, b.registry->Get(TenantId("acme")));
    EXPECT_EQ(seen.write_key_hash, acme.config.write_key_hash);
    EXPECT_EQ(b.Heard(), std::vector<std::string>{"acme:active"});
    // b's change reaches a.
    ASSERT_OK(b.registry->SetStatus(TenantId("acme"), model::TenantStatus::kSuspended));
    ASSERT_TRUE(a.WaitHeard(1));
    EXPECT_EQ(a.registry->Get(TenantId("acme"))->status, model::TenantStatus::kSuspended);
  }
  // While b is away, a creates and removes tenants.
  ASSERT_OK(a.registry->Create(Config("beta")));
  ASSERT_OK(a.registry->Create(Config("gone")));
  ASSERT_OK(a.registry->Remove(TenantId("gone")));
  Node b(prefix, &b_dir);  // b restarts on its own store
  EXPECT_EQ(b.registry->Get(TenantId("acme"))->status, model::TenantStatus::kSuspended);
  ASSERT_OK(b.Follow());
  // It reads on from where it stopped: only what came since.
  EXPECT_EQ(b.Heard(), (std::vector<std::string>{"beta:active", "gone:active", "gone:gone"}));
  EXPECT_TRUE(b.registry->Get(TenantId("beta")).ok());
  EXPECT_FALSE(b.registry->Get(TenantId("gone")).ok());
  // a's follower reads its own records in the background: both reach the topic's end.
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (a.config->Applied() < b.config->Applied() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);  // polling, with a deadline
  }
  EXPECT_EQ(b.config->Applied(), a.config->Applied());
}

TEST(ConfigTopicTest, SlotOwnersReachEveryNodeAndARestartStillKnowsThem) {
  std::string prefix = FreshPrefix();
  ASSERT_OK(Cluster().CreateTopic(ConfigTopic::TopicFor(prefix), 1, 3));
  Node a(prefix);
  TempDir b_dir;
  auto owners_of = [](Node& n) {
    auto owners = std::make_shared<std::map<uint32_t, std::string>>();
    n.config->SetSlotOwnerListener([owners, &n](uint32_t slot, std::string_view value) {
      std::lock_guard lock(n.mu);
      (*owners)[slot] = std::string(value);
      n.cv.notify_all();
    });
    return owners;
  };
  {
    Node b(prefix, &b_dir);
    auto owners = owners_of(b);
    ASSERT_OK(b.Follow());
    ASSERT_OK(a.config->PublishSlotOwner(3, R"({"node":"a"})"));
    ASSERT_OK(a.config->PublishSlotOwner(3, R"({"node":"a2"})"));
    ASSERT_OK(a.registry->Create(Config("acme")));  // tenants and owners share the topic
    ASSERT_TRUE(b.WaitHeard(1));
    std::lock_guard lock(b.mu);
    EXPECT_EQ((*owners)[3], R"({"node":"a2"})");
  }
  Node b(prefix, &b_dir);  // reads on after its position: the owners come from its store
  auto owners = owners_of(b);
  ASSERT_OK(b.Follow());
  std::lock_guard lock(b.mu);
  EXPECT_EQ(owners->size(), 1u);
  EXPECT_EQ((*owners)[3], R"({"node":"a2"})");
  EXPECT_TRUE(b.heard.empty());
}

TEST(ConfigTopicTest, AMissingTopicIsNamedWhenTopicsAreNotCreated) {
  std::string prefix = FreshPrefix();
  TempDir dir;
  ManualClock clock;
  ASSERT_OK_AND_ASSIGN(auto store, testing::OpenFairwayStore(dir.Sub("store")));
  ASSERT_OK_AND_ASSIGN(auto registry, tenancy::TenantRegistry::Open(store.get(), &clock));
  EXPECT_THAT(ConfigTopic::Open(Kafka(prefix), store.get(), registry.get()),
              testing::StatusIs(StatusCode::kFailedPrecondition,
                                ::testing::HasSubstr("__config' does not exist")));
}

}  // namespace
}  // namespace fairway::cluster
