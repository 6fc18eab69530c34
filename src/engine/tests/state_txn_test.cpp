#include <gtest/gtest.h>

#include "engine/processor.h"
#include "testing/status_matchers.h"
#include "testing/store_and_log.h"

namespace fairway::engine {
namespace {

using ::fairway::testing::TempDir;

class StateTxnTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(store_, ::fairway::testing::OpenFairwayStore(dir_.path()));
  }
  void Commit(StateTxn& txn) {
    storage::WriteBatch b;
    txn.AppendTo(&b);
    ASSERT_TRUE(store_->Write(b, false).ok());
  }
  TempDir dir_;
  std::unique_ptr<storage::Store> store_;
};

TEST_F(StateTxnTest, ReadsSeeOwnWritesAndSpacesAreSeparate) {
  StateTxn a(store_.get(), StateKeyPrefix(TenantId("acme"), "leads"));
  a.Put("k1", "v1");
  a.Put("k2", "v2");
  a.Delete("k2");
  EXPECT_EQ(**a.Get("k1"), "v1");
  EXPECT_FALSE(a.Get("k2")->has_value());
  Commit(a);
  StateTxn other(store_.get(), StateKeyPrefix(TenantId("acme2"), "leads"));
  EXPECT_FALSE(other.Get("k1")->has_value());
  StateTxn again(store_.get(), StateKeyPrefix(TenantId("acme"), "leads"));
  EXPECT_EQ(**again.Get("k1"), "v1");
  std::vector<std::string> seen;
  ASSERT_TRUE(again
                  .Scan("k",
                        [&](std::string_view k, std::string_view) {
                          seen.emplace_back(k);
                          return true;
                        })
                  .ok());
  EXPECT_EQ(seen, std::vector<std::string>{"k1"});
}

TEST_F(StateTxnTest, PrefetchAnswersLaterGetsAndYieldsToWrites) {
  StateTxn w(store_.get(), StateKeyPrefix(TenantId("acme"), "leads"));
  w.Put("a", "1");
  w.Put("b", "2");
  Commit(w);
  StateTxn t(store_.get(), StateKeyPrefix(TenantId("acme"), "leads"));
  ASSERT_TRUE(t.Prefetch({"a", "b", "missing", "a"}).ok());
  // Committed state changes after the prefetch are not seen: the txn reads one snapshot of
  // each key (the engine never lets two work items write one key at once).
  StateTxn later(store_.get(), StateKeyPrefix(TenantId("acme"), "leads"));
  later.Put("a", "changed");
  Commit(later);
  EXPECT_EQ(**t.Get("a"), "1");
  EXPECT_EQ(**t.Get("b"), "2");
  EXPECT_FALSE(t.Get("missing")->has_value());
  t.Put("b", "3");
  EXPECT_EQ(**t.Get("b"), "3");
}

// A failed attempt's retry class comes from its status code alone: conflicts are retried at
// once, an unwell dependency after a back-off, everything else never.
TEST(RetryClassTest, EveryStatusCodeHasOneRetryClass) {
  const std::vector<std::pair<StatusCode, ErrorClass>> expected = {
      {StatusCode::kAborted, ErrorClass::kRetryNow},
      {StatusCode::kUnavailable, ErrorClass::kRetryLater},
      {StatusCode::kResourceExhausted, ErrorClass::kRetryLater},
      {StatusCode::kInvalidArgument, ErrorClass::kPermanent},
      {StatusCode::kNotFound, ErrorClass::kPermanent},
      {StatusCode::kAlreadyExists, ErrorClass::kPermanent},
      {StatusCode::kUnauthenticated, ErrorClass::kPermanent},
      {StatusCode::kPermissionDenied, ErrorClass::kPermanent},
      {StatusCode::kTooLarge, ErrorClass::kPermanent},
      {StatusCode::kFailedPrecondition, ErrorClass::kPermanent},
      {StatusCode::kInternal, ErrorClass::kPermanent},
  };
  for (auto [code, cls] : expected) {
    EXPECT_EQ(RetryClassOf(code), cls) << StatusCodeName(code);
  }
}

}  // namespace
}  // namespace fairway::engine
