#include <gtest/gtest.h>

#include "common/crypto.h"
#include "storage/schema.h"
#include "tenancy/tenant_registry.h"
#include "tenancy/token_bucket.h"
#include "testing/status_matchers.h"
#include "testing/store_and_log.h"

namespace fairway::tenancy {
namespace {

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
  ASSERT_TRUE(
      registry_->Update(TenantId("a"), R"({"quotas":{"ingest_rate":1000,"ingest_burst":1000}})")
          .ok());
  clock_.AdvanceMillis(1000);
  EXPECT_TRUE(registry_->AdmitIngest(a->keys.write_key, 900, &adm).ok());
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
