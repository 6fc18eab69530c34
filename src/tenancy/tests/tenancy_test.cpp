#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <future>

#include "common/crypto.h"
#include "storage/schema.h"
#include "tenancy/tenant_registry.h"
#include "tenancy/token_bucket.h"
#include "testing/status_matchers.h"
#include "testing/store_and_log.h"

namespace fairway::tenancy {
namespace {

TenantRegistry::LayoutStarter NoLayoutsForTest() {
  return [](const model::TenantConfig&, uint32_t) -> Result<std::vector<uint64_t>> {
    ADD_FAILURE() << "no layout may start here";
    return Internal("no layout may start here");
  };
}

using ::fairway::testing::TempDir;

using model::TenantConfig;
using model::TenantStatus;

class TenantRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }
  void Reopen() {
    registry_.reset();
    store_.reset();
    ASSERT_OK_AND_ASSIGN(store_, ::fairway::testing::OpenFairwayStore(dir_.path()));
    auto r = TenantRegistry::Open(store_.get(), &clock_);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    registry_ = std::move(r).value();
  }
  TenantConfig Config(const std::string& id, double rate = 100, double burst = 100) {
    TenantConfig c;
    c.id = TenantId(id);
    c.name = id;
    c.quotas.ingest_rate = rate;
    c.quotas.ingest_burst = burst;
    return c;
  }
  static TenantRegistry::LayoutStarter NoLayouts() { return NoLayoutsForTest(); }
  TempDir dir_;
  ManualClock clock_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<TenantRegistry> registry_;
};

TEST_F(TenantRegistryTest, KeysAreShownOnceAndStoredHashed) {
  auto created = registry_->Create(Config("acme"));
  ASSERT_TRUE(created.ok());
  const auto& keys = created->keys;
  EXPECT_EQ(keys.write_key.rfind("wk_", 0), 0u);
  EXPECT_EQ(keys.api_key.rfind("ak_", 0), 0u);
  auto stored = store_->Get(storage::kTenants, "acme");
  ASSERT_TRUE(stored.ok() && stored->has_value());
  EXPECT_EQ((*stored)->find(keys.write_key), std::string::npos);
  EXPECT_EQ((*stored)->find(keys.api_key), std::string::npos);
  EXPECT_NE((*stored)->find(Sha256Hex(keys.api_key)), std::string::npos);
  EXPECT_EQ(registry_->Create(Config("acme")).status().code(), StatusCode::kAlreadyExists);

  Reopen();  // survives restart
  IngestAdmission adm;
  EXPECT_TRUE(registry_->AdmitIngest(keys.write_key, 1, &adm).ok());
  EXPECT_EQ(adm.tenant.id.str(), "acme");
  EXPECT_EQ(registry_->AuthenticateApiKey(keys.api_key)->id.str(), "acme");
  // A write key is not an API key and vice versa.
  EXPECT_EQ(registry_->AuthenticateApiKey(keys.write_key).status().code(),
            StatusCode::kUnauthenticated);
  EXPECT_EQ(registry_->AdmitIngest(keys.api_key, 1, &adm).code(), StatusCode::kUnauthenticated);
}

TEST_F(TenantRegistryTest, RotateKeysRevokesOldOnes) {
  auto created = registry_->Create(Config("acme"));
  auto rotated = registry_->RotateKeys(TenantId("acme"));
  ASSERT_TRUE(rotated.ok());
  IngestAdmission adm;
  EXPECT_EQ(registry_->AdmitIngest(created->keys.write_key, 1, &adm).code(),
            StatusCode::kUnauthenticated);
  EXPECT_TRUE(registry_->AdmitIngest(rotated->write_key, 1, &adm).ok());
  EXPECT_FALSE(registry_->AuthenticateApiKey(created->keys.api_key).ok());
  EXPECT_TRUE(registry_->AuthenticateApiKey(rotated->api_key).ok());
}

TEST_F(TenantRegistryTest, SuspendResumeAndRemove) {
  auto created = registry_->Create(Config("acme"));
  IngestAdmission adm;
  ASSERT_TRUE(registry_->SetStatus(TenantId("acme"), TenantStatus::kSuspended).ok());
  Status st = registry_->AdmitIngest(created->keys.write_key, 1, &adm);
  EXPECT_EQ(st.code(), StatusCode::kPermissionDenied);
  EXPECT_NE(st.message().find("suspended"), std::string::npos);
  Reopen();
  EXPECT_EQ(registry_->Get(TenantId("acme"))->status, TenantStatus::kSuspended);
  ASSERT_TRUE(registry_->SetStatus(TenantId("acme"), TenantStatus::kActive).ok());
  EXPECT_TRUE(registry_->AdmitIngest(created->keys.write_key, 1, &adm).ok());
  ASSERT_TRUE(registry_->Remove(TenantId("acme")).ok());
  EXPECT_EQ(registry_->Get(TenantId("acme")).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(registry_->AdmitIngest(created->keys.write_key, 1, &adm).code(),
            StatusCode::kUnauthenticated);
  Reopen();
  EXPECT_TRUE(registry_->List().empty());
}

TEST_F(TenantRegistryTest, RateLimitPerTenantWithRetryAfter) {
  auto a = registry_->Create(Config("a", /*rate=*/10, /*burst=*/20));
  auto b = registry_->Create(Config("b", 10, 20));
  IngestAdmission adm;
  ASSERT_TRUE(registry_->AdmitIngest(a->keys.write_key, 20, &adm).ok());
  Status st = registry_->AdmitIngest(a->keys.write_key, 5, &adm);
  EXPECT_EQ(st.code(), StatusCode::kResourceExhausted);
  EXPECT_NEAR(adm.retry_after_s, 0.5, 1e-9);
  // Tenant b has its own bucket.
  EXPECT_TRUE(registry_->AdmitIngest(b->keys.write_key, 20, &adm).ok());
  clock_.AdvanceMillis(500);
  EXPECT_TRUE(registry_->AdmitIngest(a->keys.write_key, 5, &adm).ok());
  // Quota changes apply at once.
  ASSERT_TRUE(registry_
                  ->Update(TenantId("a"), R"({"quotas":{"ingest_rate":1000,"ingest_burst":1000}})",
                           NoLayouts())
                  .ok());
  clock_.AdvanceMillis(1000);
  EXPECT_TRUE(registry_->AdmitIngest(a->keys.write_key, 900, &adm).ok());
}

// A partition-count change seals the log's current layout and records it with the tenant; a
// restart between the log's record and the registry's finds the log's and takes it.
// A journal in memory: the records in order, as a cluster's config topic would hold them.
class MemoryJournal final : public ConfigJournal {
 public:
  Result<int64_t> Record(const TenantId& id, const std::optional<std::string>& stored) override {
    if (fail_next_) {
      fail_next_ = false;
      return Unavailable("journal down");
    }
    records.push_back({id, stored});
    return static_cast<int64_t>(records.size() - 1);
  }
  // Applies every record from `from` to `registry`, as a node's follower does.
  void Replay(TenantRegistry* registry, size_t from = 0) {
    for (size_t i = from; i < records.size(); ++i) {
      ASSERT_OK(
          registry->ApplyJournaled(records[i].first, records[i].second, static_cast<int64_t>(i)));
    }
  }
  void FailNext() { fail_next_ = true; }
  std::vector<std::pair<TenantId, std::optional<std::string>>> records;

 private:
  bool fail_next_ = false;
};

TEST_F(TenantRegistryTest, AJournaledRegistrysChangesReachAnotherNodesRegistry) {
  MemoryJournal journal;
  registry_->SetJournal(&journal);
  TempDir other_dir;
  ASSERT_OK_AND_ASSIGN(auto other_store, ::fairway::testing::OpenFairwayStore(other_dir.path()));
  ASSERT_OK_AND_ASSIGN(auto other, TenantRegistry::Open(other_store.get(), &clock_));

  ASSERT_OK_AND_ASSIGN(auto created, registry_->Create(Config("acme")));
  ASSERT_OK(registry_->SetStatus(TenantId("acme"), TenantStatus::kSuspended));
  ASSERT_OK_AND_ASSIGN(auto keys, registry_->RotateKeys(TenantId("acme")));
  ASSERT_OK(registry_->Create(Config("gone")));
  ASSERT_OK(registry_->Remove(TenantId("gone")));
  ASSERT_EQ(journal.records.size(), 5u);
  EXPECT_FALSE(journal.records[4].second.has_value());  // a removal is a tombstone
  journal.Replay(other.get());

  ASSERT_OK_AND_ASSIGN(auto acme, other->Get(TenantId("acme")));
  EXPECT_EQ(acme.status, TenantStatus::kSuspended);
  EXPECT_TRUE(other->AuthenticateApiKey(keys.api_key).ok());  // the rotated keys, not the first
  EXPECT_FALSE(other->AuthenticateApiKey(created.keys.api_key).ok());
  EXPECT_FALSE(other->Get(TenantId("gone")).ok());
  ASSERT_OK_AND_ASSIGN(auto stored, other_store->Get(storage::kTenants, "acme"));
  EXPECT_TRUE(stored.has_value());  // stored, so it survives the other node's restart

  // The node that made a change holds it already: reading its own record changes nothing, and
  // an older record never undoes a newer change.
  ASSERT_OK_AND_ASSIGN(auto again,
                       registry_->ApplyJournaled(TenantId("acme"), journal.records[0].second, 0));
  EXPECT_FALSE(again.applied);
  EXPECT_EQ(registry_->Get(TenantId("acme"))->status, TenantStatus::kSuspended);
  ASSERT_OK_AND_ASSIGN(auto own,
                       registry_->ApplyJournaled(TenantId("acme"), journal.records[2].second, 2));
  EXPECT_FALSE(own.applied);

  // A change the journal refuses is not made.
  journal.FailNext();
  EXPECT_THAT(registry_->SetStatus(TenantId("acme"), TenantStatus::kActive),
              ::fairway::testing::StatusIs(StatusCode::kUnavailable));
  EXPECT_EQ(registry_->Get(TenantId("acme"))->status, TenantStatus::kSuspended);

  // A record that is not a tenant is refused, naming its position.
  auto bad = other->ApplyJournaled(TenantId("x"), std::string("{not json"), 99);
  EXPECT_THAT(bad, ::fairway::testing::StatusIs(StatusCode::kInvalidArgument,
                                                ::testing::HasSubstr("position 99")));
}

TEST(TenantLayoutTest, PartitionChangeSealsTheCurrentLayout) {
  ::fairway::testing::StoreAndLog env;
  ASSERT_OK(env.Open());
  auto open_registry = [&] {
    auto r = TenantRegistry::Open(env.store(), &env.clock());
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return std::move(r).value();
  };
  auto registry = open_registry();
  TenantConfig c;
  c.id = TenantId("acme");
  c.partitions = 2;
  ASSERT_TRUE(registry->Create(c).ok());
  auto append = [&](const TenantConfig& t, std::vector<std::string> users) {
    log::AppendRequest req = log::AppendRequestFor(t);
    for (auto& u : users) {
      model::Activity a;
      a.type = model::ActivityType::kTrack;
      a.event = "e";
      a.user_id = u;
      a.message_id = MessageId("m-" + u + std::to_string(env.clock().NowMillis()));
      req.activities.push_back(std::move(a));
    }
    std::promise<Result<log::AppendResult>> done;
    env.log()->Append(std::move(req), [&](Result<log::AppendResult> r) { done.set_value(r); });
    return done.get_future().get();
  };
  ASSERT_TRUE(append(c, {"u1", "u2", "u3", "u4", "u5"}).ok());
  auto start = [&](const TenantConfig& t, uint32_t n) { return env.log()->StartLayout(t, n); };

  // Invalid counts change nothing.
  for (const char* bad : {R"({"partitions":0})", R"({"partitions":257})", R"({"partitions":-1})"}) {
    auto r = registry->Update(c.id, bad, NoLayoutsForTest());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
  }
  ASSERT_OK_AND_ASSIGN(auto same,
                       registry->Update(c.id, R"({"partitions":2})", NoLayoutsForTest()));
  EXPECT_TRUE(same.sealed_layouts.empty());

  ASSERT_OK_AND_ASSIGN(auto grown, registry->Update(c.id, R"({"partitions":3})", start));
  EXPECT_EQ(grown.partitions, 3u);
  ASSERT_EQ(grown.sealed_layouts.size(), 1u);
  const auto& sealed = grown.sealed_layouts[0];
  EXPECT_EQ(sealed.first, 0u);
  EXPECT_EQ(sealed.count, 2u);
  uint64_t stored = 0;
  for (uint32_t p = 0; p < 2; ++p) {
    ASSERT_OK_AND_ASSIGN(auto hwm, env.log()->HighWatermark(c.id, PartitionId(p)));
    EXPECT_EQ(sealed.ends[p], hwm.value());
    stored += hwm.value();
  }
  EXPECT_EQ(stored, 5u);
  EXPECT_EQ(grown.first_partition(), 2u);
  EXPECT_EQ(grown.log_partitions(), 5u);

  // An append whose request still names the old layout goes to the new one.
  ASSERT_TRUE(append(c, {"u6", "u7", "u8", "u9"}).ok());
  uint64_t old_total = 0, new_total = 0;
  for (uint32_t p = 0; p < 5; ++p) {
    ASSERT_OK_AND_ASSIGN(auto hwm, env.log()->HighWatermark(c.id, PartitionId(p)));
    (p < 2 ? old_total : new_total) += hwm.value();
  }
  EXPECT_EQ(old_total, 5u);
  EXPECT_EQ(new_total, 4u);

  // The same change again (a retried PATCH whose answer was lost) seals nothing new.
  ASSERT_OK_AND_ASSIGN(auto repeated, env.log()->StartLayout(c, 3));
  EXPECT_EQ(repeated, sealed.ends);
  // A stale current layout is refused.
  EXPECT_EQ(env.log()->StartLayout(c, 7).status().code(), StatusCode::kFailedPrecondition);

  // The log starts a layout, and the process dies before the registry stores it: on restart the
  // registry takes the log's record.
  ASSERT_OK(env.log()->StartLayout(grown, 1).status());
  registry.reset();
  ASSERT_OK(env.Reopen());
  registry = open_registry();
  ASSERT_OK_AND_ASSIGN(auto before, registry->Get(c.id));
  EXPECT_EQ(before.partitions, 3u);
  ASSERT_OK_AND_ASSIGN(auto layouts, env.log()->Layouts(c.id));
  ASSERT_EQ(layouts.size(), 3u);
  ASSERT_OK_AND_ASSIGN(auto adopted, registry->AdoptLayouts(c.id, layouts));
  EXPECT_EQ(adopted.partitions, 1u);
  EXPECT_EQ(adopted.first_partition(), 5u);
  ASSERT_EQ(adopted.sealed_layouts.size(), 2u);
  EXPECT_EQ(adopted.sealed_layouts[0], sealed);
  EXPECT_EQ(adopted.sealed_layouts[1].ends.size(), 3u);
  registry.reset();
  registry = open_registry();
  ASSERT_OK_AND_ASSIGN(auto reloaded, registry->Get(c.id));
  EXPECT_EQ(reloaded.sealed_layouts, adopted.sealed_layouts);
  EXPECT_EQ(reloaded.partitions, 1u);
  // Adopting what the registry has already changes nothing.
  ASSERT_OK_AND_ASSIGN(auto again, registry->AdoptLayouts(c.id, layouts));
  EXPECT_EQ(again.updated_at_ms, reloaded.updated_at_ms);
}

TEST(TokenBucketTest, OversizedRequestAdmittedWhenFull) {
  TokenBucket b;
  auto d = b.Take(50, /*rate=*/10, /*burst=*/20, 0);
  EXPECT_TRUE(d.admitted);               // needs min(50, 20) tokens
  d = b.Take(1, 10, 20, 1'000'000'000);  // 1 s later: -30 + 10 = -20
  EXPECT_FALSE(d.admitted);
  EXPECT_NEAR(d.retry_after_s, 2.1, 1e-9);
  d = b.Take(1, 10, 20, 3'100'000'000);
  EXPECT_TRUE(d.admitted);
}

}  // namespace
}  // namespace fairway::tenancy
