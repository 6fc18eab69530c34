#include "campaigns/campaign_processor.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <future>
#include <map>

#include "campaigns/campaign_state.h"
#include "campaigns/tests/campaign_pipeline.h"
#include "campaigns/timer_service.h"
#include "dispatch/delivery.h"
#include "engine/engine.h"
#include "identity/lead_processor.h"
#include "log/embedded_log.h"
#include "model/json_limits.h"
#include "storage/keys.h"
#include "storage/schema.h"
#include "testing/status_matchers.h"
#include "testing/store_and_log.h"

namespace fairway::campaigns {
namespace {

using namespace std::chrono_literals;
using model::Activity;
using model::ActivityType;
using pipeline_test::CampaignPipelineTest;
using pipeline_test::kDayMs;
using pipeline_test::kTenant;

constexpr std::string_view kPricing = R"({
  "name": "Pricing follow-up", "status": "active",
  "triggers": [{"type": "visits_web_page", "url": {"op": "contains", "value": "/pricing"}}],
  "filters": [{"field": "country", "op": "is", "value": "DE"}],
  "flow": [
    {"action": "change_score", "change": 10},
    {"action": "send_email", "subject": "Hi {{lead.firstName|there}}", "body": "You looked at {{trigger.path}}."},
    {"action": "call_webhook", "url": "https://hooks.test/lead/{{lead.id}}", "body": {"lead": "{{lead.id}}", "offer": "{{my.offer}}", "score": "{{lead.score}}"}}
  ],
  "tokens": {"offer": "20% off"}
})";

TEST_F(CampaignPipelineTest, ATriggeredCampaignRunsItsFlowOnceWithItsDeliveriesPending) {
  Create("pricing", kPricing);
  Ingest({Identify("i1", "u1", R"({"email":"ann@x.test","firstName":"Ann","country":"DE"})"),
          Identify("i2", "u2", R"({"email":"bob@x.test","country":"FR"})"),
          Page("p1", "u1", "/en/pricing"), Page("p2", "u2", "/en/pricing"),
          Page("p3", "u1", "/en/about")});
  Settle();
  EXPECT_EQ(Stat("pricing", "triggered"), 2);
  EXPECT_EQ(Stat("pricing", "qualified"), 1);
  EXPECT_EQ(Stat("pricing", "filtered_out"), 1);
  EXPECT_EQ(Stat("pricing", "completed"), 1);
  EXPECT_EQ(Stat("pricing", "in_flow"), 0);
  EXPECT_EQ(Stat("pricing", "step.1.executed"), 1);
  EXPECT_EQ(Stat("pricing", "step.3.executed"), 1);
  auto deliveries = Deliveries();
  ASSERT_EQ(deliveries.size(), 2u);
  std::string run = MakeRunId("pricing", "p1");
  std::map<std::string, dispatch::Delivery> by_id;
  for (const auto& d : deliveries) by_id[d.id] = d;
  const auto& email = by_id.at("pricing." + run + ".1");
  EXPECT_EQ(email.mail_to, "ann@x.test");
  EXPECT_EQ(email.subject, "Hi Ann");
  EXPECT_EQ(email.text_body, "You looked at /en/pricing.");
  const auto& hook = by_id.at("pricing." + run + ".2");
  EXPECT_EQ(hook.url, "https://hooks.test/lead/u1");
  // The step sees the score its own run changed; numbers render as written, not "1E1".
  EXPECT_EQ(hook.body, R"({"lead":"u1","offer":"20% off","score":"10"})");
  auto gen = Generated("u1");
  EXPECT_EQ(gen["score_changed"], 1);
  EXPECT_EQ(gen["email_sent"], 1);
  // The leads processor applied the generated score change.
  EXPECT_EQ(Lead("u1")->score, 10);

  // The same page view re-sent is stored once; a new one does not qualify again ("once").
  Ingest({Page("p1", "u1", "/en/pricing"), Page("p4", "u1", "/pricing")});
  Settle();
  EXPECT_EQ(Stat("pricing", "qualified"), 1);
  EXPECT_EQ(Stat("pricing", "not_qualified"), 1);
  EXPECT_EQ(Deliveries().size(), 2u);
  EXPECT_EQ(Generated("u1")["score_changed"], 1);
}

TEST_F(CampaignPipelineTest, WaitsAreDurableTimersThatFireOnceAcrossARestart) {
  Create("nurture", R"({
    "name": "Nurture", "status": "active",
    "triggers": [{"type": "track", "event": "Signed Up"}],
    "flow": [
      {"action": "add_tag", "tag": "new"},
      {"action": "wait", "duration": "2d"},
      {"action": "add_tag", "tag": "nurtured"}
    ]})");
  Ingest({Track("s1", "u1", "Signed Up"), Track("s2", "u2", "Signed Up")});
  Settle();
  EXPECT_EQ(Stat("nurture", "in_flow"), 2);
  EXPECT_EQ(TimerRows(), 2u);
  EXPECT_EQ(Generated()["tag_added"], 2);
  EXPECT_TRUE(Lead("u1")->HasTag("new"));
  // Not due yet: nothing fires.
  clock_.AdvanceMillis(2 * kDayMs - 1000);
  Settle();
  EXPECT_EQ(Generated()["tag_added"], 2);

  Reopen();
  clock_.AdvanceMillis(1000);
  Settle();
  EXPECT_EQ(TimerRows(), 0u);
  auto gen = Generated();
  EXPECT_EQ(gen["campaign_wait_elapsed"], 2);
  EXPECT_EQ(gen["tag_added"], 4);
  EXPECT_EQ(Stat("nurture", "completed"), 2);
  EXPECT_EQ(Stat("nurture", "in_flow"), 0);
  EXPECT_TRUE(Lead("u2")->HasTag("nurtured"));

  // Nothing fires twice, however long the clock runs on and however often the service restarts.
  Reopen();
  clock_.AdvanceMillis(30 * kDayMs);
  Settle();
  EXPECT_EQ(Generated()["tag_added"], 4);
  EXPECT_EQ(Generated()["campaign_wait_elapsed"], 2);
}

TEST_F(CampaignPipelineTest, ChoicesSeeEarlierStepsOfTheRunAndFirstMatchWins) {
  Create("grade", R"({
    "name": "Grade", "status": "active",
    "triggers": [{"type": "track", "event": "Demo Requested"}],
    "flow": [
      {"action": "change_score", "change": 60},
      {"choices": [
        {"if": {"field": "score", "op": "at_least", "value": 50}, "then": {"action": "add_tag", "tag": "hot"}},
        {"if": {"field": "score", "op": "at_least", "value": 10}, "then": {"action": "add_tag", "tag": "warm"}}],
       "default": {"action": "add_tag", "tag": "cold"}},
      {"action": "change_data_value", "field": "visits", "op": "increment", "value": 2},
      {"choices": [{"if": {"field": "visits", "op": "is", "value": 2}, "then": {"action": "add_to_list", "list": "counted"}}]}
    ]})");
  Ingest({Track("d1", "u1", "Demo Requested")});
  Settle();
  auto lead = Lead("u1");
  ASSERT_TRUE(lead);
  EXPECT_TRUE(lead->HasTag("hot"));
  EXPECT_FALSE(lead->HasTag("warm"));
  EXPECT_FALSE(lead->HasTag("cold"));
  EXPECT_TRUE(lead->HasList("counted"));
  EXPECT_EQ(lead->score, 60);
  ASSERT_NE(lead->FindTrait("visits"), nullptr);
  EXPECT_EQ(lead->FindTrait("visits")->json, "2");
}

TEST_F(CampaignPipelineTest, AChainOfCampaignsStopsAtTheDepthLimit) {
  ASSERT_TRUE(registry_->UpdateSettings(kTenant, R"({"max_chain_depth": 3})").ok());
  Create("start", R"({"name": "Start", "status": "active",
    "triggers": [{"type": "track", "event": "Go"}],
    "flow": [{"action": "change_score", "change": 1}]})");
  Create("loop", R"({"name": "Loop", "status": "active",
    "triggers": [{"type": "score_changed", "min_change": 1}],
    "qualification": {"rule": "every_time"},
    "flow": [{"action": "change_score", "change": 1}]})");
  Ingest({Track("g1", "u1", "Go")});
  Settle();
  // depth 1 (start) -> 2 (loop) -> 3 (loop) -> blocked.
  EXPECT_EQ(Generated()["score_changed"], 3);
  EXPECT_EQ(Stat("loop", "blocked_chain_depth"), 1);
  EXPECT_EQ(Lead("u1")->score, 3);
}

TEST_F(CampaignPipelineTest, CommunicationLimitsBlockEmailsButNotOperationalOnes) {
  ASSERT_TRUE(
      registry_->UpdateSettings(kTenant, R"({"emails_per_day": 2, "emails_per_week": 3})").ok());
  Create("ping", R"({"name": "Ping", "status": "active",
    "triggers": [{"type": "track", "event": "Ping"}], "qualification": {"rule": "every_time"},
    "flow": [{"action": "send_email", "subject": "s", "body": "b"}]})");
  Create("receipt", R"({"name": "Receipt", "status": "active",
    "triggers": [{"type": "track", "event": "Paid"}], "qualification": {"rule": "every_time"},
    "flow": [{"action": "send_email", "subject": "r", "body": "b", "operational": true}]})");
  Ingest({Identify("i1", "u1", R"({"email":"ann@x.test"})")});
  Settle();
  for (int i = 0; i < 3; ++i) {
    Ingest({Track(fmt::format("ping{}", i), "u1", "Ping")});
    Settle();
  }
  EXPECT_EQ(Stat("ping", "step.1.executed"), 2);
  EXPECT_EQ(Stat("ping", "step.1.blocked"), 1);
  EXPECT_EQ(Stat("ping", "emails_blocked"), 1);
  Ingest({Track("paid", "u1", "Paid")});
  Settle();
  EXPECT_EQ(Stat("receipt", "step.1.executed"), 1);
  // A day later the daily cap has room again, but the weekly one (3) allows one more only.
  clock_.AdvanceMillis(kDayMs + 1);
  for (int i = 3; i < 6; ++i) {
    Ingest({Track(fmt::format("ping{}", i), "u1", "Ping")});
    Settle();
  }
  EXPECT_EQ(Stat("ping", "step.1.executed"), 3);
  EXPECT_EQ(Stat("ping", "step.1.blocked"), 3);
  EXPECT_EQ(Generated()["email_blocked"], 3);
  EXPECT_EQ(Deliveries().size(), 4u);
}

TEST_F(CampaignPipelineTest, RequestedCampaignsGetTokensAndRemoveFromFlowEndsOtherRuns) {
  Create("drip", R"({"name": "Drip", "status": "active",
    "triggers": [{"type": "track", "event": "Trial Started"}],
    "flow": [{"action": "wait", "duration": "7d"}, {"action": "add_tag", "tag": "dripped"}]})");
  Create("convert", R"({"name": "Convert", "status": "active",
    "triggers": [{"type": "track", "event": "Purchased"}],
    "flow": [{"action": "remove_from_flow", "campaigns": ["drip"]},
             {"action": "request_campaign", "campaign": "thanks", "tokens": {"plan": "{{trigger.plan}}"}}]})");
  Create("thanks", R"({"name": "Thanks", "status": "active",
    "triggers": [{"type": "campaign_requested"}],
    "flow": [{"action": "change_data_value", "field": "plan", "value": "{{request.plan}}"}]})");
  Ingest({Track("t1", "u1", "Trial Started")});
  Settle();
  EXPECT_EQ(Stat("drip", "in_flow"), 1);
  Ingest({Track("b1", "u1", "Purchased", R"("properties":{"plan":"team"})")});
  Settle();
  EXPECT_EQ(Stat("drip", "in_flow"), 0);
  EXPECT_EQ(Stat("drip", "removed_from_flow"), 1);
  EXPECT_EQ(TimerRows(), 0u);
  ASSERT_NE(Lead("u1")->FindTrait("plan"), nullptr);
  EXPECT_EQ(Lead("u1")->FindTrait("plan")->json, "\"team\"");
  clock_.AdvanceMillis(8 * kDayMs);
  Settle();
  EXPECT_FALSE(Lead("u1")->HasTag("dripped"));
}

TEST_F(CampaignPipelineTest, DeactivatedCampaignsStopTriggeringAndLetWaitingLeadsFinishOrLeave) {
  Create("finish",
         R"({"name": "F", "status": "active", "triggers": [{"type": "track", "event": "E"}],
    "flow": [{"action": "wait", "duration": "1h"}, {"action": "add_tag", "tag": "finished"}]})");
  Create("leave",
         R"({"name": "L", "status": "active", "triggers": [{"type": "track", "event": "E"}],
    "when_deactivated": "leave_flow",
    "flow": [{"action": "wait", "duration": "1h"}, {"action": "add_tag", "tag": "left"}]})");
  Ingest({Track("e1", "u1", "E")});
  Settle();
  ASSERT_TRUE(registry_->SetActive(kTenant, "finish", false).ok());
  ASSERT_TRUE(registry_->SetActive(kTenant, "leave", false).ok());
  Ingest({Track("e2", "u2", "E")});
  clock_.AdvanceMillis(3'600'000);
  Settle();
  EXPECT_TRUE(Lead("u1")->HasTag("finished"));
  EXPECT_FALSE(Lead("u1")->HasTag("left"));
  EXPECT_EQ(Stat("leave", "left_flow"), 1);
  EXPECT_EQ(Stat("finish", "triggered"), 1);  // u2's activity came after the deactivation
}

TEST_F(CampaignPipelineTest, DueTimersAreReleasedInChunksAndOnlyWhenDue) {
  // Ten waiting runs' timers (their runs do not exist: the wake-ups are stale and change
  // nothing), due at three different times.
  storage::WriteBatch batch;
  for (int i = 0; i < 10; ++i) {
    AddStaleTimer(&batch, i, clock_.NowMillis() + (i < 6 ? 1000 : i < 9 ? 2000 : 3000));
  }
  ASSERT_TRUE(store_->Write(batch, false).ok());
  timers_->Notify(kTenant, clock_.NowMillis() + 1000);
  Settle();
  EXPECT_EQ(timers_->released(), 0u);
  clock_.AdvanceMillis(2000);
  Settle();
  EXPECT_EQ(timers_->released(), 9u);  // 6 + 3, in chunks of 4
  EXPECT_EQ(TimerRows(), 1u);
  clock_.AdvanceMillis(1000);
  Settle();
  EXPECT_EQ(timers_->released(), 10u);
  EXPECT_EQ(TimerRows(), 0u);
  EXPECT_EQ(Generated()["campaign_wait_elapsed"], 10);
}

TEST_F(CampaignPipelineTest, AReleasedTenantsTimersWaitForItsNextOwner) {
  // A second service over the same store, as a node that takes the tenant over would run one.
  std::atomic<bool> owns{false};
  TimerService other(
      store_.get(), log_.get(), &clock_,
      [this](const TenantId&) -> std::optional<model::TenantConfig> { return tenant_; });
  other.SetOwnership([&](const TenantId&) { return owns.load(); });
  ASSERT_OK(other.Start());
  storage::WriteBatch batch;
  for (int i = 0; i < 3; ++i) AddStaleTimer(&batch, i, clock_.NowMillis() + 1000);
  ASSERT_OK(store_->Write(batch, false));
  timers_->ReleaseTenant(kTenant);
  other.Notify(kTenant, clock_.NowMillis() + 1000);  // not owned there yet
  clock_.AdvanceMillis(2000);
  Settle();
  ASSERT_TRUE(other.WaitIdle(60s));
  EXPECT_EQ(TimerRows(), 3u);
  EXPECT_EQ(other.released(), 0u);
  owns = true;
  ASSERT_OK(other.TakeTenant(kTenant));
  ASSERT_TRUE(other.WaitIdle(60s));
  EXPECT_EQ(other.released(), 3u);
  EXPECT_EQ(TimerRows(), 0u);
  other.Stop();
}

TEST_F(CampaignPipelineTest, HistoryFiltersCountTheTriggeringActivityAndFilterLogicCombines) {
  Create("third-visit", R"J({"name": "Third pricing visit", "status": "active",
    "triggers": [{"type": "visits_web_page", "url": {"op": "contains", "value": "/pricing"}}],
    "filters": [
      {"activity": {"type": "page", "name": {"op": "matches", "value": "/pricing*"}},
       "min_count": 3, "within_days": 7},
      {"field": "plan", "op": "is", "value": "pro"},
      {"has_tag": "vip"}],
    "filter_logic": "1 and (2 or 3)",
    "flow": [{"action": "add_tag", "tag": "hot"}]})J");
  Ingest({Identify("i1", "u1", R"({"plan":"pro"})"), Identify("i2", "u2", R"({"plan":"free"})")});
  for (int v = 0; v < 3; ++v) {
    Ingest({Page(fmt::format("a{}", v), "u1", "/pricing/team"),
            Page(fmt::format("b{}", v), "u2", "/pricing")});
    Settle();
    // The leads processor has counted the visit before the campaign looks at the lead.
    EXPECT_EQ(Lead("u1")->HasTag("hot"), v == 2) << v;
  }
  EXPECT_FALSE(Lead("u2")->HasTag("hot"));  // three visits, but neither pro nor vip
  EXPECT_EQ(Stat("third-visit", "filtered_out"), 5);
  EXPECT_EQ(Stat("third-visit", "qualified"), 1);
}

TEST_F(CampaignPipelineTest, WaitsUntilATimeOfDayInTheLeadsTimeZone) {
  Create("morning", R"({"name": "Morning", "status": "active",
    "triggers": [{"type": "track", "event": "E"}],
    "flow": [{"action": "wait", "at": "10:30", "timezone": "lead"},
             {"action": "add_tag", "tag": "woke"}]})");
  // 08:00Z: 03:00 in New York (the lead's zone); 09:00 in Berlin (the tenant's, for u2).
  Ingest({Identify("i1", "u1", R"({"timezone":"America/New_York"})"), Track("e1", "u1", "E"),
          Track("e2", "u2", "E")});
  Settle();
  std::map<std::string, int64_t> due;
  auto it =
      store_->NewIterator(storage::kTimers, TimerTenantPrefix(kTenant), TimerTenantEnd(kTenant));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    auto t = DecodeTimer(it->key(), it->value());
    ASSERT_TRUE(t.ok());
    due[t->lead.str()] = t->due_ms;
  }
  const int64_t t0 = clock_.NowMillis();                   // 2026-11-23T08:00:00Z
  EXPECT_EQ(due["u1"], t0 + 7 * 3'600'000 + 30 * 60'000);  // 10:30 EST = 15:30Z
  EXPECT_EQ(due["u2"], t0 + 1 * 3'600'000 + 30 * 60'000);  // 10:30 CET = 09:30Z
  clock_.AdvanceMillis(2 * 3'600'000);
  Settle();
  EXPECT_TRUE(Lead("u2")->HasTag("woke"));
  EXPECT_FALSE(Lead("u1")->HasTag("woke"));
  clock_.AdvanceMillis(6 * 3'600'000);
  Settle();
  EXPECT_TRUE(Lead("u1")->HasTag("woke"));
}

TEST_F(CampaignPipelineTest, ADeletedLeadLeavesEveryFlowIncludingRunsStartedAfterTheDelete) {
  Create("bye", R"({"name": "Bye", "status": "active",
    "triggers": [{"type": "track", "event": "Bye"}],
    "flow": [{"action": "delete_lead"}]})");
  Create("ping", R"({"name": "Ping", "status": "active",
    "triggers": [{"type": "track", "event": "Ping"}], "qualification": {"rule": "every_time"},
    "flow": [{"action": "wait", "duration": "1h"}, {"action": "add_tag", "tag": "pinged"}]})");
  Ingest({Identify("i1", "u1", R"({"email":"a@x.test"})"), Track("p1", "u1", "Ping")});
  Settle();
  EXPECT_EQ(Stat("ping", "in_flow"), 1);
  // "Ping" after "Bye" in the log starts a run before the lead_deleted activity comes back.
  Ingest({Track("b1", "u1", "Bye"), Track("p2", "u1", "Ping")});
  Settle();
  EXPECT_EQ(Stat("ping", "in_flow"), 0);
  // 1 or 2: the second run exists only if "Ping" was processed in a later work item than "Bye".
  EXPECT_GE(Stat("ping", "lead_deleted"), 1);
  EXPECT_EQ(TimerRows(), 0u);
  EXPECT_FALSE(Lead("u1").has_value());
  clock_.AdvanceMillis(2 * 3'600'000);
  Settle();
  EXPECT_EQ(Generated()["tag_added"], 0);
}

TEST_F(CampaignPipelineTest, ACampaignCreatedAgainUnderTheSameIdDoesNotContinueOldRuns) {
  constexpr std::string_view kDef = R"({"name": "W", "status": "active",
    "triggers": [{"type": "track", "event": "E"}],
    "flow": [{"action": "wait", "duration": "1h"}, {"action": "add_tag", "tag": "continued"}]})";
  Create("w", kDef);
  Ingest({Track("e1", "u1", "E")});
  Settle();
  ASSERT_TRUE(registry_->Delete(kTenant, "w").ok());
  clock_.AdvanceMillis(1);  // a new campaign, a new creation time
  Create("w", kDef);
  clock_.AdvanceMillis(3'600'000);
  Settle();
  EXPECT_FALSE(Lead("u1")->HasTag("continued"));
  EXPECT_EQ(Stat("w", "left_flow"), 1);
  // The old campaign's history does not count for the new one ("once").
  Ingest({Track("e2", "u1", "E")});
  Settle();
  EXPECT_EQ(Stat("w", "qualified"), 2);
}

TEST_F(CampaignPipelineTest, EmailTriggersMatchTheSubjectOrTheId) {
  Create("opened",
         R"({"name": "Opened", "status": "active", "qualification": {"rule": "every_time"},
    "triggers": [{"type": "opens_email", "email": "welcome-1"}],
    "flow": [{"action": "change_score", "change": 1}]})");
  Ingest({Track("o1", "u1", "Email Opened",
                R"("properties":{"email_subject":"Welcome!","email_id":"welcome-1"})"),
          Track("o2", "u1", "Email Opened", R"("properties":{"email_subject":"welcome-1"})"),
          Track("o3", "u1", "Email Opened", R"("properties":{"email_id":"other"})")});
  Settle();
  EXPECT_EQ(Stat("opened", "qualified"), 2);
}

}  // namespace
}  // namespace fairway::campaigns

namespace fairway::campaigns {
namespace {

// `{"a":{"a":...{"x":"hit"}}}` with `levels` objects named a: as the properties of a message,
// its innermost object is nested 2 + levels deep (message, properties, a...).
std::string NestedProperties(size_t levels) {
  std::string s;
  for (size_t i = 0; i < levels; ++i) s += R"({"a":)";
  s += R"({"x":"hit"})";
  s.append(levels, '}');
  return s;
}

TEST_F(CampaignPipelineTest, PropertiesAtTheDeepestAllowedLevelTriggerAndDeeperOnesDeadLetter) {
  const size_t levels = model::kMaxJsonDepth - 2;  // innermost object at the limit
  std::string path;
  for (size_t i = 0; i < levels; ++i) path += "a.";
  path += "x";
  Create("deep", fmt::format(R"({{"name": "Deep", "status": "active",
    "triggers": [{{"type": "track", "event": "Deep",
                   "where": [{{"property": "{}", "op": "is", "value": "hit"}}]}}],
    "qualification": {{"rule": "every_time"}},
    "flow": [{{"action": "add_tag", "tag": "deep"}}]}})",
                             path));
  Ingest({Track("d1", "u1", "Deep", R"("properties":)" + NestedProperties(levels)),
          Track("d2", "u2", "Deep", R"("properties":)" + NestedProperties(levels - 1))});
  Settle();
  EXPECT_EQ(Stat("deep", "triggered"), 1);  // u2's x is one level higher: another property
  EXPECT_EQ(Stat("deep", "completed"), 1);
  auto dead = engine_->ListDeadLetters(kTenant, "campaigns", "", 10);
  ASSERT_TRUE(dead.ok());
  EXPECT_TRUE(dead->items.empty());

  // Deeper than ingest accepts (it reached the log some other way): not read as "no
  // properties" but dead-lettered with the reason.
  Ingest({Track("d3", "u3", "Deep", R"("properties":)" + NestedProperties(levels + 1))});
  Settle();
  EXPECT_EQ(Stat("deep", "triggered"), 1);
  dead = engine_->ListDeadLetters(kTenant, "campaigns", "", 10);
  ASSERT_TRUE(dead.ok());
  ASSERT_EQ(dead->items.size(), 1u);
  EXPECT_EQ(dead->items[0].activity.message_id.str(), "d3");
  EXPECT_NE(dead->items[0].reason.find("cannot be parsed"), std::string::npos)
      << dead->items[0].reason;
}

}  // namespace
}  // namespace fairway::campaigns
