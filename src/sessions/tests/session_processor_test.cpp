#include "sessions/session_processor.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <future>
#include <map>
#include <nlohmann/json.hpp>

#include "common/time_format.h"
#include "engine/engine.h"
#include "model/generated_activities.h"
#include "sessions/session_store.h"
#include "sessions/session_sweeper.h"
#include "testing/status_matchers.h"
#include "testing/store_and_log.h"

namespace fairway::sessions {
namespace {

using namespace std::chrono_literals;
using model::Activity;
using model::ActivityType;

constexpr int64_t kMinute = 60'000;
const TenantId kTenant("acme");

// The sessions processor in a real engine on a real store and log. Event times are set by
// each test; the sweeper's wall clock is the fixture's manual clock.
class SessionProcessorTest : public ::fairway::testing::StoreAndLogTest {
 protected:
  SessionProcessorTest()
      : StoreAndLogTest(
            {.log = {.sync = false}, .clock = SystemClock::Default(), .start_log = false}) {}

  void SetUp() override {
    ASSERT_OK(StoreAndLog::Open());
    tenant_.id = kTenant;
    tenant_.name = "Acme";
    tenant_.partitions = 2;
    tenant_.timezone = "America/Los_Angeles";
    engine_ = std::make_unique<engine::Engine>(store_.get(), log_.get(), SystemClock::Default(),
                                               metrics_.get(), engine::EngineOptions{});
    SessionProcessorOptions o;
    o.timeout_ms = [this](const TenantId&) { return timeout_ms_; };
    o.announce = [this](const TenantId&, std::string_view) { return announce_; };
    engine_->AddProcessor(std::make_unique<SessionProcessor>(o));
    engine_->Start();
    log_->Start();
    ASSERT_TRUE(engine_->UpsertTenant(tenant_).ok());
    sessions_ = std::make_unique<SessionStore>(store_.get());
    sweeper_ = std::make_unique<SessionSweeper>(store_.get(), log_.get(), &clock_);
  }
  void TearDown() override {
    engine_->Stop();
    log_->Stop();
    engine_.reset();
    StoreAndLog::Close();
  }

  void Ingest(std::vector<Activity> activities) {
    log::AppendRequest req = log::AppendRequestFor(tenant_);
    req.dedup_window_ms = 3'600'000;
    for (auto& a : activities) a.received_at_ms = a.timestamp_ms;
    req.activities = std::move(activities);
    std::promise<Status> done;
    log_->Append(std::move(req), [&](Result<log::AppendResult> r) { done.set_value(r.status()); });
    ASSERT_TRUE(done.get_future().get().ok());
    ASSERT_TRUE(engine_->WaitIdle(60s));
  }

  // A page view of anonymous visitor `visitor` at `time_ms`, with utm parameters if given.
  static Activity Page(std::string id, std::string visitor, int64_t time_ms, std::string path,
                       std::string utm_campaign = "", std::string referrer_type = "search") {
    Activity a;
    a.type = ActivityType::kPage;
    a.message_id = MessageId(std::move(id));
    a.anonymous_id = std::move(visitor);
    a.timestamp_ms = time_ms;
    std::string context =
        utm_campaign.empty()
            ? fmt::format(R"({{"referrer":{{"type":"{}"}}}})", referrer_type)
            : fmt::format(
                  R"({{"campaign":{{"name":"{}","source":"google","medium":"cpc"}},"referrer":{{"type":"search"}}}})",
                  utm_campaign);
    a.fields_json =
        fmt::format(R"("properties":{{"path":"{}","url":"https://acme.test{}"}},"context":{})",
                    path, path, context);
    return a;
  }
  static Activity Track(std::string id, std::string visitor, int64_t time_ms) {
    Activity a;
    a.type = ActivityType::kTrack;
    a.message_id = MessageId(std::move(id));
    a.anonymous_id = std::move(visitor);
    a.event = "Clicked";
    a.timestamp_ms = time_ms;
    return a;
  }

  std::vector<SessionView> Sessions(std::string visitor) {
    auto page = sessions_->List(kTenant, {visitor}, INT64_MAX, 1000);
    EXPECT_TRUE(page.ok()) << page.status().ToString();
    return page.ok() ? page->sessions : std::vector<SessionView>{};
  }

  // The generated activities in the log: event -> their properties, in log order per partition.
  std::multimap<std::string, nlohmann::json> Generated() {
    std::multimap<std::string, nlohmann::json> out;
    for (uint32_t p = 0; p < tenant_.partitions; ++p) {
      auto r = log_->Read(kTenant, PartitionId(p), Offset(0), 100'000);
      EXPECT_TRUE(r.ok());
      for (const auto& e : *r) {
        if (e.activity.type != ActivityType::kFairway) continue;
        out.emplace(e.activity.event,
                    nlohmann::json::parse("{" + e.activity.fields_json + "}")["properties"]);
      }
    }
    return out;
  }

  model::TenantConfig tenant_;
  int64_t timeout_ms_ = 30 * kMinute;
  bool announce_ = true;
  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<SessionStore> sessions_;
  std::unique_ptr<SessionSweeper> sweeper_;
  // 2026-11-23T08:00:00Z
  const int64_t t0_ = 1'795'420'800'000;
};

TEST_F(SessionProcessorTest, InactivitySplitsSessionsAndTheNextSessionEndsTheLast) {
  Ingest({Page("p1", "v1", t0_, "/home"), Page("p2", "v1", t0_ + 10 * kMinute, "/pricing"),
          Track("t1", "v1", t0_ + 29 * kMinute)});
  // 29 minutes after the last activity: the same session. 31: a new one.
  Ingest({Page("p3", "v1", t0_ + 58 * kMinute, "/docs")});
  Ingest({Page("p4", "v1", t0_ + 89 * kMinute + 1, "/blog", "", "social")});
  auto s = Sessions("v1");
  ASSERT_EQ(s.size(), 2u);
  const Session& first = s[1].session;
  const Session& second = s[0].session;
  EXPECT_EQ(first.start_ms, t0_);
  EXPECT_EQ(first.end_ms, t0_ + 58 * kMinute);
  EXPECT_EQ(first.pages, 3u);
  EXPECT_EQ(first.events, 4u);
  EXPECT_EQ(first.landing_page, "https://acme.test/home");
  EXPECT_EQ(first.source, "search");
  EXPECT_TRUE(first.ended);
  EXPECT_EQ(second.start_ms, t0_ + 89 * kMinute + 1);
  EXPECT_EQ(second.source, "social");
  EXPECT_FALSE(second.ended);
  EXPECT_NE(first.id, second.id);

  auto gen = Generated();
  EXPECT_EQ(gen.count("session_started"), 2u);
  ASSERT_EQ(gen.count("session_ended"), 1u);
  const auto& ended = gen.find("session_ended")->second;
  EXPECT_EQ(ended["session_id"], first.id);
  EXPECT_EQ(ended["pages"], 3);
  EXPECT_EQ(ended["duration_s"], 58 * 60);
  EXPECT_EQ(ended["landing_page"], "https://acme.test/home");

  // Every activity maps to its session.
  EXPECT_EQ(sessions_->SessionAt(kTenant, "v1", t0_ + 10 * kMinute)->value_or(""), first.id);
  EXPECT_EQ(sessions_->SessionAt(kTenant, "v1", t0_ + 89 * kMinute + 1)->value_or(""), second.id);
  EXPECT_FALSE(sessions_->SessionAt(kTenant, "v1", t0_ + 70 * kMinute)->has_value());
  EXPECT_FALSE(sessions_->SessionAt(kTenant, "nobody", t0_)->has_value());
}

TEST_F(SessionProcessorTest, ANewCampaignStartsANewSessionWithinTheTimeout) {
  Ingest({Page("p1", "v1", t0_, "/a", "spring"), Page("p2", "v1", t0_ + kMinute, "/b", "spring"),
          Page("p3", "v1", t0_ + 2 * kMinute, "/c"),
          Page("p4", "v1", t0_ + 3 * kMinute, "/d", "summer")});
  auto s = Sessions("v1");
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[1].session.campaign, "spring");
  EXPECT_EQ(s[1].session.source, "google/cpc");
  EXPECT_EQ(s[1].session.pages, 3u);  // a page without utm stays in the session
  EXPECT_EQ(s[0].session.campaign, "summer");
  EXPECT_EQ(s[0].session.landing_page, "https://acme.test/d");
  // A late activity just before the campaign's session, within the timeout of both: it joins
  // the campaign's session, which stays apart from the earlier one.
  Ingest({Track("late", "v1", t0_ + 2 * kMinute + 30'000)});
  s = Sessions("v1");
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].session.campaign, "summer");
  EXPECT_EQ(s[0].session.start_ms, t0_ + 2 * kMinute + 30'000);
  EXPECT_EQ(s[0].session.landing_page, "https://acme.test/d");
  EXPECT_EQ(s[1].session.pages, 3u);
}

TEST_F(SessionProcessorTest, WithNobodyListeningNothingIsAnnouncedOrSwept) {
  announce_ = false;
  clock_.AdvanceMillis(t0_ - clock_.NowMillis());
  Ingest({Page("p1", "v1", t0_, "/a"), Page("p2", "v1", t0_ + 40 * kMinute, "/b")});
  EXPECT_TRUE(Generated().empty());
  clock_.AdvanceMillis(24 * 60 * kMinute);
  ASSERT_OK_AND_ASSIGN(size_t released, sweeper_->Sweep({tenant_}));
  EXPECT_EQ(released, 0u);
  auto s = Sessions("v1");
  ASSERT_EQ(s.size(), 2u);
  EXPECT_TRUE(s[1].session.ended);   // ended by the next session
  EXPECT_FALSE(s[0].session.ended);  // readers judge it by its idle time
}

TEST_F(SessionProcessorTest, LateAndOutOfOrderActivitiesExtendOpenAndMergeSessions) {
  Ingest({Page("p2", "v1", t0_ + 20 * kMinute, "/second")});
  // Earlier, within the timeout: the session starts earlier and lands on the earlier page.
  Ingest({Page("p1", "v1", t0_, "/first")});
  auto s = Sessions("v1");
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].session.start_ms, t0_);
  EXPECT_EQ(s[0].session.landing_page, "https://acme.test/first");
  const std::string head = s[0].session.id;

  // Two hours earlier: a visit of its own, recorded as over and never announced.
  Ingest({Page("old1", "v1", t0_ - 120 * kMinute, "/old")});
  // Later another one 50 minutes after it; then one between them joins both.
  Ingest({Page("old2", "v1", t0_ - 70 * kMinute, "/old2")});
  s = Sessions("v1");
  ASSERT_EQ(s.size(), 3u);
  Ingest({Track("bridge", "v1", t0_ - 95 * kMinute)});
  s = Sessions("v1");
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].session.id, head);
  EXPECT_EQ(s[1].session.start_ms, t0_ - 120 * kMinute);
  EXPECT_EQ(s[1].session.end_ms, t0_ - 70 * kMinute);
  EXPECT_EQ(s[1].session.events, 3u);
  EXPECT_EQ(s[1].session.pages, 2u);
  EXPECT_EQ(s[1].session.landing_page, "https://acme.test/old");
  EXPECT_TRUE(s[1].session.ended);
  // One between the merged session and the head, within the timeout of both: all one session.
  Ingest({Track("join1", "v1", t0_ - 45 * kMinute), Track("join2", "v1", t0_ - 20 * kMinute)});
  s = Sessions("v1");
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].session.id, head);
  EXPECT_EQ(s[0].session.start_ms, t0_ - 120 * kMinute);
  EXPECT_EQ(s[0].session.events, 7u);
  EXPECT_EQ(s[0].session.landing_page, "https://acme.test/old");
  // Only the visit seen first was announced.
  EXPECT_EQ(Generated().count("session_started"), 1u);
}

TEST_F(SessionProcessorTest, TheSweeperEndsIdleSessionsUnlessTheVisitorCameBack) {
  clock_.AdvanceMillis(t0_ - clock_.NowMillis());
  Ingest({Page("p1", "v1", t0_, "/a"), Page("q1", "v2", t0_, "/a")});
  // Not due yet.
  ASSERT_OK_AND_ASSIGN(size_t released, sweeper_->Sweep({tenant_}));
  EXPECT_EQ(released, 0u);
  // v2 comes back 20 minutes later; at 30 minutes only v1 is idle.
  Ingest({Page("q2", "v2", t0_ + 20 * kMinute, "/b")});
  clock_.AdvanceMillis(30 * kMinute);
  ASSERT_OK_AND_ASSIGN(released, sweeper_->Sweep({tenant_}));
  EXPECT_EQ(released, 2u);  // both rows were due; v2's is re-armed by the processor
  // A second sweep before the processor ran releases nothing twice.
  ASSERT_OK_AND_ASSIGN(released, sweeper_->Sweep({tenant_}));
  EXPECT_EQ(released, 0u);
  ASSERT_TRUE(engine_->WaitIdle(60s));
  EXPECT_TRUE(Sessions("v1")[0].session.ended);
  EXPECT_FALSE(Sessions("v2")[0].session.ended);
  clock_.AdvanceMillis(20 * kMinute);
  ASSERT_OK_AND_ASSIGN(released, sweeper_->Sweep({tenant_}));
  EXPECT_EQ(released, 1u);
  ASSERT_TRUE(engine_->WaitIdle(60s));
  EXPECT_TRUE(Sessions("v2")[0].session.ended);
  auto gen = Generated();
  ASSERT_EQ(gen.count("session_ended"), 2u);
  for (auto [it, end] = gen.equal_range("session_ended"); it != end; ++it) {
    EXPECT_TRUE(it->second["pages"] == 1 || it->second["pages"] == 2) << it->second.dump();
  }
  // Nothing left to sweep; a tenant the node does not own is not swept.
  clock_.AdvanceMillis(24 * 60 * kMinute);
  ASSERT_OK_AND_ASSIGN(released, sweeper_->Sweep({tenant_}));
  EXPECT_EQ(released, 0u);
  Ingest({Page("p9", "v9", t0_, "/z")});
  ASSERT_OK_AND_ASSIGN(released, sweeper_->Sweep({tenant_}, [](const TenantId&) { return false; }));
  EXPECT_EQ(released, 0u);
}

TEST_F(SessionProcessorTest, TimeoutsAtTheirExtremes) {
  // One minute: activities 61 s apart are two sessions.
  timeout_ms_ = kMinute;
  Ingest({Track("a1", "v1", t0_), Track("a2", "v1", t0_ + kMinute),
          Track("a3", "v1", t0_ + 2 * kMinute + 1)});
  EXPECT_EQ(Sessions("v1").size(), 2u);
  // A day: a whole day of activity an hour apart is one session.
  timeout_ms_ = 1440 * kMinute;
  std::vector<Activity> day;
  for (int h = 0; h < 24; ++h)
    day.push_back(Track(fmt::format("d{}", h), "v2", t0_ + h * 60 * kMinute));
  Ingest(std::move(day));
  EXPECT_EQ(Sessions("v2").size(), 1u);
  // The tenant setting is checked at its bounds.
  model::TenantConfig defaults;
  for (int minutes : {0, 1441, -1}) {
    auto t = model::ParseTenantCreate(
        fmt::format(R"({{"id":"x","web":{{"session_timeout_minutes":{}}}}})", minutes), defaults);
    ASSERT_FALSE(t.ok()) << minutes;
    EXPECT_NE(t.status().message().find("web.session_timeout_minutes"), std::string::npos);
  }
  for (int minutes : {1, 1440}) {
    auto t = model::ParseTenantCreate(
        fmt::format(R"({{"id":"x","web":{{"session_timeout_minutes":{}}}}})", minutes), defaults);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    EXPECT_EQ(t->web.session_timeout_minutes, static_cast<uint32_t>(minutes));
  }
  EXPECT_FALSE(
      model::ParseTenantCreate(R"({"id":"x","web":{"session_timeout_minutes":"30"}})", defaults)
          .ok());
}

TEST_F(SessionProcessorTest, ASessionSpanningMidnightInTheTenantsZoneIsOneSessionOfItsFirstDay) {
  // 23:50 and 00:10 in Los Angeles (07:50 and 08:10 UTC, the same UTC day as each other but
  // the day after the local one).
  const int64_t local_2350 = *ParseIso8601Millis("2026-11-24T07:50:00Z");
  Ingest({Page("p1", "v1", local_2350, "/a"), Page("p2", "v1", local_2350 + 20 * kMinute, "/b")});
  auto s = Sessions("v1");
  ASSERT_EQ(s.size(), 1u);
  std::string json;
  AppendSessionJson(s[0], tenant_.timezone, local_2350 + 20 * kMinute, timeout_ms_, &json);
  auto j = nlohmann::json::parse(json);
  EXPECT_EQ(j["day"], "2026-11-23");
  EXPECT_EQ(j["duration_s"], 1200);
  EXPECT_EQ(j["pages"], 2);
  EXPECT_EQ(j["ended"], false);
  json.clear();
  // Idle for the timeout at the reader's clock: over, though no sweeper ended it.
  AppendSessionJson(s[0], "", local_2350 + 50 * kMinute, timeout_ms_, &json);
  EXPECT_EQ(nlohmann::json::parse(json)["day"], "2026-11-24");
  EXPECT_EQ(nlohmann::json::parse(json)["ended"], true);
}

TEST_F(SessionProcessorTest, ADeletedVisitorLosesItsSessions) {
  Ingest({Page("p1", "v1", t0_, "/a"), Page("p2", "v1", t0_ + 40 * kMinute, "/b")});
  EXPECT_EQ(Sessions("v1").size(), 2u);
  Activity del;
  del.type = ActivityType::kFairway;
  del.event = model::LeadDeleted::kEvent;
  del.message_id = MessageId("del");
  del.anonymous_id = "v1";
  del.timestamp_ms = t0_ + 41 * kMinute;
  Ingest({del});
  EXPECT_TRUE(Sessions("v1").empty());
  clock_.AdvanceMillis(t0_ + 365LL * 24 * 60 * kMinute - clock_.NowMillis());
  ASSERT_OK_AND_ASSIGN(size_t released, sweeper_->Sweep({tenant_}));
  EXPECT_EQ(released, 0u);  // its due row went with it
}

TEST(SessionStateTest, RowsRoundTripAndRejectCorruption) {
  Session s;
  s.id = "s_1";
  s.start_ms = -5;
  s.end_ms = 7;
  s.events = 3;
  s.pages = 2;
  s.landing_page = "https://a.test/";
  s.source = "google/cpc";
  s.campaign = "spring";
  s.ended = true;
  s.due_ms = 99;
  s.kind = 'u';
  auto back = DecodeSession(EncodeSession(s));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(EncodeSession(*back), EncodeSession(s));
  std::string bad = EncodeSession(s);
  EXPECT_FALSE(DecodeSession(bad + "x").ok());
  EXPECT_FALSE(DecodeSession(bad.substr(0, bad.size() - 1)).ok());
  bad[1] = 'z';
  EXPECT_FALSE(DecodeSession(bad).ok());
  auto due = DecodeDueKey(DueKey(-3, 'a', "v1"));
  ASSERT_TRUE(due.ok());
  EXPECT_EQ(due->due_ms, -3);
  EXPECT_EQ(due->kind, 'a');
  EXPECT_LT(DueKey(-1, 'a', "z"), DueKey(0, 'a', "a"));
  EXPECT_FALSE(DecodeDueKey("o/short").ok());
  EXPECT_NE(MakeSessionId("v1", "m1"), MakeSessionId("v1", "m2"));
  EXPECT_EQ(MakeSessionId("v1", "m1").size(), 18u);
}

}  // namespace
}  // namespace fairway::sessions
