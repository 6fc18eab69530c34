#pragma once
// TailCache: the newest committed blocks of each partition, kept in memory after their write so
// that consumers that keep up read them without a store lookup (no iterator, no seek, no file
// read). A partition's cached blocks are always contiguous and end at its newest committed
// record: blocks are added in commit order and evicted oldest first, so a read that starts at or
// above the oldest cached offset is answered from memory alone. Thread-safe.

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace fairway::log {

class TailCache {
 public:
  struct Block {
    uint64_t base = 0;
    uint32_t count = 0;
    std::shared_ptr<const std::string> data;  // the block as stored (log/block.h)
  };

  // `budget_bytes` bounds the blocks held in all; 0 disables the cache. One partition holds at
  // most a quarter of the budget, so one busy partition cannot push out every other.
  explicit TailCache(size_t budget_bytes);

  // Adds a committed block of `partition` (the store's partition key prefix). Blocks of one
  // partition must come in commit order; a block that does not start where the cached ones end
  // replaces them.
  void Add(const std::string& partition, Block block);

  // When the cache holds the partition from `from` on: appends the blocks with records at or
  // above `from`, oldest first, until they hold `max_records` records from `from`, and returns
  // true (with no blocks when `from` is at or past the newest record). Returns false when it
  // does not (nothing cached, or `from` below the oldest cached record): read the store.
  bool Read(const std::string& partition, uint64_t from, size_t max_records,
            std::vector<Block>* out) const;

  // Forgets blocks that end at or below `start` (retention moved the partition's start).
  void DropBelow(const std::string& partition, uint64_t start);
  // Forgets every partition whose key starts with `prefix` (a dropped tenant).
  void DropPrefix(std::string_view prefix);

  size_t bytes() const;
  size_t budget_bytes() const { return budget_; }

 private:
  struct Partition {
    std::deque<Block> blocks;
    size_t bytes = 0;
  };
  // Evicts oldest-first until the total fits the budget.
  void EvictLocked();

  const size_t budget_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Partition> partitions_;
  // Every cached block in the order it was added, as (partition, base): the global eviction
  // order. Entries whose block has already left (evicted per partition, dropped) are skipped.
  std::deque<std::pair<std::string, uint64_t>> order_;
  size_t bytes_ = 0;
  size_t blocks_ = 0;
};

}  // namespace fairway::log
