#include "log/kafka_log.h"

#include <fmt/format.h>
#include <librdkafka/rdkafka.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include "common/coding.h"
#include "common/task_queue.h"
#include "log/block.h"
#include "log/kafka_client.h"
#include "log/lead_index.h"
#include "log/tail_cache.h"
#include "storage/keys.h"
#include "storage/schema.h"

namespace fairway::log {

namespace {

// The key of a partition in the tail cache: tenant \0 partition(be32).
std::string PartitionKey(const TenantId& tenant, uint32_t partition) {
  std::string k = TenantKeyPrefix(tenant);
  PutFixed32BE(&k, partition);
  return k;
}

}  // namespace

// One append on its way to the brokers.
struct PendingAppend {
  // One sent record: its request and which activity it is (the delivery report's opaque).
  struct Sent {
    PendingAppend* append;
    size_t activity;
  };
  AppendRequest request;
  AppendCallback done;
  int64_t now_ms = 0;
  // Per activity: its dedup key ("" when not checked), and where it was stored.
  std::vector<std::string> dedup_keys;
  std::vector<Sent> sent;
  std::vector<std::pair<int32_t, int64_t>> stored_at;
  std::vector<uint8_t> acknowledged;
  // The log partition of the layout's first partition (records' partitions are the topic's).
  uint32_t first_partition = 0;
  // The topic the records went to, and its records sent and not yet reported
  // (KafkaLog::Impl::Sending).
  std::string topic;
  std::atomic<int64_t>* topic_sending = nullptr;
  AppendResult result;
  // Deliveries still to come, plus one held while sending.
  std::atomic<size_t> remaining{1};
  std::mutex mu;
  std::string error;
  // A record failed after it was sent: the broker may have stored it without the answer
  // arriving in time (librdkafka's "possibly persisted").
  bool possibly_stored = false;
};

// A partition the log fetches from, with where its fetch stands.
struct PartitionReader {
  std::mutex mu;
  rd_kafka_topic_t* topic = nullptr;
  int32_t partition = 0;
  // The log partition of the topic's partition 0.
  uint32_t first_partition = 0;
  bool started = false;
  int64_t position = 0;
};

struct KafkaLog::Impl {
  KafkaLogOptions options;
  storage::Store* store = nullptr;
  const Clock* clock = nullptr;
  rd_kafka_t* producer = nullptr;
  rd_kafka_t* reader = nullptr;
  std::unique_ptr<KafkaTopicAdmin> own_admin;
  KafkaTopicAdmin* admin = nullptr;
  TailCache tail;
  // Per partition key: acknowledged records not yet in the tail cache, consecutive from `base`.
  struct OpenBlock {
    BlockBuilder builder;
    uint64_t base = 0;
    uint32_t count = 0;
  };
  std::mutex open_mu;
  std::unordered_map<std::string, OpenBlock> open_blocks;
  // Adds `open`'s records to the tail cache and empties it. Requires open_mu.
  void FlushOpenBlock(const std::string& key, OpenBlock* open);

  std::thread poller;
  std::atomic<bool> polling{false};
  std::thread row_writer;
  std::mutex finished_mu;
  std::condition_variable finished_cv;
  std::deque<std::unique_ptr<PendingAppend>> finished;
  bool rows_running = false;  // guarded by finished_mu
  std::atomic<bool> accepting{false};

  // Serialises the dedup check and the sending of a request, so two requests with one messageId
  // cannot both pass the check, and requests reach each partition in the order they were sent.
  std::mutex send_mu;
  std::unordered_set<std::string> in_flight;  // dedup keys sent, not yet acknowledged
  std::unordered_set<std::string> dropped;
  int fail_next = 0;
  std::atomic<size_t> queued_events{0};

  std::mutex topics_mu;
  std::unordered_map<std::string, uint32_t> topic_partitions;  // topics known to exist
  // Per topic: how often its catch-up was asked for again (records possibly stored unanswered).
  // A check that began before such a request does not mark the topic known.
  std::unordered_map<std::string, uint64_t> topic_unsettled;
  // Per topic, held while it is first checked and its records caught up (CatchUp); guarded by
  // topics_mu.
  std::unordered_map<std::string, std::shared_ptr<std::mutex>> ensure_locks;

  // Per partition key: every record below `checkpoint` has its dedup and index rows in the
  // store (kept there too, in kLogMeta); `ranges` are the offsets indexed above it.
  struct Indexed {
    uint64_t checkpoint = 0;
    std::map<uint64_t, uint64_t> ranges;  // begin -> end
  };
  std::mutex index_mu;
  std::unordered_map<std::string, Indexed> indexed;

  AppendListener listener;
  std::mutex advance_mu;
  std::unordered_map<std::string, uint64_t> reported;  // partition key -> next reported

  std::mutex readers_mu;
  std::map<std::pair<std::string, int32_t>, std::unique_ptr<PartitionReader>> readers;
  std::unordered_map<std::string, rd_kafka_topic_t*> reader_topics;

  std::mutex health_mu;
  int64_t health_checked_ns = INT64_MIN;
  Status health;

  Counter* appends_failed = nullptr;
  Counter* tail_reads = nullptr;
  Counter* fetch_reads = nullptr;
  Histogram* ack_seconds = nullptr;

  Impl(KafkaLogOptions o) : options(std::move(o)), tail(options.tail_cache_bytes) {}
  ~Impl();

  std::string Topic(const TenantId& tenant) const { return options.topic_prefix + tenant.str(); }
  // Partition layouts: a tenant's first layout is its topic; the n-th after it is the topic
  // "<topic>.<n>", whose partition i is log partition first + i.
  struct Placement {
    std::string topic;
    uint32_t first = 0;
    uint32_t count = 0;
  };
  std::string LayoutTopic(const TenantId& tenant, size_t index) const {
    return index == 0 ? Topic(tenant) : fmt::format("{}.{}", Topic(tenant), index);
  }
  // Serialises layout changes (StartLayout, the completion in Layouts).
  std::mutex layout_change_mu;
  // Tenant -> its layouts as recorded in the store (empty: none), loaded on first use.
  std::mutex layouts_mu;
  std::unordered_map<std::string, std::vector<model::PartitionLayout>> layouts;
  Result<std::vector<model::PartitionLayout>> RecordedLayouts(const TenantId& tenant);
  Result<std::vector<model::PartitionLayout>> LoadLayouts(const TenantId& tenant);
  Status SaveLayouts(const TenantId& tenant, const std::vector<model::PartitionLayout>& layouts);
  // Where the request's activities go: its layout, or the newer one the log recorded.
  Result<Placement> AppendPlacement(const AppendRequest& request);
  // The layout that holds log partition `p`; nullopt if none does.
  Result<std::optional<Placement>> PartitionPlacement(const TenantId& tenant, uint32_t p);
  // Records of a topic sent and not yet reported, per topic (entries are never removed).
  std::mutex sending_mu;
  std::unordered_map<std::string, std::unique_ptr<std::atomic<int64_t>>> sending;
  std::atomic<int64_t>* Sending(const std::string& topic);
  Status EnsureTopic(const AppendRequest& request, const Placement& placement);
  Status CheckTopic(const AppendRequest& request, const Placement& placement);
  // Writes the dedup and index rows of every record stored in the placement's partitions since
  // their checkpoint: the rows of records Kafka acknowledged just before this node stopped.
  Status CatchUp(const AppendRequest& request, const Placement& placement);
  // Adds (partition, offset) to the indexed offsets; when the checkpoint moves, puts its new
  // value in `batch`. Requires index_mu.
  void MarkIndexed(const std::string& key, uint64_t offset, storage::WriteBatch* batch);
  // The row request's tenant's record at `offset` needs: dedup row (if the window is on) and
  // index rows.
  void AddRows(const AppendRequest& request, const model::Activity& a, uint32_t partition,
               uint64_t offset, int64_t received_at_ms, std::vector<IndexRow>* index_rows,
               std::vector<IndexRow>* dedup_rows);
  Result<std::pair<int64_t, int64_t>> Watermarks(const TenantId& tenant, PartitionId partition);
  Result<std::pair<int64_t, int64_t>> TopicWatermarks(const std::string& topic, int32_t partition);
  void Send(std::unique_ptr<PendingAppend> append);
  void OnDelivery(const rd_kafka_message_t* m);
  // Hands an append whose every record is acknowledged or failed to the row writer.
  void Finish(PendingAppend* append);
  // The row writer thread: writes the rows of finished appends, then completes them.
  void RunRowWriter();
  void WriteRows(std::vector<std::unique_ptr<PendingAppend>>& group);
  PartitionReader* Reader(const Placement& placement, uint32_t partition);
  // Reads `want` records from `from` (fewer when the read times out). Stops the partition's
  // fetcher once it has read up to `stop_at`.
  Status Fetch(PartitionReader* r, const TenantId& tenant, int64_t from, size_t want,
               std::vector<LogEntry>* out, int64_t stop_at = INT64_MAX);
  void StopReaders(const std::string& topic);

  // Processing progress: one client per processor's consumer group (it commits offsets and never
  // joins the group), and the offsets last committed, by group, topic and partition.
  std::mutex progress_mu;
  std::map<std::string, rd_kafka_t*> progress_clients;
  std::map<std::tuple<std::string, std::string, int32_t>, int64_t> published;
  Result<rd_kafka_t*> ProgressClient(const std::string& group);
  // Commits `offsets` for `group` and waits for the answer (at most the request timeout).
  // Partitions of topics that do not exist (a tenant not yet written, or deleted) are left out
  // of `committed`, without an error.
  Status CommitProgress(const std::string& group, rd_kafka_topic_partition_list_t* offsets,
                        rd_kafka_topic_partition_list_t** committed);

  // OK when `placement`'s topic is checked and caught up; nullopt when it is not yet (or must be
  // again); an error when it has another partition count.
  std::optional<Status> KnownTopic(const AppendRequest& request, const Placement& placement);
  // Sends a request whose topic is checked.
  void SendChecked(AppendRequest request, AppendCallback done);
  // Topic checks and catch-ups, which wait for Kafka, run here rather than on the appending
  // thread (an HTTP I/O thread). Last member: it stops, running what is queued, first.
  std::unique_ptr<TaskQueue> checks = std::make_unique<TaskQueue>();
};

KafkaLog::Impl::~Impl() {
  // Appends still waiting for a topic check are refused while the clients exist.
  accepting = false;
  checks.reset();
  {
    std::lock_guard lock(readers_mu);
    for (auto& [key, r] : readers) {
      if (r->started) rd_kafka_consume_stop(r->topic, r->partition);
    }
    readers.clear();
    for (auto& [name, t] : reader_topics) rd_kafka_topic_destroy(t);
    reader_topics.clear();
  }
  own_admin.reset();
  for (auto& [group, client] : progress_clients) {
    rd_kafka_destroy_flags(client, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
  }
  if (reader) rd_kafka_destroy(reader);
  if (producer) rd_kafka_destroy(producer);
}

Result<std::unique_ptr<KafkaLog>> KafkaLog::Open(KafkaLogOptions options, storage::Store* store,
                                                 const Clock* clock, MetricsRegistry* metrics,
                                                 KafkaTopicAdmin* admin) {
  if (options.brokers.empty()) {
    return InvalidArgument("config key 'kafka.brokers' is required by the kafka backend");
  }
  auto impl = std::make_unique<Impl>(std::move(options));
  const KafkaLogOptions& o = impl->options;
  impl->store = store;
  impl->clock = clock;
  FAIRWAY_ASSIGN_OR_RETURN(
      rd_kafka_conf_t * pconf,
      NewConf(o, {{"enable.idempotence", "true"},
                  {"acks", "all"},
                  {"linger.ms", "2"},
                  {"allow.auto.create.topics", "false"},
                  {"message.timeout.ms", std::to_string(o.delivery_timeout_ms)},
                  {"queue.buffering.max.messages", std::to_string(o.max_queued_events + 1000)},
                  {"reconnect.backoff.ms", "50"},
                  {"reconnect.backoff.max.ms", "1000"}}));
  rd_kafka_conf_set_opaque(pconf, impl.get());
  rd_kafka_conf_set_dr_msg_cb(pconf, [](rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    static_cast<Impl*>(opaque)->OnDelivery(m);
  });
  FAIRWAY_ASSIGN_OR_RETURN(impl->producer,
                           NewClient(RD_KAFKA_PRODUCER, pconf, "the log's appends"));
  // Reads fetch only below the high watermark and stop at it: small queues, short waits.
  FAIRWAY_ASSIGN_OR_RETURN(rd_kafka_conf_t * rconf,
                           NewConf(o, {{"enable.partition.eof", "false"},
                                       {"allow.auto.create.topics", "false"},
                                       {"auto.offset.reset", "earliest"},
                                       {"queued.max.messages.kbytes", "2048"},
                                       {"queued.min.messages", "2000"},
                                       {"fetch.wait.max.ms", "50"},
                                       {"fetch.error.backoff.ms", "50"},
                                       {"reconnect.backoff.ms", "50"},
                                       {"reconnect.backoff.max.ms", "1000"}}));
  FAIRWAY_ASSIGN_OR_RETURN(impl->reader, NewClient(RD_KAFKA_CONSUMER, rconf, "the log's reads"));
  if (admin != nullptr) {
    impl->admin = admin;
  } else if (o.create_topics) {
    impl->own_admin = std::make_unique<ClusterTopicAdmin>(impl->producer, o.replication_factor,
                                                          o.request_timeout_ms);
    impl->admin = impl->own_admin.get();
  }
  impl->appends_failed = metrics->GetCounter(
      "fairway_log_kafka_append_failures_total",
      "Appends that failed because Kafka did not acknowledge every record in time.");
  const std::string reads_help = "Partition reads, by where their records came from.";
  impl->tail_reads =
      metrics->GetCounter("fairway_log_reads_total", reads_help, {{"source", "memory"}});
  impl->fetch_reads =
      metrics->GetCounter("fairway_log_reads_total", reads_help, {{"source", "kafka"}});
  impl->ack_seconds = metrics->GetHistogram(
      "fairway_log_kafka_ack_seconds",
      "Time from sending an append to Kafka's acknowledgement of all of it.", LatencyBuckets());
  Impl* raw = impl.get();
  metrics->SetGaugeFunction(
      "fairway_log_tail_cache_bytes",
      "Bytes of the newest committed blocks kept in memory for reads.", [raw] {
        return std::vector<std::pair<Labels, double>>{{{}, static_cast<double>(raw->tail.bytes())}};
      });
  metrics->SetGaugeFunction("fairway_log_queued_events", "Events waiting for a commit.", [raw] {
    return std::vector<std::pair<Labels, double>>{
        {{}, static_cast<double>(raw->queued_events.load())}};
  });
  return std::unique_ptr<KafkaLog>(new KafkaLog(std::move(impl)));
}

KafkaLog::KafkaLog(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

KafkaLog::~KafkaLog() { Stop(); }

std::string KafkaLog::TopicOf(const TenantId& tenant) const { return impl_->Topic(tenant); }

void KafkaLog::Start() {
  if (impl_->polling.exchange(true)) return;
  impl_->accepting = true;
  Impl* impl = impl_.get();
  {
    std::lock_guard lock(impl_->finished_mu);
    impl_->rows_running = true;
  }
  impl_->row_writer = std::thread([impl] { impl->RunRowWriter(); });
  impl_->poller = std::thread([impl] {
    while (impl->polling) rd_kafka_poll(impl->producer, 100);
  });
}

void KafkaLog::Stop() {
  {
    // After this no request is being sent: appends from now on are refused.
    std::lock_guard lock(impl_->send_mu);
    impl_->accepting = false;
  }
  {
    // Appends waiting for their topic's check are answered (refused) before Stop returns.
    std::promise<void> drained;
    impl_->checks->Submit([&drained] { drained.set_value(); });
    drained.get_future().wait();
  }
  if (!impl_->polling.exchange(false)) return;
  impl_->poller.join();
  // Serves the delivery reports itself; what is left after the timeout fails its appends.
  rd_kafka_flush(impl_->producer, static_cast<int>(impl_->options.delivery_timeout_ms));
  rd_kafka_purge(impl_->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  while (rd_kafka_outq_len(impl_->producer) > 0) rd_kafka_poll(impl_->producer, 100);
  // Every append is finished now: the row writer writes what is left and stops.
  {
    std::lock_guard lock(impl_->finished_mu);
    impl_->rows_running = false;
  }
  impl_->finished_cv.notify_one();
  impl_->row_writer.join();
}

Status KafkaLog::Health() {
  Impl& im = *impl_;
  std::lock_guard lock(im.health_mu);
  const int64_t now = im.clock->MonotonicNanos();
  if (im.health_checked_ns != INT64_MIN && now - im.health_checked_ns < 1'000'000'000) {
    return im.health;
  }
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_resp_err_t err =
      rd_kafka_metadata(im.producer, 0, nullptr, &md,
                        static_cast<int>(std::min<int64_t>(im.options.request_timeout_ms, 1000)));
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    rd_kafka_metadata_destroy(md);
    im.health = Status::Ok();
  } else {
    im.health = Unavailable(fmt::format("no Kafka broker of '{}' answers: {}", im.options.brokers,
                                        rd_kafka_err2str(err)));
  }
  im.health_checked_ns = now;
  return im.health;
}

std::optional<LogLocation> KafkaLog::Locate(const TenantId& tenant, uint32_t partition) {
  auto placement = impl_->PartitionPlacement(tenant, partition);
  if (!placement.ok() || !placement->has_value()) return std::nullopt;
  return LogLocation{(*placement)->topic, static_cast<int32_t>(partition - (*placement)->first)};
}

std::string KafkaLog::ProgressGroupOf(std::string_view processor) const {
  return fmt::format("{}processing.{}", impl_->options.topic_prefix, processor);
}

Result<rd_kafka_t*> KafkaLog::Impl::ProgressClient(const std::string& group) {
  auto it = progress_clients.find(group);
  if (it != progress_clients.end()) return it->second;
  FAIRWAY_ASSIGN_OR_RETURN(rd_kafka_conf_t * conf,
                           NewConf(options, {{"group.id", group},
                                             {"enable.auto.commit", "false"},
                                             {"enable.auto.offset.store", "false"},
                                             {"allow.auto.create.topics", "false"},
                                             {"reconnect.backoff.ms", "50"},
                                             {"reconnect.backoff.max.ms", "1000"}}));
  FAIRWAY_ASSIGN_OR_RETURN(
      rd_kafka_t * client,
      NewClient(RD_KAFKA_CONSUMER, conf, fmt::format("the progress group '{}'", group)));
  progress_clients.emplace(group, client);
  return client;
}

Status KafkaLog::Impl::CommitProgress(const std::string& group,
                                      rd_kafka_topic_partition_list_t* offsets,
                                      rd_kafka_topic_partition_list_t** committed) {
  FAIRWAY_ASSIGN_OR_RETURN(rd_kafka_t * client, ProgressClient(group));
  return CommitGroupOffsets(client, group, offsets, options.request_timeout_ms, committed);
}

Status KafkaLog::PublishProgress(const std::vector<ProcessingProgress>& progress) {
  Impl& im = *impl_;
  std::lock_guard lock(im.progress_mu);
  std::map<std::string, rd_kafka_topic_partition_list_t*> by_group;
  for (const ProcessingProgress& pr : progress) {
    const std::string group = ProgressGroupOf(pr.processor);
    for (uint32_t p = 0; p < pr.committed.size(); ++p) {
      auto placement = im.PartitionPlacement(pr.tenant, p);
      if (!placement.ok() || !placement->has_value()) continue;
      const std::string& topic = (*placement)->topic;
      const auto partition = static_cast<int32_t>(p - (*placement)->first);
      const auto offset = static_cast<int64_t>(pr.committed[p]);
      auto known = im.published.find({group, topic, partition});
      // Nothing processed and nothing said before: the topic may not even exist yet.
      if (known == im.published.end() ? offset == 0 : known->second == offset) continue;
      auto& list = by_group[group];
      if (list == nullptr) list = rd_kafka_topic_partition_list_new(64);
      rd_kafka_topic_partition_list_add(list, topic.c_str(), partition)->offset = offset;
    }
  }
  Status first_error;
  for (auto& [group, list] : by_group) {
    rd_kafka_topic_partition_list_t* committed = nullptr;
    Status st = im.CommitProgress(group, list, &committed);
    for (int i = 0; committed && i < committed->cnt; ++i) {
      const rd_kafka_topic_partition_t& tp = committed->elems[i];
      im.published[{group, tp.topic, tp.partition}] = tp.offset;
    }
    if (committed) rd_kafka_topic_partition_list_destroy(committed);
    rd_kafka_topic_partition_list_destroy(list);
    if (!st.ok() && first_error.ok()) first_error = st;
  }
  return first_error;
}

void KafkaLog::FailNextAppends(int n) {
  std::lock_guard lock(impl_->send_mu);
  impl_->fail_next = n;
}

void KafkaLog::SetAppendListener(AppendListener listener) { impl_->listener = std::move(listener); }

Status KafkaLog::PollForeignAppends(const std::vector<std::pair<TenantId, uint32_t>>& tenants) {
  Impl& im = *impl_;
  // (tenant, log partition) of each entry of the request's list, in order.
  std::vector<std::pair<const TenantId*, uint32_t>> names;
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(64);
  for (const auto& [tenant, partitions] : tenants) {
    for (uint32_t p = 0; p < partitions; ++p) {
      auto placement = im.PartitionPlacement(tenant, p);
      if (!placement.ok() || !*placement) continue;
      rd_kafka_topic_partition_t* tp = rd_kafka_topic_partition_list_add(
          list, (*placement)->topic.c_str(), static_cast<int32_t>(p - (*placement)->first));
      tp->offset = RD_KAFKA_OFFSET_END;  // as a timestamp: the partition's end offset
      names.emplace_back(&tenant, p);
    }
  }
  Status st;
  if (!names.empty()) {
    rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(
        im.reader, list, static_cast<int>(im.options.request_timeout_ms));
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      st = Unavailable(fmt::format("asking Kafka for partition ends: {}", rd_kafka_err2str(err)));
    }
  }
  std::vector<PartitionAdvance> advances;
  if (st.ok()) {
    std::lock_guard lock(im.advance_mu);
    for (int i = 0; i < list->cnt; ++i) {
      const rd_kafka_topic_partition_t& tp = list->elems[i];
      if (tp.err != RD_KAFKA_RESP_ERR_NO_ERROR || tp.offset < 0) continue;
      const auto& [tenant, p] = names[static_cast<size_t>(i)];
      uint64_t& last = im.reported[PartitionKey(*tenant, p)];
      if (static_cast<uint64_t>(tp.offset) <= last) continue;
      last = static_cast<uint64_t>(tp.offset);
      advances.push_back({*tenant, PartitionId(p), Offset(last)});
    }
  }
  rd_kafka_topic_partition_list_destroy(list);
  if (im.listener && !advances.empty()) im.listener(advances);
  return st;
}

Result<std::vector<model::PartitionLayout>> KafkaLog::Impl::LoadLayouts(const TenantId& tenant) {
  FAIRWAY_ASSIGN_OR_RETURN(auto v, store->Get(storage::kLogMeta, LayoutsKey(tenant)));
  if (!v) return std::vector<model::PartitionLayout>{};
  return DecodeLayouts(*v);
}

Status KafkaLog::Impl::SaveLayouts(const TenantId& tenant,
                                   const std::vector<model::PartitionLayout>& list) {
  storage::WriteBatch batch;
  batch.Put(storage::kLogMeta, LayoutsKey(tenant), EncodeLayouts(list));
  FAIRWAY_RETURN_IF_ERROR(store->Write(batch, /*sync=*/true));
  std::lock_guard lock(layouts_mu);
  layouts[tenant.str()] = list;
  return Status::Ok();
}

Result<std::vector<model::PartitionLayout>> KafkaLog::Impl::RecordedLayouts(
    const TenantId& tenant) {
  std::lock_guard lock(layouts_mu);
  auto it = layouts.find(tenant.str());
  if (it == layouts.end()) {
    FAIRWAY_ASSIGN_OR_RETURN(auto loaded, LoadLayouts(tenant));
    it = layouts.emplace(tenant.str(), std::move(loaded)).first;
  }
  return it->second;
}

Result<KafkaLog::Impl::Placement> KafkaLog::Impl::AppendPlacement(const AppendRequest& req) {
  FAIRWAY_ASSIGN_OR_RETURN(auto recorded, RecordedLayouts(req.tenant));
  if (options.shared_appends && recorded.size() >= 2 &&
      recorded[recorded.size() - 2].ends.empty()) {
    // Until every node has stopped appending to the old layout, none appends to the new one.
    return Unavailable(fmt::format(
        "tenant '{}' is changing its partition count; its activities are taken again once "
        "every node has moved to the new partitions (retry)",
        req.tenant.str()));
  }
  if (!recorded.empty() && recorded.back().first >= req.first_partition) {
    return Placement{LayoutTopic(req.tenant, recorded.size() - 1), recorded.back().first,
                     recorded.back().count};
  }
  if (req.first_partition != 0) {
    return Unavailable(fmt::format(
        "tenant '{}' has a layout from partition {} that this node's log has no record of",
        req.tenant.str(), req.first_partition));
  }
  return Placement{Topic(req.tenant), 0, std::max<uint32_t>(1, req.partitions)};
}

Result<std::optional<KafkaLog::Impl::Placement>> KafkaLog::Impl::PartitionPlacement(
    const TenantId& tenant, uint32_t p) {
  FAIRWAY_ASSIGN_OR_RETURN(auto recorded, RecordedLayouts(tenant));
  if (recorded.empty()) return std::optional<Placement>(Placement{Topic(tenant), 0, UINT32_MAX});
  for (size_t i = 0; i < recorded.size(); ++i) {
    if (p >= recorded[i].first && p < recorded[i].first + recorded[i].count) {
      return std::optional<Placement>(
          Placement{LayoutTopic(tenant, i), recorded[i].first, recorded[i].count});
    }
  }
  return std::optional<Placement>();
}

std::atomic<int64_t>* KafkaLog::Impl::Sending(const std::string& topic) {
  std::lock_guard lock(sending_mu);
  auto& c = sending[topic];
  if (!c) c = std::make_unique<std::atomic<int64_t>>(0);
  return c.get();
}

std::optional<Status> KafkaLog::Impl::KnownTopic(const AppendRequest& request,
                                                 const Placement& placement) {
  std::lock_guard lock(topics_mu);
  auto it = topic_partitions.find(placement.topic);
  if (it == topic_partitions.end()) return std::nullopt;
  if (it->second == placement.count) return Status::Ok();
  return Unavailable(fmt::format("Kafka topic '{}' has {} partitions; tenant '{}' has {}",
                                 placement.topic, it->second, request.tenant.str(),
                                 placement.count));
}

Status KafkaLog::Impl::EnsureTopic(const AppendRequest& request, const Placement& placement) {
  const std::string& topic = placement.topic;
  auto known = [&] { return KnownTopic(request, placement); };
  if (auto st = known()) return *st;
  // One tenant's first append waits for its own topic's check only, not for other tenants'.
  std::shared_ptr<std::mutex> topic_mu;
  {
    std::lock_guard lock(topics_mu);
    auto& m = ensure_locks[topic];
    if (!m) m = std::make_shared<std::mutex>();
    topic_mu = m;
  }
  std::lock_guard ensure(*topic_mu);
  if (auto st = known()) return *st;
  uint64_t unsettled = 0;
  {
    std::lock_guard lock(topics_mu);
    unsettled = topic_unsettled[topic];
  }
  FAIRWAY_RETURN_IF_ERROR(CheckTopic(request, placement));
  // The records of this layout, and of the sealed layouts before it, acknowledged before this
  // node stopped get their rows.
  FAIRWAY_ASSIGN_OR_RETURN(auto recorded, RecordedLayouts(request.tenant));
  for (size_t i = 0; i < recorded.size(); ++i) {
    if (recorded[i].first >= placement.first) break;
    // Only sealed layouts: the current one takes appends while a new layout is being started,
    // and its rows are written by the row writer (a layout left unsealed by a stop is sealed
    // by Layouts at start-up, before any append).
    if (recorded[i].ends.empty()) continue;
    FAIRWAY_RETURN_IF_ERROR(CatchUp(
        request, Placement{LayoutTopic(request.tenant, i), recorded[i].first, recorded[i].count}));
  }
  FAIRWAY_RETURN_IF_ERROR(CatchUp(request, placement));
  std::lock_guard lock(topics_mu);
  // Records possibly stored unanswered since the check began may lie past what it read: the
  // next append checks again.
  if (topic_unsettled[topic] == unsettled) topic_partitions[topic] = placement.count;
  return Status::Ok();
}

void KafkaLog::Impl::AddRows(const AppendRequest& req, const model::Activity& a, uint32_t partition,
                             uint64_t offset, int64_t received_at_ms,
                             std::vector<IndexRow>* index_rows, std::vector<IndexRow>* dedup_rows) {
  if (!options.processed_index) {
    const int64_t index_expiry = req.retention_ms > 0 ? received_at_ms + req.retention_ms : 0;
    AddLeadIndexRows(req.tenant, a, partition, offset, index_expiry, index_rows);
  }
  if (req.dedup_window_ms > 0) {
    dedup_rows->push_back(DedupRow(DedupKey(req.tenant, a.message_id.str()), partition, offset,
                                   received_at_ms + req.dedup_window_ms));
  }
}

void KafkaLog::Impl::MarkIndexed(const std::string& key, uint64_t offset,
                                 storage::WriteBatch* batch) {
  Indexed& ix = indexed[key];
  if (offset < ix.checkpoint) return;
  auto& ranges = ix.ranges;
  auto next = ranges.upper_bound(offset);
  if (next != ranges.begin()) {
    auto prev = std::prev(next);
    if (prev->second > offset) return;  // already there
    if (prev->second == offset) {
      prev->second = offset + 1;
      if (next != ranges.end() && next->first == offset + 1) {
        prev->second = next->second;
        ranges.erase(next);
      }
    } else {
      auto it = ranges.emplace(offset, offset + 1).first;
      if (next != ranges.end() && next->first == offset + 1) {
        it->second = next->second;
        ranges.erase(next);
      }
    }
  } else {
    auto it = ranges.emplace(offset, offset + 1).first;
    if (next != ranges.end() && next->first == offset + 1) {
      it->second = next->second;
      ranges.erase(next);
    }
  }
  auto first = ranges.begin();
  if (first != ranges.end() && first->first == ix.checkpoint) {
    ix.checkpoint = first->second;
    ranges.erase(first);
    std::string v;
    PutFixed64BE(&v, ix.checkpoint);
    batch->Put(storage::kLogMeta, key, v);
  }
}

Status KafkaLog::Impl::CatchUp(const AppendRequest& req, const Placement& placement) {
  for (uint32_t p = placement.first; p < placement.first + placement.count; ++p) {
    const std::string key = PartitionKey(req.tenant, p);
    FAIRWAY_ASSIGN_OR_RETURN(auto row, store->Get(storage::kLogMeta, key));
    uint64_t checkpoint = row && row->size() == 8 ? DecodeFixed64BE(row->data()) : 0;
    FAIRWAY_ASSIGN_OR_RETURN(
        auto marks, TopicWatermarks(placement.topic, static_cast<int32_t>(p - placement.first)));
    const auto high = static_cast<uint64_t>(marks.second);
    uint64_t from = std::max(checkpoint, static_cast<uint64_t>(marks.first));
    std::vector<LogEntry> entries;
    while (from < high) {
      entries.clear();
      PartitionReader* r = Reader(placement, p);
      FAIRWAY_RETURN_IF_ERROR(Fetch(r, req.tenant, static_cast<int64_t>(from),
                                    std::min<uint64_t>(high - from, 1000), &entries,
                                    static_cast<int64_t>(high)));
      std::vector<IndexRow> index_rows, dedup_rows;
      for (const auto& e : entries) {
        AddRows(req, e.activity, p, e.offset.value(), e.activity.received_at_ms, &index_rows,
                &dedup_rows);
      }
      from = entries.back().offset.value() + 1;
      storage::WriteBatch batch;
      for (const auto& e : dedup_rows) batch.Put(storage::kLogDedup, e.key, e.value);
      for (const auto& e : index_rows) batch.Put(storage::kLogLeadIndex, e.key, e.value);
      std::string v;
      PutFixed64BE(&v, from);
      batch.Put(storage::kLogMeta, key, v);
      FAIRWAY_RETURN_IF_ERROR(store->Write(batch, /*sync=*/false));
    }
    {
      // Appends acknowledged meanwhile may have marked offsets past what was read: they join
      // the checkpoint, which only grows.
      std::lock_guard lock(index_mu);
      Indexed& ix = indexed[key];
      uint64_t cp = std::max({ix.checkpoint, from, checkpoint});
      while (!ix.ranges.empty() && ix.ranges.begin()->first <= cp) {
        cp = std::max(cp, ix.ranges.begin()->second);
        ix.ranges.erase(ix.ranges.begin());
      }
      ix.checkpoint = cp;
      if (cp > from) {
        storage::WriteBatch batch;
        std::string v;
        PutFixed64BE(&v, cp);
        batch.Put(storage::kLogMeta, key, v);
        FAIRWAY_RETURN_IF_ERROR(store->Write(batch, /*sync=*/false));
      }
    }
    // Records found beyond the end this node knew of (stored while their acknowledgement was
    // lost) become readable: reads past the memory's newest records go to Kafka, and consumers
    // hear of them.
    bool advanced = false;
    {
      std::lock_guard lock(advance_mu);
      uint64_t& last = reported[key];
      if (high > last) {
        last = high;
        advanced = true;
      }
    }
    if (advanced) {
      tail.DropBelow(key, UINT64_MAX);
      if (listener) listener({{req.tenant, PartitionId(p), Offset(high)}});
    }
  }
  return Status::Ok();
}

Status KafkaLog::Impl::CheckTopic(const AppendRequest& request, const Placement& placement) {
  const std::string& topic = placement.topic;
  // With an admin, the topic is created first (AlreadyExists is fine): asking for the metadata
  // of a missing topic may create it with the broker's default partition count where the broker
  // auto-creates topics.
  if (admin != nullptr) {
    Status st = admin->CreateTopic(topic, placement.count, request.retention_ms);
    if (!st.ok() && st.code() != StatusCode::kAlreadyExists) {
      return Status(st.code(), fmt::format("creating the topic of tenant '{}' "
                                           "(kafka.create_topics): {}",
                                           request.tenant.str(), st.message()));
    }
  }
  // Bounded in real time (the broker's), whatever clock the log is given.
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(options.request_timeout_ms);
  while (true) {
    rd_kafka_topic_t* rkt = rd_kafka_topic_new(producer, topic.c_str(), nullptr);
    const rd_kafka_metadata_t* md = nullptr;
    rd_kafka_resp_err_t err =
        rd_kafka_metadata(producer, 0, rkt, &md, static_cast<int>(options.request_timeout_ms));
    rd_kafka_topic_destroy(rkt);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return Unavailable(fmt::format("Kafka metadata of topic '{}' unavailable: {}", topic,
                                     rd_kafka_err2str(err)));
    }
    rd_kafka_resp_err_t topic_err =
        md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
    uint32_t partitions =
        md->topic_cnt == 1 ? static_cast<uint32_t>(md->topics[0].partition_cnt) : 0;
    rd_kafka_metadata_destroy(md);
    if (topic_err == RD_KAFKA_RESP_ERR_NO_ERROR && partitions > 0) {
      if (partitions != placement.count) {
        return Unavailable(fmt::format("Kafka topic '{}' has {} partitions; tenant '{}' has {}",
                                       topic, partitions, request.tenant.str(), placement.count));
      }
      return Status::Ok();
    }
    if (!IsUnknownTopic(topic_err) && topic_err != RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE) {
      return Unavailable(fmt::format("Kafka topic '{}': {}", topic, rd_kafka_err2str(topic_err)));
    }
    if (admin == nullptr) {
      return Unavailable(fmt::format(
          "Kafka topic '{}' of tenant '{}' does not exist: create it with {} partitions, or set "
          "kafka.create_topics",
          topic, request.tenant.str(), placement.count));
    }
    // A new topic takes a moment to show in the metadata.
    if (std::chrono::steady_clock::now() > deadline) {
      return Unavailable(fmt::format("Kafka topic '{}' was created but has no leaders yet", topic));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void KafkaLog::Append(AppendRequest request, AppendCallback done) {
  Impl& im = *impl_;
  if (!im.accepting) return done(Unavailable("activity log is shutting down"));
  {
    std::lock_guard lock(im.send_mu);
    if (im.dropped.count(request.tenant.str())) {
      return done(NotFound(fmt::format("tenant '{}' was deleted", request.tenant.str())));
    }
  }
  if (request.activities.empty()) return done(AppendResult{});
  auto placement = im.AppendPlacement(request);
  if (!placement.ok()) return done(placement.status());
  if (auto known = im.KnownTopic(request, *placement)) {
    if (!known->ok()) return done(*known);
    return im.SendChecked(std::move(request), std::move(done));
  }
  // The topic's check and catch-up wait for Kafka (seconds while it is slow): on the log's own
  // thread, so that the caller's thread serves other requests meanwhile.
  im.checks->Submit([&im, request = std::move(request), done = std::move(done),
                     placement = *placement]() mutable {
    if (!im.accepting) return done(Unavailable("activity log is shutting down"));
    if (Status st = im.EnsureTopic(request, placement); !st.ok()) return done(st);
    im.SendChecked(std::move(request), std::move(done));
  });
}

void KafkaLog::Impl::SendChecked(AppendRequest request, AppendCallback done) {
  auto append = std::make_unique<PendingAppend>();
  append->request = std::move(request);
  append->done = std::move(done);
  append->now_ms = clock->NowMillis();
  Send(std::move(append));
}

void KafkaLog::Impl::Send(std::unique_ptr<PendingAppend> append) {
  const AppendRequest& req = append->request;
  const size_t n = req.activities.size();
  append->dedup_keys.resize(n);
  append->stored_at.assign(n, {-1, -1});
  append->acknowledged.assign(n, 0);
  append->sent.reserve(n);

  std::unique_lock lock(send_mu);
  auto fail = [&](Status st) {
    lock.unlock();
    append->done(std::move(st));
  };
  if (!accepting) return fail(Unavailable("activity log is shutting down"));
  if (dropped.count(req.tenant.str())) {
    return fail(NotFound(fmt::format("tenant '{}' was deleted", req.tenant.str())));
  }
  // Under send_mu, which StartLayout holds while it switches layouts: every record sent after
  // the switch goes to the new layout. Its topic is checked already (by Append, or by
  // StartLayout for a layout started since).
  auto placement = AppendPlacement(req);
  if (!placement.ok()) return fail(placement.status());
  const std::string& topic = placement->topic;
  append->first_partition = placement->first;
  append->topic = topic;
  append->topic_sending = Sending(topic);
  if (fail_next > 0) {
    --fail_next;
    appends_failed->Add();
    return fail(Unavailable("Kafka did not acknowledge the append: injected failure"));
  }
  if (queued_events > 0 && queued_events + n > options.max_queued_events) {
    return fail(Unavailable("activity log is overloaded: too many events waiting for Kafka"));
  }
  // 1. Idempotency: messageIds stored within the window, sent and not yet acknowledged, or
  // repeated within the request.
  std::vector<uint8_t> duplicate(n, 0);
  if (req.dedup_window_ms > 0) {
    for (size_t i = 0; i < n; ++i) {
      append->dedup_keys[i] = DedupKey(req.tenant, req.activities[i].message_id.str());
    }
    std::vector<std::string_view> keys(append->dedup_keys.begin(), append->dedup_keys.end());
    std::vector<std::optional<std::string>> found;
    if (Status st = store->MultiGet(storage::kLogDedup, keys, &found); !st.ok()) {
      return fail(Unavailable(fmt::format("dedup window unreadable: {}", st.message())));
    }
    std::unordered_set<std::string_view> seen;
    for (size_t i = 0; i < n; ++i) {
      std::string_view payload;
      duplicate[i] = !seen.insert(keys[i]).second || in_flight.count(append->dedup_keys[i]) ||
                     (found[i] && storage::DecodeTtlValue(*found[i], &payload) >= append->now_ms);
    }
  }
  // 2. One record per activity, to its lead's partition, keyed by the lead.
  PendingAppend* raw = append.release();
  std::string record;
  std::string error;
  size_t sent = 0;
  for (size_t i = 0; i < n; ++i) {
    const model::Activity& a = req.activities[i];
    if (duplicate[i]) {
      ++raw->result.duplicates;
      continue;
    }
    if (!error.empty()) continue;
    record.clear();
    model::EncodeActivity(a, &record);
    const std::string_view lead = a.LeadKey();
    const int32_t partition = static_cast<int32_t>(PartitionFor(lead, placement->count).value());
    raw->sent.push_back({raw, i});
    raw->remaining.fetch_add(1);
    raw->topic_sending->fetch_add(1);
    rd_kafka_resp_err_t err = rd_kafka_producev(
        producer, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(partition),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(lead.data(), lead.size()),
        RD_KAFKA_V_VALUE(record.data(), record.size()), RD_KAFKA_V_TIMESTAMP(a.received_at_ms),
        RD_KAFKA_V_OPAQUE(&raw->sent.back()), RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      raw->remaining.fetch_sub(1);
      raw->topic_sending->fetch_sub(1);
      error = rd_kafka_err2str(err);
      continue;
    }
    ++sent;
    if (!raw->dedup_keys[i].empty()) in_flight.insert(raw->dedup_keys[i]);
  }
  queued_events += sent;
  if (!error.empty()) {
    std::lock_guard alock(raw->mu);
    raw->error = error;
  }
  // Still under send_mu: Stop cannot pass it and stop the row writer before this append is
  // handed over.
  if (raw->remaining.fetch_sub(1) == 1) Finish(raw);
}

void KafkaLog::Impl::OnDelivery(const rd_kafka_message_t* m) {
  auto* sent = static_cast<PendingAppend::Sent*>(m->_private);
  PendingAppend* append = sent->append;
  if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    const model::Activity& a = append->request.activities[sent->activity];
    const auto partition = append->first_partition + static_cast<uint32_t>(m->partition);
    append->stored_at[sent->activity] = {static_cast<int32_t>(partition), m->offset};
    append->acknowledged[sent->activity] = 1;
    // Delivery reports of a partition come in offset order: consecutive records gather in one
    // open block, which reaches the tail cache before any append it holds is finished.
    std::lock_guard lock(open_mu);
    std::string key = PartitionKey(append->request.tenant, partition);
    OpenBlock& open = open_blocks[key];
    if (open.count > 0 && open.base + open.count != static_cast<uint64_t>(m->offset)) {
      FlushOpenBlock(key, &open);
    }
    if (open.count == 0) open.base = static_cast<uint64_t>(m->offset);
    open.builder.Add(std::string_view(static_cast<const char*>(m->payload), m->len),
                     a.received_at_ms);
    ++open.count;
  } else {
    std::lock_guard lock(append->mu);
    if (append->error.empty()) append->error = rd_kafka_err2str(m->err);
    if (rd_kafka_message_status(m) != RD_KAFKA_MSG_STATUS_NOT_PERSISTED) {
      append->possibly_stored = true;
    }
  }
  queued_events.fetch_sub(1);
  append->topic_sending->fetch_sub(1);
  if (append->remaining.fetch_sub(1) == 1) Finish(append);
}

void KafkaLog::Impl::FlushOpenBlock(const std::string& key, OpenBlock* open) {
  if (open->count == 0) return;
  tail.Add(key, {open->base, open->count,
                 std::make_shared<const std::string>(open->builder.Finish(SIZE_MAX))});
  open->builder = BlockBuilder();
  open->count = 0;
}

void KafkaLog::Impl::Finish(PendingAppend* raw) {
  ack_seconds->Observe(static_cast<double>(clock->NowMillis() - raw->now_ms) / 1000.0);
  {
    // The append's records become readable before it is reported.
    std::lock_guard lock(open_mu);
    std::set<uint32_t> partitions;
    for (const auto& s : raw->sent) {
      if (raw->acknowledged[s.activity]) {
        partitions.insert(static_cast<uint32_t>(raw->stored_at[s.activity].first));
      }
    }
    for (uint32_t p : partitions) {
      std::string key = PartitionKey(raw->request.tenant, p);
      auto it = open_blocks.find(key);
      if (it == open_blocks.end()) continue;
      FlushOpenBlock(key, &it->second);
      open_blocks.erase(it);
    }
  }
  {
    std::lock_guard lock(finished_mu);
    finished.emplace_back(raw);
  }
  finished_cv.notify_one();
}

void KafkaLog::Impl::RunRowWriter() {
  std::vector<std::unique_ptr<PendingAppend>> group;
  while (true) {
    {
      std::unique_lock lock(finished_mu);
      finished_cv.wait(lock, [&] { return !finished.empty() || !rows_running; });
      if (finished.empty()) return;  // stopping, and every acknowledged append is written
      group.assign(std::make_move_iterator(finished.begin()),
                   std::make_move_iterator(finished.end()));
      finished.clear();
    }
    WriteRows(group);
    group.clear();
  }
}

void KafkaLog::Impl::WriteRows(std::vector<std::unique_ptr<PendingAppend>>& group) {
  // Every acknowledged record is remembered, even when its request failed as a whole: the
  // client's retry then stores only what is missing. The rows of every append finished
  // meanwhile go in one sorted write (RocksDB's memtable inserts ordered keys much faster).
  storage::WriteBatch batch;
  std::vector<IndexRow> index_rows, dedup_rows;
  std::vector<std::map<uint32_t, uint64_t>> ends(group.size());
  std::vector<uint8_t> dropped_meanwhile(group.size());
  {
    std::lock_guard lock(send_mu);
    for (size_t g = 0; g < group.size(); ++g) {
      dropped_meanwhile[g] = dropped.count(group[g]->request.tenant.str()) > 0;
    }
  }
  std::unique_lock index_lock(index_mu);
  for (size_t g = 0; g < group.size(); ++g) {
    PendingAppend& append = *group[g];
    const AppendRequest& req = append.request;
    for (const auto& s : append.sent) {
      size_t i = s.activity;
      if (!append.acknowledged[i]) continue;
      auto [partition, offset] = append.stored_at[i];
      const auto p = static_cast<uint32_t>(partition);
      const auto o = static_cast<uint64_t>(offset);
      ++append.result.stored;
      ends[g][p] = std::max(ends[g][p], o + 1);
      // A tenant dropped meanwhile keeps no rows (its records go with its topic).
      if (dropped_meanwhile[g]) continue;
      AddRows(req, req.activities[i], p, o, append.now_ms, &index_rows, &dedup_rows);
      MarkIndexed(PartitionKey(req.tenant, p), o, &batch);
    }
  }
  std::sort(index_rows.begin(), index_rows.end());
  std::sort(dedup_rows.begin(), dedup_rows.end());
  for (const auto& e : dedup_rows) batch.Put(storage::kLogDedup, e.key, e.value);
  for (const auto& e : index_rows) batch.Put(storage::kLogLeadIndex, e.key, e.value);
  // The checkpoint rows go with the rows they count, under index_mu, so checkpoints are written
  // in the order they grow.
  Status written = batch.Count() > 0 ? store->Write(batch, /*sync=*/false) : Status::Ok();
  if (!written.ok()) {
    // The rows are missing: each tenant's next append catches up from the stored checkpoints.
    indexed.clear();
    std::lock_guard lock(topics_mu);
    topic_partitions.clear();
  }
  index_lock.unlock();
  for (const auto& append : group) {
    // Records the broker may have stored unanswered have no rows: the tenant's next append (the
    // client's retry, after the 503 below) first catches up its topic (and, through its current
    // layout, every sealed one), which finds and remembers them, so the retry does not store
    // them again.
    if (!append->possibly_stored) continue;
    auto current = AppendPlacement(append->request);
    std::lock_guard lock(topics_mu);
    for (const std::string* topic : {&append->topic, current.ok() ? &current->topic : nullptr}) {
      if (topic == nullptr) continue;
      topic_partitions.erase(*topic);
      ++topic_unsettled[*topic];
    }
  }
  {
    std::lock_guard lock(send_mu);
    for (const auto& append : group) {
      for (const auto& s : append->sent) {
        if (!append->dedup_keys[s.activity].empty()) {
          in_flight.erase(append->dedup_keys[s.activity]);
        }
      }
    }
  }
  std::vector<PartitionAdvance> advances;
  {
    // Each partition's reported end only grows, whichever request finishes first.
    std::lock_guard lock(advance_mu);
    for (size_t g = 0; g < group.size(); ++g) {
      for (auto [p, end] : ends[g]) {
        uint64_t& last = reported[PartitionKey(group[g]->request.tenant, p)];
        if (end <= last) continue;
        last = end;
        advances.push_back({group[g]->request.tenant, PartitionId(p), Offset(end)});
      }
    }
  }
  if (listener && !advances.empty()) listener(advances);
  for (auto& append : group) {
    if (!append->error.empty()) {
      appends_failed->Add();
      append->done(Unavailable(fmt::format("Kafka did not acknowledge {} of {} records: {}",
                                           append->sent.size() - append->result.stored,
                                           append->request.activities.size(), append->error)));
    } else if (!written.ok()) {
      append->done(
          Unavailable(fmt::format("stored in Kafka, but the dedup window and lead index "
                                  "could not be written: {}",
                                  written.message())));
    } else {
      append->done(append->result);
    }
  }
}

Result<std::pair<int64_t, int64_t>> KafkaLog::Impl::TopicWatermarks(const std::string& topic,
                                                                    int32_t partition) {
  int64_t low = 0, high = 0;
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(options.request_timeout_ms);
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  while (true) {
    err = rd_kafka_query_watermark_offsets(reader, topic.c_str(), partition, &low, &high,
                                           static_cast<int>(options.request_timeout_ms));
    if (!IsStaleLeader(err) || std::chrono::steady_clock::now() >= deadline) break;
    // The partition's leadership moved: its metadata is asked for now (which updates the
    // client's view) rather than at the next periodic refresh, and the query repeated.
    rd_kafka_topic_t* rkt = rd_kafka_topic_new(reader, topic.c_str(), nullptr);
    const rd_kafka_metadata_t* md = nullptr;
    if (rd_kafka_metadata(reader, 0, rkt, &md, static_cast<int>(options.request_timeout_ms)) ==
        RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(rkt);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (IsUnknownTopic(err)) return std::pair<int64_t, int64_t>{0, 0};
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Unavailable(fmt::format("Kafka watermarks of '{}' partition {}: {}", topic, partition,
                                   rd_kafka_err2str(err)));
  }
  return std::pair<int64_t, int64_t>{low, high};
}

Result<std::pair<int64_t, int64_t>> KafkaLog::Impl::Watermarks(const TenantId& tenant,
                                                               PartitionId partition) {
  FAIRWAY_ASSIGN_OR_RETURN(auto placement, PartitionPlacement(tenant, partition.value()));
  if (!placement) return std::pair<int64_t, int64_t>{0, 0};
  return TopicWatermarks(placement->topic,
                         static_cast<int32_t>(partition.value() - placement->first));
}

Result<Offset> KafkaLog::HighWatermark(const TenantId& tenant, PartitionId partition) {
  FAIRWAY_ASSIGN_OR_RETURN(auto marks, impl_->Watermarks(tenant, partition));
  return Offset(static_cast<uint64_t>(marks.second));
}

Result<Offset> KafkaLog::LowWatermark(const TenantId& tenant, PartitionId partition) {
  FAIRWAY_ASSIGN_OR_RETURN(auto marks, impl_->Watermarks(tenant, partition));
  return Offset(static_cast<uint64_t>(marks.first));
}

PartitionReader* KafkaLog::Impl::Reader(const Placement& placement, uint32_t partition) {
  const auto local = static_cast<int32_t>(partition - placement.first);
  std::lock_guard lock(readers_mu);
  auto& r = readers[{placement.topic, local}];
  if (!r) {
    r = std::make_unique<PartitionReader>();
    auto& t = reader_topics[placement.topic];
    if (t == nullptr) t = rd_kafka_topic_new(reader, placement.topic.c_str(), nullptr);
    r->topic = t;
    r->partition = local;
  }
  // A tenant deleted and created again may number the topic's partitions differently.
  std::lock_guard rlock(r->mu);
  r->first_partition = placement.first;
  return r.get();
}

void KafkaLog::Impl::StopReaders(const std::string& topic) {
  std::lock_guard lock(readers_mu);
  for (auto& [key, r] : readers) {
    if (key.first != topic) continue;
    std::lock_guard rlock(r->mu);
    if (r->started) rd_kafka_consume_stop(r->topic, r->partition);
    r->started = false;
  }
}

Status KafkaLog::Impl::Fetch(PartitionReader* r, const TenantId& tenant, int64_t from, size_t want,
                             std::vector<LogEntry>* out, int64_t stop_at) {
  std::lock_guard lock(r->mu);
  const int timeout_ms = static_cast<int>(options.request_timeout_ms);
  if (!r->started) {
    if (rd_kafka_consume_start(r->topic, r->partition, from) != 0) {
      return Unavailable(fmt::format("Kafka fetch of partition {} could not start: {}",
                                     r->partition, rd_kafka_err2str(rd_kafka_last_error())));
    }
    r->started = true;
    r->position = from;
  } else if (r->position != from) {
    // Drops what was fetched ahead for the old position.
    rd_kafka_resp_err_t err = rd_kafka_seek(r->topic, r->partition, from, timeout_ms);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return Unavailable(fmt::format("Kafka fetch of partition {} could not seek: {}", r->partition,
                                     rd_kafka_err2str(err)));
    }
    r->position = from;
  }
  // Bounded in real time (the broker's), whatever clock the log is given.
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(options.request_timeout_ms);
  std::vector<rd_kafka_message_t*> batch(std::min<size_t>(want, 1000));
  while (out->size() < want) {
    const int64_t left_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                deadline - std::chrono::steady_clock::now())
                                .count();
    if (left_ms <= 0) break;
    ssize_t got = rd_kafka_consume_batch(r->topic, r->partition,
                                         static_cast<int>(std::min<int64_t>(left_ms, 1000)),
                                         batch.data(), std::min(batch.size(), want - out->size()));
    if (got < 0) {
      return Unavailable(fmt::format("Kafka fetch of partition {}: {}", r->partition,
                                     rd_kafka_err2str(rd_kafka_last_error())));
    }
    Status st;
    for (ssize_t i = 0; i < got; ++i) {
      rd_kafka_message_t* m = batch[i];
      if (st.ok() && m->err == RD_KAFKA_RESP_ERR_NO_ERROR && m->offset >= r->position) {
        auto a =
            model::DecodeActivity(std::string_view(static_cast<const char*>(m->payload), m->len));
        if (a.ok()) {
          out->push_back({PartitionId(r->first_partition + static_cast<uint32_t>(r->partition)),
                          Offset(static_cast<uint64_t>(m->offset)), std::move(a).value()});
          r->position = m->offset + 1;
        } else {
          st = Internal(fmt::format("Kafka record {} of partition {}: {}", m->offset, r->partition,
                                    a.status().message()));
        }
      } else if (st.ok() && m->err != RD_KAFKA_RESP_ERR_NO_ERROR &&
                 m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        spdlog::warn("log: Kafka fetch of {} partition {}: {}", Topic(tenant), r->partition,
                     rd_kafka_message_errstr(m));
      }
      rd_kafka_message_destroy(m);
    }
    FAIRWAY_RETURN_IF_ERROR(st);
  }
  if (out->empty()) {
    return Unavailable(fmt::format("Kafka fetch of '{}' partition {} from offset {} timed out",
                                   Topic(tenant), r->partition, from));
  }
  // Caught up: a started partition keeps fetching ahead (a request to its leader every
  // fetch.wait.max.ms), which across thousands of partitions costs more than starting again.
  if (r->position >= stop_at) {
    rd_kafka_consume_stop(r->topic, r->partition);
    r->started = false;
  }
  return Status::Ok();
}

Result<std::vector<LogEntry>> KafkaLog::Read(const TenantId& tenant, PartitionId partition,
                                             Offset from, size_t max_records) {
  Impl& im = *impl_;
  std::vector<LogEntry> out;
  if (max_records == 0) return out;
  std::vector<TailCache::Block> cached;
  // The tail cache holds this node's own appends only: where it has nothing from `from` on,
  // records another node appended may be there, and the brokers are asked.
  if (im.tail.Read(PartitionKey(tenant, partition.value()), from.value(), max_records, &cached) &&
      !cached.empty()) {
    im.tail_reads->Add();
    std::string scratch;
    std::vector<std::string_view> records;
    for (const auto& b : cached) {
      FAIRWAY_RETURN_IF_ERROR(DecodeBlock(*b.data, &scratch, &records));
      for (size_t i = 0; i < records.size() && out.size() < max_records; ++i) {
        if (b.base + i < from.value()) continue;
        FAIRWAY_ASSIGN_OR_RETURN(model::Activity a, model::DecodeActivity(records[i]));
        out.push_back({partition, Offset(b.base + i), std::move(a)});
      }
    }
    return out;
  }
  // The end of this node's own acknowledged appends bounds the read without asking the broker
  // (a read below the log start is moved up to it by the fetcher, auto.offset.reset=earliest);
  // otherwise the partition's watermarks are asked for.
  int64_t start = static_cast<int64_t>(from.value()), high = 0;
  {
    std::lock_guard lock(im.advance_mu);
    auto it = im.reported.find(PartitionKey(tenant, partition.value()));
    if (it != im.reported.end()) high = static_cast<int64_t>(it->second);
  }
  FAIRWAY_ASSIGN_OR_RETURN(auto placement, im.PartitionPlacement(tenant, partition.value()));
  if (!placement) return out;
  if (high <= start) {
    FAIRWAY_ASSIGN_OR_RETURN(
        auto marks, im.TopicWatermarks(placement->topic,
                                       static_cast<int32_t>(partition.value() - placement->first)));
    start = std::max(start, marks.first);
    high = marks.second;
  }
  if (start >= high) return out;
  im.fetch_reads->Add();
  const size_t want = std::min<uint64_t>(max_records, static_cast<uint64_t>(high - start));
  PartitionReader* r = im.Reader(*placement, partition.value());
  FAIRWAY_RETURN_IF_ERROR(im.Fetch(r, tenant, start, want, &out, high));
  return out;
}

Result<uint64_t> KafkaLog::ApplyRetention(const TenantId&, uint32_t, int64_t) {
  return uint64_t{0};
}

Status KafkaLog::DropTenant(const TenantId& tenant) {
  Impl& im = *impl_;
  {
    std::lock_guard lock(im.send_mu);
    im.dropped.insert(tenant.str());
  }
  // Every layout's topic goes, and the next layout's, which a layout change stopped before
  // recording it may have created. Deleted before the rows that name them: a deletion that
  // fails is retried with the record intact.
  FAIRWAY_ASSIGN_OR_RETURN(auto recorded, im.LoadLayouts(tenant));
  std::vector<std::string> topics;
  for (size_t i = 0; i <= std::max<size_t>(recorded.size(), 1); ++i) {
    topics.push_back(im.LayoutTopic(tenant, i));
  }
  for (const auto& topic : topics) im.StopReaders(topic);
  if (im.admin != nullptr) {
    Status failed;
    for (const auto& topic : topics) {
      Status st = im.admin->DeleteTopic(topic);
      if (!st.ok() && st.code() != StatusCode::kNotFound && failed.ok()) failed = st;
    }
    FAIRWAY_RETURN_IF_ERROR(failed);
  }
  storage::WriteBatch batch;
  for (auto cf : {storage::kLogDedup, storage::kLogLeadIndex, storage::kLogMeta}) {
    batch.DeleteRange(cf, TenantKeyPrefix(tenant), TenantKeyEnd(tenant));
  }
  {
    std::lock_guard lock(im.index_mu);
    std::erase_if(im.indexed, [&](const auto& kv) {
      return kv.first.compare(0, tenant.str().size() + 1, TenantKeyPrefix(tenant)) == 0;
    });
  }
  FAIRWAY_RETURN_IF_ERROR(im.store->Write(batch, /*sync=*/true));
  {
    std::lock_guard lock(im.open_mu);
    std::erase_if(im.open_blocks, [&](const auto& kv) {
      return kv.first.compare(0, tenant.str().size() + 1, TenantKeyPrefix(tenant)) == 0;
    });
  }
  im.tail.DropPrefix(TenantKeyPrefix(tenant));
  {
    std::lock_guard lock(im.topics_mu);
    for (const auto& topic : topics) im.topic_partitions.erase(topic);
  }
  {
    // A tenant created again with this id starts its published progress afresh.
    std::lock_guard lock(im.progress_mu);
    std::erase_if(im.published, [&](const auto& kv) {
      return std::find(topics.begin(), topics.end(), std::get<1>(kv.first)) != topics.end();
    });
  }
  {
    std::lock_guard lock(im.layouts_mu);
    im.layouts.erase(tenant.str());
  }
  {
    std::lock_guard lock(im.advance_mu);
    std::erase_if(im.reported, [&](const auto& kv) {
      return kv.first.compare(0, tenant.str().size() + 1, TenantKeyPrefix(tenant)) == 0;
    });
  }
  return Status::Ok();
}

// Seals the next-to-last layout of `list` (whose ends are not known yet) at its partitions'
// high watermarks, once no record this node sent to it is unreported; saves the list.
// Requires layout_change_mu.
static Status SealAtWatermarks(KafkaLog::Impl& im, const TenantId& tenant,
                               std::vector<model::PartitionLayout>* list);

// Waits until no record this node sent to `topic` is unreported (acknowledged or failed).
static Status WaitSent(KafkaLog::Impl& im, const TenantId& tenant, const std::string& topic,
                       std::chrono::steady_clock::time_point deadline) {
  // Records sent before the switch are acknowledged or failed within the delivery timeout.
  std::atomic<int64_t>* sending = im.Sending(topic);
  while (sending->load() > 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      return Unavailable(fmt::format(
          "the old partition layout of tenant '{}' still has records on their way to Kafka",
          tenant.str()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return Status::Ok();
}

// Records the layout of `count` partitions after `config`'s current one (its topic checked
// first); `*repeated` when it was recorded already. Requires layout_change_mu.
static Result<std::vector<model::PartitionLayout>> RecordNextLayout(
    KafkaLog::Impl& im, const model::TenantConfig& config, uint32_t count, bool* repeated) {
  FAIRWAY_ASSIGN_OR_RETURN(auto recorded, im.LoadLayouts(config.id));
  FAIRWAY_ASSIGN_OR_RETURN(
      auto next, NextLayouts(std::move(recorded), config.current_layout(), count, {}, repeated));
  if (*repeated) return next;
  // The new layout's topic exists before any append can be sent to it.
  AppendRequest request = AppendRequestFor(config);
  request.first_partition = next.back().first;
  request.partitions = count;
  FAIRWAY_RETURN_IF_ERROR(im.EnsureTopic(
      request, {im.LayoutTopic(config.id, next.size() - 1), next.back().first, count}));
  // Recorded before any record goes to the new layout, so a restart before the old one is
  // sealed still finds the new layout (Layouts seals it then).
  std::lock_guard send_lock(im.send_mu);
  FAIRWAY_RETURN_IF_ERROR(im.SaveLayouts(config.id, next));
  return next;
}

Result<std::vector<uint64_t>> KafkaLog::StartLayout(const model::TenantConfig& config,
                                                    uint32_t count) {
  Impl& im = *impl_;
  if (im.options.shared_appends) {
    return FailedPrecondition("with shared appends, a layout change begins with BeginLayout");
  }
  std::lock_guard change(im.layout_change_mu);
  bool repeated = false;
  FAIRWAY_ASSIGN_OR_RETURN(auto next, RecordNextLayout(im, config, count, &repeated));
  if (repeated && !next[next.size() - 2].ends.empty()) return next[next.size() - 2].ends;
  FAIRWAY_RETURN_IF_ERROR(SealAtWatermarks(im, config.id, &next));
  return next[next.size() - 2].ends;
}

Result<std::vector<model::PartitionLayout>> KafkaLog::BeginLayout(const model::TenantConfig& config,
                                                                  uint32_t count) {
  Impl& im = *impl_;
  if (!im.options.shared_appends) {
    return FailedPrecondition("a layout change of a log with one writer is StartLayout");
  }
  std::lock_guard change(im.layout_change_mu);
  bool repeated = false;
  return RecordNextLayout(im, config, count, &repeated);
}

Status KafkaLog::FollowLayouts(const model::TenantConfig& config,
                               const std::vector<model::PartitionLayout>& layouts) {
  Impl& im = *impl_;
  if (!im.options.shared_appends) {
    return FailedPrecondition("a log with one writer records its own layouts");
  }
  std::lock_guard change(im.layout_change_mu);
  const TenantId& tenant = config.id;
  FAIRWAY_ASSIGN_OR_RETURN(auto recorded, im.LoadLayouts(tenant));
  FAIRWAY_ASSIGN_OR_RETURN(auto merged, MergeLayouts(recorded, layouts));
  if (merged != recorded) {
    if (merged.size() > recorded.size()) {
      const model::PartitionLayout& last = merged.back();
      AppendRequest request = AppendRequestFor(config);
      request.first_partition = last.first;
      request.partitions = last.count;
      FAIRWAY_RETURN_IF_ERROR(im.EnsureTopic(
          request, {im.LayoutTopic(tenant, merged.size() - 1), last.first, last.count}));
    }
    std::lock_guard send_lock(im.send_mu);
    FAIRWAY_RETURN_IF_ERROR(im.SaveLayouts(tenant, merged));
  }
  // From here on no append of the tenant goes to an unsealed older layout: wait for those sent.
  const auto deadline =
      std::chrono::steady_clock::now() +
      std::chrono::milliseconds(im.options.delivery_timeout_ms + im.options.request_timeout_ms);
  for (size_t i = 0; i + 1 < merged.size(); ++i) {
    if (merged[i].ends.empty()) {
      FAIRWAY_RETURN_IF_ERROR(WaitSent(im, tenant, im.LayoutTopic(tenant, i), deadline));
    }
  }
  return Status::Ok();
}

Result<std::vector<model::PartitionLayout>> KafkaLog::SealLayout(const TenantId& tenant) {
  Impl& im = *impl_;
  std::lock_guard change(im.layout_change_mu);
  FAIRWAY_ASSIGN_OR_RETURN(auto recorded, im.LoadLayouts(tenant));
  if (recorded.size() < 2) {
    return FailedPrecondition(
        fmt::format("tenant '{}' has no partition layout to seal", tenant.str()));
  }
  if (recorded[recorded.size() - 2].ends.empty()) {
    FAIRWAY_RETURN_IF_ERROR(SealAtWatermarks(im, tenant, &recorded));
  }
  return recorded;
}

Result<std::vector<model::PartitionLayout>> KafkaLog::RecordedLayouts(const TenantId& tenant) {
  return impl_->RecordedLayouts(tenant);
}

static Status SealAtWatermarks(KafkaLog::Impl& im, const TenantId& tenant,
                               std::vector<model::PartitionLayout>* list) {
  model::PartitionLayout& old = (*list)[list->size() - 2];
  const std::string topic = im.LayoutTopic(tenant, list->size() - 2);
  const auto deadline =
      std::chrono::steady_clock::now() +
      std::chrono::milliseconds(im.options.delivery_timeout_ms + im.options.request_timeout_ms);
  FAIRWAY_RETURN_IF_ERROR(WaitSent(im, tenant, topic, deadline));
  std::vector<uint64_t> ends;
  for (uint32_t i = 0; i < old.count; ++i) {
    // A leader that has just come back may not be known yet: asked again until the deadline.
    auto marks = im.TopicWatermarks(topic, static_cast<int32_t>(i));
    while (!marks.ok() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      marks = im.TopicWatermarks(topic, static_cast<int32_t>(i));
    }
    FAIRWAY_RETURN_IF_ERROR(marks.status());
    ends.push_back(static_cast<uint64_t>(marks->second));
  }
  old.ends = std::move(ends);
  return im.SaveLayouts(tenant, *list);
}

Result<std::vector<model::PartitionLayout>> KafkaLog::Layouts(const TenantId& tenant) {
  Impl& im = *impl_;
  std::lock_guard change(im.layout_change_mu);
  FAIRWAY_ASSIGN_OR_RETURN(auto recorded, im.LoadLayouts(tenant));
  // A layout started before a restart and not yet sealed is sealed now (by this node only when
  // it is the log's one writer).
  if (!im.options.shared_appends && recorded.size() >= 2 &&
      recorded[recorded.size() - 2].ends.empty()) {
    FAIRWAY_RETURN_IF_ERROR(SealAtWatermarks(im, tenant, &recorded));
  }
  return recorded;
}

Status KafkaLog::ReopenTenant(const TenantId& tenant) {
  Impl& im = *impl_;
  // A tenant deleted earlier with this id may have topics Kafka has not deleted yet (it does so
  // in the background), or that the operator has not: their records would become the new
  // tenant's history, and be processed with its configuration. Such an id waits until they are
  // gone (or empty).
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_resp_err_t err = rd_kafka_metadata(im.reader, 1, nullptr, &md,
                                              static_cast<int>(im.options.request_timeout_ms));
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Unavailable(fmt::format("cannot check Kafka for topics of an earlier tenant '{}': {}",
                                   tenant.str(), rd_kafka_err2str(err)));
  }
  const std::string base = im.Topic(tenant);
  std::vector<std::pair<std::string, int>> topics;
  for (int t = 0; t < md->topic_cnt; ++t) {
    std::string_view name = md->topics[t].topic;
    const bool layout = name.size() > base.size() + 1 && name.starts_with(base) &&
                        name[base.size()] == '.' &&
                        name.find_first_not_of("0123456789", base.size() + 1) == name.npos;
    if (name == base || layout) topics.emplace_back(name, md->topics[t].partition_cnt);
  }
  rd_kafka_metadata_destroy(md);
  for (const auto& [topic, partitions] : topics) {
    for (int p = 0; p < partitions; ++p) {
      FAIRWAY_ASSIGN_OR_RETURN(auto marks, im.TopicWatermarks(topic, p));
      if (marks.second > marks.first) {
        return FailedPrecondition(fmt::format(
            "Kafka topic '{}' still holds records of a tenant '{}' deleted earlier: Kafka deletes "
            "topics in the background, so create the tenant again once it is gone (with "
            "kafka.create_topics off, delete it first)",
            topic, tenant.str()));
      }
    }
  }
  std::lock_guard lock(im.send_mu);
  im.dropped.erase(tenant.str());
  return Status::Ok();
}

Result<ActivityPage> KafkaLog::Query(const ActivityQuery& q) {
  return QueryLeadIndex(
      impl_->store, q,
      [&](uint32_t partition, uint64_t offset) -> Result<std::optional<model::Activity>> {
        FAIRWAY_ASSIGN_OR_RETURN(auto entries,
                                 Read(q.tenant, PartitionId(partition), Offset(offset), 1));
        if (entries.empty() || entries[0].offset.value() != offset) {
          return std::optional<model::Activity>();
        }
        return std::optional<model::Activity>(std::move(entries[0].activity));
      },
      impl_->options.processed_index ? storage::kActivityIndex : storage::kLogLeadIndex);
}

}  // namespace fairway::log
