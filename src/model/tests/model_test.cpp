#include <gtest/gtest.h>

#include "common/time_format.h"
#include "model/activity.h"
#include "model/segment_parser.h"
#include "model/tenant.h"

namespace fairway::model {
namespace {

constexpr int64_t kNow = 1'709'208'000'000;  // 2024-02-29T12:00:00Z

Result<ParsedRequest> Parse(std::string_view body, std::optional<ActivityType> endpoint) {
  return ParseSegmentRequest(body, endpoint, kNow, SegmentLimits{});
}

TEST(SegmentParserTest, TrackCall) {
  auto r = Parse(R"({"userId":"u1","event":"Signed Up","messageId":"m-1",
      "properties":{"plan":"pro","n":3},"context":{"ip":"1.2.3.4"},"timestamp":"2024-02-29T11:00:00Z"})",
                 ActivityType::kTrack);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_TRUE(r->errors.empty());
  ASSERT_EQ(r->activities.size(), 1u);
  const Activity& a = r->activities[0];
  EXPECT_EQ(a.type, ActivityType::kTrack);
  EXPECT_EQ(a.user_id, "u1");
  EXPECT_EQ(a.event, "Signed Up");
  EXPECT_EQ(a.message_id.str(), "m-1");
  EXPECT_EQ(a.timestamp_ms, kNow - 3'600'000);  // no sentAt: the client's time is kept
  EXPECT_EQ(a.received_at_ms, kNow);
  EXPECT_EQ(a.fields_json, R"("properties":{"plan":"pro","n":3},"context":{"ip":"1.2.3.4"})");
}

TEST(SegmentParserTest, ClockSkewCorrectedWithSentAt) {
  // The client's clock runs 10 minutes fast: it says it sent at 12:10 what happened at 12:05.
  auto r = Parse(R"({"anonymousId":"a1","event":"x","timestamp":"2024-02-29T12:05:00Z",
      "sentAt":"2024-02-29T12:10:00Z"})",
                 ActivityType::kTrack);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->activities.size(), 1u);
  EXPECT_EQ(r->activities[0].timestamp_ms, kNow - 5 * 60'000);
  EXPECT_EQ(r->activities[0].original_timestamp_ms, kNow + 5 * 60'000);
}

TEST(SegmentParserTest, BatchSentAtAndContextApplyToMessages) {
  auto r = Parse(R"({"batch":[
      {"type":"page","name":"Pricing","anonymousId":"a1","timestamp":"2024-02-29T12:09:00Z"},
      {"type":"identify","userId":"u1","traits":{"email":"x@y.z"},"context":{"own":true}}],
      "sentAt":"2024-02-29T12:10:00Z","context":{"library":{"name":"analytics-node"}}})",
                 std::nullopt);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_TRUE(r->errors.empty()) << r->errors[0].field;
  ASSERT_EQ(r->activities.size(), 2u);
  EXPECT_EQ(r->activities[0].type, ActivityType::kPage);
  EXPECT_EQ(r->activities[0].event, "Pricing");
  EXPECT_EQ(r->activities[0].timestamp_ms, kNow - 60'000);
  EXPECT_NE(r->activities[0].fields_json.find("analytics-node"), std::string::npos);
  EXPECT_EQ(r->activities[1].fields_json.find("analytics-node"), std::string::npos);
  EXPECT_FALSE(r->activities[1].message_id.empty());  // generated
  EXPECT_EQ(r->activities[1].timestamp_ms, kNow);
}

TEST(SegmentParserTest, ReportsEveryBadMessageWithItsField) {
  auto r = Parse(R"({"batch":[
      {"type":"track","userId":"u1","event":"ok"},
      {"type":"track","userId":"u1"},
      {"type":"identify"},
      {"type":"bogus","userId":"u"},
      {"type":"track","userId":"u","event":"e","properties":[1]},
      {"type":"track","userId":"u","event":"e","timestamp":"not a time"},
      {"type":"group","userId":"u"},
      {"type":"alias","userId":"u"},
      {"userId":"u","event":"e"},
      {"type":"track","userId":{"a":1},"event":"e"},
      7,
      {"type":"fairway","userId":"u","event":"score_changed"}]})",
                 std::nullopt);
  ASSERT_TRUE(r.ok());
  std::vector<std::pair<int, std::string>> got;
  for (const auto& e : r->errors) got.emplace_back(e.index, e.field);
  std::vector<std::pair<int, std::string>> want = {
      {1, "batch[1].event"},      {2, "batch[2].userId"},    {3, "batch[3].type"},
      {4, "batch[4].properties"}, {5, "batch[5].timestamp"}, {6, "batch[6].groupId"},
      {7, "batch[7].previousId"}, {8, "batch[8].type"},      {9, "batch[9].userId"},
      {9, "batch[9].userId"},     {10, "batch[10]"},         {11, "batch[11].type"}};
  EXPECT_EQ(got, want);
}

TEST(SegmentParserTest, MalformedBodies) {
  EXPECT_EQ(Parse("{not json", ActivityType::kTrack).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Parse("[1,2]", ActivityType::kTrack).status().code(), StatusCode::kInvalidArgument);
  auto no_batch = Parse(R"({"sentAt":"2024-02-29T12:00:00Z"})", std::nullopt);
  ASSERT_FALSE(no_batch.ok());
  EXPECT_NE(no_batch.status().message().find("'batch'"), std::string::npos);
  EXPECT_FALSE(Parse(R"({"batch":{}})", std::nullopt).ok());
  EXPECT_FALSE(Parse(R"({"batch":[]})", std::nullopt).ok());
  // Nested garbage is caught too (simdjson DOM validates everything).
  EXPECT_FALSE(
      Parse(R"({"userId":"u","event":"e","properties":{"a":tru}})", ActivityType::kTrack).ok());
}

TEST(SegmentParserTest, MessageSizeLimit) {
  std::string big(33 * 1024, 'x');
  auto r = Parse(R"({"userId":"u","event":"e","properties":{"blob":")" + big + "\"}}",
                 ActivityType::kTrack);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->errors.size(), 1u);
  EXPECT_EQ(r->errors[0].field, "body");
  EXPECT_NE(r->errors[0].message.find("limit"), std::string::npos);
}

TEST(SegmentParserTest, WriteKeyInBodyIsNotStored) {
  auto r = Parse(R"({"writeKey":"wk_x","userId":"u","traits":{}})", ActivityType::kIdentify);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->body_write_key, "wk_x");
  ASSERT_EQ(r->activities.size(), 1u);
  EXPECT_EQ(r->activities[0].fields_json.find("wk_x"), std::string::npos);
}

TEST(ActivityCodecTest, RoundTripAndJson) {
  auto r = Parse(R"({"userId":"u\"1","anonymousId":"a1","event":"Clicked","messageId":"m",
      "properties":{"url":"/pricing"},"timestamp":"2024-02-29T12:00:00Z","sentAt":"2024-02-29T12:00:00Z"})",
                 ActivityType::kTrack);
  ASSERT_TRUE(r.ok());
  const Activity& a = r->activities.at(0);
  std::string rec;
  EncodeActivity(a, &rec);
  auto back = DecodeActivity(rec);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->user_id, a.user_id);
  EXPECT_EQ(back->fields_json, a.fields_json);
  EXPECT_EQ(back->sent_at_ms, a.sent_at_ms);
  std::string json;
  AppendActivityJson(*back, &json, R"("offset":3)");
  EXPECT_EQ(
      json,
      R"({"messageId":"m","type":"track","userId":"u\"1","anonymousId":"a1","event":"Clicked",)"
      R"("timestamp":"2024-02-29T12:00:00.000Z","originalTimestamp":"2024-02-29T12:00:00.000Z",)"
      R"("sentAt":"2024-02-29T12:00:00.000Z","receivedAt":"2024-02-29T12:00:00.000Z",)"
      R"("properties":{"url":"/pricing"},"offset":3})");
  rec.pop_back();
  EXPECT_FALSE(DecodeActivity(rec).ok());
}

TEST(TenantModelTest, CreateWithDefaultsAndErrors) {
  TenantConfig defaults;
  auto t = ParseTenantCreate(
      R"({"id":"acme","name":"Acme","timezone":"Europe/Berlin","quotas":{"ingest_rate":100}})",
      defaults);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->id.str(), "acme");
  EXPECT_EQ(t->quotas.ingest_rate, 100);
  EXPECT_EQ(t->quotas.ingest_burst, defaults.quotas.ingest_burst);

  auto expect_field = [&](std::string_view body, std::string_view field) {
    auto r = ParseTenantCreate(body, defaults);
    ASSERT_FALSE(r.ok()) << body;
    EXPECT_NE(r.status().message().find(field), std::string::npos) << r.status().message();
  };
  expect_field(R"({"name":"x"})", "'id'");
  expect_field(R"({"id":"Bad Id"})", "'id'");
  expect_field(R"({"id":"a","timezone":"Mars/Base"})", "'timezone'");
  expect_field(R"({"id":"a","quotas":{"ingest_rate":-1}})", "'quotas.ingest_rate'");
  expect_field(R"({"id":"a","quotas":{"bogus":1}})", "'quotas.bogus'");
  expect_field(R"({"id":"a","partitions":0})", "'partitions'");
  expect_field(R"({"id":"a","colour":"red"})", "'colour'");
}

TEST(TenantModelTest, PatchIsAllOrNothing) {
  TenantConfig t;
  t.id = TenantId("acme");
  t.name = "Acme";
  Status st = ApplyTenantPatch(R"({"name":"New","quotas":{"ingest_rate":0}})", &t);
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(t.name, "Acme");
  EXPECT_EQ(ApplyTenantPatch(R"({"partitions":8})", &t).code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(ApplyTenantPatch(R"({"name":"New","quotas":{"ingest_rate":7}})", &t).ok());
  EXPECT_EQ(t.name, "New");
  EXPECT_EQ(t.quotas.ingest_rate, 7);
}

TEST(TenantModelTest, StoredJsonRoundTrip) {
  TenantConfig t;
  t.id = TenantId("acme");
  t.name = "Acme";
  t.timezone = "America/New_York";
  t.status = TenantStatus::kSuspended;
  t.quotas.retention_days = 3;
  t.write_key_hash = "w";
  t.api_key_hash = "a";
  auto back = TenantFromStoredJson(TenantToStoredJson(t));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->timezone, "America/New_York");
  EXPECT_EQ(back->status, TenantStatus::kSuspended);
  EXPECT_EQ(back->quotas.retention_days, 3u);
  EXPECT_EQ(back->api_key_hash, "a");
  EXPECT_EQ(TenantToApiJson(t).find("hash"), std::string::npos);
}

}  // namespace
}  // namespace fairway::model
