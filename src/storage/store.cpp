#include "storage/store.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <rocksdb/compaction_filter.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/merge_operator.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>

#include "common/coding.h"
#include "storage/store_env.h"

namespace fairway::storage {

namespace {

Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return Status::Ok();
  std::string msg = fmt::format("{}: {}", what, s.ToString());
  if (s.IsNotFound()) return NotFound(std::move(msg));
  if (s.IsCorruption()) return Internal(std::move(msg));
  if (s.IsInvalidArgument()) return InvalidArgument(std::move(msg));
  if (s.IsBusy() || s.IsTryAgain() || s.IsTimedOut() || s.IsIOError() || s.IsNoSpace()) {
    return Unavailable(std::move(msg));
  }
  return Internal(std::move(msg));
}

rocksdb::Slice ToSlice(std::string_view s) { return {s.data(), s.size()}; }

// Drops TTL values whose expiry has passed.
class TtlCompactionFilter final : public rocksdb::CompactionFilter {
 public:
  explicit TtlCompactionFilter(const Clock* clock) : clock_(clock) {}
  bool Filter(int, const rocksdb::Slice&, const rocksdb::Slice& value, std::string*,
              bool*) const override {
    std::string_view payload;
    int64_t expires = DecodeTtlValue({value.data(), value.size()}, &payload);
    return expires != 0 && expires < clock_->NowMillis();
  }
  const char* Name() const override { return "fairway.TtlCompactionFilter"; }

 private:
  const Clock* clock_;
};

// Adds 64-bit counters (EncodeCounter); a malformed operand counts as 0.
class CounterMergeOperator final : public rocksdb::AssociativeMergeOperator {
 public:
  bool Merge(const rocksdb::Slice&, const rocksdb::Slice* existing, const rocksdb::Slice& value,
             std::string* new_value, rocksdb::Logger*) const override {
    int64_t sum = existing ? DecodeCounter({existing->data(), existing->size()}) : 0;
    sum += DecodeCounter({value.data(), value.size()});
    *new_value = EncodeCounter(sum);
    return true;
  }
  const char* Name() const override { return "fairway.CounterMergeOperator"; }
};

class RocksIterator final : public Iterator {
 public:
  RocksIterator(std::unique_ptr<rocksdb::Iterator> it, std::unique_ptr<std::string> lower,
                std::unique_ptr<std::string> upper, std::unique_ptr<rocksdb::Slice> lower_slice,
                std::unique_ptr<rocksdb::Slice> upper_slice)
      : lower_(std::move(lower)),
        upper_(std::move(upper)),
        lower_slice_(std::move(lower_slice)),
        upper_slice_(std::move(upper_slice)),
        it_(std::move(it)) {}
  void Seek(std::string_view key) override { it_->Seek(ToSlice(key)); }
  void SeekForPrev(std::string_view key) override { it_->SeekForPrev(ToSlice(key)); }
  void SeekToFirst() override { it_->SeekToFirst(); }
  void SeekToLast() override { it_->SeekToLast(); }
  bool Valid() const override { return it_->Valid(); }
  void Next() override { it_->Next(); }
  void Prev() override { it_->Prev(); }
  std::string_view key() const override {
    auto k = it_->key();
    return {k.data(), k.size()};
  }
  std::string_view value() const override {
    auto v = it_->value();
    return {v.data(), v.size()};
  }
  Status status() const override { return FromRocks(it_->status(), "iterator"); }

 private:
  // Bounds must outlive the iterator: declared before it.
  std::unique_ptr<std::string> lower_, upper_;
  std::unique_ptr<rocksdb::Slice> lower_slice_, upper_slice_;
  std::unique_ptr<rocksdb::Iterator> it_;
};

class RocksReadView final : public ReadView {
 public:
  explicit RocksReadView(rocksdb::DB* db) : db_(db), snapshot_(db->GetSnapshot()) {}
  ~RocksReadView() override { db_->ReleaseSnapshot(snapshot_); }
  const rocksdb::Snapshot* snapshot() const { return snapshot_; }

 private:
  rocksdb::DB* db_;
  const rocksdb::Snapshot* snapshot_;
};

class RocksStore final : public Store {
 public:
  RocksStore(const StoreOptions& options, std::shared_ptr<std::atomic<bool>> wal_space_low,
             std::unique_ptr<rocksdb::Env> env, std::unique_ptr<rocksdb::DB> db,
             std::vector<rocksdb::ColumnFamilyHandle*> handles,
             std::vector<std::unique_ptr<TtlCompactionFilter>> filters, int lock_fd)
      : lock_fd_(lock_fd),
        options_(options),
        wal_space_low_(std::move(wal_space_low)),
        env_(std::move(env)),
        filters_(std::move(filters)),
        db_(std::move(db)),
        handles_(std::move(handles)) {}

  ~RocksStore() override {
    {
      std::lock_guard lock(health_mu_);
      stopping_ = true;
    }
    health_cv_.notify_all();
    if (recovery_.joinable()) recovery_.join();
    for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
    db_->Close().PermitUncheckedError();
    ::close(lock_fd_);
  }

  // Takes the reserve (or enters the failed state when it cannot) and starts the recovery
  // thread. Once, right after opening.
  void Start() {
    if (options_.reserve_bytes > 0) {
      Status held = CreateReserve(options_.path, options_.reserve_bytes, options_.disk_full_probe);
      if (!held.ok()) EnterFailed(std::string(held.message()));
    }
    recovery_ = std::thread([this] { RunRecovery(); });
  }

  Status Write(WriteBatch& batch, bool sync) override;
  Status SyncWal() override;
  StorageHealth Health() const override {
    std::lock_guard lock(health_mu_);
    return health_;
  }
  Result<std::optional<std::string>> Get(ColumnFamily cf, std::string_view key) override {
    std::string value;
    auto s = db_->Get(rocksdb::ReadOptions(), handles_.at(cf + 1), ToSlice(key), &value);
    if (s.IsNotFound()) return std::optional<std::string>();
    if (!s.ok()) return FromRocks(s, "get");
    return std::optional<std::string>(std::move(value));
  }
  Status MultiGet(ColumnFamily cf, const std::vector<std::string_view>& keys,
                  std::vector<std::optional<std::string>>* results) override {
    std::vector<rocksdb::Slice> slices;
    slices.reserve(keys.size());
    for (auto k : keys) slices.push_back(ToSlice(k));
    std::vector<rocksdb::PinnableSlice> values(keys.size());
    std::vector<rocksdb::Status> statuses(keys.size());
    db_->MultiGet(rocksdb::ReadOptions(), handles_.at(cf + 1), keys.size(), slices.data(),
                  values.data(), statuses.data());
    results->assign(keys.size(), std::nullopt);
    for (size_t i = 0; i < keys.size(); ++i) {
      if (statuses[i].ok()) {
        (*results)[i] = values[i].ToString();
      } else if (!statuses[i].IsNotFound()) {
        return FromRocks(statuses[i], "multiget");
      }
    }
    return Status::Ok();
  }
  std::unique_ptr<Iterator> NewIterator(ColumnFamily cf, std::string lower, std::string upper,
                                        bool fill_cache, const ReadView* view) override {
    rocksdb::ReadOptions ro;
    ro.fill_cache = fill_cache;
    if (view != nullptr) ro.snapshot = static_cast<const RocksReadView*>(view)->snapshot();
    auto lo = std::make_unique<std::string>(std::move(lower));
    auto up = std::make_unique<std::string>(std::move(upper));
    std::unique_ptr<rocksdb::Slice> lo_slice, up_slice;
    if (!lo->empty()) {
      lo_slice = std::make_unique<rocksdb::Slice>(*lo);
      ro.iterate_lower_bound = lo_slice.get();
    }
    if (!up->empty()) {
      up_slice = std::make_unique<rocksdb::Slice>(*up);
      ro.iterate_upper_bound = up_slice.get();
    }
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, handles_.at(cf + 1)));
    return std::make_unique<RocksIterator>(std::move(it), std::move(lo), std::move(up),
                                           std::move(lo_slice), std::move(up_slice));
  }
  std::unique_ptr<ReadView> NewReadView() override {
    return std::make_unique<RocksReadView>(db_.get());
  }
  Status CompactRange(ColumnFamily cf, std::string_view begin, std::string_view end) override {
    rocksdb::Slice b = ToSlice(begin), e = ToSlice(end);
    rocksdb::CompactRangeOptions opts;
    opts.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
    return FromRocks(db_->CompactRange(opts, handles_.at(cf + 1), begin.empty() ? nullptr : &b,
                                       end.empty() ? nullptr : &e),
                     "compact");
  }
  uint64_t ApproximateBytes(ColumnFamily cf, std::string_view begin,
                            std::string_view end) override {
    rocksdb::SizeApproximationOptions opts;
    opts.include_memtables = true;
    opts.include_files = true;
    rocksdb::Range range(ToSlice(begin), ToSlice(end));
    uint64_t size = 0;
    if (!db_->GetApproximateSizes(opts, handles_.at(cf + 1), &range, 1, &size).ok()) return 0;
    return size;
  }
  uint64_t DiskBytes() override {
    uint64_t total = 0;
    for (auto* h : handles_) {
      uint64_t v = 0;
      if (db_->GetIntProperty(h, rocksdb::DB::Properties::kLiveSstFilesSize, &v)) total += v;
    }
    uint64_t memtables = 0;
    if (db_->GetIntProperty(rocksdb::DB::Properties::kCurSizeAllMemTables, &memtables)) {
      total += memtables;
    }
    return total;
  }
  Status Flush() override {
    rocksdb::FlushOptions fo;
    return FromRocks(db_->Flush(fo, handles_), "flush");
  }
  void InjectWriteFailures(int n) override { injected_failures_.store(n); }

 private:
  // Refuses writes from now on and wakes the recovery thread. Any thread.
  void EnterFailed(std::string reason);
  // Runs on recovery_: while failed, tries every recovery_interval_ms to resume.
  void RunRecovery();
  // One attempt: resume RocksDB, write a synced probe, hold the reserve again.
  Status TryResume();

  // Holds an exclusive flock on kLockFileName for the store's lifetime.
  const int lock_fd_;
  const StoreOptions options_;
  // Set by the write-ahead log's files when the disk has no room ahead of the log.
  std::shared_ptr<std::atomic<bool>> wal_space_low_;
  std::unique_ptr<rocksdb::Env> env_;                          // outlives db_
  std::vector<std::unique_ptr<TtlCompactionFilter>> filters_;  // outlive db_
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;  // [0] is "default"
  std::atomic<int> injected_failures_{0};

  // Writes fail fast while set; a copy of !health_.writable readable without the lock.
  std::atomic<bool> failed_{false};
  mutable std::mutex health_mu_;
  std::condition_variable health_cv_;
  StorageHealth health_;   // guarded by health_mu_
  bool stopping_ = false;  // guarded by health_mu_
  std::thread recovery_;
};

void RocksStore::EnterFailed(std::string reason) {
  StorageHealth changed;
  {
    std::lock_guard lock(health_mu_);
    if (!health_.writable) return;
    health_ = {false, std::move(reason), {}};
    failed_ = true;
    changed = health_;
  }
  health_cv_.notify_all();
  if (options_.on_health_change) options_.on_health_change(changed);
}

Status RocksStore::TryResume() {
  // OK at once when RocksDB holds no background error; otherwise retries its flush.
  FAIRWAY_RETURN_IF_ERROR(FromRocks(db_->Resume(), "resume"));
  if (*wal_space_low_) {
    // Let the probe find out whether the log has room again.
    uint64_t free_bytes = 0;
    if (env_->GetFreeSpace(options_.path, &free_bytes).ok() && free_bytes < kWalLookAhead) {
      return Unavailable(fmt::format("waiting for free space: {} MiB left", free_bytes >> 20));
    }
    *wal_space_low_ = false;
  }
  rocksdb::WriteBatch probe;
  FAIRWAY_RETURN_IF_ERROR(FromRocks(probe.Put(handles_[0], "fairway.store.probe", "ok"), "probe"));
  rocksdb::WriteOptions wo;
  wo.sync = true;
  wo.no_slowdown = true;  // a stalled probe would stall recovery: fail and try again later
  FAIRWAY_RETURN_IF_ERROR(FromRocks(db_->Write(wo, &probe), "probe write"));
  if (*wal_space_low_) return Unavailable("no space left on device for the write-ahead log");
  if (options_.reserve_bytes > 0) {
    FAIRWAY_RETURN_IF_ERROR(
        CreateReserve(options_.path, options_.reserve_bytes, options_.disk_full_probe));
  }
  return Status::Ok();
}

void RocksStore::RunRecovery() {
  std::unique_lock lock(health_mu_);
  while (!stopping_) {
    if (health_.writable) {
      health_cv_.wait(lock, [&] { return stopping_ || !health_.writable; });
      continue;
    }
    health_cv_.wait_for(lock, std::chrono::milliseconds(options_.recovery_interval_ms),
                        [&] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    Status resumed = TryResume();
    lock.lock();
    if (!resumed.ok()) {
      health_.last_resume_error = std::string(resumed.message());
      continue;
    }
    health_ = {};
    failed_ = false;
    StorageHealth changed = health_;
    lock.unlock();
    if (options_.on_health_change) options_.on_health_change(changed);
    lock.lock();
  }
}

}  // namespace

struct WriteBatch::Impl {
  rocksdb::WriteBatch batch;
};

struct WriteBatchAccess {
  static rocksdb::WriteBatch* Native(WriteBatch& b) { return &b.impl_->batch; }
};

namespace {

// A column-family handle that carries only the id. WriteBatch uses nothing else of a handle, so
// batches can be built without a Store at hand (ids are index + 1 in every Store we open).
class IdOnlyHandle final : public rocksdb::ColumnFamilyHandle {
 public:
  explicit IdOnlyHandle(uint32_t id) : id_(id) {}
  const std::string& GetName() const override { return name_; }
  uint32_t GetID() const override { return id_; }
  rocksdb::Status GetDescriptor(rocksdb::ColumnFamilyDescriptor*) override {
    return rocksdb::Status::NotSupported();
  }
  const rocksdb::Comparator* GetComparator() const override {
    return rocksdb::BytewiseComparator();
  }

 private:
  uint32_t id_;
  std::string name_;
};

IdOnlyHandle* HandleFor(ColumnFamily cf) {
  static std::vector<std::unique_ptr<IdOnlyHandle>>* handles = [] {
    auto* v = new std::vector<std::unique_ptr<IdOnlyHandle>>();
    for (uint32_t i = 0; i < 64; ++i) v->push_back(std::make_unique<IdOnlyHandle>(i + 1));
    return v;
  }();
  return handles->at(cf).get();
}

}  // namespace

WriteBatch::WriteBatch() : impl_(std::make_unique<Impl>()) {}
WriteBatch::~WriteBatch() = default;
WriteBatch::WriteBatch(WriteBatch&&) noexcept = default;
WriteBatch& WriteBatch::operator=(WriteBatch&&) noexcept = default;

void WriteBatch::Put(ColumnFamily cf, std::string_view key, std::string_view value) {
  impl_->batch.Put(HandleFor(cf), ToSlice(key), ToSlice(value)).PermitUncheckedError();
}
void WriteBatch::Delete(ColumnFamily cf, std::string_view key) {
  impl_->batch.Delete(HandleFor(cf), ToSlice(key)).PermitUncheckedError();
}
void WriteBatch::Merge(ColumnFamily cf, std::string_view key, std::string_view delta) {
  impl_->batch.Merge(HandleFor(cf), ToSlice(key), ToSlice(delta)).PermitUncheckedError();
}
void WriteBatch::DeleteRange(ColumnFamily cf, std::string_view begin, std::string_view end) {
  impl_->batch.DeleteRange(HandleFor(cf), ToSlice(begin), ToSlice(end)).PermitUncheckedError();
}
void WriteBatch::Clear() { impl_->batch.Clear(); }
size_t WriteBatch::Count() const { return static_cast<size_t>(impl_->batch.Count()); }
size_t WriteBatch::ByteSize() const { return impl_->batch.GetDataSize(); }

namespace {

// Turns a native batch's records back into WriteBatch::Op, for column families 1..64 (ours).
class OpVisitor final : public rocksdb::WriteBatch::Handler {
 public:
  explicit OpVisitor(const std::function<void(const WriteBatch::Op&)>* fn) : fn_(fn) {}
  rocksdb::Status PutCF(uint32_t id, const rocksdb::Slice& k, const rocksdb::Slice& v) override {
    return Emit(WriteBatch::OpType::kPut, id, k, v);
  }
  rocksdb::Status DeleteCF(uint32_t id, const rocksdb::Slice& k) override {
    return Emit(WriteBatch::OpType::kDelete, id, k, {});
  }
  rocksdb::Status MergeCF(uint32_t id, const rocksdb::Slice& k, const rocksdb::Slice& v) override {
    return Emit(WriteBatch::OpType::kMerge, id, k, v);
  }
  rocksdb::Status DeleteRangeCF(uint32_t id, const rocksdb::Slice& b,
                                const rocksdb::Slice& e) override {
    return Emit(WriteBatch::OpType::kDeleteRange, id, b, e);
  }
  rocksdb::Status SingleDeleteCF(uint32_t id, const rocksdb::Slice& k) override {
    return Emit(WriteBatch::OpType::kDelete, id, k, {});
  }

 private:
  rocksdb::Status Emit(WriteBatch::OpType type, uint32_t id, const rocksdb::Slice& k,
                       const rocksdb::Slice& v) {
    if (id == 0 || id > 64) return rocksdb::Status::Corruption("unknown column family");
    if (fn_ != nullptr) {
      (*fn_)(WriteBatch::Op{type, id - 1, std::string_view(k.data(), k.size()),
                            std::string_view(v.data(), v.size())});
    }
    return rocksdb::Status::OK();
  }
  const std::function<void(const WriteBatch::Op&)>* fn_;
};

}  // namespace

void WriteBatch::ForEach(const std::function<void(const Op&)>& fn) const {
  OpVisitor visitor(&fn);
  impl_->batch.Iterate(&visitor).PermitUncheckedError();
}

void WriteBatch::Add(const Op& op) {
  switch (op.type) {
    case OpType::kPut:
      Put(op.cf, op.key, op.value);
      break;
    case OpType::kDelete:
      Delete(op.cf, op.key);
      break;
    case OpType::kMerge:
      Merge(op.cf, op.key, op.value);
      break;
    case OpType::kDeleteRange:
      DeleteRange(op.cf, op.key, op.value);
      break;
  }
}

std::string WriteBatch::Data() const { return impl_->batch.Data(); }

Result<WriteBatch> WriteBatch::FromData(std::string data) {
  // The fixed header: 8-byte sequence number and 4-byte count.
  if (data.size() < 12) return InvalidArgument("a write batch is at least 12 bytes");
  WriteBatch b;
  b.impl_->batch = rocksdb::WriteBatch(std::move(data));
  OpVisitor visitor(nullptr);
  rocksdb::Status s = b.impl_->batch.Iterate(&visitor);
  if (!s.ok()) return InvalidArgument("not a write batch: " + s.ToString());
  return b;
}

Status RocksStore::Write(WriteBatch& batch, bool sync) {
  int pending = injected_failures_.load();
  while (pending > 0) {
    if (injected_failures_.compare_exchange_weak(pending, pending - 1)) {
      return Unavailable("write: injected storage failure");
    }
  }
  if (failed_) {
    return Unavailable(
        fmt::format("storage refuses writes until it recovers from: {}", Health().reason));
  }
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  if (*wal_space_low_) {
    EnterFailed("no space left on device for the write-ahead log to grow");
    return Unavailable(
        fmt::format("storage refuses writes until it recovers from: {}", Health().reason));
  }
  auto s = db_->Write(wo, WriteBatchAccess::Native(batch));
  if (s.ok() && *wal_space_low_) {
    // This write fitted; the next may not.
    EnterFailed("no space left on device for the write-ahead log to grow");
  }
  if (!s.ok() && !s.IsInvalidArgument() && !s.IsNotSupported() && !s.IsBusy() && !s.IsTryAgain()) {
    // RocksDB has stopped writes (a background error) or the write-ahead log is broken: send
    // nothing more its way until the recovery thread has resumed it. Writing again to a log
    // writer that saw an error aborts the process in RocksDB builds with assertions on.
    EnterFailed(s.ToString());
  }
  return FromRocks(s, "write");
}

Status RocksStore::SyncWal() {
  if (failed_) {
    return Unavailable(
        fmt::format("storage refuses writes until it recovers from: {}", Health().reason));
  }
  if (*wal_space_low_) {
    // Another thread's append found the log out of space: the log writer that saw the error
    // must not be synced (see Write).
    EnterFailed("no space left on device for the write-ahead log to grow");
    return Unavailable(
        fmt::format("storage refuses writes until it recovers from: {}", Health().reason));
  }
  auto s = db_->SyncWAL();
  if (!s.ok() && !s.IsNotSupported() && !s.IsBusy() && !s.IsTryAgain()) EnterFailed(s.ToString());
  return FromRocks(s, "sync");
}

Result<std::unique_ptr<Store>> Store::Open(const StoreOptions& options) {
  std::error_code ec;
  std::filesystem::create_directories(options.path, ec);
  if (ec) {
    return Unavailable(
        fmt::format("cannot create data directory '{}': {}", options.path, ec.message()));
  }
  // Exclusive use of the directory before anything in it changes: a second process started on
  // it by mistake must not give the reserve of the running one back.
  const std::string lock_path = options.path + "/" + kLockFileName;
  int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0) {
    return Unavailable(fmt::format("cannot open '{}': {}", lock_path, std::strerror(errno)));
  }
  if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    ::close(lock_fd);
    if (err == EWOULDBLOCK) {
      return FailedPrecondition(
          fmt::format("data directory '{}' is in use by another process", options.path));
    }
    return Unavailable(fmt::format("cannot lock '{}': {}", lock_path, std::strerror(err)));
  }
  struct LockGuard {
    int fd;
    ~LockGuard() {
      if (fd >= 0) ::close(fd);
    }
  } lock_guard{lock_fd};
  auto wal_space_low = std::make_shared<std::atomic<bool>>(false);
  std::unique_ptr<rocksdb::Env> env = NewStoreEnv(options.disk_full_probe, wal_space_low.get());
  if (options.reserve_bytes > 0) {
    // Give the reserve back before opening: replaying the write-ahead log may need its room.
    ::unlink(ReservePath(options.path).c_str());
    ::unlink((ReservePath(options.path) + ".tmp").c_str());
  }
  rocksdb::DBOptions db_opts;
  db_opts.env = env.get();
  db_opts.create_if_missing = true;
  db_opts.create_missing_column_families = true;
  db_opts.max_background_jobs = options.background_jobs;
  db_opts.bytes_per_sync = 1 << 20;
  db_opts.wal_bytes_per_sync = 0;
  // The write-ahead log is replayed into new table files at open: with a reserve, cap it so
  // that the replay fits in the reserve's room even when the disk is otherwise full.
  db_opts.max_total_wal_size = options.reserve_bytes > 0
                                   ? std::max<uint64_t>(options.reserve_bytes / 2, 1u << 20)
                                   : 256u << 20;
  db_opts.info_log = NewStderrRocksLogger();
  db_opts.listeners.push_back(NewManualRecoveryListener());
  db_opts.max_open_files = 1024;

  auto cache = rocksdb::NewLRUCache(options.block_cache_bytes);
  std::vector<std::unique_ptr<TtlCompactionFilter>> filters;
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  descriptors.emplace_back(rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions());
  for (const auto& spec : options.column_families) {
    rocksdb::ColumnFamilyOptions cf;
    cf.write_buffer_size = spec.write_buffer_bytes;
    cf.max_write_buffer_number = 4;
    cf.level_compaction_dynamic_level_bytes = true;
    cf.compression = spec.compress ? rocksdb::kLZ4Compression : rocksdb::kNoCompression;
    // ZSTD on the last level pays for data that stays; expiring data (TTL'd families) is
    // rewritten by compaction until it leaves, so it keeps the cheaper LZ4 there too.
    cf.bottommost_compression = !spec.compress ? rocksdb::kNoCompression
                                : spec.ttl     ? rocksdb::kLZ4Compression
                                               : rocksdb::kZSTD;
    rocksdb::BlockBasedTableOptions table;
    table.block_cache = cache;
    table.block_size = 16 * 1024;
    if (spec.bloom) {
      table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
      cf.memtable_whole_key_filtering = true;
      cf.memtable_prefix_bloom_size_ratio = 0.05;
    }
    cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
    if (spec.counters) cf.merge_operator = std::make_shared<CounterMergeOperator>();
    if (spec.ttl) {
      filters.push_back(std::make_unique<TtlCompactionFilter>(options.clock));
      cf.compaction_filter = filters.back().get();
    }
    descriptors.emplace_back(spec.name, cf);
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  auto s = rocksdb::DB::Open(db_opts, options.path, descriptors, &handles, &raw);
  if (!s.ok()) {
    return FromRocks(s, fmt::format("open data directory '{}'", options.path));
  }
  std::unique_ptr<rocksdb::DB> db(raw);
  for (size_t i = 0; i < handles.size(); ++i) {
    if (handles[i]->GetID() != i) {
      // Batches address column families by id (index + 1); a store created with another
      // column family order cannot be used.
      for (auto* h : handles) db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
      return Internal(fmt::format("data directory '{}' has column family '{}' at id {}, want {}",
                                  options.path, handles[i]->GetName(), handles[i]->GetID(), i));
    }
  }
  auto store =
      std::make_unique<RocksStore>(options, std::move(wal_space_low), std::move(env), std::move(db),
                                   std::move(handles), std::move(filters), lock_fd);
  lock_guard.fd = -1;  // owned by the store now
  store->Start();
  return std::unique_ptr<Store>(std::move(store));
}

std::string EncodeCounter(int64_t value) {
  std::string out(8, '\0');
  auto u = static_cast<uint64_t>(value);
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((u >> (8 * i)) & 0xff);
  return out;
}

int64_t DecodeCounter(std::string_view value) {
  if (value.size() != 8) return 0;
  uint64_t u = 0;
  for (int i = 7; i >= 0; --i) u = (u << 8) | static_cast<uint8_t>(value[i]);
  return static_cast<int64_t>(u);
}

std::string EncodeTtlValue(int64_t expires_at_ms, std::string_view payload) {
  std::string out;
  out.reserve(8 + payload.size());
  PutFixed64BE(&out, static_cast<uint64_t>(expires_at_ms));
  out.append(payload);
  return out;
}

int64_t DecodeTtlValue(std::string_view value, std::string_view* payload) {
  if (value.size() < 8) {
    *payload = {};
    return 0;
  }
  *payload = value.substr(8);
  return static_cast<int64_t>(DecodeFixed64BE(value.data()));
}

}  // namespace fairway::storage
