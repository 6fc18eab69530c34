// The ActivityLog conformance suite (log_conformance.h) and its embedded-backend instance.

#include "log/tests/log_conformance.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <map>

#include "log/log_factory.h"
#include "storage/store.h"
#include "testing/status_matchers.h"
#include "testing/store_and_log.h"
#include "testing/temp_dir.h"

namespace fairway::log {

using ::fairway::testing::StatusIs;
using model::Activity;

// ---------------------------------------------------------------------------------------------
// The fixture.

void ActivityLogConformanceTest::SetUp() {
  harness_ = GetParam().make();
  ASSERT_OK(harness_->Open());
  StartWithListener();
}

void ActivityLogConformanceTest::TearDown() {
  if (harness_) harness_->Close();
}

void ActivityLogConformanceTest::Reopen() {
  harness_->Close();
  ASSERT_OK(harness_->Open());
  StartWithListener();
}

void ActivityLogConformanceTest::StartWithListener() {
  ActivityLog* log = harness_->log();
  log->SetAppendListener([this, log](const std::vector<PartitionAdvance>& advances) {
    std::vector<SeenAdvance> seen;
    for (const auto& a : advances) {
      bool readable = false;
      if (a.next.value() > 0) {
        auto r = log->Read(a.tenant, a.partition, Offset(a.next.value() - 1), 1);
        readable = r.ok() && r->size() == 1 && r->front().offset.value() == a.next.value() - 1;
      }
      seen.push_back({a, readable});
    }
    std::lock_guard lock(mu_);
    advances_.insert(advances_.end(), seen.begin(), seen.end());
    cv_.notify_all();
  });
  log->Start();
}

Activity ActivityLogConformanceTest::MakeActivity(std::string message_id, std::string user,
                                                  int64_t ts) {
  Activity a;
  a.type = model::ActivityType::kTrack;
  a.message_id = MessageId(std::move(message_id));
  a.user_id = std::move(user);
  a.event = "Clicked";
  a.timestamp_ms = ts;
  a.received_at_ms = clock()->NowMillis();
  a.fields_json = R"("properties":{"plan":"pro"})";
  return a;
}

AppendRequest ActivityLogConformanceTest::Request(const std::string& tenant,
                                                  std::vector<Activity> activities,
                                                  uint32_t partitions, int64_t dedup_window_ms) {
  AppendRequest r;
  r.tenant = TenantId(tenant);
  r.partitions = partitions;
  r.dedup_window_ms = dedup_window_ms;
  r.activities = std::move(activities);
  return r;
}

Result<AppendResult> ActivityLogConformanceTest::AppendSync(AppendRequest request) {
  std::promise<Result<AppendResult>> done;
  auto result = done.get_future();
  log()->Append(std::move(request),
                [&done](Result<AppendResult> r) { done.set_value(std::move(r)); });
  return result.get();
}

std::vector<LogEntry> ActivityLogConformanceTest::ReadAll(const std::string& tenant,
                                                          uint32_t partition) {
  auto r = log()->Read(TenantId(tenant), PartitionId(partition), Offset(0), 1'000'000);
  EXPECT_OK(r);
  return r.ok() ? std::move(r).value() : std::vector<LogEntry>{};
}

std::vector<std::string> ActivityLogConformanceTest::AllIds(const std::string& tenant,
                                                            uint32_t partitions) {
  std::vector<std::string> ids;
  for (uint32_t p = 0; p < partitions; ++p) {
    for (const auto& e : ReadAll(tenant, p)) ids.push_back(e.activity.message_id.str());
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

uint64_t ActivityLogConformanceTest::High(const std::string& tenant, uint32_t partition) {
  auto r = log()->HighWatermark(TenantId(tenant), PartitionId(partition));
  EXPECT_OK(r);
  return r.ok() ? r->value() : 0;
}

uint64_t ActivityLogConformanceTest::Low(const std::string& tenant, uint32_t partition) {
  auto r = log()->LowWatermark(TenantId(tenant), PartitionId(partition));
  EXPECT_OK(r);
  return r.ok() ? r->value() : 0;
}

bool ActivityLogConformanceTest::WaitForAdvance(const std::string& tenant, uint32_t partition,
                                                uint64_t next) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, std::chrono::seconds(30), [&] {
    return std::any_of(advances_.begin(), advances_.end(), [&](const SeenAdvance& s) {
      return s.advance.tenant.str() == tenant && s.advance.partition.value() == partition &&
             s.advance.next.value() >= next;
    });
  });
}

std::vector<ActivityLogConformanceTest::SeenAdvance> ActivityLogConformanceTest::Advances() {
  std::lock_guard lock(mu_);
  return advances_;
}

// ---------------------------------------------------------------------------------------------
// The contract.

namespace {

constexpr int64_t kHourMs = 3'600'000;

// Offsets of `entries` are consecutive, starting at `first`.
void ExpectContiguousFrom(const std::vector<LogEntry>& entries, uint64_t first) {
  for (size_t i = 0; i < entries.size(); ++i) {
    EXPECT_EQ(entries[i].offset.value(), first + i) << "entry " << i;
  }
}

}  // namespace

TEST_P(ActivityLogConformanceTest, AppendStoresARequestAtContiguousOffsetsOneLeadOnePartition) {
  std::vector<Activity> acts;
  for (int i = 0; i < 60; ++i) {
    acts.push_back(MakeActivity(fmt::format("m{:02}", i), fmt::format("u{}", i % 7), 1000 + i));
  }
  ASSERT_OK_AND_ASSIGN(AppendResult first, AppendSync(Request("acme", acts, 4, kHourMs)));
  EXPECT_EQ(first.stored, 60u);
  EXPECT_EQ(first.duplicates, 0u);

  size_t total = 0;
  std::map<std::string, std::vector<std::string>> by_lead;
  for (uint32_t p = 0; p < 4; ++p) {
    auto entries = ReadAll("acme", p);
    ExpectContiguousFrom(entries, 0);
    for (const auto& e : entries) {
      EXPECT_EQ(e.partition.value(), p);
      EXPECT_EQ(PartitionFor(e.activity.LeadKey(), 4).value(), p) << e.activity.user_id;
      by_lead[e.activity.user_id].push_back(e.activity.message_id.str());
    }
    EXPECT_EQ(High("acme", p), entries.size());
    EXPECT_EQ(Low("acme", p), 0u);
    total += entries.size();
  }
  EXPECT_EQ(total, 60u);
  // Each lead's activities in request order (ids were numbered in order).
  for (const auto& [lead, ids] : by_lead) {
    EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end())) << lead;
  }

  // The next request continues each partition's offsets without a gap.
  const uint32_t p0 = PartitionFor("u0", 4).value();
  const uint64_t before = High("acme", p0);
  ASSERT_OK(AppendSync(Request("acme", {MakeActivity("later", "u0", 2000)}, 4, kHourMs)));
  auto entries = ReadAll("acme", p0);
  ASSERT_EQ(entries.size(), before + 1);
  EXPECT_EQ(entries.back().offset.value(), before);
  EXPECT_EQ(entries.back().activity.message_id.str(), "later");
}

TEST_P(ActivityLogConformanceTest, AFailedAppendStoresNoneOfTheRequest) {
  ASSERT_OK(AppendSync(Request("acme", {MakeActivity("a", "lead-a", 1)}, 4, kHourMs)));
  std::vector<uint64_t> highs;
  for (uint32_t p = 0; p < 4; ++p) highs.push_back(High("acme", p));
  if (!FailNextAppend()) GTEST_SKIP() << "the backend cannot inject failures";

  std::vector<Activity> acts;
  for (int i = 0; i < 8; ++i) {
    acts.push_back(MakeActivity(fmt::format("b{}", i), fmt::format("lead{}", i), 10 + i));
  }
  EXPECT_THAT(AppendSync(Request("acme", acts, 4, kHourMs)), StatusIs(StatusCode::kUnavailable));
  for (uint32_t p = 0; p < 4; ++p) EXPECT_EQ(High("acme", p), highs[p]) << "partition " << p;
  EXPECT_EQ(AllIds("acme", 4), std::vector<std::string>{"a"});

  // The failed messageIds were not remembered as seen, and offsets continue without a gap.
  ASSERT_OK_AND_ASSIGN(AppendResult retry, AppendSync(Request("acme", acts, 4, kHourMs)));
  EXPECT_EQ(retry.stored, 8u);
  for (uint32_t p = 0; p < 4; ++p) ExpectContiguousFrom(ReadAll("acme", p), 0);
  EXPECT_EQ(AllIds("acme", 4).size(), 9u);
}

TEST_P(ActivityLogConformanceTest, DuplicatesWithinTheWindowAreCountedNotStored) {
  constexpr int64_t kWindow = 60'000;
  ASSERT_OK_AND_ASSIGN(
      AppendResult first,
      AppendSync(
          Request("acme", {MakeActivity("m1", "u", 1), MakeActivity("m2", "u", 2)}, 2, kWindow)));
  EXPECT_EQ(first.stored, 2u);
  // A re-sent id, plus one id twice within one request.
  clock()->AdvanceMillis(kWindow - 1);
  ASSERT_OK_AND_ASSIGN(AppendResult retry,
                       AppendSync(Request("acme",
                                          {MakeActivity("m1", "u", 1), MakeActivity("m3", "u", 3),
                                           MakeActivity("m3", "u", 3)},
                                          2, kWindow)));
  EXPECT_EQ(retry.stored, 1u);
  EXPECT_EQ(retry.duplicates, 2u);
  EXPECT_EQ(AllIds("acme", 2), (std::vector<std::string>{"m1", "m2", "m3"}));
  // Another tenant may use the same messageId.
  ASSERT_OK_AND_ASSIGN(AppendResult other,
                       AppendSync(Request("other", {MakeActivity("m1", "u", 1)}, 2, kWindow)));
  EXPECT_EQ(other.stored, 1u);

  // After the window, the same id is stored again.
  clock()->AdvanceMillis(2);
  ASSERT_OK_AND_ASSIGN(AppendResult after,
                       AppendSync(Request("acme", {MakeActivity("m2", "u", 2)}, 2, kWindow)));
  EXPECT_EQ(after.stored, 1u);
  EXPECT_EQ(after.duplicates, 0u);
  EXPECT_EQ(AllIds("acme", 2), (std::vector<std::string>{"m1", "m2", "m2", "m3"}));
}

TEST_P(ActivityLogConformanceTest, AZeroWindowStoresEveryCopy) {
  ASSERT_OK_AND_ASSIGN(
      AppendResult twice,
      AppendSync(Request("acme", {MakeActivity("m1", "u", 1), MakeActivity("m1", "u", 1)}, 1, 0)));
  EXPECT_EQ(twice.stored, 2u);
  EXPECT_EQ(twice.duplicates, 0u);
  ASSERT_OK_AND_ASSIGN(AppendResult again,
                       AppendSync(Request("acme", {MakeActivity("m1", "u", 1)}, 1, 0)));
  EXPECT_EQ(again.stored, 1u);
  EXPECT_EQ(ReadAll("acme", 0).size(), 3u);
}

TEST_P(ActivityLogConformanceTest, TheListenerSeesEveryPartitionAdvanceOnceReadable) {
  for (int round = 0; round < 3; ++round) {
    std::vector<Activity> acts;
    for (int i = 0; i < 20; ++i) {
      acts.push_back(MakeActivity(fmt::format("r{}-{}", round, i), fmt::format("u{}", i % 5), i));
    }
    ASSERT_OK(AppendSync(Request("acme", acts, 4, kHourMs)));
    for (uint32_t p = 0; p < 4; ++p) {
      uint64_t high = High("acme", p);
      if (high == 0) continue;
      EXPECT_TRUE(WaitForAdvance("acme", p, high)) << "round " << round << " partition " << p;
    }
  }
  std::map<uint32_t, uint64_t> last;
  for (const auto& s : Advances()) {
    EXPECT_EQ(s.advance.tenant.str(), "acme");
    EXPECT_TRUE(s.readable) << "partition " << s.advance.partition.value() << " next "
                            << s.advance.next.value() << " was not readable when reported";
    uint64_t& prev = last[s.advance.partition.value()];
    EXPECT_GT(s.advance.next.value(), prev) << "partition " << s.advance.partition.value();
    prev = s.advance.next.value();
  }
  // Every partition that holds records was reported at its high watermark.
  for (uint32_t p = 0; p < 4; ++p) EXPECT_EQ(last[p], High("acme", p)) << "partition " << p;
}

TEST_P(ActivityLogConformanceTest, ReadsFromAnOffsetAtMostMaxRecords) {
  for (int batch = 0; batch < 5; ++batch) {
    std::vector<Activity> acts;
    for (int i = 0; i < 10; ++i) {
      acts.push_back(MakeActivity(fmt::format("b{}-{}", batch, i), "lead", batch * 10 + i));
    }
    ASSERT_OK(AppendSync(Request("acme", acts, 1, kHourMs)));
  }
  ASSERT_OK_AND_ASSIGN(auto middle, log()->Read(TenantId("acme"), PartitionId(0), Offset(23), 15));
  ASSERT_EQ(middle.size(), 15u);
  ExpectContiguousFrom(middle, 23);
  EXPECT_EQ(middle.front().activity.message_id.str(), "b2-3");
  EXPECT_EQ(middle.back().activity.message_id.str(), "b3-7");

  ASSERT_OK_AND_ASSIGN(auto tail, log()->Read(TenantId("acme"), PartitionId(0), Offset(45), 100));
  ASSERT_EQ(tail.size(), 5u);
  EXPECT_EQ(tail.back().offset.value(), 49u);
  EXPECT_EQ(High("acme", 0), 50u);
  EXPECT_EQ(Low("acme", 0), 0u);

  // At or beyond the high watermark, with no room, or of nothing stored: empty, not an error.
  for (auto [from, max] : {std::pair<uint64_t, size_t>{50, 10}, {500, 10}, {0, 0}}) {
    ASSERT_OK_AND_ASSIGN(auto r, log()->Read(TenantId("acme"), PartitionId(0), Offset(from), max));
    EXPECT_TRUE(r.empty()) << "from " << from << " max " << max;
  }
  ASSERT_OK_AND_ASSIGN(auto none, log()->Read(TenantId("nobody"), PartitionId(0), Offset(0), 10));
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(High("nobody", 0), 0u);
  EXPECT_EQ(Low("nobody", 0), 0u);
}

TEST_P(ActivityLogConformanceTest, RetentionRaisesTheLowWatermarkAndOffsetsAreNeverReused) {
  if (!harness()->RetentionRemovesRecords()) {
    GTEST_SKIP() << "the backend's store applies retention itself";
  }
  ASSERT_OK(AppendSync(
      Request("acme", {MakeActivity("old1", "u", 1), MakeActivity("old2", "u", 2)}, 1, kHourMs)));
  clock()->AdvanceMillis(10'000);
  ASSERT_OK(AppendSync(Request("acme", {MakeActivity("new1", "u", 3)}, 1, kHourMs)));

  ASSERT_OK_AND_ASSIGN(uint64_t removed,
                       log()->ApplyRetention(TenantId("acme"), 1, clock()->NowMillis() - 5'000));
  EXPECT_EQ(removed, 2u);
  EXPECT_EQ(Low("acme", 0), 2u);
  EXPECT_EQ(High("acme", 0), 3u);
  // A read from below the low watermark starts at it.
  for (uint64_t from : {0, 1}) {
    ASSERT_OK_AND_ASSIGN(auto r, log()->Read(TenantId("acme"), PartitionId(0), Offset(from), 10));
    ASSERT_EQ(r.size(), 1u) << "from " << from;
    EXPECT_EQ(r[0].offset.value(), 2u);
    EXPECT_EQ(r[0].activity.message_id.str(), "new1");
  }

  // With every record removed, and after a restart, offsets go on from the high watermark.
  clock()->AdvanceMillis(10'000);
  ASSERT_OK_AND_ASSIGN(removed, log()->ApplyRetention(TenantId("acme"), 1, clock()->NowMillis()));
  EXPECT_EQ(removed, 1u);
  EXPECT_EQ(Low("acme", 0), 3u);
  EXPECT_TRUE(ReadAll("acme", 0).empty());
  Reopen();
  EXPECT_EQ(High("acme", 0), 3u);
  EXPECT_EQ(Low("acme", 0), 3u);
  ASSERT_OK(AppendSync(Request("acme", {MakeActivity("later", "u", 4)}, 1, kHourMs)));
  auto r = ReadAll("acme", 0);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].offset.value(), 3u);
  EXPECT_EQ(r[0].activity.message_id.str(), "later");
}

TEST_P(ActivityLogConformanceTest, DropTenantRemovesOnlyThatTenantAndRefusesItUntilReopened) {
  ASSERT_OK(AppendSync(Request("acme", {MakeActivity("a", "u", 1)}, 4, kHourMs)));
  ASSERT_OK(AppendSync(Request("acme-2", {MakeActivity("b", "u", 1)}, 4, kHourMs)));
  ASSERT_OK(log()->DropTenant(TenantId("acme")));
  const bool removes = harness()->DropRemovesRecords();
  if (removes) {
    EXPECT_TRUE(AllIds("acme", 4).empty());
    for (uint32_t p = 0; p < 4; ++p) EXPECT_EQ(High("acme", p), 0u);
  }
  EXPECT_EQ(AllIds("acme-2", 4), std::vector<std::string>{"b"});

  // An append after the drop (admitted just before the tenant was deleted) stores nothing.
  const std::vector<std::string> before = AllIds("acme", 4);
  EXPECT_THAT(AppendSync(Request("acme", {MakeActivity("late", "u", 1)}, 4, kHourMs)),
              StatusIs(StatusCode::kNotFound));
  EXPECT_EQ(AllIds("acme", 4), before);

  // Where the records stay until the store deletes them, the id cannot be taken again before:
  // they would become the new tenant's history.
  if (!removes) {
    EXPECT_THAT(log()->ReopenTenant(TenantId("acme")),
                StatusIs(StatusCode::kFailedPrecondition, ::testing::HasSubstr("deleted earlier")));
    return;
  }
  // Reopened, the tenant takes appends again, and starts clean: no dedup memory, offsets from 0.
  ASSERT_OK(log()->ReopenTenant(TenantId("acme")));
  ASSERT_OK_AND_ASSIGN(AppendResult again,
                       AppendSync(Request("acme", {MakeActivity("a2", "u", 1)}, 4, kHourMs)));
  EXPECT_EQ(again.stored, 1u);
  ASSERT_OK_AND_ASSIGN(AppendResult same_id,
                       AppendSync(Request("acme", {MakeActivity("a", "u", 1)}, 4, kHourMs)));
  EXPECT_EQ(same_id.stored, 1u);
  auto entries = ReadAll("acme", PartitionFor("u", 4).value());
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].offset.value(), 0u);
}

TEST_P(ActivityLogConformanceTest, RecordsOffsetsAndDedupMemorySurviveReopen) {
  std::vector<Activity> acts;
  for (int i = 0; i < 30; ++i) {
    acts.push_back(MakeActivity(fmt::format("m{:02}", i), fmt::format("u{}", i % 3), i));
  }
  ASSERT_OK(AppendSync(Request("acme", acts, 2, kHourMs)));
  std::vector<std::vector<std::pair<uint64_t, std::string>>> before(2);
  for (uint32_t p = 0; p < 2; ++p) {
    for (const auto& e : ReadAll("acme", p)) {
      before[p].emplace_back(e.offset.value(), e.activity.message_id.str());
    }
  }

  Reopen();
  for (uint32_t p = 0; p < 2; ++p) {
    std::vector<std::pair<uint64_t, std::string>> after;
    for (const auto& e : ReadAll("acme", p)) {
      after.emplace_back(e.offset.value(), e.activity.message_id.str());
    }
    EXPECT_EQ(after, before[p]) << "partition " << p;
    EXPECT_EQ(High("acme", p), before[p].size());
  }
  ASSERT_OK_AND_ASSIGN(AppendResult resent,
                       AppendSync(Request("acme", {MakeActivity("m00", "u0", 0)}, 2, kHourMs)));
  EXPECT_EQ(resent.duplicates, 1u);
  const uint32_t p = PartitionFor("u0", 2).value();
  ASSERT_OK(AppendSync(Request("acme", {MakeActivity("new", "u0", 99)}, 2, kHourMs)));
  auto entries = ReadAll("acme", p);
  ASSERT_EQ(entries.size(), before[p].size() + 1);
  EXPECT_EQ(entries.back().offset.value(), before[p].size());
}

// A partition-count change: the current layout is sealed at its partitions' ends, and every
// later append of the tenant, whatever layout its request names, goes to the new layout's
// partitions (numbered after the old ones), a lead to one partition; across a restart too.
TEST_P(ActivityLogConformanceTest, ANewLayoutSealsTheOldOneAndTakesEveryLaterAppend) {
  model::TenantConfig tenant;
  tenant.id = TenantId("acme");
  tenant.partitions = 2;
  auto batch = [this](std::string_view round) {
    std::vector<Activity> acts;
    for (int i = 0; i < 40; ++i) {
      acts.push_back(
          MakeActivity(fmt::format("{}-{:02}", round, i), fmt::format("u{}", i % 20), i));
    }
    return acts;
  };
  const AppendRequest old_layout = Request("acme", {}, 2, kHourMs);
  auto append = [&](std::vector<Activity> acts, const AppendRequest& layout) {
    AppendRequest r = layout;
    r.activities = std::move(acts);
    return AppendSync(std::move(r));
  };
  ASSERT_OK(append(batch("a"), old_layout));
  const std::vector<uint64_t> sealed_at = {High("acme", 0), High("acme", 1)};
  ASSERT_EQ(sealed_at[0] + sealed_at[1], 40u);

  ASSERT_OK_AND_ASSIGN(auto ends, log()->StartLayout(tenant, 3));
  EXPECT_EQ(ends, sealed_at);
  ASSERT_OK_AND_ASSIGN(auto layouts, log()->Layouts(tenant.id));
  ASSERT_EQ(layouts.size(), 2u);
  EXPECT_EQ(layouts[0], (model::PartitionLayout{0, 2, sealed_at}));
  EXPECT_EQ(layouts[1], (model::PartitionLayout{2, 3, {}}));

  // Whatever the request says, appends go to partitions 2-4, each lead to its one partition.
  AppendRequest new_layout = old_layout;
  new_layout.first_partition = 2;
  new_layout.partitions = 3;
  ASSERT_OK_AND_ASSIGN(AppendResult b, append(batch("b"), old_layout));
  EXPECT_EQ(b.stored, 40u);
  ASSERT_OK_AND_ASSIGN(AppendResult c, append(batch("c"), new_layout));
  EXPECT_EQ(c.stored, 40u);
  // A re-sent messageId of the old layout is still recognised.
  ASSERT_OK_AND_ASSIGN(AppendResult again, append({MakeActivity("a-03", "u3", 3)}, new_layout));
  EXPECT_EQ(again.duplicates, 1u);
  auto check_partitions = [&](size_t expected_new) {
    EXPECT_EQ(High("acme", 0), sealed_at[0]);
    EXPECT_EQ(High("acme", 1), sealed_at[1]);
    size_t total = 0;
    for (uint32_t p = 2; p < 5; ++p) {
      for (const auto& e : ReadAll("acme", p)) {
        ++total;
        EXPECT_EQ(e.partition.value(), p);
        EXPECT_EQ(LayoutPartition(e.activity.LeadKey(), 2, 3), p) << e.activity.LeadKey();
        EXPECT_NE(e.activity.message_id.str()[0], 'a');
      }
      EXPECT_TRUE(WaitForAdvance("acme", p, High("acme", p))) << "partition " << p;
    }
    EXPECT_EQ(total, expected_new);
  };
  check_partitions(80);

  // Repeating the change returns the same ends; a change from a layout that is no longer
  // current is refused.
  ASSERT_OK_AND_ASSIGN(auto repeated, log()->StartLayout(tenant, 3));
  EXPECT_EQ(repeated, sealed_at);
  EXPECT_THAT(log()->StartLayout(tenant, 4).status(), StatusIs(StatusCode::kFailedPrecondition));

  Reopen();
  ASSERT_OK_AND_ASSIGN(auto after, log()->Layouts(tenant.id));
  EXPECT_EQ(after, layouts);
  ASSERT_OK(append(batch("d"), old_layout));
  check_partitions(120);

  // A second change, to one partition (5): the second layout is sealed at its ends, and every
  // append goes to partition 5.
  model::TenantConfig second = tenant;
  second.sealed_layouts = {layouts[0]};
  second.partitions = 3;
  std::vector<uint64_t> second_ends;
  for (uint32_t p = 2; p < 5; ++p) second_ends.push_back(High("acme", p));
  ASSERT_OK_AND_ASSIGN(auto ends2, log()->StartLayout(second, 1));
  EXPECT_EQ(ends2, second_ends);
  ASSERT_OK(append(batch("e"), new_layout));
  ASSERT_OK(append(batch("f"), old_layout));
  EXPECT_EQ(ReadAll("acme", 5).size(), 80u);
  for (uint32_t p = 2; p < 5; ++p) EXPECT_EQ(High("acme", p), second_ends[p - 2]);
  ASSERT_OK_AND_ASSIGN(auto three, log()->Layouts(tenant.id));
  ASSERT_EQ(three.size(), 3u);
  EXPECT_EQ(three[1], (model::PartitionLayout{2, 3, second_ends}));
  EXPECT_EQ(three[2], (model::PartitionLayout{5, 1, {}}));

  // A dropped tenant forgets its layouts: created again (once its records are gone), it starts
  // from one layout.
  ASSERT_OK(log()->DropTenant(tenant.id));
  if (!harness()->DropRemovesRecords()) {
    EXPECT_THAT(log()->ReopenTenant(tenant.id), StatusIs(StatusCode::kFailedPrecondition));
    return;
  }
  ASSERT_OK(log()->ReopenTenant(tenant.id));
  ASSERT_OK_AND_ASSIGN(auto none, log()->Layouts(tenant.id));
  EXPECT_TRUE(none.empty());
  ASSERT_OK(append(batch("g"), old_layout));
  EXPECT_EQ(High("acme", 0) + High("acme", 1), 40u);
}

// ---------------------------------------------------------------------------------------------
// The embedded backend, opened through the factory on a store in a temporary directory.

namespace {

class EmbeddedLogHarness final : public LogBackendHarness {
 public:
  Status Open() override {
    FAIRWAY_ASSIGN_OR_RETURN(store_, ::fairway::testing::OpenFairwayStore(dir_.path(), &clock_));
    metrics_ = std::make_unique<MetricsRegistry>();
    LogConfig config;
    config.backend = std::string(kEmbeddedBackend);
    FAIRWAY_ASSIGN_OR_RETURN(OpenedActivityLog opened,
                             OpenActivityLog(config, store_.get(), &clock_, metrics_.get()));
    log_ = std::move(opened.log);
    return Status::Ok();
  }
  void Close() override {
    if (log_) log_->Stop();
    log_.reset();
    store_.reset();
  }
  ActivityLog* log() override { return log_.get(); }
  ManualClock* clock() override { return &clock_; }
  bool FailNextAppend() override {
    store_->InjectWriteFailures(1);
    return true;
  }

 private:
  ::fairway::testing::TempDir dir_;
  ManualClock clock_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<MetricsRegistry> metrics_;
  std::unique_ptr<ActivityLog> log_;
};

INSTANTIATE_TEST_SUITE_P(Embedded, ActivityLogConformanceTest,
                         ::testing::Values(LogBackend{
                             "embedded", [] { return std::make_unique<EmbeddedLogHarness>(); }}),
                         LogBackendName);

}  // namespace
}  // namespace fairway::log
