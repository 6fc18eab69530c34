// Campaigns that follow the person: anonymous matches deferred until the visitor is known, then
// run once against the merged lead; run state, qualification history and communication limits
// shared by every identity of one person, merges included.

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "campaigns/campaign_state.h"
#include "campaigns/tests/campaign_pipeline.h"
#include "engine/engine.h"
#include "model/generated_activities.h"

namespace fairway::campaigns {
namespace {

using model::Activity;
using model::ActivityType;
using pipeline_test::CampaignPipelineTest;
using pipeline_test::kDayMs;
using pipeline_test::kTenant;

class PersonCampaignTest : public CampaignPipelineTest {
 protected:
  static Activity AnonymousPage(std::string id, std::string anonymous, std::string path) {
    Activity a = Page(std::move(id), "", std::move(path));
    a.anonymous_id = std::move(anonymous);
    return a;
  }
  static Activity IdentifyVisitor(std::string id, std::string user, std::string anonymous,
                                  std::string traits) {
    Activity a = Identify(std::move(id), std::move(user), std::move(traits));
    a.anonymous_id = std::move(anonymous);
    return a;
  }
  static Activity Alias(std::string id, std::string user, std::string previous) {
    Activity a;
    a.type = ActivityType::kAlias;
    a.message_id = MessageId(std::move(id));
    a.user_id = std::move(user);
    a.fields_json = fmt::format(R"("previousId":"{}")", previous);
    return a;
  }
  static Activity AnonymousTrack(std::string id, std::string anonymous, std::string event) {
    Activity a = Track(std::move(id), "", std::move(event));
    a.anonymous_id = std::move(anonymous);
    return a;
  }

  // Rows of deferred matches kept under `lead`.
  size_t DeferredRows(std::string_view lead) {
    std::string prefix =
        engine::StateKeyPrefix(kTenant, "campaigns") + DeferredPrefix(LeadId(std::string(lead)));
    auto it = store_->NewIterator(storage::kEngineState, prefix, storage::PrefixEnd(prefix));
    size_t n = 0;
    for (it->SeekToFirst(); it->Valid(); it->Next()) ++n;
    return n;
  }
};

// The seed's story: "visited pricing, email ends with @example.com".
constexpr std::string_view kPricingExample = R"({
  "name": "Pricing, example.com", "status": "active",
  "triggers": [{"type": "visits_web_page", "url": {"op": "contains", "value": "/pricing"}}],
  "filters": [{"field": "email", "op": "ends_with", "value": "@example.com"}],
  "flow": [
    {"action": "change_score", "change": 10},
    {"action": "send_email", "to": "{{lead.email}}", "subject": "Pricing", "body": "You saw {{trigger.url}}."},
    {"action": "call_webhook", "url": "https://hooks.test/sales", "body": {"email": "{{lead.email}}", "url": "{{trigger.url}}"}}
  ]
})";

TEST_F(PersonCampaignTest, AnAnonymousMatchWaitsForIdentifyThenRunsOnceForThePerson) {
  Create("pricing", kPricingExample);
  Ingest({AnonymousPage("p1", "anon-1", "/pricing")});
  Settle();
  // Deferred: no flow ran on the anonymous visitor, and the filter was not judged yet.
  EXPECT_EQ(Stat("pricing", "deferred"), 1);
  EXPECT_EQ(Stat("pricing", "triggered"), 0);
  EXPECT_EQ(Stat("pricing", "filtered_out"), 0);
  EXPECT_TRUE(Deliveries().empty());
  EXPECT_EQ(Generated()["score_changed"], 0);
  EXPECT_EQ(DeferredRows("anon-1"), 1u);

  clock_.AdvanceMillis(3'600'000);
  Ingest({IdentifyVisitor("i1", "ann", "anon-1", R"({"email":"ann@example.com"})")});
  Settle();
  EXPECT_EQ(Stat("pricing", "promoted"), 1);
  EXPECT_EQ(Stat("pricing", "qualified"), 1);
  EXPECT_EQ(Stat("pricing", "completed"), 1);
  EXPECT_EQ(DeferredRows("anon-1"), 0u);
  auto deliveries = Deliveries();
  ASSERT_EQ(deliveries.size(), 2u);
  for (const auto& d : deliveries) {
    if (d.kind == dispatch::DeliveryKind::kEmail) {
      EXPECT_EQ(d.mail_to, "ann@example.com");
      EXPECT_EQ(d.text_body, "You saw https://acme.test/pricing.");
    } else {
      EXPECT_EQ(d.body, R"({"email":"ann@example.com","url":"https://acme.test/pricing"})");
    }
  }
  // The run's effects belong to the person: the score lands on the known lead.
  auto gen = Generated("ann");
  EXPECT_EQ(gen["score_changed"], 1);
  EXPECT_EQ(gen[std::string(model::IdentityLinked::kEvent)], 1);
  EXPECT_EQ(Lead("anon-1")->id, "ann");
  EXPECT_EQ(Lead("ann")->score, 10);

  // Later visits under either identity do not run it again ("once" is per person).
  Ingest({Page("p2", "ann", "/pricing"), AnonymousPage("p3", "anon-1", "/pricing")});
  Settle();
  EXPECT_EQ(Stat("pricing", "qualified"), 1);
  EXPECT_EQ(Stat("pricing", "not_qualified"), 2);
  EXPECT_EQ(Stat("pricing", "forwarded"), 1);
  EXPECT_EQ(Deliveries().size(), 2u);
  EXPECT_EQ(DeferredRows("anon-1"), 0u);
}

TEST_F(PersonCampaignTest, DeferredMatchesAreJudgedAgainstTheMergedPersonInEventOrder) {
  // One match per campaign is kept: the earliest by event time, though it arrived second; the
  // filter sees the identify's traits, and a visitor who turns out not to match is filtered
  // out then.
  Create("pricing", R"({"name": "P", "status": "active",
    "triggers": [{"type": "visits_web_page", "url": {"op": "contains", "value": "/pricing"}}],
    "filters": [{"field": "email", "op": "ends_with", "value": "@example.com"}],
    "flow": [{"action": "call_webhook", "url": "https://hooks.test/{{trigger.path}}"}]})");
  Activity late = AnonymousPage("p2", "anon-1", "/pricing/b");
  late.timestamp_ms = clock_.NowMillis() - 1000;
  Activity early = AnonymousPage("p1", "anon-1", "/pricing/a");
  early.timestamp_ms = clock_.NowMillis() - 2000;
  Ingest({late, early, AnonymousPage("q1", "anon-2", "/pricing")});
  Settle();
  EXPECT_EQ(Stat("pricing", "deferred"), 3);
  Ingest({IdentifyVisitor("i1", "ann", "anon-1", R"({"email":"ann@example.com"})"),
          IdentifyVisitor("i2", "bob", "anon-2", R"({"email":"bob@other.test"})")});
  Settle();
  EXPECT_EQ(Stat("pricing", "promoted"), 2);
  EXPECT_EQ(Stat("pricing", "qualified"), 1);
  EXPECT_EQ(Stat("pricing", "filtered_out"), 1);
  auto deliveries = Deliveries();
  ASSERT_EQ(deliveries.size(), 1u);
  EXPECT_EQ(deliveries[0].url, "https://hooks.test/%2Fpricing%2Fa");
  EXPECT_EQ(DeferredRows("anon-1") + DeferredRows("anon-2"), 0u);
}

TEST_F(PersonCampaignTest, AnonymousPolicyRunIgnoreAndTheDeferWindow) {
  Create("run", R"({"name": "R", "status": "active", "anonymous": "run",
    "triggers": [{"type": "track", "event": "Downloaded"}],
    "flow": [{"action": "change_score", "change": 1}]})");
  Create("ignore", R"({"name": "I", "status": "active", "anonymous": "ignore",
    "triggers": [{"type": "track", "event": "Downloaded"}],
    "flow": [{"action": "change_score", "change": 100}]})");
  Create("defer", R"({"name": "D", "status": "active",
    "triggers": [{"type": "track", "event": "Downloaded"}],
    "flow": [{"action": "add_tag", "tag": "downloaded"}]})");
  Ingest({AnonymousTrack("d1", "anon-1", "Downloaded")});
  Settle();
  EXPECT_EQ(Stat("run", "qualified"), 1);
  EXPECT_EQ(Stat("ignore", "anonymous_ignored"), 1);
  EXPECT_EQ(Stat("defer", "deferred"), 1);
  EXPECT_EQ(Lead("anon-1")->score, 1);  // run: on the anonymous profile at once

  // The window is 30 days by event time: a visitor known 31 days later gets nothing.
  clock_.AdvanceMillis(31 * kDayMs);
  Ingest({IdentifyVisitor("i1", "ann", "anon-1", R"({})")});
  Settle();
  EXPECT_EQ(Stat("defer", "deferred_expired"), 1);
  EXPECT_EQ(Stat("defer", "qualified"), 0);
  EXPECT_EQ(DeferredRows("anon-1"), 0u);
  // "run" keeps its history with the person: the known lead does not run it again.
  Ingest({Track("d2", "ann", "Downloaded")});
  Settle();
  EXPECT_EQ(Stat("run", "qualified"), 1);
  EXPECT_EQ(Stat("run", "not_qualified"), 1);
  EXPECT_EQ(Stat("ignore", "qualified"), 1);  // known: runs
  EXPECT_EQ(Stat("defer", "qualified"), 1);
  EXPECT_EQ(Lead("ann")->score, 101);

  // defer_days 0: nothing is kept; defer acts as ignore.
  ASSERT_TRUE(registry_->UpdateSettings(kTenant, R"({"defer_days": 0})").ok());
  Ingest({AnonymousTrack("d3", "anon-2", "Downloaded")});
  Settle();
  EXPECT_EQ(Stat("defer", "anonymous_ignored"), 1);
  EXPECT_EQ(DeferredRows("anon-2"), 0u);
  EXPECT_FALSE(registry_->UpdateSettings(kTenant, R"({"defer_days": 366})").ok());
  EXPECT_FALSE(registry_->UpdateSettings(kTenant, R"({"defer_days": -1})").ok());
  EXPECT_FALSE(registry_->UpdateSettings(kTenant, R"({"defer_days": "30"})").ok());
}

TEST_F(PersonCampaignTest, AVisitorKeepsOneMatchPerCampaignAndAtMostAHundred) {
  // 101 campaigns listen to the same event: one activity matches them all; the 101st match is
  // dropped. Later activities add nothing: the earliest match per campaign is kept.
  for (int c = 0; c <= 100; ++c) {
    Create(fmt::format("d{}", c), R"({"name": "D", "status": "active",
      "qualification": {"rule": "every_time"},
      "triggers": [{"type": "track", "event": "Viewed"}],
      "flow": [{"action": "change_score", "change": 1}]})");
  }
  for (int i = 0; i < 3; ++i) Ingest({AnonymousTrack(fmt::format("v{}", i), "anon-1", "Viewed")});
  Settle();
  EXPECT_EQ(DeferredRows("anon-1"), 100u);
  int64_t deferred = 0, dropped = 0, again = 0;
  for (int c = 0; c <= 100; ++c) {
    deferred += Stat(fmt::format("d{}", c), "deferred");
    dropped += Stat(fmt::format("d{}", c), "deferred_dropped");
    again += Stat(fmt::format("d{}", c), "already_deferred");
  }
  EXPECT_EQ(deferred, 100);
  EXPECT_EQ(dropped, 3);      // the 101st campaign, each time
  EXPECT_EQ(again, 2 * 100);  // the second and third activity, for each kept campaign
  Ingest({IdentifyVisitor("i1", "ann", "anon-1", R"({})")});
  Settle();
  EXPECT_EQ(Lead("ann")->score, 100);
  EXPECT_EQ(DeferredRows("anon-1"), 0u);
}

TEST_F(PersonCampaignTest, TriggersHandedOverTogetherRunOnceEach) {
  // Two anonymous-only clicks of a known visitor are handed over to the person in one work
  // item; each runs once (not once per hand-over).
  Create("clicks", R"({"name": "C", "status": "active", "qualification": {"rule": "every_time"},
    "triggers": [{"type": "track", "event": "Clicked"}],
    "flow": [{"action": "change_score", "change": 1}]})");
  Ingest({IdentifyVisitor("i1", "ann", "anon-1", R"({})")});
  Settle();
  Ingest({AnonymousTrack("c1", "anon-1", "Clicked"), AnonymousTrack("c2", "anon-1", "Clicked")});
  Settle();
  EXPECT_EQ(Stat("clicks", "forwarded"), 2);
  EXPECT_EQ(Stat("clicks", "qualified"), 2);
  EXPECT_EQ(Stat("clicks", "duplicate_trigger"), 0);
  EXPECT_EQ(Lead("ann")->score, 2);
  EXPECT_EQ(DeferredRows("anon-1"), 0u);
}

TEST_F(PersonCampaignTest, AnIdentityNoLongerThePersonsKeepsItsMatches) {
  // The identify and the person's deletion reach the campaigns processor before the link's
  // announcement: the anonymous id is nobody's when the promotion comes, so nothing runs for
  // the deleted lead and the match stays the visitor's.
  Create("pricing", R"({"name": "P", "status": "active",
    "triggers": [{"type": "visits_web_page", "url": {"op": "contains", "value": "/pricing"}}],
    "flow": [{"action": "change_score", "change": 1}]})");
  Ingest({AnonymousPage("p1", "anon-1", "/pricing")});
  Settle();
  Activity del;
  del.type = ActivityType::kFairway;
  del.event = model::LeadDeleted::kEvent;
  del.message_id = MessageId("del");
  del.user_id = "ann";
  Ingest({IdentifyVisitor("i1", "ann", "anon-1", R"({})"), del});
  Settle();
  EXPECT_EQ(Stat("pricing", "qualified"), 0);
  EXPECT_EQ(DeferredRows("anon-1"), 1u);
  EXPECT_FALSE(Lead("ann").has_value());
  // A later identify by someone else promotes it for them.
  Ingest({IdentifyVisitor("i2", "bob", "anon-1", R"({})")});
  Settle();
  EXPECT_EQ(Stat("pricing", "qualified"), 1);
  EXPECT_EQ(Lead("bob")->score, 1);
}

TEST_F(PersonCampaignTest, OnceIsOncePerPersonAcrossAMergeOfTwoKnownLeads) {
  Create("trial", R"({"name": "T", "status": "active",
    "triggers": [{"type": "track", "event": "Trial Started"}],
    "flow": [{"action": "change_score", "change": 5}]})");
  // Two userIds of one human each ran the campaign before anyone knew; then an alias merges
  // them. Neither identity runs it again, and the merged lead's score counts both runs.
  Ingest({Track("t1", "old-ann", "Trial Started"), Track("t2", "ann", "Trial Started")});
  Settle();
  EXPECT_EQ(Stat("trial", "qualified"), 2);
  Ingest({Alias("al", "ann", "old-ann")});
  Settle();
  EXPECT_EQ(Lead("old-ann")->id, "ann");
  Ingest({Track("t3", "old-ann", "Trial Started"), Track("t4", "ann", "Trial Started")});
  Settle();
  EXPECT_EQ(Stat("trial", "qualified"), 2);
  EXPECT_EQ(Stat("trial", "not_qualified"), 2);
  EXPECT_EQ(Stat("trial", "forwarded"), 1);
  EXPECT_EQ(Lead("ann")->score, 10);

  // History written under the merged-away identity alone counts too.
  Create("demo", R"({"name": "Demo", "status": "active",
    "triggers": [{"type": "track", "event": "Demo"}],
    "flow": [{"action": "change_score", "change": 1}]})");
  Ingest({Track("x1", "bob-old", "Demo")});
  Settle();
  Ingest({Alias("al2", "bob", "bob-old"), Track("x2", "bob", "Demo")});
  Settle();
  EXPECT_EQ(Stat("demo", "qualified"), 1);
  EXPECT_EQ(Stat("demo", "not_qualified"), 1);
}

TEST_F(PersonCampaignTest, TheEmailLimitCountsAcrossIdentities) {
  ASSERT_TRUE(registry_->UpdateSettings(kTenant, R"({"emails_per_day": 1})").ok());
  Create("news", R"({"name": "N", "status": "active", "qualification": {"rule": "every_time"},
    "triggers": [{"type": "track", "event": "Subscribed"}],
    "flow": [{"action": "send_email", "to": "{{lead.email}}", "subject": "s", "body": "b"}]})");
  Ingest({Identify("i1", "ann-old", R"({"email":"ann@example.com"})")});
  Settle();
  Ingest({Track("s1", "ann-old", "Subscribed")});
  Settle();
  EXPECT_EQ(Stat("news", "step.1.executed"), 1);
  // The old identity merges into "ann"; "ann" has sent nothing under its own key, but the
  // person got an email today.
  Ingest({Alias("al", "ann", "ann-old")});
  Settle();
  Ingest({Track("s2", "ann", "Subscribed")});
  Settle();
  EXPECT_EQ(Stat("news", "step.1.executed"), 1);
  EXPECT_EQ(Stat("news", "step.1.blocked"), 1);
  // Under the old identity too (forwarded to the person).
  Ingest({Track("s3", "ann-old", "Subscribed")});
  Settle();
  EXPECT_EQ(Stat("news", "step.1.blocked"), 2);
  EXPECT_EQ(Deliveries().size(), 1u);
}

TEST_F(PersonCampaignTest, ADeletedLeadLosesItsDeferredMatches) {
  Create("pricing", kPricingExample);
  Create("forget", R"({"name": "F", "status": "active", "anonymous": "run",
    "triggers": [{"type": "track", "event": "Forget Me"}],
    "flow": [{"action": "delete_lead"}]})");
  Ingest({AnonymousPage("p1", "anon-1", "/pricing")});
  Settle();
  EXPECT_EQ(DeferredRows("anon-1"), 1u);
  Ingest({AnonymousTrack("f1", "anon-1", "Forget Me")});
  Settle();
  EXPECT_EQ(DeferredRows("anon-1"), 0u);
  Ingest({IdentifyVisitor("i1", "ann", "anon-1", R"({"email":"ann@example.com"})")});
  Settle();
  EXPECT_EQ(Stat("pricing", "qualified"), 0);
}

TEST(CampaignDefinitionTest, AnonymousPolicyDefaultsAndErrors) {
  auto web = ParseCampaign(R"({"name": "W", "triggers": [{"type": "visits_web_page"}],
    "flow": []})",
                           "w");
  ASSERT_TRUE(web.ok()) << web.status().ToString();
  EXPECT_EQ(web->anonymous, AnonymousPolicy::kDefer);
  auto score = ParseCampaign(R"({"name": "S", "triggers": [{"type": "score_changed"}],
    "flow": []})",
                             "s");
  ASSERT_TRUE(score.ok()) << score.status().ToString();
  EXPECT_EQ(score->anonymous, AnonymousPolicy::kRun);
  auto ignore = ParseCampaign(R"({"name": "I", "anonymous": "ignore",
    "triggers": [{"type": "visits_web_page"}], "flow": []})",
                              "i");
  ASSERT_TRUE(ignore.ok());
  EXPECT_EQ(ignore->anonymous, AnonymousPolicy::kIgnore);
  auto bad = ParseCampaign(R"({"name": "B", "anonymous": "later",
    "triggers": [{"type": "visits_web_page"}], "flow": []})",
                           "b");
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(bad.status().message().starts_with("anonymous:")) << bad.status().ToString();
  auto wrong = ParseCampaign(R"({"name": "B", "anonymous": 1,
    "triggers": [{"type": "visits_web_page"}], "flow": []})",
                             "b");
  ASSERT_FALSE(wrong.ok());
  EXPECT_TRUE(wrong.status().message().starts_with("anonymous")) << wrong.status().ToString();
}

TEST(CampaignStateTest, DeferredMatchesRoundTripAndSortByEventTime) {
  DeferredMatch m;
  m.campaign = "c";
  m.forwarded = true;
  m.trigger.trigger_message_id = "m1";
  m.trigger.trigger_time_ms = -5;
  m.trigger.trigger_fields_json = R"("properties":{"url":"u"})";
  auto back = DecodeDeferredMatch(EncodeDeferredMatch(m));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->campaign, "c");
  EXPECT_TRUE(back->forwarded);
  EXPECT_EQ(back->trigger.trigger_time_ms, -5);
  EXPECT_EQ(back->trigger.trigger_fields_json, m.trigger.trigger_fields_json);
  EXPECT_FALSE(DecodeDeferredMatch("\x01\x02").ok());
  EXPECT_FALSE(DecodeDeferredMatch("").ok());
  const LeadId lead("a");
  EXPECT_LT(DeferredKey(lead, -1, "c", "m"), DeferredKey(lead, 0, "c", "m"));
  EXPECT_LT(DeferredKey(lead, 0, "z", "m"), DeferredKey(lead, 1, "a", "m"));
  EXPECT_TRUE(DeferredKey(lead, 7, "c", "m").starts_with(DeferredPrefix(lead)));
}

}  // namespace
}  // namespace fairway::campaigns
