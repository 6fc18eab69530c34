#include "log/embedded_log.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <unordered_set>

#include "common/coding.h"
#include "common/hash.h"
#include "log/block.h"
#include "log/lead_index.h"
#include "storage/keys.h"
#include "storage/schema.h"

namespace fairway::log {

using storage::kLogBlocks;
using storage::kLogDedup;
using storage::kLogLeadIndex;
using storage::kLogMeta;
using storage::PrefixEnd;

PartitionId PartitionFor(std::string_view lead_key, uint32_t partitions) {
  return PartitionId(static_cast<uint32_t>(Hash64(lead_key) % std::max<uint32_t>(partitions, 1)));
}

namespace {

std::string TenantPrefix(const TenantId& tenant) { return TenantKeyPrefix(tenant); }
std::string TenantEnd(const TenantId& tenant) { return TenantKeyEnd(tenant); }

std::string PartitionPrefix(const TenantId& tenant, PartitionId p) {
  std::string k = TenantPrefix(tenant);
  PutFixed32BE(&k, p.value());
  return k;
}

// A decoded block kept while reading consecutive records from it.
struct BlockCursor {
  std::string key;
  uint64_t base = 0;
  std::string scratch;
  std::string value;
  std::vector<std::string_view> records;
};

// Loads the block holding `offset` of a partition into `cursor` (if not already there).
// Returns false (OK status) when no stored block holds it.
Result<bool> LoadBlockFor(storage::Store* store, const std::string& partition_prefix,
                          uint64_t offset, BlockCursor* cursor) {
  if (!cursor->key.empty() &&
      cursor->key.compare(0, partition_prefix.size(), partition_prefix) == 0 &&
      offset >= cursor->base && offset < cursor->base + cursor->records.size()) {
    return true;
  }
  auto it = store->NewIterator(kLogBlocks, partition_prefix, PrefixEnd(partition_prefix));
  std::string key = partition_prefix;
  PutFixed64BE(&key, offset);
  it->SeekForPrev(key);
  if (!it->Valid()) {
    FAIRWAY_RETURN_IF_ERROR(it->status());
    return false;
  }
  uint64_t base = DecodeFixed64BE(it->key().data() + partition_prefix.size());
  auto header = ReadBlockHeader(it->value());
  if (!header.ok()) return header.status();
  if (offset >= base + header->count) return false;
  cursor->key.assign(it->key());
  cursor->base = base;
  cursor->value.assign(it->value());
  FAIRWAY_RETURN_IF_ERROR(DecodeBlock(cursor->value, &cursor->scratch, &cursor->records));
  return true;
}

}  // namespace

EmbeddedLog::EmbeddedLog(storage::Store* store, const Clock* clock, MetricsRegistry* metrics,
                         EmbeddedLogOptions options)
    : store_(store), clock_(clock), options_(options), tail_(options.tail_cache_bytes) {
  commits_ = metrics->GetCounter("fairway_log_commits_total", "Group commits written.");
  commit_failures_ =
      metrics->GetCounter("fairway_log_commit_failures_total", "Group commits that failed.");
  commit_events_ =
      metrics->GetHistogram("fairway_log_commit_events", "Events per group commit.", SizeBuckets());
  commit_requests_ = metrics->GetHistogram("fairway_log_commit_requests",
                                           "Requests sharing one group commit.", SizeBuckets());
  sync_seconds_ = metrics->GetHistogram(
      "fairway_log_sync_seconds", "Time to write and fsync one group commit.", LatencyBuckets());
  queue_depth_ = metrics->GetGauge("fairway_log_queued_events", "Events waiting for a commit.");
  const std::string reads_help = "Partition reads, by where their records came from.";
  tail_reads_ = metrics->GetCounter("fairway_log_reads_total", reads_help, {{"source", "memory"}});
  store_reads_ = metrics->GetCounter("fairway_log_reads_total", reads_help, {{"source", "store"}});
  metrics->SetGaugeFunction(
      "fairway_log_tail_cache_bytes",
      "Bytes of the newest committed blocks kept in memory for reads.", [this] {
        return std::vector<std::pair<Labels, double>>{{{}, static_cast<double>(tail_.bytes())}};
      });
  metrics->SetGaugeFunction("fairway_log_disk_bytes", "Bytes of the embedded store on disk.",
                            [store] {
                              return std::vector<std::pair<Labels, double>>{
                                  {{}, static_cast<double>(store->DiskBytes())}};
                            });
}

EmbeddedLog::~EmbeddedLog() { Stop(); }

void EmbeddedLog::Start() {
  std::lock_guard lock(mu_);
  if (running_) return;
  running_ = true;
  stopping_ = false;
  writer_ = std::thread([this] { RunWriter(); });
}

void EmbeddedLog::Stop() {
  {
    std::lock_guard lock(mu_);
    if (!running_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  writer_.join();
  std::lock_guard lock(mu_);
  running_ = false;
}

void EmbeddedLog::Append(AppendRequest request, AppendCallback done) {
  size_t n = request.activities.size();
  {
    std::unique_lock lock(mu_);
    if (!running_ || stopping_) {
      lock.unlock();
      done(Unavailable("activity log is shutting down"));
      return;
    }
    if (queued_events_ > 0 && queued_events_ + n > options_.max_queued_events) {
      lock.unlock();
      done(Unavailable("activity log is overloaded: too many events waiting for disk"));
      return;
    }
    queued_events_ += n;
    queue_depth_->Set(static_cast<int64_t>(queued_events_));
    Op op;
    op.append = std::make_unique<PendingAppend>(PendingAppend{std::move(request), std::move(done)});
    queue_.push_back(std::move(op));
  }
  cv_.notify_one();
}

Status EmbeddedLog::RunControl(std::function<Status()> fn) {
  auto op = std::make_unique<ControlOp>();
  op->run = std::move(fn);
  auto fut = op->result.get_future();
  {
    std::lock_guard lock(mu_);
    if (!running_ || stopping_) return Unavailable("activity log is not running");
    Op o;
    o.control = std::move(op);
    queue_.push_back(std::move(o));
  }
  cv_.notify_one();
  return fut.get();
}

void EmbeddedLog::RunWriter() {
  std::vector<PendingAppend> group;
  while (true) {
    std::unique_ptr<ControlOp> control;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return !queue_.empty() || stopping_; });
      if (queue_.empty()) break;  // stopping, and everything queued is done
      size_t events = 0;
      while (!queue_.empty()) {
        Op& front = queue_.front();
        if (front.control) {
          if (group.empty()) {
            control = std::move(front.control);
            queue_.pop_front();
          }
          break;
        }
        size_t n = front.append->request.activities.size();
        if (!group.empty() && events + n > options_.max_commit_events) break;
        events += n;
        group.push_back(std::move(*front.append));
        queue_.pop_front();
      }
      queued_events_ -= events;
      queue_depth_->Set(static_cast<int64_t>(queued_events_));
    }
    if (control) {
      control->result.set_value(control->run());
      continue;
    }
    CommitAppends(group);
    group.clear();
  }
}

Result<uint64_t> EmbeddedLog::LoadStartOffset(const std::string& partition_prefix) {
  auto v = store_->Get(kLogMeta, partition_prefix);
  if (!v.ok()) return v.status();
  if (!v->has_value() || (*v)->size() != 8) return uint64_t{0};
  return DecodeFixed64BE((*v)->data());
}

Result<uint64_t> EmbeddedLog::LoadNextOffset(const std::string& partition_prefix) {
  auto it = store_->NewIterator(kLogBlocks, partition_prefix, PrefixEnd(partition_prefix));
  it->SeekToLast();
  if (it->Valid()) {
    uint64_t base = DecodeFixed64BE(it->key().data() + partition_prefix.size());
    auto header = ReadBlockHeader(it->value());
    if (!header.ok()) return header.status();
    return base + header->count;
  }
  FAIRWAY_RETURN_IF_ERROR(it->status());
  return LoadStartOffset(partition_prefix);
}

Result<uint64_t> EmbeddedLog::NextOffset(const std::string& partition_prefix) {
  auto it = next_offsets_.find(partition_prefix);
  if (it != next_offsets_.end()) return it->second;
  auto loaded = LoadNextOffset(partition_prefix);
  if (loaded.ok()) next_offsets_.emplace(partition_prefix, *loaded);
  return loaded;
}

Result<EmbeddedLog::Route> EmbeddedLog::RouteOf(const AppendRequest& req) {
  Route route{req.first_partition, std::max<uint32_t>(1, req.partitions)};
  std::lock_guard lock(layout_mu_);
  auto it = layouts_.find(req.tenant.str());
  if (it == layouts_.end()) {
    FAIRWAY_ASSIGN_OR_RETURN(auto v, store_->Get(kLogMeta, LayoutsKey(req.tenant)));
    std::optional<Route> recorded;
    if (v) {
      FAIRWAY_ASSIGN_OR_RETURN(auto layouts, DecodeLayouts(*v));
      if (!layouts.empty()) recorded = Route{layouts.back().first, layouts.back().count};
    }
    it = layouts_.emplace(req.tenant.str(), recorded).first;
  }
  if (it->second && it->second->first >= route.first) route = *it->second;
  return route;
}

void EmbeddedLog::AddToBlock(Blocks* blocks, const AppendRequest& req, Route route,
                             std::vector<std::string>* prefixes, const model::Activity& a,
                             size_t dedup_key, std::string* record) {
  PartitionId partition(LayoutPartition(a.LeadKey(), route.first, route.count));
  std::string& prefix = (*prefixes)[partition.value() - route.first];
  if (prefix.empty()) prefix = PartitionPrefix(req.tenant, partition);
  auto [it, inserted] = blocks->try_emplace(prefix);
  BlockBuild& b = it->second;
  if (inserted) {
    b.tenant = &req.tenant;
    b.partition = partition.value();
  }
  record->clear();
  model::EncodeActivity(a, record);
  b.block.Add(*record, a.received_at_ms);
  b.members.push_back({&a, &req, dedup_key});
}

void EmbeddedLog::FinishBlocks(Blocks& blocks) const {
  for (auto& [prefix, b] : blocks) b.encoded = b.block.Finish(options_.compress_min_bytes);
}

Status EmbeddedLog::StageBlocks(Blocks& blocks, std::vector<std::string>* dedup_keys, int64_t now,
                                storage::WriteBatch* batch,
                                std::vector<PartitionAdvance>* advances) {
  // Index and dedup entries are added in key order: RocksDB's memtable skip list reuses its
  // insert position for ordered keys, which makes the commit's inserts markedly cheaper.
  std::vector<IndexRow> index_rows, dedup_rows;
  std::string key;
  for (auto& [prefix, b] : blocks) {
    FAIRWAY_ASSIGN_OR_RETURN(b.base, NextOffset(prefix));
    key = prefix;
    PutFixed64BE(&key, b.base);
    batch->Put(kLogBlocks, key, b.encoded);
    for (size_t i = 0; i < b.members.size(); ++i) {
      const model::Activity& a = *b.members[i].activity;
      const AppendRequest& req = *b.members[i].request;
      uint64_t offset = b.base + i;
      if (req.dedup_window_ms > 0 && b.members[i].dedup_key != kNoDedupKey) {
        dedup_rows.push_back(DedupRow(std::move((*dedup_keys)[b.members[i].dedup_key]), b.partition,
                                      offset, now + req.dedup_window_ms));
      }
      const int64_t index_expiry = req.retention_ms > 0 ? now + req.retention_ms : 0;
      AddLeadIndexRows(req.tenant, a, b.partition, offset, index_expiry, &index_rows);
    }
    advances->push_back({*b.tenant, PartitionId(b.partition), Offset(b.base + b.members.size())});
  }
  std::sort(index_rows.begin(), index_rows.end());
  std::sort(dedup_rows.begin(), dedup_rows.end());
  for (const auto& e : dedup_rows) batch->Put(kLogDedup, e.key, e.value);
  for (const auto& e : index_rows) batch->Put(kLogLeadIndex, e.key, e.value);
  return Status::Ok();
}

void EmbeddedLog::Publish(Blocks& blocks, const std::vector<PartitionAdvance>& advances) {
  for (const auto& a : advances) {
    next_offsets_[PartitionPrefix(a.tenant, a.partition)] = a.next.value();
  }
  // Under the write lock, so each partition's blocks reach the tail in offset order.
  for (auto& [prefix, b] : blocks) {
    tail_.Add(prefix, {b.base, static_cast<uint32_t>(b.members.size()),
                       std::make_shared<const std::string>(std::move(b.encoded))});
  }
}

void EmbeddedLog::CommitAppends(std::vector<PendingAppend>& group) {
  const int64_t now = clock_->NowMillis();
  const int64_t start_ns = clock_->MonotonicNanos();

  // 1. Idempotency: which messageIds were already stored within their tenant's window?
  std::vector<std::string> dedup_keys;
  for (const auto& p : group) {
    for (const auto& a : p.request.activities) {
      dedup_keys.push_back(DedupKey(p.request.tenant, a.message_id.str()));
    }
  }
  std::vector<std::string_view> key_views(dedup_keys.begin(), dedup_keys.end());
  std::vector<std::optional<std::string>> found;
  Status st = store_->MultiGet(kLogDedup, key_views, &found);

  // 2. Build and compress one block per partition, outside the write lock (the engine's
  // commits take it too).
  Blocks blocks;
  std::vector<AppendResult> results(group.size());
  std::unordered_set<std::string_view> seen;
  std::string record;
  size_t key_index = 0;
  std::vector<Status> refused(group.size());
  std::vector<std::string> prefixes;
  for (size_t r = 0; r < group.size() && st.ok(); ++r) {
    const AppendRequest& req = group[r].request;
    // On the writer thread, which alone starts layouts: the route holds for this commit.
    auto route = RouteOf(req);
    if (!route.ok()) {
      st = route.status();
      break;
    }
    prefixes.assign(route->count, std::string());
    for (const auto& a : req.activities) {
      size_t k = key_index++;
      bool duplicate = false;
      if (req.dedup_window_ms > 0) {
        duplicate = !seen.insert(dedup_keys[k]).second;
        std::string_view payload;
        if (!duplicate && found[k]) {
          duplicate = storage::DecodeTtlValue(*found[k], &payload) >= now;
        }
      }
      if (duplicate) {
        ++results[r].duplicates;
        continue;
      }
      ++results[r].stored;
      AddToBlock(&blocks, req, *route, &prefixes, a, k, &record);
    }
  }
  FinishBlocks(blocks);

  // A tenant dropped meanwhile gets nothing written (checked under the lock, as a drop takes it).
  std::unique_lock write_lock(write_mu_);
  for (size_t r = 0; r < group.size(); ++r) {
    if (dropped_.count(group[r].request.tenant.str())) {
      refused[r] = NotFound(fmt::format("tenant '{}' was deleted", group[r].request.tenant.str()));
    }
  }
  std::erase_if(blocks,
                [&](const auto& kv) { return dropped_.count(kv.second.tenant->str()) > 0; });

  // 3. Offsets, blocks, index and dedup entries in one atomic write. The fsync comes after the
  // write lock is released, so the engine's commits (AppendInWrite) need not wait for it; the
  // group is acknowledged, and its records announced, only once it is durable.
  storage::WriteBatch batch;
  std::vector<PartitionAdvance> advances;
  if (st.ok()) st = StageBlocks(blocks, &dedup_keys, now, &batch, &advances);
  if (st.ok() && batch.Count() > 0) st = store_->Write(batch, /*sync=*/false);
  if (st.ok()) Publish(blocks, advances);
  write_lock.unlock();
  if (st.ok() && batch.Count() > 0 && options_.sync) st = store_->SyncWal();
  const int64_t end_ns = clock_->MonotonicNanos();
  size_t events = key_index;
  if (!st.ok()) {
    commit_failures_->Add();
    Status failure = Unavailable(fmt::format("storage write failed: {}", st.message()));
    for (auto& p : group) p.done(failure);
    return;
  }
  commits_->Add();
  commit_events_->Observe(static_cast<double>(events));
  commit_requests_->Observe(static_cast<double>(group.size()));
  sync_seconds_->Observe(static_cast<double>(end_ns - start_ns) / 1e9);
  if (listener_ && !advances.empty()) listener_(advances);
  for (size_t r = 0; r < group.size(); ++r) {
    if (!refused[r].ok()) {
      group[r].done(refused[r]);
    } else {
      group[r].done(results[r]);
    }
  }
}

Status EmbeddedLog::AppendInWrite(const AppendRequest& request, storage::WriteBatch* batch,
                                  const std::function<Status(storage::WriteBatch*)>& write) {
  if (request.activities.empty()) return write(batch);
  const int64_t now = clock_->NowMillis();
  Blocks blocks;
  std::string record;
  std::vector<PartitionAdvance> advances;
  std::vector<std::string> prefixes;
  std::optional<Route> built;
  while (true) {
    // Blocks are built outside the write lock; a layout started meanwhile (under the lock)
    // sends them to the new layout's partitions.
    FAIRWAY_ASSIGN_OR_RETURN(Route route, RouteOf(request));
    if (route != built) {
      blocks.clear();
      prefixes.assign(route.count, std::string());
      for (const auto& a : request.activities) {
        AddToBlock(&blocks, request, route, &prefixes, a, kNoDedupKey, &record);
      }
      FinishBlocks(blocks);
      built = route;
    }
    std::unique_lock write_lock(write_mu_);
    FAIRWAY_ASSIGN_OR_RETURN(Route now_route, RouteOf(request));
    if (now_route != *built) continue;
    if (dropped_.count(request.tenant.str())) {
      return NotFound(fmt::format("tenant '{}' was deleted", request.tenant.str()));
    }
    FAIRWAY_RETURN_IF_ERROR(StageBlocks(blocks, nullptr, now, batch, &advances));
    FAIRWAY_RETURN_IF_ERROR(write(batch));
    Publish(blocks, advances);
    break;
  }
  if (listener_) listener_(advances);
  return Status::Ok();
}

Result<std::vector<uint64_t>> EmbeddedLog::StartLayout(const model::TenantConfig& config,
                                                       uint32_t count) {
  const TenantId& tenant = config.id;
  const model::PartitionLayout current = config.current_layout();
  std::vector<uint64_t> ends;
  Status st = RunControl([&]() -> Status {
    // On the writer thread, so every queued append before this one is stored; under the write
    // lock, so no engine commit appends meanwhile.
    std::lock_guard write_lock(write_mu_);
    FAIRWAY_ASSIGN_OR_RETURN(auto layouts, Layouts(tenant));
    std::vector<uint64_t> now_ends;
    for (uint32_t p = current.first; p < current.first + current.count; ++p) {
      FAIRWAY_ASSIGN_OR_RETURN(uint64_t next, NextOffset(PartitionPrefix(tenant, PartitionId(p))));
      now_ends.push_back(next);
    }
    bool repeated = false;
    FAIRWAY_ASSIGN_OR_RETURN(layouts,
                             NextLayouts(std::move(layouts), current, count, now_ends, &repeated));
    if (!repeated) {
      storage::WriteBatch batch;
      batch.Put(kLogMeta, LayoutsKey(tenant), EncodeLayouts(layouts));
      FAIRWAY_RETURN_IF_ERROR(store_->Write(batch, /*sync=*/true));
    }
    ends = layouts[layouts.size() - 2].ends;
    std::lock_guard lock(layout_mu_);
    layouts_[tenant.str()] = Route{layouts.back().first, layouts.back().count};
    return Status::Ok();
  });
  FAIRWAY_RETURN_IF_ERROR(st);
  return ends;
}

Result<std::vector<model::PartitionLayout>> EmbeddedLog::Layouts(const TenantId& tenant) {
  FAIRWAY_ASSIGN_OR_RETURN(auto v, store_->Get(kLogMeta, LayoutsKey(tenant)));
  if (!v) return std::vector<model::PartitionLayout>{};
  return DecodeLayouts(*v);
}

void EmbeddedLog::SetAppendListener(AppendListener listener) { listener_ = std::move(listener); }

Result<std::vector<LogEntry>> EmbeddedLog::Read(const TenantId& tenant, PartitionId partition,
                                                Offset from, size_t max_records) {
  std::string prefix = PartitionPrefix(tenant, partition);
  std::vector<LogEntry> out;
  std::string scratch;
  std::vector<std::string_view> records;
  // Appends the records of `block` (based at `base`) from `offset` on, up to max_records.
  auto decode = [&](std::string_view block, uint64_t base, uint64_t offset) -> Status {
    FAIRWAY_RETURN_IF_ERROR(DecodeBlock(block, &scratch, &records));
    for (size_t i = 0; i < records.size() && out.size() < max_records; ++i) {
      if (base + i < offset) continue;
      auto a = model::DecodeActivity(records[i]);
      if (!a.ok())
        return Internal(fmt::format("log record {}: {}", base + i, a.status().message()));
      out.push_back({partition, Offset(base + i), std::move(a).value()});
    }
    return Status::Ok();
  };
  std::vector<TailCache::Block> cached;
  if (tail_.Read(prefix, from.value(), max_records, &cached)) {
    tail_reads_->Add();
    size_t n = 0;
    for (const auto& b : cached) n += b.count;
    out.reserve(std::min(n, max_records));
    for (const auto& b : cached) FAIRWAY_RETURN_IF_ERROR(decode(*b.data, b.base, from.value()));
    return out;
  }
  store_reads_->Add();
  FAIRWAY_ASSIGN_OR_RETURN(uint64_t start, LoadStartOffset(prefix));
  uint64_t offset = std::max(from.value(), start);
  out.reserve(std::min<size_t>(max_records, 4096));  // consumers read hundreds at a time
  // Consumers read each block once: keep it out of the read cache.
  auto it = store_->NewIterator(kLogBlocks, prefix, PrefixEnd(prefix), /*fill_cache=*/false);
  std::string key = prefix;
  PutFixed64BE(&key, offset);
  it->SeekForPrev(key);
  if (!it->Valid()) it->Seek(key);
  for (; it->Valid() && out.size() < max_records; it->Next()) {
    uint64_t base = DecodeFixed64BE(it->key().data() + prefix.size());
    FAIRWAY_RETURN_IF_ERROR(decode(it->value(), base, offset));
  }
  FAIRWAY_RETURN_IF_ERROR(it->status());
  return out;
}

Result<Offset> EmbeddedLog::HighWatermark(const TenantId& tenant, PartitionId partition) {
  FAIRWAY_ASSIGN_OR_RETURN(uint64_t next, LoadNextOffset(PartitionPrefix(tenant, partition)));
  return Offset(next);
}

Result<Offset> EmbeddedLog::LowWatermark(const TenantId& tenant, PartitionId partition) {
  FAIRWAY_ASSIGN_OR_RETURN(uint64_t start, LoadStartOffset(PartitionPrefix(tenant, partition)));
  return Offset(start);
}

Result<uint64_t> EmbeddedLog::ApplyRetention(const TenantId& tenant, uint32_t partitions,
                                             int64_t cutoff_ms) {
  uint64_t removed = 0;
  Status st = RunControl([&]() -> Status {
    storage::WriteBatch batch;
    std::vector<std::pair<std::string, uint64_t>> new_starts;
    for (uint32_t p = 0; p < partitions; ++p) {
      std::string prefix = PartitionPrefix(tenant, PartitionId(p));
      auto it = store_->NewIterator(kLogBlocks, prefix, PrefixEnd(prefix));
      std::optional<uint64_t> new_start;
      for (it->SeekToFirst(); it->Valid(); it->Next()) {
        auto header = ReadBlockHeader(it->value());
        if (!header.ok()) return header.status();
        if (header->max_received_at_ms >= cutoff_ms) break;
        uint64_t base = DecodeFixed64BE(it->key().data() + prefix.size());
        batch.Delete(kLogBlocks, it->key());
        removed += header->count;
        new_start = base + header->count;
      }
      FAIRWAY_RETURN_IF_ERROR(it->status());
      if (new_start) {
        std::string v;
        PutFixed64BE(&v, *new_start);
        batch.Put(kLogMeta, prefix, v);
        new_starts.emplace_back(prefix, *new_start);
      }
    }
    if (batch.Count() == 0) return Status::Ok();
    FAIRWAY_RETURN_IF_ERROR(store_->Write(batch, options_.sync));
    for (const auto& [prefix, start] : new_starts) tail_.DropBelow(prefix, start);
    return Status::Ok();
  });
  if (!st.ok()) return st;
  return removed;
}

void EmbeddedLog::PauseWriterUntil(std::shared_future<void> release) {
  auto op = std::make_unique<ControlOp>();
  op->run = [release] {
    release.wait();
    return Status::Ok();
  };
  std::lock_guard lock(mu_);
  Op o;
  o.control = std::move(op);
  queue_.push_back(std::move(o));
  cv_.notify_one();
}

Status EmbeddedLog::DropTenant(const TenantId& tenant) {
  return RunControl([&]() -> Status {
    storage::WriteBatch batch;
    std::string begin = TenantPrefix(tenant), end = TenantEnd(tenant);
    for (auto cf : {kLogBlocks, kLogDedup, kLogLeadIndex, kLogMeta}) {
      batch.DeleteRange(cf, begin, end);
    }
    std::lock_guard write_lock(write_mu_);
    FAIRWAY_RETURN_IF_ERROR(store_->Write(batch, options_.sync));
    dropped_.insert(tenant.str());
    {
      std::lock_guard lock(layout_mu_);
      layouts_.erase(tenant.str());
    }
    tail_.DropPrefix(begin);
    std::erase_if(next_offsets_,
                  [&](const auto& kv) { return kv.first.compare(0, begin.size(), begin) == 0; });
    return Status::Ok();
  });
}

Status EmbeddedLog::ReopenTenant(const TenantId& tenant) {
  return RunControl([&]() -> Status {
    std::lock_guard write_lock(write_mu_);
    dropped_.erase(tenant.str());
    return Status::Ok();
  });
}

Result<ActivityPage> EmbeddedLog::Query(const ActivityQuery& q) {
  std::map<uint32_t, uint64_t> start_offsets;
  BlockCursor block;
  return QueryLeadIndex(
      store_, q,
      [&](uint32_t partition, uint64_t offset) -> Result<std::optional<model::Activity>> {
        std::string partition_prefix = PartitionPrefix(q.tenant, PartitionId(partition));
        auto start = start_offsets.find(partition);
        if (start == start_offsets.end()) {
          FAIRWAY_ASSIGN_OR_RETURN(uint64_t s, LoadStartOffset(partition_prefix));
          start = start_offsets.emplace(partition, s).first;
        }
        if (offset < start->second) return std::optional<model::Activity>();
        FAIRWAY_ASSIGN_OR_RETURN(bool present,
                                 LoadBlockFor(store_, partition_prefix, offset, &block));
        if (!present) return std::optional<model::Activity>();
        auto a = model::DecodeActivity(block.records[offset - block.base]);
        if (!a.ok())
          return Internal(fmt::format("log record {}: {}", offset, a.status().message()));
        return std::optional<model::Activity>(std::move(a).value());
      });
}

}  // namespace fairway::log
