#include "storage/store.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "storage/tests/temp_dir.h"

namespace fairway::storage {
namespace {

constexpr ColumnFamily kData = 0;
constexpr ColumnFamily kTtl = 1;
constexpr ColumnFamily kCounters = 2;

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }
  void Reopen() {
    store_.reset();
    StoreOptions opts;
    opts.path = dir_.path();
    opts.column_families = {{.name = "data"},
                            {.name = "ttl", .ttl = true, .bloom = true},
                            {.name = "counters", .counters = true}};
    opts.clock = &clock_;
    auto s = Store::Open(opts);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
  }
  TempDir dir_;
  ManualClock clock_;
  std::unique_ptr<Store> store_;
};

TEST_F(StoreTest, BatchIsAtomicAndDurableAcrossReopen) {
  WriteBatch b;
  b.Put(kData, "a", "1");
  b.Put(kData, "b", "2");
  b.Put(kTtl, "a", EncodeTtlValue(clock_.NowMillis() + 1000, "x"));
  EXPECT_EQ(b.Count(), 3u);
  ASSERT_TRUE(store_->Write(b, /*sync=*/true).ok());
  Reopen();
  auto a = store_->Get(kData, "a");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->value_or(""), "1");
  auto t = store_->Get(kTtl, "a");
  ASSERT_TRUE(t.ok() && t->has_value());
  std::string_view payload;
  EXPECT_EQ(DecodeTtlValue(**t, &payload), clock_.NowMillis() + 1000);
  EXPECT_EQ(payload, "x");
  // Column families are separate key spaces.
  EXPECT_FALSE(store_->Get(kTtl, "b")->has_value());
}

TEST_F(StoreTest, MergedCountersAddUpAcrossBatchesFlushesAndReopen) {
  EXPECT_EQ(DecodeCounter(EncodeCounter(-5)), -5);
  EXPECT_EQ(DecodeCounter(EncodeCounter(INT64_MAX)), INT64_MAX);
  EXPECT_EQ(DecodeCounter("short"), 0);
  for (int i = 0; i < 10; ++i) {
    WriteBatch b;
    b.Merge(kCounters, "c", EncodeCounter(3));
    b.Merge(kCounters, "d", EncodeCounter(-1));
    ASSERT_TRUE(store_->Write(b, false).ok());
    if (i == 4) {
      ASSERT_TRUE(store_->Flush().ok());
    }
  }
  EXPECT_EQ(DecodeCounter(store_->Get(kCounters, "c")->value_or("")), 30);
  Reopen();
  EXPECT_EQ(DecodeCounter(store_->Get(kCounters, "c")->value_or("")), 30);
  EXPECT_EQ(DecodeCounter(store_->Get(kCounters, "d")->value_or("")), -10);
  // A Put resets the running sum.
  WriteBatch b;
  b.Put(kCounters, "c", EncodeCounter(1));
  b.Merge(kCounters, "c", EncodeCounter(1));
  ASSERT_TRUE(store_->Write(b, false).ok());
  EXPECT_EQ(DecodeCounter(store_->Get(kCounters, "c")->value_or("")), 2);
}

TEST_F(StoreTest, InjectedFailureWritesNothing) {
  store_->InjectWriteFailures(1);
  WriteBatch b;
  b.Put(kData, "k", "v");
  Status st = store_->Write(b, true);
  EXPECT_EQ(st.code(), StatusCode::kUnavailable);
  EXPECT_FALSE(store_->Get(kData, "k")->has_value());
  ASSERT_TRUE(store_->Write(b, true).ok());
  EXPECT_TRUE(store_->Get(kData, "k")->has_value());
}

TEST_F(StoreTest, IteratorBoundsAndDeleteRange) {
  WriteBatch b;
  for (std::string k : {"t1\x01"
                        "a",
                        "t1\x01"
                        "b",
                        "t2\x01"
                        "a",
                        "t3\x01"
                        "a"})
    b.Put(kData, k, k);
  ASSERT_TRUE(store_->Write(b, false).ok());
  auto it = store_->NewIterator(kData, "t1\x01", "t1\x02");
  std::vector<std::string> seen;
  for (it->SeekToFirst(); it->Valid(); it->Next()) seen.emplace_back(it->key());
  EXPECT_EQ(seen.size(), 2u);
  it->SeekToLast();
  ASSERT_TRUE(it->Valid());
  EXPECT_EQ(it->key(),
            "t1\x01"
            "b");

  WriteBatch del;
  del.DeleteRange(kData, "t2", "t3");
  ASSERT_TRUE(store_->Write(del, true).ok());
  EXPECT_FALSE(store_
                   ->Get(kData,
                         "t2\x01"
                         "a")
                   ->has_value());
  EXPECT_TRUE(store_
                  ->Get(kData,
                        "t3\x01"
                        "a")
                  ->has_value());
}

TEST_F(StoreTest, MultiGet) {
  WriteBatch b;
  b.Put(kTtl, "x", EncodeTtlValue(1, "1"));
  ASSERT_TRUE(store_->Write(b, false).ok());
  std::vector<std::optional<std::string>> out;
  ASSERT_TRUE(store_->MultiGet(kTtl, {"x", "y"}, &out).ok());
  ASSERT_EQ(out.size(), 2u);
  EXPECT_TRUE(out[0].has_value());
  EXPECT_FALSE(out[1].has_value());
}

TEST_F(StoreTest, CompactionDropsExpiredTtlValues) {
  WriteBatch b;
  b.Put(kTtl, "old", EncodeTtlValue(clock_.NowMillis() + 10, "o"));
  b.Put(kTtl, "new", EncodeTtlValue(clock_.NowMillis() + 100'000, "n"));
  ASSERT_TRUE(store_->Write(b, true).ok());
  ASSERT_TRUE(store_->Flush().ok());
  clock_.AdvanceMillis(1000);
  ASSERT_TRUE(store_->CompactRange(kTtl, "", "").ok());
  EXPECT_FALSE(store_->Get(kTtl, "old")->has_value());
  EXPECT_TRUE(store_->Get(kTtl, "new")->has_value());
}

}  // namespace
}  // namespace fairway::storage
