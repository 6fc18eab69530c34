#include "cluster/slot_membership.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>

#include "common/hash.h"
#include "log/kafka_client.h"

namespace fairway::cluster {

uint32_t SlotOf(const TenantId& tenant, uint32_t slots) {
  return static_cast<uint32_t>(Hash64(tenant.str()) % std::max<uint32_t>(1, slots));
}

std::string SlotMembership::TopicFor(std::string_view prefix) {
  return fmt::format("{}__slots", prefix);
}

struct SlotMembership::Impl {
  MembershipOptions options;
  SlotListener* listener = nullptr;
  std::string topic;
  rd_kafka_t* consumer = nullptr;
  std::thread poller;
  std::atomic<bool> stopping{false};
  bool left = false;  // guarded by leave_mu
  std::mutex leave_mu;

  mutable std::mutex mu;
  std::set<uint32_t> owned;  // guarded by mu
  std::atomic<uint64_t> rebalances{0};

  ~Impl() {
    if (consumer != nullptr) rd_kafka_destroy(consumer);
  }

  static std::vector<uint32_t> Slots(const rd_kafka_topic_partition_list_t* parts) {
    std::vector<uint32_t> slots;
    for (int i = 0; i < parts->cnt; ++i) {
      slots.push_back(static_cast<uint32_t>(parts->elems[i].partition));
    }
    return slots;
  }

  void OnRebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                   rd_kafka_topic_partition_list_t* parts) {
    ++rebalances;
    const bool cooperative = std::string_view(rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE";
    std::vector<uint32_t> slots = Slots(parts);
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      {
        std::lock_guard lock(mu);
        owned.insert(slots.begin(), slots.end());
      }
      if (!slots.empty()) {
        spdlog::info("cluster: node {} takes slots {}", options.node_id, fmt::join(slots, ","));
        listener->OnAssigned(slots);
      }
      rd_kafka_error_t* e = nullptr;
      if (cooperative) {
        e = rd_kafka_incremental_assign(rk, parts);
      } else {
        rd_kafka_assign(rk, parts);
      }
      if (e != nullptr) {
        spdlog::error("cluster: assigning slots: {}", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
      }
      return;
    }
    const bool lost = rd_kafka_assignment_lost(rk) != 0;
    if (!slots.empty()) {
      spdlog::info("cluster: node {} {} slots {}", options.node_id, lost ? "lost" : "releases",
                   fmt::join(slots, ","));
      listener->OnRevoked(slots, lost);
    }
    {
      std::lock_guard lock(mu);
      for (uint32_t s : slots) owned.erase(s);
    }
    if (cooperative) {
      if (rd_kafka_error_t* e = rd_kafka_incremental_unassign(rk, parts)) {
        spdlog::error("cluster: releasing slots: {}", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
      }
    } else {
      rd_kafka_assign(rk, nullptr);
    }
  }

  void Poll() {
    while (!stopping.load()) {
      // The slots topic carries no records: a poll serves the group's callbacks.
      if (rd_kafka_message_t* m = rd_kafka_consumer_poll(consumer, 100)) {
        if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
          spdlog::warn("cluster: membership: {}", rd_kafka_message_errstr(m));
        }
        rd_kafka_message_destroy(m);
      }
    }
  }
};

Result<std::unique_ptr<SlotMembership>> SlotMembership::Join(MembershipOptions options,
                                                             SlotListener* listener) {
  if (options.slots == 0 || options.slots > 4096) {
    return InvalidArgument(
        fmt::format("config key 'cluster.slots': {} is out of range 1-4096", options.slots));
  }
  auto impl = std::make_unique<Impl>();
  impl->listener = listener;
  impl->topic = TopicFor(options.kafka.topic_prefix);
  auto conf = log::NewConf(
      options.kafka,
      {{"group.id", impl->topic},
       {"client.id", options.node_id.empty() ? std::string("fairway") : options.node_id},
       {"partition.assignment.strategy", "cooperative-sticky"},
       {"session.timeout.ms", std::to_string(options.session_timeout_ms)},
       {"heartbeat.interval.ms", std::to_string(options.heartbeat_interval_ms)},
       {"enable.auto.commit", "false"},
       {"enable.auto.offset.store", "false"},
       {"auto.offset.reset", "latest"}});
  if (!conf.ok()) return conf.status();
  impl->options = std::move(options);
  rd_kafka_conf_set_opaque(*conf, impl.get());
  rd_kafka_conf_set_rebalance_cb(
      *conf, [](rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts,
                void* opaque) { static_cast<Impl*>(opaque)->OnRebalance(rk, err, parts); });
  FAIRWAY_ASSIGN_OR_RETURN(impl->consumer,
                           log::NewClient(RD_KAFKA_CONSUMER, *conf, "cluster membership"));
  rd_kafka_poll_set_consumer(impl->consumer);
  FAIRWAY_RETURN_IF_ERROR(log::EnsureTopic(impl->consumer, impl->options.kafka, impl->topic,
                                           impl->options.slots, "cluster.slots"));
  rd_kafka_topic_partition_list_t* subscription = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(subscription, impl->topic.c_str(), RD_KAFKA_PARTITION_UA);
  rd_kafka_resp_err_t sub_err = rd_kafka_subscribe(impl->consumer, subscription);
  rd_kafka_topic_partition_list_destroy(subscription);
  if (sub_err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Unavailable(
        fmt::format("joining the group '{}': {}", impl->topic, rd_kafka_err2str(sub_err)));
  }
  Impl* raw = impl.get();
  impl->poller = std::thread([raw] { raw->Poll(); });
  return std::unique_ptr<SlotMembership>(new SlotMembership(std::move(impl)));
}

SlotMembership::SlotMembership(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

SlotMembership::~SlotMembership() { Leave(); }

void SlotMembership::Leave() {
  std::lock_guard lock(impl_->leave_mu);
  if (impl_->left) return;
  impl_->left = true;
  impl_->stopping = true;
  if (impl_->poller.joinable()) impl_->poller.join();
  // Revokes every slot through the rebalance callback and leaves the group.
  rd_kafka_resp_err_t err = rd_kafka_consumer_close(impl_->consumer);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    spdlog::warn("cluster: leaving the group: {}", rd_kafka_err2str(err));
  }
}

std::vector<uint32_t> SlotMembership::Owned() const {
  std::lock_guard lock(impl_->mu);
  return {impl_->owned.begin(), impl_->owned.end()};
}

bool SlotMembership::Owns(uint32_t slot) const {
  std::lock_guard lock(impl_->mu);
  return impl_->owned.contains(slot);
}

uint64_t SlotMembership::Rebalances() const { return impl_->rebalances.load(); }

}  // namespace fairway::cluster
