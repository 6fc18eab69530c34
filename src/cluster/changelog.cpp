#include "cluster/changelog.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <shared_mutex>
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
// A snapshot: its begin record (under the owner's epoch), its rows (the epoch field holds the
// begin record's offset) and its end record (the same).
constexpr char kSnapshotBegin = 'S';
constexpr char kSnapshotRows = 'T';
constexpr char kSnapshotEnd = 'E';
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
  switch (r.kind) {
    case kOwnerRecord:
    case kBatchRecord:
    case kReleaseRecord:
    case kSnapshotBegin:
    case kSnapshotRows:
    case kSnapshotEnd:
      return r;
    default:
      return std::nullopt;
  }
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
  uint32_t slot;
  int64_t epoch;  // the owner's epoch the record was produced under; kNoEpoch: none
};

// What this node knows of a slot while it owns it.
struct SlotState {
  // Journaled writes of the slot hold it shared; a snapshot's begin holds it alone.
  std::shared_mutex writes;
  // Passed by each journaled write before it takes `writes`, and held by a snapshot while it
  // waits for `writes`: a steady stream of writes cannot keep a snapshot waiting.
  std::mutex turnstile;
  // One Take, Release or Snapshot of the slot at a time.
  std::mutex ops;
  // Set by Release: a snapshot in progress stops.
  std::atomic<bool> releasing{false};
  // Guarded by Changelog::Impl::mu:
  std::optional<int64_t> epoch;
  // This node's latest acknowledged record under `epoch`, and whether every offset from the
  // owner record to it is this node's (no other writer's record lies among them).
  int64_t last_own = -1;
  bool contiguous = false;
  // Bytes journaled since the latest snapshot (or the take).
  uint64_t journaled = 0;
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

  // The consumer group whose offsets are the slots' latest snapshots, and its client.
  std::string snapshot_group;
  rd_kafka_t* bookmarks = nullptr;
  std::atomic<bool> delete_unsupported_logged{false};

  mutable std::mutex mu;
  std::vector<std::unique_ptr<SlotState>> slots;  // fields as SlotState says
  std::vector<SlotMeta> metas;                    // guarded by meta_mu
  std::mutex meta_mu;
  std::mutex read_mu;  // one restore at a time (they share the reader)

  ~Impl();

  std::optional<int64_t> Epoch(uint32_t slot) const {
    std::lock_guard lock(mu);
    return slot < slots.size() ? slots[slot]->epoch : std::nullopt;
  }

  // One record to produce: its slot, value, and the epoch it is written under (kNoEpoch: an
  // owner record).
  struct Out {
    uint32_t slot;
    std::string value;
    int64_t epoch = kNoEpoch;
  };

  // Produces `records` and waits for every acknowledgement; their offsets, in order.
  Result<std::vector<int64_t>> Produce(const std::vector<Out>& records) {
    Acks acks;
    acks.pending = records.size();
    acks.offsets.assign(records.size(), -1);
    std::vector<Ticket> tickets(records.size());
    size_t sent = 0;
    for (size_t i = 0; i < records.size(); ++i) {
      const auto& [slot, value, epoch] = records[i];
      tickets[i] = Ticket{&acks, i, slot, epoch};
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

  Result<int64_t> ProduceOne(uint32_t slot, std::string value, int64_t epoch) {
    FAIRWAY_ASSIGN_OR_RETURN(auto offsets, Produce({{slot, std::move(value), epoch}}));
    return offsets[0];
  }

  // Called in each partition's offset order: keeps SlotState::last_own and contiguous.
  void OnDelivery(const rd_kafka_message_t* m) {
    auto* ticket = static_cast<Ticket*>(m->_private);
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && ticket->epoch != kNoEpoch) {
      std::lock_guard lock(mu);
      SlotState& ss = *slots[ticket->slot];
      if (ss.epoch == ticket->epoch) {
        if (m->offset != ss.last_own + 1) ss.contiguous = false;
        ss.last_own = std::max(ss.last_own, m->offset);
      }
    }
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
  // `current` in force; returns the epoch in force at `until`. With `at_snapshot`, a snapshot
  // that begins at `from` is applied first (FailedPrecondition when it does not end before
  // `until`).
  Result<int64_t> Replay(uint32_t slot, int64_t from, int64_t until, int64_t current,
                         bool at_snapshot, RestoreStats* stats);

  // The slot's latest snapshot as committed in the snapshot group; nullopt: none.
  Result<std::optional<int64_t>> Bookmark(uint32_t slot);
  Status SetBookmark(uint32_t slot, int64_t begin);
  // Deletes the slot's records before `offset`; false when the brokers cannot.
  Result<bool> DeleteBefore(uint32_t slot, int64_t offset);
  Result<std::pair<int64_t, int64_t>> Watermarks(uint32_t slot);
};

// The store modules write tenant state through: journals each write's tenant-state part to the
// slots' changelog partitions before writing the whole batch locally.
class JournaledStore final : public storage::Store {
 public:
  JournaledStore(Changelog::Impl* impl) : impl_(impl), local_(impl->local) {}

  Status Write(storage::WriteBatch& batch, bool sync) override {
    std::map<uint32_t, storage::WriteBatch> parts;
    // A batch's ops are mostly one tenant's: its slot is looked up once.
    std::string last_tenant;
    uint32_t last_slot = 0;
    batch.ForEach([&](const storage::WriteBatch::Op& op) {
      if (!IsTenantState(op.cf)) return;
      auto tenant = TenantOfKey(op.key);
      if (!tenant) return;
      if (last_tenant.empty() || *tenant != last_tenant) {
        last_tenant = std::string(*tenant);
        TenantId id(last_tenant);
        last_slot = impl_->options.slot_of ? impl_->options.slot_of(id) % impl_->options.slots
                                           : SlotOf(id, impl_->options.slots);
      }
      parts[last_slot].Add(op);
    });
    if (parts.empty()) return local_->Write(batch, sync);
    // The slots' writes are held while a snapshot begins (in slot order: no two writers wait
    // for each other).
    std::vector<std::shared_lock<std::shared_mutex>> held;
    std::vector<Changelog::Impl::Out> records;
    for (auto& [slot, part] : parts) {
      SlotState& ss = *impl_->slots[slot];
      { std::lock_guard pass(ss.turnstile); }
      held.emplace_back(ss.writes);
      if (auto epoch = impl_->Epoch(slot)) {
        records.push_back({slot, EncodeRecord(kBatchRecord, *epoch, {}, part.Data()), *epoch});
      } else {
        FAIRWAY_RETURN_IF_ERROR(impl_->MarkDirty(slot));
      }
    }
    if (!records.empty()) FAIRWAY_RETURN_IF_ERROR(impl_->Produce(records).status());
    Status st = local_->Write(batch, sync);
    std::lock_guard lock(impl_->mu);
    for (const auto& r : records) {
      SlotState& ss = *impl_->slots[r.slot];
      if (ss.epoch != r.epoch) continue;
      ss.journaled += r.value.size();
      // The changelog has a batch the local rows lack: a snapshot of them would lose it.
      if (!st.ok()) ss.contiguous = false;
    }
    return st;
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
                                                 std::string upper, bool fill_cache,
                                                 const storage::ReadView* view) override {
    return local_->NewIterator(cf, std::move(lower), std::move(upper), fill_cache, view);
  }
  std::unique_ptr<storage::ReadView> NewReadView() override { return local_->NewReadView(); }
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
  if (bookmarks != nullptr) rd_kafka_destroy(bookmarks);
}

Result<int64_t> Changelog::Impl::Replay(uint32_t slot, int64_t from, int64_t until, int64_t current,
                                        bool at_snapshot, RestoreStats* stats) {
  if (from >= until) return current;
  const auto partition = static_cast<int32_t>(slot);
  if (rd_kafka_consume_start(read_topic, partition, from) != 0) {
    return Unavailable(fmt::format("changelog: reading slot {}: {}", slot,
                                   rd_kafka_err2str(rd_kafka_last_error())));
  }
  const auto timeout = std::chrono::milliseconds(options.kafka.request_timeout_ms);
  auto last_progress = std::chrono::steady_clock::now();
  int64_t next = from;
  // The snapshot the restore starts from: its begin record's offset, whether its end record
  // was read, and the batches read before it (applied after its rows).
  int64_t snapshot = -1;
  bool snapshot_ended = false;
  std::vector<std::string> held;
  // Writes the batch `payload` locally; adds its count of writes to `*writes` when given.
  auto apply = [&](std::string_view payload, int64_t offset, uint64_t* writes = nullptr) -> Status {
    auto b = storage::WriteBatch::FromData(std::string(payload));
    if (!b.ok()) {
      return Internal(
          fmt::format("changelog: slot {} record {}: {}", slot, offset, b.status().message()));
    }
    stats->bytes_applied += payload.size();
    if (writes != nullptr) *writes += b->Count();
    return local->Write(*b, /*sync=*/false);
  };
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
        const bool first = m->offset == from;
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
        } else if (r->kind == kBatchRecord) {
          if (r->epoch != current) {
            // Fenced: written by an owner that had lost the slot.
          } else if (snapshot >= 0 && !snapshot_ended) {
            held.emplace_back(r->payload);
          } else {
            st = apply(r->payload, m->offset);
            ++stats->batches_applied;
          }
        } else if (r->kind == kSnapshotBegin) {
          // Read from the start, a later snapshot only repeats what the batches built.
          if (first && at_snapshot) {
            snapshot = m->offset;
            current = r->epoch;
            stats->snapshot = snapshot;
          }
        } else if (snapshot >= 0 && r->epoch == snapshot && !snapshot_ended) {
          if (r->kind == kSnapshotRows) {
            st = apply(r->payload, m->offset, &stats->snapshot_rows);
          } else {
            snapshot_ended = true;
            for (const auto& payload : held) {
              if (!st.ok()) break;
              st = apply(payload, m->offset);
              ++stats->batches_applied;
            }
            held.clear();
          }
        }
        if (first && at_snapshot && snapshot < 0) {
          spdlog::error(
              "changelog: slot {}: the records before offset {} are gone and no snapshot begins "
              "there: the state they held is lost (was the topic given a retention?)",
              slot, from);
        }
      } else if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
                 m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE) {
        // Deleted while read: a newer snapshot starts further on.
        if (st.ok()) {
          st = Unavailable(
              fmt::format("changelog: slot {}: offset {} was deleted while read", slot, next));
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
  if (snapshot >= 0 && !snapshot_ended) {
    return FailedPrecondition(fmt::format(
        "changelog: slot {}: the snapshot at offset {} has no end record", slot, snapshot));
  }
  FAIRWAY_RETURN_IF_ERROR(local->SyncWal());
  return current;
}

Result<std::pair<int64_t, int64_t>> Changelog::Impl::Watermarks(uint32_t slot) {
  int64_t low = 0, high = 0;
  rd_kafka_resp_err_t err =
      rd_kafka_query_watermark_offsets(reader, topic.c_str(), static_cast<int32_t>(slot), &low,
                                       &high, static_cast<int>(options.kafka.request_timeout_ms));
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Unavailable(
        fmt::format("changelog: watermarks of slot {}: {}", slot, rd_kafka_err2str(err)));
  }
  return std::pair{low, high};
}

Result<std::optional<int64_t>> Changelog::Impl::Bookmark(uint32_t slot) {
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, topic.c_str(), static_cast<int32_t>(slot));
  rd_kafka_resp_err_t err =
      rd_kafka_committed(bookmarks, list, static_cast<int>(options.kafka.request_timeout_ms));
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) err = list->elems[0].err;
  const int64_t offset = list->elems[0].offset;
  rd_kafka_topic_partition_list_destroy(list);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Unavailable(fmt::format("changelog: the latest snapshot of slot {} (group '{}'): {}",
                                   slot, snapshot_group, rd_kafka_err2str(err)));
  }
  if (offset < 0) return std::optional<int64_t>();
  return std::optional<int64_t>(offset);
}

Status Changelog::Impl::SetBookmark(uint32_t slot, int64_t begin) {
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, topic.c_str(), static_cast<int32_t>(slot))->offset =
      begin;
  rd_kafka_topic_partition_list_t* committed = nullptr;
  Status st = log::CommitGroupOffsets(bookmarks, snapshot_group, list,
                                      options.kafka.request_timeout_ms, &committed);
  const bool taken = committed != nullptr && committed->cnt == 1;
  if (committed != nullptr) rd_kafka_topic_partition_list_destroy(committed);
  rd_kafka_topic_partition_list_destroy(list);
  FAIRWAY_RETURN_IF_ERROR(st);
  if (!taken) {
    return Unavailable(
        fmt::format("changelog: Kafka did not take the snapshot of slot {} (group '{}')", slot,
                    snapshot_group));
  }
  return Status::Ok();
}

Result<bool> Changelog::Impl::DeleteBefore(uint32_t slot, int64_t offset) {
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, topic.c_str(), static_cast<int32_t>(slot))->offset =
      offset;
  rd_kafka_DeleteRecords_t* del = rd_kafka_DeleteRecords_new(list);
  rd_kafka_topic_partition_list_destroy(list);
  rd_kafka_queue_t* queue = rd_kafka_queue_new(producer);
  rd_kafka_DeleteRecords(producer, &del, 1, nullptr, queue);
  rd_kafka_DeleteRecords_destroy(del);
  rd_kafka_event_t* ev =
      rd_kafka_queue_poll(queue, static_cast<int>(options.kafka.request_timeout_ms));
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__TIMED_OUT;
  if (ev != nullptr) {
    err = rd_kafka_event_error(ev);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      const auto* result = rd_kafka_event_DeleteRecords_result(ev);
      const auto* offsets = result ? rd_kafka_DeleteRecords_result_offsets(result) : nullptr;
      if (offsets != nullptr && offsets->cnt == 1) err = offsets->elems[0].err;
    }
    rd_kafka_event_destroy(ev);
  }
  rd_kafka_queue_destroy(queue);
  if (err == RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE ||
      err == RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION) {
    if (!delete_unsupported_logged.exchange(true)) {
      spdlog::warn(
          "changelog: the brokers do not delete records (DeleteRecords): {} keeps every record; "
          "restores still start at the latest snapshot",
          topic);
    }
    return false;
  }
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Unavailable(fmt::format("changelog: deleting slot {}'s records before offset {}: {}",
                                   slot, offset, rd_kafka_err2str(err)));
  }
  return true;
}

std::string Changelog::TopicFor(std::string_view prefix) {
  return fmt::format("{}__changelog", prefix);
}

std::string Changelog::SnapshotGroupFor(std::string_view prefix) {
  return fmt::format("{}__changelog.snapshots", prefix);
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
  rd_kafka_conf_set_opaque(pconf, impl.get());
  rd_kafka_conf_set_dr_msg_cb(pconf, [](rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    static_cast<Impl*>(opaque)->OnDelivery(m);
  });
  FAIRWAY_ASSIGN_OR_RETURN(impl->producer,
                           log::NewClient(RD_KAFKA_PRODUCER, pconf, "the changelog"));
  FAIRWAY_ASSIGN_OR_RETURN(
      rd_kafka_conf_t * rconf,
      log::NewConf(options.kafka, {{"enable.partition.eof", "false"},
                                   {"fetch.wait.max.ms", "20"},
                                   {"auto.offset.reset", "error"},
                                   {"client.id", "fairway-changelog-reader"}}));
  FAIRWAY_ASSIGN_OR_RETURN(impl->reader,
                           log::NewClient(RD_KAFKA_CONSUMER, rconf, "the changelog's restores"));
  impl->snapshot_group = SnapshotGroupFor(options.kafka.topic_prefix);
  FAIRWAY_ASSIGN_OR_RETURN(
      rd_kafka_conf_t * bconf,
      log::NewConf(options.kafka, {{"group.id", impl->snapshot_group},
                                   {"enable.auto.commit", "false"},
                                   {"enable.auto.offset.store", "false"},
                                   {"client.id", "fairway-changelog-snapshots"}}));
  FAIRWAY_ASSIGN_OR_RETURN(
      impl->bookmarks, log::NewClient(RD_KAFKA_CONSUMER, bconf, "the changelog's snapshot group"));
  FAIRWAY_RETURN_IF_ERROR(
      log::EnsureTopic(impl->producer, options.kafka, impl->topic, options.slots, "cluster.slots"));
  impl->produce_topic = rd_kafka_topic_new(impl->producer, impl->topic.c_str(), nullptr);
  impl->read_topic = rd_kafka_topic_new(impl->reader, impl->topic.c_str(), nullptr);
  for (uint32_t s = 0; s < options.slots; ++s) impl->slots.push_back(std::make_unique<SlotState>());
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

bool Changelog::SnapshotDue(uint32_t slot) const {
  const Impl& im = *impl_;
  if (slot >= im.options.slots || im.options.snapshot_bytes == 0) return false;
  std::lock_guard lock(im.mu);
  const SlotState& ss = *im.slots[slot];
  return ss.epoch && ss.contiguous && ss.journaled >= im.options.snapshot_bytes;
}

Result<RestoreStats> Changelog::Take(uint32_t slot, const std::vector<TenantId>& tenants) {
  Impl& im = *impl_;
  if (slot >= im.options.slots) {
    return InvalidArgument(fmt::format("slot {} is not below {}", slot, im.options.slots));
  }
  SlotState& ss = *im.slots[slot];
  std::lock_guard ops(ss.ops);
  ss.releasing = false;
  std::lock_guard read(im.read_mu);
  RestoreStats stats;
  FAIRWAY_ASSIGN_OR_RETURN(
      stats.epoch,
      im.ProduceOne(slot, EncodeRecord(kOwnerRecord, kNoEpoch, im.options.node_id, {}), kNoEpoch));
  SlotMeta meta;
  {
    std::lock_guard lock(im.meta_mu);
    meta = im.metas[slot];
  }
  FAIRWAY_ASSIGN_OR_RETURN(auto watermarks, im.Watermarks(slot));
  const int64_t low = watermarks.first;
  // Records this node would need were deleted since it released the slot: its rows go.
  if (meta.clean && meta.next < low) meta.clean = false;
  int64_t current = kNoEpoch;
  if (meta.clean) {
    stats.kept_local = true;
    FAIRWAY_ASSIGN_OR_RETURN(current, im.Replay(slot, meta.next, stats.epoch, meta.current,
                                                /*at_snapshot=*/false, &stats));
  } else {
    // Marked first: a restore cut short leaves rows that must not be kept.
    {
      std::lock_guard lock(im.meta_mu);
      FAIRWAY_RETURN_IF_ERROR(im.SaveMeta(slot, SlotMeta{0, kNoEpoch, false}));
    }
    FAIRWAY_RETURN_IF_ERROR(im.Wipe(tenants));
    FAIRWAY_ASSIGN_OR_RETURN(auto bookmark, im.Bookmark(slot));
    int64_t from = low;
    if (bookmark && *bookmark > low && *bookmark < stats.epoch) from = *bookmark;
    auto replayed = im.Replay(slot, from, stats.epoch, kNoEpoch, /*at_snapshot=*/from > 0, &stats);
    if (!replayed.ok() && replayed.status().code() == StatusCode::kFailedPrecondition &&
        from > low) {
      // The snapshot the group names is not whole (it cannot be, unless the group's offset was
      // set by hand): everything still kept is read instead.
      spdlog::warn("{}; reading slot {} from offset {}", replayed.status().message(), slot, low);
      FAIRWAY_RETURN_IF_ERROR(im.Wipe(tenants));
      stats = RestoreStats{.epoch = stats.epoch};
      replayed = im.Replay(slot, low, stats.epoch, kNoEpoch, /*at_snapshot=*/low > 0, &stats);
    }
    FAIRWAY_RETURN_IF_ERROR(replayed.status());
    current = *replayed;
  }
  (void)current;
  {
    std::lock_guard lock(im.meta_mu);
    FAIRWAY_RETURN_IF_ERROR(im.SaveMeta(slot, SlotMeta{stats.epoch + 1, stats.epoch, false}));
  }
  {
    std::lock_guard lock(im.mu);
    ss.epoch = stats.epoch;
    ss.last_own = stats.epoch;
    ss.contiguous = true;
    // What the restore applied is what a snapshot would spare the next one.
    ss.journaled = stats.bytes_applied;
  }
  spdlog::info(
      "changelog: slot {} taken at epoch {} ({} local rows; {} records read{}, {} batches, {} "
      "bytes applied)",
      slot, stats.epoch, stats.kept_local ? "kept the" : "replaced the", stats.records,
      stats.snapshot >= 0
          ? fmt::format(" from the snapshot at {} ({} rows)", stats.snapshot, stats.snapshot_rows)
          : std::string(),
      stats.batches_applied, stats.bytes_applied);
  return stats;
}

Status Changelog::Release(uint32_t slot, bool clean) {
  Impl& im = *impl_;
  if (slot >= im.options.slots) {
    return InvalidArgument(fmt::format("slot {} is not below {}", slot, im.options.slots));
  }
  SlotState& ss = *im.slots[slot];
  // Given up first (a snapshot in progress stops at its next record), then waited for.
  ss.releasing = true;
  std::optional<int64_t> epoch;
  {
    std::lock_guard lock(im.mu);
    epoch = ss.epoch;
    ss.epoch.reset();
    ss.contiguous = false;
  }
  std::lock_guard ops(ss.ops);
  if (!epoch || !clean) return im.MarkDirty(slot);
  FAIRWAY_ASSIGN_OR_RETURN(
      int64_t at,
      im.ProduceOne(slot, EncodeRecord(kReleaseRecord, *epoch, im.options.node_id, {}), kNoEpoch));
  std::lock_guard lock(im.meta_mu);
  return im.SaveMeta(slot, SlotMeta{at + 1, kReleased, true});
}

Result<SnapshotStats> Changelog::Snapshot(uint32_t slot,
                                          const std::function<std::vector<TenantId>()>& tenants) {
  Impl& im = *impl_;
  if (slot >= im.options.slots) {
    return InvalidArgument(fmt::format("slot {} is not below {}", slot, im.options.slots));
  }
  SlotState& ss = *im.slots[slot];
  std::lock_guard ops(ss.ops);
  SnapshotStats stats;
  int64_t epoch = kNoEpoch;
  std::unique_ptr<storage::ReadView> view;
  std::vector<TenantId> ids;
  {
    // No write of the slot is between Kafka and the local store while the view is taken.
    std::unique_lock turn(ss.turnstile);
    std::unique_lock writes(ss.writes);
    turn.unlock();
    {
      std::lock_guard lock(im.mu);
      if (!ss.epoch) return FailedPrecondition(fmt::format("slot {} is not owned", slot));
      if (!ss.contiguous) {
        return FailedPrecondition(fmt::format(
            "slot {}: a record this node did not write may lie among its records since epoch "
            "{}: no snapshot until the slot is taken again",
            slot, *ss.epoch));
      }
      epoch = *ss.epoch;
    }
    FAIRWAY_ASSIGN_OR_RETURN(
        stats.begin,
        im.ProduceOne(slot, EncodeRecord(kSnapshotBegin, epoch, im.options.node_id, {}), epoch));
    {
      std::lock_guard lock(im.mu);
      // Its acknowledgement followed this node's previous record: no other owner's record lies
      // between the epoch and the begin record.
      if (ss.epoch != epoch || !ss.contiguous || ss.last_own != stats.begin) {
        return FailedPrecondition(fmt::format(
            "slot {}: another writer's record lies among this node's since epoch {}: the snapshot "
            "at {} is abandoned",
            slot, epoch, stats.begin));
      }
      ss.journaled = 0;
    }
    view = im.local->NewReadView();
    ids = tenants();
  }
  const size_t limit = std::max<size_t>(im.options.snapshot_record_bytes, 1);
  std::vector<Impl::Out> pending;
  size_t pending_bytes = 0;
  auto send = [&]() -> Status {
    if (pending.empty()) return Status::Ok();
    if (ss.releasing.load()) {
      return Aborted(fmt::format("slot {} is being released: snapshot cut short", slot));
    }
    FAIRWAY_RETURN_IF_ERROR(im.Produce(pending).status());
    for (size_t i = 0; i < pending.size(); ++i) {
      ++stats.records;
      if (im.options.after_snapshot_record) im.options.after_snapshot_record(slot, stats.records);
    }
    pending.clear();
    pending_bytes = 0;
    return Status::Ok();
  };
  storage::WriteBatch rows;
  auto cut = [&]() -> Status {
    if (rows.Count() == 0) return Status::Ok();
    std::string value = EncodeRecord(kSnapshotRows, stats.begin, {}, rows.Data());
    stats.bytes += value.size();
    pending_bytes += value.size();
    pending.push_back({slot, std::move(value), epoch});
    rows.Clear();
    // Up to a few records in flight at once; each is acknowledged before the hook sees it.
    if (pending_bytes >= 4 * limit || im.options.after_snapshot_record) return send();
    return Status::Ok();
  };
  for (const auto& t : ids) {
    std::string begin = t.str();
    begin.push_back('\0');
    std::string end = storage::PrefixEnd(begin);
    for (auto cf : storage::kTenantStateFamilies) {
      auto it = im.local->NewIterator(cf, begin, end, /*fill_cache=*/false, view.get());
      for (it->Seek(begin); it->Valid(); it->Next()) {
        rows.Put(cf, it->key(), it->value());
        ++stats.rows;
        if (rows.ByteSize() >= limit) FAIRWAY_RETURN_IF_ERROR(cut());
      }
      FAIRWAY_RETURN_IF_ERROR(it->status());
    }
  }
  FAIRWAY_RETURN_IF_ERROR(cut());
  FAIRWAY_RETURN_IF_ERROR(send());
  view.reset();
  std::string summary;
  PutFixed64BE(&summary, stats.records);
  PutFixed64BE(&summary, stats.rows);
  FAIRWAY_RETURN_IF_ERROR(
      im.ProduceOne(slot, EncodeRecord(kSnapshotEnd, stats.begin, im.options.node_id, summary),
                    epoch)
          .status());
  FAIRWAY_RETURN_IF_ERROR(im.SetBookmark(slot, stats.begin));
  // The snapshot stands whether or not the older records go now; the next one tries again.
  if (auto deleted = im.DeleteBefore(slot, stats.begin); deleted.ok()) {
    stats.deleted_before = *deleted;
  } else {
    spdlog::warn("{}", deleted.status().ToString());
  }
  spdlog::info("changelog: slot {} snapshot at offset {}: {} rows in {} records, {} bytes{}", slot,
               stats.begin, stats.rows, stats.records, stats.bytes,
               stats.deleted_before ? "; older records deleted" : "");
  return stats;
}

}  // namespace fairway::cluster
