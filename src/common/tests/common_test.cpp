#include <gtest/gtest.h>

#include "common/clock.h"
#include "common/coding.h"
#include "common/crypto.h"
#include "common/hash.h"
#include "common/hex.h"
#include "common/ids.h"
#include "common/json_writer.h"
#include "common/metrics.h"
#include "common/status.h"
#include "common/time_format.h"

namespace fairway {
namespace {

TEST(StatusTest, CodesAndMessages) {
  Status ok;
  EXPECT_TRUE(ok.ok());
  Status bad = InvalidArgument("field 'event' is required");
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(bad.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.ToString(), "invalid_argument: field 'event' is required");
}

Result<int> Half(int v) {
  if (v % 2) return InvalidArgument("odd");
  return v / 2;
}

Status UseHalf(int v, int* out) {
  FAIRWAY_ASSIGN_OR_RETURN(*out, Half(v));
  return Status::Ok();
}

TEST(StatusTest, ResultPropagates) {
  int out = 0;
  EXPECT_TRUE(UseHalf(8, &out).ok());
  EXPECT_EQ(out, 4);
  Status st = UseHalf(3, &out);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
}

TEST(IdsTest, TenantIdValidation) {
  EXPECT_TRUE(IsValidTenantId("acme"));
  EXPECT_TRUE(IsValidTenantId("a"));
  EXPECT_TRUE(IsValidTenantId("0-a_b"));
  EXPECT_FALSE(IsValidTenantId(""));
  EXPECT_FALSE(IsValidTenantId("-acme"));
  EXPECT_FALSE(IsValidTenantId("Acme"));
  EXPECT_FALSE(IsValidTenantId("acme corp"));
  EXPECT_TRUE(IsValidTenantId(std::string(63, 'a')));
  EXPECT_FALSE(IsValidTenantId(std::string(64, 'a')));
}

TEST(HashTest, StableAcrossBuilds) {
  // Partition placement is on disk: these values must never change.
  EXPECT_EQ(Hash64(""), 17280346270528514342ULL);
  EXPECT_EQ(Hash64("user-1"), 4729620347622785477ULL);
  static_assert(Hash64("abc") == 3741276987793851837ULL);
  EXPECT_NE(Hash64("user-1"), Hash64("user-2"));
}

TEST(CodingTest, RoundTrip) {
  std::string buf;
  PutVarint64(&buf, 0);
  PutVarint64(&buf, 300);
  PutVarint64(&buf, UINT64_MAX);
  PutVarintSigned64(&buf, -5);
  PutLengthPrefixed(&buf, "hello");
  PutFixed64BE(&buf, 0x0102030405060708ULL);
  Decoder d(buf);
  uint64_t u;
  int64_t s;
  std::string_view sv;
  ASSERT_TRUE(d.GetVarint64(&u));
  EXPECT_EQ(u, 0u);
  ASSERT_TRUE(d.GetVarint64(&u));
  EXPECT_EQ(u, 300u);
  ASSERT_TRUE(d.GetVarint64(&u));
  EXPECT_EQ(u, UINT64_MAX);
  ASSERT_TRUE(d.GetVarintSigned64(&s));
  EXPECT_EQ(s, -5);
  ASSERT_TRUE(d.GetLengthPrefixed(&sv));
  EXPECT_EQ(sv, "hello");
  ASSERT_TRUE(d.GetFixed64BE(&u));
  EXPECT_EQ(u, 0x0102030405060708ULL);
  EXPECT_TRUE(d.empty());
  EXPECT_FALSE(d.GetVarint64(&u));
}

TEST(CodingTest, TruncatedInputFails) {
  std::string buf;
  PutLengthPrefixed(&buf, "hello world");
  buf.resize(buf.size() - 3);
  Decoder d(buf);
  std::string_view sv;
  EXPECT_FALSE(d.GetLengthPrefixed(&sv));
}

TEST(TimeFormatTest, ParsesSegmentTimestamps) {
  EXPECT_EQ(ParseIso8601Millis("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(ParseIso8601Millis("1970-01-01T00:00:01.5Z"), 1500);
  EXPECT_EQ(ParseIso8601Millis("2024-02-29T12:00:00.123Z"), 1709208000123);
  EXPECT_EQ(ParseIso8601Millis("2024-02-29T14:00:00.123+02:00"), 1709208000123);
  EXPECT_EQ(ParseIso8601Millis("2024-02-29T07:30:00.123-0430"), 1709208000123);
  EXPECT_EQ(ParseIso8601Millis("2024-02-29 12:00:00.123"), 1709208000123);
  EXPECT_EQ(ParseIso8601Millis("2024-02-29"), 1709164800000);
  EXPECT_FALSE(ParseIso8601Millis("2023-02-29T00:00:00Z"));
  EXPECT_FALSE(ParseIso8601Millis("yesterday"));
  EXPECT_FALSE(ParseIso8601Millis("2024-01-01T25:00:00Z"));
  EXPECT_FALSE(ParseIso8601Millis("2024-01-01T10:00:00Zjunk"));
}

TEST(TimeFormatTest, FormatRoundTrips) {
  EXPECT_EQ(FormatIso8601Millis(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(FormatIso8601Millis(1709208000123), "2024-02-29T12:00:00.123Z");
  for (int64_t ms : {-86400001LL, 951782400000LL, 4102444800999LL}) {
    EXPECT_EQ(ParseIso8601Millis(FormatIso8601Millis(ms)), ms);
  }
}

TEST(CryptoTest, Sha256AndTokens) {
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  std::string a = RandomToken("wk_"), b = RandomToken("wk_");
  EXPECT_NE(a, b);
  EXPECT_EQ(a.rfind("wk_", 0), 0u);
  EXPECT_EQ(a.size(), 3u + 32u);
  EXPECT_EQ(a.find_first_of("+/="), std::string::npos);
}

TEST(CryptoTest, HmacSha256Rfc4231) {
  // RFC 4231 section 4.2 (test case 1), 4.3 (test case 2) and 4.7 (test case 6: a key longer
  // than the block size is hashed first).
  EXPECT_EQ(HmacSha256Hex(std::string(20, '\x0b'), "Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  EXPECT_EQ(HmacSha256Hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_EQ(HmacSha256Hex(std::string(131, '\xaa'),
                          "Test Using Larger Than Block-Size Key - Hash Key First"),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  // An empty key is valid (it is zero-padded to the block size).
  EXPECT_EQ(HmacSha256Hex("", ""),
            "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

TEST(CryptoTest, Base64) {
  EXPECT_EQ(Base64Encode("wk_abc:"), "d2tfYWJjOg==");
  EXPECT_EQ(Base64Decode("d2tfYWJjOg=="), "wk_abc:");
  EXPECT_EQ(Base64Decode("d2tfYWJjOg"), "wk_abc:");
  EXPECT_EQ(Base64Decode(""), "");
  EXPECT_FALSE(Base64Decode("not base64!"));
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "ab"));
}

TEST(HexTest, RoundTripsEveryByte) {
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  std::string hex = HexEncode(all);
  EXPECT_EQ(hex.size(), 512u);
  EXPECT_EQ(hex.substr(0, 6), "000102");
  EXPECT_EQ(hex.substr(506), "fdfeff");
  EXPECT_EQ(HexDecode(hex), all);
  EXPECT_EQ(HexEncode(""), "");
  EXPECT_EQ(HexDecode(""), "");
}

TEST(HexTest, DecodeRefusesOddLengthsUpperCaseAndNonDigits) {
  EXPECT_FALSE(HexDecode("0"));
  EXPECT_FALSE(HexDecode("abc"));
  EXPECT_FALSE(HexDecode("AB"));
  EXPECT_FALSE(HexDecode("0g"));
  EXPECT_FALSE(HexDecode("g0"));
  EXPECT_FALSE(HexDecode(" 0"));
  EXPECT_EQ(HexDecode("7aff"), "z\xff");
}

TEST(JsonWriterTest, EscapesAndSeparates) {
  JsonWriter w;
  w.BeginObject()
      .Key("a")
      .String("x\"y\n\x01")
      .Key("b")
      .BeginArray()
      .Int(-1)
      .Uint(2)
      .Bool(true)
      .Null()
      .EndArray()
      .Key("c")
      .Raw("{\"d\":1}")
      .EndObject();
  EXPECT_EQ(w.str(), R"({"a":"x\"y\n\u0001","b":[-1,2,true,null],"c":{"d":1}})");
}

// Found by the HTTP fuzzer: a 404 for a path with bytes such as 0xC0 echoed them into the JSON
// error body, which was then not valid JSON (JSON text is UTF-8).
TEST(JsonWriterTest, InvalidUtf8BecomesReplacementCharacters) {
  auto json = [](std::string_view s) {
    std::string out;
    AppendJsonString(&out, s);
    return out;
  };
  // Valid sequences of 2, 3 and 4 bytes stay as they are.
  EXPECT_EQ(json("M\xC3\xBCller \xE2\x82\xAC \xF0\x9D\x84\x9E"),
            "\"M\xC3\xBCller \xE2\x82\xAC \xF0\x9D\x84\x9E\"");
  EXPECT_EQ(json("/\xC0\xC0x"), R"("/\ufffd\ufffdx")");                  // never valid
  EXPECT_EQ(json("\xFF"), R"("\ufffd")");                                // never valid
  EXPECT_EQ(json("\xE2\x82"), R"("\ufffd\ufffd")");                      // truncated at the end
  EXPECT_EQ(json("\xE2\x82x"), R"("\ufffd\ufffdx")");                    // truncated
  EXPECT_EQ(json("\xE0\x80\x80"), R"("\ufffd\ufffd\ufffd")");            // overlong
  EXPECT_EQ(json("\xED\xA0\x80"), R"("\ufffd\ufffd\ufffd")");            // surrogate
  EXPECT_EQ(json("\xF4\x90\x80\x80"), R"("\ufffd\ufffd\ufffd\ufffd")");  // above U+10FFFF
  EXPECT_EQ(json("\x80"), R"("\ufffd")");                                // lone continuation
  EXPECT_EQ(json(""), R"("")");
}

TEST(MetricsTest, RendersPrometheusText) {
  MetricsRegistry reg;
  reg.GetCounter("fairway_events_total", "Events.", {{"tenant", "acme"}})->Add(3);
  reg.GetGauge("fairway_depth", "Depth.")->Set(7);
  auto* h = reg.GetHistogram("fairway_latency_seconds", "Latency.", {0.1, 1});
  h->Observe(0.05);
  h->Observe(0.5);
  h->Observe(5);
  std::string text = reg.RenderPrometheus();
  EXPECT_NE(text.find("# TYPE fairway_events_total counter"), std::string::npos);
  EXPECT_NE(text.find("fairway_events_total{tenant=\"acme\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("fairway_depth 7\n"), std::string::npos);
  EXPECT_NE(text.find("fairway_latency_seconds_bucket{le=\"0.1\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("fairway_latency_seconds_bucket{le=\"1\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("fairway_latency_seconds_bucket{le=\"+Inf\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("fairway_latency_seconds_count 3\n"), std::string::npos);

  reg.RemoveSeriesWithLabel("tenant", "acme");
  EXPECT_EQ(reg.RenderPrometheus().find("tenant=\"acme\""), std::string::npos);
}

TEST(MetricsTest, HistogramQuantile) {
  Histogram h({1, 2, 3, 4});
  for (int i = 0; i < 100; ++i) h.Observe(i < 90 ? 0.5 : 3.5);
  EXPECT_LE(h.Quantile(0.5), 1.0);
  EXPECT_GT(h.Quantile(0.99), 3.0);
}

TEST(ClockTest, ManualClockMovesOnlyWhenTold) {
  ManualClock clock(1000);
  EXPECT_EQ(clock.NowMillis(), 1000);
  clock.AdvanceMillis(250);
  EXPECT_EQ(clock.NowMillis(), 1250);
  EXPECT_EQ(clock.MonotonicNanos(), 1250 * 1'000'000LL);
}

}  // namespace
}  // namespace fairway
