#include "log/embedded_log.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <future>
#include <mutex>
#include <set>
#include <thread>

#include "common/time_format.h"
#include "log/block.h"
#include "storage/schema.h"
#include "testing/status_matchers.h"
#include "testing/store_and_log.h"

namespace fairway::log {
namespace {

using model::Activity;
using model::ActivityType;

Activity MakeActivity(std::string message_id, std::string user, int64_t ts,
                      ActivityType type = ActivityType::kTrack, std::string event = "Clicked") {
  Activity a;
  a.type = type;
  a.message_id = MessageId(std::move(message_id));
  a.user_id = std::move(user);
  a.event = std::move(event);
  a.timestamp_ms = ts;
  a.received_at_ms = ts;
  a.fields_json = R"("properties":{"url":"/pricing","plan":"pro"})";
  return a;
}

class EmbeddedLogTest : public ::fairway::testing::StoreAndLogTest {
 protected:
  EmbeddedLogTest() { clock_.AdvanceMillis(1'709'208'000'000 - clock_.NowMillis()); }

  // Closes the store and the log and opens them again on the same files, with `options`.
  void Reopen(EmbeddedLogOptions options = {}) { ASSERT_OK(StoreAndLog::Reopen({.log = options})); }

  AppendRequest Request(const std::string& tenant, std::vector<Activity> acts,
                        uint32_t partitions = 4) {
    AppendRequest r;
    r.tenant = TenantId(tenant);
    r.partitions = partitions;
    r.dedup_window_ms = 3'600'000;
    r.retention_ms = 0;
    r.activities = std::move(acts);
    return r;
  }

  Result<AppendResult> AppendSync(AppendRequest r) {
    std::promise<Result<AppendResult>> p;
    auto f = p.get_future();
    log_->Append(std::move(r), [&](Result<AppendResult> res) { p.set_value(std::move(res)); });
    return f.get();
  }

  std::vector<std::string> ReadAllIds(const std::string& tenant, uint32_t partitions = 4) {
    std::vector<std::string> ids;
    for (uint32_t p = 0; p < partitions; ++p) {
      auto r = log_->Read(TenantId(tenant), PartitionId(p), Offset(0), 1'000'000);
      EXPECT_TRUE(r.ok()) << r.status().ToString();
      if (!r.ok()) continue;
      for (auto& e : *r) ids.push_back(e.activity.message_id.str());
    }
    std::sort(ids.begin(), ids.end());
    return ids;
  }
};

TEST_F(EmbeddedLogTest, AppendsReadBackWithContiguousOffsetsPerPartition) {
  std::vector<Activity> acts;
  for (int i = 0; i < 200; ++i) {
    acts.push_back(MakeActivity("m" + std::to_string(i), "u" + std::to_string(i % 37), 1000 + i));
  }
  auto r = AppendSync(Request("acme", acts));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->stored, 200u);
  uint64_t total = 0;
  for (uint32_t p = 0; p < 4; ++p) {
    auto entries = log_->Read(TenantId("acme"), PartitionId(p), Offset(0), 1000);
    ASSERT_TRUE(entries.ok());
    for (size_t i = 0; i < entries->size(); ++i) {
      const auto& e = (*entries)[i];
      EXPECT_EQ(e.offset.value(), i);                               // contiguous from 0
      EXPECT_EQ(PartitionFor(e.activity.LeadKey(), 4).value(), p);  // lead -> partition
    }
    auto hw = log_->HighWatermark(TenantId("acme"), PartitionId(p));
    ASSERT_TRUE(hw.ok());
    EXPECT_EQ(hw->value(), entries->size());
    total += entries->size();
  }
  EXPECT_EQ(total, 200u);
  // Per-lead order is log order.
  auto entries = log_->Read(TenantId("acme"), PartitionFor("u5", 4), Offset(0), 1000);
  int64_t last = 0;
  for (const auto& e : *entries) {
    if (e.activity.user_id != "u5") continue;
    EXPECT_GT(e.activity.timestamp_ms, last);
    last = e.activity.timestamp_ms;
  }
}

TEST_F(EmbeddedLogTest, ReadFromMiddleOffsetAndAcrossBlocks) {
  for (int batch = 0; batch < 5; ++batch) {
    std::vector<Activity> acts;
    for (int i = 0; i < 10; ++i) {
      acts.push_back(MakeActivity(fmt::format("b{}-{}", batch, i), "same-lead", batch * 10 + i));
    }
    ASSERT_TRUE(AppendSync(Request("acme", acts, 1)).ok());
  }
  auto r = log_->Read(TenantId("acme"), PartitionId(0), Offset(23), 15);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 15u);
  EXPECT_EQ(r->front().offset.value(), 23u);
  EXPECT_EQ(r->front().activity.message_id.str(), "b2-3");
  EXPECT_EQ(r->back().offset.value(), 37u);
}

// Consumers that keep up read the newest blocks from memory; what they get is exactly what the
// store holds, from any offset, across a restart (which empties the cache) and with it off.
TEST_F(EmbeddedLogTest, ReadsOfTheNewestRecordsComeFromMemoryAndMatchTheStore) {
  const std::string help = "Partition reads, by where their records came from.";
  auto reads = [&](const char* source) {
    return metrics_->GetCounter("fairway_log_reads_total", help, {{"source", source}})->value();
  };
  for (int batch = 0; batch < 5; ++batch) {
    std::vector<Activity> acts;
    for (int i = 0; i < 10; ++i) {
      acts.push_back(MakeActivity(fmt::format("b{}-{}", batch, i), "lead", batch * 10 + i));
    }
    ASSERT_OK(AppendSync(Request("acme", acts, 1)));
  }
  storage::WriteBatch batch;
  ASSERT_OK(log_->AppendInWrite(
      Request("acme", {MakeActivity("generated", "lead", 99)}, 1), &batch,
      [&](storage::WriteBatch* b) { return store_->Write(*b, /*sync=*/false); }));
  // (from, max) -> "offset:messageId" of every entry read.
  auto read = [&](uint64_t from, size_t max) {
    auto r = log_->Read(TenantId("acme"), PartitionId(0), Offset(from), max);
    EXPECT_OK(r);
    std::vector<std::string> out;
    if (r.ok()) {
      for (const auto& e : *r) {
        out.push_back(fmt::format("{}:{}", e.offset.value(), e.activity.message_id.str()));
      }
    }
    return out;
  };
  const std::vector<std::pair<uint64_t, size_t>> reads_to_make = {
      {0, 1000}, {23, 15}, {49, 5}, {50, 10}, {51, 10}, {500, 10}, {7, 0}};
  std::vector<std::vector<std::string>> from_memory;
  for (auto [from, max] : reads_to_make) from_memory.push_back(read(from, max));
  EXPECT_EQ(reads("memory"), reads_to_make.size());
  EXPECT_EQ(reads("store"), 0u);
  ASSERT_EQ(from_memory[0].size(), 51u);
  EXPECT_EQ(from_memory[0].back(), "50:generated");
  EXPECT_EQ(from_memory[1].front(), "23:b2-3");
  EXPECT_EQ(from_memory[1].size(), 15u);
  EXPECT_EQ(from_memory[3], std::vector<std::string>{"50:generated"});
  EXPECT_TRUE(from_memory[4].empty());
  EXPECT_TRUE(from_memory[6].empty());

  for (size_t cache_bytes : {size_t{64} << 20, size_t{0}}) {
    EmbeddedLogOptions options;
    options.tail_cache_bytes = cache_bytes;
    Reopen(options);
    for (size_t i = 0; i < reads_to_make.size(); ++i) {
      auto [from, max] = reads_to_make[i];
      EXPECT_EQ(read(from, max), from_memory[i]) << "from " << from << ", max " << max;
    }
    EXPECT_EQ(reads("memory"), 0u);
    EXPECT_EQ(reads("store"), reads_to_make.size());
  }
  // With the cache off, new records are read from the store too.
  ASSERT_OK(AppendSync(Request("acme", {MakeActivity("late", "lead", 100)}, 1)));
  EXPECT_EQ(read(51, 10), std::vector<std::string>{"51:late"});
  EXPECT_EQ(reads("memory"), 0u);
}

// A reader that keeps up while group commits and AppendInWrite run on other threads always gets
// the records from exactly the offset it asked for, contiguous, and the same ones the store holds
// after a restart: the tail cache (tiny here, so blocks are evicted and reads fall back to the
// store all the time) never skips, repeats or reorders a record.
TEST_F(EmbeddedLogTest, AReaderThatKeepsUpSeesEveryRecordOnceInOrderWhileAppendsRun) {
  EmbeddedLogOptions options;
  options.sync = false;
  options.tail_cache_bytes = 4096;
  Reopen(options);
  constexpr int kGroups = 150, kPerGroup = 5, kGenerated = 150;
  constexpr uint64_t kTotal = kGroups * kPerGroup + kGenerated;
  std::thread ingest([&] {
    for (int g = 0; g < kGroups; ++g) {
      std::vector<Activity> acts;
      for (int i = 0; i < kPerGroup; ++i) {
        acts.push_back(MakeActivity(fmt::format("i{}-{}", g, i), "lead", g * 10 + i));
      }
      EXPECT_OK(AppendSync(Request("acme", std::move(acts), 1)));
    }
  });
  std::thread engine([&] {
    auto write = [&](storage::WriteBatch* b) { return store_->Write(*b, false); };
    for (int g = 0; g < kGenerated; ++g) {
      storage::WriteBatch batch;
      EXPECT_OK(log_->AppendInWrite(
          Request("acme", {MakeActivity(fmt::format("g{}", g), "lead", g)}, 1), &batch, write));
    }
  });
  std::vector<std::string> seen;  // message ids by offset, as the reader got them
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (seen.size() < kTotal && std::chrono::steady_clock::now() < deadline) {
    auto r = log_->Read(TenantId("acme"), PartitionId(0), Offset(seen.size()), 7);
    ASSERT_OK(r);
    for (const auto& e : *r) {
      ASSERT_EQ(e.offset.value(), seen.size()) << "a record was skipped or repeated";
      seen.push_back(e.activity.message_id.str());
    }
  }
  ingest.join();
  engine.join();
  ASSERT_EQ(seen.size(), kTotal);
  const std::string help = "Partition reads, by where their records came from.";
  EXPECT_GT(metrics_->GetCounter("fairway_log_reads_total", help, {{"source", "memory"}})->value(),
            0u);
  Reopen(options);  // nothing cached: the store's own answer
  auto stored = log_->Read(TenantId("acme"), PartitionId(0), Offset(0), kTotal + 1);
  ASSERT_OK(stored);
  ASSERT_EQ(stored->size(), kTotal);
  for (uint64_t i = 0; i < kTotal; ++i) EXPECT_EQ((*stored)[i].activity.message_id.str(), seen[i]);
}

TEST_F(EmbeddedLogTest, ConcurrentAppendsShareOneGroupCommit) {
  std::promise<void> release;
  log_->PauseWriterUntil(release.get_future().share());
  constexpr int kRequests = 50;
  std::vector<std::promise<Result<AppendResult>>> done(kRequests);
  for (int i = 0; i < kRequests; ++i) {
    log_->Append(Request("acme", {MakeActivity("m" + std::to_string(i), "u", i)}),
                 [&done, i](Result<AppendResult> r) { done[i].set_value(std::move(r)); });
  }
  uint64_t commits_before = metrics_->GetCounter("fairway_log_commits_total", "")->value();
  release.set_value();
  for (auto& d : done) ASSERT_TRUE(d.get_future().get().ok());
  uint64_t commits =
      metrics_->GetCounter("fairway_log_commits_total", "")->value() - commits_before;
  EXPECT_EQ(commits, 1u) << "50 queued requests must share one fsync";
  EXPECT_EQ(ReadAllIds("acme").size(), 50u);
}

TEST_F(EmbeddedLogTest, DuplicateMessageIdsAreStoredOnceWithinTheWindow) {
  auto first =
      AppendSync(Request("acme", {MakeActivity("m1", "u", 1), MakeActivity("m2", "u", 2)}));
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->stored, 2u);
  // A retry, plus a duplicate inside one request.
  auto retry = AppendSync(Request("acme", {MakeActivity("m1", "u", 1), MakeActivity("m3", "u", 3),
                                           MakeActivity("m3", "u", 3)}));
  ASSERT_TRUE(retry.ok());
  EXPECT_EQ(retry->stored, 1u);
  EXPECT_EQ(retry->duplicates, 2u);
  // Another tenant may use the same messageId.
  EXPECT_EQ(AppendSync(Request("other", {MakeActivity("m1", "u", 1)}))->stored, 1u);
  // The window survives a restart.
  Reopen();
  EXPECT_EQ(AppendSync(Request("acme", {MakeActivity("m2", "u", 2)}))->duplicates, 1u);
  EXPECT_EQ(ReadAllIds("acme"), (std::vector<std::string>{"m1", "m2", "m3"}));
  // After the window, the same id is new again.
  clock_.AdvanceMillis(3'600'001);
  EXPECT_EQ(AppendSync(Request("acme", {MakeActivity("m1", "u", 1)}))->stored, 1u);
}

TEST_F(EmbeddedLogTest, FailedWriteStoresNothingAndLeavesNoOffsetGap) {
  ASSERT_TRUE(AppendSync(Request("acme", {MakeActivity("a", "u", 1)}, 1)).ok());
  store_->InjectWriteFailures(1);
  auto failed =
      AppendSync(Request("acme", {MakeActivity("b", "u", 2), MakeActivity("c", "u", 3)}, 1));
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(ReadAllIds("acme", 1), (std::vector<std::string>{"a"}));
  // The failed ids were not remembered as seen, and offsets continue without a gap.
  ASSERT_EQ(AppendSync(Request("acme", {MakeActivity("b", "u", 2)}, 1))->stored, 1u);
  auto r = log_->Read(TenantId("acme"), PartitionId(0), Offset(0), 10);
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[1].offset.value(), 1u);
}

TEST_F(EmbeddedLogTest, OffsetsContinueAfterRestart) {
  ASSERT_TRUE(
      AppendSync(Request("acme", {MakeActivity("a", "u", 1), MakeActivity("b", "u", 2)}, 1)).ok());
  Reopen();
  ASSERT_TRUE(AppendSync(Request("acme", {MakeActivity("c", "u", 3)}, 1)).ok());
  auto r = log_->Read(TenantId("acme"), PartitionId(0), Offset(0), 10);
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[2].offset.value(), 2u);
  EXPECT_EQ((*r)[2].activity.message_id.str(), "c");
}

TEST_F(EmbeddedLogTest, QueryByLeadPaginatesNewestFirstWithFilters) {
  std::vector<Activity> acts;
  for (int i = 0; i < 25; ++i) {
    acts.push_back(MakeActivity("t" + std::to_string(i), "alice", 1000 + i));
  }
  Activity page = MakeActivity("p0", "alice", 2000, ActivityType::kPage, "Pricing");
  page.anonymous_id = "anon-1";
  acts.push_back(page);
  acts.push_back(MakeActivity("bob0", "bob", 1500));
  ASSERT_TRUE(AppendSync(Request("acme", acts)).ok());

  ActivityQuery q;
  q.tenant = TenantId("acme");
  q.lead = LeadId("alice");
  q.limit = 10;
  std::vector<std::string> seen;
  for (int pages = 0; pages < 10; ++pages) {
    auto r = log_->Query(q);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    for (auto& e : r->entries) seen.push_back(e.activity.message_id.str());
    if (r->next_cursor.empty()) break;
    q.cursor = r->next_cursor;
  }
  ASSERT_EQ(seen.size(), 26u);
  EXPECT_EQ(seen.front(), "p0");
  EXPECT_EQ(seen[1], "t24");
  EXPECT_EQ(seen.back(), "t0");

  // By anonymousId, by type, by time range, oldest first.
  q = {};
  q.tenant = TenantId("acme");
  q.lead = LeadId("anon-1");
  auto anon = log_->Query(q);
  ASSERT_EQ(anon->entries.size(), 1u);
  EXPECT_EQ(anon->entries[0].activity.message_id.str(), "p0");
  q.lead = LeadId("alice");
  q.type = ActivityType::kPage;
  EXPECT_EQ(log_->Query(q)->entries.size(), 1u);
  q.type.reset();
  q.since_ms = 1010;
  q.until_ms = 1014;
  q.newest_first = false;
  auto range = log_->Query(q);
  ASSERT_EQ(range->entries.size(), 5u);
  EXPECT_EQ(range->entries[0].activity.message_id.str(), "t10");
  // Tenants do not see each other's leads.
  q = {};
  q.tenant = TenantId("other");
  q.lead = LeadId("alice");
  EXPECT_TRUE(log_->Query(q)->entries.empty());
  q.cursor = "!!";
  EXPECT_EQ(log_->Query(q).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(EmbeddedLogTest, QueryMergesAPersonsIdentitiesIntoOneTimeline) {
  // Anonymous visits, then an identify carrying both ids (indexed under both), then known
  // activity, and a second device's anonymous id; other leads interleaved.
  std::vector<Activity> acts;
  for (int i = 0; i < 6; ++i) {
    Activity a = MakeActivity("v" + std::to_string(i), "", 100 + 10 * i, ActivityType::kPage);
    a.anonymous_id = i % 2 == 0 ? "anon-1" : "anon-2";
    acts.push_back(a);
  }
  Activity identify = MakeActivity("id", "ann", 165, ActivityType::kIdentify);
  identify.anonymous_id = "anon-1";
  acts.push_back(identify);
  for (int i = 0; i < 4; ++i) acts.push_back(MakeActivity("k" + std::to_string(i), "ann", 170 + i));
  acts.push_back(MakeActivity("bob", "bob", 150));
  ASSERT_TRUE(AppendSync(Request("acme", acts, 3)).ok());

  ActivityQuery q;
  q.tenant = TenantId("acme");
  q.lead = LeadId("ann");
  q.also = {LeadId("anon-1"), LeadId("anon-2"), LeadId("ann"), LeadId("")};
  const std::vector<std::string> want = {"k3", "k2", "k1", "k0", "id", "v5",
                                         "v4", "v3", "v2", "v1", "v0"};
  for (size_t limit : {1u, 2u, 4u, 100u}) {
    q.limit = limit;
    q.cursor.clear();
    std::vector<std::string> seen;
    for (int pages = 0; pages < 20; ++pages) {
      auto r = log_->Query(q);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      for (auto& e : r->entries) seen.push_back(e.activity.message_id.str());
      if (r->next_cursor.empty()) break;
      q.cursor = r->next_cursor;
    }
    EXPECT_EQ(seen, want) << "limit " << limit;
  }
  // Oldest first, with a type filter and a time range.
  q.limit = 100;
  q.cursor.clear();
  q.newest_first = false;
  q.type = ActivityType::kPage;
  q.since_ms = 110;
  q.until_ms = 140;
  auto r = log_->Query(q);
  ASSERT_TRUE(r.ok());
  std::vector<std::string> pages;
  for (auto& e : r->entries) pages.push_back(e.activity.message_id.str());
  EXPECT_EQ(pages, (std::vector<std::string>{"v1", "v2", "v3", "v4"}));
}

TEST_F(EmbeddedLogTest, RetentionRemovesOldBlocksAndKeepsOffsets) {
  ASSERT_TRUE(
      AppendSync(Request("acme", {MakeActivity("old1", "u", 1), MakeActivity("old2", "u", 2)}, 1))
          .ok());
  clock_.AdvanceMillis(10'000);
  Activity fresh = MakeActivity("new1", "u", 3);
  fresh.received_at_ms = clock_.NowMillis();
  ASSERT_TRUE(AppendSync(Request("acme", {fresh}, 1)).ok());
  auto removed = log_->ApplyRetention(TenantId("acme"), 1, clock_.NowMillis() - 5'000);
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(*removed, 2u);
  EXPECT_EQ(log_->LowWatermark(TenantId("acme"), PartitionId(0))->value(), 2u);
  auto r = log_->Read(TenantId("acme"), PartitionId(0), Offset(0), 10);
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].offset.value(), 2u);
  ActivityQuery q;
  q.tenant = TenantId("acme");
  q.lead = LeadId("u");
  EXPECT_EQ(log_->Query(q)->entries.size(), 1u);
  // Even with every block gone, offsets never restart.
  clock_.AdvanceMillis(10'000);
  ASSERT_TRUE(log_->ApplyRetention(TenantId("acme"), 1, clock_.NowMillis()).ok());
  Reopen();
  EXPECT_EQ(log_->HighWatermark(TenantId("acme"), PartitionId(0))->value(), 3u);
  ASSERT_TRUE(AppendSync(Request("acme", {MakeActivity("later", "u", 4)}, 1)).ok());
  r = log_->Read(TenantId("acme"), PartitionId(0), Offset(0), 10);
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].offset.value(), 3u);
}

TEST_F(EmbeddedLogTest, DropTenantRemovesOnlyThatTenant) {
  ASSERT_TRUE(AppendSync(Request("acme", {MakeActivity("a", "u", 1)})).ok());
  ASSERT_TRUE(AppendSync(Request("acme-2", {MakeActivity("b", "u", 1)})).ok());
  ASSERT_TRUE(log_->DropTenant(TenantId("acme")).ok());
  EXPECT_TRUE(ReadAllIds("acme").empty());
  EXPECT_EQ(ReadAllIds("acme-2"), std::vector<std::string>{"b"});
  // An append that arrives after the drop (admitted just before the delete) is refused.
  auto late = AppendSync(Request("acme", {MakeActivity("late", "u", 1)}));
  EXPECT_EQ(late.status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(ReadAllIds("acme").empty());
  // A re-created tenant starts clean: no dedup memory, offsets from 0.
  ASSERT_TRUE(log_->ReopenTenant(TenantId("acme")).ok());
  auto r = AppendSync(Request("acme", {MakeActivity("a", "u", 1)}));
  EXPECT_EQ(r->stored, 1u);
  auto entries = log_->Read(TenantId("acme"), PartitionFor("u", 4), Offset(0), 10);
  ASSERT_EQ(entries->size(), 1u);
  EXPECT_EQ((*entries)[0].offset.value(), 0u);
}

TEST_F(EmbeddedLogTest, AppendInWriteStoresRecordsWithTheCallersWritesOrNeither) {
  ASSERT_TRUE(log_->AppendsInWrite());
  std::vector<PartitionAdvance> heard;
  std::mutex heard_mu;
  log_->SetAppendListener([&](const std::vector<PartitionAdvance>& advances) {
    std::lock_guard lock(heard_mu);
    heard.insert(heard.end(), advances.begin(), advances.end());
  });
  ASSERT_TRUE(AppendSync(Request("acme", {MakeActivity("a", "u", 1)}, 1)).ok());
  auto write = [&](storage::WriteBatch* b) { return store_->Write(*b, false); };

  // The caller's row and the records land in one write.
  storage::WriteBatch batch;
  batch.Put(storage::kEngineState, "acme-row", "1");
  ASSERT_TRUE(log_->AppendInWrite(
                      Request("acme", {MakeActivity("g1", "u", 2), MakeActivity("g2", "u", 3)}, 1),
                      &batch, write)
                  .ok());
  EXPECT_EQ(ReadAllIds("acme", 1), (std::vector<std::string>{"a", "g1", "g2"}));
  EXPECT_EQ(*store_->Get(storage::kEngineState, "acme-row"), std::optional<std::string>("1"));
  EXPECT_EQ(log_->HighWatermark(TenantId("acme"), PartitionId(0))->value(), 3u);
  {
    std::lock_guard lock(heard_mu);
    ASSERT_EQ(heard.size(), 2u);
    EXPECT_EQ(heard[1].next.value(), 3u);
  }
  // Found by lead like any record.
  ActivityQuery q;
  q.tenant = TenantId("acme");
  q.lead = LeadId("u");
  EXPECT_EQ(log_->Query(q)->entries.size(), 3u);

  // A failed write stores neither the caller's row nor the records, and uses no offsets.
  storage::WriteBatch failing;
  failing.Put(storage::kEngineState, "acme-row-2", "1");
  store_->InjectWriteFailures(1);
  EXPECT_FALSE(
      log_->AppendInWrite(Request("acme", {MakeActivity("g3", "u", 4)}, 1), &failing, write).ok());
  EXPECT_FALSE(store_->Get(storage::kEngineState, "acme-row-2")->has_value());
  ASSERT_TRUE(AppendSync(Request("acme", {MakeActivity("b", "u", 5)}, 1)).ok());
  auto r = log_->Read(TenantId("acme"), PartitionId(0), Offset(0), 10);
  ASSERT_EQ(r->size(), 4u);
  EXPECT_EQ((*r)[3].activity.message_id.str(), "b");
  EXPECT_EQ((*r)[3].offset.value(), 3u);

  // A dropped tenant: nothing is written, the caller's write is not run.
  ASSERT_TRUE(log_->DropTenant(TenantId("acme")).ok());
  bool wrote = false;
  storage::WriteBatch late;
  Status st = log_->AppendInWrite(Request("acme", {MakeActivity("g4", "u", 6)}, 1), &late,
                                  [&](storage::WriteBatch*) {
                                    wrote = true;
                                    return Status::Ok();
                                  });
  EXPECT_EQ(st.code(), StatusCode::kNotFound);
  EXPECT_FALSE(wrote);
}

TEST_F(EmbeddedLogTest, AppendsInWriteAndGroupCommitsInterleaveWithContiguousOffsets) {
  constexpr int kRounds = 200;
  std::thread engine([&] {
    for (int i = 0; i < kRounds; ++i) {
      storage::WriteBatch b;
      EXPECT_TRUE(
          log_->AppendInWrite(Request("acme", {MakeActivity(fmt::format("g{}", i), "u", i)}, 1), &b,
                              [&](storage::WriteBatch* w) { return store_->Write(*w, false); })
              .ok());
    }
  });
  for (int i = 0; i < kRounds; ++i) {
    ASSERT_TRUE(AppendSync(Request("acme", {MakeActivity(fmt::format("i{}", i), "u", i)}, 1)).ok());
  }
  engine.join();
  auto r = log_->Read(TenantId("acme"), PartitionId(0), Offset(0), 10'000);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 2u * kRounds);
  std::set<std::string> ids;
  for (size_t i = 0; i < r->size(); ++i) {
    EXPECT_EQ((*r)[i].offset.value(), i);
    ids.insert((*r)[i].activity.message_id.str());
  }
  EXPECT_EQ(ids.size(), 2u * kRounds);
  Reopen();
  EXPECT_EQ(log_->HighWatermark(TenantId("acme"), PartitionId(0))->value(), 2u * kRounds);
}

TEST_F(EmbeddedLogTest, RefusesAppendsBeyondTheQueueBound) {
  EmbeddedLogOptions opts;
  opts.max_queued_events = 3;
  Reopen(opts);
  std::promise<void> release;
  log_->PauseWriterUntil(release.get_future().share());
  std::promise<Result<AppendResult>> first;
  log_->Append(Request("acme", {MakeActivity("a", "u", 1), MakeActivity("b", "u", 1)}),
               [&](Result<AppendResult> r) { first.set_value(std::move(r)); });
  auto over = AppendSync(Request("acme", {MakeActivity("c", "u", 1), MakeActivity("d", "u", 1)}));
  EXPECT_EQ(over.status().code(), StatusCode::kUnavailable);
  release.set_value();
  EXPECT_TRUE(first.get_future().get().ok());
}

TEST(BlockTest, CompressedRoundTripAndCorruption) {
  BlockBuilder b;
  std::string rec(500, 'x');
  for (int i = 0; i < 10; ++i) b.Add(rec + std::to_string(i), 100 + i);
  std::string block = b.Finish(256);
  EXPECT_LT(block.size(), 2000u);  // compressed
  auto h = ReadBlockHeader(block);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->count, 10u);
  EXPECT_EQ(h->max_received_at_ms, 109);
  std::string scratch;
  std::vector<std::string_view> records;
  ASSERT_TRUE(DecodeBlock(block, &scratch, &records).ok());
  ASSERT_EQ(records.size(), 10u);
  EXPECT_EQ(records[9], rec + "9");
  block.resize(block.size() - 5);
  EXPECT_FALSE(DecodeBlock(block, &scratch, &records).ok());
}

// Found by the block fuzzer: a corrupt header sized allocations from its own claims (a count
// of 2^32 reserved 64 GB; an LZ4 raw size of 1 GiB was allocated for a 20-byte block).
TEST(BlockTest, CorruptHeadersAreErrorsWithoutHugeAllocations) {
  // version 1, codec none, count UINT32_MAX, max_received_at 0, raw size 1, one record "a".
  std::string count_too_large = {1, 0, '\xff', '\xff', '\xff', '\xff', '\x0f', 0, 1, 1, 'a'};
  std::string scratch;
  std::vector<std::string_view> records;
  EXPECT_FALSE(DecodeBlock(count_too_large, &scratch, &records).ok());
  EXPECT_LT(records.capacity(), 1024u);

  // version 1, codec LZ4, count 1, max_received_at 0, raw size 2^30, a 4-byte payload.
  std::string raw_too_large = {1, 1, 1, 0, '\x80', '\x80', '\x80', '\x80', '\x04', 0, 0, 0, 0};
  EXPECT_FALSE(DecodeBlock(raw_too_large, &scratch, &records).ok());
  EXPECT_LT(scratch.capacity(), 1u << 20);

  // The real encoder's blocks still decode, with their count, compressed or not.
  for (size_t compress_min : {size_t{0}, SIZE_MAX}) {
    BlockBuilder b;
    for (int i = 0; i < 1000; ++i) b.Add("", 1);  // empty records: one byte each
    b.Add(std::string(100'000, 'z'), 2);          // compresses far beyond 100:1
    ASSERT_TRUE(DecodeBlock(b.Finish(compress_min), &scratch, &records).ok());
    EXPECT_EQ(records.size(), 1001u);
    EXPECT_EQ(records.back().size(), 100'000u);
  }
}

}  // namespace
}  // namespace fairway::log
