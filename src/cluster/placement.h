#pragma once
// Placement: which slot a tenant belongs to (docs/distributed.md, "Placement"). A tenant created
// by a cluster node is given a slot then (ChooseSlot), recorded in its configuration and never
// changed; tenants without one (created before placement was recorded) belong to their id's
// hash slot (SlotOf).

#include <cstdint>
#include <string>
#include <vector>

#include "common/ids.h"
#include "common/status.h"
#include "model/tenant.h"
#include "tenancy/tenant_registry.h"

namespace fairway::cluster {

// The slot of `tenant` in a cluster of `slots`: its recorded slot, else its id's hash slot.
uint32_t SlotOfTenant(const tenancy::TenantRegistry& tenants, const TenantId& tenant,
                      uint32_t slots);
uint32_t SlotOfConfig(const model::TenantConfig& tenant, uint32_t slots);

// Chooses the slot of `tenant`, about to be created in a cluster of `slots` slots where
// `existing` are the tenants known and `owner_of[s]` names the node that processes slot s ("":
// not known):
// - a slot asked for (placement.slot) is taken as it is: InvalidArgument naming
//   'placement.slot' when the cluster has no such slot, FailedPrecondition naming
//   'placement.group' when the tenant's group is placed in another slot;
// - a tenant of a group goes where the group's tenants are; the first of a group goes to the
//   group name's hash slot, so that members created at once through different nodes still meet;
// - otherwise the least loaded slot of the least loaded node, the load being the sum of the
//   placement weights of the tenants placed there (ties: the slots from the tenant id's hash
//   slot on, so that equal loads spread).
Result<uint32_t> ChooseSlot(const model::TenantConfig& tenant,
                            const std::vector<model::TenantConfig>& existing,
                            const std::vector<std::string>& owner_of, uint32_t slots);

}  // namespace fairway::cluster
