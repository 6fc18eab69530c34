#include "cluster/changelog.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>

#include "cluster/slot_membership.h"
#include "storage/schema.h"
#include "testing/kafka_mock.h"
#include "testing/status_matchers.h"
#include "testing/store_and_log.h"
#include "testing/temp_dir.h"

namespace fairway::cluster {
namespace {

using ::fairway::testing::KafkaMockCluster;
using ::fairway::testing::StatusIs;
using ::fairway::testing::TempDir;

constexpr uint32_t kSlots = 4;

KafkaMockCluster& Cluster() { return KafkaMockCluster::Shared(); }
std::string FreshPrefix() { return KafkaMockCluster::FreshTopicPrefix("c"); }

// A node: its own store, and its changelog over it.
struct Node {
  Node(const std::string& prefix, const std::string& name) {
    auto s = testing::OpenFairwayStore(dir.Sub("store"));
    EXPECT_OK(s);
    local = std::move(s).value();
    ChangelogOptions o;
    o.kafka.brokers = Cluster().bootstrap_servers();
    o.kafka.topic_prefix = prefix;
    o.kafka.create_topics = false;
    o.kafka.delivery_timeout_ms = 2'000;
    o.kafka.request_timeout_ms = 5'000;
    o.node_id = name;
    o.slots = kSlots;
    auto c = Changelog::Open(o, local.get());
    EXPECT_OK(c);
    changelog = std::move(c).value();
  }
  Status Put(const std::string& tenant, const std::string& key, const std::string& value,
             storage::ColumnFamily cf = storage::kEngineState) {
    storage::WriteBatch b;
    b.Put(cf, tenant + std::string(1, '\0') + key, value);
    return changelog->store()->Write(b, /*sync=*/false);
  }
  std::string Get(const std::string& tenant, const std::string& key,
                  storage::ColumnFamily cf = storage::kEngineState) {
    auto v = local->Get(cf, tenant + std::string(1, '\0') + key);
    EXPECT_OK(v);
    return v.ok() ? v->value_or("<none>") : "<error>";
  }
  TempDir dir;
  std::unique_ptr<storage::Store> local;
  std::unique_ptr<Changelog> changelog;
};

class ChangelogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(Cluster().status());
    prefix_ = FreshPrefix();
    ASSERT_OK(Cluster().CreateTopic(Changelog::TopicFor(prefix_), kSlots, 3));
  }
  // A tenant of slot `slot`, and one of another slot.
  static std::string TenantOf(uint32_t slot, int n = 0) {
    for (int i = 0;; ++i) {
      std::string t = fmt::format("t{}", i);
      if (SlotOf(TenantId(t), kSlots) == slot && n-- == 0) return t;
    }
  }
  std::string prefix_;
};

TEST_F(ChangelogTest, ASlotsStateFollowsItToAnotherNodeAndNothingElseDoes) {
  Node a(prefix_, "a"), b(prefix_, "b");
  const std::string acme = TenantOf(1), other = TenantOf(2);
  ASSERT_OK(a.changelog->Take(1, {TenantId(acme)}));
  ASSERT_OK(a.Put(acme, "lead-1", "v1"));
  ASSERT_OK(a.Put(acme, "lead-2", "v2", storage::kOutbox));
  ASSERT_OK(a.Put(acme, "msg-1", "dedup", storage::kLogDedup));  // the node's own, not state
  ASSERT_OK(a.Put(other, "lead-9", "v9"));                       // a slot a does not own
  EXPECT_EQ(a.Get(acme, "lead-1"), "v1");
  EXPECT_EQ(a.Get(other, "lead-9"), "v9");

  auto taken = b.changelog->Take(1, {TenantId(acme)});
  ASSERT_OK(taken);
  EXPECT_FALSE(taken->kept_local);
  EXPECT_EQ(taken->batches_applied, 2u);
  EXPECT_EQ(b.Get(acme, "lead-1"), "v1");
  EXPECT_EQ(b.Get(acme, "lead-2", storage::kOutbox), "v2");
  EXPECT_EQ(b.Get(acme, "msg-1", storage::kLogDedup), "<none>");
  EXPECT_EQ(b.Get(other, "lead-9"), "<none>");
  EXPECT_GT(taken->epoch, 0);
  EXPECT_EQ(b.changelog->Epoch(1), taken->epoch);
  EXPECT_EQ(b.changelog->Epoch(2), std::nullopt);
}

TEST_F(ChangelogTest, WritesOfAFencedOwnerAreIgnoredByEveryLaterRestore) {
  Node a(prefix_, "a"), b(prefix_, "b"), c(prefix_, "c");
  const std::string acme = TenantOf(3);
  ASSERT_OK(a.changelog->Take(3, {TenantId(acme)}));
  ASSERT_OK(a.Put(acme, "k", "from-a"));
  ASSERT_OK(b.changelog->Take(3, {TenantId(acme)}));
  EXPECT_EQ(b.Get(acme, "k"), "from-a");
  // a missed the hand-over and goes on writing under its old epoch.
  ASSERT_OK(a.Put(acme, "zombie", "from-a-after-b-took-it"));
  ASSERT_OK(a.Put(acme, "k", "from-a-late"));
  ASSERT_OK(b.Put(acme, "k2", "from-b"));
  auto taken = c.changelog->Take(3, {TenantId(acme)});
  ASSERT_OK(taken);
  EXPECT_EQ(c.Get(acme, "k"), "from-a");
  EXPECT_EQ(c.Get(acme, "k2"), "from-b");
  EXPECT_EQ(c.Get(acme, "zombie"), "<none>");
  EXPECT_EQ(taken->batches_applied, 2u);  // a's first write and b's
}

TEST_F(ChangelogTest, ACleanReleaseKeepsTheLocalRowsAndOnlyLaterRecordsAreRead) {
  Node a(prefix_, "a"), b(prefix_, "b");
  const std::string acme = TenantOf(0);
  ASSERT_OK(a.changelog->Take(0, {TenantId(acme)}));
  for (int i = 0; i < 20; ++i) ASSERT_OK(a.Put(acme, fmt::format("k{}", i), "a"));
  ASSERT_OK(a.changelog->Release(0, /*clean=*/true));
  EXPECT_EQ(a.changelog->Epoch(0), std::nullopt);
  ASSERT_OK(b.changelog->Take(0, {TenantId(acme)}));
  ASSERT_OK(b.Put(acme, "k0", "b"));
  ASSERT_OK(b.changelog->Release(0, /*clean=*/true));

  auto again = a.changelog->Take(0, {TenantId(acme)});
  ASSERT_OK(again);
  EXPECT_TRUE(again->kept_local);
  // b's owner record, its batch and its release: not a's twenty batches again.
  EXPECT_EQ(again->records, 3u);
  EXPECT_EQ(again->batches_applied, 1u);
  EXPECT_EQ(a.Get(acme, "k0"), "b");
  EXPECT_EQ(a.Get(acme, "k19"), "a");
}

TEST_F(ChangelogTest, ALocalWriteAfterTheReleaseMakesTheNextTakeReplaceTheRows) {
  Node a(prefix_, "a");
  const std::string acme = TenantOf(2);
  ASSERT_OK(a.changelog->Take(2, {TenantId(acme)}));
  ASSERT_OK(a.Put(acme, "k", "journaled"));
  ASSERT_OK(a.changelog->Release(2, /*clean=*/true));
  ASSERT_OK(a.Put(acme, "stray", "local only"));  // not owned: not journaled
  EXPECT_EQ(a.Get(acme, "stray"), "local only");
  auto again = a.changelog->Take(2, {TenantId(acme)});
  ASSERT_OK(again);
  EXPECT_FALSE(again->kept_local);
  EXPECT_EQ(a.Get(acme, "stray"), "<none>");
  EXPECT_EQ(a.Get(acme, "k"), "journaled");
}

TEST_F(ChangelogTest, ALostSlotIsNotReleasedAndItsRowsAreReplacedOnReturn) {
  Node a(prefix_, "a");
  const std::string acme = TenantOf(1);
  ASSERT_OK(a.changelog->Take(1, {TenantId(acme)}));
  ASSERT_OK(a.Put(acme, "k", "v"));
  ASSERT_OK(a.changelog->Release(1, /*clean=*/false));
  auto again = a.changelog->Take(1, {TenantId(acme)});
  ASSERT_OK(again);
  EXPECT_FALSE(again->kept_local);
  EXPECT_EQ(a.Get(acme, "k"), "v");
}

TEST_F(ChangelogTest, AWriteKafkaDoesNotAcknowledgeIsNotWrittenLocally) {
  Node a(prefix_, "a");
  const std::string acme = TenantOf(1);
  ASSERT_OK(a.changelog->Take(1, {TenantId(acme)}));
  for (int b = 1; b <= 3; ++b) ASSERT_OK(Cluster().SetBrokerDown(b));
  Status st = a.Put(acme, "k", "v");
  for (int b = 1; b <= 3; ++b) ASSERT_OK(Cluster().SetBrokerUp(b));
  EXPECT_THAT(st, StatusIs(StatusCode::kUnavailable, ::testing::HasSubstr("changelog")));
  EXPECT_EQ(a.Get(acme, "k"), "<none>");
  // Once Kafka is back, a retried write goes through (the engine retries a refused commit
  // until it does; the clients reconnect with back-off meanwhile).
  for (int attempt = 0; attempt < 30 && !st.ok(); ++attempt) {
    EXPECT_EQ(a.Get(acme, "k"), "<none>");
    st = a.Put(acme, "k", "v");
  }
  ASSERT_OK(st);
  EXPECT_EQ(a.Get(acme, "k"), "v");
}

TEST_F(ChangelogTest, SlotsOutOfRangeAreRefused) {
  Node a(prefix_, "a");
  EXPECT_THAT(a.changelog->Take(kSlots, {}), StatusIs(StatusCode::kInvalidArgument));
  EXPECT_THAT(a.changelog->Release(kSlots, true), StatusIs(StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace fairway::cluster
