#include "log/tail_cache.h"

#include <algorithm>

namespace fairway::log {

TailCache::TailCache(size_t budget_bytes) : budget_(budget_bytes) {}

void TailCache::Add(const std::string& partition, Block block) {
  if (budget_ == 0 || !block.data || block.count == 0) return;
  const size_t size = block.data->size();
  std::lock_guard lock(mu_);
  Partition& p = partitions_[partition];
  if (!p.blocks.empty()) {
    const Block& last = p.blocks.back();
    if (last.base + last.count != block.base) {  // not contiguous: start over from this block
      bytes_ -= p.bytes;
      blocks_ -= p.blocks.size();
      p.blocks.clear();
      p.bytes = 0;
    }
  }
  p.blocks.push_back(std::move(block));
  ++blocks_;
  p.bytes += size;
  bytes_ += size;
  order_.emplace_back(partition, p.blocks.back().base);
  // One partition keeps at most a quarter of the budget (its newest block always stays).
  while (p.blocks.size() > 1 && p.bytes > budget_ / 4) {
    p.bytes -= p.blocks.front().data->size();
    bytes_ -= p.blocks.front().data->size();
    p.blocks.pop_front();
    --blocks_;
  }
  EvictLocked();
}

void TailCache::EvictLocked() {
  while (bytes_ > budget_ && !order_.empty()) {
    auto [name, base] = std::move(order_.front());
    order_.pop_front();
    auto it = partitions_.find(name);
    if (it == partitions_.end()) continue;
    Partition& p = it->second;
    // Only the partition's oldest block may leave, which keeps the rest contiguous; a stale
    // entry (that block already left) names a base below the oldest one and is skipped.
    if (p.blocks.empty() || p.blocks.front().base != base) continue;
    p.bytes -= p.blocks.front().data->size();
    bytes_ -= p.blocks.front().data->size();
    p.blocks.pop_front();
    --blocks_;
    if (p.blocks.empty()) partitions_.erase(it);
  }
  // Entries of blocks that left another way pile up; rebuild the list when they outnumber the
  // live ones.
  if (order_.size() > 2 * blocks_ + 1024) {
    std::deque<std::pair<std::string, uint64_t>> live;
    for (auto& e : order_) {
      auto it = partitions_.find(e.first);
      if (it != partitions_.end() && !it->second.blocks.empty() &&
          e.second >= it->second.blocks.front().base) {
        live.push_back(std::move(e));
      }
    }
    order_ = std::move(live);
  }
}

bool TailCache::Read(const std::string& partition, uint64_t from, size_t max_records,
                     std::vector<Block>* out) const {
  std::lock_guard lock(mu_);
  auto it = partitions_.find(partition);
  if (it == partitions_.end() || it->second.blocks.empty()) return false;
  const auto& blocks = it->second.blocks;
  if (from < blocks.front().base) return false;
  size_t records = 0;
  for (const Block& b : blocks) {
    if (records >= max_records) break;
    const uint64_t end = b.base + b.count;
    if (end <= from) continue;
    out->push_back(b);
    records += end - std::max(from, b.base);
  }
  return true;
}

void TailCache::DropBelow(const std::string& partition, uint64_t start) {
  std::lock_guard lock(mu_);
  auto it = partitions_.find(partition);
  if (it == partitions_.end()) return;
  Partition& p = it->second;
  while (!p.blocks.empty() && p.blocks.front().base + p.blocks.front().count <= start) {
    p.bytes -= p.blocks.front().data->size();
    bytes_ -= p.blocks.front().data->size();
    p.blocks.pop_front();
    --blocks_;
  }
  // Retention removes whole blocks, so none straddles `start`.
  if (p.blocks.empty()) partitions_.erase(it);
}

void TailCache::DropPrefix(std::string_view prefix) {
  std::lock_guard lock(mu_);
  for (auto it = partitions_.begin(); it != partitions_.end();) {
    if (std::string_view(it->first).substr(0, prefix.size()) == prefix) {
      bytes_ -= it->second.bytes;
      blocks_ -= it->second.blocks.size();
      it = partitions_.erase(it);
    } else {
      ++it;
    }
  }
}

size_t TailCache::bytes() const {
  std::lock_guard lock(mu_);
  return bytes_;
}

}  // namespace fairway::log
