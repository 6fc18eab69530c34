// The Kafka backend: the ActivityLog conformance suite on it, and what only Kafka does (broker
// failures, retention gaps made by the broker, topics), against a mock Kafka cluster reached over
// TCP (testing/kafka_mock.h).

#include "log/kafka_log.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

#include <atomic>
#include <future>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "log/lead_index.h"
#include "log/log_factory.h"
#include "log/tests/log_conformance.h"
#include "storage/schema.h"
#include "storage/store.h"
#include "testing/kafka_mock.h"
#include "testing/status_matchers.h"
#include "testing/store_and_log.h"
#include "testing/temp_dir.h"

namespace fairway::log {
namespace {

using ::fairway::testing::KafkaMockCluster;
using ::fairway::testing::StatusIs;
using ::testing::HasSubstr;

KafkaMockCluster& Cluster() { return KafkaMockCluster::Shared(); }
std::string FreshPrefix() { return KafkaMockCluster::FreshTopicPrefix("t"); }

// Creates topics in the mock cluster, which has no CreateTopics; deletions (which it cannot do
// either) are recorded.
class MockTopicAdmin final : public KafkaTopicAdmin {
 public:
  Status CreateTopic(const std::string& topic, uint32_t partitions, int64_t) override {
    Status st = Cluster().CreateTopic(topic, static_cast<int>(partitions), 3);
    if (!st.ok() && st.message().find("exist") != std::string::npos) {
      return AlreadyExists(st.message());
    }
    return st;
  }
  Status DeleteTopic(const std::string& topic) override {
    std::lock_guard lock(mu_);
    deleted_.insert(topic);
    return Status::Ok();
  }
  std::set<std::string> deleted() {
    std::lock_guard lock(mu_);
    return deleted_;
  }

 private:
  std::mutex mu_;
  std::set<std::string> deleted_;
};

KafkaLogOptions TestOptions() {
  KafkaLogOptions o;
  o.brokers = Cluster().bootstrap_servers();
  o.topic_prefix = FreshPrefix();
  o.delivery_timeout_ms = 10'000;
  return o;
}

// The Kafka backend on the mock cluster, opened through the factory, with the node's store in a
// temporary directory. Close and Open keep the topics and the store (a restart).
class KafkaLogHarness final : public LogBackendHarness {
 public:
  Status Open() override {
    FAIRWAY_RETURN_IF_ERROR(Cluster().status());
    FAIRWAY_ASSIGN_OR_RETURN(store_, ::fairway::testing::OpenFairwayStore(dir_.path(), &clock_));
    metrics_ = std::make_unique<MetricsRegistry>();
    FAIRWAY_ASSIGN_OR_RETURN(
        log_, KafkaLog::Open(options_, store_.get(), &clock_, metrics_.get(), &admin_));
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
    log_->FailNextAppends(1);
    return true;
  }
  bool RetentionRemovesRecords() override { return false; }
  bool DropRemovesRecords() override { return false; }

 private:
  ::fairway::testing::TempDir dir_;
  ManualClock clock_;
  KafkaLogOptions options_ = TestOptions();
  MockTopicAdmin admin_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<MetricsRegistry> metrics_;
  std::unique_ptr<KafkaLog> log_;
};

INSTANTIATE_TEST_SUITE_P(Kafka, ActivityLogConformanceTest,
                         ::testing::Values(LogBackend{
                             "kafka", [] { return std::make_unique<KafkaLogHarness>(); }}),
                         LogBackendName);

// ---------------------------------------------------------------------------------------------
// What only the Kafka backend does.

class KafkaLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(Cluster().status());
    ASSERT_OK_AND_ASSIGN(store_, ::fairway::testing::OpenFairwayStore(dir_.path(), &clock_));
  }
  void TearDown() override {
    if (log_) log_->Stop();
  }

  Status Open(KafkaLogOptions options, KafkaTopicAdmin* admin) {
    FAIRWAY_ASSIGN_OR_RETURN(
        log_, KafkaLog::Open(std::move(options), store_.get(), &clock_, &metrics_, admin));
    log_->Start();
    return Status::Ok();
  }

  model::Activity Make(std::string id, std::string user, size_t padding = 0) {
    model::Activity a;
    a.type = model::ActivityType::kTrack;
    a.message_id = MessageId(std::move(id));
    a.user_id = std::move(user);
    a.event = "Clicked";
    a.timestamp_ms = clock_.NowMillis();
    a.received_at_ms = clock_.NowMillis();
    a.fields_json = fmt::format(R"("properties":{{"pad":"{}"}})", std::string(padding, 'x'));
    return a;
  }

  Result<AppendResult> AppendSync(const std::string& tenant, std::vector<model::Activity> acts,
                                  uint32_t partitions) {
    AppendRequest r;
    r.tenant = TenantId(tenant);
    r.partitions = partitions;
    r.dedup_window_ms = 3'600'000;
    r.activities = std::move(acts);
    std::promise<Result<AppendResult>> done;
    auto result = done.get_future();
    log_->Append(std::move(r), [&done](Result<AppendResult> x) { done.set_value(std::move(x)); });
    return result.get();
  }

  // Tenant "acme" of 2 partitions, with its topic and its next layout's (3 partitions)
  // created, the first topic's partitions led by broker 1.
  model::TenantConfig AcmeWithNextLayout(std::string* old_topic, std::string* new_topic) {
    model::TenantConfig tenant;
    tenant.id = TenantId("acme");
    tenant.partitions = 2;
    *old_topic = log_->TopicOf(tenant.id);
    *new_topic = *old_topic + ".1";
    EXPECT_OK(Cluster().CreateTopic(*old_topic, 2));
    EXPECT_OK(Cluster().CreateTopic(*new_topic, 3));
    for (int p = 0; p < 2; ++p) EXPECT_OK(Cluster().SetLeader(*old_topic, p, 1));
    return tenant;
  }

  ::fairway::testing::TempDir dir_;
  ManualClock clock_;
  MetricsRegistry metrics_;
  std::unique_ptr<storage::Store> store_;
  MockTopicAdmin admin_;
  std::unique_ptr<KafkaLog> log_;
};

TEST_F(KafkaLogTest, WithEveryBrokerDownAnAppendFailsAndItsRetryStoresEachActivityOnce) {
  KafkaLogOptions o = TestOptions();
  o.delivery_timeout_ms = 1500;
  ASSERT_OK(Open(o, &admin_));
  ASSERT_OK(AppendSync("acme", {Make("first", "u0")}, 4));

  std::vector<model::Activity> acts;
  for (int i = 0; i < 40; ++i) acts.push_back(Make(fmt::format("m{}", i), fmt::format("u{}", i)));
  ASSERT_OK(Cluster().SetBrokerDown(-1));
  auto failed = AppendSync("acme", acts, 4);
  ASSERT_OK(Cluster().SetBrokerUp(-1));
  EXPECT_THAT(failed, StatusIs(StatusCode::kUnavailable, HasSubstr("Kafka did not acknowledge")));

  // The client retries the same request once the brokers are back (within the delivery
  // timeout); whatever of it Kafka had kept is recognised, the rest stored.
  Result<AppendResult> retry = Unavailable("not yet");
  for (int attempt = 0; attempt < 10 && !retry.ok(); ++attempt) retry = AppendSync("acme", acts, 4);
  ASSERT_OK(retry);
  EXPECT_EQ(retry->stored + retry->duplicates, 40u);
  std::multiset<std::string> ids;
  for (uint32_t p = 0; p < 4; ++p) {
    ASSERT_OK_AND_ASSIGN(auto entries,
                         log_->Read(TenantId("acme"), PartitionId(p), Offset(0), 1000));
    for (const auto& e : entries) ids.insert(e.activity.message_id.str());
  }
  EXPECT_EQ(ids.size(), 41u);
  for (int i = 0; i < 40; ++i) EXPECT_EQ(ids.count(fmt::format("m{}", i)), 1u) << i;
}

// The broker stores the records but its acknowledgement comes after the delivery timeout: the
// append fails, and its retry must find what was stored rather than store it again.
TEST_F(KafkaLogTest, RecordsStoredWhoseAcknowledgementCameTooLateAreNotStoredAgainByTheRetry) {
  KafkaLogOptions o = TestOptions();
  o.delivery_timeout_ms = 1000;
  ASSERT_OK(Open(o, &admin_));
  std::mutex mu;
  std::map<uint32_t, uint64_t> announced;  // partition -> the end consumers were told of
  log_->SetAppendListener([&](const std::vector<PartitionAdvance>& advances) {
    std::lock_guard lock(mu);
    for (const auto& a : advances) {
      uint64_t& end = announced[a.partition.value()];
      end = std::max(end, a.next.value());
    }
  });
  ASSERT_OK(AppendSync("acme", {Make("first", "u0")}, 4));

  std::vector<model::Activity> acts;
  for (int i = 0; i < 40; ++i) acts.push_back(Make(fmt::format("m{}", i), fmt::format("u{}", i)));
  ASSERT_OK(Cluster().SetRoundTrip(-1, 2500));
  auto failed = AppendSync("acme", acts, 4);
  ASSERT_OK(Cluster().SetRoundTrip(-1, 0));
  EXPECT_THAT(failed, StatusIs(StatusCode::kUnavailable, HasSubstr("Kafka did not acknowledge")));
  // The test is only a test if the broker kept some (the ones sent before the timeout).
  std::vector<uint64_t> highs(4);
  uint64_t kept = 0;
  for (uint32_t p = 0; p < 4; ++p) {
    ASSERT_OK_AND_ASSIGN(auto high, log_->HighWatermark(TenantId("acme"), PartitionId(p)));
    highs[p] = high.value();
    kept += highs[p];
  }
  ASSERT_GT(kept, 1u) << "the broker stored none of the unacknowledged records";

  Result<AppendResult> retry = Unavailable("not yet");
  for (int attempt = 0; attempt < 10 && !retry.ok(); ++attempt) retry = AppendSync("acme", acts, 4);
  ASSERT_OK(retry);
  // An earlier attempt of the retry may itself have stored part and failed: at least what the
  // first request left is recognised.
  EXPECT_GE(retry->duplicates, kept - 1);
  EXPECT_EQ(retry->stored + retry->duplicates, 40u);
  std::multiset<std::string> ids;
  for (uint32_t p = 0; p < 4; ++p) {
    ASSERT_OK_AND_ASSIGN(auto high, log_->HighWatermark(TenantId("acme"), PartitionId(p)));
    // A read returns what it fetched in time: read on until the partition's end.
    uint64_t next = 0;
    for (int reads = 0; next < high.value() && reads < 20; ++reads) {
      ASSERT_OK_AND_ASSIGN(auto entries,
                           log_->Read(TenantId("acme"), PartitionId(p), Offset(next), 1000));
      for (const auto& e : entries) ids.insert(e.activity.message_id.str());
      if (!entries.empty()) next = entries.back().offset.value() + 1;
    }
  }
  EXPECT_EQ(ids.size(), 41u);
  for (int i = 0; i < 40; ++i) EXPECT_EQ(ids.count(fmt::format("m{}", i)), 1u) << i;
  // Consumers were told of every record, also of those only the retry's catch-up found.
  std::lock_guard lock(mu);
  for (uint32_t p = 0; p < 4; ++p) {
    ASSERT_OK_AND_ASSIGN(auto high, log_->HighWatermark(TenantId("acme"), PartitionId(p)));
    EXPECT_EQ(announced[p], high.value()) << p;
  }
}

// An append whose topic must be checked first (a tenant's first after a start, or the retry
// after records were possibly stored) waits for Kafka on the log's own thread, never on the
// appending one (an HTTP I/O thread, which has other requests to serve).
TEST_F(KafkaLogTest, ATopicCheckWaitsForKafkaOffTheAppendingThread) {
  KafkaLogOptions o = TestOptions();
  o.request_timeout_ms = 1000;
  ASSERT_OK(Open(o, &admin_));
  ASSERT_OK(Cluster().SetBrokerDown(-1));
  AppendRequest r;
  r.tenant = TenantId("acme");
  r.partitions = 2;
  r.dedup_window_ms = 3'600'000;
  r.activities = {Make("a", "u")};
  std::promise<std::pair<std::thread::id, Status>> answered;
  log_->Append(r, [&](Result<AppendResult> res) {
    answered.set_value({std::this_thread::get_id(), res.status()});
  });
  auto [thread, status] = answered.get_future().get();
  ASSERT_OK(Cluster().SetBrokerUp(-1));
  EXPECT_NE(thread, std::this_thread::get_id()) << "the check held the appending thread";
  EXPECT_THAT(status, StatusIs(StatusCode::kUnavailable));
  // Once Kafka answers, the same append goes through.
  Result<AppendResult> again = Unavailable("not yet");
  for (int attempt = 0; attempt < 10 && !again.ok(); ++attempt) {
    again = AppendSync("acme", {Make("a", "u")}, 2);
  }
  ASSERT_OK(again);
  EXPECT_EQ(again->stored, 1u);
}

TEST_F(KafkaLogTest, ARetentionGapMadeByTheBrokerRaisesTheLowWatermarkAndReadsStartAtIt) {
  KafkaLogOptions o = TestOptions();
  o.tail_cache_bytes = 0;  // every read goes to the broker
  ASSERT_OK(Open(o, &admin_));
  // The mock keeps about 5 MB per partition: 8 MB of 2 KB records make it drop the oldest.
  constexpr int kRecords = 4000;
  for (int batch = 0; batch < kRecords / 500; ++batch) {
    std::vector<model::Activity> acts;
    for (int i = 0; i < 500; ++i)
      acts.push_back(Make(fmt::format("r{}", batch * 500 + i), "u", 2000));
    ASSERT_OK(AppendSync("big", std::move(acts), 1));
  }
  ASSERT_OK_AND_ASSIGN(Offset high, log_->HighWatermark(TenantId("big"), PartitionId(0)));
  ASSERT_OK_AND_ASSIGN(Offset low, log_->LowWatermark(TenantId("big"), PartitionId(0)));
  EXPECT_EQ(high.value(), static_cast<uint64_t>(kRecords));
  ASSERT_GT(low.value(), 0u) << "the broker kept every record; nothing to test";
  for (uint64_t from : {uint64_t{0}, low.value() - 1, low.value()}) {
    ASSERT_OK_AND_ASSIGN(auto r, log_->Read(TenantId("big"), PartitionId(0), Offset(from), 3));
    ASSERT_EQ(r.size(), 3u) << "from " << from;
    EXPECT_EQ(r[0].offset.value(), low.value()) << "from " << from;
    EXPECT_EQ(r[0].activity.message_id.str(), fmt::format("r{}", low.value()));
  }
  // Reading on from there, and then back in the middle, returns contiguous records.
  ASSERT_OK_AND_ASSIGN(auto tail,
                       log_->Read(TenantId("big"), PartitionId(0), Offset(high.value() - 10), 100));
  ASSERT_EQ(tail.size(), 10u);
  EXPECT_EQ(tail.back().activity.message_id.str(), fmt::format("r{}", kRecords - 1));
  ASSERT_OK_AND_ASSIGN(auto middle,
                       log_->Read(TenantId("big"), PartitionId(0), Offset(low.value() + 7), 5));
  ASSERT_EQ(middle.size(), 5u);
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(middle[i].offset.value(), low.value() + 7 + i);
}

TEST_F(KafkaLogTest, ATopicWithOtherPartitionsThanItsTenantIsRefusedNamingBoth) {
  // Topics provisioned by the operator. (The mock cluster creates a topic with 4 partitions as
  // soon as a client asks about it, so a missing topic cannot be shown here.)
  KafkaLogOptions o = TestOptions();
  o.create_topics = false;
  ASSERT_OK(Open(o, nullptr));
  const std::string topic = log_->TopicOf(TenantId("acme"));
  ASSERT_OK(Cluster().CreateTopic(topic, 2, 3));
  EXPECT_THAT(AppendSync("acme", {Make("a", "u")}, 4),
              StatusIs(StatusCode::kUnavailable,
                       HasSubstr(fmt::format("Kafka topic '{}' has 2 partitions; tenant 'acme' "
                                             "has 4",
                                             topic))));
  ASSERT_OK_AND_ASSIGN(AppendResult ok, AppendSync("acme", {Make("a", "u")}, 2));
  EXPECT_EQ(ok.stored, 1u);
  // Once known, the topic's partition count is still checked.
  EXPECT_THAT(AppendSync("acme", {Make("b", "u")}, 3),
              StatusIs(StatusCode::kUnavailable, HasSubstr("has 2 partitions")));
}

TEST_F(KafkaLogTest, TopicsAreCreatedThroughTheClusterAdminApiAndItsRefusalIsReported) {
  // The mock cluster has no CreateTopics: the cluster's answer reaches the append's caller.
  KafkaLogOptions o = TestOptions();
  o.request_timeout_ms = 1000;
  ASSERT_OK(Open(o, nullptr));
  auto r = AppendSync("acme", {Make("a", "u")}, 4);
  EXPECT_THAT(r, StatusIs(StatusCode::kUnavailable, HasSubstr("kafka.create_topics")));
  EXPECT_THAT(r, StatusIs(StatusCode::kUnavailable, HasSubstr("tenant 'acme'")));
}

TEST_F(KafkaLogTest, DroppingATenantDeletesItsTopicAndItsLeadIndex) {
  ASSERT_OK(Open(TestOptions(), &admin_));
  ASSERT_OK(AppendSync("acme", {Make("a", "lead-1"), Make("b", "lead-1")}, 2));
  ActivityQuery q;
  q.tenant = TenantId("acme");
  q.lead = LeadId("lead-1");
  ASSERT_OK_AND_ASSIGN(ActivityPage page, log_->Query(q));
  ASSERT_EQ(page.entries.size(), 2u);
  EXPECT_EQ(page.entries[0].activity.message_id.str(), "b");  // newest first

  ASSERT_OK(log_->DropTenant(TenantId("acme")));
  // And the next layout's topic, which a layout change cut short may have left (none here).
  const std::string topic = log_->TopicOf(TenantId("acme"));
  EXPECT_EQ(admin_.deleted(), (std::set<std::string>{topic, topic + ".1"}));
  ASSERT_OK_AND_ASSIGN(page, log_->Query(q));
  EXPECT_TRUE(page.entries.empty());
}

// A tenant id is taken again only once the topics of the earlier tenant with that id hold no
// records: Kafka deletes topics in the background, and what they hold would become the new
// tenant's history.
TEST_F(KafkaLogTest, ATenantIdIsTakenAgainOnlyOnceItsEarlierTopicsHoldNoRecords) {
  ASSERT_OK(Open(TestOptions(), &admin_));
  // Never used: no topics.
  EXPECT_OK(log_->ReopenTenant(TenantId("fresh")));
  // Topics the operator created ahead, empty.
  const std::string ready = log_->TopicOf(TenantId("ready"));
  ASSERT_OK(Cluster().CreateTopic(ready, 2));
  ASSERT_OK(Cluster().CreateTopic(ready + ".1", 4));
  EXPECT_OK(log_->ReopenTenant(TenantId("ready")));
  // A layout topic of an earlier tenant still holds records (the mock never deletes topics).
  model::TenantConfig old;
  old.id = TenantId("old");
  old.partitions = 2;
  ASSERT_OK(AppendSync("old", {Make("a", "u")}, 2));
  ASSERT_OK(log_->StartLayout(old, 3).status());
  ASSERT_OK(AppendSync("old", {Make("b", "u")}, 2));
  ASSERT_OK(log_->DropTenant(old.id));
  EXPECT_THAT(log_->ReopenTenant(old.id),
              StatusIs(StatusCode::kFailedPrecondition, HasSubstr("deleted earlier")));
  EXPECT_THAT(AppendSync("old", {Make("c", "u")}, 2), StatusIs(StatusCode::kNotFound));
  // Tenants whose names start the same are other tenants.
  EXPECT_OK(log_->ReopenTenant(TenantId("ol")));
  // With every broker down nobody can tell: refused as unavailable.
  ASSERT_OK(Cluster().SetBrokerDown(-1));
  KafkaLogOptions o = TestOptions();
  o.request_timeout_ms = 500;
  ::fairway::testing::TempDir other_dir;
  ASSERT_OK_AND_ASSIGN(auto other_store,
                       ::fairway::testing::OpenFairwayStore(other_dir.path(), &clock_));
  ASSERT_OK_AND_ASSIGN(auto other,
                       KafkaLog::Open(o, other_store.get(), &clock_, &metrics_, &admin_));
  Status down = other->ReopenTenant(TenantId("fresh"));
  ASSERT_OK(Cluster().SetBrokerUp(-1));
  EXPECT_THAT(down, StatusIs(StatusCode::kUnavailable, HasSubstr("cannot check Kafka")));
}

TEST_F(KafkaLogTest, RecordsStoredButNeverIndexedAreCaughtUpBeforeTheTenantsNextAppend) {
  // A node that stopped between Kafka's acknowledgement and writing its dedup and index rows
  // left records the store knows nothing of: here, written to the topic by a bare producer.
  KafkaLogOptions o = TestOptions();
  const std::string topic = o.topic_prefix + "acme";
  ASSERT_OK(Cluster().CreateTopic(topic, 2, 3));
  {
    char err[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    ASSERT_EQ(rd_kafka_conf_set(conf, "bootstrap.servers", o.brokers.c_str(), err, sizeof err),
              RD_KAFKA_CONF_OK);
    rd_kafka_t* producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    ASSERT_NE(producer, nullptr) << err;
    for (int i = 0; i < 30; ++i) {
      model::Activity a = Make(fmt::format("early{}", i), fmt::format("lead-{}", i % 3));
      std::string record;
      model::EncodeActivity(a, &record);
      const auto partition = static_cast<int32_t>(PartitionFor(a.LeadKey(), 2).value());
      ASSERT_EQ(rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(topic.c_str()),
                                  RD_KAFKA_V_PARTITION(partition),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_VALUE(record.data(), record.size()), RD_KAFKA_V_END),
                RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    ASSERT_EQ(rd_kafka_flush(producer, 10'000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(producer);
  }
  ASSERT_OK(Open(o, &admin_));
  // The client's retry of those activities, plus a new one.
  std::vector<model::Activity> retry;
  for (int i = 0; i < 30; ++i) {
    retry.push_back(Make(fmt::format("early{}", i), fmt::format("lead-{}", i % 3)));
  }
  retry.push_back(Make("new", "lead-0"));
  ASSERT_OK_AND_ASSIGN(AppendResult r, AppendSync("acme", retry, 2));
  EXPECT_EQ(r.duplicates, 30u);
  EXPECT_EQ(r.stored, 1u);
  ActivityQuery q;
  q.tenant = TenantId("acme");
  q.lead = LeadId("lead-0");
  ASSERT_OK_AND_ASSIGN(ActivityPage page, log_->Query(q));
  EXPECT_EQ(page.entries.size(), 11u);

  // The checkpoint was kept: after a restart, nothing is read again to catch up.
  log_->Stop();
  log_.reset();
  MetricsRegistry fresh;
  ASSERT_OK_AND_ASSIGN(log_, KafkaLog::Open(o, store_.get(), &clock_, &fresh, &admin_));
  log_->Start();
  ASSERT_OK_AND_ASSIGN(r, AppendSync("acme", {Make("new", "lead-0"), Make("newer", "lead-1")}, 2));
  EXPECT_EQ(r.duplicates, 1u);
  EXPECT_EQ(r.stored, 1u);
  EXPECT_EQ(fresh.GetCounter("fairway_log_reads_total", "", {{"source", "kafka"}})->value(), 0u);
}

TEST_F(KafkaLogTest, HealthIsUnavailableWhileNoBrokerAnswersAndRecoversByItself) {
  ASSERT_OK(Open(TestOptions(), &admin_));
  EXPECT_OK(log_->Health());
  ASSERT_OK(Cluster().SetBrokerDown(-1));
  clock_.AdvanceMillis(1001);  // past the cached answer
  Status down = log_->Health();
  ASSERT_OK(Cluster().SetBrokerUp(-1));
  EXPECT_THAT(down, StatusIs(StatusCode::kUnavailable, HasSubstr("no Kafka broker")));
  // Within a second the cached answer stands; after it, the brokers are asked again.
  EXPECT_THAT(log_->Health(), StatusIs(StatusCode::kUnavailable));
  Status up = Unavailable("not asked");
  for (int i = 0; i < 50 && !up.ok(); ++i) {
    clock_.AdvanceMillis(1001);
    up = log_->Health();
  }
  EXPECT_OK(up);
}

// A partition's leadership moves (an election after a broker failure): watermark queries and
// reads find the new leader at once, not after the next periodic metadata refresh.
TEST_F(KafkaLogTest, WatermarksAndReadsFollowALeaderThatMoved) {
  ASSERT_OK(Open(TestOptions(), &admin_));
  const TenantId acme("acme");
  const std::string topic = log_->TopicOf(acme);
  ASSERT_OK(Cluster().CreateTopic(topic, 1));
  ASSERT_OK(Cluster().SetLeader(topic, 0, 1));
  ASSERT_OK(AppendSync("acme", {Make("a0", "u")}, 1));
  ASSERT_OK_AND_ASSIGN(auto high, log_->HighWatermark(acme, PartitionId(0)));
  EXPECT_EQ(high.value(), 1u);
  // Another node reads the partition through Kafka (its memory holds none of it), its fetcher
  // started on the first leader.
  ::fairway::testing::TempDir other_dir;
  ASSERT_OK_AND_ASSIGN(auto other_store,
                       ::fairway::testing::OpenFairwayStore(other_dir.path(), &clock_));
  KafkaLogOptions other_options = TestOptions();
  other_options.topic_prefix = topic.substr(0, topic.size() - 4);  // the same topics
  ASSERT_OK_AND_ASSIGN(
      auto other, KafkaLog::Open(other_options, other_store.get(), &clock_, &metrics_, &admin_));
  other->Start();
  ASSERT_OK_AND_ASSIGN(auto first, other->Read(acme, PartitionId(0), Offset(0), 10));
  ASSERT_EQ(first.size(), 1u);
  uint64_t appended = 1;
  for (int broker : {2, 3, 1}) {
    ASSERT_OK(Cluster().SetLeader(topic, 0, broker));
    ASSERT_OK_AND_ASSIGN(auto moved, log_->HighWatermark(acme, PartitionId(0)));
    EXPECT_EQ(moved.value(), appended) << "leader " << broker;
    ASSERT_OK(AppendSync("acme", {Make(fmt::format("a{}", appended), "u")}, 1));
    ++appended;
    ASSERT_OK_AND_ASSIGN(auto read, other->Read(acme, PartitionId(0), Offset(appended - 1), 10));
    ASSERT_EQ(read.size(), 1u) << "leader " << broker;
    EXPECT_EQ(read[0].activity.message_id.str(), fmt::format("a{}", appended - 1));
  }
  other->Stop();
}

TEST_F(KafkaLogTest, AppendsBeyondTheQueueBoundAreRefusedWhileKafkaHoldsThemBack) {
  KafkaLogOptions o = TestOptions();
  o.max_queued_events = 1000;
  o.delivery_timeout_ms = 2000;
  ASSERT_OK(Open(o, &admin_));
  ASSERT_OK(AppendSync("acme", {Make("first", "u")}, 2));
  auto batch = [&](const std::string& prefix, int n) {
    std::vector<model::Activity> acts;
    for (int i = 0; i < n; ++i) acts.push_back(Make(prefix + std::to_string(i), "u" + prefix));
    return acts;
  };
  ASSERT_OK(Cluster().SetBrokerDown(-1));
  // 600 events wait for brokers that do not answer; 600 more would pass the bound of 1,000.
  AppendRequest held;
  held.tenant = TenantId("acme");
  held.partitions = 2;
  held.dedup_window_ms = 3'600'000;
  held.activities = batch("held", 600);
  std::promise<Result<AppendResult>> held_done;
  log_->Append(std::move(held), [&](Result<AppendResult> r) { held_done.set_value(std::move(r)); });
  auto refused = AppendSync("acme", batch("more", 600), 2);
  // One event still fits.
  auto small = AppendSync("acme", batch("one", 1), 2);
  ASSERT_OK(Cluster().SetBrokerUp(-1));
  EXPECT_THAT(refused, StatusIs(StatusCode::kUnavailable, HasSubstr("overloaded")));
  // (It waits for the brokers like the held one: timed out, or acknowledged; not refused.)
  if (!small.ok()) {
    EXPECT_THAT(small.status().message(), ::testing::Not(HasSubstr("overloaded")));
  }
  // Acknowledged or timed out: either way the queue is empty afterwards.
  [[maybe_unused]] Result<AppendResult> held_result = held_done.get_future().get();
  // With the queue empty again, the refused request goes through (re-sent until acknowledged).
  Result<AppendResult> again = Unavailable("not yet");
  for (int attempt = 0; attempt < 10 && !again.ok(); ++attempt) {
    again = AppendSync("acme", batch("more", 600), 2);
  }
  ASSERT_OK(again);
  EXPECT_EQ(again->stored + again->duplicates, 600u);
}

// A new layout is a new topic; the old one is sealed only once every record sent to it has its
// answer: here 50 records wait for their partition leader while the layout starts.
TEST_F(KafkaLogTest, ANewLayoutIsANewTopicAndTheOldOneIsSealedAfterItsRecordsInFlight) {
  KafkaLogOptions o = TestOptions();
  ASSERT_OK(Open(o, &admin_));
  // Both topics are led by chosen brokers before the log first asks for their metadata.
  std::string old_topic, new_topic;
  const model::TenantConfig tenant = AcmeWithNextLayout(&old_topic, &new_topic);
  for (int p = 0; p < 3; ++p) ASSERT_OK(Cluster().SetLeader(new_topic, p, 2));
  ASSERT_OK(AppendSync("acme", {Make("first", "u")}, 2));

  ASSERT_OK(Cluster().SetBrokerDown(1));
  AppendRequest held;
  held.tenant = tenant.id;
  held.partitions = 2;
  held.dedup_window_ms = 3'600'000;
  for (int i = 0; i < 50; ++i) held.activities.push_back(Make(fmt::format("held{}", i), "h"));
  std::promise<Result<AppendResult>> held_done;
  log_->Append(std::move(held), [&](Result<AppendResult> r) { held_done.set_value(std::move(r)); });
  auto started = std::async(std::launch::async, [&] { return log_->StartLayout(tenant, 3); });
  // It cannot finish while the records wait (the bound only makes a wrong finish visible).
  const bool finished_early =
      started.wait_for(std::chrono::milliseconds(300)) == std::future_status::ready;
  ASSERT_OK(Cluster().SetBrokerUp(1));
  EXPECT_FALSE(finished_early) << "the old layout was sealed while records were on their way";
  ASSERT_OK_AND_ASSIGN(AppendResult held_result, held_done.get_future().get());
  EXPECT_EQ(held_result.stored, 50u);
  ASSERT_OK_AND_ASSIGN(auto ends, started.get());
  ASSERT_EQ(ends.size(), 2u);
  EXPECT_EQ(ends[0] + ends[1], 51u);
  for (uint32_t p = 0; p < 2; ++p) {
    ASSERT_OK_AND_ASSIGN(auto high, log_->HighWatermark(tenant.id, PartitionId(p)));
    EXPECT_EQ(high.value(), ends[p]);
  }
  // Later appends go to the new topic, read back as log partitions 2-4.
  ASSERT_OK_AND_ASSIGN(AppendResult later, AppendSync("acme", {Make("later", "h")}, 2));
  EXPECT_EQ(later.stored, 1u);
  const uint32_t p = LayoutPartition("h", 2, 3);
  ASSERT_OK_AND_ASSIGN(auto entries, log_->Read(tenant.id, PartitionId(p), Offset(0), 10));
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].partition.value(), p);
  EXPECT_EQ(entries[0].activity.message_id.str(), "later");
  // Both topics go with the tenant.
  ASSERT_OK(log_->DropTenant(tenant.id));
  EXPECT_EQ(admin_.deleted(), (std::set<std::string>{old_topic, new_topic, old_topic + ".2"}));
}

// Two nodes append to one tenant (a cluster). Node A changes the partition count: from then on
// neither node appends to the new layout before both have stopped appending to the old one, and
// the old layout is sealed after every record either sent to it.
TEST_F(KafkaLogTest, ALayoutChangeSharedByTwoNodesSealsTheOldLayoutAfterBothStoppedAppendingToIt) {
  KafkaLogOptions o = TestOptions();
  o.shared_appends = true;
  ASSERT_OK(Open(o, &admin_));
  ::fairway::testing::TempDir other_dir;
  ASSERT_OK_AND_ASSIGN(auto other_store,
                       ::fairway::testing::OpenFairwayStore(other_dir.path(), &clock_));
  ASSERT_OK_AND_ASSIGN(auto other,
                       KafkaLog::Open(o, other_store.get(), &clock_, &metrics_, &admin_));
  other->Start();
  std::string old_topic, new_topic;
  const model::TenantConfig tenant = AcmeWithNextLayout(&old_topic, &new_topic);
  auto append = [&](KafkaLog* log, std::vector<model::Activity> acts) {
    AppendRequest r;
    r.tenant = tenant.id;
    r.partitions = 2;
    r.dedup_window_ms = 3'600'000;
    r.activities = std::move(acts);
    auto done = std::make_shared<std::promise<Result<AppendResult>>>();
    auto result = done->get_future();
    log->Append(std::move(r), [done](Result<AppendResult> x) { done->set_value(std::move(x)); });
    return result;
  };
  ASSERT_OK(append(log_.get(), {Make("a-first", "u")}).get());
  ASSERT_OK(append(other.get(), {Make("b-first", "v")}).get());
  // One writer's change is refused: with shared appends a change has three steps.
  EXPECT_THAT(log_->StartLayout(tenant, 3).status(), StatusIs(StatusCode::kFailedPrecondition));

  ASSERT_OK_AND_ASSIGN(auto begun, log_->BeginLayout(tenant, 3));
  ASSERT_EQ(begun.size(), 2u);
  EXPECT_TRUE(begun[0].ends.empty());
  EXPECT_EQ(begun[1], (model::PartitionLayout{2, 3, {}}));
  // A holds the tenant's appends; B, not told yet, still appends to the old layout.
  EXPECT_THAT(append(log_.get(), {Make("a-held", "u")}).get().status(),
              StatusIs(StatusCode::kUnavailable, HasSubstr("changing its partition count")));
  ASSERT_OK(Cluster().SetBrokerDown(1));
  auto b_in_flight = append(other.get(), {Make("b-late", "v"), Make("b-late2", "w")});
  auto followed =
      std::async(std::launch::async, [&] { return other->FollowLayouts(tenant, begun); });
  // B's take of the change cannot return while its record for the old layout is on its way.
  const bool finished_early =
      followed.wait_for(std::chrono::milliseconds(300)) == std::future_status::ready;
  ASSERT_OK(Cluster().SetBrokerUp(1));
  EXPECT_FALSE(finished_early) << "B took the change with a record for the old layout unsent";
  ASSERT_OK_AND_ASSIGN(AppendResult late, b_in_flight.get());
  EXPECT_EQ(late.stored, 2u);
  ASSERT_OK(followed.get());
  EXPECT_THAT(append(other.get(), {Make("b-held", "v")}).get().status(),
              StatusIs(StatusCode::kUnavailable));
  // B does not seal a layout it did not start, even when asked for its layouts.
  ASSERT_OK_AND_ASSIGN(auto seen_by_b, other->Layouts(tenant.id));
  ASSERT_EQ(seen_by_b.size(), 2u);
  EXPECT_TRUE(seen_by_b[0].ends.empty());

  // A seals after every record of both nodes.
  ASSERT_OK_AND_ASSIGN(auto sealed, log_->SealLayout(tenant.id));
  ASSERT_EQ(sealed.size(), 2u);
  ASSERT_EQ(sealed[0].ends.size(), 2u);
  EXPECT_EQ(sealed[0].ends[0] + sealed[0].ends[1], 4u);
  ASSERT_OK_AND_ASSIGN(auto again, log_->SealLayout(tenant.id));
  EXPECT_EQ(again, sealed) << "a repeated seal keeps its ends";
  // A appends to the new layout at once; B once it takes the sealed layouts.
  ASSERT_OK(append(log_.get(), {Make("a-new", "u")}).get());
  EXPECT_THAT(append(other.get(), {Make("b-held2", "v")}).get().status(),
              StatusIs(StatusCode::kUnavailable));
  ASSERT_OK(other->FollowLayouts(tenant, sealed));
  ASSERT_OK_AND_ASSIGN(auto b_layouts, other->RecordedLayouts(tenant.id));
  EXPECT_EQ(b_layouts, sealed);
  ASSERT_OK(append(other.get(), {Make("b-new", "v")}).get());
  const uint32_t p = LayoutPartition("v", 2, 3);
  ASSERT_OK_AND_ASSIGN(auto entries, other->Read(tenant.id, PartitionId(p), Offset(0), 10));
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].activity.message_id.str(), "b-new");
  // Layouts that disagree with the recorded ones are refused, naming the difference.
  EXPECT_THAT(other->FollowLayouts(tenant, {{0, 2, {}}, {2, 5, {}}}),
              StatusIs(StatusCode::kFailedPrecondition, HasSubstr("differs")));
  other->Stop();
}

// A node that stopped after recording a new layout and before sealing the old one seals it when
// the layouts are next read (at start-up).
TEST_F(KafkaLogTest, ALayoutLeftUnsealedByAStopIsSealedWhenReadBack) {
  KafkaLogOptions o = TestOptions();
  ASSERT_OK(Open(o, &admin_));
  std::vector<model::Activity> acts;
  for (int i = 0; i < 20; ++i) acts.push_back(Make(fmt::format("m{}", i), fmt::format("u{}", i)));
  ASSERT_OK(AppendSync("acme", acts, 2));
  storage::WriteBatch batch;
  batch.Put(storage::kLogMeta, LayoutsKey(TenantId("acme")),
            EncodeLayouts({{0, 2, {}}, {2, 4, {}}}));
  ASSERT_OK(store_->Write(batch, true));
  log_->Stop();
  log_.reset();
  ASSERT_OK(Open(o, &admin_));
  ASSERT_OK_AND_ASSIGN(auto layouts, log_->Layouts(TenantId("acme")));
  ASSERT_EQ(layouts.size(), 2u);
  ASSERT_EQ(layouts[0].ends.size(), 2u);
  EXPECT_EQ(layouts[0].ends[0] + layouts[0].ends[1], 20u);
  // Stored: read again from the store by a fresh log, sealed the same.
  log_->Stop();
  log_.reset();
  ASSERT_OK(Open(o, &admin_));
  ASSERT_OK_AND_ASSIGN(auto again, log_->Layouts(TenantId("acme")));
  EXPECT_EQ(again, layouts);
}

using Offsets = std::map<KafkaMockCluster::TopicPartition, int64_t>;
int64_t At(const Offsets& offsets, const std::string& topic, int partition) {
  auto it = offsets.find({topic, partition});
  return it == offsets.end() ? INT64_MIN : it->second;
}

// Each processor's progress is its consumer group's committed offsets, on the topic and topic
// partition that hold each log partition (a later layout's in its own topic), so Kafka's lag
// tools see how far Fairway has processed.
TEST_F(KafkaLogTest, ProgressIsCommittedAsEachProcessorsConsumerGroupOffsets) {
  KafkaLogOptions o = TestOptions();
  o.request_timeout_ms = 1500;
  ASSERT_OK(Open(o, &admin_));
  model::TenantConfig tenant;
  tenant.id = TenantId("acme");
  tenant.partitions = 2;
  std::vector<model::Activity> acts;
  for (int i = 0; i < 20; ++i) acts.push_back(Make(fmt::format("m{}", i), fmt::format("u{}", i)));
  ASSERT_OK(AppendSync("acme", acts, 2));
  ASSERT_OK_AND_ASSIGN(auto ends, log_->StartLayout(tenant, 3));
  ASSERT_GT(ends[0], 0u);
  ASSERT_GT(ends[1], 0u);
  ASSERT_OK(AppendSync("acme", {Make("later", "h")}, 2));
  const uint32_t later = LayoutPartition("h", 2, 3);
  const std::string topic = log_->TopicOf(tenant.id);
  const std::string topic1 = topic + ".1";

  std::vector<uint64_t> leads = {ends[0], ends[1], 0, 0, 0};
  leads[later] = 1;
  const std::vector<ProcessingProgress> progress = {
      {tenant.id, "leads", leads, {}},
      {tenant.id, "campaigns", {ends[0] - 1, 0, 0, 0, 0}, {}},
      // A tenant whose topic does not exist: nothing to commit, and no error.
      {TenantId("never-written"), "leads", {3}, {}}};
  ASSERT_OK(log_->PublishProgress(progress));
  EXPECT_EQ(log_->ProgressGroupOf("leads"), o.topic_prefix + "processing.leads");
  const std::vector<std::pair<std::string, int>> all = {
      {topic, 0}, {topic, 1}, {topic1, 0}, {topic1, 1}, {topic1, 2}};
  ASSERT_OK_AND_ASSIGN(Offsets seen,
                       Cluster().CommittedOffsets(log_->ProgressGroupOf("leads"), all));
  EXPECT_EQ(At(seen, topic, 0), static_cast<int64_t>(ends[0]));
  EXPECT_EQ(At(seen, topic, 1), static_cast<int64_t>(ends[1]));
  for (int p = 0; p < 3; ++p) {
    // Unprocessed partitions are not committed: the lag tools count from the start.
    EXPECT_EQ(At(seen, topic1, p),
              p == static_cast<int>(later) - 2 ? 1 : KafkaMockCluster::kNoOffset)
        << p;
  }
  ASSERT_OK_AND_ASSIGN(Offsets campaigns,
                       Cluster().CommittedOffsets(log_->ProgressGroupOf("campaigns"), all));
  EXPECT_EQ(At(campaigns, topic, 0), static_cast<int64_t>(ends[0] - 1));
  EXPECT_EQ(At(campaigns, topic, 1), KafkaMockCluster::kNoOffset);

  // With every broker down the publication fails within the request timeout; the next one
  // after they are back commits what the failed one could not.
  std::vector<ProcessingProgress> next = progress;
  next[1].committed[0] = ends[0];
  ASSERT_OK(Cluster().SetBrokerDown(-1));
  Status down = log_->PublishProgress(next);
  ASSERT_OK(Cluster().SetBrokerUp(-1));
  EXPECT_THAT(down, StatusIs(StatusCode::kUnavailable, HasSubstr("processing.campaigns")));
  Status up = Unavailable("not yet");
  for (int attempt = 0; attempt < 10 && !up.ok(); ++attempt) up = log_->PublishProgress(next);
  ASSERT_OK(up);
  ASSERT_OK_AND_ASSIGN(campaigns,
                       Cluster().CommittedOffsets(log_->ProgressGroupOf("campaigns"), all));
  EXPECT_EQ(At(campaigns, topic, 0), static_cast<int64_t>(ends[0]));
}

TEST_F(KafkaLogTest, BadSettingsAreRefusedNamingThem) {
  KafkaLogOptions o = TestOptions();
  o.brokers.clear();
  EXPECT_THAT(KafkaLog::Open(o, store_.get(), &clock_, &metrics_),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("kafka.brokers")));
  o = TestOptions();
  o.client_properties = {{"security.protocol", "carrier-pigeon"}};
  EXPECT_THAT(KafkaLog::Open(o, store_.get(), &clock_, &metrics_),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("'security.protocol'")));
  o.client_properties = {{"no.such.property", "1"}};
  EXPECT_THAT(KafkaLog::Open(o, store_.get(), &clock_, &metrics_),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("'no.such.property'")));
}

}  // namespace
}  // namespace fairway::log
