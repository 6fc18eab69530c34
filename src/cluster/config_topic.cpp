#include "cluster/config_topic.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "common/coding.h"
#include "log/kafka_client.h"
#include "storage/keys.h"
#include "storage/schema.h"

namespace fairway::cluster {
namespace {

// The follower's position in cluster_meta (slot keys are 4 bytes: no clash).
constexpr std::string_view kPositionKey = "config";
// Keys of slot owner records (tenant ids have no '/').
constexpr std::string_view kSlotKeyPrefix = "slot/";

struct Ack {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  int64_t offset = -1;
};

}  // namespace

struct ConfigTopic::Impl {
  log::KafkaLogOptions kafka;
  storage::Store* local = nullptr;
  tenancy::TenantRegistry* registry = nullptr;
  std::string topic;
  rd_kafka_t* producer = nullptr;
  rd_kafka_topic_t* produce_topic = nullptr;
  rd_kafka_t* reader = nullptr;
  rd_kafka_topic_t* read_topic = nullptr;
  std::thread poller, follower;
  std::atomic<bool> stopping{false};

  SlotOwnerListener slot_owners;                           // set before Follow
  std::map<std::string, NoteListener, std::less<>> notes;  // set before Follow
  mutable std::mutex mu;
  std::condition_variable cv;
  int64_t next = 0;  // guarded by mu: the next offset to apply

  ~Impl() {
    stopping = true;
    if (follower.joinable()) follower.join();
    if (poller.joinable()) poller.join();
    if (read_topic != nullptr) {
      rd_kafka_consume_stop(read_topic, 0);
      rd_kafka_topic_destroy(read_topic);
    }
    if (reader != nullptr) rd_kafka_destroy(reader);
    if (producer != nullptr) {
      rd_kafka_flush(producer, static_cast<int>(kafka.delivery_timeout_ms));
      if (produce_topic != nullptr) rd_kafka_topic_destroy(produce_topic);
      rd_kafka_destroy(producer);
    }
  }

  void Apply(const rd_kafka_message_t* m, const ChangeListener& listener) {
    std::string_view key(static_cast<const char*>(m->key), m->key_len);
    if (key.starts_with(kSlotKeyPrefix)) {
      uint32_t slot = 0;
      auto digits = key.substr(kSlotKeyPrefix.size());
      auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), slot);
      if (ec == std::errc() && end == digits.data() + digits.size() && m->payload != nullptr) {
        std::string_view value(static_cast<const char*>(m->payload), m->len);
        // Kept, so that a restart knows the owners published before its position.
        storage::WriteBatch b;
        b.Put(storage::kClusterMeta, key, value);
        if (Status st = local->Write(b, /*sync=*/false); !st.ok()) {
          spdlog::warn("cluster: storing the owner of slot {}: {}", slot, st.ToString());
        }
        if (slot_owners) slot_owners(slot, value);
      }
      return;
    }
    if (auto slash = key.find('/'); slash != std::string_view::npos) {
      // A note (no tenant id has a '/'); one of a kind this node does not know is skipped.
      auto it = notes.find(key.substr(0, slash));
      if (it != notes.end() && m->payload != nullptr) {
        it->second(key.substr(slash + 1),
                   std::string_view(static_cast<const char*>(m->payload), m->len), m->offset);
      }
      return;
    }
    TenantId id{std::string(key)};
    std::optional<std::string> stored;
    if (m->payload != nullptr) stored.emplace(static_cast<const char*>(m->payload), m->len);
    auto change = registry->ApplyJournaled(id, stored, m->offset);
    if (!change.ok()) {
      spdlog::error("cluster: config record {} skipped: {}", m->offset, change.status().ToString());
      return;
    }
    if (change->applied && listener) listener(id, *change);
  }

  void Run(ChangeListener listener) {
    std::vector<rd_kafka_message_t*> batch(100);
    while (!stopping.load()) {
      ssize_t got = rd_kafka_consume_batch(read_topic, 0, 100, batch.data(), batch.size());
      if (got < 0) {
        // The partition cannot be read now (the topic gone, no leader): back off instead of
        // spinning on the error.
        spdlog::warn("cluster: reading the config topic: {}",
                     rd_kafka_err2str(rd_kafka_last_error()));
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        continue;
      }
      if (got == 0) continue;
      int64_t applied = -1;
      for (ssize_t i = 0; i < got; ++i) {
        rd_kafka_message_t* m = batch[i];
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
          if (m->key != nullptr) Apply(m, listener);
          applied = m->offset;
        } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
          spdlog::warn("cluster: reading the config topic: {}", rd_kafka_message_errstr(m));
        }
        rd_kafka_message_destroy(m);
      }
      if (applied < 0) continue;
      std::string v;
      PutFixed64BE(&v, static_cast<uint64_t>(applied + 1));
      storage::WriteBatch b;
      b.Put(storage::kClusterMeta, kPositionKey, v);
      if (Status st = local->Write(b, /*sync=*/false); !st.ok()) {
        spdlog::warn("cluster: storing the config position: {}", st.ToString());
      }
      std::lock_guard lock(mu);
      next = applied + 1;
      cv.notify_all();
    }
  }
};

std::string ConfigTopic::TopicFor(std::string_view prefix) {
  return fmt::format("{}__config", prefix);
}

Result<std::unique_ptr<ConfigTopic>> ConfigTopic::Open(const log::KafkaLogOptions& kafka,
                                                       storage::Store* local,
                                                       tenancy::TenantRegistry* registry) {
  auto impl = std::make_unique<Impl>();
  impl->kafka = kafka;
  impl->local = local;
  impl->registry = registry;
  impl->topic = TopicFor(kafka.topic_prefix);
  FAIRWAY_ASSIGN_OR_RETURN(
      rd_kafka_conf_t * pconf,
      log::NewConf(kafka, {{"enable.idempotence", "true"},
                           {"acks", "all"},
                           {"linger.ms", "0"},
                           {"delivery.timeout.ms", std::to_string(kafka.delivery_timeout_ms)},
                           {"client.id", "fairway-config"}}));
  rd_kafka_conf_set_dr_msg_cb(pconf, [](rd_kafka_t*, const rd_kafka_message_t* m, void*) {
    auto* ack = static_cast<Ack*>(m->_private);
    std::lock_guard lock(ack->mu);
    ack->err = m->err;
    ack->offset = m->offset;
    ack->done = true;
    ack->cv.notify_all();
  });
  FAIRWAY_ASSIGN_OR_RETURN(impl->producer,
                           log::NewClient(RD_KAFKA_PRODUCER, pconf, "the config topic"));
  FAIRWAY_ASSIGN_OR_RETURN(rd_kafka_conf_t * rconf,
                           log::NewConf(kafka, {{"enable.partition.eof", "false"},
                                                {"fetch.wait.max.ms", "100"},
                                                {"client.id", "fairway-config-reader"}}));
  FAIRWAY_ASSIGN_OR_RETURN(impl->reader,
                           log::NewClient(RD_KAFKA_CONSUMER, rconf, "the config topic's reads"));
  FAIRWAY_RETURN_IF_ERROR(
      log::EnsureTopic(impl->producer, kafka, impl->topic, 1, "its partition count", true));
  impl->produce_topic = rd_kafka_topic_new(impl->producer, impl->topic.c_str(), nullptr);
  impl->read_topic = rd_kafka_topic_new(impl->reader, impl->topic.c_str(), nullptr);
  FAIRWAY_ASSIGN_OR_RETURN(auto position, local->Get(storage::kClusterMeta, kPositionKey));
  if (position && position->size() == 8) {
    impl->next = static_cast<int64_t>(DecodeFixed64BE(position->data()));
  }
  Impl* raw = impl.get();
  impl->poller = std::thread([raw] {
    while (!raw->stopping.load()) rd_kafka_poll(raw->producer, 100);
  });
  return std::unique_ptr<ConfigTopic>(new ConfigTopic(std::move(impl)));
}

ConfigTopic::ConfigTopic(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ConfigTopic::~ConfigTopic() = default;

void ConfigTopic::SetSlotOwnerListener(SlotOwnerListener listener) {
  impl_->slot_owners = std::move(listener);
}

void ConfigTopic::SetNoteListener(std::string kind, NoteListener listener) {
  impl_->notes[std::move(kind)] = std::move(listener);
}

Result<int64_t> ConfigTopic::PublishNote(std::string_view kind, std::string_view name,
                                         const std::string& value) {
  return Produce(fmt::format("{}/{}", kind, name), value);
}

Status ConfigTopic::PublishSlotOwner(uint32_t slot, const std::string& value) {
  return Produce(fmt::format("{}{}", kSlotKeyPrefix, slot), value).status();
}

Result<int64_t> ConfigTopic::Record(const TenantId& id, const std::optional<std::string>& stored) {
  auto at = Produce(id.str(), stored);
  if (!at.ok()) {
    return Unavailable(fmt::format("recording tenant '{}' in the config topic: {}", id.str(),
                                   at.status().message()));
  }
  return at;
}

Result<int64_t> ConfigTopic::Produce(const std::string& key,
                                     const std::optional<std::string>& value) {
  Ack ack;
  if (rd_kafka_produce(impl_->produce_topic, 0, RD_KAFKA_MSG_F_COPY,
                       value ? const_cast<char*>(value->data()) : nullptr,
                       value ? value->size() : 0, key.data(), key.size(), &ack) != 0) {
    return Unavailable(rd_kafka_err2str(rd_kafka_last_error()));
  }
  std::unique_lock lock(ack.mu);
  ack.cv.wait(lock, [&] { return ack.done; });
  if (ack.err != RD_KAFKA_RESP_ERR_NO_ERROR) return Unavailable(rd_kafka_err2str(ack.err));
  return ack.offset;
}

Status ConfigTopic::Follow(ChangeListener listener, std::chrono::milliseconds timeout) {
  Impl& im = *impl_;
  int64_t low = 0, high = 0;
  rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
      im.reader, im.topic.c_str(), 0, &low, &high, static_cast<int>(im.kafka.request_timeout_ms));
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Unavailable(fmt::format("reading the config topic's end: {}", rd_kafka_err2str(err)));
  }
  // The slot owners read before this node's position, then everything after it.
  if (im.slot_owners) {
    std::string begin(kSlotKeyPrefix);
    auto it = im.local->NewIterator(storage::kClusterMeta, begin, storage::PrefixEnd(begin));
    for (it->Seek(begin); it->Valid(); it->Next()) {
      uint32_t slot = 0;
      std::string_view digits = it->key().substr(begin.size());
      auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), slot);
      if (ec == std::errc() && end == digits.data() + digits.size()) {
        im.slot_owners(slot, it->value());
      }
    }
    FAIRWAY_RETURN_IF_ERROR(it->status());
  }
  int64_t from = 0;
  {
    std::lock_guard lock(im.mu);
    // Records compacted away or removed are behind the low watermark.
    im.next = std::max(im.next, low);
    from = im.next;
  }
  if (rd_kafka_consume_start(im.read_topic, 0, from) != 0) {
    return Unavailable(
        fmt::format("reading the config topic: {}", rd_kafka_err2str(rd_kafka_last_error())));
  }
  im.follower = std::thread([&im, listener = std::move(listener)] { im.Run(listener); });
  std::unique_lock lock(im.mu);
  if (!im.cv.wait_for(lock, timeout, [&] { return im.next >= high; })) {
    return Unavailable(
        fmt::format("the config topic was not read up to offset {} within {} ms "
                    "(at {})",
                    high, timeout.count(), im.next));
  }
  return Status::Ok();
}

int64_t ConfigTopic::Applied() const {
  std::lock_guard lock(impl_->mu);
  return impl_->next;
}

}  // namespace fairway::cluster
