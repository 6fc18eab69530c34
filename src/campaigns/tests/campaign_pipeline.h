#pragma once
// CampaignPipelineTest: the whole processing pipeline on a real store (log, engine, the leads and
// campaigns processors, the timer service), shared by the campaign processor's test files.

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <future>
#include <map>

#include "campaigns/campaign_processor.h"
#include "campaigns/campaign_state.h"
#include "campaigns/timer_service.h"
#include "dispatch/delivery.h"
#include "engine/engine.h"
#include "identity/lead_processor.h"
#include "log/embedded_log.h"
#include "storage/keys.h"
#include "storage/schema.h"
#include "testing/status_matchers.h"
#include "testing/store_and_log.h"

namespace fairway::campaigns::pipeline_test {

using namespace std::chrono_literals;
using model::Activity;
using model::ActivityType;

constexpr int64_t kDayMs = 86'400'000;
inline const TenantId kTenant("acme");

// The whole processing pipeline on a real store: log, engine, the leads and campaigns
// processors and the timer service. Campaign time comes from the fixture's manual clock; the
// store, the log and the engine run on real time.
class CampaignPipelineTest : public ::fairway::testing::StoreAndLogTest {
 protected:
  // The engine subscribes to the log before the log starts.
  CampaignPipelineTest()
      : StoreAndLogTest(
            {.log = {.sync = false}, .clock = SystemClock::Default(), .start_log = false}) {
    clock_.AdvanceMillis(1'795'420'800'000 - clock_.NowMillis());  // 2026-11-23T08:00:00Z
  }
  void SetUp() override { Open(); }
  void TearDown() override { Close(); }

  void Open() {
    ASSERT_OK(StoreAndLog::Open());
    registry_ = std::make_unique<CampaignRegistry>(store_.get(), &clock_);
    leads_ = std::make_unique<identity::LeadStore>(store_.get());
    tenant_.id = kTenant;
    tenant_.name = "Acme";
    tenant_.partitions = 2;
    tenant_.timezone = "Europe/Berlin";
    timers_ = std::make_unique<TimerService>(
        store_.get(), log_.get(), &clock_,
        [this](const TenantId&) -> std::optional<model::TenantConfig> { return tenant_; },
        TimerServiceOptions{.chunk = 4});  // small chunks: releases take several rounds
    engine_ = std::make_unique<engine::Engine>(store_.get(), log_.get(), SystemClock::Default(),
                                               metrics_.get(), engine::EngineOptions{});
    engine_->AddProcessor(std::make_unique<identity::LeadProcessor>());
    CampaignProcessorOptions po;
    po.on_timers = [this](const TenantId& t, int64_t due) { timers_->Notify(t, due); };
    po.tenant_timezone = [this](const TenantId&) { return tenant_.timezone; };
    engine_->AddProcessor(
        std::make_unique<CampaignProcessor>(registry_.get(), leads_.get(), &clock_, po));
    engine_->Start();
    log_->Start();
    ASSERT_TRUE(timers_->Start().ok());
    ASSERT_TRUE(engine_->UpsertTenant(tenant_).ok());
  }

  void Close() {
    if (timers_) timers_->Stop();
    if (engine_) engine_->Stop();
    if (log_) log_->Stop();
    timers_.reset();
    engine_.reset();
    registry_.reset();
    leads_.reset();
    StoreAndLog::Close();
  }

  void Reopen() {
    Close();
    Open();
  }

  void Create(std::string_view id, std::string_view definition) {
    auto r = registry_->Create(kTenant, id, definition);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }

  void Ingest(std::vector<Activity> activities) {
    log::AppendRequest req = log::AppendRequestFor(tenant_);
    req.dedup_window_ms = 3'600'000;
    for (auto& a : activities) {
      if (a.timestamp_ms == 0) a.timestamp_ms = clock_.NowMillis();
      a.received_at_ms = clock_.NowMillis();
    }
    req.activities = std::move(activities);
    std::promise<Status> done;
    log_->Append(std::move(req), [&](Result<log::AppendResult> r) { done.set_value(r.status()); });
    ASSERT_TRUE(done.get_future().get().ok());
  }

  static Activity Track(std::string id, std::string user, std::string event,
                        std::string fields = "") {
    Activity a;
    a.type = ActivityType::kTrack;
    a.message_id = MessageId(std::move(id));
    a.user_id = std::move(user);
    a.event = std::move(event);
    a.fields_json = std::move(fields);
    return a;
  }
  static Activity Identify(std::string id, std::string user, std::string traits) {
    Activity a;
    a.type = ActivityType::kIdentify;
    a.message_id = MessageId(std::move(id));
    a.user_id = std::move(user);
    a.fields_json = "\"traits\":" + traits;
    return a;
  }
  static Activity Page(std::string id, std::string user, std::string path) {
    Activity a;
    a.type = ActivityType::kPage;
    a.message_id = MessageId(std::move(id));
    a.user_id = std::move(user);
    a.fields_json =
        fmt::format(R"("properties":{{"path":"{}","url":"https://acme.test{}"}})", path, path);
    return a;
  }

  // Everything processed, including what timers due by the clock release and what generated
  // activities trigger.
  void Settle() {
    for (int i = 0; i < 50; ++i) {
      uint64_t released = timers_->released();
      ASSERT_TRUE(engine_->WaitIdle(60s));
      ASSERT_TRUE(timers_->WaitIdle(60s));
      ASSERT_TRUE(engine_->WaitIdle(60s));
      if (timers_->released() == released) return;
    }
    FAIL() << "did not settle";
  }

  int64_t Stat(std::string_view campaign, std::string_view metric) {
    int64_t sum = 0;
    std::string prefix = StatsPrefix(kTenant, campaign);
    auto it = store_->NewIterator(storage::kCampaignStats, prefix, prefix + "\xff\xff\xff\xff\x01");
    for (it->Seek(prefix); it->Valid(); it->Next()) {
      std::string_view k = it->key();
      k.remove_prefix(prefix.size() + 5);
      if (k == metric) sum += storage::DecodeCounter(it->value());
    }
    return sum;
  }

  std::vector<dispatch::Delivery> Deliveries() {
    std::vector<dispatch::Delivery> out;
    std::string prefix = dispatch::PendingPrefix(kTenant);
    auto it = store_->NewIterator(storage::kDeliveries, prefix, storage::PrefixEnd(prefix));
    for (it->Seek(prefix); it->Valid(); it->Next()) {
      auto d = dispatch::DecodeDelivery(it->value());
      EXPECT_TRUE(d.ok());
      if (d.ok()) out.push_back(*d);
    }
    return out;
  }

  // Generated activities in the log, by event name.
  std::map<std::string, int> Generated(std::string_view user = {}) {
    std::map<std::string, int> out;
    for (uint32_t p = 0; p < tenant_.partitions; ++p) {
      auto r = log_->Read(kTenant, PartitionId(p), Offset(0), 100'000);
      EXPECT_TRUE(r.ok());
      for (const auto& e : *r) {
        if (e.activity.type != ActivityType::kFairway) continue;
        if (!user.empty() && e.activity.user_id != user) continue;
        out[e.activity.event]++;
      }
    }
    return out;
  }

  // Adds to `batch` the timer of waiting run `i` of campaign "c" (step 1, lead "u<i>"), due at
  // `due`. No such run exists: its wake-up is stale and changes nothing.
  void AddStaleTimer(storage::WriteBatch* batch, int i, int64_t due) {
    Timer t;
    t.campaign = "c";
    t.run_id = MakeRunId("c", std::to_string(i));
    t.step = 1;
    t.user_id = "u" + std::to_string(i);
    batch->Put(storage::kTimers, TimerKey(kTenant, due, LeadId(t.user_id), "c", t.run_id),
               EncodeTimer(t));
  }

  size_t TimerRows() {
    size_t n = 0;
    auto it =
        store_->NewIterator(storage::kTimers, TimerTenantPrefix(kTenant), TimerTenantEnd(kTenant));
    for (it->SeekToFirst(); it->Valid(); it->Next()) ++n;
    return n;
  }

  std::optional<identity::LeadView> Lead(std::string_view id) {
    auto r = leads_->Find(kTenant, id);
    EXPECT_TRUE(r.ok());
    return r.ok() ? *r : std::nullopt;
  }

  model::TenantConfig tenant_;
  std::unique_ptr<CampaignRegistry> registry_;
  std::unique_ptr<identity::LeadStore> leads_;
  std::unique_ptr<TimerService> timers_;
  std::unique_ptr<engine::Engine> engine_;
};

}  // namespace fairway::campaigns::pipeline_test
