#include "identity/lead_profile.h"

#include <gtest/gtest.h>

namespace fairway::identity {
namespace {

using model::ActivityType;

LeadProfile SampleProfile() {
  LeadProfile p;
  p.RecordSeen(1'700'000'000'000);
  p.RecordSeen(1'700'000'500'000);
  p.RecordSeen(-5);  // before 1970: zig-zag varints must keep the sign
  p.MergeTrait("plan", 10, R"("pro")");
  p.MergeTrait("address", 11, R"({"city":"Oslo"})");
  p.MergeTrait("score", 12, "42");
  p.MergeAccount("acme", 13);
  p.AddCount(ActivityType::kPage, "/pricing", 19'000, 3);
  p.AddCount(ActivityType::kPage, "/pricing", 19'002);
  p.AddCount(ActivityType::kTrack, "Signed Up", 19'001);
  p.AddCount(ActivityType::kIdentify, "", -3);
  p.MergeLink(IdKind::kAnonymous, "anon-1", 20, "m-1");
  p.MergeLink(IdKind::kUser, "old-user", 21, "m-2");
  return p;
}

void ExpectSameProfile(const LeadProfile& a, const LeadProfile& b) {
  EXPECT_EQ(a.first_seen_ms, b.first_seen_ms);
  EXPECT_EQ(a.last_seen_ms, b.last_seen_ms);
  EXPECT_EQ(a.activity_count, b.activity_count);
  ASSERT_EQ(a.traits.size(), b.traits.size());
  for (size_t i = 0; i < a.traits.size(); ++i) {
    EXPECT_EQ(a.traits[i].name, b.traits[i].name);
    EXPECT_EQ(a.traits[i].time_ms, b.traits[i].time_ms);
    EXPECT_EQ(a.traits[i].json, b.traits[i].json);
  }
  EXPECT_EQ(a.account_id, b.account_id);
  EXPECT_EQ(a.account_time_ms, b.account_time_ms);
  ASSERT_EQ(a.counters.size(), b.counters.size());
  for (size_t i = 0; i < a.counters.size(); ++i) {
    EXPECT_EQ(a.counters[i].type, b.counters[i].type);
    EXPECT_EQ(a.counters[i].name, b.counters[i].name);
    ASSERT_EQ(a.counters[i].days.size(), b.counters[i].days.size());
    for (size_t j = 0; j < a.counters[i].days.size(); ++j) {
      EXPECT_EQ(a.counters[i].days[j].day, b.counters[i].days[j].day);
      EXPECT_EQ(a.counters[i].days[j].count, b.counters[i].days[j].count);
    }
  }
  ASSERT_EQ(a.links.size(), b.links.size());
  for (size_t i = 0; i < a.links.size(); ++i) {
    EXPECT_EQ(a.links[i].kind, b.links[i].kind);
    EXPECT_EQ(a.links[i].id, b.links[i].id);
    EXPECT_EQ(a.links[i].time_ms, b.links[i].time_ms);
    EXPECT_EQ(a.links[i].message_id, b.links[i].message_id);
  }
}

TEST(LeadProfileTest, RoundTripsEveryField) {
  LeadProfile p = SampleProfile();
  EXPECT_EQ(p.first_seen_ms, -5);
  EXPECT_EQ(p.last_seen_ms, 1'700'000'500'000);
  auto decoded = LeadProfile::Decode(p.Encode());
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  ExpectSameProfile(p, *decoded);
  // Encoding is deterministic.
  EXPECT_EQ(decoded->Encode(), p.Encode());
}

TEST(LeadProfileTest, RoundTripsEmptyProfile) {
  LeadProfile p;
  auto decoded = LeadProfile::Decode(p.Encode());
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  ExpectSameProfile(p, *decoded);
}

TEST(LeadProfileTest, CorruptInputIsInvalidArgument) {
  const std::string good = SampleProfile().Encode();
  // Every truncation fails cleanly.
  for (size_t n = 0; n < good.size(); ++n) {
    auto r = LeadProfile::Decode(std::string_view(good).substr(0, n));
    ASSERT_FALSE(r.ok()) << "prefix of " << n << " bytes decoded";
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("lead profile"), std::string::npos);
  }
  auto trailing = LeadProfile::Decode(good + "x");
  EXPECT_EQ(trailing.status().code(), StatusCode::kInvalidArgument);

  std::string bad_version = good;
  bad_version[0] = 9;
  EXPECT_EQ(LeadProfile::Decode(bad_version).status().code(), StatusCode::kInvalidArgument);

  // A huge element count must not be trusted.
  std::string huge_count("\x01\x00\x00\x00\xff\xff\xff\xff\x0f", 9);
  EXPECT_EQ(LeadProfile::Decode(huge_count).status().code(), StatusCode::kInvalidArgument);

  // Flipping any single byte never crashes (it may still decode to another valid profile).
  for (size_t i = 0; i < good.size(); ++i) {
    std::string flipped = good;
    flipped[i] = static_cast<char>(flipped[i] ^ 0x5a);
    LeadProfile::Decode(flipped).status().IgnoreError();
  }
}

TEST(LeadProfileTest, TraitsAreLastWriteWinsWithOrderIndependentTies) {
  LeadProfile p;
  EXPECT_TRUE(p.MergeTrait("plan", 20, R"("pro")"));
  EXPECT_FALSE(p.MergeTrait("plan", 10, R"("free")"));  // older: ignored
  EXPECT_EQ(p.FindTrait("plan")->json, R"("pro")");
  EXPECT_TRUE(p.MergeTrait("plan", 30, R"("enterprise")"));
  EXPECT_EQ(p.FindTrait("plan")->json, R"("enterprise")");
  EXPECT_EQ(p.FindTrait("plan")->time_ms, 30);

  LeadProfile a, b;
  a.MergeTrait("x", 5, R"("a")");
  a.MergeTrait("x", 5, R"("b")");
  b.MergeTrait("x", 5, R"("b")");
  b.MergeTrait("x", 5, R"("a")");
  EXPECT_EQ(a.FindTrait("x")->json, R"("b")");
  EXPECT_EQ(b.FindTrait("x")->json, R"("b")");
  EXPECT_EQ(a.FindTrait("missing"), nullptr);
}

TEST(LeadProfileTest, AccountIsLastWriteWins) {
  LeadProfile p;
  EXPECT_FALSE(p.MergeAccount("", 5));
  EXPECT_TRUE(p.MergeAccount("g2", 10));
  EXPECT_FALSE(p.MergeAccount("g1", 9));
  EXPECT_FALSE(p.MergeAccount("g1", 10));  // tie: the larger id stays
  EXPECT_EQ(p.account_id, "g2");
  EXPECT_TRUE(p.MergeAccount("g1", 11));
  EXPECT_EQ(p.account_id, "g1");
}

TEST(LeadProfileTest, CountersStaySortedAndPrune) {
  LeadProfile p;
  p.RecordSeen(100 * kDayMs + 5);
  p.AddCount(ActivityType::kTrack, "b", 100);
  p.AddCount(ActivityType::kTrack, "a", 98);
  p.AddCount(ActivityType::kTrack, "a", 100);
  p.AddCount(ActivityType::kTrack, "a", 90);
  p.AddCount(ActivityType::kTrack, "a", 98, 2);
  p.AddCount(ActivityType::kPage, "a", 99);
  ASSERT_EQ(p.counters.size(), 3u);
  const CounterSeries* a = p.FindCounter(ActivityType::kTrack, "a");
  ASSERT_NE(a, nullptr);
  ASSERT_EQ(a->days.size(), 3u);
  EXPECT_EQ(a->days[0].day, 90);
  EXPECT_EQ(a->days[1].day, 98);
  EXPECT_EQ(a->days[1].count, 3u);
  EXPECT_EQ(a->days[2].day, 100);

  // Keep 3 days: 98, 99, 100.
  p.PruneCounters(3);
  a = p.FindCounter(ActivityType::kTrack, "a");
  ASSERT_NE(a, nullptr);
  ASSERT_EQ(a->days.size(), 2u);
  EXPECT_EQ(a->days[0].day, 98);
  p.PruneCounters(1);
  EXPECT_EQ(p.FindCounter(ActivityType::kPage, "a"), nullptr);  // emptied series go away
  EXPECT_NE(p.FindCounter(ActivityType::kTrack, "b"), nullptr);
}

TEST(LeadProfileTest, LinksKeepTheLatestClaim) {
  LeadProfile p;
  EXPECT_TRUE(p.MergeLink(IdKind::kAnonymous, "a1", 10, "m1"));
  EXPECT_FALSE(p.MergeLink(IdKind::kAnonymous, "a1", 10, "m1"));  // the same claim again
  EXPECT_FALSE(p.MergeLink(IdKind::kAnonymous, "a1", 5, "m9"));   // older
  EXPECT_TRUE(p.MergeLink(IdKind::kAnonymous, "a1", 10, "m2"));   // tie: larger messageId
  EXPECT_TRUE(p.MergeLink(IdKind::kUser, "a1", 1, "m0"));         // another kind, another link
  ASSERT_EQ(p.links.size(), 2u);
  EXPECT_EQ(p.links[0].kind, IdKind::kAnonymous);
  EXPECT_EQ(p.links[0].message_id, "m2");
}

TEST(LeadProfileTest, MergeFromIsAUnion) {
  LeadProfile a, b;
  a.RecordSeen(50);
  a.MergeTrait("plan", 5, R"("free")");
  a.AddCount(ActivityType::kPage, "/", 0, 2);
  b.RecordSeen(20);
  b.RecordSeen(90);
  b.MergeTrait("plan", 6, R"("pro")");
  b.MergeTrait("name", 1, R"("Ann")");
  b.MergeAccount("g", 3);
  b.AddCount(ActivityType::kPage, "/", 0, 1);
  b.AddCount(ActivityType::kPage, "/", 1, 1);
  b.MergeLink(IdKind::kAnonymous, "x", 1, "m");

  LeadProfile u;
  u.MergeFrom(a);
  u.MergeFrom(b);
  EXPECT_EQ(u.first_seen_ms, 20);
  EXPECT_EQ(u.last_seen_ms, 90);
  EXPECT_EQ(u.activity_count, 3u);
  EXPECT_EQ(u.FindTrait("plan")->json, R"("pro")");
  EXPECT_EQ(u.FindTrait("name")->json, R"("Ann")");
  EXPECT_EQ(u.account_id, "g");
  const CounterSeries* s = u.FindCounter(ActivityType::kPage, "/");
  ASSERT_NE(s, nullptr);
  ASSERT_EQ(s->days.size(), 2u);
  EXPECT_EQ(s->days[0].count, 3u);
  EXPECT_TRUE(u.links.empty());

  // The same union in the other order.
  LeadProfile v;
  v.MergeFrom(b);
  v.MergeFrom(a);
  EXPECT_EQ(v.Encode(), u.Encode());
}

TEST(LeadProfileTest, DayOfFloorsNegativeTimes) {
  EXPECT_EQ(DayOf(0), 0);
  EXPECT_EQ(DayOf(kDayMs - 1), 0);
  EXPECT_EQ(DayOf(kDayMs), 1);
  EXPECT_EQ(DayOf(-1), -1);
  EXPECT_EQ(DayOf(-kDayMs), -1);
  EXPECT_EQ(DayOf(-kDayMs - 1), -2);
}

}  // namespace
}  // namespace fairway::identity
