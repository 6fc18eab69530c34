#pragma once
// Store: Fairway's embedded key-value storage, a thin wrapper over RocksDB that keeps RocksDB's
// headers out of every other module. Column families, atomic write batches (optionally synced
// to disk), point and batched reads, bounded iterators, and TTL column families whose values
// carry their own expiry time and are dropped by compaction once expired.
//
// Thread-safe: any thread may read, write or iterate. One Store per data directory (RocksDB
// holds a lock on it).

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/status.h"

namespace fairway::storage {

struct ColumnFamilySpec {
  std::string name;
  // Values begin with an 8-byte big-endian expiry time (ms since epoch); compaction drops
  // entries whose expiry has passed. Readers must still check expiry themselves.
  bool ttl = false;
  // Compress SST blocks (LZ4). Off for values the caller already compressed.
  bool compress = true;
  // Keep a whole-key bloom filter: cheap negative point lookups (dedup, index probes).
  bool bloom = false;
  // Memtable size in bytes.
  size_t write_buffer_bytes = 32u << 20;
  // Values are signed 64-bit counters (EncodeCounter) and WriteBatch::Merge adds to them, so
  // concurrent writers can count without reading first.
  bool counters = false;
};

// Whether a Store accepts writes.
struct StorageHealth {
  bool writable = true;
  // Why writes are refused (the storage error that started it), empty while writable.
  std::string reason;
  // Why the latest attempt to resume failed; empty before the first attempt.
  std::string last_resume_error;
};

// A switch that makes every file write of a Store fail with "no space left on device", as a
// full disk would, until it is turned off. For tests of the failed state and its recovery.
struct DiskFullProbe {
  std::atomic<bool> full{false};
};

struct StoreOptions {
  std::string path;
  // Column families besides "default", in a fixed order: the handle of the i-th is `i`.
  std::vector<ColumnFamilySpec> column_families;
  // Shared block cache for reads.
  size_t block_cache_bytes = 128u << 20;
  // Background flush/compaction threads.
  int background_jobs = 2;
  // Time source for TTL expiry (not owned; must outlive the Store).
  const Clock* clock = SystemClock::Default();
  // Bytes held in a preallocated file (kReserveFileName) in the store directory, so that a
  // full disk never leaves the store without room to start. The file is deleted just before
  // the store opens, giving the replay of the write-ahead log room, and re-created after; the
  // write-ahead log is capped at half of it (RocksDB's max_total_wal_size) so that its replay
  // fits. Writes are accepted only while the reserve is held. 0: no reserve, and a 256 MiB
  // write-ahead log cap.
  uint64_t reserve_bytes = 0;
  // How often a store that refuses writes after a storage error tries to resume.
  int recovery_interval_ms = 1000;
  // Told of every change of Health() (entering and leaving the failed state), on the thread
  // that saw it. Must not call into the Store.
  std::function<void(const StorageHealth&)> on_health_change;
  // Test probe (not owned; must outlive the Store): file writes fail while it is set.
  DiskFullProbe* disk_full_probe = nullptr;
};

// A file in the store directory on which an open Store holds an exclusive flock: a second
// process cannot open the same directory (FailedPrecondition).
inline constexpr char kLockFileName[] = "FAIRWAY.lock";

// The name of the reserve file (StoreOptions::reserve_bytes) in the store directory.
inline constexpr char kReserveFileName[] = "FAIRWAY-RESERVE";

// Index into StoreOptions::column_families.
using ColumnFamily = uint32_t;

// A set of writes applied atomically by Store::Write.
class WriteBatch {
 public:
  WriteBatch();
  ~WriteBatch();
  WriteBatch(WriteBatch&&) noexcept;
  WriteBatch& operator=(WriteBatch&&) noexcept;

  void Put(ColumnFamily cf, std::string_view key, std::string_view value);
  void Delete(ColumnFamily cf, std::string_view key);
  // Adds the counter `delta` (EncodeCounter) to the value of `key`; only in a column family
  // with ColumnFamilySpec::counters. An absent key counts as 0.
  void Merge(ColumnFamily cf, std::string_view key, std::string_view delta);
  // Deletes keys in [begin, end).
  void DeleteRange(ColumnFamily cf, std::string_view begin, std::string_view end);
  void Clear();
  size_t Count() const;
  size_t ByteSize() const;

  // One write of a batch, as ForEach shows it. For kDeleteRange, `value` is the range's end.
  enum class OpType { kPut, kDelete, kMerge, kDeleteRange };
  struct Op {
    OpType type;
    ColumnFamily cf;
    std::string_view key;
    std::string_view value;
  };
  // Calls `fn` for each write, in order; the views last until the batch changes.
  void ForEach(const std::function<void(const Op&)>& fn) const;
  // Adds `op` (as ForEach showed it) to this batch.
  void Add(const Op& op);
  // The batch's serialized form, and a batch rebuilt from one (InvalidArgument when `data` is
  // not a whole batch of Fairway's column families).
  std::string Data() const;
  static Result<WriteBatch> FromData(std::string data);

 private:
  friend struct WriteBatchAccess;  // defined in store.cpp
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Iterates one column family within optional [lower, upper) bounds. Not thread-safe; holds an
// implicit snapshot for its lifetime.
class Iterator {
 public:
  virtual ~Iterator() = default;
  virtual void Seek(std::string_view key) = 0;
  virtual void SeekForPrev(std::string_view key) = 0;
  virtual void SeekToFirst() = 0;
  virtual void SeekToLast() = 0;
  virtual bool Valid() const = 0;
  virtual void Next() = 0;
  virtual void Prev() = 0;
  virtual std::string_view key() const = 0;
  virtual std::string_view value() const = 0;
  // Non-OK if iteration stopped because of an error rather than the end of data.
  virtual Status status() const = 0;
};

// A consistent view of a whole Store (every column family) as of the moment it was taken:
// iterators made with it read that moment, whatever is written later. Held views keep the rows
// they see from being compacted away: release them soon.
class ReadView {
 public:
  virtual ~ReadView() = default;
};

class Store {
 public:
  // Opens (creating if missing) the store at options.path with the given column families.
  static Result<std::unique_ptr<Store>> Open(const StoreOptions& options);
  virtual ~Store() = default;

  // Applies `batch` atomically. With `sync`, returns only once the write-ahead log is on disk
  // (fsync): the write survives power loss. A failed write is applied whole or not at all:
  // never in part. It may still be applied (its log record was written, the sync failed, and
  // the next open replays it), so callers retry idempotently: ingest deduplicates by
  // messageId, the engine commits a work item's state and offsets together.
  //
  // A storage error (a full disk, an I/O error) puts the store in a failed state: from then on
  // every write fails fast with Unavailable, without reaching RocksDB, until a background
  // thread has resumed RocksDB (DB::Resume), written a synced probe and re-created the reserve
  // file; then writes are accepted again. Reads keep working throughout.
  virtual Status Write(WriteBatch& batch, bool sync) = 0;
  // Makes every write so far durable (fsync of the write-ahead log), as if each had been written
  // with `sync`. Lets a caller write unsynced under a lock and sync after releasing it, so other
  // writers need not wait for its fsync. A failure puts the store in the failed state as a
  // failed Write does.
  virtual Status SyncWal() = 0;
  // Whether writes are accepted now, and why not.
  virtual StorageHealth Health() const = 0;
  virtual Result<std::optional<std::string>> Get(ColumnFamily cf, std::string_view key) = 0;
  // Looks up many keys at once; results[i] answers keys[i].
  virtual Status MultiGet(ColumnFamily cf, const std::vector<std::string_view>& keys,
                          std::vector<std::optional<std::string>>* results) = 0;
  // `fill_cache` false: blocks read by this iterator do not displace the read cache (scans
  // that read data once, such as consumers of the log). With `view`, the iterator reads that
  // view (which must outlive it) instead of the latest state.
  virtual std::unique_ptr<Iterator> NewIterator(ColumnFamily cf, std::string lower = {},
                                                std::string upper = {}, bool fill_cache = true,
                                                const ReadView* view = nullptr) = 0;
  // A view of the store as of now.
  virtual std::unique_ptr<ReadView> NewReadView() = 0;
  // Compacts [begin, end) now (frees space after range deletes; applies TTL).
  virtual Status CompactRange(ColumnFamily cf, std::string_view begin, std::string_view end) = 0;
  // Bytes of live data: SST files plus memtables not yet flushed.
  virtual uint64_t DiskBytes() = 0;
  // Approximate bytes the keys in [begin, end) of `cf` take, in files and memtables (a range
  // smaller than a data block may count as 0).
  virtual uint64_t ApproximateBytes(ColumnFamily cf, std::string_view begin,
                                    std::string_view end) = 0;
  // Flushes memtables to SST files.
  virtual Status Flush() = 0;

  // Test probe: the next `n` writes fail with Unavailable before reaching RocksDB, as a full or
  // failing disk would.
  virtual void InjectWriteFailures(int n) = 0;
};

// Helpers for counter column families: a counter value is 8 bytes, little-endian two's complement.
std::string EncodeCounter(int64_t value);
// 0 for a malformed value.
int64_t DecodeCounter(std::string_view value);

// Helpers for TTL column families.
std::string EncodeTtlValue(int64_t expires_at_ms, std::string_view payload);
// Returns the expiry of a TTL value (0 when malformed) and sets `payload`.
int64_t DecodeTtlValue(std::string_view value, std::string_view* payload);

}  // namespace fairway::storage
