#pragma once
// EmbeddedLog: the ActivityLog and ActivityIndex on Fairway's embedded RocksDB store.
//
// Appends, retention and tenant drops run on one writer thread owned by this object. It drains
// the queue of pending appends into one group commit: it checks messageIds against the dedup
// window, builds one block per partition, then under the write lock assigns contiguous offsets
// per tenant partition and writes the blocks plus the index and dedup entries in one atomic
// RocksDB write, fsyncs after releasing the lock, and then completes every request of the group.
// Concurrent requests therefore share one fsync. AppendInWrite (the engine's generated
// activities) takes the same write lock on the caller's thread. Reads run on the caller's thread
// against committed data.

#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "common/clock.h"
#include "common/metrics.h"
#include "log/activity_log.h"
#include "log/block.h"
#include "log/tail_cache.h"
#include "storage/store.h"

namespace fairway::log {

struct EmbeddedLogOptions {
  // fsync every group commit before acknowledging it. Turning it off loses acknowledged data
  // on power loss; only for tests and benchmarks of other parts.
  bool sync = true;
  // Largest group commit in events; bounds commit latency and memory.
  size_t max_commit_events = 20'000;
  // Blocks at least this large are LZ4-compressed.
  size_t compress_min_bytes = 256;
  // Appends beyond this many queued events are refused with Unavailable (HTTP 503): the
  // bound on ingest memory when the disk cannot keep up.
  size_t max_queued_events = 500'000;
  // Memory for the newest committed blocks, from which consumers that keep up read (0: none).
  size_t tail_cache_bytes = 64u << 20;
};

class EmbeddedLog final : public ActivityLog, public ActivityIndex {
 public:
  // `store` must be opened with storage::FairwayColumnFamilies() and outlive this object.
  EmbeddedLog(storage::Store* store, const Clock* clock, MetricsRegistry* metrics,
              EmbeddedLogOptions options);
  ~EmbeddedLog() override;

  // Starts the writer thread.
  void Start() override;
  // Completes everything queued, then stops the writer thread. Appends after Stop fail.
  void Stop() override;

  void Append(AppendRequest request, AppendCallback done) override;
  Result<std::vector<LogEntry>> Read(const TenantId& tenant, PartitionId partition, Offset from,
                                     size_t max_records) override;
  Result<Offset> HighWatermark(const TenantId& tenant, PartitionId partition) override;
  Result<Offset> LowWatermark(const TenantId& tenant, PartitionId partition) override;
  Result<uint64_t> ApplyRetention(const TenantId& tenant, uint32_t partitions,
                                  int64_t cutoff_ms) override;
  Status DropTenant(const TenantId& tenant) override;
  Status ReopenTenant(const TenantId& tenant) override;
  void SetAppendListener(AppendListener listener) override;
  bool AppendsInWrite() const override { return true; }
  Status AppendInWrite(const AppendRequest& request, storage::WriteBatch* batch,
                       const std::function<Status(storage::WriteBatch*)>& write) override;
  Result<std::vector<uint64_t>> StartLayout(const model::TenantConfig& tenant,
                                            uint32_t count) override;
  Result<std::vector<model::PartitionLayout>> Layouts(const TenantId& tenant) override;

  Result<ActivityPage> Query(const ActivityQuery& query) override;

  // Test probe: the writer finishes what it is doing, then waits until `release` is ready, so a
  // test can queue appends and watch them share one group commit.
  void PauseWriterUntil(std::shared_future<void> release);

 private:
  struct PendingAppend {
    AppendRequest request;
    AppendCallback done;
  };
  // A write other than an append, run on the writer thread in queue order.
  struct ControlOp {
    std::function<Status()> run;
    std::promise<Status> result;
  };
  struct Op {
    std::unique_ptr<PendingAppend> append;
    std::unique_ptr<ControlOp> control;
  };

  // The activities of one group commit (or one AppendInWrite) bound for one partition, keyed
  // by the partition's key prefix: they become one block.
  static constexpr size_t kNoDedupKey = SIZE_MAX;
  struct BlockMember {
    const model::Activity* activity;
    const AppendRequest* request;
    size_t dedup_key;  // index into the group's dedup keys, or kNoDedupKey
  };
  struct BlockBuild {
    BlockBuilder block;
    std::string encoded;  // the finished block
    const TenantId* tenant = nullptr;
    uint32_t partition = 0;
    uint64_t base = 0;
    std::vector<BlockMember> members;
  };
  using Blocks = std::map<std::string, BlockBuild>;
  // The partitions a request's activities go to: `count` partitions from `first`.
  struct Route {
    uint32_t first = 0;
    uint32_t count = 1;
    bool operator==(const Route&) const = default;
  };
  // The request's layout, or the newer one StartLayout recorded for its tenant.
  Result<Route> RouteOf(const AppendRequest& req);

  void RunWriter();
  void CommitAppends(std::vector<PendingAppend>& group);
  // Adds `a` to its partition's block; `prefixes` caches the request's partition key prefixes
  // (sized to its partition count).
  static void AddToBlock(Blocks* blocks, const AppendRequest& req, Route route,
                         std::vector<std::string>* prefixes, const model::Activity& a,
                         size_t dedup_key, std::string* record);
  // Compresses every block (no lock needed).
  void FinishBlocks(Blocks& blocks) const;
  // Assigns the finished blocks their offsets and adds them, their lead-index entries and (for
  // members with a dedup key) their dedup entries to `batch`; `advances` gets each partition's new
  // end. Requires write_mu_.
  Status StageBlocks(Blocks& blocks, std::vector<std::string>* dedup_keys, int64_t now,
                     storage::WriteBatch* batch, std::vector<PartitionAdvance>* advances);
  // Records the partitions' new ends once their write succeeded. Requires write_mu_.
  void Publish(Blocks& blocks, const std::vector<PartitionAdvance>& advances);
  Status RunControl(std::function<Status()> fn);
  // Next offset of a partition; loaded from the store on first use. Writer thread only.
  Result<uint64_t> NextOffset(const std::string& partition_prefix);
  Result<uint64_t> LoadNextOffset(const std::string& partition_prefix);
  Result<uint64_t> LoadStartOffset(const std::string& partition_prefix);

  storage::Store* store_;
  const Clock* clock_;
  EmbeddedLogOptions options_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Op> queue_;
  size_t queued_events_ = 0;
  bool stopping_ = false;
  bool running_ = false;
  std::thread writer_;

  // Serialises the writes that add records (group commits, AppendInWrite) and tenant drops:
  // each partition's offsets are handed out and written in order.
  std::mutex write_mu_;
  // Partition prefix -> next offset (guarded by write_mu_).
  std::unordered_map<std::string, uint64_t> next_offsets_;
  AppendListener listener_;
  // Tenants dropped since start (and not reopened); appends fail (guarded by write_mu_).
  std::unordered_set<std::string> dropped_;
  // Tenant -> its current layout as recorded by StartLayout (nullopt: none recorded), loaded on
  // first use. Changed only under write_mu_ and layout_mu_, on the writer thread.
  std::mutex layout_mu_;
  std::unordered_map<std::string, std::optional<Route>> layouts_;
  TailCache tail_;

  Counter* commits_;
  Counter* commit_failures_;
  Histogram* commit_events_;
  Histogram* commit_requests_;
  Histogram* sync_seconds_;
  Gauge* queue_depth_;
  Counter* tail_reads_;
  Counter* store_reads_;
};

}  // namespace fairway::log
