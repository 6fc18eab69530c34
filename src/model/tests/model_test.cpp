#include <fmt/format.h>
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <chrono>

#include "common/time_format.h"
#include "model/activity.h"
#include "model/generated_activities.h"
#include "model/json_limits.h"
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

// `{"a":{"a":...{"x":"hit"}}}` with `levels` objects named a. As a message's properties, its
// innermost object is nested 2 + levels deep (message, properties, a...).
std::string Nested(size_t levels) {
  std::string s;
  for (size_t i = 0; i < levels; ++i) s += R"({"a":)";
  s += R"({"x":"hit"})";
  s.append(levels, '}');
  return s;
}

std::string TrackWith(const std::string& properties) {
  return R"({"type":"track","userId":"u","event":"e","properties":)" + properties + "}";
}

// The path of the object that is one level too deep under `prefix` + "properties".
std::string TooDeepPath(const std::string& prefix) {
  std::string path = prefix + "properties";
  for (size_t i = 0; i + 2 < kMaxJsonDepth + 1; ++i) path += ".a";
  return path;
}

constexpr size_t kDeepest = kMaxJsonDepth - 2;  // levels whose innermost object is at the limit

TEST(SegmentParserTest, MessagesNestedToTheLimitAreAcceptedAndReadableDownstream) {
  for (bool batch : {false, true}) {
    SCOPED_TRACE(batch ? "batch" : "track");
    std::string msg = TrackWith(Nested(kDeepest));
    auto r = batch ? Parse(R"({"batch":[)" + msg + "]}", std::nullopt)
                   : Parse(msg, ActivityType::kTrack);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_TRUE(r->errors.empty());
    ASSERT_EQ(r->activities.size(), 1u);
    // Every later parse (Boost.JSON with the shared limit) reads what ingest accepted.
    boost::json::error_code ec;
    auto v =
        boost::json::parse("{" + r->activities[0].fields_json + "}", ec, {}, JsonParseOptions());
    ASSERT_FALSE(ec) << ec.message();
    const boost::json::value* cur = &v.at("properties");
    for (size_t i = 0; i < kDeepest; ++i) cur = &cur->at("a");
    EXPECT_EQ(cur->at("x").as_string(), "hit");
  }
  // One level more is what Boost.JSON refuses: the limits are the same.
  boost::json::error_code ec;
  boost::json::parse(R"({"properties":)" + Nested(kDeepest + 1) + "}", ec, {}, JsonParseOptions());
  EXPECT_TRUE(ec);
}

TEST(SegmentParserTest, DeeperMessagesAreRejectedNamingTheField) {
  auto single = Parse(TrackWith(Nested(kDeepest + 1)), ActivityType::kTrack);
  ASSERT_FALSE(single.ok());
  EXPECT_EQ(single.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(single.status().message().find("field '" + TooDeepPath("") + "' is nested deeper"),
            std::string::npos)
      << single.status().message();

  // In a batch, messages count from their own object, and the path names the message.
  std::string ok = TrackWith(Nested(kDeepest));
  auto batch =
      Parse(R"({"batch":[)" + ok + "," + TrackWith(Nested(kDeepest + 1)) + "]}", std::nullopt);
  ASSERT_FALSE(batch.ok());
  EXPECT_NE(batch.status().message().find("field '" + TooDeepPath("batch[1].") + "'"),
            std::string::npos)
      << batch.status().message();

  // Arrays count as levels too, and the path goes through them.
  std::string arrays = R"({"list":[1,{"deep":)" + std::string(kMaxJsonDepth, '[') +
                       std::string(kMaxJsonDepth, ']') + "}]}";
  auto in_array = Parse(TrackWith(arrays), ActivityType::kTrack);
  ASSERT_FALSE(in_array.ok());
  EXPECT_NE(in_array.status().message().find("field 'properties.list[1].deep"), std::string::npos)
      << in_array.status().message();

  // A batch's shared context is copied into each message: it obeys the same limit.
  auto context =
      Parse(R"({"batch":[)" + ok + R"(],"context":)" + Nested(kDeepest + 1) + "}", std::nullopt);
  ASSERT_FALSE(context.ok());
  EXPECT_NE(context.status().message().find("field 'context'"), std::string::npos)
      << context.status().message();
  EXPECT_TRUE(
      Parse(R"({"batch":[)" + ok + R"(],"context":)" + Nested(kDeepest) + "}", std::nullopt).ok());
}

TEST(SegmentParserTest, HugelyNestedBodiesAreRejectedFast) {
  for (size_t depth : {size_t{1'000}, size_t{200'000}}) {
    SCOPED_TRACE(depth);
    std::string body = R"({"userId":"u","event":"e","properties":{"p":)" + std::string(depth, '[') +
                       std::string(depth, ']') + "}}";
    auto start = std::chrono::steady_clock::now();
    auto single = Parse(body, ActivityType::kTrack);
    auto batch = Parse(R"({"batch":[)" + body + "]}", std::nullopt);
    auto took = std::chrono::steady_clock::now() - start;
    ASSERT_FALSE(single.ok());
    ASSERT_FALSE(batch.ok());
    EXPECT_NE(single.status().message().find("field 'properties.p[0][0]"), std::string::npos)
        << single.status().message().substr(0, 300);
    EXPECT_NE(batch.status().message().find("field 'batch[0].properties.p[0]"), std::string::npos)
        << batch.status().message().substr(0, 300);
    EXPECT_LT(took, std::chrono::milliseconds(500));
  }
  // Unterminated nesting is refused as well.
  EXPECT_FALSE(Parse(std::string(100'000, '['), ActivityType::kTrack).ok());
}

TEST(SegmentParserTest, NestingLimitHoldsAfterTheParserGrowsForALargeBody) {
  std::string blob(30'000, 'x');
  std::string batch = R"({"batch":[)";
  for (int i = 0; i < 15; ++i) {
    batch += (i ? "," : "") + TrackWith(R"({"blob":")" + blob + "\"}");
  }
  auto big = Parse(batch + "]}", std::nullopt);  // ~450 KB: the parser reallocates
  ASSERT_TRUE(big.ok()) << big.status().ToString();
  EXPECT_EQ(big->activities.size(), 15u);
  EXPECT_FALSE(Parse(R"({"batch":[)" + TrackWith(Nested(kDeepest + 1)) + "]}", std::nullopt).ok());
  EXPECT_FALSE(Parse(TrackWith(Nested(kDeepest + 1)), ActivityType::kTrack).ok());
  EXPECT_TRUE(Parse(TrackWith(Nested(kDeepest)), ActivityType::kTrack).ok());
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
  EXPECT_EQ(ApplyTenantPatch(R"({"id":"other"})", &t).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(ApplyTenantPatch(R"({"name":"New","partitions":0})", &t).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(t.name, "Acme");
  EXPECT_EQ(t.partitions, 4u);
  ASSERT_TRUE(ApplyTenantPatch(R"({"name":"New","quotas":{"ingest_rate":7}})", &t).ok());
  EXPECT_EQ(t.name, "New");
  EXPECT_EQ(t.quotas.ingest_rate, 7);
}

TEST(TenantModelTest, PartitionCountChangesWithinTheLayoutLimits) {
  TenantConfig t;
  t.id = TenantId("acme");
  auto patch = [&](uint32_t n) {
    return ApplyTenantPatch(fmt::format(R"({{"partitions":{}}})", n), &t);
  };
  for (uint32_t bad : {0u, kMaxPartitions + 1}) {
    Status st = patch(bad);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(st.message().find("'partitions'"), std::string::npos) << st.message();
  }
  EXPECT_EQ(ApplyTenantPatch(R"({"partitions":"8"})", &t).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(patch(1).ok());
  EXPECT_EQ(t.partitions, 1u);
  ASSERT_TRUE(patch(kMaxPartitions).ok());
  EXPECT_EQ(t.partitions, kMaxPartitions);

  // Sealed layouts count towards the limits: a log of 1024 - 256 partitions takes one more
  // layout of 256 and none larger.
  t.partitions = 4;
  t.sealed_layouts = {{0, kMaxLogPartitions - kMaxPartitions - 4, {}}};
  EXPECT_EQ(t.first_partition(), kMaxLogPartitions - kMaxPartitions - 4);
  EXPECT_EQ(t.log_partitions(), kMaxLogPartitions - kMaxPartitions);
  EXPECT_TRUE(patch(4).ok()) << "an unchanged count starts no layout";
  ASSERT_TRUE(patch(kMaxPartitions).ok());
  t.partitions = 4;
  t.sealed_layouts[0].count += 1;
  Status st = patch(kMaxPartitions);
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("'partitions'"), std::string::npos) << st.message();
  EXPECT_EQ(t.partitions, 4u);

  t.sealed_layouts.assign(kMaxLayouts - 1, PartitionLayout{0, 1, {0}});
  st = patch(5);
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("layouts"), std::string::npos) << st.message();
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
  t.sealed_layouts = {{0, 2, {7, 0}}, {2, 1, {12}}};
  t.partitions = 8;
  auto back = TenantFromStoredJson(TenantToStoredJson(t));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->sealed_layouts, t.sealed_layouts);
  EXPECT_EQ(back->partitions, 8u);
  EXPECT_EQ(back->first_partition(), 3u);
  EXPECT_EQ(back->log_partitions(), 11u);
  EXPECT_EQ(back->timezone, "America/New_York");
  EXPECT_EQ(back->status, TenantStatus::kSuspended);
  EXPECT_EQ(back->quotas.retention_days, 3u);
  EXPECT_EQ(back->api_key_hash, "a");
  EXPECT_EQ(TenantToApiJson(t).find("hash"), std::string::npos);
}

TEST(TenantModelTest, PlacementIsValidatedAndOnlyItsWeightChangesLater) {
  TenantConfig defaults;
  auto t = ParseTenantCreate(R"({"id":"acme"})", defaults);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->placement, Placement{});
  t = ParseTenantCreate(R"({"id":"acme","placement":{"weight":1000000,"group":"eu-big","slot":0}})",
                        defaults);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->placement.weight, kMaxPlacementWeight);
  EXPECT_EQ(t->placement.group, "eu-big");
  EXPECT_EQ(t->placement.slot, 0u);
  t = ParseTenantCreate(R"({"id":"acme","placement":{"weight":1,"group":null,"slot":null}})",
                        defaults);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->placement, Placement{});

  auto expect_field = [&](std::string_view body, std::string_view field) {
    auto r = ParseTenantCreate(body, defaults);
    ASSERT_FALSE(r.ok()) << body;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << body;
    EXPECT_NE(r.status().message().find(field), std::string::npos) << r.status().message();
  };
  expect_field(R"({"id":"a","placement":3})", "'placement'");
  expect_field(R"({"id":"a","placement":{"weight":0}})", "'placement.weight'");
  expect_field(R"({"id":"a","placement":{"weight":1000001}})", "'placement.weight'");
  expect_field(R"({"id":"a","placement":{"weight":1.5}})", "'placement.weight'");
  expect_field(R"({"id":"a","placement":{"weight":-1}})", "'placement.weight'");
  expect_field(R"({"id":"a","placement":{"weight":"2"}})", "'placement.weight'");
  expect_field(R"({"id":"a","placement":{"group":""}})", "'placement.group'");
  expect_field(R"({"id":"a","placement":{"group":"Has Space"}})", "'placement.group'");
  expect_field(fmt::format(R"({{"id":"a","placement":{{"group":"{}"}}}})", std::string(64, 'g')),
               "'placement.group'");
  expect_field(R"({"id":"a","placement":{"slot":-1}})", "'placement.slot'");
  expect_field(R"({"id":"a","placement":{"slot":65536}})", "'placement.slot'");
  expect_field(R"({"id":"a","placement":{"node":"n1"}})", "'placement.node'");

  // Later, the weight changes; the group and the slot stay as they were.
  TenantConfig c = *ParseTenantCreate(
      R"({"id":"acme","placement":{"weight":5,"group":"g1","slot":3}})", defaults);
  ASSERT_TRUE(ApplyTenantPatch(R"({"placement":{"weight":9,"group":"g1","slot":3}})", &c).ok());
  EXPECT_EQ(c.placement.weight, 9u);
  for (std::string_view body :
       {R"({"placement":{"group":"g2"}})", R"({"placement":{"group":null}})",
        R"({"placement":{"slot":4}})", R"({"name":"n","placement":{"weight":2,"slot":null}})"}) {
    Status st = ApplyTenantPatch(body, &c);
    EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition) << body;
    EXPECT_NE(st.message().find("'placement."), std::string::npos) << st.message();
  }
  EXPECT_EQ(ApplyTenantPatch(R"({"placement":{"weight":0}})", &c).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(c.placement, (Placement{.weight = 9, .group = "g1", .slot = 3}));
  EXPECT_EQ(c.name, "acme");

  // Stored and read back; a tenant stored before placement existed reads as the default.
  auto back = TenantFromStoredJson(TenantToStoredJson(c));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->placement, c.placement);
  EXPECT_NE(TenantToApiJson(c).find(R"("placement":{"weight":9,"group":"g1","slot":3})"),
            std::string::npos)
      << TenantToApiJson(c);
  std::string old_form = TenantToStoredJson(*t);
  old_form.replace(old_form.find(R"("placement")"),
                   std::string(R"("placement":{"weight":1,"group":null,"slot":null},)").size(), "");
  ASSERT_EQ(old_form.find("placement"), std::string::npos) << old_form;
  back = TenantFromStoredJson(old_form);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->placement, Placement{});
}

TEST(TenantModelTest, WebSettingsAreValidatedAndOriginsMatchExactlyOrBySubdomain) {
  TenantConfig defaults;
  auto t = ParseTenantCreate(
      R"({"id":"acme","web":{"allowed_origins":["HTTPS://Shop.Example.com","https://*.example.org:8443"],"drop_bots":false}})",
      defaults);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->web.allowed_origins,
            (std::vector<std::string>{"https://shop.example.com", "https://*.example.org:8443"}));
  EXPECT_FALSE(t->web.drop_bots);
  EXPECT_TRUE(OriginAllowed(t->web, "https://shop.example.com"));
  EXPECT_TRUE(OriginAllowed(t->web, "https://SHOP.example.com"));
  EXPECT_TRUE(OriginAllowed(t->web, "https://a.example.org:8443"));
  EXPECT_TRUE(OriginAllowed(t->web, "https://a.b.example.org:8443"));
  for (std::string_view no :
       {"http://shop.example.com", "https://shop.example.com:443", "https://example.org:8443",
        "https://a.example.org", "https://a.example.org:8444", "https://aexample.org:8443",
        "https://shop.example.com.evil.com", "null", "", "https://x.example.org:8443.evil"}) {
    EXPECT_FALSE(OriginAllowed(t->web, no)) << no;
  }
  EXPECT_TRUE(OriginAllowed(WebSettings{}, "https://anything.com"));  // empty: any origin
  auto back = TenantFromStoredJson(TenantToStoredJson(*t));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->web, t->web);
  // PATCH replaces the list; an empty list allows any origin again.
  ASSERT_TRUE(ApplyTenantPatch(R"({"web":{"allowed_origins":[]}})", &*t).ok());
  EXPECT_TRUE(t->web.allowed_origins.empty());
  EXPECT_FALSE(t->web.drop_bots);

  auto expect_field = [&](std::string_view body, std::string_view field) {
    auto r = ParseTenantCreate(body, defaults);
    ASSERT_FALSE(r.ok()) << body;
    EXPECT_NE(r.status().message().find(field), std::string::npos) << r.status().message();
  };
  expect_field(R"({"id":"a","web":[]})", "'web'");
  expect_field(R"({"id":"a","web":{"allowed_origins":"https://a.com"}})", "'web.allowed_origins'");
  for (std::string_view bad : {"a.com", "ftp://a.com", "https://a.com/path", "https://",
                               "https://a.com:", "https://a.com:123456", "https://*.",
                               "https://a b.com", "https://.a.com", "https://a.com:80x"}) {
    expect_field(fmt::format(R"({{"id":"a","web":{{"allowed_origins":["{}"]}}}})", bad),
                 "'web.allowed_origins[0]'");
  }
  expect_field(R"({"id":"a","web":{"allowed_origins":[1]}})", "'web.allowed_origins[0]'");
  std::string many = R"({"id":"a","web":{"allowed_origins":[)";
  for (size_t i = 0; i <= kMaxAllowedOrigins; ++i) {
    many += fmt::format(R"({}"https://s{}.com")", i ? "," : "", i);
  }
  expect_field(many + "]}}", "'web.allowed_origins'");
  expect_field(R"({"id":"a","web":{"drop_bots":"yes"}})", "'web.drop_bots'");
  expect_field(R"({"id":"a","web":{"enrich":1}})", "'web.enrich'");
  expect_field(R"({"id":"a","web":{"anonymize_ip":null}})", "'web.anonymize_ip'");
  auto flags =
      ParseTenantCreate(R"({"id":"a","web":{"enrich":false,"anonymize_ip":true}})", defaults);
  ASSERT_TRUE(flags.ok());
  EXPECT_FALSE(flags->web.enrich);
  EXPECT_TRUE(flags->web.anonymize_ip);
  EXPECT_TRUE(flags->web.drop_bots);
  EXPECT_EQ(TenantFromStoredJson(TenantToStoredJson(*flags))->web, flags->web);
  expect_field(R"({"id":"a","web":{"cookies":true}})", "'web.cookies'");
}

TEST(TenantModelTest, BotUserAgentsAreRecognisedAndBrowsersAreNot) {
  for (std::string_view bot :
       {"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "facebookexternalhit/1.1", "Mozilla/5.0 (compatible; AhrefsBot/7.0)",
        "Baiduspider+(+http://www.baidu.com/search/spider.htm)",
        "Mozilla/5.0 (compatible; Yahoo! Slurp)", "SomeCrawler/1.0", "uptime-bot",
        "Mozilla/5.0 (compatible; SemrushBot)"}) {
    EXPECT_TRUE(IsBotUserAgent(bot)) << bot;
  }
  for (std::string_view human :
       {"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
        "like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 10; CUBOT X30) AppleWebKit/537.36 Chrome/120 Mobile",
        "analytics-node-next/latest", "curl/7.88.1", ""}) {
    EXPECT_FALSE(IsBotUserAgent(human)) << human;
  }
}

// The properties of generated activities are stored in the log and read back by triggers: their
// bytes must not change.
TEST(GeneratedActivitiesTest, PropertiesEncodeToTheStoredBytes) {
  auto props = [](const auto& p) {
    std::string out;
    p.AppendProperties(&out);
    return out;
  };
  EXPECT_EQ(props(LeadCreated{.user_id = "u\"1"}), R"("user_id":"u\"1")");
  EXPECT_EQ(props(DataValueChanged{.field = "plan", .from_json = "", .to_json = R"("pro")"}),
            R"("field":"plan","from":null,"to":"pro","origin":"identify")");
  EXPECT_EQ(props(DataValueChanged{.field = "n",
                                   .from_json = "1",
                                   .to_json = "null",
                                   .origin = DataValueChanged::Origin::kCampaign}),
            R"("field":"n","from":1,"to":null,"origin":"campaign")");
  EXPECT_EQ(props(ScoreChanged{.change = -7}), R"("change":-7)");
  EXPECT_EQ(props(ListMembershipChanged{.list = "l"}), R"("list":"l")");
  EXPECT_EQ(props(TagChanged{.tag = "t"}), R"("tag":"t")");
  EXPECT_EQ(props(AddedToAccount{.account_id = "a"}), R"("account_id":"a")");
  EXPECT_EQ(props(MessageQueued{.to = "a@b.c", .subject = "Hi"}), R"("to":"a@b.c","subject":"Hi")");
  EXPECT_EQ(props(EmailBlocked{.to = "a@b.c"}), R"("reason":"communication_limit","to":"a@b.c")");
  EXPECT_EQ(props(CrmTaskCreated{.subject = "s"}), R"("subject":"s")");
  EXPECT_EQ(props(CampaignRequested{.requested = "c1", .tokens_json = R"({"k":"v"})"}),
            R"("requested":"c1","tokens":{"k":"v"})");
  EXPECT_EQ(props(CampaignRequested{.requested = "c1"}), R"("requested":"c1","tokens":{})");
  EXPECT_EQ(props(InterestingMoment{.moment_type = "milestone", .description = "d"}),
            R"("moment_type":"milestone","description":"d")");
  EXPECT_EQ(props(LeadDeleted{}), "");
  EXPECT_EQ(props(CampaignWaitElapsed{.campaign = "c", .run = "r", .step = 2, .due_ms = 5}),
            R"("campaign":"c","run":"r","step":2,"due":5)");
}

}  // namespace
}  // namespace fairway::model
