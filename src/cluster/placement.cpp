#include "cluster/placement.h"

#include <fmt/format.h>

#include <map>
#include <tuple>

#include "cluster/slot_membership.h"
#include "common/hash.h"

namespace fairway::cluster {

namespace {

uint32_t Placed(const std::optional<uint32_t>& slot, const TenantId& tenant, uint32_t slots) {
  // A recorded slot past the slot count (cluster.slots lowered) wraps like a hash would.
  return slot ? *slot % std::max<uint32_t>(1, slots) : SlotOf(tenant, slots);
}

}  // namespace

uint32_t SlotOfTenant(const tenancy::TenantRegistry& tenants, const TenantId& tenant,
                      uint32_t slots) {
  return Placed(tenants.PlacedSlot(tenant), tenant, slots);
}

uint32_t SlotOfConfig(const model::TenantConfig& tenant, uint32_t slots) {
  return Placed(tenant.placement.slot, tenant.id, slots);
}

Result<uint32_t> ChooseSlot(const model::TenantConfig& tenant,
                            const std::vector<model::TenantConfig>& existing,
                            const std::vector<std::string>& owner_of, uint32_t slots) {
  if (slots == 0) return InvalidArgument("a cluster has at least one slot");
  const model::Placement& wanted = tenant.placement;
  std::optional<uint32_t> group_slot;
  if (!wanted.group.empty()) {
    for (const auto& t : existing) {
      if (t.id != tenant.id && t.placement.group == wanted.group) {
        group_slot = SlotOfConfig(t, slots);
        break;
      }
    }
  }
  if (wanted.slot) {
    if (*wanted.slot >= slots) {
      return InvalidArgument(
          fmt::format("field 'placement.slot' must be below the cluster's slot count ({}), not {}",
                      slots, *wanted.slot));
    }
    if (group_slot && *group_slot != *wanted.slot) {
      return FailedPrecondition(fmt::format(
          "field 'placement.group': the tenants of group '{}' are in slot {}, not slot {}",
          wanted.group, *group_slot, *wanted.slot));
    }
    return *wanted.slot;
  }
  if (!wanted.group.empty()) {
    if (group_slot) return *group_slot;
    return static_cast<uint32_t>(Hash64("group:" + wanted.group) % slots);
  }

  std::vector<uint64_t> slot_load(slots, 0);
  for (const auto& t : existing) {
    if (t.id != tenant.id) slot_load[SlotOfConfig(t, slots)] += t.placement.weight;
  }
  // A slot whose owner is not known counts as a node of its own.
  auto node_of = [&](uint32_t s) {
    return s < owner_of.size() && !owner_of[s].empty() ? owner_of[s]
                                                       : std::string(1, '\0') + std::to_string(s);
  };
  std::map<std::string, uint64_t> node_load;
  for (uint32_t s = 0; s < slots; ++s) node_load[node_of(s)] += slot_load[s];
  const uint32_t start = SlotOf(tenant.id, slots);
  uint32_t best = start;
  auto load_of = [&](uint32_t s) { return std::make_tuple(node_load[node_of(s)], slot_load[s]); };
  for (uint32_t i = 1; i < slots; ++i) {
    const uint32_t s = (start + i) % slots;
    if (load_of(s) < load_of(best)) best = s;
  }
  return best;
}

}  // namespace fairway::cluster
