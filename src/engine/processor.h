#pragma once
// Processor: a named consumer of the activity log, run by the Engine (engine.h) for every tenant
// that has it enabled. A processor declares how its work must be ordered and how failures are
// retried; the engine does the reading, scheduling, retrying, dead-lettering and committing.
//
// Exactly once: a processor never writes to storage itself. Its state changes (StateTxn) and the
// activities it generates (WorkItem::Emit) are committed by the engine in one atomic write
// together with the log offsets they consume, so after a crash the work is either wholly done
// or wholly redone, never applied twice.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/ids.h"
#include "common/status.h"
#include "log/activity_log.h"
#include "storage/store.h"

namespace fairway::engine {

// What must not run concurrently and must run in log order.
enum class Ordering : uint8_t {
  // Activities of one lead (userId, else anonymousId) run in log order, one at a time; different
  // leads run in parallel. The default.
  kPerLead = 0,
  // A tenant's activities run one work item at a time, in log order per partition.
  kPerTenant = 1,
  // No order: any activity may run alongside any other.
  kNone = 2,
};
std::string_view OrderingName(Ordering o);

// How a failed attempt is retried: the engine's reading of the Status a processor finishes with
// (RetryClassOf), never chosen separately.
enum class ErrorClass : uint8_t {
  // A transient glitch: retry the call at once (a short, fixed pause).
  kRetryNow = 0,
  // The dependency is unwell: retry after an exponential back-off.
  kRetryLater = 1,
  // The activity can never succeed: dead-letter it without retrying.
  kPermanent = 2,
};
std::string_view ErrorClassName(ErrorClass c);

// The retry class of a failed attempt, from its status code:
//   kAborted (a conflict, a timeout that may succeed at once)  -> kRetryNow
//   kUnavailable, kResourceExhausted (a dependency unwell)     -> kRetryLater
//   every other code (bad input, a missing resource, a bug)    -> kPermanent
// An OK status is not a failure; it maps to kPermanent only for completeness.
ErrorClass RetryClassOf(StatusCode code);

struct RetryPolicy {
  // Attempts of one activity (processed alone) before it is dead-lettered.
  uint32_t max_attempts = 5;
  // Pause before a kRetryNow retry.
  std::chrono::milliseconds retry_now_delay{1};
  // First kRetryLater back-off; doubles per attempt up to max_backoff.
  std::chrono::milliseconds initial_backoff{100};
  std::chrono::milliseconds max_backoff{30'000};
};

struct BreakerPolicy {
  // The breaker looks at the outcomes of the last `window` attempts of a tenant's processor.
  uint32_t window = 50;
  // It opens when at least `min_failures` of them failed and the failure rate is at least
  // `failure_rate`.
  uint32_t min_failures = 20;
  double failure_rate = 0.5;
  // Open time before the first half-open probe; doubles after every failed probe.
  std::chrono::milliseconds open_for{30'000};
  std::chrono::milliseconds max_open_for{30 * 60'000};
};

struct ProcessorSpec {
  // Lower case, [a-z0-9_]; names the processor in the API, metrics and storage keys.
  std::string name;
  Ordering ordering = Ordering::kPerLead;
  // Most work items of one tenant in processing at once (also capped by the tenant's
  // max_in_flight quota, counted in activities).
  uint32_t concurrency = 64;
  // Most activities handed over in one work item (always of one tenant). 1 = one at a time.
  uint32_t batch_size = 256;
  // Whether a tenant that never said otherwise runs this processor.
  bool enabled_by_default = true;
  // The processor whose effects this one must see: when set, a tenant's activity reaches this
  // processor only after `after` has committed it (per partition, below its low-water mark),
  // so state written by `after` for an activity is visible here. While `after` is disabled for
  // the tenant, this processor does not wait for it. Empty: no dependency.
  std::string after;
  RetryPolicy retry;
  BreakerPolicy breaker;
};

// A processor's view of its state for one tenant: a key-value space private to the (tenant,
// processor) pair. Reads see committed state plus this transaction's own writes; writes are
// buffered and committed by the engine with the offsets of the work item. Not thread-safe.
class StateTxn {
 public:
  // `store` must use storage::FairwayColumnFamilies(). `key_prefix` scopes the keys.
  StateTxn(storage::Store* store, std::string key_prefix);

  Result<std::optional<std::string>> Get(std::string_view key);
  // Reads `keys` from committed state in one batched lookup, so that their later Gets are
  // answered from memory. Worth it when a work item touches many keys.
  Status Prefetch(const std::vector<std::string>& keys);
  void Put(std::string_view key, std::string value);
  void Delete(std::string_view key);
  // Writes to another column family, committed in the same atomic write as the state. Not
  // visible to Get. For rows that other services own (timers, deliveries, counters).
  void PutIn(storage::ColumnFamily cf, std::string key, std::string value);
  void DeleteIn(storage::ColumnFamily cf, std::string key);
  // Adds to a counter (storage::EncodeCounter) in a column family with counters.
  void MergeIn(storage::ColumnFamily cf, std::string key, int64_t delta);
  // Visits committed state (not this transaction's writes) with keys starting with `prefix`, in
  // key order, until `fn` returns false.
  Status Scan(std::string_view prefix,
              const std::function<bool(std::string_view key, std::string_view value)>& fn);

  // Adds the buffered writes to `batch` (done by the engine at commit).
  void AppendTo(storage::WriteBatch* batch) const;
  void Clear() {
    writes_.clear();
    raw_writes_.clear();
  }
  const std::string& key_prefix() const { return prefix_; }

 private:
  storage::Store* store_;
  std::string prefix_;
  // key (without prefix) -> value, or nullopt for a delete.
  std::unordered_map<std::string, std::optional<std::string>> writes_;
  // Prefetched committed values (nullopt: absent).
  std::unordered_map<std::string, std::optional<std::string>> reads_;
  struct RawWrite {
    enum class Op : uint8_t { kPut, kDelete, kMerge } op;
    storage::ColumnFamily cf;
    std::string key;
    std::string value;
  };
  std::vector<RawWrite> raw_writes_;
};

// The key prefix of a (tenant, processor) state space in the engine_state column family.
std::string StateKeyPrefix(const TenantId& tenant, std::string_view processor);

class WorkItem;

// The activities of a work item, in order: a range of const log::LogEntry& over entries the
// engine shares between the processors of a tenant (each stretch of the log is read and
// decoded once). Valid as long as the work item.
class EntryView {
 public:
  class Iterator {
   public:
    using value_type = log::LogEntry;
    using difference_type = std::ptrdiff_t;
    Iterator() = default;
    explicit Iterator(const log::LogEntry* const* p) : p_(p) {}
    const log::LogEntry& operator*() const { return **p_; }
    const log::LogEntry* operator->() const { return *p_; }
    Iterator& operator++() {
      ++p_;
      return *this;
    }
    Iterator operator++(int) {
      Iterator old = *this;
      ++p_;
      return old;
    }
    bool operator==(const Iterator&) const = default;

   private:
    const log::LogEntry* const* p_ = nullptr;
  };

  EntryView() = default;
  explicit EntryView(std::span<const log::LogEntry* const> entries) : entries_(entries) {}
  Iterator begin() const { return Iterator(entries_.data()); }
  Iterator end() const { return Iterator(entries_.data() + entries_.size()); }
  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  const log::LogEntry& operator[](size_t i) const { return *entries_[i]; }
  const log::LogEntry& front() const { return *entries_.front(); }
  const log::LogEntry& back() const { return *entries_.back(); }

 private:
  std::span<const log::LogEntry* const> entries_;
};

class Processor {
 public:
  virtual ~Processor() = default;
  virtual const ProcessorSpec& spec() const = 0;
  // Processes `item`'s activities (in order) and calls item.Finish exactly once, on this or any
  // other thread, now or later: a slow operation should finish asynchronously rather than hold
  // an engine thread. Must not throw.
  virtual void Process(WorkItem& item) = 0;
};

// One unit of work handed to a processor: some activities of one tenant, in log order per lead.
// Owned by the engine; valid until Finish returns.
class WorkItem {
 public:
  virtual ~WorkItem() = default;
  virtual const TenantId& tenant() const = 0;
  virtual EntryView entries() const = 0;
  virtual StateTxn& state() = 0;
  // 1 for a first attempt.
  virtual uint32_t attempt() const = 0;
  // Queues an activity to append to the tenant's log, committed atomically with the state
  // changes. Give it a message_id derived from its cause, so that it is stored once.
  virtual void Emit(model::Activity activity) = 0;
  // Runs `fn` once this work item's writes are committed (not if they are discarded), on the
  // thread that finishes the item, without engine locks held. For waking services that consume
  // rows the item wrote (timers, deliveries). Must be quick and must not call Finish.
  virtual void AfterCommit(std::function<void()> fn) = 0;
  // Ends the work: OK commits the state changes, emitted activities and offsets in one atomic
  // write; an error discards them and retries or dead-letters per the processor's policy and
  // the status' retry class (RetryClassOf).
  virtual void Finish(Status status = Status::Ok()) = 0;
};

}  // namespace fairway::engine
