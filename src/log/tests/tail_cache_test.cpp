#include "log/tail_cache.h"

#include <gtest/gtest.h>

namespace fairway::log {
namespace {

TailCache::Block MakeBlock(uint64_t base, uint32_t count, size_t bytes) {
  return {base, count, std::make_shared<const std::string>(bytes, 'x')};
}

// The bases of the blocks a read returns.
std::vector<uint64_t> Bases(const std::vector<TailCache::Block>& blocks) {
  std::vector<uint64_t> out;
  for (const auto& b : blocks) out.push_back(b.base);
  return out;
}

TEST(TailCacheTest, AnswersReadsFromTheOldestCachedOffsetOnAndNotBelow) {
  TailCache cache(1 << 20);
  std::vector<TailCache::Block> out;
  EXPECT_FALSE(cache.Read("p", 0, 100, &out));  // nothing cached: read the store
  cache.Add("p", MakeBlock(10, 5, 100));
  cache.Add("p", MakeBlock(15, 5, 100));
  cache.Add("p", MakeBlock(20, 5, 100));
  EXPECT_FALSE(cache.Read("p", 9, 100, &out));  // below the oldest cached record
  EXPECT_TRUE(out.empty());
  ASSERT_TRUE(cache.Read("p", 10, 100, &out));
  EXPECT_EQ(Bases(out), (std::vector<uint64_t>{10, 15, 20}));
  out.clear();
  ASSERT_TRUE(cache.Read("p", 17, 100, &out));  // from the middle of a block
  EXPECT_EQ(Bases(out), (std::vector<uint64_t>{15, 20}));
  out.clear();
  ASSERT_TRUE(cache.Read("p", 12, 4, &out));  // 3 records of the first block, 1 of the next
  EXPECT_EQ(Bases(out), (std::vector<uint64_t>{10, 15}));
  out.clear();
  ASSERT_TRUE(cache.Read("p", 25, 100, &out));  // caught up: nothing new, and that is an answer
  EXPECT_TRUE(out.empty());
  EXPECT_FALSE(cache.Read("other", 0, 100, &out));
}

TEST(TailCacheTest, ABlockThatDoesNotContinueThePartitionReplacesIt) {
  TailCache cache(1 << 20);
  cache.Add("p", MakeBlock(0, 5, 100));
  cache.Add("p", MakeBlock(9, 1, 100));  // a gap: what was cached no longer ends at the newest
  std::vector<TailCache::Block> out;
  EXPECT_FALSE(cache.Read("p", 5, 100, &out));
  ASSERT_TRUE(cache.Read("p", 9, 100, &out));
  EXPECT_EQ(Bases(out), (std::vector<uint64_t>{9}));
  EXPECT_EQ(cache.bytes(), 100u);
}

TEST(TailCacheTest, EvictsOldestFirstWithinTheBudgetAndKeepsPartitionsContiguous) {
  TailCache cache(1000);
  for (std::string p : {"a", "b", "c", "d", "e"}) {  // two blocks each: the budget is full
    cache.Add(p, MakeBlock(0, 1, 100));
    cache.Add(p, MakeBlock(1, 1, 100));
  }
  EXPECT_EQ(cache.bytes(), 1000u);
  cache.Add("f", MakeBlock(0, 1, 100));  // over budget: the oldest block (a's first) leaves
  EXPECT_EQ(cache.bytes(), 1000u);
  std::vector<TailCache::Block> out;
  EXPECT_FALSE(cache.Read("a", 0, 10, &out));
  ASSERT_TRUE(cache.Read("a", 1, 10, &out));
  EXPECT_EQ(Bases(out), (std::vector<uint64_t>{1}));
  out.clear();
  ASSERT_TRUE(cache.Read("b", 0, 10, &out));
  EXPECT_EQ(Bases(out), (std::vector<uint64_t>{0, 1}));
  // One partition holds at most a quarter of the budget, its newest blocks.
  TailCache small(1000);
  for (uint64_t i = 0; i < 10; ++i) small.Add("hot", MakeBlock(i, 1, 100));
  EXPECT_EQ(small.bytes(), 200u);
  out.clear();
  ASSERT_TRUE(small.Read("hot", 8, 10, &out));
  EXPECT_EQ(Bases(out), (std::vector<uint64_t>{8, 9}));
  EXPECT_FALSE(small.Read("hot", 7, 10, &out));
}

TEST(TailCacheTest, BudgetExtremes) {
  std::vector<TailCache::Block> out;
  TailCache off(0);  // turned off: holds nothing
  off.Add("p", MakeBlock(0, 1, 10));
  EXPECT_EQ(off.bytes(), 0u);
  EXPECT_FALSE(off.Read("p", 0, 10, &out));
  TailCache tiny(1);  // smaller than any block: nothing stays
  tiny.Add("p", MakeBlock(0, 1, 10));
  EXPECT_EQ(tiny.bytes(), 0u);
  EXPECT_FALSE(tiny.Read("p", 0, 10, &out));
  TailCache huge(SIZE_MAX);  // no overflow in the per-partition share
  for (uint64_t i = 0; i < 100; ++i) huge.Add("p", MakeBlock(i, 1, 1000));
  EXPECT_EQ(huge.bytes(), 100'000u);
  ASSERT_TRUE(huge.Read("p", 0, 1000, &out));
  EXPECT_EQ(out.size(), 100u);
  // Many partitions churning through a small budget: the byte count stays within it.
  TailCache churn(10'000);
  for (uint64_t i = 0; i < 20'000; ++i)
    churn.Add("p" + std::to_string(i % 500), MakeBlock(i / 500, 1, 100));
  EXPECT_LE(churn.bytes(), 10'000u);
  EXPECT_GE(churn.bytes(), 9'900u);
}

TEST(TailCacheTest, RetentionAndTenantDropsForgetBlocks) {
  TailCache cache(1 << 20);
  for (uint64_t i = 0; i < 5; ++i) cache.Add(std::string("t1\0p0", 5), MakeBlock(i * 10, 10, 100));
  cache.Add(std::string("t1\0p1", 5), MakeBlock(0, 10, 100));
  cache.Add(std::string("t10\0p0", 6), MakeBlock(0, 10, 100));
  cache.DropBelow(std::string("t1\0p0", 5), 20);  // retention removed blocks 0 and 10
  std::vector<TailCache::Block> out;
  EXPECT_FALSE(cache.Read(std::string("t1\0p0", 5), 19, 100, &out));
  ASSERT_TRUE(cache.Read(std::string("t1\0p0", 5), 20, 100, &out));
  EXPECT_EQ(Bases(out), (std::vector<uint64_t>{20, 30, 40}));
  cache.DropPrefix(std::string("t1\0", 3));
  EXPECT_FALSE(cache.Read(std::string("t1\0p0", 5), 20, 100, &out));
  EXPECT_FALSE(cache.Read(std::string("t1\0p1", 5), 0, 100, &out));
  out.clear();
  ASSERT_TRUE(cache.Read(std::string("t10\0p0", 6), 0, 100, &out));  // another tenant stays
  EXPECT_EQ(cache.bytes(), 100u);
}

}  // namespace
}  // namespace fairway::log
