#pragma once
// The engine's internals, shared by its implementation files (not part of the public API):
// the per-lead queues, the streams (one per tenant and processor), Engine::Impl and the work
// item. Everything here is guarded by Engine::Impl::mu unless noted.

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "common/coding.h"
#include "engine/engine.h"
#include "engine/offsets.h"
#include "engine/processing_throttle.h"
#include "storage/keys.h"
#include "storage/schema.h"

namespace fairway::engine {

inline constexpr int64_t kNsPerMs = 1'000'000;
inline constexpr int64_t kNsPerSec = 1'000'000'000;
// Idle leads kept per stream (looked up again when more of their activities arrive), and
// Lead objects kept for reuse.
inline constexpr size_t kMaxIdleLeads = 8'192;
inline constexpr size_t kSpareLeads = 1'024;

// A stretch of one partition's log (contiguous offsets), read and decoded once and shared,
// read-only, by every stream of the tenant and by the work items holding its entries.
struct Chunk {
  std::vector<log::LogEntry> entries;
  size_t bytes = 0;
};
using ChunkRef = std::shared_ptr<const Chunk>;

// A buffered activity waiting for (or in) processing; a node of its lead's queue.
struct Pending {
  const log::LogEntry* entry = nullptr;
  // Keeps *entry alive.
  ChunkRef chunk;
  // Failed attempts of this activity processed alone.
  uint32_t attempts = 0;
  // Taken from the dead-letter store (its offset is already committed).
  bool replay = false;
  size_t bytes = 0;
  Pending* next = nullptr;
};

inline size_t EntryBytes(const log::LogEntry& e) {
  const auto& a = e.activity;
  return sizeof(Pending) + sizeof(log::LogEntry) + a.message_id.str().capacity() +
         a.user_id.capacity() + a.anonymous_id.capacity() + a.event.capacity() +
         a.fields_json.capacity();
}

struct Tenant;

// The chunks read lately, so that a tenant's other streams take their entries from memory
// instead of reading and decoding the log again. A chunk leaves once each of the tenant's
// other streams has taken it to its end, or, oldest first, when the cache is over its bound
// (a stream that is parked or far behind then reads the log itself). Thread-safe.
class ChunkCache {
 public:
  explicit ChunkCache(size_t limit_bytes) : limit_(limit_bytes) {}
  // A cached chunk of (tenant, partition) holding offset `from`, and from's index in it.
  std::pair<ChunkRef, size_t> Find(const Tenant* t, uint32_t p, uint64_t from);
  // Keeps `chunk` for `readers` more streams.
  void Add(const Tenant* t, uint32_t p, const ChunkRef& chunk, uint32_t readers);
  // A stream took `chunk` (found by Find) up to its end: one reader less.
  void Consumed(const Tenant* t, uint32_t p, const ChunkRef& chunk);
  void DropTenant(const Tenant* t);
  size_t bytes() const {
    std::lock_guard lock(mu_);
    return bytes_;
  }

 private:
  using Key = std::tuple<const Tenant*, uint32_t, uint64_t>;  // tenant, partition, begin
  struct Entry {
    uint64_t end = 0;
    ChunkRef chunk;
    uint32_t readers = 0;
  };
  void Erase(std::map<Key, Entry>::iterator it);
  mutable std::mutex mu_;
  const size_t limit_;
  size_t bytes_ = 0;
  std::map<Key, Entry> chunks_;
  // Insertion order, for eviction; may name chunks already gone.
  std::deque<Key> order_;
};

// Recycles queue nodes: at hundreds of thousands of activities a second, allocating one per
// activity shows in the profile.
class PendingPool {
 public:
  PendingPool() = default;
  PendingPool(const PendingPool&) = delete;
  PendingPool& operator=(const PendingPool&) = delete;
  ~PendingPool() {
    for (Pending* p : free_) delete p;
  }
  Pending* Get() {
    if (free_.empty()) return new Pending();
    Pending* p = free_.back();
    free_.pop_back();
    return p;
  }
  void Put(Pending* p) {
    p->next = nullptr;
    p->entry = nullptr;
    p->chunk.reset();
    p->attempts = 0;
    p->replay = false;
    p->bytes = 0;
    if (free_.size() < kMaxFree) {
      free_.push_back(p);
    } else {
      delete p;
    }
  }

 private:
  static constexpr size_t kMaxFree = 1 << 16;
  std::vector<Pending*> free_;
};

// The activities of one ordering key (a lead; the whole tenant for a per-tenant processor), in
// log order.
struct Lead {
  Lead() = default;
  Lead(const Lead&) = delete;
  Lead& operator=(const Lead&) = delete;
  ~Lead() {
    while (head != nullptr) {
      Pending* n = head->next;
      delete head;
      head = n;
    }
  }
  bool empty() const { return head == nullptr; }
  void PushBack(Pending* p) {
    p->next = nullptr;
    if (tail != nullptr) {
      tail->next = p;
    } else {
      head = p;
    }
    tail = p;
  }
  void PushFront(Pending* p) {
    p->next = head;
    head = p;
    if (tail == nullptr) tail = p;
  }
  Pending* PopFront() {
    Pending* p = head;
    head = p->next;
    if (head == nullptr) tail = nullptr;
    p->next = nullptr;
    return p;
  }

  // Hash of the ordering key. Two keys with the same hash share one queue: order between them
  // is kept too, which is stricter than needed and never wrong.
  uint64_t key = 0;
  Pending* head = nullptr;
  Pending* tail = nullptr;
  // A work item holds it.
  bool busy = false;
  // In the stream's ready list.
  bool ready = false;
  // Nothing queued, nothing in processing: kept for a while in case more comes.
  bool idle = false;
  // Retry back-off: not dispatched before this time.
  int64_t not_before_ns = 0;
  // Head activities to process one at a time (after a failed batch, to find the culprit).
  uint32_t solo = 0;
};

inline uint64_t OrderingKey(Ordering ordering, const log::LogEntry& e) {
  switch (ordering) {
    case Ordering::kPerLead:
      return std::hash<std::string_view>()(e.activity.LeadKey());
    case Ordering::kPerTenant:
      return 0;
    case Ordering::kNone:
      return (static_cast<uint64_t>(e.partition.value()) << 48) ^ e.offset.value();
  }
  return 0;
}

struct PartitionState {
  // Next offset to read, and the log's high watermark as last heard.
  uint64_t next_fetch = 0;
  uint64_t hwm = 0;
  // Guarded by Stream::commit_mu.
  CommittedOffsets committed;
};

struct Breaker {
  enum class State { kClosed, kOpen, kHalfOpen };
  State state = State::kClosed;
  std::vector<uint8_t> ring;  // 1 = failed attempt
  size_t pos = 0;
  uint32_t failures = 0;
  uint32_t reopens = 0;
  int64_t opened_at_ms = 0;
  int64_t probe_at_ns = 0;
  bool probe_in_flight = false;

  void Reset() {
    std::fill(ring.begin(), ring.end(), 0);
    failures = 0;
    pos = 0;
    probe_in_flight = false;
  }
  // Records an attempt's outcome; true when the breaker should open.
  bool Record(bool failed, const BreakerPolicy& p) {
    if (ring.size() != p.window) {
      ring.assign(std::max<uint32_t>(1, p.window), 0);
      failures = 0;
      pos = 0;
    }
    failures -= ring[pos];
    ring[pos] = failed ? 1 : 0;
    failures += ring[pos];
    pos = (pos + 1) % ring.size();
    return failed && failures >= p.min_failures &&
           static_cast<double>(failures) >= p.failure_rate * static_cast<double>(ring.size());
  }
};

// Events per second over the last few seconds.
class RateMeter {
 public:
  void Add(int64_t now_ns, uint64_t n) {
    int64_t sec = now_ns / kNsPerSec;
    Roll(sec);
    buckets_[sec % kSlots] += n;
  }
  double Rate(int64_t now_ns) {
    int64_t sec = now_ns / kNsPerSec;
    Roll(sec);
    uint64_t sum = 0;
    // Whole seconds before the current one.
    for (int64_t s = sec - kSlots + 1; s < sec; ++s)
      sum += buckets_[((s % kSlots) + kSlots) % kSlots];
    return static_cast<double>(sum) / (kSlots - 1);
  }

 private:
  static constexpr int64_t kSlots = 6;
  void Roll(int64_t sec) {
    if (last_ == 0) last_ = sec;
    for (int64_t s = last_ + 1; s <= sec && s <= last_ + kSlots; ++s) buckets_[s % kSlots] = 0;
    last_ = std::max(last_, sec);
  }
  int64_t last_ = 0;
  uint64_t buckets_[kSlots] = {};
};

struct ProcessorSlot {
  std::unique_ptr<Processor> processor;
  size_t index = 0;
};

struct Tenant;

// One (tenant, processor) pair.
// Guarded by Engine::Impl::mu unless noted.
struct Stream {
  // Kept alive by the stream (timers and work items may outlive the tenant's removal).
  std::shared_ptr<Tenant> tenant;
  // Immutable copies, readable without the lock.
  TenantId tenant_id;
  std::weak_ptr<Stream> self;
  const ProcessorSlot* slot = nullptr;
  Processor* processor = nullptr;
  const ProcessorSpec* spec = nullptr;
  std::string key_prefix;  // tenant \0 processor \0
  // The same tenant's stream of spec->after, whose committed offsets bound this one's reads,
  // and the streams bound by this one's.
  std::weak_ptr<Stream> upstream;
  std::vector<std::weak_ptr<Stream>> downstream;
  bool enabled = true;
  // Until the tenant's high watermarks are known.
  bool loading = true;
  // Set (under mu, and before its data is deleted) when the tenant is removed.
  std::atomic<bool> removed{false};

  // One per log partition, over all of the tenant's layouts (TenantConfig::log_partitions).
  std::vector<PartitionState> partitions;
  // Sealed layouts of the tenant whose every partition this stream has processed to its end:
  // the partitions of the layout after them may be read (ReadLimit).
  size_t drained_layouts = 0;
  size_t fetch_rr = 0;
  bool fetching = false;
  bool fetch_queued = false;
  std::string fetch_error;

  std::unordered_map<uint64_t, std::unique_ptr<Lead>> leads;
  // Leads in `leads` that are idle; swept when there are too many.
  size_t idle_leads = 0;
  // Lead objects kept for reuse.
  std::vector<std::unique_ptr<Lead>> spare_leads;
  std::deque<Lead*> ready;
  uint32_t in_flight_items = 0;
  uint32_t in_flight_events = 0;
  size_t buffered_bytes = 0;
  // Dead letters queued for replay, by "partition-offset".
  std::unordered_map<std::string, bool> replaying;

  // Fair scheduling.
  bool in_rr = false;
  bool has_turn = false;
  int64_t deficit = 0;

  // Throttle (processing_rate).
  ProcessingThrottle throttle;
  bool throttle_timer = false;

  // Watchdog: work items dispatched plus completed, and when (engine clock) that count last
  // moved or the stream last had nothing to do.
  uint64_t progress = 0;
  uint64_t watchdog_progress = 0;
  int64_t watchdog_since_ns = 0;

  Breaker breaker;
  uint64_t breaker_epoch = 0;
  std::string last_error;
  RateMeter rate;

  // Serialises commits of this stream, so offset records are written in order.
  std::mutex commit_mu;
  // Per partition: the committed low-water mark and completed-above count as of the last
  // commit, readable without commit_mu (status, idle checks).
  std::unique_ptr<std::atomic<uint64_t>[]> committed_lwm;
  std::unique_ptr<std::atomic<uint64_t>[]> committed_above;
  // Adds partitions up to `n` (a new layout). Requires commit_mu and Engine::Impl::mu.
  void GrowPartitions(size_t n) {
    const size_t old = partitions.size();
    if (n <= old) return;
    partitions.resize(n);
    auto lwm = std::make_unique<std::atomic<uint64_t>[]>(n);
    auto above = std::make_unique<std::atomic<uint64_t>[]>(n);
    for (size_t p = 0; p < old; ++p) {
      lwm[p] = committed_lwm[p].load();
      above[p] = committed_above[p].load();
    }
    committed_lwm = std::move(lwm);
    committed_above = std::move(above);
  }
  void PublishCommitted(size_t p) {
    committed_lwm[p] = partitions[p].committed.low_water_mark();
    committed_above[p] = partitions[p].committed.done_above();
  }

  Counter* processed = nullptr;
  Counter* failures = nullptr;
  Counter* repeats = nullptr;
  Counter* dead_letters = nullptr;
  Histogram* latency = nullptr;
};

struct Tenant {
  model::TenantConfig config;
  // config.quotas.dedup_window_seconds, read without mu (EngineOptions::skip_repeats).
  std::atomic<uint32_t> dedup_window_seconds{0};
  bool removing = false;
  std::vector<std::shared_ptr<Stream>> streams;
  // Partitions one of the streams is reading now. The tenant's other streams wait for that
  // read and take its records from the chunk cache, instead of reading the same stretch
  // alongside it; `read_waiters` are queued again when it ends.
  std::set<uint32_t> reading;
  std::vector<std::weak_ptr<Stream>> read_waiters;
  bool active() const { return config.status == model::TenantStatus::kActive && !removing; }
};

inline std::string PartitionKey(const std::string& stream_prefix, uint32_t partition) {
  std::string k = stream_prefix;
  PutFixed32BE(&k, partition);
  return k;
}

inline std::string PositionKey(const std::string& stream_prefix, uint32_t partition,
                               uint64_t offset) {
  std::string k = PartitionKey(stream_prefix, partition);
  PutFixed64BE(&k, offset);
  return k;
}

using storage::PrefixEnd;

class ItemImpl;

struct Engine::Impl {
  Impl(storage::Store* store, log::ActivityLog* log, const Clock* clock, MetricsRegistry* metrics,
       EngineOptions options)
      : store(store),
        log(log),
        clock(clock),
        metrics(metrics),
        options(options),
        chunks(options.global_buffer_bytes) {}

  storage::Store* store;
  log::ActivityLog* log;
  const Clock* clock;
  MetricsRegistry* metrics;
  EngineOptions options;
  // Reads shared by the streams of a tenant; bounded by a quarter of the global read-ahead.
  ChunkCache chunks;

  std::vector<std::unique_ptr<ProcessorSlot>> processors;
  // Engine::SetOwnership (set before Start, read-only after).
  std::function<bool(const TenantId&)> owns;
  // Stops the tenant's streams and waits for its work in processing; *out is the tenant taken
  // out of the engine (null when it was not running).
  Status Detach(const TenantId& tenant, std::shared_ptr<Tenant>* out);

  std::mutex mu;
  PendingPool pool;                 // guarded by mu
  std::condition_variable work_cv;  // workers wait for work
  std::condition_variable done_cv;  // idle, removal and stop waiters
  bool started = false;
  bool stopping = false;
  std::vector<std::thread> workers;
  // Tenants and streams point at each other; RemoveTenant and ~Impl break the cycle.
  std::unordered_map<std::string, std::shared_ptr<Tenant>> tenants;
  std::weak_ptr<Impl> self;
  ~Impl() {
    for (auto& [id, t] : tenants) t->streams.clear();
  }
  std::deque<Stream*> rr;
  std::deque<std::shared_ptr<Stream>> fetch_queue;
  std::multimap<int64_t, std::function<void()>> timers;
  // Tenants whose outbox should be sent again (after a failed append).
  std::vector<model::TenantConfig> outbox_rescans;
  size_t global_buffered = 0;
  uint32_t total_in_flight = 0;
  // Generated activities handed to the log and not yet stored: the engine is not idle while
  // they are on their way (they are more work).
  uint32_t outbox_in_flight = 0;
  // The same, per tenant (by id): a released tenant's outbox appends finish first.
  std::unordered_map<std::string, uint32_t> tenant_outbox;
  bool global_starved = false;

  // --- setup ---
  Status LoadStream(Tenant* t, Stream* s);
  // Reads the high watermarks of the tenant's log partitions from `from` on into `streams`
  // (takes mu); until it succeeds the streams count as loading (not idle).
  Status ReadHighWatermarks(const model::TenantConfig& config, uint32_t from,
                            const std::vector<std::shared_ptr<Stream>>& streams);
  void RegisterMetrics();

  // --- scheduling (mu held) ---
  bool CanDispatch(Stream* s, int64_t now_ns);
  void Activate(Stream* s);
  void MaybeQueueFetch(const std::shared_ptr<Stream>& s);
  // Offsets of partition `p` below this may be read: the high watermark, or less while an
  // upstream processor (ProcessorSpec::after) has not committed them, or none while the
  // partition belongs to a layout after one this stream has not processed to its end.
  uint64_t ReadLimit(Stream* s, size_t p);
  // Lets the streams that wait for `s` read what it has just committed.
  void WakeDownstream(Stream* s);
  void MakeReady(Stream* s, Lead* l, int64_t now_ns);
  void AddTimer(int64_t at_ns, std::function<void()> fn);
  std::unique_ptr<ItemImpl> NextItem(int64_t now_ns);
  std::unique_ptr<ItemImpl> Dispatch(Stream* s, uint32_t cap, int64_t now_ns);
  // `keys` are the entries' ordering keys (computed before taking the lock).
  void InsertFetched(Stream* s, const ChunkRef& chunk,
                     std::span<const log::LogEntry* const> entries,
                     const std::vector<uint64_t>& keys, int64_t now_ns, bool replay = false);
  void SweepIdleLeads(Stream* s);
  void RunDueTimers(int64_t now_ns);
  std::shared_ptr<Stream> FindStream(const TenantId& tenant, std::string_view processor);
  bool StreamIdle(Stream* s);

  void OnAppend(const std::vector<log::PartitionAdvance>& advances);
  // Re-queues reads that waited for the global read-ahead budget, once there is room.
  void Unstarve();
  void OpenBreaker(Stream* s, int64_t now_ns);
  // A stream that cannot run (disabled, tenant suspended, breaker open) with nothing in
  // processing gives its read-ahead back: it is read again from the committed offsets when the
  // stream runs again, so parked streams cannot hold the global budget.
  void MaybeReleaseBuffers(Stream* s);
  // Snapshot of a stream for the API and metrics (mu held); lag_seconds is filled by the caller.
  StreamStatus Snapshot(Stream* s, int64_t now_ns);
  // Fills lag_seconds from the oldest unprocessed record of each lagging partition (no lock).
  void FillLagSeconds(const TenantId& tenant, StreamStatus* status);
  std::vector<std::pair<TenantId, StreamStatus>> SnapshotAll();
  // SnapshotAll for /metrics: each engine gauge family asks for it in turn during one scrape,
  // so one snapshot (with its log reads for lag_seconds) serves them all for 100 ms.
  std::vector<std::pair<TenantId, StreamStatus>> MetricsSnapshot();
  std::mutex metrics_snapshot_mu;
  std::optional<int64_t> metrics_snapshot_at_ns;
  std::vector<std::pair<TenantId, StreamStatus>> metrics_snapshot;

  // --- watchdog ---
  // Runs on its own thread, so a stall of every worker thread is noticed too.
  std::thread watchdog;
  std::condition_variable watchdog_cv;  // with mu: wakes the watchdog to stop
  Counter* watchdog_trips = nullptr;
  void WatchdogLoop();
  // Opens the breaker of each stream that expected progress and made none for
  // options.stall_timeout (mu held).
  void WatchdogPass(int64_t now_ns);
  // True if the stream has work in processing, or work the scheduler could dispatch now.
  bool ExpectsProgress(Stream* s, int64_t now_ns);

  // --- work ---
  void WorkerLoop();
  void Fetch(std::shared_ptr<Stream> s, uint32_t partition, uint64_t from, uint64_t hwm);
  // EngineOptions::skip_repeats: removes from `entries` (read from one partition, in offset
  // order) each record whose messageId an earlier record of the tenant has, received less
  // than the tenant's dedup window before it, and returns the offsets removed. The first copy
  // of a messageId is remembered (kProcessedIds, before any processor sees it) by whichever
  // of the tenant's streams reads it first, so every stream skips the same records.
  Result<std::vector<uint64_t>> SkipRepeats(Stream* s, std::vector<const log::LogEntry*>* entries);
  void Complete(ItemImpl* item, Status status);
  // Writes `batch` plus the offsets of `done` entries, atomically, in commit order.
  // `replay_key`, when set, is the dead letter being replayed: the commit is Aborted if it is
  // no longer there (replayed already), so a replay is applied once.
  // `generated`, when set, is appended to the log in the same write (ActivityLog::AppendInWrite).
  Status Commit(Stream* s, storage::WriteBatch* batch,
                const std::vector<const log::LogEntry*>& entries,
                const std::vector<uint8_t>& counts_as_done, const std::string* replay_key = nullptr,
                const log::AppendRequest* generated = nullptr);
  // Requires: outbox_in_flight was incremented for this append (under mu).
  void ForwardOutbox(const model::TenantConfig& tenant, std::vector<std::string> keys,
                     std::vector<model::Activity> activities);
  void ScanOutbox(const model::TenantConfig& tenant);
};

// A work item: a batch of one stream's activities.
class ItemImpl final : public WorkItem {
 public:
  ItemImpl(Engine::Impl* engine, std::shared_ptr<Stream> stream)
      : engine_(engine), stream_(std::move(stream)), txn_(engine->store, stream_->key_prefix) {}

  const TenantId& tenant() const override { return stream_->tenant_id; }
  EntryView entries() const override { return EntryView(entries_); }
  StateTxn& state() override { return txn_; }
  uint32_t attempt() const override { return attempt_; }
  void Emit(model::Activity activity) override { emitted_.push_back(std::move(activity)); }
  void AfterCommit(std::function<void()> fn) override { after_commit_.push_back(std::move(fn)); }
  void Finish(Status status) override { engine_->Complete(this, std::move(status)); }

  Engine::Impl* engine_;
  std::shared_ptr<Stream> stream_;
  StateTxn txn_;
  std::vector<const log::LogEntry*> entries_;
  // Parallel to entries_.
  std::vector<ChunkRef> chunks_;
  std::vector<Lead*> leads_;
  std::vector<uint32_t> attempts_;
  std::vector<uint8_t> replay_;
  std::vector<size_t> bytes_;
  std::vector<model::Activity> emitted_;
  std::vector<std::function<void()>> after_commit_;
  uint32_t attempt_ = 1;
  bool solo_ = false;
  bool probe_ = false;
};

}  // namespace fairway::engine
