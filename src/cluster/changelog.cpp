#include "cluster/changelog.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "cluster/slot_membership.h"
#include "common/coding.h"
#include "log/kafka_client.h"
#include "storage/keys.h"
#include "storage/schema.h"

namespace fairway::cluster {
namespace {

constexpr char kOwnerRecord = 'O';
constexpr char kBatchRecord = 'B';
constexpr char kReleaseRecord = 'R';
// The epoch before any owner record was read, and after a release.
constexpr int64_t kNoEpoch = -1;
constexpr int64_t kReleased = -2;

// kind(1) epoch(be64) node-length(be32) node payload
std::string EncodeRecord(char kind, int64_t epoch, std::string_view node,
                         std::string_view payload) {
  std::string v(1, kind);
  PutFixed64BE(&v, static_cast<uint64_t>(epoch));
  PutFixed32BE(&v, static_cast<uint32_t>(node.size()));
  v.append(node);
  v.append(payload);
  return v;
}

struct Record {
  char kind = 0;
  int64_t epoch = 0;
  std::string_view node;
  std::string_view payload;
};

std::optional<Record> DecodeRecord(std::string_view v) {
  if (v.size() < 13) return std::nullopt;
  Record r;
  r.kind = v[0];
  r.epoch = static_cast<int64_t>(DecodeFixed64BE(v.data() + 1));
  uint32_t n = DecodeFixed32BE(v.data() + 9);
  if (v.size() - 13 < n) return std::nullopt;
  r.node = v.substr(13, n);
  r.payload = v.substr(13 + n);
  if (r.kind != kOwnerRecord && r.kind != kBatchRecord && r.kind != kReleaseRecord) {
    return std::nullopt;
  }
  return r;
}

// Where the local copy of a slot's state stands: `next` is the changelog offset to read from,
// `current` the epoch in force there; `clean` when the copy may be kept (this node released the
// slot and wrote nothing for it since).
struct SlotMeta {
  int64_t next = 0;
  int64_t current = kNoEpoch;
  bool clean = false;
};

std::string MetaKey(uint32_t slot) {
  std::string k;
  PutFixed32BE(&k, slot);
  return k;
}

std::string EncodeMeta(const SlotMeta& m) {
  std::string v;
  PutFixed64BE(&v, static_cast<uint64_t>(m.next));
  PutFixed64BE(&v, static_cast<uint64_t>(m.current));
  v.push_back(m.clean ? 1 : 0);
  return v;
}

SlotMeta DecodeMeta(std::string_view v) {
  SlotMeta m;
  if (v.size() != 17) return m;
  m.next = static_cast<int64_t>(DecodeFixed64BE(v.data()));
  m.current = static_cast<int64_t>(DecodeFixed64BE(v.data() + 8));
  m.clean = v[16] != 0;
  return m;
}

bool IsTenantState(storage::ColumnFamily cf) {
  for (auto f : storage::kTenantStateFamilies) {
    if (f == cf) return true;
  }
  return false;
}

// The tenant a state key belongs to: the bytes before its first \0.
std::optional<std::string_view> TenantOfKey(std::string_view key) {
  size_t nul = key.find('\0');
  if (nul == std::string_view::npos || nul == 0) return std::nullopt;
  return key.substr(0, nul);
}

// Waits for the acknowledgements of the records of one write.
struct Acks {
  std::mutex mu;
  std::condition_variable cv;
  size_t pending = 0;
  Status first_error;
  std::vector<int64_t> offsets;
};

struct Ticket {
  Acks* acks;
  size_t index;
};

}  // namespace

class JournaledStore;

struct Changelog::Impl {
  ChangelogOptions options;
  storage::Store* local = nullptr;
  std::string topic;
  rd_kafka_t* producer = nullptr;
  rd_kafka_topic_t* produce_topic = nullptr;
  rd_kafka_t* reader = nullptr;
  rd_kafka_topic_t* read_topic = nullptr;
  std::thread poller;
  std::atomic<bool> stopping{false};
  std::unique_ptr<JournaledStore> journaled;

  mutable std::mutex mu;
  std::vector<std::optional<int64_t>> epochs;  // guarded by mu: the owned slots' epochs
  std::vector<SlotMeta> metas;                 // guarded by meta_mu
  std::mutex meta_mu;
  std::mutex take_mu;  // one Take or Release at a time (they share the reader)

  ~Impl();

  std::optional<int64_t> Epoch(uint32_t slot) const {
    std::lock_guard lock(mu);
    return slot < epochs.size() ? epochs[slot] : std::nullopt;
  }

  // Produces `records` (slot, value) and waits for every acknowledgement; their offsets, in
  // order.
  Result<std::vector<int64_t>> Produce(
      const std::vector<std::pair<uint32_t, std::string>>& records) {
    Acks acks;
    acks.pending = records.size();
    acks.offsets.assign(records.size(), -1);
    std::vector<Ticket> tickets(records.size());
    size_t sent = 0;
    for (size_t i = 0; i < records.size(); ++i) {
      tickets[i] = Ticket{&acks, i};
      const auto& [slot, value] = records[i];
      if (rd_kafka_produce(produce_topic, static_cast<int32_t>(slot), RD_KAFKA_MSG_F_COPY,
                           const_cast<char*>(value.data()), value.size(), nullptr, 0,
                           &tickets[i]) != 0) {
        Status st = Unavailable(fmt::format("changelog: sending to Kafka: {}",
                                            rd_kafka_err2str(rd_kafka_last_error())));
        std::unique_lock lock(acks.mu);
        acks.pending -= records.size() - sent;
        if (acks.first_error.ok()) acks.first_error = st;
        break;
      }
      ++sent;
    }
    std::unique_lock lock(acks.mu);
    acks.cv.wait(lock, [&] { return acks.pending == 0; });
    if (!acks.first_error.ok()) return acks.first_error;
    return acks.offsets;
  }

  Result<int64_t> ProduceOne(uint32_t slot, std::string value) {
    FAIRWAY_ASSIGN_OR_RETURN(auto offsets, Produce({{slot, std::move(value)}}));
    return offsets[0];
  }

  static void OnDelivery(const rd_kafka_message_t* m) {
    auto* ticket = static_cast<Ticket*>(m->_private);
    Acks* acks = ticket->acks;
    std::lock_guard lock(acks->mu);
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (acks->first_error.ok()) {
        acks->first_error = Unavailable(
            fmt::format("changelog: Kafka did not store a record: {}", rd_kafka_err2str(m->err)));
      }
    } else {
      acks->offsets[ticket->index] = m->offset;
    }
    if (--acks->pending == 0) acks->cv.notify_all();
  }

  Status SaveMeta(uint32_t slot, const SlotMeta& m) {
    storage::WriteBatch b;
    b.Put(storage::kClusterMeta, MetaKey(slot), EncodeMeta(m));
    FAIRWAY_RETURN_IF_ERROR(local->Write(b, /*sync=*/true));
    metas[slot] = m;
    return Status::Ok();
  }

  // A write for a slot this node does not own: its local copy may no longer be kept.
  Status MarkDirty(uint32_t slot) {
    std::lock_guard lock(meta_mu);
    if (!metas[slot].clean) return Status::Ok();
    SlotMeta m = metas[slot];
    m.clean = false;
    return SaveMeta(slot, m);
  }

  // Deletes the local state rows of `tenants`.
  Status Wipe(const std::vector<TenantId>& tenants) {
    storage::WriteBatch b;
    for (const auto& t : tenants) {
      std::string begin = t.str();
      begin.push_back('\0');
      std::string end = storage::PrefixEnd(begin);
      for (auto cf : storage::kTenantStateFamilies) b.DeleteRange(cf, begin, end);
    }
    return local->Write(b, /*sync=*/true);
  }

  // Applies the slot's records in [from, until) to the local store, starting with epoch
  // `current` in force; returns the epoch in force at `until`.
  Result<int64_t> Replay(uint32_t slot, int64_t from, int64_t until, int64_t current,
                         RestoreStats* stats);
};

// The store modules write tenant state through: journals each write's tenant-state part to the
// slots' changelog partitions before writing the whole batch locally.
class JournaledStore final : public storage::Store {
 public:
  JournaledStore(Changelog::Impl* impl) : impl_(impl), local_(impl->local) {}

  Status Write(storage::WriteBatch& batch, bool sync) override {
    std::map<uint32_t, storage::WriteBatch> parts;
    batch.ForEach([&](const storage::WriteBatch::Op& op) {
      if (!IsTenantState(op.cf)) return;
      auto tenant = TenantOfKey(op.key);
      if (!tenant) return;
      parts[SlotOf(TenantId(std::string(*tenant)), impl_->options.slots)].Add(op);
    });
    if (!parts.empty()) {
      std::vector<std::pair<uint32_t, std::string>> records;
      for (auto& [slot, part] : parts) {
        if (auto epoch = impl_->Epoch(slot)) {
          records.emplace_back(slot, EncodeRecord(kBatchRecord, *epoch, {}, part.Data()));
        } else {
          FAIRWAY_RETURN_IF_ERROR(impl_->MarkDirty(slot));
        }
      }
      if (!records.empty()) FAIRWAY_RETURN_IF_ERROR(impl_->Produce(records).status());
    }
    return local_->Write(batch, sync);
  }

  Status SyncWal() override { return local_->SyncWal(); }
  storage::StorageHealth Health() const override { return local_->Health(); }
  Result<std::optional<std::string>> Get(storage::ColumnFamily cf, std::string_view key) override {
    return local_->Get(cf, key);
  }
  Status MultiGet(storage::ColumnFamily cf, const std::vector<std::string_view>& keys,
                  std::vector<std::optional<std::string>>* results) override {
    return local_->MultiGet(cf, keys, results);
  }
  std::unique_ptr<storage::Iterator> NewIterator(storage::ColumnFamily cf, std::string lower,
                                                 std::string upper, bool fill_cache) override {
    return local_->NewIterator(cf, std::move(lower), std::move(upper), fill_cache);
  }
  Status CompactRange(storage::ColumnFamily cf, std::string_view begin,
                      std::string_view end) override {
    return local_->CompactRange(cf, begin, end);
  }
  uint64_t DiskBytes() override { return local_->DiskBytes(); }
  uint64_t ApproximateBytes(storage::ColumnFamily cf, std::string_view begin,
                            std::string_view end) override {
    return local_->ApproximateBytes(cf, begin, end);
  }
  Status Flush() override { return local_->Flush(); }
  void InjectWriteFailures(int n) override { local_->InjectWriteFailures(n); }

 private:
  Changelog::Impl* impl_;
  storage::Store* local_;
};

Changelog::Impl::~Impl() {
  stopping = true;
  if (poller.joinable()) poller.join();
  if (producer != nullptr) {
    rd_kafka_flush(producer, static_cast<int>(options.kafka.delivery_timeout_ms));
    if (produce_topic != nullptr) rd_kafka_topic_destroy(produce_topic);
    rd_kafka_destroy(producer);
  }
  if (reader != nullptr) {
    if (read_topic != nullptr) rd_kafka_topic_destroy(read_topic);
    rd_kafka_destroy(reader);
  }
}

Result<int64_t> Changelog::Impl::Replay(uint32_t slot, int64_t from, int64_t until, int64_t current,
                                        RestoreStats* stats) {
  if (from >= until) return current;
  const auto partition = static_cast<int32_t>(slot);
  if (rd_kafka_consume_start(read_topic, partition, from) != 0) {
    return Unavailable(fmt::format("changelog: reading slot {}: {}", slot,
                                   rd_kafka_err2str(rd_kafka_last_error())));
  }
  const auto timeout = std::chrono::milliseconds(options.kafka.request_timeout_ms);
  auto last_progress = std::chrono::steady_clock::now();
  int64_t next = from;
  Status st;
  std::vector<rd_kafka_message_t*> batch(500);
  while (st.ok() && next < until) {
    // (A batch call waits for a full batch or its timeout: short, so the last records of the
    // range are not held back.)
    ssize_t got = rd_kafka_consume_batch(read_topic, partition, 20, batch.data(), batch.size());
    if (got < 0) {
      st = Unavailable(fmt::format("changelog: reading slot {}: {}", slot,
                                   rd_kafka_err2str(rd_kafka_last_error())));
      break;
    }
    for (ssize_t i = 0; i < got; ++i) {
      rd_kafka_message_t* m = batch[i];
      if (st.ok() && m->err == RD_KAFKA_RESP_ERR_NO_ERROR && m->offset >= next &&
          m->offset < until) {
        next = m->offset + 1;
        last_progress = std::chrono::steady_clock::now();
        ++stats->records;
        auto r = DecodeRecord(std::string_view(static_cast<const char*>(m->payload), m->len));
        if (!r) {
          spdlog::warn("changelog: slot {} record {} is not a changelog record: skipped", slot,
                       m->offset);
        } else if (r->kind == kOwnerRecord) {
          current = m->offset;
        } else if (r->kind == kReleaseRecord) {
          if (r->epoch == current) current = kReleased;
        } else if (r->epoch == current) {
          auto b = storage::WriteBatch::FromData(std::string(r->payload));
          if (!b.ok()) {
            st = Internal(fmt::format("changelog: slot {} record {}: {}", slot, m->offset,
                                      b.status().message()));
          } else {
            st = local->Write(*b, /*sync=*/false);
            ++stats->batches_applied;
            stats->bytes_applied += r->payload.size();
          }
        }
      } else if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR &&
                 m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        spdlog::warn("changelog: reading slot {}: {}", slot, rd_kafka_message_errstr(m));
      }
      rd_kafka_message_destroy(m);
    }
    if (st.ok() && next < until && std::chrono::steady_clock::now() - last_progress > timeout) {
      st =
          Unavailable(fmt::format("changelog: reading slot {} stalled at offset {} of {} for {} ms",
                                  slot, next, until, timeout.count()));
    }
  }
  rd_kafka_consume_stop(read_topic, partition);
  FAIRWAY_RETURN_IF_ERROR(st);
  FAIRWAY_RETURN_IF_ERROR(local->SyncWal());
  return current;
}

std::string Changelog::TopicFor(std::string_view prefix) {
  return fmt::format("{}__changelog", prefix);
}

Result<std::unique_ptr<Changelog>> Changelog::Open(ChangelogOptions options,
                                                   storage::Store* local) {
  auto impl = std::make_unique<Impl>();
  impl->local = local;
  impl->topic = TopicFor(options.kafka.topic_prefix);
  FAIRWAY_ASSIGN_OR_RETURN(
      rd_kafka_conf_t * pconf,
      log::NewConf(options.kafka,
                   {{"enable.idempotence", "true"},
                    {"acks", "all"},
                    {"linger.ms", "1"},
                    {"delivery.timeout.ms", std::to_string(options.kafka.delivery_timeout_ms)},
                    {"client.id", "fairway-changelog"}}));
  rd_kafka_conf_set_dr_msg_cb(
      pconf, [](rd_kafka_t*, const rd_kafka_message_t* m, void*) { Impl::OnDelivery(m); });
  FAIRWAY_ASSIGN_OR_RETURN(impl->producer,
                           log::NewClient(RD_KAFKA_PRODUCER, pconf, "the changelog"));
  FAIRWAY_ASSIGN_OR_RETURN(
      rd_kafka_conf_t * rconf,
      log::NewConf(options.kafka, {{"enable.partition.eof", "false"},
                                   {"fetch.wait.max.ms", "20"},
                                   {"client.id", "fairway-changelog-reader"}}));
  FAIRWAY_ASSIGN_OR_RETURN(impl->reader,
                           log::NewClient(RD_KAFKA_CONSUMER, rconf, "the changelog's restores"));
  FAIRWAY_RETURN_IF_ERROR(
      log::EnsureTopic(impl->producer, options.kafka, impl->topic, options.slots, "cluster.slots"));
  impl->produce_topic = rd_kafka_topic_new(impl->producer, impl->topic.c_str(), nullptr);
  impl->read_topic = rd_kafka_topic_new(impl->reader, impl->topic.c_str(), nullptr);
  impl->epochs.assign(options.slots, std::nullopt);
  impl->metas.assign(options.slots, SlotMeta{});
  for (uint32_t s = 0; s < options.slots; ++s) {
    FAIRWAY_ASSIGN_OR_RETURN(auto v, local->Get(storage::kClusterMeta, MetaKey(s)));
    if (v) impl->metas[s] = DecodeMeta(*v);
  }
  impl->options = std::move(options);
  Impl* raw = impl.get();
  impl->poller = std::thread([raw] {
    while (!raw->stopping.load()) rd_kafka_poll(raw->producer, 100);
  });
  impl->journaled = std::make_unique<JournaledStore>(impl.get());
  return std::unique_ptr<Changelog>(new Changelog(std::move(impl)));
}

Changelog::Changelog(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Changelog::~Changelog() = default;

storage::Store* Changelog::store() { return impl_->journaled.get(); }

std::optional<int64_t> Changelog::Epoch(uint32_t slot) const { return impl_->Epoch(slot); }

Result<RestoreStats> Changelog::Take(uint32_t slot, const std::vector<TenantId>& tenants) {
  Impl& im = *impl_;
  if (slot >= im.options.slots) {
    return InvalidArgument(fmt::format("slot {} is not below {}", slot, im.options.slots));
  }
  std::lock_guard take(im.take_mu);
  RestoreStats stats;
  FAIRWAY_ASSIGN_OR_RETURN(stats.epoch, im.ProduceOne(slot, EncodeRecord(kOwnerRecord, kNoEpoch,
                                                                         im.options.node_id, {})));
  SlotMeta meta;
  {
    std::lock_guard lock(im.meta_mu);
    meta = im.metas[slot];
  }
  int64_t from = RD_KAFKA_OFFSET_BEGINNING;
  int64_t current = kNoEpoch;
  if (meta.clean) {
    stats.kept_local = true;
    from = meta.next;
    current = meta.current;
  } else {
    // Marked first: a restore cut short leaves rows that must not be kept.
    {
      std::lock_guard lock(im.meta_mu);
      FAIRWAY_RETURN_IF_ERROR(im.SaveMeta(slot, SlotMeta{0, kNoEpoch, false}));
    }
    FAIRWAY_RETURN_IF_ERROR(im.Wipe(tenants));
    int64_t low = 0, high = 0;
    rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
        im.reader, im.topic.c_str(), static_cast<int32_t>(slot), &low, &high,
        static_cast<int>(im.options.kafka.request_timeout_ms));
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return Unavailable(
          fmt::format("changelog: watermarks of slot {}: {}", slot, rd_kafka_err2str(err)));
    }
    from = low;
  }
  FAIRWAY_ASSIGN_OR_RETURN(current, im.Replay(slot, from, stats.epoch, current, &stats));
  (void)current;
  {
    std::lock_guard lock(im.meta_mu);
    FAIRWAY_RETURN_IF_ERROR(im.SaveMeta(slot, SlotMeta{stats.epoch + 1, stats.epoch, false}));
  }
  {
    std::lock_guard lock(im.mu);
    im.epochs[slot] = stats.epoch;
  }
  spdlog::info(
      "changelog: slot {} taken at epoch {} ({} local rows; {} records read, {} batches, {} "
      "bytes applied)",
      slot, stats.epoch, stats.kept_local ? "kept the" : "replaced the", stats.records,
      stats.batches_applied, stats.bytes_applied);
  return stats;
}

Status Changelog::Release(uint32_t slot, bool clean) {
  Impl& im = *impl_;
  if (slot >= im.options.slots) {
    return InvalidArgument(fmt::format("slot {} is not below {}", slot, im.options.slots));
  }
  std::lock_guard take(im.take_mu);
  std::optional<int64_t> epoch;
  {
    std::lock_guard lock(im.mu);
    epoch = im.epochs[slot];
    im.epochs[slot].reset();
  }
  if (!epoch || !clean) return im.MarkDirty(slot);
  FAIRWAY_ASSIGN_OR_RETURN(int64_t at, im.ProduceOne(slot, EncodeRecord(kReleaseRecord, *epoch,
                                                                        im.options.node_id, {})));
  std::lock_guard lock(im.meta_mu);
  return im.SaveMeta(slot, SlotMeta{at + 1, kReleased, true});
}

}  // namespace fairway::cluster
