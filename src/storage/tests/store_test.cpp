#include "storage/store.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <condition_variable>
#include <filesystem>
#include <mutex>

#include "testing/temp_dir.h"

namespace fairway::storage {
namespace {

using ::fairway::testing::TempDir;

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

TEST_F(StoreTest, ABatchSerializedAndRebuiltWritesTheSame) {
  WriteBatch b;
  b.Put(kData, "a", "1");
  b.Delete(kData, "gone");
  b.Merge(kCounters, "n", EncodeCounter(5));
  b.DeleteRange(kData, "x", "y");
  std::vector<std::string> seen;
  b.ForEach([&](const WriteBatch::Op& op) {
    seen.push_back(fmt::format("{}:{}:{}:{}", static_cast<int>(op.type), op.cf, op.key,
                               op.type == WriteBatch::OpType::kMerge ? "" : op.value));
  });
  EXPECT_EQ(seen, (std::vector<std::string>{"0:0:a:1", "1:0:gone:", "2:2:n:", "3:0:x:y"}));
  auto rebuilt = WriteBatch::FromData(b.Data());
  ASSERT_TRUE(rebuilt.ok()) << rebuilt.status().ToString();
  EXPECT_EQ(rebuilt->Count(), 4u);
  // Copied op by op, too.
  WriteBatch copy;
  rebuilt->ForEach([&](const WriteBatch::Op& op) { copy.Add(op); });
  EXPECT_EQ(copy.Data().substr(8), b.Data().substr(8));  // (the sequence number differs)
  ASSERT_TRUE(store_->Write(copy, /*sync=*/false).ok());
  EXPECT_EQ(store_->Get(kData, "a")->value_or(""), "1");
  EXPECT_EQ(DecodeCounter(store_->Get(kCounters, "n")->value_or("")), 5);

  EXPECT_FALSE(WriteBatch::FromData("short").ok());
  std::string cut = b.Data();
  cut.resize(cut.size() - 3);
  auto bad = WriteBatch::FromData(cut);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), ::testing::HasSubstr("not a write batch"));
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

TEST_F(StoreTest, AViewReadsEveryFamilyAsItWasWhenTaken) {
  auto rows = [&](ColumnFamily cf, const ReadView* view) {
    std::vector<std::pair<std::string, std::string>> out;
    auto it = store_->NewIterator(cf, {}, {}, /*fill_cache=*/true, view);
    for (it->SeekToFirst(); it->Valid(); it->Next()) out.emplace_back(it->key(), it->value());
    EXPECT_TRUE(it->status().ok());
    return out;
  };
  WriteBatch b;
  b.Put(kData, "a", "1");
  b.Put(kData, "b", "1");
  b.Merge(kCounters, "n", EncodeCounter(2));
  ASSERT_TRUE(store_->Write(b, false).ok());
  auto view = store_->NewReadView();
  WriteBatch later;
  later.Put(kData, "a", "2");
  later.Delete(kData, "b");
  later.Put(kData, "c", "2");
  later.Merge(kCounters, "n", EncodeCounter(3));
  ASSERT_TRUE(store_->Write(later, false).ok());
  ASSERT_TRUE(store_->Flush().ok());  // the view holds across a flush
  using Rows = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(rows(kData, view.get()), (Rows{{"a", "1"}, {"b", "1"}}));
  EXPECT_EQ(rows(kCounters, view.get()), (Rows{{"n", EncodeCounter(2)}}));
  EXPECT_EQ(rows(kData, nullptr), (Rows{{"a", "2"}, {"c", "2"}}));
  EXPECT_EQ(rows(kCounters, nullptr), (Rows{{"n", EncodeCounter(5)}}));
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

// A store on a disk that fills up (DiskFullProbe) and empties again.
class StoreHealthTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }
  void Reopen(uint64_t reserve_bytes = 0) {
    store_.reset();
    StoreOptions opts;
    opts.path = dir_.path();
    opts.column_families = {{.name = "data"}};
    opts.reserve_bytes = reserve_bytes;
    opts.recovery_interval_ms = 5;
    opts.disk_full_probe = &probe_;
    opts.on_health_change = [this](const StorageHealth& h) {
      std::lock_guard lock(mu_);
      changes_.push_back(h);
      cv_.notify_all();
    };
    auto s = Store::Open(opts);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
  }
  Status Put(const std::string& key) {
    WriteBatch b;
    b.Put(kData, key, "v");
    b.Put(kData, key + ".twin", "v");
    return store_->Write(b, /*sync=*/true);
  }
  bool Has(const std::string& key) {
    auto v = store_->Get(kData, key);
    EXPECT_TRUE(v.ok()) << v.status().ToString();
    return v.ok() && v->has_value();
  }
  // Waits (bounded) until `n` health changes were reported.
  bool WaitForChanges(size_t n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(30), [&] { return changes_.size() >= n; });
  }
  std::vector<StorageHealth> Changes() {
    std::lock_guard lock(mu_);
    return changes_;
  }

  TempDir dir_;
  DiskFullProbe probe_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<StorageHealth> changes_;
  std::unique_ptr<Store> store_;
};

TEST_F(StoreHealthTest, FullDiskRefusesWritesUntilSpaceReturnsThenResumesByItself) {
  ASSERT_TRUE(Put("before").ok());
  EXPECT_TRUE(store_->Health().writable);

  probe_.full = true;
  Status failed = Put("during");
  EXPECT_EQ(failed.code(), StatusCode::kUnavailable) << failed.ToString();
  EXPECT_FALSE(store_->Health().writable);
  EXPECT_NE(store_->Health().reason.find("space"), std::string::npos) << store_->Health().reason;
  // Later writes fail fast without reaching RocksDB, and reads keep working.
  for (int i = 0; i < 20; ++i) {
    Status again = Put("refused" + std::to_string(i));
    EXPECT_EQ(again.code(), StatusCode::kUnavailable);
    EXPECT_NE(again.message().find("refuses writes"), std::string::npos) << again.ToString();
  }
  EXPECT_TRUE(Has("before"));
  EXPECT_FALSE(Has("during"));
  EXPECT_FALSE(Has("during.twin"));
  ASSERT_TRUE(WaitForChanges(1));
  ASSERT_EQ(Changes().size(), 1u) << "one report per state change";
  EXPECT_FALSE(Changes()[0].writable);

  probe_.full = false;
  ASSERT_TRUE(WaitForChanges(2)) << "did not resume after space returned";
  EXPECT_TRUE(Changes()[1].writable);
  EXPECT_TRUE(store_->Health().writable);
  ASSERT_TRUE(Put("after").ok());

  Reopen();
  EXPECT_TRUE(Has("before"));
  EXPECT_TRUE(Has("after"));
  EXPECT_FALSE(Has("during"));
  EXPECT_FALSE(Has("during.twin"));
  EXPECT_EQ(Changes().size(), 2u);
}

TEST_F(StoreHealthTest, RepeatedFullDiskCyclesReportEachChangeOnce) {
  for (int cycle = 0; cycle < 20; ++cycle) {
    SCOPED_TRACE(cycle);
    ASSERT_TRUE(Put("k" + std::to_string(cycle)).ok());
    probe_.full = true;
    EXPECT_FALSE(Put("x" + std::to_string(cycle)).ok());
    ASSERT_TRUE(WaitForChanges(2 * cycle + 1));
    probe_.full = false;
    ASSERT_TRUE(WaitForChanges(2 * cycle + 2));
  }
  EXPECT_EQ(Changes().size(), 40u);
  for (int cycle = 0; cycle < 20; ++cycle) {
    EXPECT_TRUE(Has("k" + std::to_string(cycle)));
    EXPECT_FALSE(Has("x" + std::to_string(cycle)));
  }
}

TEST_F(StoreHealthTest, ReserveIsHeldWhileOpenAndRetakenAfterRecovery) {
  constexpr uint64_t kReserve = 2u << 20;
  Reopen(kReserve);
  std::string reserve = dir_.path() + "/" + kReserveFileName;
  ASSERT_TRUE(std::filesystem::exists(reserve));
  EXPECT_EQ(std::filesystem::file_size(reserve), kReserve);
  EXPECT_EQ(std::filesystem::status(reserve).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  ASSERT_TRUE(Put("a").ok());

  probe_.full = true;
  EXPECT_FALSE(Put("b").ok());
  ASSERT_TRUE(WaitForChanges(1));
  probe_.full = false;
  ASSERT_TRUE(WaitForChanges(2));
  EXPECT_EQ(std::filesystem::file_size(reserve), kReserve);
  ASSERT_TRUE(Put("c").ok());
}

}  // namespace
}  // namespace fairway::storage
