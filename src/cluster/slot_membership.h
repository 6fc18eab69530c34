#pragma once
// SlotMembership: this node's membership of the cluster, through a Kafka consumer group.
//
// The topic `<prefix>__slots` has one partition per slot and carries no records: it is only a
// membership device. Every node subscribes to it in one consumer group with the
// cooperative-sticky assignor, so Kafka detects a node that stops heartbeating (after the
// session timeout), spreads the slots over the nodes alive, and a join or leave moves only the
// slots it must: the others stay where they are and keep running throughout. A tenant belongs
// to a slot (SlotOf), so a node processes the tenants of the slots it owns.
//
// The listener hears of every change on the membership's own thread, in order: OnAssigned
// before the node acts for the new slots, OnRevoked before another node may be given them (it
// must return once the node does nothing more for them). A slot lost without a revoke (the
// node missed its heartbeats and the group went on without it) is reported through OnRevoked
// too, with `lost` set: another node may already own it.
//
// Thread-safe.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/ids.h"
#include "common/status.h"
#include "log/kafka_log.h"

namespace fairway::cluster {

// The slot of a tenant among `slots` (stable across nodes, releases and restarts).
uint32_t SlotOf(const TenantId& tenant, uint32_t slots);

class SlotListener {
 public:
  virtual ~SlotListener() = default;
  virtual void OnAssigned(const std::vector<uint32_t>& slots) = 0;
  virtual void OnRevoked(const std::vector<uint32_t>& slots, bool lost) = 0;
};

struct MembershipOptions {
  // Brokers, security properties and topic prefix.
  log::KafkaLogOptions kafka;
  // This node's name in the group (its client.id, which Kafka's tools show).
  std::string node_id;
  // Partitions of `<prefix>__slots`: the unit of placement. Fixed for a cluster's life.
  uint32_t slots = 64;
  // A node silent this long leaves the group and its slots move.
  int session_timeout_ms = 6'000;
  int heartbeat_interval_ms = 1'000;
};

class SlotMembership {
 public:
  // Creates the slots topic when it is missing and kafka.create_topics is on (otherwise it
  // must exist with `slots` partitions: FailedPrecondition says what differs), then joins the
  // group. `listener` must outlive the membership.
  static Result<std::unique_ptr<SlotMembership>> Join(MembershipOptions options,
                                                      SlotListener* listener);
  ~SlotMembership();

  // Leaves the group: the listener hears OnRevoked for every slot owned, and the group moves
  // them at once (without waiting for the session timeout).
  void Leave();

  // The slots this node owns now, ascending.
  std::vector<uint32_t> Owned() const;
  bool Owns(uint32_t slot) const;
  // Assignment changes seen (each assign or revoke callback).
  uint64_t Rebalances() const;

  // "<prefix>__slots", also the group's name.
  static std::string TopicFor(std::string_view prefix);

  struct Impl;

 private:
  explicit SlotMembership(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace fairway::cluster
