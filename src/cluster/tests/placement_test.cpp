#include "cluster/placement.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "cluster/slot_membership.h"
#include "testing/status_matchers.h"

namespace fairway::cluster {
namespace {

using ::fairway::testing::StatusIs;

model::TenantConfig Tenant(const std::string& id, uint32_t weight = 1, std::string group = {},
                           std::optional<uint32_t> slot = std::nullopt) {
  model::TenantConfig t;
  t.id = TenantId(id);
  t.placement = {.weight = weight, .group = std::move(group), .slot = slot};
  return t;
}

// Creates `t` in the cluster `existing` describes: chooses its slot and records it.
uint32_t Place(model::TenantConfig t, std::vector<model::TenantConfig>* existing,
               const std::vector<std::string>& owners, uint32_t slots) {
  auto slot = ChooseSlot(t, *existing, owners, slots);
  EXPECT_OK(slot);
  t.placement.slot = slot.ok() ? *slot : 0;
  existing->push_back(t);
  return *t.placement.slot;
}

TEST(PlacementTest, AnAskedForSlotIsTakenWhenTheClusterHasIt) {
  const std::vector<model::TenantConfig> none;
  EXPECT_EQ(*ChooseSlot(Tenant("a", 1, "", 0), none, {}, 8), 0u);
  EXPECT_EQ(*ChooseSlot(Tenant("a", 1, "", 7), none, {}, 8), 7u);
  auto r = ChooseSlot(Tenant("a", 1, "", 8), none, {}, 8);
  EXPECT_THAT(r.status(), StatusIs(StatusCode::kInvalidArgument));
  EXPECT_NE(r.status().message().find("'placement.slot'"), std::string::npos);
  EXPECT_THAT(ChooseSlot(Tenant("a", 1, "", 0), none, {}, 0).status(),
              StatusIs(StatusCode::kInvalidArgument));
  // With one slot, everything goes there.
  EXPECT_EQ(*ChooseSlot(Tenant("a", 5), none, {}, 1), 0u);
}

TEST(PlacementTest, TheTenantsOfAGroupShareASlotWhicheverNodePlacesThem) {
  constexpr uint32_t kSlots = 64;
  // Two nodes that have not heard of each other's new tenant place the first two of a group
  // in the same slot, whatever else they know.
  std::vector<model::TenantConfig> node_a{Tenant("x", 50, "", 3)}, node_b;
  const uint32_t first = *ChooseSlot(Tenant("g1", 1, "emea"), node_a, {}, kSlots);
  EXPECT_EQ(*ChooseSlot(Tenant("g2", 99, "emea"), node_b, {}, kSlots), first);
  // A later member goes where the group is, even when the group's first was asked into a slot.
  std::vector<model::TenantConfig> known{Tenant("p1", 1, "pinned", 5)};
  EXPECT_EQ(*ChooseSlot(Tenant("p2", 1, "pinned"), known, {}, kSlots), 5u);
  EXPECT_EQ(*ChooseSlot(Tenant("p3", 1, "pinned", 5), known, {}, kSlots), 5u);
  auto clash = ChooseSlot(Tenant("p4", 1, "pinned", 6), known, {}, kSlots);
  EXPECT_THAT(clash.status(), StatusIs(StatusCode::kFailedPrecondition));
  EXPECT_NE(clash.status().message().find("'placement.group'"), std::string::npos);
  // Another group, or none, is not drawn there.
  EXPECT_NE(*ChooseSlot(Tenant("o", 1), known, {}, kSlots), 5u);
}

TEST(PlacementTest, HeavyTenantsGoToDifferentNodesAndLightOnesAvoidTheirSlots) {
  // Three nodes of two slots each.
  const std::vector<std::string> owners{"n1", "n2", "n3", "n1", "n2", "n3"};
  std::vector<model::TenantConfig> existing;
  std::set<std::string> heavy_nodes;
  std::set<uint32_t> heavy_slots;
  for (int i = 0; i < 3; ++i) {
    const uint32_t s = Place(Tenant(fmt::format("heavy{}", i), 100), &existing, owners, 6);
    heavy_nodes.insert(owners[s]);
    heavy_slots.insert(s);
  }
  EXPECT_EQ(heavy_nodes.size(), 3u);
  std::map<std::string, int> light_per_node;
  for (int i = 0; i < 30; ++i) {
    const uint32_t s = Place(Tenant(fmt::format("light{}", i)), &existing, owners, 6);
    EXPECT_FALSE(heavy_slots.contains(s)) << s;
    ++light_per_node[owners[s]];
  }
  EXPECT_EQ(light_per_node, (std::map<std::string, int>{{"n1", 10}, {"n2", 10}, {"n3", 10}}));
  // A fourth heavy tenant goes to a slot without one.
  EXPECT_FALSE(heavy_slots.contains(Place(Tenant("heavy3", 100), &existing, owners, 6)));
}

TEST(PlacementTest, EqualWeightsFillEverySlotEvenlyUnlikeTheHash) {
  constexpr uint32_t kSlots = 64;
  std::vector<model::TenantConfig> existing;
  std::vector<int> placed(kSlots, 0), hashed(kSlots, 0);
  for (int i = 0; i < 640; ++i) {
    const std::string id = fmt::format("t{}", i);
    ++placed[Place(Tenant(id), &existing, {}, kSlots)];
    ++hashed[SlotOf(TenantId(id), kSlots)];
  }
  EXPECT_EQ(*std::min_element(placed.begin(), placed.end()), 10);
  EXPECT_EQ(*std::max_element(placed.begin(), placed.end()), 10);
  // The hash alone is uneven: what placement improves on.
  EXPECT_GT(*std::max_element(hashed.begin(), hashed.end()) -
                *std::min_element(hashed.begin(), hashed.end()),
            4);
}

TEST(PlacementTest, ATenantWithoutARecordedSlotIsInItsHashSlot) {
  EXPECT_EQ(SlotOfConfig(Tenant("acme"), 64), SlotOf(TenantId("acme"), 64));
  EXPECT_EQ(SlotOfConfig(Tenant("acme", 1, "", 9), 64), 9u);
  // A slot recorded under a larger slot count wraps.
  EXPECT_EQ(SlotOfConfig(Tenant("acme", 1, "", 70), 64), 6u);
}

}  // namespace
}  // namespace fairway::cluster
