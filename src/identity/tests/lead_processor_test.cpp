#include "identity/lead_processor.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <memory>
#include <set>
#include <thread>

#include "common/coding.h"
#include "common/json_writer.h"
#include "common/metrics.h"
#include "common/time_format.h"
#include "engine/engine.h"
#include "identity/lead_keys.h"
#include "identity/lead_store.h"
#include "log/embedded_log.h"
#include "log/lead_index.h"
#include "model/tenant.h"
#include "storage/schema.h"
#include "testing/status_matchers.h"
#include "testing/store_and_log.h"

namespace fairway::identity {
namespace {

using ::fairway::testing::TempDir;

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
    for (const auto& e : entries_) entry_ptrs_.push_back(&e);
  }

  const TenantId& tenant() const override { return tenant_; }
  engine::EntryView entries() const override { return engine::EntryView(entry_ptrs_); }
  engine::StateTxn& state() override { return txn_; }
  uint32_t attempt() const override { return 1; }
  void Emit(model::Activity activity) override { emitted_.push_back(std::move(activity)); }
  void AfterCommit(std::function<void()> fn) override { after_commit_.push_back(std::move(fn)); }
  void Finish(Status status) override {
    ++finish_calls_;
    status_ = std::move(status);
  }

  // Writes the txn as the engine would on an OK finish.
  // Writes the item's state and runs its after-commit hooks, as the engine does.
  Status Commit() {
    storage::WriteBatch batch;
    txn_.AppendTo(&batch);
    Status st = store_->Write(batch, false);
    if (st.ok()) {
      for (auto& fn : after_commit_) fn();
    }
    return st;
  }

  int finish_calls() const { return finish_calls_; }
  // What the processor finished with.
  const Status& status() const { return status_; }
  const std::vector<Activity>& emitted() const { return emitted_; }

 private:
  storage::Store* store_;
  TenantId tenant_;
  std::vector<log::LogEntry> entries_;
  std::vector<const log::LogEntry*> entry_ptrs_;
  engine::StateTxn txn_;
  std::vector<Activity> emitted_;
  std::vector<std::function<void()>> after_commit_;
  int finish_calls_ = 0;
  Status status_;
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

// A page whose name and properties.path are both `path` (the counter name either way).
Activity Page(std::string id, std::string user, std::string anon, std::string path, int64_t ts) {
  std::string fields = R"("properties":{"path":)";
  AppendJsonString(&fields, path);
  fields += R"(,"title":"Fairway"})";
  return Make(ActivityType::kPage, std::move(id), std::move(user), std::move(anon), ts,
              std::move(path), std::move(fields));
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

// A generated activity, as the campaigns processor emits them.
Activity Fairway(std::string id, std::string user, std::string anon, std::string event, int64_t ts,
                 std::string properties = "{}") {
  return Make(ActivityType::kFairway, std::move(id), std::move(user), std::move(anon), ts,
              std::move(event),
              R"("properties":)" + properties + R"(,"context":{"fairway":{"campaign":"c1"}})");
}

class LeadProcessorTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  void Reopen(LeadProcessorOptions options = {}) {
    leads_.reset();
    store_.reset();
    ASSERT_OK_AND_ASSIGN(store_, ::fairway::testing::OpenFairwayStore(dir_.path()));
    processor_ = std::make_unique<LeadProcessor>(options);
    leads_ = std::make_unique<LeadStore>(store_.get());
  }

  // Processes `activities` as one work item and commits it; expects success. What the item
  // emitted is left in emitted_.
  void Run(std::vector<Activity> activities, const std::string& tenant = "t1") {
    FakeWorkItem item(store_.get(), TenantId(tenant), std::move(activities));
    processor_->Process(item);
    ASSERT_EQ(item.finish_calls(), 1);
    ASSERT_TRUE(item.status().ok()) << item.status().ToString();
    emitted_ = item.emitted();
    Status st = item.Commit();
    ASSERT_TRUE(st.ok()) << st.ToString();
  }

  // Runs `activities`, then feeds what they emitted back as the log would (each message id
  // stored once) until nothing new is emitted. Returns every stored emitted activity.
  std::vector<Activity> RunThroughLog(std::vector<Activity> activities,
                                      const std::string& tenant = "t1") {
    std::vector<Activity> stored;
    while (!activities.empty()) {
      Run(std::move(activities), tenant);
      activities.clear();
      for (auto& a : emitted_) {
        if (log_ids_.insert(tenant + "/" + a.message_id.str()).second) {
          stored.push_back(a);
          activities.push_back(std::move(a));
        }
      }
      if (stored.size() > 1000) ADD_FAILURE() << "emission loop";
      if (stored.size() > 1000) break;
    }
    return stored;
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
  // What the last Run emitted.
  std::vector<Activity> emitted_;
  // "<tenant>/<message id>" of the activities RunThroughLog stored.
  std::set<std::string> log_ids_;
};

using Strings = std::vector<std::string>;

TEST_F(LeadProcessorTest, KeepsAnIndexOfTheActivitiesItAppliesOnlyWhenAsked) {
  auto index_rows = [&] {
    std::vector<std::pair<std::string, std::string>> rows;
    auto it = store_->NewIterator(storage::kActivityIndex);
    for (it->SeekToFirst(); it->Valid(); it->Next()) rows.emplace_back(it->key(), it->value());
    return rows;
  };
  Run({Track("m0", "u1", "", "Signed Up", 1'000)});
  EXPECT_TRUE(index_rows().empty());

  for (int64_t retention : {int64_t{0}, int64_t{86'400'000}}) {
    Reopen(LeadProcessorOptions{.index_retention_ms = [retention](const TenantId& t) {
      EXPECT_EQ(t.str(), "t1");
      return retention;
    }});
    std::vector<Activity> activities = {
        Track("m1", "u1", "a1", "Clicked", 2'000), Page("m2", "", "a2", "/pricing", 3'000),
        Track("m3", "u2", "", "Clicked", 1'500), Track("m4", "u1", "", "Clicked", 4'000)};
    Run(activities);
    // Read back as GET /v1/activities does; the work item's entries are offsets 0-3.
    auto page = [&](std::string lead) {
      log::ActivityQuery q;
      q.tenant = TenantId("t1");
      q.lead = LeadId(std::move(lead));
      auto p = log::QueryLeadIndex(
          store_.get(), q,
          [&](uint32_t partition, uint64_t offset) -> Result<std::optional<Activity>> {
            EXPECT_EQ(partition, 0u);
            return std::optional<Activity>(activities.at(offset));
          },
          storage::kActivityIndex);
      EXPECT_OK(p);
      Strings ids;
      for (const auto& e : p->entries) ids.push_back(e.activity.message_id.str());
      return ids;
    };
    EXPECT_EQ(page("u1"), (Strings{"m4", "m1"})) << retention;  // newest first
    EXPECT_EQ(page("a1"), (Strings{"m1"}));
    EXPECT_EQ(page("a2"), (Strings{"m2"}));
    EXPECT_EQ(page("u2"), (Strings{"m3"}));
    // Each row expires with the activity it points at.
    auto rows = index_rows();
    ASSERT_EQ(rows.size(), 5u);  // m1 under both of its ids
    for (const auto& [key, value] : rows) {
      ASSERT_GE(value.size(), 8u);
      const auto expiry = static_cast<int64_t>(DecodeFixed64BE(value.data()));
      if (retention == 0) {
        EXPECT_EQ(expiry, 0);
      } else {
        EXPECT_GE(expiry, 1'500 + retention);
        EXPECT_LE(expiry, 4'000 + retention);
      }
    }
  }
}

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

// An activity applied after a newer one of the same lead (by event time) is counted as late,
// per tenant; generated activities and other leads' activities are not.
TEST_F(LeadProcessorTest, ActivitiesOlderThanTheLeadsLatestAreCountedLate) {
  MetricsRegistry metrics;
  Reopen({.metrics = &metrics});
  auto late = [&](const std::string& tenant) {
    return metrics.GetCounter("fairway_leads_late_activities_total", "", {{"tenant", tenant}})
        ->value();
  };
  Run({Track("a1", "u1", "", "e", kT0), Track("a2", "u1", "", "e", kT0 + 10),
       Track("b1", "u2", "", "e", kT0 - 100)});
  EXPECT_EQ(late("t1"), 0u);
  // Older than u1's latest, within one item and across items.
  Run({Track("a3", "u1", "", "e", kT0 + 5), Track("a4", "u1", "", "e", kT0 + 20),
       Track("a5", "u1", "", "e", kT0 + 15)});
  EXPECT_EQ(late("t1"), 2u);
  RunEach({Track("a6", "u1", "", "e", kT0 + 1), Track("a7", "u1", "", "e", kT0 + 20)});
  EXPECT_EQ(late("t1"), 3u);
  // A generated activity is not the lead's own doing; another tenant counts apart.
  Run({Fairway("f1", "u1", "", "score_changed", kT0 - 1000, R"({"change":1})")});
  Run({Track("c1", "u1", "", "e", kT0), Track("c2", "u1", "", "e", kT0 - 1)}, "t2");
  EXPECT_EQ(late("t1"), 3u);
  EXPECT_EQ(late("t2"), 1u);
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
  ASSERT_TRUE(first.status().ok()) << first.status().ToString();
  ASSERT_TRUE(second.status().ok()) << second.status().ToString();
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
    std::string id = fmt::format("u{}", i);
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
    acts.push_back(Page(fmt::format("p{}", i), "", "anon-1", "/docs", kT0 + i));
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
  ASSERT_FALSE(item.status().ok());
  EXPECT_EQ(engine::RetryClassOf(item.status().code()), engine::ErrorClass::kPermanent);
  EXPECT_NE(item.status().message().find("bad"), std::string::npos);
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
  ASSERT_FALSE(item.status().ok());
  EXPECT_EQ(engine::RetryClassOf(item.status().code()), engine::ErrorClass::kPermanent);
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
            R"("score":0,"lists":[],"tags":[],)"
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
      R"("email":null,"traits":{},"account":null,"score":0,"lists":[],"tags":[],)"
      R"("first_seen":"2026-11-20T10:00:00.000Z","last_seen":"2026-11-20T10:00:00.000Z",)"
      R"("activity_count":1,"counters":[{"type":"page","name":"/","day":"2026-11-20","count":1}]})");
}

TEST_F(LeadProcessorTest, StateSurvivesReopen) {
  Run({Page("p1", "", "anon-1", "/", kT0), Identify("i1", "u1", "anon-1", kT0 + 1, "{}")});
  const std::string before = Json("u1");
  Reopen();
  EXPECT_EQ(Json("anon-1"), before);
}

// ---- Generated (fairway) activities applied to leads ----

TEST_F(LeadProcessorTest, ScoreChangesSumInAnyOrderAndAcrossMergedProfiles) {
  std::vector<Activity> changes = {
      Fairway("s1", "u1", "", "score_changed", kT0, R"({"change":10})"),
      Fairway("s2", "u1", "", "score_changed", kT0 + 1, R"({"change":-3})"),
      // Non-integers round toward zero.
      Fairway("s3", "u1", "", "score_changed", kT0 + 2, R"({"change":2.9})"),
      Fairway("s4", "u1", "", "score_changed", kT0 + 3, R"({"change":-2.9})"),
      // Invalid or missing changes change nothing, but the activity still counts.
      Fairway("s5", "u1", "", "score_changed", kT0 + 4, R"({"change":"7"})"),
      Fairway("s6", "u1", "", "score_changed", kT0 + 5, R"({"reason":"opened"})"),
      Fairway("s7", "u1", "", "score_changed", kT0 + 6, R"({"change":1e30})"),
      Fairway("s8", "u1", "", "score_changed", kT0 + 7, R"({"change":null})"),
  };
  Run(changes, "t1");
  std::vector<Activity> reversed(changes.rbegin(), changes.rend());
  RunEach(reversed, "t2");
  for (const std::string tenant : {"t1", "t2"}) {
    LeadView v = Find("u1", tenant);
    EXPECT_EQ(v.score, 7) << tenant;
    EXPECT_EQ(v.activity_count, 0u) << tenant;  // generated activities are not the lead's own
    EXPECT_EQ(v.CountActivities(ActivityType::kFairway, "score_changed", kT0, kT0), 8u) << tenant;
  }
  EXPECT_EQ(Json("u1", "t1"), Json("u1", "t2"));

  // Scores of an anonymous visitor and of the known lead it turns into add up.
  Run({Fairway("s9", "", "anon-1", "score_changed", kT0, R"({"change":5})"),
       Identify("i1", "u1", "anon-1", kT0 + kHourMs, "{}")});
  EXPECT_EQ(Find("anon-1").score, 12);
  EXPECT_EQ(Find("u1").score, 12);
  // And stay separate when the identities are not linked.
  Run({Fairway("s10", "", "anon-2", "score_changed", kT0, R"({"change":-4})")});
  EXPECT_EQ(Find("anon-2").score, -4);
  EXPECT_EQ(Find("u1").score, 12);
}

TEST_F(LeadProcessorTest, ListAndTagMembershipIsLastWriteWinsInAnyOrder) {
  auto list = [](std::string id, std::string event, int64_t ts, std::string name) {
    return Fairway(std::move(id), "u1", "", std::move(event), ts, R"({"list":")" + name + R"("})");
  };
  auto tag = [](std::string id, std::string event, int64_t ts, std::string name) {
    return Fairway(std::move(id), "u1", "", std::move(event), ts, R"({"tag":")" + name + R"("})");
  };
  std::vector<Activity> acts = {
      // "trial": added, then removed: out.
      list("l1", "added_to_list", kT0, "trial"),
      list("l2", "removed_from_list", kT0 + 1, "trial"),
      // "customers": removed, then added again: in.
      list("l3", "removed_from_list", kT0 + 1, "customers"),
      list("l4", "added_to_list", kT0 + 2, "customers"),
      list("l5", "added_to_list", kT0, "customers"),
      // "beta": added and removed at the same time: the addition wins.
      list("l6", "removed_from_list", kT0, "beta"),
      list("l7", "added_to_list", kT0, "beta"),
      // A list never added to, only removed from: out.
      list("l8", "removed_from_list", kT0, "never"),
      tag("t1", "tag_added", kT0, "hot"),
      tag("t2", "tag_removed", kT0 + 5, "hot"),
      tag("t3", "tag_added", kT0 + 5, "vip"),
      tag("t4", "tag_removed", kT0 + 4, "vip"),
      tag("t5", "tag_added", kT0, "analyst"),
  };
  RunEach(acts, "t1");
  RunEach(std::vector<Activity>(acts.rbegin(), acts.rend()), "t2");
  for (const std::string tenant : {"t1", "t2"}) {
    LeadView v = Find("u1", tenant);
    EXPECT_EQ(v.lists, (Strings{"beta", "customers"})) << tenant;
    EXPECT_EQ(v.tags, (Strings{"analyst", "vip"})) << tenant;
    EXPECT_TRUE(v.HasList("customers"));
    EXPECT_FALSE(v.HasList("trial"));
    EXPECT_FALSE(v.HasList("never"));
    EXPECT_TRUE(v.HasTag("vip"));
    EXPECT_FALSE(v.HasTag("hot"));
    EXPECT_EQ(v.activity_count, 0u);  // generated activities are not the lead's own
  }
  EXPECT_EQ(Json("u1", "t1"), Json("u1", "t2"));

  // Across the profiles of a lead: the latest event of any profile wins.
  Run({Fairway("a1", "", "anon-1", "removed_from_list", kT0 + 10, R"({"list":"customers"})"),
       Fairway("a2", "", "anon-1", "added_to_list", kT0 + 10, R"({"list":"trial"})"),
       Fairway("a3", "", "anon-1", "tag_added", kT0 + 1, R"({"tag":"hot"})"),
       // Not a string: ignored (still counted).
       Fairway("a4", "", "anon-1", "added_to_list", kT0 + 10, R"({"list":7})")});
  EXPECT_EQ(Find("anon-1").lists, Strings{"trial"});
  Run({Identify("i1", "u1", "anon-1", kT0 + 20, "{}")});
  LeadView v = Find("anon-1");
  EXPECT_EQ(v.id, "u1");
  EXPECT_EQ(v.lists, (Strings{"beta", "trial"}));
  EXPECT_EQ(v.tags, (Strings{"analyst", "vip"}));  // hot: added at +1, removed at +5
  std::string json;
  AppendLeadJson(v, &json);
  EXPECT_NE(json.find(R"("score":0,"lists":["beta","trial"],"tags":["analyst","vip"])"),
            std::string::npos)
      << json;
}

TEST_F(LeadProcessorTest, DataValueChangedSetsAndClearsTraits) {
  Run({Identify("i1", "u1", "", kT0, R"({"plan":"free","name":"Ann"})")});
  Run({Fairway("d1", "u1", "", "data_value_changed", kT0 + 10,
               R"({"field":"plan","from":"free","to":"pro"})"),
       Fairway("d2", "u1", "", "data_value_changed", kT0 + 10,
               R"({"field":"address","to":{"city":"Oslo"}})"),
       Fairway("d3", "u1", "", "data_value_changed", kT0 + 10, R"({"field":"name","to":null})"),
       // Without "to", or with a field that is not a string: nothing changes.
       Fairway("d4", "u1", "", "data_value_changed", kT0 + 10, R"({"field":"plan"})"),
       Fairway("d5", "u1", "", "data_value_changed", kT0 + 10, R"({"field":1,"to":"x"})")});
  LeadView v = Find("u1");
  EXPECT_EQ(TraitJson(v, "plan"), R"("pro")");
  EXPECT_EQ(TraitJson(v, "address"), R"({"city":"Oslo"})");
  EXPECT_EQ(TraitJson(v, "name"), "null");  // cleared, kept as a dated null
  EXPECT_EQ(v.traits.size(), 3u);
  EXPECT_EQ(v.activity_count, 1u);  // the identify; generated activities are not counted
  EXPECT_TRUE(emitted_.empty()) << "data_value_changed never emits";

  // Last write wins against identify, in both directions.
  Run({Identify("i2", "u1", "", kT0 + 5, R"({"plan":"trial","name":"Ann B."})")});
  EXPECT_EQ(TraitJson(Find("u1"), "plan"), R"("pro")");
  EXPECT_EQ(TraitJson(Find("u1"), "name"), "null");
  Run({Identify("i3", "u1", "", kT0 + 20, R"({"name":"Ann C."})")});
  EXPECT_EQ(TraitJson(Find("u1"), "name"), R"("Ann C.")");

  // Setting the email trait indexes it like an identify.
  Run({Fairway("d6", "u1", "", "data_value_changed", kT0 + 30,
               R"({"field":"email","to":"Ann@Example.com"})")});
  EXPECT_EQ(Find("ann@example.com").id, "u1");
  EXPECT_EQ(Find("u1").email, "Ann@Example.com");
}

TEST_F(LeadProcessorTest, AddedToAccountSetsTheAccount) {
  Run({Group("g1", "u1", kT0, "acme", R"({"name":"Acme"})")});
  Run({Fairway("f1", "u1", "", "added_to_account", kT0 + 10, R"({"account_id":"globex"})")});
  LeadView v = Find("u1");
  ASSERT_TRUE(v.account.has_value());
  EXPECT_EQ(v.account->id, "globex");
  EXPECT_TRUE(v.account->traits.empty());
  // Last write wins with group calls; numbers keep their text.
  Run({Group("g2", "u1", kT0 + 5, "initech", "{}")});
  EXPECT_EQ(Find("u1").account->id, "globex");
  Run({Fairway("f2", "u2", "", "added_to_account", kT0, R"({"account_id":42})"),
       Fairway("f3", "u3", "", "added_to_account", kT0, R"({"account_id":""})")});
  EXPECT_EQ(Find("u2").account->id, "42");
  EXPECT_FALSE(Find("u3").account.has_value());
}

TEST_F(LeadProcessorTest, CampaignWaitElapsedIsIgnored) {
  Run({Page("p1", "u1", "", "/", kT0)});
  const std::string before = Json("u1");
  const auto keys_before = StateKeys();
  Run({Fairway("w1", "u1", "", "campaign_wait_elapsed", kT0 + 10, R"({"campaign":"c1"})")});
  EXPECT_TRUE(emitted_.empty());
  EXPECT_EQ(Json("u1"), before);
  EXPECT_EQ(StateKeys(), keys_before);
  // Nor does it create a lead that does not exist.
  Run({Fairway("w2", "u9", "anon-9", "campaign_wait_elapsed", kT0)});
  EXPECT_TRUE(emitted_.empty());
  EXPECT_EQ(StateKeys(), keys_before);
  // Other fairway activities are counted under their event name.
  Run({Fairway("e1", "u1", "", "email_sent", kT0 + 20, R"({"template":"welcome"})")});
  LeadView v = Find("u1");
  EXPECT_EQ(v.activity_count, 1u);  // counted under its name, not as the lead's own activity
  EXPECT_EQ(v.CountActivities(ActivityType::kFairway, "email_sent", kT0, kT0), 1u);
}

TEST_F(LeadProcessorTest, PageCountersAreNamedByPath) {
  auto page = [](std::string id, std::string name, std::string fields) {
    return Make(ActivityType::kPage, std::move(id), "u1", "", kT0, std::move(name),
                std::move(fields));
  };
  Run({page("p1", "Pricing", R"("properties":{"path":"/pricing","title":"Pricing"})"),
       page("p2", "Pricing", R"("properties":{"title":"Pricing","path":"\/pricing"})"),
       page("p3", "Team pricing", R"("properties":{"path":"/pricing/team"})"),
       // No usable properties.path: the page name.
       page("p4", "Docs", R"("properties":{"path":""})"),
       page("p5", "Docs", R"("properties":{"path":null})"),
       page("p6", "Docs", R"("context":{"page":{"path":"/ctx"}},"properties":{})"),
       page("p7", "Docs", ""),
       // A track event is never renamed.
       Make(ActivityType::kTrack, "t1", "u1", "", kT0, "Viewed",
            R"("properties":{"path":"/pricing"})")});
  LeadView v = Find("u1");
  EXPECT_EQ(v.CountActivities(ActivityType::kPage, "/pricing", kT0, kT0), 2u);
  EXPECT_EQ(v.CountActivities(ActivityType::kPage, "Pricing", kT0, kT0), 0u);
  EXPECT_EQ(v.CountActivities(ActivityType::kPage, "/pricing/team", kT0, kT0), 1u);
  EXPECT_EQ(v.CountActivities(ActivityType::kPage, "Docs", kT0, kT0), 4u);
  EXPECT_EQ(v.CountActivities(ActivityType::kTrack, "Viewed", kT0, kT0), 1u);

  // Pattern filters: "visited a page matching /pricing*".
  auto pricing = [](std::string_view name) { return name.starts_with("/pricing"); };
  EXPECT_EQ(v.CountActivitiesMatching(ActivityType::kPage, pricing, kT0, kT0), 3u);
  EXPECT_EQ(v.CountActivitiesMatching(std::nullopt, pricing, kT0, kT0), 3u);
  EXPECT_EQ(v.CountActivitiesMatching(ActivityType::kPage, pricing, kT0 + kDayMs, kT0 + kDayMs),
            0u);
  auto any = [](std::string_view) { return true; };
  EXPECT_EQ(v.CountActivitiesMatching(std::nullopt, any, kT0, kT0), 8u);
  EXPECT_EQ(v.CountActivitiesMatching(ActivityType::kTrack, any, kT0, kT0), 1u);
  // A corrupt page is rejected like any corrupt activity.
  FakeWorkItem bad(store_.get(), TenantId("t1"),
                   {page("p8", "Docs", R"("properties":{"path":"/x")")});
  processor_->Process(bad);
  ASSERT_FALSE(bad.status().ok());
  EXPECT_EQ(engine::RetryClassOf(bad.status().code()), engine::ErrorClass::kPermanent);
}

// ---- Activities the processor emits ----

TEST_F(LeadProcessorTest, LeadCreatedIsEmittedOncePerNewUserId) {
  // Anonymous visitors are not leads worth announcing.
  Run({Page("p1", "", "anon-1", "/", kT0), Page("p2", "", "anon-1", "/", kT0 + 1)});
  EXPECT_TRUE(emitted_.empty());

  // The first activity of u1 (here, with a second one in the same item) creates it.
  Run({Identify("i1", "u1", "anon-1", kT0 + kHourMs, R"({"plan":"pro"})"),
       Track("t1", "u1", "anon-1", "Clicked", kT0 + kHourMs + 1)});
  // The new link of anon-1 to u1 is announced once too (for the campaigns processor).
  ASSERT_EQ(emitted_.size(), 2u);
  const Activity& linked = emitted_[0];
  EXPECT_EQ(linked.event, "identity_linked");
  EXPECT_EQ(linked.message_id.str(), "fw:linked:u1:a:anon-1:i1");
  EXPECT_EQ(linked.user_id, "u1");
  EXPECT_EQ(linked.anonymous_id, "");
  EXPECT_NE(linked.fields_json.find(R"("identity":"anon-1","kind":"anonymous_id")"),
            std::string::npos)
      << linked.fields_json;
  const Activity e = emitted_[1];  // a copy: later runs replace emitted_
  EXPECT_EQ(e.type, ActivityType::kFairway);
  EXPECT_EQ(e.event, "lead_created");
  EXPECT_EQ(e.message_id.str(), "fw:lead_created:u1:i1");
  EXPECT_EQ(e.user_id, "u1");
  EXPECT_EQ(e.anonymous_id, "anon-1");
  EXPECT_EQ(e.timestamp_ms, kT0 + kHourMs);
  EXPECT_EQ(e.fields_json, R"("properties":{"user_id":"u1"},"context":{"fairway":{"cause":"i1"}})");
  // Redoing the same work (a retry after a crash before the commit) emits the same activity.
  FakeWorkItem redo(store_.get(), TenantId("t2"),
                    {Identify("i1", "u1", "anon-1", kT0 + kHourMs, R"({"plan":"pro"})")});
  processor_->Process(redo);
  ASSERT_EQ(redo.emitted().size(), 2u);
  EXPECT_EQ(redo.emitted()[0].message_id.str(), "fw:linked:u1:a:anon-1:i1");
  EXPECT_EQ(redo.emitted()[1].message_id, e.message_id);
  EXPECT_EQ(redo.emitted()[1].fields_json, e.fields_json);

  // Later activities of u1, and of its anonymous id, create nothing.
  Run({Track("t2", "u1", "", "Clicked", kT0 + 2 * kHourMs), Page("p3", "", "anon-1", "/", kT0)});
  EXPECT_TRUE(emitted_.empty());

  // Through the log: the lead_created comes back, is counted, and emits nothing.
  std::vector<Activity> stored = RunThroughLog({e});
  EXPECT_EQ(stored.size(), 0u);
  LeadView v = Find("u1");
  EXPECT_EQ(v.CountActivities(ActivityType::kFairway, "lead_created", kT0, kT0), 1u);
  EXPECT_EQ(v.activity_count, 6u);  // the lead's own: the lead_created is not counted
  EXPECT_EQ(v.first_seen_ms, kT0);

  // An alias creates its userId; a userId known only as a previousId is not created.
  stored = RunThroughLog({Alias("a1", "u2", "u-old", kT0)});
  ASSERT_EQ(stored.size(), 2u);
  EXPECT_EQ(stored[0].message_id.str(), "fw:linked:u2:u:u-old:a1");
  EXPECT_EQ(stored[1].message_id.str(), "fw:lead_created:u2:a1");
  EXPECT_EQ(stored[0].anonymous_id, "");
}

TEST_F(LeadProcessorTest, DataValueChangedIsEmittedForRealChangesOnExistingLeads) {
  // Traits of a brand-new profile are not changes.
  Run({Identify("i1", "u1", "anon-1", kT0, R"({"plan":"free","name":"Ann","seats":null})")});
  ASSERT_EQ(emitted_.size(), 2u);
  EXPECT_EQ(emitted_[0].event, "identity_linked");
  EXPECT_EQ(emitted_[1].event, "lead_created");

  Run({Identify("i2", "u1", "anon-1", kT0 + 10,
                R"({"plan":"pro","name":"Ann","seats":null,"address":{"city":"Oslo"},"x":null})")});
  ASSERT_EQ(emitted_.size(), 2u);  // plan and address; name, seats and x did not change
  const Activity& plan = emitted_[0];
  EXPECT_EQ(plan.type, ActivityType::kFairway);
  EXPECT_EQ(plan.event, "data_value_changed");
  EXPECT_EQ(plan.message_id.str(), "fw:dvc:i2:plan");
  EXPECT_EQ(plan.user_id, "u1");
  EXPECT_EQ(plan.anonymous_id, "anon-1");
  EXPECT_EQ(plan.timestamp_ms, kT0 + 10);
  EXPECT_EQ(plan.fields_json,
            R"("properties":{"field":"plan","from":"free","to":"pro","origin":"identify"},)"
            R"("context":{"fairway":{"cause":"i2"}})");
  EXPECT_EQ(emitted_[1].message_id.str(), "fw:dvc:i2:address");
  EXPECT_EQ(emitted_[1].fields_json,
            R"("properties":{"field":"address","from":null,"to":{"city":"Oslo"},)"
            R"("origin":"identify"},"context":{"fairway":{"cause":"i2"}})");

  // An older identify that loses last-write-wins changes nothing; nor does the same value.
  Run({Identify("i0", "u1", "", kT0 + 5, R"({"plan":"trial","company":"Initech"})"),
       Identify("i3", "u1", "", kT0 + 20, R"({"plan":"pro"})")});
  ASSERT_EQ(emitted_.size(), 1u);  // company was not set: the older identify still adds it
  EXPECT_EQ(emitted_[0].message_id.str(), "fw:dvc:i0:company");

  // A trait named twice in one identify is one change, from the value before the identify.
  Run({Identify("i4", "u1", "", kT0 + 30, R"({"plan":"a","plan":"b"})")});
  ASSERT_EQ(emitted_.size(), 1u);
  EXPECT_NE(emitted_[0].fields_json.find(R"("from":"pro","to":"b")"), std::string::npos)
      << emitted_[0].fields_json;

  // At most 50 per identify.
  std::string traits = "{";
  for (int i = 0; i < 60; ++i) traits += fmt::format(R"({}"t{:02}":{})", i ? "," : "", i, i);
  traits += "}";
  Run({Identify("i5", "u1", "", kT0 + 40, traits)});
  ASSERT_EQ(emitted_.size(), 50u);
  EXPECT_EQ(emitted_.back().message_id.str(), "fw:dvc:i5:t49");
  EXPECT_EQ(TraitJson(Find("u1"), "t59"), "59");  // all are applied

  // Anonymous profiles never emit; nor do other activity types.
  Run({Identify("j1", "", "anon-7", kT0, R"({"plan":"free"})")});
  Run({Identify("j2", "", "anon-7", kT0 + 1, R"({"plan":"pro"})"),
       Fairway("j3", "u1", "", "data_value_changed", kT0 + 50, R"({"field":"plan","to":"z"})")});
  EXPECT_TRUE(emitted_.empty());

  // Through the log: the changes come back, are counted, are already applied, emit nothing.
  std::vector<Activity> stored =
      RunThroughLog({Identify("i6", "u1", "", kT0 + 60, R"({"plan":"enterprise"})")});
  ASSERT_EQ(stored.size(), 1u);
  LeadView v = Find("u1");
  EXPECT_EQ(TraitJson(v, "plan"), R"("enterprise")");
  EXPECT_EQ(v.CountActivities(ActivityType::kFairway, "data_value_changed", kT0, kT0), 2u);
}

TEST_F(LeadProcessorTest, LeadDeletedRemovesTheLeadsOwnRowsAndTheLeadCanComeBack) {
  Run({Page("p1", "", "anon-1", "/pricing", kT0),
       Identify("i1", "u1", "anon-1", kT0 + 1, R"({"email":"Ann@Example.com","plan":"pro"})"),
       Identify("i2", "u1", "", kT0 + 2, R"({"email":"ann@new.example.com"})"),
       Alias("a1", "u1", "u-old", kT0 + 3),
       Fairway("s1", "u1", "", "score_changed", kT0 + 4, R"({"change":5})"),
       Fairway("l1", "u1", "", "added_to_list", kT0 + 4, R"({"list":"trial"})"),
       Page("p2", "u-old", "", "/docs", kT0)});
  ASSERT_EQ(Find("anon-1").id, "u1");
  ASSERT_EQ(Find("u-old").id, "u1");
  const Activity created = *std::find_if(emitted_.begin(), emitted_.end(), [](const Activity& a) {
    return a.event == "lead_created";
  });
  ASSERT_EQ(created.message_id.str(), "fw:lead_created:u1:i1");

  Run({Fairway("x1", "u1", "", "lead_deleted", kT0 + 100)});
  EXPECT_TRUE(emitted_.empty());
  // No row written by u1 is left: profile, claims, member rows, both email rows.
  for (const std::string& key : StateKeys()) {
    std::string_view k = key;
    EXPECT_FALSE(k == std::string_view("p\0u\0u1", 6)) << "profile";
    EXPECT_FALSE(k.starts_with(std::string_view("c\0", 2)) &&
                 k.ends_with(std::string_view("\0u1", 3)))
        << "claim by u1";
    EXPECT_FALSE(k.starts_with(std::string_view("m\0u\0u1\0", 7))) << "member row of u1";
    EXPECT_FALSE(k.starts_with(std::string_view("e\0", 2)) &&
                 k.ends_with(std::string_view("\0u\0u1", 5)))
        << "email row of u1";
  }
  // Its anonymous history and the old userId are leads of their own again.
  LeadView anon = Find("anon-1");
  EXPECT_EQ(anon.id, "anon-1");
  EXPECT_FALSE(anon.known);
  EXPECT_EQ(anon.activity_count, 1u);
  EXPECT_EQ(Find("u-old").id, "u-old");
  for (const char* email : {"ann@example.com", "ann@new.example.com"}) {
    auto r = leads_->Find(TenantId("t1"), email);
    ASSERT_TRUE(r.ok());
    EXPECT_FALSE(r->has_value()) << email;
  }
  auto deleted = leads_->Find(TenantId("t1"), "u1");
  ASSERT_TRUE(deleted.ok());
  EXPECT_FALSE(deleted->has_value());

  // The echo of the old lead_created, arriving late, does not bring u1 back.
  EXPECT_TRUE(RunThroughLog({created}).empty());
  deleted = leads_->Find(TenantId("t1"), "u1");
  ASSERT_TRUE(deleted.ok());
  EXPECT_FALSE(deleted->has_value());

  // A later activity starts a fresh profile and announces the lead again, under a new id.
  std::vector<Activity> stored =
      RunThroughLog({Identify("i3", "u1", "", kT0 + 200, R"({"name":"Ann"})")});
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_EQ(stored[0].message_id.str(), "fw:lead_created:u1:i3");
  LeadView fresh = Find("u1");
  EXPECT_EQ(fresh.activity_count, 1u);  // the identify (its lead_created is not the lead's own)
  EXPECT_EQ(fresh.score, 0);
  EXPECT_TRUE(fresh.lists.empty());
  EXPECT_EQ(TraitJson(fresh, "plan"), "<missing>");
  EXPECT_EQ(fresh.first_seen_ms, kT0 + 200);
  EXPECT_EQ(Find("anon-1").id, "anon-1");

  // Deleted and re-created inside one work item: the rows after the deletion survive.
  Run({Identify("k1", "u5", "anon-5", kT0, R"({"email":"e5@example.com"})"),
       Fairway("k2", "u5", "", "lead_deleted", kT0 + 1),
       Identify("k3", "u5", "anon-5", kT0 + 2, R"({"email":"e5@example.com"})")});
  // The link of anon-5 is new again after the deletion: announced again.
  ASSERT_EQ(emitted_.size(), 4u);
  EXPECT_EQ(emitted_[0].message_id.str(), "fw:linked:u5:a:anon-5:k1");
  EXPECT_EQ(emitted_[1].message_id.str(), "fw:lead_created:u5:k1");
  EXPECT_EQ(emitted_[2].message_id.str(), "fw:linked:u5:a:anon-5:k3");
  EXPECT_EQ(emitted_[3].message_id.str(), "fw:lead_created:u5:k3");
  EXPECT_EQ(Find("anon-5").id, "u5");
  EXPECT_EQ(Find("e5@example.com").id, "u5");
  EXPECT_EQ(Find("u5").activity_count, 1u);

  // A claim another lead made on the deleted one is that lead's row and stays: u7 is still an
  // identity of u8, but none of u7's own data is left.
  Run({Track("k6", "u7", "", "Clicked", kT0), Alias("k7", "u8", "u7", kT0 + 1)});
  Run({Fairway("k8", "u7", "", "lead_deleted", kT0 + 2)});
  LeadView u8 = Find("u7");
  EXPECT_EQ(u8.id, "u8");
  EXPECT_EQ(u8.user_ids, (Strings{"u7", "u8"}));
  EXPECT_EQ(u8.activity_count, 1u);  // the alias only

  // Deleting an anonymous lead, or one that does not exist, works too.
  Run({Fairway("k4", "", "anon-1", "lead_deleted", kT0 + 300),
       Fairway("k5", "nobody", "", "lead_deleted", kT0)});
  auto gone = leads_->Find(TenantId("t1"), "anon-1");
  ASSERT_TRUE(gone.ok());
  EXPECT_FALSE(gone->has_value());
  auto nobody = leads_->Find(TenantId("t1"), "nobody");
  ASSERT_TRUE(nobody.ok());
  EXPECT_FALSE(nobody->has_value());
}

TEST_F(LeadProcessorTest, LeadDeletedRemovesTheEmailRowOfAFormat1Profile) {
  // A profile and email row as the format 1 code wrote them: no list of indexed emails.
  LeadProfile old;
  old.RecordSeen(kT0);
  old.MergeTrait("email", kT0, R"("Old@Example.com")");
  std::string v2 = old.Encode();
  ASSERT_EQ(v2.substr(v2.size() - 3), std::string(3, '\0'));  // score, memberships, emails
  std::string v1 = "\x01" + v2.substr(1, v2.size() - 4);
  engine::StateTxn txn(store_.get(), engine::StateKeyPrefix(TenantId("t1"), "leads"));
  std::string key;
  keys::Profile(&key, IdKind::kUser, "u1");
  txn.Put(key, v1);
  keys::Email(&key, "old@example.com", IdKind::kUser, "u1");
  std::string when;
  PutFixed64BE(&when, static_cast<uint64_t>(kT0));
  txn.Put(key, when);
  storage::WriteBatch batch;
  txn.AppendTo(&batch);
  ASSERT_TRUE(store_->Write(batch, false).ok());
  ASSERT_EQ(Find("old@example.com").id, "u1");
  ASSERT_EQ(Find("u1").activity_count, 1u);

  Run({Fairway("x1", "u1", "", "lead_deleted", kT0 + 1)});
  EXPECT_TRUE(StateKeys().empty());
}

// The leads processor under the real engine and embedded log: what it emits is appended to the
// log, comes back to it, is counted, and emits nothing more.
TEST(LeadProcessorEngineTest, GeneratedActivitiesComeBackThroughTheLogOnce) {
  // The engine subscribes to the log before the log starts.
  ::fairway::testing::StoreAndLog env(
      {.log = {.sync = false}, .clock = SystemClock::Default(), .start_log = false});
  ASSERT_OK(env.Open());
  log::EmbeddedLog& log = *env.log();
  engine::Engine engine(env.store(), &log, SystemClock::Default(), env.metrics(), {});
  engine.AddProcessor(std::make_unique<LeadProcessor>());
  engine.Start();
  log.Start();
  model::TenantConfig tenant;
  tenant.id = TenantId("t1");
  tenant.name = "t1";
  tenant.partitions = 2;
  ASSERT_TRUE(engine.UpsertTenant(tenant).ok());

  log::AppendRequest req = log::AppendRequestFor(tenant);
  req.activities = {Page("p1", "", "anon-1", "/pricing", kT0),
                    Identify("i1", "u1", "anon-1", kT0 + 1, R"({"plan":"free"})"),
                    Identify("i2", "u1", "", kT0 + 2, R"({"plan":"pro"})"),
                    Track("t1", "u2", "", "Clicked", kT0 + 3),
                    Identify("i3", "u2", "", kT0 + 4, R"({"plan":"pro"})")};
  std::promise<Status> appended;
  log.Append(std::move(req), [&](Result<log::AppendResult> r) { appended.set_value(r.status()); });
  ASSERT_TRUE(appended.get_future().get().ok());

  // Wait until the echoes are counted (bounded), then until the engine is idle.
  LeadStore leads(env.store());
  auto generated = [&](std::string_view id, std::string_view event) -> uint64_t {
    auto r = leads.Find(TenantId("t1"), id);
    if (!r.ok() || !r->has_value()) return 0;
    return (*r)->CountActivities(ActivityType::kFairway, event, kT0, kT0);
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline &&
         (generated("u1", "lead_created") < 1 || generated("u1", "data_value_changed") < 1 ||
          generated("u2", "lead_created") < 1 || generated("u2", "data_value_changed") < 1)) {
    std::this_thread::yield();
  }
  ASSERT_TRUE(engine.WaitIdle(std::chrono::seconds(60)));
  engine.Stop();
  log.Stop();

  std::multiset<std::string> fairway_ids;
  for (uint32_t part = 0; part < tenant.partitions; ++part) {
    auto entries = log.Read(TenantId("t1"), PartitionId(part), Offset(0), 1'000);
    ASSERT_TRUE(entries.ok()) << entries.status().ToString();
    for (const auto& e : *entries) {
      if (e.activity.type == ActivityType::kFairway)
        fairway_ids.insert(e.activity.message_id.str());
    }
  }
  // i3 sets a trait u2 did not have: a change of an existing lead (created by t1).
  EXPECT_EQ(fairway_ids,
            (std::multiset<std::string>{"fw:dvc:i2:plan", "fw:dvc:i3:plan", "fw:lead_created:u1:i1",
                                        "fw:lead_created:u2:t1", "fw:linked:u1:a:anon-1:i1"}));
  auto u1 = leads.Find(TenantId("t1"), "anon-1");
  ASSERT_TRUE(u1.ok() && u1->has_value());
  EXPECT_EQ((*u1)->id, "u1");
  EXPECT_EQ((*u1)->activity_count, 3u);  // 3 sent; the 2 generated are not counted
  EXPECT_EQ(generated("u1", "lead_created"), 1u);
  EXPECT_EQ(generated("u1", "data_value_changed"), 1u);
  EXPECT_EQ(generated("u2", "lead_created"), 1u);
  EXPECT_EQ(generated("u2", "data_value_changed"), 1u);
}

}  // namespace
}  // namespace fairway::identity
