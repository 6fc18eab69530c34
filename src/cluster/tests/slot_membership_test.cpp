#include "cluster/slot_membership.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>

#include "testing/kafka_mock.h"
#include "testing/status_matchers.h"

namespace fairway::cluster {
namespace {

using ::fairway::testing::KafkaMockCluster;
using ::fairway::testing::StatusIs;
using ::testing::HasSubstr;

constexpr auto kWait = std::chrono::seconds(60);

KafkaMockCluster& Cluster() { return KafkaMockCluster::Shared(); }
std::string FreshPrefix() { return KafkaMockCluster::FreshTopicPrefix("m"); }

// Every node's slots as its listener heard them; tests wait on it for a state of the group.
class Group {
 public:
  class Node final : public SlotListener {
   public:
    Node(Group* group, std::string name) : group_(group), name_(std::move(name)) {}
    void OnAssigned(const std::vector<uint32_t>& slots) override {
      std::lock_guard lock(group_->mu_);
      for (uint32_t s : slots) {
        // A slot is never given to a node while another still holds it.
        for (const auto& [other, held] : group_->owned_) {
          if (other != name_ && held.contains(s)) ++group_->overlaps_;
        }
        group_->owned_[name_].insert(s);
      }
      group_->cv_.notify_all();
    }
    void OnRevoked(const std::vector<uint32_t>& slots, bool lost) override {
      std::lock_guard lock(group_->mu_);
      for (uint32_t s : slots) group_->owned_[name_].erase(s);
      if (lost) ++group_->lost_;
      group_->cv_.notify_all();
    }

   private:
    Group* group_;
    std::string name_;
  };

  Node* Add(const std::string& name) {
    std::lock_guard lock(mu_);
    nodes_.push_back(std::make_unique<Node>(this, name));
    owned_[name];
    return nodes_.back().get();
  }

  // Waits until the named nodes together own every one of `slots` slots, each exactly once,
  // and the others own none.
  bool WaitForSplit(const std::set<std::string>& nodes, uint32_t slots) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, kWait, [&] {
      uint32_t total = 0;
      std::set<uint32_t> all;
      for (const auto& [name, held] : owned_) {
        if (!nodes.contains(name) && !held.empty()) return false;
        if (nodes.contains(name) && held.empty()) return false;
        total += static_cast<uint32_t>(held.size());
        all.insert(held.begin(), held.end());
      }
      return total == slots && all.size() == slots;
    });
  }

  std::map<std::string, std::set<uint32_t>> owned() {
    std::lock_guard lock(mu_);
    return owned_;
  }
  int overlaps() {
    std::lock_guard lock(mu_);
    return overlaps_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::map<std::string, std::set<uint32_t>> owned_;
  int overlaps_ = 0;
  int lost_ = 0;
};

MembershipOptions Options(const std::string& prefix, const std::string& node, uint32_t slots) {
  MembershipOptions o;
  o.kafka.brokers = Cluster().bootstrap_servers();
  o.kafka.topic_prefix = prefix;
  o.kafka.create_topics = false;  // the mock has no CreateTopics
  o.node_id = node;
  o.slots = slots;
  return o;
}

TEST(SlotOfTest, IsStableAndSpreadsTenants) {
  EXPECT_EQ(SlotOf(TenantId("acme"), 64), SlotOf(TenantId("acme"), 64));
  std::set<uint32_t> used;
  for (int i = 0; i < 1'000; ++i) {
    uint32_t s = SlotOf(TenantId(fmt::format("tenant-{}", i)), 64);
    ASSERT_LT(s, 64u);
    used.insert(s);
  }
  EXPECT_EQ(used.size(), 64u);
  EXPECT_EQ(SlotOf(TenantId("acme"), 1), 0u);
}

TEST(SlotMembershipTest, NodesSplitTheSlotsAndALeaveMovesOnlyTheLeaversSlots) {
  constexpr uint32_t kSlots = 12;
  std::string prefix = FreshPrefix();
  ASSERT_OK(Cluster().CreateTopic(SlotMembership::TopicFor(prefix), kSlots, 3));
  Group group;
  std::map<std::string, std::unique_ptr<SlotMembership>> nodes;
  for (const char* name : {"a", "b", "c"}) {
    auto m = SlotMembership::Join(Options(prefix, name, kSlots), group.Add(name));
    ASSERT_OK(m);
    nodes[name] = std::move(m).value();
  }
  ASSERT_TRUE(group.WaitForSplit({"a", "b", "c"}, kSlots)) << "never split over three nodes";
  auto before = group.owned();
  for (const auto& [name, held] : before) {
    EXPECT_EQ(held.size(), kSlots / 3) << name;
    EXPECT_EQ(nodes[name]->Owned(), std::vector<uint32_t>(held.begin(), held.end())) << name;
  }

  nodes["b"]->Leave();
  ASSERT_TRUE(group.WaitForSplit({"a", "c"}, kSlots)) << "b's slots never moved";
  auto after = group.owned();
  // Sticky: what a and c owned, they still own; only b's slots moved.
  for (const char* name : {"a", "c"}) {
    for (uint32_t s : before[name]) EXPECT_TRUE(after[name].contains(s)) << name << " slot " << s;
  }
  EXPECT_EQ(after["a"].size() + after["c"].size(), kSlots);
  EXPECT_TRUE(nodes["b"]->Owned().empty());
  EXPECT_EQ(group.overlaps(), 0);
}

TEST(SlotMembershipTest, AJoiningNodeTakesOnlyItsShare) {
  constexpr uint32_t kSlots = 8;
  std::string prefix = FreshPrefix();
  ASSERT_OK(Cluster().CreateTopic(SlotMembership::TopicFor(prefix), kSlots, 3));
  Group group;
  auto a = SlotMembership::Join(Options(prefix, "a", kSlots), group.Add("a"));
  ASSERT_OK(a);
  ASSERT_TRUE(group.WaitForSplit({"a"}, kSlots));
  auto b = SlotMembership::Join(Options(prefix, "b", kSlots), group.Add("b"));
  ASSERT_OK(b);
  ASSERT_TRUE(group.WaitForSplit({"a", "b"}, kSlots));
  auto owned = group.owned();
  EXPECT_EQ(owned["a"].size(), kSlots / 2);
  EXPECT_EQ(owned["b"].size(), kSlots / 2);
  EXPECT_EQ(group.overlaps(), 0);
  EXPECT_GE((*a)->Rebalances(), 2u);
}

TEST(SlotMembershipTest, ASlotsTopicOfAnotherSizeIsRefusedNamingBoth) {
  std::string prefix = FreshPrefix();
  ASSERT_OK(Cluster().CreateTopic(SlotMembership::TopicFor(prefix), 4, 3));
  Group group;
  auto m = SlotMembership::Join(Options(prefix, "a", 8), group.Add("a"));
  EXPECT_THAT(m, StatusIs(StatusCode::kFailedPrecondition,
                          HasSubstr("has 4 partitions but cluster.slots is 8")));
}

TEST(SlotMembershipTest, AMissingSlotsTopicIsNamedWhenTopicsAreNotCreated) {
  std::string prefix = FreshPrefix();
  Group group;
  auto m = SlotMembership::Join(Options(prefix, "a", 8), group.Add("a"));
  EXPECT_THAT(m, StatusIs(StatusCode::kFailedPrecondition,
                          HasSubstr(SlotMembership::TopicFor(prefix) + "' does not exist")));
}

TEST(SlotMembershipTest, SlotCountsOutOfRangeAreRefused) {
  Group group;
  for (uint32_t slots : {0u, 4097u}) {
    auto m = SlotMembership::Join(Options(FreshPrefix(), "a", slots), group.Add("a"));
    EXPECT_THAT(m, StatusIs(StatusCode::kInvalidArgument, HasSubstr("cluster.slots")));
  }
}

}  // namespace
}  // namespace fairway::cluster
