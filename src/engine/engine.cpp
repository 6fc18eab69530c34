#include "engine/engine.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <map>

#include "common/coding.h"
#include "engine/offsets.h"
#include "engine/processing_throttle.h"
#include "storage/schema.h"

namespace fairway::engine {

namespace {

constexpr int64_t kNsPerMs = 1'000'000;
constexpr int64_t kNsPerSec = 1'000'000'000;
// Idle leads kept per stream (looked up again when more of their activities arrive), and
// Lead objects kept for reuse.
constexpr size_t kMaxIdleLeads = 8'192;
constexpr size_t kSpareLeads = 1'024;

// A buffered activity waiting for (or in) processing; a node of its lead's queue.
struct Pending {
  log::LogEntry entry;
  // Failed attempts of this activity processed alone.
  uint32_t attempts = 0;
  // Taken from the dead-letter store (its offset is already committed).
  bool replay = false;
  size_t bytes = 0;
  Pending* next = nullptr;
};

size_t EntryBytes(const log::LogEntry& e) {
  const auto& a = e.activity;
  return sizeof(Pending) + a.message_id.str().capacity() + a.user_id.capacity() +
         a.anonymous_id.capacity() + a.event.capacity() + a.fields_json.capacity();
}

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

uint64_t OrderingKey(Ordering ordering, const log::LogEntry& e) {
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

  std::vector<PartitionState> partitions;
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
  void PublishCommitted(size_t p) {
    committed_lwm[p] = partitions[p].committed.low_water_mark();
    committed_above[p] = partitions[p].committed.done_above();
  }

  Counter* processed = nullptr;
  Counter* failures = nullptr;
  Counter* dead_letters = nullptr;
  Histogram* latency = nullptr;
};

struct Tenant {
  model::TenantConfig config;
  bool removing = false;
  std::vector<std::shared_ptr<Stream>> streams;
  bool active() const { return config.status == model::TenantStatus::kActive && !removing; }
};

std::string PartitionKey(const std::string& stream_prefix, uint32_t partition) {
  std::string k = stream_prefix;
  PutFixed32BE(&k, partition);
  return k;
}

std::string PositionKey(const std::string& stream_prefix, uint32_t partition, uint64_t offset) {
  std::string k = PartitionKey(stream_prefix, partition);
  PutFixed64BE(&k, offset);
  return k;
}

std::string PrefixEnd(std::string prefix) {
  while (!prefix.empty() && static_cast<unsigned char>(prefix.back()) == 0xff) prefix.pop_back();
  if (!prefix.empty()) prefix.back() = static_cast<char>(prefix.back() + 1);
  return prefix;
}

std::string EncodeDeadLetter(ErrorClass cls, uint32_t attempts, int64_t failed_at_ms,
                             std::string_view reason, const model::Activity& a) {
  std::string v;
  v.push_back(static_cast<char>(cls));
  PutVarint64(&v, attempts);
  PutFixed64BE(&v, static_cast<uint64_t>(failed_at_ms));
  PutLengthPrefixed(&v, reason);
  model::EncodeActivity(a, &v);
  return v;
}

Result<DeadLetter> DecodeDeadLetter(std::string_view key, size_t prefix_size,
                                    std::string_view value) {
  DeadLetter d;
  if (key.size() != prefix_size + 12) return Internal("dead letter: bad key");
  d.partition = DecodeFixed32BE(key.data() + prefix_size);
  d.offset = DecodeFixed64BE(key.data() + prefix_size + 4);
  d.id = fmt::format("{}-{}", d.partition, d.offset);
  Decoder dec(value);
  uint8_t cls = 0;
  uint64_t attempts = 0, failed_at = 0;
  std::string_view reason;
  if (!dec.GetByte(&cls) || cls > 2 || !dec.GetVarint64(&attempts) ||
      !dec.GetFixed64BE(&failed_at) || !dec.GetLengthPrefixed(&reason)) {
    return Internal("dead letter: corrupt value");
  }
  d.error_class = static_cast<ErrorClass>(cls);
  d.attempts = static_cast<uint32_t>(attempts);
  d.failed_at_ms = static_cast<int64_t>(failed_at);
  d.reason = std::string(reason);
  FAIRWAY_ASSIGN_OR_RETURN(d.activity, model::DecodeActivity(dec.rest()));
  return d;
}

// Parses "<partition>-<offset>".
bool ParsePosition(std::string_view id, uint32_t* partition, uint64_t* offset) {
  auto dash = id.find('-');
  if (dash == std::string_view::npos || dash == 0 || dash + 1 >= id.size()) return false;
  uint64_t p = 0, o = 0;
  for (size_t i = 0; i < id.size(); ++i) {
    if (i == dash) continue;
    char c = id[i];
    if (c < '0' || c > '9') return false;
    uint64_t& v = i < dash ? p : o;
    if (v > (UINT64_MAX - 9) / 10) return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (p > UINT32_MAX) return false;
  *partition = static_cast<uint32_t>(p);
  *offset = o;
  return true;
}

}  // namespace

class ItemImpl;

struct Engine::Impl {
  Impl(storage::Store* store, log::ActivityLog* log, const Clock* clock, MetricsRegistry* metrics,
       EngineOptions options)
      : store(store), log(log), clock(clock), metrics(metrics), options(options) {}

  storage::Store* store;
  log::ActivityLog* log;
  const Clock* clock;
  MetricsRegistry* metrics;
  EngineOptions options;

  std::vector<std::unique_ptr<ProcessorSlot>> processors;

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
  bool global_starved = false;

  // --- setup ---
  Status LoadStream(Tenant* t, Stream* s);
  void RegisterMetrics();

  // --- scheduling (mu held) ---
  bool CanDispatch(Stream* s, int64_t now_ns);
  void Activate(Stream* s);
  void MaybeQueueFetch(const std::shared_ptr<Stream>& s);
  // Offsets of partition `p` below this may be read: the high watermark, or less while an
  // upstream processor (ProcessorSpec::after) has not committed them.
  uint64_t ReadLimit(Stream* s, size_t p);
  // Lets the streams that wait for `s` read what it has just committed.
  void WakeDownstream(Stream* s);
  void MakeReady(Stream* s, Lead* l, int64_t now_ns);
  void AddTimer(int64_t at_ns, std::function<void()> fn);
  std::unique_ptr<ItemImpl> NextItem(int64_t now_ns);
  std::unique_ptr<ItemImpl> Dispatch(Stream* s, uint32_t cap, int64_t now_ns);
  // `keys` are the entries' ordering keys (computed before taking the lock).
  void InsertFetched(Stream* s, std::vector<log::LogEntry> entries,
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
  void Complete(ItemImpl* item, std::optional<ProcessError> error);
  // Writes `batch` plus the offsets of `done` entries, atomically, in commit order.
  // `replay_key`, when set, is the dead letter being replayed: the commit is Aborted if it is
  // no longer there (replayed already), so a replay is applied once.
  Status Commit(Stream* s, storage::WriteBatch* batch, const std::vector<log::LogEntry>& entries,
                const std::vector<uint8_t>& counts_as_done,
                const std::string* replay_key = nullptr);
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
  std::span<const log::LogEntry> entries() const override { return entries_; }
  StateTxn& state() override { return txn_; }
  uint32_t attempt() const override { return attempt_; }
  void Emit(model::Activity activity) override { emitted_.push_back(std::move(activity)); }
  void AfterCommit(std::function<void()> fn) override { after_commit_.push_back(std::move(fn)); }
  void Finish(std::optional<ProcessError> error) override { engine_->Complete(this, error); }

  Engine::Impl* engine_;
  std::shared_ptr<Stream> stream_;
  StateTxn txn_;
  std::vector<log::LogEntry> entries_;
  // Parallel to entries_.
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

// ---------------------------------------------------------------------------------------------
// Scheduling

bool Engine::Impl::CanDispatch(Stream* s, int64_t now_ns) {
  Tenant* t = s->tenant.get();
  if (!s->enabled || !t->active() || s->ready.empty()) return false;
  if (s->breaker.state == Breaker::State::kOpen) return false;
  if (s->breaker.state == Breaker::State::kHalfOpen && s->breaker.probe_in_flight) return false;
  if (s->in_flight_items >= s->spec->concurrency) return false;
  if (s->in_flight_events >= t->config.quotas.max_in_flight) return false;
  double rate = t->config.quotas.processing_rate;
  if (rate > 0 && s->throttle.Available(rate, now_ns) < 1) {
    if (!s->throttle_timer) {
      s->throttle_timer = true;
      std::weak_ptr<Stream> weak = s->self.lock();
      AddTimer(s->throttle.NextTokenAt(rate), [this, weak] {
        if (auto st = weak.lock()) {
          st->throttle_timer = false;
          Activate(st.get());
        }
      });
    }
    return false;
  }
  return true;
}

void Engine::Impl::Activate(Stream* s) {
  if (s->in_rr) {
    work_cv.notify_one();  // it may have more ready work than the busy workers can take
    return;
  }
  if (!CanDispatch(s, clock->MonotonicNanos())) return;
  s->in_rr = true;
  s->has_turn = false;
  s->deficit = 0;
  rr.push_back(s);
  work_cv.notify_one();
}

uint64_t Engine::Impl::ReadLimit(Stream* s, size_t p) {
  uint64_t limit = s->partitions[p].hwm;
  if (auto up = s->upstream.lock(); up && up->enabled && p < up->partitions.size()) {
    limit = std::min(limit, up->committed_lwm[p].load());
  }
  return limit;
}

void Engine::Impl::WakeDownstream(Stream* s) {
  for (const auto& weak : s->downstream) {
    if (auto d = weak.lock()) MaybeQueueFetch(d);
  }
}

void Engine::Impl::MaybeQueueFetch(const std::shared_ptr<Stream>& s) {
  if (s->fetching || s->fetch_queued || !s->enabled || !s->tenant->active()) return;
  if (s->breaker.state == Breaker::State::kOpen) return;
  // A heavier tenant drains its buffer faster: its read-ahead grows with its weight, so it
  // never runs dry (and loses its turn) while its backlog waits in the log.
  size_t budget = options.stream_buffer_bytes *
                  std::min<uint32_t>(16, s->tenant->config.quotas.processing_weight);
  if (s->buffered_bytes > budget / 2) return;
  if (global_buffered >= options.global_buffer_bytes) {
    global_starved = true;
    return;
  }
  for (size_t p = 0; p < s->partitions.size(); ++p) {
    if (s->partitions[p].next_fetch < ReadLimit(s.get(), p)) {
      s->fetch_queued = true;
      fetch_queue.push_back(s);
      work_cv.notify_one();
      return;
    }
  }
}

void Engine::Impl::MakeReady(Stream* s, Lead* l, int64_t now_ns) {
  if (l->busy || l->ready || l->empty() || l->not_before_ns > now_ns) return;
  l->ready = true;
  s->ready.push_back(l);
}

void Engine::Impl::AddTimer(int64_t at_ns, std::function<void()> fn) {
  bool earliest = timers.empty() || at_ns < timers.begin()->first;
  timers.emplace(at_ns, std::move(fn));
  if (earliest) work_cv.notify_one();
}

void Engine::Impl::RunDueTimers(int64_t now_ns) {
  while (!timers.empty() && timers.begin()->first <= now_ns) {
    auto fn = std::move(timers.begin()->second);
    timers.erase(timers.begin());
    fn();
  }
}

std::unique_ptr<ItemImpl> Engine::Impl::NextItem(int64_t now_ns) {
  // Deficit round robin over streams with ready work: each turn, a stream may take up to
  // quantum x weight activities.
  size_t visits = rr.size() * 2 + 1;
  while (!rr.empty() && visits-- > 0) {
    Stream* s = rr.front();
    if (!CanDispatch(s, now_ns)) {
      rr.pop_front();
      s->in_rr = false;
      s->has_turn = false;
      s->deficit = 0;
      continue;
    }
    if (!s->has_turn) {
      s->has_turn = true;
      // A turn is at least one full batch of the processor, times the tenant's weight.
      s->deficit += static_cast<int64_t>(std::max(options.quantum, s->spec->batch_size)) *
                    s->tenant->config.quotas.processing_weight;
    }
    auto item = Dispatch(s, static_cast<uint32_t>(std::max<int64_t>(1, s->deficit)), now_ns);
    if (item) s->deficit -= static_cast<int64_t>(item->entries_.size());
    if (!item || s->deficit <= 0) {
      // Turn over: next stream.
      s->has_turn = false;
      if (s->deficit < 0) s->deficit = 0;
      rr.pop_front();
      rr.push_back(s);
    }
    if (item) return item;
  }
  return nullptr;
}

std::unique_ptr<ItemImpl> Engine::Impl::Dispatch(Stream* s, uint32_t cap, int64_t now_ns) {
  const auto& quotas = s->tenant->config.quotas;
  cap = std::min(cap, s->spec->batch_size);
  cap = std::min(cap, quotas.max_in_flight - s->in_flight_events);
  if (quotas.processing_rate > 0) {
    cap = std::min(cap, static_cast<uint32_t>(std::clamp(s->throttle.tokens(), 1.0, 1e9)));
  }
  bool probe = s->breaker.state == Breaker::State::kHalfOpen;
  if (probe) cap = 1;
  if (cap == 0) return nullptr;

  auto item = std::make_unique<ItemImpl>(this, s->self.lock());
  item->entries_.reserve(cap);
  item->leads_.reserve(cap);
  item->attempts_.reserve(cap);
  item->replay_.reserve(cap);
  item->bytes_.reserve(cap);
  auto take = [&](Lead* l, uint32_t n) {
    for (uint32_t i = 0; i < n && !l->empty(); ++i) {
      if (i > 0 && l->head->replay) break;  // replays run alone
      Pending* p = l->PopFront();
      item->entries_.push_back(std::move(p->entry));
      item->leads_.push_back(l);
      item->attempts_.push_back(p->attempts);
      item->replay_.push_back(p->replay ? 1 : 0);
      item->bytes_.push_back(p->bytes);
      pool.Put(p);
    }
    l->busy = true;
  };
  while (!s->ready.empty() && item->entries_.size() < cap) {
    Lead* l = s->ready.front();
    if (l->busy || l->empty() || l->not_before_ns > now_ns) {
      s->ready.pop_front();
      l->ready = false;
      continue;
    }
    if (l->solo > 0 || l->head->replay) {
      if (!item->entries_.empty()) break;
      s->ready.pop_front();
      l->ready = false;
      if (l->solo > 0) l->solo--;
      take(l, 1);
      item->solo_ = true;
      break;
    }
    s->ready.pop_front();
    l->ready = false;
    auto room = static_cast<uint32_t>(cap - item->entries_.size());
    take(l, room);
  }
  if (item->entries_.empty()) return nullptr;
  // A half-open probe is one activity alone: its failures count as attempts, so an activity
  // that always fails is dead-lettered rather than probed forever.
  if (probe) item->solo_ = true;
  if (item->solo_) item->attempt_ = item->attempts_[0] + 1;
  item->probe_ = probe;
  if (probe) s->breaker.probe_in_flight = true;
  auto n = static_cast<uint32_t>(item->entries_.size());
  s->in_flight_items++;
  s->in_flight_events += n;
  total_in_flight++;
  if (quotas.processing_rate > 0) s->throttle.Take(n);
  s->progress++;
  return item;
}

void Engine::Impl::InsertFetched(Stream* s, std::vector<log::LogEntry> entries,
                                 const std::vector<uint64_t>& keys, int64_t now_ns, bool replay) {
  for (size_t i = 0; i < entries.size(); ++i) {
    auto [it, inserted] = s->leads.try_emplace(keys[i]);
    if (inserted) {
      if (s->spare_leads.empty()) {
        it->second = std::make_unique<Lead>();
      } else {
        it->second = std::move(s->spare_leads.back());
        s->spare_leads.pop_back();
      }
      it->second->key = keys[i];
    }
    Lead* l = it->second.get();
    if (l->idle) {
      l->idle = false;
      s->idle_leads--;
    }
    Pending* p = pool.Get();
    p->bytes = EntryBytes(entries[i]);
    p->replay = replay;
    p->entry = std::move(entries[i]);
    s->buffered_bytes += p->bytes;
    global_buffered += p->bytes;
    l->PushBack(p);
    MakeReady(s, l, now_ns);
  }
}

void Engine::Impl::SweepIdleLeads(Stream* s) {
  for (auto it = s->leads.begin(); it != s->leads.end();) {
    Lead* l = it->second.get();
    if (l->idle && !l->busy && !l->ready && l->empty()) {
      l->idle = false;
      l->not_before_ns = 0;
      if (s->spare_leads.size() < kSpareLeads) s->spare_leads.push_back(std::move(it->second));
      it = s->leads.erase(it);
    } else {
      ++it;
    }
  }
  s->idle_leads = 0;
}

std::shared_ptr<Stream> Engine::Impl::FindStream(const TenantId& tenant,
                                                 std::string_view processor) {
  auto it = tenants.find(tenant.str());
  if (it == tenants.end() || it->second->removing) return nullptr;
  for (auto& s : it->second->streams) {
    if (s->spec->name == processor) return s;
  }
  return nullptr;
}

bool Engine::Impl::StreamIdle(Stream* s) {
  // Work in processing finishes even when the stream is parked.
  if (s->in_flight_items > 0 || s->fetching || s->loading) return false;
  if (!s->enabled || !s->tenant->active()) return true;
  if (s->breaker.state != Breaker::State::kClosed) return true;
  if (s->buffered_bytes > 0) return false;
  for (size_t p = 0; p < s->partitions.size(); ++p) {
    const auto& ps = s->partitions[p];
    if (s->committed_lwm[p] < ps.hwm || ps.next_fetch < ps.hwm) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Workers

void Engine::Impl::WorkerLoop() {
  std::unique_lock lock(mu);
  while (!stopping) {
    int64_t now = clock->MonotonicNanos();
    RunDueTimers(now);
    if (!outbox_rescans.empty()) {
      auto rescans = std::move(outbox_rescans);
      outbox_rescans.clear();
      lock.unlock();
      for (const auto& t : rescans) ScanOutbox(t);
      lock.lock();
      continue;
    }
    if (!fetch_queue.empty()) {
      auto s = std::move(fetch_queue.front());
      fetch_queue.pop_front();
      s->fetch_queued = false;
      if (s->fetching || !s->enabled || !s->tenant->active() ||
          s->breaker.state == Breaker::State::kOpen) {
        continue;
      }
      // Round robin over the partitions that have unread records.
      size_t n = s->partitions.size();
      for (size_t i = 0; i < n; ++i) {
        size_t p = (s->fetch_rr + i) % n;
        uint64_t limit = ReadLimit(s.get(), p);
        if (s->partitions[p].next_fetch < limit) {
          s->fetch_rr = p + 1;
          s->fetching = true;
          uint64_t from = s->partitions[p].next_fetch;
          lock.unlock();
          Fetch(std::move(s), static_cast<uint32_t>(p), from, limit);
          lock.lock();
          break;
        }
      }
      continue;
    }
    if (auto item = NextItem(now)) {
      Processor* processor = item->stream_->processor;
      lock.unlock();
      ItemImpl* raw = item.release();  // owned by the processor until Finish
      processor->Process(*raw);
      lock.lock();
      continue;
    }
    if (timers.empty()) {
      work_cv.wait(lock);
    } else {
      auto wait_ns = timers.begin()->first - clock->MonotonicNanos();
      if (wait_ns > 0) {
        // Wait in bounded steps so a test clock that jumps is noticed too.
        work_cv.wait_for(lock, std::chrono::nanoseconds(std::min<int64_t>(wait_ns, 50 * kNsPerMs)));
      }
    }
  }
}

void Engine::Impl::Fetch(std::shared_ptr<Stream> s, uint32_t partition, uint64_t from,
                         uint64_t hwm) {
  const TenantId& tenant = s->tenant_id;
  auto read = log->Read(tenant, PartitionId(partition), Offset(from),
                        static_cast<size_t>(std::min<uint64_t>(options.fetch_records, hwm - from)));
  std::vector<log::LogEntry> entries;
  uint64_t next = from;
  bool skipped_removed = false;
  if (read.ok()) {
    entries = std::move(read).value();
    // `hwm` is the read limit: an upstream processor may not have committed what follows.
    std::erase_if(entries, [&](const log::LogEntry& e) { return e.offset.value() >= hwm; });
    // Records removed by retention before they were processed: nothing is left to do for them.
    // Only offsets below the log's start count as removed; a short read is just short.
    uint64_t first = entries.empty() ? hwm : entries.front().offset.value();
    uint64_t removed_below = from;
    if (first > from) {
      auto start = log->LowWatermark(tenant, PartitionId(partition));
      if (start.ok()) removed_below = std::min(first, start->value());
    }
    std::lock_guard commit_lock(s->commit_mu);
    auto& committed = s->partitions[partition].committed;
    if (removed_below > from) {
      spdlog::info(
          "engine: {} {} partition {}: offsets {}-{} were removed by retention before "
          "they were processed",
          tenant.str(), s->spec->name, partition, from, removed_below - 1);
      committed.MarkDone(from, removed_below);
      s->PublishCommitted(partition);
      skipped_removed = true;
    }
    next = entries.empty() ? removed_below : entries.back().offset.value() + 1;
    if (committed.ranges() > 0 || committed.low_water_mark() > from) {
      // After a restart: skip work committed out of order before it.
      std::erase_if(entries,
                    [&](const log::LogEntry& e) { return committed.IsDone(e.offset.value()); });
    }
  }
  std::vector<uint64_t> keys;
  keys.reserve(entries.size());
  for (const auto& e : entries) keys.push_back(OrderingKey(s->spec->ordering, e));
  std::lock_guard lock(mu);
  s->fetching = false;
  auto& ps = s->partitions[partition];
  if (!read.ok() || (entries.empty() && next == from && from < hwm)) {
    s->fetch_error =
        read.ok() ? "the log returned nothing below its high watermark" : read.status().ToString();
    spdlog::warn("engine: reading {} partition {}: {}", tenant.str(), partition, s->fetch_error);
    std::weak_ptr<Stream> weak = s;
    AddTimer(clock->MonotonicNanos() + kNsPerSec, [this, weak] {
      if (auto st = weak.lock()) MaybeQueueFetch(st);
    });
    MaybeReleaseBuffers(s.get());
    done_cv.notify_all();
    return;
  }
  s->fetch_error.clear();
  if (skipped_removed) WakeDownstream(s.get());
  ps.next_fetch = std::max(ps.next_fetch, next);
  InsertFetched(s.get(), std::move(entries), keys, clock->MonotonicNanos());
  Activate(s.get());
  MaybeQueueFetch(s);
  MaybeReleaseBuffers(s.get());
  done_cv.notify_all();
}

}  // namespace fairway::engine

namespace fairway::engine {

// ---------------------------------------------------------------------------------------------
// Completion and commit

Status Engine::Impl::Commit(Stream* s, storage::WriteBatch* batch,
                            const std::vector<log::LogEntry>& entries,
                            const std::vector<uint8_t>& counts_as_done,
                            const std::string* replay_key) {
  // (partition, offset) of the entries whose offsets this commit completes, coalesced into runs.
  std::vector<std::pair<uint32_t, uint64_t>> positions;
  positions.reserve(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    if (counts_as_done[i]) {
      positions.emplace_back(entries[i].partition.value(), entries[i].offset.value());
    }
  }
  std::sort(positions.begin(), positions.end());
  std::lock_guard commit_lock(s->commit_mu);
  if (s->removed) return Aborted("tenant removed");
  if (replay_key != nullptr) {
    FAIRWAY_ASSIGN_OR_RETURN(auto row, store->Get(storage::kDeadLetters, *replay_key));
    if (!row) return Aborted("dead letter already replayed");
  }
  std::vector<std::pair<uint32_t, CommittedOffsets>> updated;
  for (size_t i = 0; i < positions.size();) {
    uint32_t p = positions[i].first;
    CommittedOffsets c = s->partitions[p].committed;
    while (i < positions.size() && positions[i].first == p) {
      uint64_t begin = positions[i].second, end = begin + 1;
      ++i;
      while (i < positions.size() && positions[i].first == p && positions[i].second == end) {
        ++end;
        ++i;
      }
      c.MarkDone(begin, end);
    }
    batch->Put(storage::kEngineOffsets, PartitionKey(s->key_prefix, p), c.Encode());
    updated.emplace_back(p, std::move(c));
  }
  if (batch->Count() == 0) return Status::Ok();
  FAIRWAY_RETURN_IF_ERROR(store->Write(*batch, /*sync=*/false));
  for (auto& [p, c] : updated) {
    s->partitions[p].committed = std::move(c);
    s->PublishCommitted(p);
  }
  return Status::Ok();
}

void Engine::Impl::Complete(ItemImpl* raw, std::optional<ProcessError> error) {
  std::unique_ptr<ItemImpl> item(raw);
  Stream* s = item->stream_.get();
  const ProcessorSpec& spec = *s->spec;
  const size_t n = item->entries_.size();
  const int64_t now_ms = clock->NowMillis();
  std::vector<uint8_t> done(n);
  for (size_t i = 0; i < n; ++i) done[i] = item->replay_[i] ? 0 : 1;
  // A replay runs alone (Dispatch): its dead letter must still exist when it commits.
  std::optional<std::string> replay_key;
  if (n == 1 && item->replay_[0]) {
    replay_key = PositionKey(s->key_prefix, item->entries_[0].partition.value(),
                             item->entries_[0].offset.value());
  }
  // Nothing to apply: the replay was applied already, or the tenant is gone.
  bool dropped = false;

  std::vector<std::string> outbox_keys;
  bool committed = false;
  if (!error) {
    storage::WriteBatch batch;
    item->txn_.AppendTo(&batch);
    for (size_t i = 0; i < n; ++i) {
      if (item->replay_[i]) {
        batch.Delete(storage::kDeadLetters,
                     PositionKey(s->key_prefix, item->entries_[i].partition.value(),
                                 item->entries_[i].offset.value()));
      }
    }
    std::string record;
    for (size_t i = 0; i < item->emitted_.size(); ++i) {
      model::Activity& a = item->emitted_[i];
      if (a.received_at_ms == 0) a.received_at_ms = now_ms;
      if (a.timestamp_ms == 0) a.timestamp_ms = now_ms;
      std::string key = PositionKey(s->key_prefix, item->entries_[0].partition.value(),
                                    item->entries_[0].offset.value());
      PutFixed32BE(&key, static_cast<uint32_t>(i));
      record.clear();
      model::EncodeActivity(a, &record);
      batch.Put(storage::kOutbox, key, record);
      outbox_keys.push_back(std::move(key));
    }
    Status st = Commit(s, &batch, item->entries_, done, replay_key ? &*replay_key : nullptr);
    if (st.ok()) {
      committed = true;
    } else if (st.code() == StatusCode::kAborted) {
      dropped = true;
      outbox_keys.clear();
    } else {
      error = ProcessError{ErrorClass::kRetryLater, "commit failed: " + st.message()};
      outbox_keys.clear();
    }
  }

  // Before the item counts as done, so that an idle engine has run every hook.
  if (committed) {
    for (auto& fn : item->after_commit_) fn();
  }

  bool dead_lettered = false;
  if (error && item->solo_) {
    uint32_t attempts = item->attempts_[0] + 1;
    if (error->error_class == ErrorClass::kPermanent || attempts >= spec.retry.max_attempts) {
      const log::LogEntry& e = item->entries_[0];
      storage::WriteBatch batch;
      batch.Put(storage::kDeadLetters,
                PositionKey(s->key_prefix, e.partition.value(), e.offset.value()),
                EncodeDeadLetter(error->error_class, attempts, now_ms, error->message, e.activity));
      Status st = Commit(s, &batch, item->entries_, done, replay_key ? &*replay_key : nullptr);
      if (st.ok()) {
        dead_lettered = true;
      } else if (st.code() == StatusCode::kAborted) {
        dropped = true;
        error.reset();
      } else {
        spdlog::error("engine: dead-lettering {} {}-{}: {}", s->tenant_id.str(),
                      e.partition.value(), e.offset.value(), st.ToString());
      }
    }
  }

  // Bookkeeping that needs no lock.
  const bool retry = error && !dead_lettered;
  size_t freed = 0;
  uint64_t processed = 0;
  if (!retry) {
    for (size_t i = 0; i < n; ++i) {
      freed += item->bytes_[i];
      if (dead_lettered || dropped) continue;
      ++processed;
      if (!item->replay_[i]) {
        s->latency->Observe(
            static_cast<double>(now_ms - item->entries_[i].activity.received_at_ms) / 1e3);
      }
    }
  }

  std::vector<model::Activity> emitted;
  model::TenantConfig tenant_config;
  {
    std::lock_guard lock(mu);
    const int64_t now_ns = clock->MonotonicNanos();
    s->in_flight_items--;
    s->in_flight_events -= static_cast<uint32_t>(n);
    s->progress++;
    // Breaker bookkeeping: every attempt counts.
    bool should_open = s->breaker.Record(error.has_value(), spec.breaker);
    if (error) {
      s->failures->Add();
      s->last_error = error->message;
    }
    if (item->probe_) {
      s->breaker.probe_in_flight = false;
      if (error) {
        s->breaker.reopens++;
        OpenBreaker(s, now_ns);
      } else {
        s->breaker.state = Breaker::State::kClosed;
        s->breaker.reopens = 0;
        s->breaker.Reset();
      }
    } else if (should_open && s->breaker.state == Breaker::State::kClosed) {
      OpenBreaker(s, now_ns);
    }

    if (!retry) {
      for (size_t i = 0; i < n; ++i) {
        if (item->replay_[i]) {
          s->replaying.erase(fmt::format("{}-{}", item->entries_[i].partition.value(),
                                         item->entries_[i].offset.value()));
        }
      }
      if (dead_lettered) s->dead_letters->Add();
      s->processed->Add(processed);
      s->rate.Add(now_ns, processed);
      s->buffered_bytes -= freed;
      global_buffered -= freed;
      Lead* prev = nullptr;
      for (Lead* l : item->leads_) {
        if (l == prev) continue;
        prev = l;
        l->busy = false;
        if (l->empty() && !l->ready && l->solo == 0) {
          l->idle = true;
          s->idle_leads++;
        } else {
          MakeReady(s, l, now_ns);
        }
      }
      if (s->idle_leads > kMaxIdleLeads) SweepIdleLeads(s);
    } else {
      // Put the activities back at the front of their leads, in order, and back off. After a
      // failed batch, each is retried alone so the failing one is found.
      for (size_t i = n; i-- > 0;) {
        Pending* p = pool.Get();
        p->entry = std::move(item->entries_[i]);
        p->attempts = item->attempts_[i] + (item->solo_ ? 1 : 0);
        p->replay = item->replay_[i] != 0;
        p->bytes = item->bytes_[i];
        item->leads_[i]->PushFront(p);
        item->leads_[i]->solo++;
      }
      int64_t delay_ms = spec.retry.retry_now_delay.count();
      if (item->solo_ && error->error_class != ErrorClass::kRetryNow) {
        uint32_t attempts = item->attempts_[0] + 1;
        delay_ms = spec.retry.initial_backoff.count();
        for (uint32_t a = 1; a < attempts && delay_ms < spec.retry.max_backoff.count(); ++a) {
          delay_ms *= 2;
        }
        delay_ms = std::min<int64_t>(delay_ms, spec.retry.max_backoff.count());
      }
      const int64_t at = now_ns + delay_ms * kNsPerMs;
      std::weak_ptr<Stream> weak = item->stream_;
      Lead* prev = nullptr;
      for (Lead* l : item->leads_) {
        if (l == prev) continue;
        prev = l;
        l->busy = false;
        l->not_before_ns = at;
        AddTimer(at, [this, weak, key = l->key] {
          auto st = weak.lock();
          if (!st) return;
          auto it = st->leads.find(key);
          if (it == st->leads.end()) return;
          MakeReady(st.get(), it->second.get(), clock->MonotonicNanos());
          Activate(st.get());
        });
      }
    }
    Activate(s);
    MaybeQueueFetch(item->stream_);
    MaybeReleaseBuffers(s);
    Unstarve();
    // A dead letter moves the low-water mark too.
    if (committed || dead_lettered) WakeDownstream(s);
    if (!outbox_keys.empty()) {
      outbox_in_flight++;  // counted before the item stops counting, so no idle gap
      emitted = std::move(item->emitted_);
      tenant_config = s->tenant->config;
    }
    done_cv.notify_all();
  }
  if (!outbox_keys.empty()) {
    ForwardOutbox(tenant_config, std::move(outbox_keys), std::move(emitted));
  }
  // Last: Stop() waits for this, so nothing here runs after the engine is gone.
  std::lock_guard lock(mu);
  total_in_flight--;
  done_cv.notify_all();
}

void Engine::Impl::OpenBreaker(Stream* s, int64_t now_ns) {
  const BreakerPolicy& p = s->spec->breaker;
  s->breaker.state = Breaker::State::kOpen;
  s->breaker.opened_at_ms = clock->NowMillis();
  int64_t open_ms = p.open_for.count();
  for (uint32_t i = 0; i < s->breaker.reopens && open_ms < p.max_open_for.count(); ++i) {
    open_ms *= 2;
  }
  open_ms = std::min<int64_t>(open_ms, p.max_open_for.count());
  s->breaker.probe_at_ns = now_ns + open_ms * kNsPerMs;
  uint64_t epoch = ++s->breaker_epoch;
  spdlog::warn("engine: circuit breaker open for tenant {} processor {} ({} ms): {}",
               s->tenant->config.id.str(), s->spec->name, open_ms, s->last_error);
  std::weak_ptr<Stream> weak = s->self.lock();
  AddTimer(s->breaker.probe_at_ns, [this, weak, epoch] {
    auto st = weak.lock();
    if (!st || st->breaker_epoch != epoch || st->breaker.state != Breaker::State::kOpen) return;
    st->breaker.state = Breaker::State::kHalfOpen;
    st->breaker.probe_in_flight = false;
    Activate(st.get());
    MaybeQueueFetch(st);
  });
}

void Engine::Impl::ForwardOutbox(const model::TenantConfig& tenant, std::vector<std::string> keys,
                                 std::vector<model::Activity> activities) {
  log::AppendRequest req = log::AppendRequestFor(tenant);
  // A re-send after a crash must be recognised whatever the tenant's own dedup window.
  req.dedup_window_ms = std::max(req.dedup_window_ms, log::kGeneratedDedupWindowMs);
  req.activities = std::move(activities);
  // The log may outlive the engine: the callback holds no pointer into it.
  log->Append(std::move(req), [weak = self, store = store, keys = std::move(keys),
                               tenant](Result<log::AppendResult> r) {
    if (auto impl = weak.lock()) {
      std::lock_guard lock(impl->mu);
      impl->outbox_in_flight--;
      impl->done_cv.notify_all();
    }
    if (!r.ok()) {
      // Stays in the outbox and is sent again (dedup makes a re-send harmless).
      spdlog::warn("engine: appending generated activities of {}: {}", tenant.id.str(),
                   r.status().ToString());
      if (auto impl = weak.lock()) {
        std::lock_guard lock(impl->mu);
        impl->AddTimer(impl->clock->MonotonicNanos() + kNsPerSec, [impl = impl.get(), tenant] {
          if (impl->tenants.contains(tenant.id.str())) impl->outbox_rescans.push_back(tenant);
        });
      }
      return;
    }
    storage::WriteBatch batch;
    for (const auto& k : keys) batch.Delete(storage::kOutbox, k);
    Status st = store->Write(batch, false);
    if (!st.ok()) spdlog::warn("engine: clearing outbox of {}: {}", tenant.id.str(), st.ToString());
  });
}

void Engine::Impl::ScanOutbox(const model::TenantConfig& tenant) {
  std::string prefix = tenant.id.str();
  prefix.push_back('\0');
  auto it = store->NewIterator(storage::kOutbox, prefix, PrefixEnd(prefix));
  std::vector<std::string> keys;
  std::vector<model::Activity> activities;
  for (it->Seek(prefix); it->Valid(); it->Next()) {
    auto a = model::DecodeActivity(it->value());
    if (!a.ok()) {
      spdlog::error("engine: corrupt outbox record of {}: {}", tenant.id.str(),
                    a.status().ToString());
      continue;
    }
    keys.emplace_back(it->key());
    activities.push_back(std::move(a).value());
    if (activities.size() >= 1'000) {
      {
        std::lock_guard lock(mu);
        outbox_in_flight++;
      }
      ForwardOutbox(tenant, std::move(keys), std::move(activities));
      keys.clear();
      activities.clear();
    }
  }
  if (!activities.empty()) {
    {
      std::lock_guard lock(mu);
      outbox_in_flight++;
    }
    ForwardOutbox(tenant, std::move(keys), std::move(activities));
  }
}

void Engine::Impl::MaybeReleaseBuffers(Stream* s) {
  // Not for an open breaker: its leads' retry state (attempts, solo, back-off) must survive the
  // open period, and it holds at most its own read-ahead budget. Not while replays are queued
  // (the API said they were).
  const bool parked = !s->enabled || !s->tenant->active();
  if (!parked || s->in_flight_items > 0 || s->fetching || s->buffered_bytes == 0 ||
      !s->replaying.empty()) {
    return;
  }
  for (auto& [key, lead] : s->leads) {
    while (!lead->empty()) {
      Pending* p = lead->PopFront();
      p->entry = log::LogEntry{};
      pool.Put(p);
    }
  }
  s->leads.clear();
  s->ready.clear();
  s->idle_leads = 0;
  global_buffered -= s->buffered_bytes;
  s->buffered_bytes = 0;
  // Nothing commits now (nothing is in processing): the published mark is current.
  for (size_t p = 0; p < s->partitions.size(); ++p) {
    s->partitions[p].next_fetch = s->committed_lwm[p];
  }
  Unstarve();
  done_cv.notify_all();
}

void Engine::Impl::Unstarve() {
  if (!global_starved || global_buffered >= options.global_buffer_bytes) return;
  global_starved = false;
  for (auto& [id, t] : tenants) {
    for (auto& st : t->streams) MaybeQueueFetch(st);
  }
}

void Engine::Impl::OnAppend(const std::vector<log::PartitionAdvance>& advances) {
  std::lock_guard lock(mu);
  for (const auto& a : advances) {
    auto it = tenants.find(a.tenant.str());
    if (it == tenants.end()) continue;
    for (auto& s : it->second->streams) {
      if (a.partition.value() >= s->partitions.size()) continue;
      auto& p = s->partitions[a.partition.value()];
      p.hwm = std::max(p.hwm, a.next.value());
      MaybeQueueFetch(s);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Watchdog

void Engine::Impl::WatchdogLoop() {
  const auto period = std::clamp<std::chrono::milliseconds>(
      options.stall_timeout / 4, std::chrono::milliseconds(10), std::chrono::milliseconds(250));
  std::unique_lock lock(mu);
  while (!stopping) {
    watchdog_cv.wait_for(lock, period);
    if (stopping) break;
    WatchdogPass(clock->MonotonicNanos());
  }
}

bool Engine::Impl::ExpectsProgress(Stream* s, int64_t now_ns) {
  if (s->in_flight_items > 0) return true;
  const Tenant* t = s->tenant.get();
  if (!s->enabled || !t->active() || s->breaker.state == Breaker::State::kOpen) return false;
  // With nothing in processing no lead is busy; a ready lead may still be backing off.
  size_t checked = 0;
  bool ready = false;
  for (const Lead* l : s->ready) {
    if (!l->empty() && l->not_before_ns <= now_ns) {
      ready = true;
      break;
    }
    if (++checked == 64) break;
  }
  if (!ready) return false;
  double rate = t->config.quotas.processing_rate;
  return rate <= 0 || s->throttle.Available(rate, now_ns) >= 1;
}

void Engine::Impl::WatchdogPass(int64_t now_ns) {
  const int64_t stall_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(options.stall_timeout).count();
  for (auto& [id, t] : tenants) {
    if (t->removing) continue;
    for (auto& sp : t->streams) {
      Stream* s = sp.get();
      if (s->progress != s->watchdog_progress || !ExpectsProgress(s, now_ns) ||
          s->breaker.state == Breaker::State::kOpen) {
        s->watchdog_progress = s->progress;
        s->watchdog_since_ns = now_ns;
        continue;
      }
      if (now_ns - s->watchdog_since_ns < stall_ns) continue;
      s->last_error = fmt::format(
          "watchdog: no work item dispatched or completed for {} s with {} activities in "
          "processing and {} leads ready",
          (now_ns - s->watchdog_since_ns) / kNsPerSec, s->in_flight_events, s->ready.size());
      spdlog::error("engine: tenant {} processor {}: {}", t->config.id.str(), s->spec->name,
                    s->last_error);
      watchdog_trips->Add();
      s->watchdog_since_ns = now_ns;
      OpenBreaker(s, now_ns);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Status

StreamStatus Engine::Impl::Snapshot(Stream* s, int64_t now_ns) {
  StreamStatus st;
  st.processor = s->spec->name;
  st.ordering = std::string(OrderingName(s->spec->ordering));
  st.enabled = s->enabled;
  st.processed_total = s->processed->value();
  st.failures_total = s->failures->value();
  st.dead_letters_total = s->dead_letters->value();
  st.events_per_second = s->rate.Rate(now_ns);
  st.in_flight = s->in_flight_events;
  st.buffered_bytes = s->buffered_bytes;
  st.latency_p50_s = s->latency->Quantile(0.5);
  st.latency_p99_s = s->latency->Quantile(0.99);
  st.last_error = s->last_error;
  for (size_t p = 0; p < s->partitions.size(); ++p) {
    PartitionProgress pp;
    pp.partition = static_cast<uint32_t>(p);
    pp.committed = s->committed_lwm[p];
    pp.completed_above = s->committed_above[p];
    pp.high_watermark = std::max(s->partitions[p].hwm, pp.committed);
    st.lag_events += pp.high_watermark - pp.committed -
                     std::min(pp.completed_above, pp.high_watermark - pp.committed);
    st.partitions.push_back(pp);
  }
  if (!s->enabled) {
    st.state = "disabled";
  } else if (!s->tenant->active()) {
    st.state = "tenant_suspended";
  } else if (s->breaker.state == Breaker::State::kOpen) {
    st.state = "breaker_open";
  } else if (s->breaker.state == Breaker::State::kHalfOpen) {
    st.state = "half_open";
  } else {
    st.state = st.lag_events == 0 && s->in_flight_items == 0 ? "idle" : "running";
  }
  if (s->breaker.state != Breaker::State::kClosed) {
    st.breaker_opened_at_ms = s->breaker.opened_at_ms;
    st.breaker_probe_at_ms =
        clock->NowMillis() + std::max<int64_t>(0, (s->breaker.probe_at_ns - now_ns) / kNsPerMs);
  }
  return st;
}

void Engine::Impl::FillLagSeconds(const TenantId& tenant, StreamStatus* status) {
  int64_t oldest = INT64_MAX;
  for (const auto& p : status->partitions) {
    if (p.committed >= p.high_watermark) continue;
    auto r = log->Read(tenant, PartitionId(p.partition), Offset(p.committed), 1);
    if (r.ok() && !r->empty()) oldest = std::min(oldest, r->front().activity.received_at_ms);
  }
  if (oldest != INT64_MAX) {
    status->lag_seconds =
        std::max<double>(0, static_cast<double>(clock->NowMillis() - oldest) / 1e3);
  }
}

std::vector<std::pair<TenantId, StreamStatus>> Engine::Impl::MetricsSnapshot() {
  std::lock_guard lock(metrics_snapshot_mu);
  const int64_t now = clock->MonotonicNanos();
  if (!metrics_snapshot_at_ns || now - *metrics_snapshot_at_ns >= 100 * kNsPerMs ||
      now < *metrics_snapshot_at_ns) {
    metrics_snapshot = SnapshotAll();
    metrics_snapshot_at_ns = now;
  }
  return metrics_snapshot;
}

std::vector<std::pair<TenantId, StreamStatus>> Engine::Impl::SnapshotAll() {
  std::vector<std::pair<TenantId, StreamStatus>> out;
  {
    std::lock_guard lock(mu);
    int64_t now_ns = clock->MonotonicNanos();
    for (auto& [id, t] : tenants) {
      if (t->removing) continue;
      for (auto& s : t->streams) out.emplace_back(t->config.id, Snapshot(s.get(), now_ns));
    }
  }
  for (auto& [id, st] : out) FillLagSeconds(id, &st);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Setup

Status Engine::Impl::LoadStream(Tenant* t, Stream* s) {
  s->partitions.resize(t->config.partitions);
  s->committed_lwm = std::make_unique<std::atomic<uint64_t>[]>(t->config.partitions);
  s->committed_above = std::make_unique<std::atomic<uint64_t>[]>(t->config.partitions);
  for (uint32_t p = 0; p < t->config.partitions; ++p) {
    FAIRWAY_ASSIGN_OR_RETURN(auto v,
                             store->Get(storage::kEngineOffsets, PartitionKey(s->key_prefix, p)));
    if (v) {
      auto c = CommittedOffsets::Decode(*v);
      if (!c.ok()) {
        return Internal(fmt::format("offsets of {} {} partition {}: {}", t->config.id.str(),
                                    s->spec->name, p, c.status().message()));
      }
      s->partitions[p].committed = std::move(c).value();
    }
    s->partitions[p].next_fetch = s->partitions[p].committed.low_water_mark();
    s->PublishCommitted(p);
  }
  std::string meta_key = s->key_prefix.substr(0, s->key_prefix.size() - 1);
  FAIRWAY_ASSIGN_OR_RETURN(auto meta, store->Get(storage::kEngineMeta, meta_key));
  s->enabled = meta ? *meta == "1" : s->spec->enabled_by_default;
  Labels labels = {{"tenant", t->config.id.str()}, {"processor", s->spec->name}};
  s->processed = metrics->GetCounter("fairway_engine_processed_total",
                                     "Activities processed, by tenant and processor.", labels);
  s->failures = metrics->GetCounter("fairway_engine_failures_total",
                                    "Failed processing attempts, by tenant and processor.", labels);
  s->dead_letters = metrics->GetCounter(
      "fairway_engine_dead_letters_total",
      "Activities moved to the dead-letter store, by tenant and processor.", labels);
  s->latency =
      metrics->GetHistogram("fairway_engine_latency_seconds",
                            "Time from ingest (receivedAt) to processed, by tenant and processor.",
                            LatencyBuckets(), labels);
  return Status::Ok();
}

void Engine::Impl::RegisterMetrics() {
  watchdog_trips = metrics->GetCounter(
      "fairway_engine_watchdog_trips_total",
      "Circuit breakers opened by the watchdog: a processor that made no progress while it had "
      "runnable work or work in processing.");
  // The registry may outlive the engine: the gauges hold no pointer into it.
  auto per_stream = [this](double (*pick)(const StreamStatus&)) {
    return [weak = self, pick] {
      std::vector<std::pair<Labels, double>> out;
      auto impl = weak.lock();
      if (!impl) return out;
      for (auto& [id, st] : impl->MetricsSnapshot()) {
        out.push_back({{{"tenant", id.str()}, {"processor", st.processor}}, pick(st)});
      }
      return out;
    };
  };
  metrics->SetGaugeFunction(
      "fairway_engine_lag_events", "Activities in the log not yet processed.",
      per_stream([](const StreamStatus& s) { return static_cast<double>(s.lag_events); }));
  metrics->SetGaugeFunction("fairway_engine_lag_seconds",
                            "Age of the oldest activity not yet processed.",
                            per_stream([](const StreamStatus& s) { return s.lag_seconds; }));
  metrics->SetGaugeFunction(
      "fairway_engine_suspended",
      "1 while a tenant's processor is not running: breaker open or half-open, disabled, or "
      "tenant suspended.",
      per_stream([](const StreamStatus& s) {
        return s.state == "running" || s.state == "idle" ? 0.0 : 1.0;
      }));
  metrics->SetGaugeFunction(
      "fairway_engine_in_flight", "Activities in processing.",
      per_stream([](const StreamStatus& s) { return static_cast<double>(s.in_flight); }));
  metrics->SetGaugeFunction("fairway_engine_buffered_bytes",
                            "Memory held by activities read ahead of processing.", [weak = self] {
                              std::vector<std::pair<Labels, double>> out;
                              if (auto impl = weak.lock()) {
                                std::lock_guard lock(impl->mu);
                                out.push_back({{}, static_cast<double>(impl->global_buffered)});
                              }
                              return out;
                            });
}

// ---------------------------------------------------------------------------------------------
// Engine

Engine::Engine(storage::Store* store, log::ActivityLog* log, const Clock* clock,
               MetricsRegistry* metrics, EngineOptions options)
    : impl_(std::make_shared<Impl>(store, log, clock, metrics, options)) {
  impl_->self = impl_;
}

Engine::~Engine() { Stop(); }

void Engine::AddProcessor(std::unique_ptr<Processor> processor) {
  const std::string& after = processor->spec().after;
  if (!after.empty() &&
      std::none_of(impl_->processors.begin(), impl_->processors.end(),
                   [&](const auto& p) { return p->processor->spec().name == after; })) {
    spdlog::critical("engine: processor '{}' runs after '{}', which is not registered before it",
                     processor->spec().name, after);
    std::abort();
  }
  auto slot = std::make_unique<ProcessorSlot>();
  slot->processor = std::move(processor);
  slot->index = impl_->processors.size();
  impl_->processors.push_back(std::move(slot));
}

void Engine::Start() {
  std::weak_ptr<Impl> weak = impl_;
  impl_->log->SetAppendListener([weak](const std::vector<log::PartitionAdvance>& advances) {
    if (auto impl = weak.lock()) impl->OnAppend(advances);
  });
  impl_->RegisterMetrics();
  std::lock_guard lock(impl_->mu);
  impl_->started = true;
  impl_->stopping = false;
  for (size_t i = 0; i < std::max<size_t>(1, impl_->options.threads); ++i) {
    impl_->workers.emplace_back([impl = impl_.get()] { impl->WorkerLoop(); });
  }
  if (impl_->options.stall_timeout.count() > 0) {
    impl_->watchdog = std::thread([impl = impl_.get()] { impl->WatchdogLoop(); });
  }
}

void Engine::Stop() {
  {
    std::lock_guard lock(impl_->mu);
    if (!impl_->started) return;
    impl_->started = false;
    impl_->stopping = true;
    impl_->work_cv.notify_all();
    impl_->watchdog_cv.notify_all();
  }
  for (auto& w : impl_->workers) w.join();
  impl_->workers.clear();
  if (impl_->watchdog.joinable()) impl_->watchdog.join();
  // Work handed to processors finishes (asynchronous processors complete on their own threads).
  std::unique_lock lock(impl_->mu);
  impl_->done_cv.wait(lock, [&] { return impl_->total_in_flight == 0; });
}

Status Engine::UpsertTenant(const model::TenantConfig& config) {
  if (config.status == model::TenantStatus::kDeleting) return RemoveTenant(config.id);
  Impl& im = *impl_;
  {
    std::lock_guard lock(im.mu);
    auto it = im.tenants.find(config.id.str());
    if (it != im.tenants.end()) {
      if (it->second->removing) return FailedPrecondition("tenant is being removed");
      const bool new_rate =
          it->second->config.quotas.processing_rate != config.quotas.processing_rate;
      it->second->config = config;
      for (auto& s : it->second->streams) {
        if (new_rate) s->throttle = ProcessingThrottle();  // a new rate starts with a full burst
        s->throttle_timer = false;                         // and re-arms the throttle
        im.Activate(s.get());
        im.MaybeQueueFetch(s);
        im.MaybeReleaseBuffers(s.get());
      }
      im.work_cv.notify_all();
      im.done_cv.notify_all();
      return Status::Ok();
    }
  }
  auto t = std::make_shared<Tenant>();
  t->config = config;
  for (auto& slot : im.processors) {
    auto s = std::make_shared<Stream>();
    s->self = s;
    s->tenant = t;
    s->tenant_id = config.id;
    s->slot = slot.get();
    s->processor = slot->processor.get();
    s->spec = &slot->processor->spec();
    s->key_prefix = StateKeyPrefix(config.id, s->spec->name);
    FAIRWAY_RETURN_IF_ERROR(im.LoadStream(t.get(), s.get()));
    t->streams.push_back(std::move(s));
  }
  for (auto& s : t->streams) {
    if (s->spec->after.empty()) continue;
    for (auto& up : t->streams) {
      if (up->spec->name == s->spec->after) {
        s->upstream = up;
        up->downstream.push_back(s);
      }
    }
  }
  // Generated activities a crash left in the outbox go to the log before any new work runs.
  im.ScanOutbox(config);
  {
    std::lock_guard lock(im.mu);
    if (!im.tenants.emplace(config.id.str(), t).second) {
      t->streams.clear();
      return Status::Ok();  // added concurrently
    }
  }
  // High watermarks are read after the tenant is visible to the append listener, so no
  // append is missed; until then its streams do not count as idle.
  std::vector<uint64_t> hwms(config.partitions);
  Status read_status;
  for (uint32_t p = 0; p < config.partitions && read_status.ok(); ++p) {
    auto h = im.log->HighWatermark(config.id, PartitionId(p));
    if (h.ok()) {
      hwms[p] = h->value();
    } else {
      read_status = h.status();
    }
  }
  std::lock_guard lock(im.mu);
  for (auto& s : t->streams) {
    for (uint32_t p = 0; p < config.partitions; ++p) {
      s->partitions[p].hwm = std::max(s->partitions[p].hwm, hwms[p]);
    }
    s->loading = !read_status.ok();
    im.MaybeQueueFetch(s);
  }
  im.done_cv.notify_all();
  return read_status;
}

Status Engine::RemoveTenant(const TenantId& tenant) {
  Impl& im = *impl_;
  std::shared_ptr<Tenant> t;
  {
    std::unique_lock lock(im.mu);
    auto it = im.tenants.find(tenant.str());
    if (it == im.tenants.end()) return Status::Ok();
    t = it->second;
    if (t->removing) return FailedPrecondition("tenant is already being removed");
    t->removing = true;
    im.done_cv.wait(lock, [&] {
      for (auto& s : t->streams) {
        if (s->in_flight_items > 0 || s->fetching) return false;
      }
      return true;
    });
    for (auto& s : t->streams) {
      s->removed = true;
      std::erase(im.rr, s.get());
      s->in_rr = false;
      std::erase(im.fetch_queue, s);
      s->fetch_queued = false;
      im.global_buffered -= s->buffered_bytes;
      s->buffered_bytes = 0;
    }
    im.tenants.erase(tenant.str());
    im.Unstarve();
    im.done_cv.notify_all();
  }
  std::string begin = tenant.str();
  begin.push_back('\0');
  std::string end = PrefixEnd(begin);
  storage::WriteBatch batch;
  for (auto cf : {storage::kEngineState, storage::kEngineOffsets, storage::kDeadLetters,
                  storage::kOutbox, storage::kEngineMeta}) {
    batch.DeleteRange(cf, begin, end);
  }
  Status st;
  {
    // No commit of a stream of this tenant can land after the delete.
    std::vector<std::unique_lock<std::mutex>> commit_locks;
    for (auto& s : t->streams) commit_locks.emplace_back(s->commit_mu);
    st = im.store->Write(batch, /*sync=*/true);
  }
  {
    std::lock_guard lock(im.mu);
    t->streams.clear();  // breaks the tenant <-> stream cycle
  }
  FAIRWAY_RETURN_IF_ERROR(st);
  im.metrics->RemoveSeriesWithLabel("tenant", tenant.str());
  return Status::Ok();
}

Status Engine::SetEnabled(const TenantId& tenant, std::string_view processor, bool enabled) {
  Impl& im = *impl_;
  std::shared_ptr<Stream> s;
  {
    std::lock_guard lock(im.mu);
    s = im.FindStream(tenant, processor);
  }
  if (!s) {
    return NotFound(
        fmt::format("processor '{}' of tenant '{}' not found", processor, tenant.str()));
  }
  {
    // Under the stream's commit lock, so a concurrent removal cannot leave the row behind.
    std::lock_guard commit_lock(s->commit_mu);
    if (s->removed) return NotFound(fmt::format("tenant '{}' not found", tenant.str()));
    storage::WriteBatch batch;
    batch.Put(storage::kEngineMeta, s->key_prefix.substr(0, s->key_prefix.size() - 1),
              enabled ? "1" : "0");
    FAIRWAY_RETURN_IF_ERROR(im.store->Write(batch, /*sync=*/true));
  }
  std::lock_guard lock(im.mu);
  s->enabled = enabled;
  im.Activate(s.get());
  im.MaybeQueueFetch(s);
  im.MaybeReleaseBuffers(s.get());
  im.WakeDownstream(s.get());  // they no longer wait for a disabled processor
  im.done_cv.notify_all();
  return Status::Ok();
}

Status Engine::ResumeProcessor(const TenantId& tenant, std::string_view processor) {
  Impl& im = *impl_;
  std::lock_guard lock(im.mu);
  auto s = im.FindStream(tenant, processor);
  if (!s)
    return NotFound(
        fmt::format("processor '{}' of tenant '{}' not found", processor, tenant.str()));
  s->breaker.state = Breaker::State::kClosed;
  s->breaker.reopens = 0;
  s->breaker.Reset();
  s->breaker_epoch++;
  im.Activate(s.get());
  im.MaybeQueueFetch(s);
  im.done_cv.notify_all();
  return Status::Ok();
}

Result<std::vector<StreamStatus>> Engine::GetStatus(const TenantId& tenant) {
  Impl& im = *impl_;
  std::vector<StreamStatus> out;
  {
    std::lock_guard lock(im.mu);
    auto it = im.tenants.find(tenant.str());
    if (it == im.tenants.end() || it->second->removing) {
      return NotFound(fmt::format("tenant '{}' not found", tenant.str()));
    }
    int64_t now_ns = im.clock->MonotonicNanos();
    for (auto& s : it->second->streams) out.push_back(im.Snapshot(s.get(), now_ns));
  }
  for (auto& st : out) im.FillLagSeconds(tenant, &st);
  return out;
}

Result<DeadLetterPage> Engine::ListDeadLetters(const TenantId& tenant, std::string_view processor,
                                               std::string_view cursor, size_t limit) {
  Impl& im = *impl_;
  if (limit == 0) return InvalidArgument("parameter 'limit' must be at least 1");
  std::string prefix;
  {
    std::lock_guard lock(im.mu);
    auto s = im.FindStream(tenant, processor);
    if (!s)
      return NotFound(
          fmt::format("processor '{}' of tenant '{}' not found", processor, tenant.str()));
    prefix = s->key_prefix;
  }
  std::string lower = prefix;
  if (!cursor.empty()) {
    uint32_t p = 0;
    uint64_t o = 0;
    if (!ParsePosition(cursor, &p, &o)) return InvalidArgument("parameter 'cursor' is not valid");
    lower = PositionKey(prefix, p, o);
    lower.push_back('\0');  // strictly after the cursor
  }
  DeadLetterPage page;
  auto it = im.store->NewIterator(storage::kDeadLetters, lower, PrefixEnd(prefix));
  for (it->Seek(lower); it->Valid(); it->Next()) {
    if (page.items.size() == limit) {
      page.next_cursor = page.items.back().id;
      break;
    }
    FAIRWAY_ASSIGN_OR_RETURN(DeadLetter d, DecodeDeadLetter(it->key(), prefix.size(), it->value()));
    page.items.push_back(std::move(d));
  }
  FAIRWAY_RETURN_IF_ERROR(it->status());
  return page;
}

Result<size_t> Engine::ReplayDeadLetters(const TenantId& tenant, std::string_view processor,
                                         const std::vector<std::string>& ids, size_t limit) {
  Impl& im = *impl_;
  std::shared_ptr<Stream> s;
  {
    std::lock_guard lock(im.mu);
    s = im.FindStream(tenant, processor);
  }
  if (!s)
    return NotFound(
        fmt::format("processor '{}' of tenant '{}' not found", processor, tenant.str()));
  std::vector<DeadLetter> letters;
  if (ids.empty()) {
    FAIRWAY_ASSIGN_OR_RETURN(DeadLetterPage page, ListDeadLetters(tenant, processor, "", limit));
    letters = std::move(page.items);
  } else {
    for (const auto& id : ids) {
      uint32_t p = 0;
      uint64_t o = 0;
      if (!ParsePosition(id, &p, &o)) {
        return InvalidArgument(fmt::format("field 'ids' has an invalid id '{}'", id));
      }
      std::string key = PositionKey(s->key_prefix, p, o);
      FAIRWAY_ASSIGN_OR_RETURN(auto v, im.store->Get(storage::kDeadLetters, key));
      if (!v) return NotFound(fmt::format("dead letter '{}' not found", id));
      FAIRWAY_ASSIGN_OR_RETURN(DeadLetter d, DecodeDeadLetter(key, s->key_prefix.size(), *v));
      letters.push_back(std::move(d));
      if (letters.size() == limit) break;
    }
  }
  std::lock_guard lock(im.mu);
  if (s->tenant->removing) return NotFound(fmt::format("tenant '{}' not found", tenant.str()));
  std::vector<log::LogEntry> entries;
  for (auto& d : letters) {
    if (!s->replaying.emplace(d.id, true).second) continue;  // already queued
    entries.push_back({PartitionId(d.partition), Offset(d.offset), std::move(d.activity)});
  }
  size_t queued = entries.size();
  std::vector<uint64_t> keys;
  for (const auto& e : entries) keys.push_back(OrderingKey(s->spec->ordering, e));
  im.InsertFetched(s.get(), std::move(entries), keys, im.clock->MonotonicNanos(),
                   /*replay=*/true);
  im.Activate(s.get());
  im.work_cv.notify_all();
  return queued;
}

bool Engine::WaitIdle(std::chrono::milliseconds timeout) {
  Impl& im = *impl_;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock lock(im.mu);
  while (true) {
    bool idle = im.fetch_queue.empty() && im.outbox_in_flight == 0;
    for (auto& [id, t] : im.tenants) {
      for (auto& s : t->streams) idle = idle && im.StreamIdle(s.get());
    }
    if (idle) return true;
    if (im.done_cv.wait_until(lock, deadline) == std::cv_status::timeout) return false;
  }
}

}  // namespace fairway::engine
