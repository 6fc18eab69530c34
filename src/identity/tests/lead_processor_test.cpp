#include "identity/lead_processor.h"

#include <gtest/gtest.h>

#include <memory>
#include <set>

#include "common/time_format.h"
#include "identity/lead_keys.h"
#include "identity/lead_store.h"
#include "storage/schema.h"
#include "storage/tests/temp_dir.h"

namespace fairway::identity {
namespace {

using model::Activity;
using model::ActivityType;

// 2026-11-20T10:00:00Z, a Friday.
const int64_t kT0 = *ParseIso8601Millis("2026-11-20T10:00:00Z");
constexpr int64_t kHourMs = 3'600'000;

// A work item over a real StateTxn. The txn's writes reach the store only on Commit(), so a test
// can run two items against the same committed state, as two engine threads would.
class FakeWorkItem : public engine::WorkItem {
 public:
  FakeWorkItem(storage::Store* store, TenantId tenant, std::vector<Activity> activities)
      : store_(store),
        tenant_(std::move(tenant)),
        txn_(store, engine::StateKeyPrefix(tenant_, "leads")) {
    uint64_t offset = 0;
    for (auto& a : activities) {
      entries_.push_back(log::LogEntry{PartitionId(0), Offset(offset++), std::move(a)});
    }
  }

  const TenantId& tenant() const override { return tenant_; }
  std::span<const log::LogEntry> entries() const override { return entries_; }
  engine::StateTxn& state() override { return txn_; }
  uint32_t attempt() const override { return 1; }
  void Emit(model::Activity activity) override { emitted_.push_back(std::move(activity)); }
  void Finish(std::optional<engine::ProcessError> error) override {
    ++finish_calls_;
    error_ = std::move(error);
  }

  // Writes the txn as the engine would on an OK finish.
  Status Commit() {
    storage::WriteBatch batch;
    txn_.AppendTo(&batch);
    return store_->Write(batch, false);
  }

  int finish_calls() const { return finish_calls_; }
  const std::optional<engine::ProcessError>& error() const { return error_; }
  const std::vector<Activity>& emitted() const { return emitted_; }

 private:
  storage::Store* store_;
  TenantId tenant_;
  std::vector<log::LogEntry> entries_;
  engine::StateTxn txn_;
  std::vector<Activity> emitted_;
  int finish_calls_ = 0;
  std::optional<engine::ProcessError> error_;
};

Activity Make(ActivityType type, std::string message_id, std::string user, std::string anon,
              int64_t ts, std::string event = "", std::string fields = "") {
  Activity a;
  a.type = type;
  a.message_id = MessageId(std::move(message_id));
  a.user_id = std::move(user);
  a.anonymous_id = std::move(anon);
  a.event = std::move(event);
  a.timestamp_ms = ts;
  a.received_at_ms = ts;
  a.fields_json = std::move(fields);
  return a;
}

Activity Track(std::string id, std::string user, std::string anon, std::string event, int64_t ts) {
  return Make(ActivityType::kTrack, std::move(id), std::move(user), std::move(anon), ts,
              std::move(event), R"("properties":{"plan":"pro"},"context":{"ip":"10.0.0.1"})");
}

Activity Page(std::string id, std::string user, std::string anon, std::string name, int64_t ts) {
  return Make(ActivityType::kPage, std::move(id), std::move(user), std::move(anon), ts,
              std::move(name), R"("properties":{"path":"/x"})");
}

Activity Identify(std::string id, std::string user, std::string anon, int64_t ts,
                  std::string traits) {
  return Make(ActivityType::kIdentify, std::move(id), std::move(user), std::move(anon), ts, "",
              R"("context":{"library":{"name":"analytics.js"}},"traits":)" + traits);
}

Activity Group(std::string id, std::string user, int64_t ts, std::string group_id,
               std::string traits) {
  return Make(ActivityType::kGroup, std::move(id), std::move(user), "", ts, "",
              R"("groupId":")" + group_id + R"(","traits":)" + traits);
}

Activity Alias(std::string id, std::string user, std::string previous, int64_t ts) {
  return Make(ActivityType::kAlias, std::move(id), std::move(user), "", ts, "",
              R"("previousId":")" + previous + R"(")");
}

class LeadProcessorTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  void Reopen(LeadProcessorOptions options = {}) {
    leads_.reset();
    store_.reset();
    storage::StoreOptions opts;
    opts.path = dir_.path();
    opts.column_families = storage::FairwayColumnFamilies();
    auto s = storage::Store::Open(opts);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
    processor_ = std::make_unique<LeadProcessor>(options);
    leads_ = std::make_unique<LeadStore>(store_.get());
  }

  // Processes `activities` as one work item and commits it; expects success.
  void Run(std::vector<Activity> activities, const std::string& tenant = "t1") {
    FakeWorkItem item(store_.get(), TenantId(tenant), std::move(activities));
    processor_->Process(item);
    ASSERT_EQ(item.finish_calls(), 1);
    ASSERT_FALSE(item.error().has_value()) << item.error()->message;
    EXPECT_TRUE(item.emitted().empty());
    Status st = item.Commit();
    ASSERT_TRUE(st.ok()) << st.ToString();
  }

  // Runs each activity as its own work item, in the given order.
  void RunEach(std::vector<Activity> activities, const std::string& tenant = "t1") {
    for (auto& a : activities) Run({std::move(a)}, tenant);
  }

  LeadView Find(std::string_view id, const std::string& tenant = "t1") {
    auto r = leads_->Find(TenantId(tenant), id);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_TRUE(r.ok() && r->has_value()) << "no lead for " << id;
    if (!r.ok() || !r->has_value()) return LeadView{};
    return std::move(r).value().value();
  }

  std::string Json(std::string_view id, const std::string& tenant = "t1") {
    std::string out;
    AppendLeadJson(Find(id, tenant), &out);
    return out;
  }

  // Every state key of the "leads" space of `tenant` (without the space prefix).
  std::vector<std::string> StateKeys(const std::string& tenant = "t1") {
    engine::StateTxn txn(store_.get(), engine::StateKeyPrefix(TenantId(tenant), "leads"));
    std::vector<std::string> keys;
    Status st = txn.Scan("", [&](std::string_view k, std::string_view) {
      keys.emplace_back(k);
      return true;
    });
    EXPECT_TRUE(st.ok()) << st.ToString();
    return keys;
  }

  LeadPage List(const LeadFilter& filter, std::string_view cursor = {}, size_t limit = 100) {
    auto r = leads_->List(TenantId("t1"), filter, cursor, limit);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(r).value() : LeadPage{};
  }

  static std::vector<std::string> Ids(const LeadPage& page) {
    std::vector<std::string> ids;
    for (const auto& l : page.leads) ids.push_back(l.id);
    return ids;
  }

  static std::string TraitJson(const LeadView& v, std::string_view name) {
    const TraitEntry* t = v.FindTrait(name);
    return t ? t->json : "<missing>";
  }

  TempDir dir_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<LeadProcessor> processor_;
  std::unique_ptr<LeadStore> leads_;
};

using Strings = std::vector<std::string>;

TEST_F(LeadProcessorTest, SpecIsPerLeadLeads) {
  const auto& spec = processor_->spec();
  EXPECT_EQ(spec.name, "leads");
  EXPECT_EQ(spec.ordering, engine::Ordering::kPerLead);
  EXPECT_EQ(spec.batch_size, 1024u);
  EXPECT_TRUE(spec.enabled_by_default);
}

TEST_F(LeadProcessorTest, IdentifyCreatesAKnownLead) {
  Run({Identify("m1", "u1", "", kT0, R"({"name":"Ann","plan":"pro","age":41})")});
  LeadView v = Find("u1");
  EXPECT_EQ(v.id, "u1");
  EXPECT_TRUE(v.known);
  EXPECT_EQ(v.user_ids, Strings{"u1"});
  EXPECT_TRUE(v.anonymous_ids.empty());
  EXPECT_EQ(TraitJson(v, "name"), R"("Ann")");
  EXPECT_EQ(TraitJson(v, "age"), "41");
  EXPECT_EQ(v.activity_count, 1u);
  EXPECT_EQ(v.first_seen_ms, kT0);
  EXPECT_EQ(v.last_seen_ms, kT0);
  EXPECT_EQ(v.CountActivities(ActivityType::kIdentify, "", kT0, kT0), 1u);
  EXPECT_FALSE(v.account.has_value());

  auto missing = leads_->Find(TenantId("t1"), "nobody");
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing->has_value());
  // Tenants do not see each other's leads.
  auto other = leads_->Find(TenantId("t2"), "u1");
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->has_value());
}

TEST_F(LeadProcessorTest, TraitsAreLastWriteWinsPerFieldByEventTime) {
  // The newer identify is processed first; the older one, arriving late, only fills in the
  // field the newer one did not set.
  Run({Identify("m2", "u1", "", kT0 + kHourMs, R"({"plan":"pro","name":"Ann B."})")});
  Run({Identify("m1", "u1", "", kT0, R"({"plan":"free","company":"Initech"})")});
  LeadView v = Find("u1");
  EXPECT_EQ(TraitJson(v, "plan"), R"("pro")");
  EXPECT_EQ(TraitJson(v, "name"), R"("Ann B.")");
  EXPECT_EQ(TraitJson(v, "company"), R"("Initech")");
  EXPECT_EQ(v.first_seen_ms, kT0);
  EXPECT_EQ(v.last_seen_ms, kT0 + kHourMs);

  // A still newer one wins, and nested values are kept whole; within one work item too.
  Run({Identify("m3", "u1", "", kT0 + 2 * kHourMs, R"({"plan":{"tier":"enterprise","seats":5}})"),
       Identify("m4", "u1", "", kT0 - kHourMs, R"({"plan":"trial"})")});
  EXPECT_EQ(TraitJson(Find("u1"), "plan"), R"({"tier":"enterprise","seats":5})");
}

TEST_F(LeadProcessorTest, TraitTiesResolveTheSameInAnyOrder) {
  Activity a = Identify("m1", "u1", "", kT0, R"({"plan":"alpha"})");
  Activity b = Identify("m2", "u1", "", kT0, R"({"plan":"beta"})");
  RunEach({a, b}, "t1");
  RunEach({b, a}, "t2");
  EXPECT_EQ(TraitJson(Find("u1", "t1"), "plan"), R"("beta")");
  EXPECT_EQ(Json("u1", "t1"), Json("u1", "t2"));
}

TEST_F(LeadProcessorTest, CountsActivitiesByDay) {
  const int64_t day = kDayMs;
  Run({Page("p1", "u1", "", "/pricing", kT0), Page("p2", "u1", "", "/pricing", kT0 + kHourMs),
       Page("p3", "u1", "", "/pricing", kT0 - day), Page("p4", "u1", "", "/pricing", kT0 - 8 * day),
       Page("p5", "u1", "", "/docs", kT0), Page("p6", "u1", "", "", kT0),
       Track("t1", "u1", "", "Signed Up", kT0 - 2 * day)});
  LeadView v = Find("u1");
  EXPECT_EQ(v.activity_count, 7u);
  // "Visited /pricing in the last 7 days" counts whole UTC days: today and the 6 before.
  EXPECT_EQ(v.CountActivities(ActivityType::kPage, "/pricing", kT0 - 6 * day, kT0), 3u);
  EXPECT_EQ(v.CountActivities(ActivityType::kPage, "/pricing", kT0 - 8 * day, kT0), 4u);
  // Day granularity: any time on a day includes the whole day.
  int64_t midnight = DayOf(kT0) * kDayMs;
  EXPECT_EQ(v.CountActivities(ActivityType::kPage, "/pricing", midnight, midnight), 2u);
  EXPECT_EQ(v.CountActivities(ActivityType::kPage, "/pricing", midnight - 1, midnight - 1), 1u);
  EXPECT_EQ(v.CountActivities(ActivityType::kPage, "/docs", kT0, kT0), 1u);
  EXPECT_EQ(v.CountActivities(ActivityType::kPage, "", kT0, kT0), 1u);  // unnamed page
  EXPECT_EQ(v.CountActivities(ActivityType::kTrack, "Signed Up", kT0 - 2 * day, kT0), 1u);
  EXPECT_EQ(v.CountActivities(ActivityType::kTrack, "Signed Up", kT0 - day, kT0), 0u);
  EXPECT_EQ(v.CountActivities(ActivityType::kTrack, "/pricing", kT0 - 9 * day, kT0), 0u);
  EXPECT_EQ(v.CountActivitiesAnyType("/pricing", kT0 - 9 * day, kT0), 4u);

  // Counters are additive across work items.
  Run({Page("p7", "u1", "", "/pricing", kT0)});
  EXPECT_EQ(Find("u1").CountActivities(ActivityType::kPage, "/pricing", kT0, kT0), 3u);
}

TEST_F(LeadProcessorTest, PrunesCountersOutsideTheWindow) {
  LeadProcessorOptions options;
  options.counter_days = 7;
  Reopen(options);
  Run({Page("p1", "u1", "", "/a", kT0 - 10 * kDayMs),
       Page("p2", "u1", "", "/a", kT0 - 6 * kDayMs)});
  EXPECT_EQ(Find("u1").CountActivities(ActivityType::kPage, "/a", 0, kT0), 2u);
  // A newer activity moves the window: day -10 is dropped, day -6 is still inside.
  Run({Page("p3", "u1", "", "/a", kT0)});
  LeadView v = Find("u1");
  EXPECT_EQ(v.CountActivities(ActivityType::kPage, "/a", 0, kT0), 2u);
  EXPECT_EQ(v.CountActivities(ActivityType::kPage, "/a", kT0 - 6 * kDayMs, kT0 - 6 * kDayMs), 1u);
  // A late activity older than the window adds no counter, but is still counted and seen.
  Run({Page("p4", "u1", "", "/a", kT0 - 30 * kDayMs)});
  v = Find("u1");
  EXPECT_EQ(v.CountActivities(ActivityType::kPage, "/a", 0, kT0), 2u);
  EXPECT_EQ(v.activity_count, 4u);
  EXPECT_EQ(v.first_seen_ms, kT0 - 30 * kDayMs);
}

TEST_F(LeadProcessorTest, IdentifyMergesEarlierAnonymousActivity) {
  Run({Page("p1", "", "anon-1", "/pricing", kT0), Page("p2", "", "anon-1", "/pricing", kT0 + 1),
       Track("t1", "", "anon-1", "Viewed Demo", kT0 + 2)});
  // Before identify: an anonymous lead of its own.
  LeadView anon = Find("anon-1");
  EXPECT_EQ(anon.id, "anon-1");
  EXPECT_FALSE(anon.known);
  EXPECT_EQ(anon.anonymous_ids, Strings{"anon-1"});

  Run({Identify("i1", "u1", "anon-1", kT0 + kHourMs, R"({"email":"ann@example.com"})")});
  LeadView v = Find("u1");
  EXPECT_EQ(v.id, "u1");
  EXPECT_EQ(v.user_ids, Strings{"u1"});
  EXPECT_EQ(v.anonymous_ids, Strings{"anon-1"});
  EXPECT_EQ(v.CountActivities(ActivityType::kPage, "/pricing", kT0, kT0), 2u);
  EXPECT_EQ(v.CountActivities(ActivityType::kTrack, "Viewed Demo", kT0, kT0), 1u);
  EXPECT_EQ(v.activity_count, 4u);
  EXPECT_EQ(v.first_seen_ms, kT0);
  EXPECT_EQ(v.last_seen_ms, kT0 + kHourMs);
  // The anonymous id now resolves to the same lead.
  EXPECT_EQ(Json("anon-1"), Json("u1"));

  // Later activity with both ids (as analytics.js sends after identify) lands in u1's profile
  // and keeps the merge.
  Run({Page("p3", "u1", "anon-1", "/pricing", kT0 + 2 * kHourMs)});
  EXPECT_EQ(Find("anon-1").CountActivities(ActivityType::kPage, "/pricing", kT0, kT0), 3u);
}

TEST_F(LeadProcessorTest, IdentifyBeforeAnonymousActivityMergesToo) {
  // The identify is processed first (another partition ran ahead, or the anonymous events
  // arrived late): the merge needs no reprocessing.
  Run({Identify("i1", "u1", "anon-1", kT0 + kHourMs, R"({"plan":"pro"})")});
  Run({Page("p1", "", "anon-1", "/pricing", kT0), Page("p2", "", "anon-1", "/pricing", kT0 + 1)});
  LeadView v = Find("u1");
  EXPECT_EQ(v.anonymous_ids, Strings{"anon-1"});
  EXPECT_EQ(v.CountActivities(ActivityType::kPage, "/pricing", kT0, kT0), 2u);
  EXPECT_EQ(v.first_seen_ms, kT0);
  EXPECT_EQ(Json("anon-1"), Json("u1"));
}

TEST_F(LeadProcessorTest, RepeatedIdentifyDoesNotDuplicateIdentities) {
  Activity identify = Identify("i1", "u1", "anon-1", kT0, R"({"plan":"pro","email":"a@x.io"})");
  Run({Page("p1", "", "anon-1", "/", kT0 - 1)});
  Run({identify});
  const std::vector<std::string> keys_before = StateKeys();
  const LeadView before = Find("u1");

  // The same identify processed again, in a new work item and in the same one.
  Run({identify});
  Run({identify, identify});
  // And the client identifying again later with the same traits (a new message).
  Run({Identify("i2", "u1", "anon-1", kT0 + 5, R"({"plan":"pro","email":"a@x.io"})")});

  const LeadView after = Find("u1");
  EXPECT_EQ(StateKeys(), keys_before) << "no new claim, member, email or profile rows";
  EXPECT_EQ(after.user_ids, before.user_ids);
  EXPECT_EQ(after.anonymous_ids, Strings{"anon-1"});
  EXPECT_EQ(TraitJson(after, "plan"), TraitJson(before, "plan"));
  EXPECT_EQ(after.email, before.email);
  EXPECT_EQ(after.id, before.id);
  // Activity counts are not deduplicated here: exactly-once is the engine's job.
  EXPECT_EQ(after.activity_count, before.activity_count + 4);
}

TEST_F(LeadProcessorTest, AliasMergesKnownIntoKnown) {
  Run({Page("p1", "old-id", "anon-1", "/pricing", kT0),
       Identify("i1", "old-id", "anon-1", kT0, R"({"plan":"free","company":"Initech"})")});
  Run({Page("p2", "new-id", "", "/pricing", kT0 + kDayMs),
       Identify("i2", "new-id", "", kT0 + kDayMs, R"({"plan":"pro"})")});
  EXPECT_EQ(Find("old-id").id, "old-id");  // separate until the alias

  Run({Alias("a1", "new-id", "old-id", kT0 + 2 * kDayMs)});
  LeadView v = Find("old-id");
  EXPECT_EQ(v.id, "new-id");
  EXPECT_EQ(v.user_ids, (Strings{"new-id", "old-id"}));
  EXPECT_EQ(v.anonymous_ids, Strings{"anon-1"});
  EXPECT_EQ(TraitJson(v, "plan"), R"("pro")");
  EXPECT_EQ(TraitJson(v, "company"), R"("Initech")");
  EXPECT_EQ(v.CountActivitiesAnyType("/pricing", kT0, kT0 + kDayMs), 2u);
  EXPECT_EQ(v.activity_count, 5u);
  EXPECT_EQ(Json("anon-1"), Json("new-id"));
  EXPECT_EQ(Json("old-id"), Json("new-id"));
}

TEST_F(LeadProcessorTest, AliasProcessedFirstMergesTheSame) {
  std::vector<Activity> acts = {
      Page("p1", "old-id", "anon-1", "/pricing", kT0),
      Identify("i1", "old-id", "anon-1", kT0, R"({"plan":"free"})"),
      Identify("i2", "new-id", "", kT0 + kDayMs, R"({"plan":"pro"})"),
      Alias("a1", "new-id", "old-id", kT0 + 2 * kDayMs),
  };
  RunEach(acts, "t1");
  RunEach({acts[3], acts[2], acts[1], acts[0]}, "t2");
  EXPECT_EQ(Find("old-id", "t2").id, "new-id");
  EXPECT_EQ(Json("anon-1", "t1"), Json("anon-1", "t2"));
}

TEST_F(LeadProcessorTest, TwoIdentifiedDevicesJoinThroughAlias) {
  // Two identifies give two known leads, each with its device's anonymous history; an alias
  // between the userIds joins all four identities.
  Run({Page("p1", "", "laptop", "/a", kT0), Page("p2", "", "phone", "/b", kT0)});
  Run({Identify("i1", "u-old", "laptop", kT0 + 1, R"({"name":"Ann"})")});
  Run({Identify("i2", "u-new", "phone", kT0 + 2, R"({"plan":"pro"})")});
  EXPECT_EQ(Find("laptop").id, "u-old");
  EXPECT_EQ(Find("phone").id, "u-new");
  Run({Alias("a1", "u-new", "u-old", kT0 + 3)});
  for (const char* id : {"laptop", "phone", "u-old", "u-new"}) {
    LeadView v = Find(id);
    EXPECT_EQ(v.id, "u-new") << id;
    EXPECT_EQ(v.user_ids, (Strings{"u-new", "u-old"})) << id;
    EXPECT_EQ(v.anonymous_ids, (Strings{"laptop", "phone"})) << id;
    EXPECT_EQ(v.activity_count, 5u) << id;
    EXPECT_EQ(TraitJson(v, "name"), R"("Ann")");
  }
}

TEST_F(LeadProcessorTest, AliasOfTheMessagesAnonymousIdClaimsIt) {
  Run({Page("p1", "", "anon-1", "/a", kT0)});
  Activity alias = Alias("a1", "u1", "anon-1", kT0 + 1);
  alias.anonymous_id = "anon-1";
  Run({alias});
  LeadView v = Find("anon-1");
  EXPECT_EQ(v.id, "u1");
  EXPECT_EQ(v.user_ids, Strings{"u1"});
  EXPECT_EQ(v.anonymous_ids, Strings{"anon-1"});
}

TEST_F(LeadProcessorTest, ReidentificationMovesAnonymousIdToLatestClaim) {
  std::vector<Activity> acts = {
      Page("p1", "", "shared", "/a", kT0),
      Identify("i1", "u1", "shared", kT0 + 1, "{}"),
      Identify("i2", "u2", "shared", kT0 + 2, "{}"),
  };
  RunEach(acts, "t1");
  RunEach({acts[2], acts[1], acts[0]}, "t2");
  for (const std::string tenant : {"t1", "t2"}) {
    EXPECT_EQ(Find("shared", tenant).id, "u2") << tenant;
    EXPECT_EQ(Find("u2", tenant).anonymous_ids, Strings{"shared"}) << tenant;
    EXPECT_TRUE(Find("u1", tenant).anonymous_ids.empty()) << tenant;
    EXPECT_EQ(Find("u1", tenant).activity_count, 1u) << tenant;
    EXPECT_EQ(Find("u2", tenant).activity_count, 2u) << tenant;
  }
  EXPECT_EQ(Json("shared", "t1"), Json("shared", "t2"));

  // u1 signs in on that device again: the newest association takes it back.
  Run({Track("t1", "u1", "shared", "Signed In", kT0 + 3)});
  EXPECT_EQ(Find("shared").id, "u1");
  EXPECT_TRUE(Find("u2").anonymous_ids.empty());
}

TEST_F(LeadProcessorTest, ClaimCyclesTerminate) {
  // u1 -> u2 -> u1: both resolve to the smallest id of the cycle.
  Run({Alias("a1", "u2", "u1", kT0)});
  Run({Alias("a2", "u1", "u2", kT0 + 1), Page("p1", "u1", "anon-1", "/", kT0)});
  for (const char* id : {"u1", "u2", "anon-1"}) {
    LeadView v = Find(id);
    EXPECT_EQ(v.id, "u1") << id;
    EXPECT_EQ(v.user_ids, (Strings{"u1", "u2"})) << id;
    EXPECT_EQ(v.anonymous_ids, Strings{"anon-1"}) << id;
  }
  // A three-way cycle with a tail: x -> c -> b -> a -> c.
  Run({Alias("b1", "b", "c", kT0), Alias("b2", "a", "b", kT0), Alias("b3", "c", "a", kT0),
       Alias("b4", "c", "x", kT0)});
  for (const char* id : {"a", "b", "c", "x"}) {
    LeadView v = Find(id);
    EXPECT_EQ(v.id, "a") << id;
    EXPECT_EQ(v.user_ids, (Strings{"a", "b", "c", "x"})) << id;
  }
  LeadFilter all;
  EXPECT_EQ(Ids(List(all)), (Strings{"a", "u1"}));
}

TEST_F(LeadProcessorTest, FindsLeadsByEmail) {
  Run({Identify("i1", "u1", "", kT0, R"({"email":"Ann@Example.COM","name":"Ann"})")});
  EXPECT_EQ(Find("ann@example.com").id, "u1");
  EXPECT_EQ(Find("ANN@example.com").id, "u1");
  EXPECT_EQ(Find("u1").email, "Ann@Example.COM");

  // An anonymous identify with an email; found through its own index row.
  Run({Identify("i2", "", "anon-9", kT0, R"({"email":"bob@example.com"})")});
  EXPECT_EQ(Find("bob@example.com").id, "anon-9");
  EXPECT_FALSE(Find("bob@example.com").known);

  // Two leads with the same email: the latest identify wins, whatever the processing order.
  Run({Identify("i3", "u3", "", kT0 + 10, R"({"email":"shared@example.com"})")});
  Run({Identify("i4", "u4", "", kT0 + 5, R"({"email":"shared@example.com"})")});
  EXPECT_EQ(Find("shared@example.com").id, "u3");

  // Escaped strings are unescaped before indexing.
  Run({Identify("i5", "u5", "", kT0, R"({"email":"c\u0040example.com"})")});
  EXPECT_EQ(Find("c@example.com").id, "u5");
  EXPECT_EQ(Find("u5").email, "c@example.com");

  auto none = leads_->Find(TenantId("t1"), "nobody@example.com");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

TEST_F(LeadProcessorTest, GroupSetsAccountFromTwoLeadsWithoutLostUpdates) {
  // Two leads write the same account from two work items that run at the same time: both read
  // the same committed state before either commits.
  FakeWorkItem first(store_.get(), TenantId("t1"),
                     {Group("g1", "u1", kT0, "acme", R"({"name":"Acme","plan":"free"})")});
  FakeWorkItem second(store_.get(), TenantId("t1"),
                      {Group("g2", "u2", kT0 + 10, "acme", R"({"plan":"pro","seats":12})")});
  processor_->Process(first);
  processor_->Process(second);
  ASSERT_FALSE(first.error().has_value());
  ASSERT_FALSE(second.error().has_value());
  ASSERT_TRUE(second.Commit().ok());
  ASSERT_TRUE(first.Commit().ok());

  for (const char* id : {"u1", "u2"}) {
    LeadView v = Find(id);
    ASSERT_TRUE(v.account.has_value()) << id;
    EXPECT_EQ(v.account->id, "acme");
    ASSERT_EQ(v.account->traits.size(), 3u);
    EXPECT_EQ(v.account->traits[0].name, "name");
    EXPECT_EQ(v.account->traits[0].json, R"("Acme")");
    EXPECT_EQ(v.account->traits[1].name, "plan");
    EXPECT_EQ(v.account->traits[1].json, R"("pro")");  // the later group call
    EXPECT_EQ(v.account->traits[2].json, "12");
    EXPECT_EQ(v.CountActivities(ActivityType::kGroup, "", kT0, kT0), 1u);
    // Account traits are not lead traits.
    EXPECT_TRUE(v.traits.empty());
  }

  // A lead's account is its latest group call.
  Run({Group("g3", "u1", kT0 + 20, "globex", R"({"name":"Globex"})"),
       Group("g4", "u1", kT0 + 15, "acme", R"({})")});
  EXPECT_EQ(Find("u1").account->id, "globex");
  // A numeric groupId is kept as its text.
  Run({Make(ActivityType::kGroup, "g5", "u9", "", kT0, "", R"("groupId":42,"traits":null)")});
  EXPECT_EQ(Find("u9").account->id, "42");
}

TEST_F(LeadProcessorTest, ListFiltersByTrait) {
  Run({Identify("i1", "u1", "", kT0, R"({"plan":"pro","seats":10,"vip":true})"),
       Identify("i2", "u2", "", kT0, R"({"plan":"free","seats":1})"),
       Identify("i3", "u3", "", kT0, R"({"plan":"pro","seats":3})"),
       Page("p4", "u4", "", "/", kT0)});
  LeadFilter f;
  f.traits = {{"plan", "pro"}};
  EXPECT_EQ(Ids(List(f)), (Strings{"u1", "u3"}));
  f.traits = {{"plan", "pro"}, {"seats", "10"}};
  EXPECT_EQ(Ids(List(f)), Strings{"u1"});
  f.traits = {{"vip", "true"}};
  EXPECT_EQ(Ids(List(f)), Strings{"u1"});
  f.traits = {{"plan", "\"pro\""}};  // a string matches its text, not its JSON
  EXPECT_TRUE(List(f).leads.empty());
  EXPECT_EQ(Ids(List(LeadFilter{})), (Strings{"u1", "u2", "u3", "u4"}));
  LeadFilter seen;
  seen.seen_since_ms = kT0 + 1;
  EXPECT_TRUE(List(seen).leads.empty());
}

TEST_F(LeadProcessorTest, ListFiltersByCounter) {
  const int64_t now = kT0;
  Run({Page("a1", "u1", "", "/pricing", now), Page("a2", "u1", "", "/pricing", now - kDayMs),
       Page("a3", "u1", "", "/pricing", now - 6 * kDayMs),
       // u2: three visits, but one is 7 days ago, outside "the last 7 days".
       Page("b1", "u2", "", "/pricing", now), Page("b2", "u2", "", "/pricing", now),
       Page("b3", "u2", "", "/pricing", now - 7 * kDayMs),
       // u3: three visits as an anonymous visitor before identifying.
       Page("c1", "", "anon-3", "/pricing", now - kDayMs),
       Page("c2", "", "anon-3", "/pricing", now - kDayMs),
       Page("c3", "", "anon-3", "/pricing", now), Identify("c4", "u3", "anon-3", now, "{}"),
       Track("d1", "u4", "", "/pricing", now), Track("d2", "u4", "", "/pricing", now),
       Track("d3", "u4", "", "/pricing", now)});
  LeadFilter f;
  f.now_ms = now;
  f.counter = CounterCondition{ActivityType::kPage, "/pricing", 3, 7};
  EXPECT_EQ(Ids(List(f)), (Strings{"u1", "u3"}));
  f.counter->within_days = 8;
  EXPECT_EQ(Ids(List(f)), (Strings{"u1", "u2", "u3"}));
  f.counter->within_days = 0;  // all kept days
  f.counter->min_count = 1;
  EXPECT_EQ(Ids(List(f)), (Strings{"u1", "u2", "u3"}));
  f.counter->type.reset();  // any type: the track events named "/pricing" count too
  f.counter->min_count = 3;
  EXPECT_EQ(Ids(List(f)), (Strings{"u1", "u2", "u3", "u4"}));
}

TEST_F(LeadProcessorTest, ListPaginatesWithACursor) {
  std::vector<Activity> acts;
  for (int i = 0; i < 7; ++i) {
    std::string id = "u" + std::to_string(i);
    acts.push_back(Identify("i" + id, id, "", kT0, i % 2 == 0 ? R"({"plan":"pro"})" : "{}"));
  }
  acts.push_back(Page("p", "", "anon-x", "/", kT0));
  acts.push_back(Identify("m", "u0", "anon-merged", kT0, "{}"));
  acts.push_back(Page("q", "", "anon-merged", "/", kT0));
  Run(std::move(acts));

  LeadFilter all;
  std::vector<std::string> seen;
  std::string cursor;
  int pages = 0;
  do {
    LeadPage page = List(all, cursor, 3);
    for (auto& id : Ids(page)) seen.push_back(id);
    cursor = page.next_cursor;
    ASSERT_LT(++pages, 10);
  } while (!cursor.empty());
  EXPECT_EQ(seen, (Strings{"u0", "u1", "u2", "u3", "u4", "u5", "u6"}));

  // With anonymous leads: known ones first, then anonymous ones nobody claimed.
  all.include_anonymous = true;
  seen.clear();
  cursor.clear();
  do {
    LeadPage page = List(all, cursor, 2);
    for (auto& id : Ids(page)) seen.push_back(id);
    cursor = page.next_cursor;
  } while (!cursor.empty());
  EXPECT_EQ(seen, (Strings{"u0", "u1", "u2", "u3", "u4", "u5", "u6", "anon-x"}));

  // max_scan bounds the work of a page even when few leads match.
  LeadFilter pro;
  pro.traits = {{"plan", "pro"}};
  pro.max_scan = 2;
  LeadPage page = List(pro, {}, 10);
  EXPECT_EQ(Ids(page), Strings{"u0"});  // examined u0, u1
  ASSERT_FALSE(page.next_cursor.empty());
  page = List(pro, page.next_cursor, 10);
  EXPECT_EQ(Ids(page), Strings{"u2"});  // examined u2, u3
}

TEST_F(LeadProcessorTest, ListRejectsABadCursor) {
  Run({Identify("i1", "u1", "", kT0, "{}")});
  for (std::string_view bad : {"zz", "u", "x0102", "u0g", "u012"}) {
    auto r = leads_->List(TenantId("t1"), LeadFilter{}, bad, 10);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("cursor"), std::string::npos);
  }
  // An anonymous-phase cursor for a listing without anonymous leads.
  auto r = leads_->List(TenantId("t1"), LeadFilter{}, "a6161", 10);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  auto zero = leads_->List(TenantId("t1"), LeadFilter{}, "", 0);
  EXPECT_EQ(zero.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(zero.status().message().find("limit"), std::string::npos);
}

TEST_F(LeadProcessorTest, SameLeadManyTimesInOneItem) {
  std::vector<Activity> acts;
  for (int i = 0; i < 300; ++i) {
    acts.push_back(Page("p" + std::to_string(i), "", "anon-1", "/docs", kT0 + i));
  }
  acts.push_back(Identify("i", "u1", "anon-1", kT0 + 1000, R"({"plan":"pro"})"));
  acts.push_back(Track("t", "u1", "anon-1", "Signed Up", kT0 + 1001));
  Run(std::move(acts));
  LeadView v = Find("anon-1");
  EXPECT_EQ(v.id, "u1");
  EXPECT_EQ(v.activity_count, 302u);
  EXPECT_EQ(v.CountActivities(ActivityType::kPage, "/docs", kT0, kT0), 300u);
  EXPECT_EQ(v.first_seen_ms, kT0);
  EXPECT_EQ(v.last_seen_ms, kT0 + 1001);
}

TEST_F(LeadProcessorTest, CorruptFieldsJsonIsPermanent) {
  FakeWorkItem item(store_.get(), TenantId("t1"),
                    {Page("p1", "u1", "", "/", kT0),
                     Make(ActivityType::kIdentify, "bad", "u1", "", kT0, "", R"("traits":{"a":)")});
  processor_->Process(item);
  ASSERT_EQ(item.finish_calls(), 1);
  ASSERT_TRUE(item.error().has_value());
  EXPECT_EQ(item.error()->error_class, engine::ErrorClass::kPermanent);
  EXPECT_NE(item.error()->message.find("bad"), std::string::npos);
}

TEST_F(LeadProcessorTest, ToleratesOddButValidInput) {
  Run({// traits that are not an object, a null email, a non-string email
       Make(ActivityType::kIdentify, "i1", "u1", "", kT0, "", R"("traits":"oops")"),
       Make(ActivityType::kIdentify, "i2", "u1", "", kT0, "", R"("traits":{"email":null})"),
       Make(ActivityType::kIdentify, "i3", "u2", "", kT0, "", R"("traits":{"email":7})"),
       // no fields at all, a group without groupId, an alias without previousId
       Make(ActivityType::kIdentify, "i4", "u3", "", kT0, "", ""),
       Make(ActivityType::kGroup, "g1", "u3", "", kT0, "", R"("traits":{"a":1})"),
       Make(ActivityType::kAlias, "a1", "u3", "", kT0, "", ""),
       // an id with a NUL byte: kept as its own lead, never linked
       Make(ActivityType::kPage, "p1", std::string("u\0x", 3), "anon-z", kT0, "/")});
  EXPECT_EQ(TraitJson(Find("u1"), "email"), "null");
  EXPECT_FALSE(Find("u1").email.has_value());
  EXPECT_EQ(TraitJson(Find("u2"), "email"), "7");
  EXPECT_EQ(Find("u3").activity_count, 3u);
  EXPECT_FALSE(Find("u3").account.has_value());
  EXPECT_EQ(Find(std::string("u\0x", 3)).activity_count, 1u);
  auto anon = leads_->Find(TenantId("t1"), "anon-z");
  ASSERT_TRUE(anon.ok());
  EXPECT_FALSE(anon->has_value());
}

TEST_F(LeadProcessorTest, CorruptStoredProfileIsPermanent) {
  engine::StateTxn txn(store_.get(), engine::StateKeyPrefix(TenantId("t1"), "leads"));
  std::string key;
  keys::Profile(&key, IdKind::kUser, "u1");
  txn.Put(key, "\x07garbage");
  storage::WriteBatch batch;
  txn.AppendTo(&batch);
  ASSERT_TRUE(store_->Write(batch, false).ok());

  FakeWorkItem item(store_.get(), TenantId("t1"), {Page("p1", "u1", "", "/", kT0)});
  processor_->Process(item);
  ASSERT_TRUE(item.error().has_value());
  EXPECT_EQ(item.error()->error_class, engine::ErrorClass::kPermanent);
  auto r = leads_->Find(TenantId("t1"), "u1");
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
}

TEST_F(LeadProcessorTest, WritesLeadJson) {
  Run({Page("p1", "", "anon-1", "/pricing", kT0),
       Identify("i1", "u1", "anon-1", kT0 + kHourMs,
                R"({"email":"ann@example.com","name":"Ann \"A\"","seats":3})"),
       Group("g1", "u1", kT0 + kHourMs, "acme", R"({"plan":"pro"})")});
  EXPECT_EQ(Json("u1"),
            R"({"id":"u1","known":true,"user_ids":["u1"],"anonymous_ids":["anon-1"],)"
            R"("email":"ann@example.com","traits":{"email":"ann@example.com",)"
            R"("name":"Ann \"A\"","seats":3},"account":{"id":"acme","traits":{"plan":"pro"}},)"
            R"("first_seen":"2026-11-20T10:00:00.000Z","last_seen":"2026-11-20T11:00:00.000Z",)"
            R"("activity_count":3,"counters":[)"
            R"({"type":"identify","name":"","day":"2026-11-20","count":1},)"
            R"({"type":"page","name":"/pricing","day":"2026-11-20","count":1},)"
            R"({"type":"group","name":"","day":"2026-11-20","count":1}]})");
  std::string anon;
  Run({Page("p9", "", "anon-9", "/", kT0)});
  AppendLeadJson(Find("anon-9"), &anon);
  EXPECT_EQ(
      anon,
      R"({"id":"anon-9","known":false,"user_ids":[],"anonymous_ids":["anon-9"],)"
      R"("email":null,"traits":{},"account":null,)"
      R"("first_seen":"2026-11-20T10:00:00.000Z","last_seen":"2026-11-20T10:00:00.000Z",)"
      R"("activity_count":1,"counters":[{"type":"page","name":"/","day":"2026-11-20","count":1}]})");
}

TEST_F(LeadProcessorTest, StateSurvivesReopen) {
  Run({Page("p1", "", "anon-1", "/", kT0), Identify("i1", "u1", "anon-1", kT0 + 1, "{}")});
  const std::string before = Json("u1");
  Reopen();
  EXPECT_EQ(Json("anon-1"), before);
}

}  // namespace
}  // namespace fairway::identity
