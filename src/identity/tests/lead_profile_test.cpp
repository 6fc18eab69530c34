#include "identity/lead_profile.h"

#include <gtest/gtest.h>

#include <limits>
#include <string>
#include <vector>

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
  p.AddCount(ActivityType::kFairway, "email_sent", 19'002);
  p.AddScore(-17);
  p.MergeMembership(MembershipKind::kTag, "vip", 30, true);
  p.MergeMembership(MembershipKind::kList, "trial", -31, false);
  p.MergeMembership(MembershipKind::kList, "customers", 32, true);
  p.AddIndexedEmail("b@example.com");
  p.AddIndexedEmail("a@example.com");
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
  EXPECT_EQ(a.score, b.score);
  ASSERT_EQ(a.memberships.size(), b.memberships.size());
  for (size_t i = 0; i < a.memberships.size(); ++i) {
    EXPECT_EQ(a.memberships[i].kind, b.memberships[i].kind);
    EXPECT_EQ(a.memberships[i].name, b.memberships[i].name);
    EXPECT_EQ(a.memberships[i].time_ms, b.memberships[i].time_ms);
    EXPECT_EQ(a.memberships[i].member, b.memberships[i].member);
  }
  EXPECT_EQ(a.indexed_emails, b.indexed_emails);
}

std::string FromHex(std::string_view hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return out;
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

TEST(LeadProfileTest, DecodesFormat1WithDefaultsForNewerFields) {
  // Written by the format 1 encoder: seen at 1'700'000'000'000, trait plan="pro" at 10, account
  // acme at 13, 3 pages "/pricing" on day 19000, link anon-1 at 20 by m-1.
  const std::string v1 = FromHex(
      "010180a0abfef96280a0abfef9620104706c616e14052270726f220461636d651a0103082f70726963696e6701"
      "f0a80203016106616e6f6e2d3128036d2d31");
  auto decoded = LeadProfile::Decode(v1);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  LeadProfile expected;
  expected.RecordSeen(1'700'000'000'000);
  expected.MergeTrait("plan", 10, R"("pro")");
  expected.MergeAccount("acme", 13);
  expected.AddCount(ActivityType::kPage, "/pricing", 19'000, 3);
  expected.MergeLink(IdKind::kAnonymous, "anon-1", 20, "m-1");
  ExpectSameProfile(*decoded, expected);
  EXPECT_EQ(decoded->score, 0);
  EXPECT_TRUE(decoded->memberships.empty());
  EXPECT_TRUE(decoded->indexed_emails.empty());
  // Re-encoded in the newest format, which is not format 1 and decodes to the same profile.
  std::string v2 = decoded->Encode();
  EXPECT_EQ(v2[0], 2);
  EXPECT_NE(v2, v1);
  auto again = LeadProfile::Decode(v2);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  ExpectSameProfile(*again, expected);
  // Format 1 followed by anything is corrupt, not format 2.
  EXPECT_EQ(LeadProfile::Decode(v1 + std::string(3, '\0')).status().code(),
            StatusCode::kInvalidArgument);
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

  // Bad membership kinds and flags are caught.
  LeadProfile one;
  one.MergeMembership(MembershipKind::kTag, "t", 1, true);
  const std::string enc = one.Encode();
  // ... score 0, 1 membership, kind, name "t", time, member, 0 emails.
  ASSERT_EQ(enc.substr(enc.size() - 7), std::string("\x01\x02\x01t\x02\x01\x00", 7));
  std::string bad_kind = enc;
  bad_kind[enc.size() - 6] = 3;
  EXPECT_EQ(LeadProfile::Decode(bad_kind).status().code(), StatusCode::kInvalidArgument);
  std::string bad_flag = enc;
  bad_flag[enc.size() - 2] = 2;
  EXPECT_EQ(LeadProfile::Decode(bad_flag).status().code(), StatusCode::kInvalidArgument);

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

TEST(LeadProfileTest, MembershipIsLastWriteWinsWithAdditionWinningTies) {
  LeadProfile p;
  EXPECT_FALSE(p.IsMember(MembershipKind::kList, "a"));
  EXPECT_TRUE(p.MergeMembership(MembershipKind::kList, "a", 10, true));
  EXPECT_FALSE(p.MergeMembership(MembershipKind::kList, "a", 9, false));  // older
  EXPECT_TRUE(p.IsMember(MembershipKind::kList, "a"));
  EXPECT_TRUE(p.MergeMembership(MembershipKind::kList, "a", 11, false));
  EXPECT_FALSE(p.IsMember(MembershipKind::kList, "a"));
  EXPECT_TRUE(p.MergeMembership(MembershipKind::kList, "a", 11, true));    // tie: added wins
  EXPECT_FALSE(p.MergeMembership(MembershipKind::kList, "a", 11, false));  // in either order
  EXPECT_TRUE(p.IsMember(MembershipKind::kList, "a"));
  EXPECT_FALSE(p.IsMember(MembershipKind::kTag, "a"));  // lists and tags are apart
  p.MergeMembership(MembershipKind::kTag, "z", 1, true);
  p.MergeMembership(MembershipKind::kTag, "b", 1, true);
  p.MergeMembership(MembershipKind::kTag, "c", 1, false);
  EXPECT_EQ(p.Members(MembershipKind::kTag), (std::vector<std::string>{"b", "z"}));
  EXPECT_EQ(p.Members(MembershipKind::kList), std::vector<std::string>{"a"});
}

TEST(LeadProfileTest, ScoreSumsAndSaturates) {
  LeadProfile p;
  p.AddScore(5);
  p.AddScore(-8);
  EXPECT_EQ(p.score, -3);
  p.AddScore(std::numeric_limits<int64_t>::min());
  EXPECT_EQ(p.score, std::numeric_limits<int64_t>::min());
  p.score = std::numeric_limits<int64_t>::max() - 1;
  p.AddScore(10);
  EXPECT_EQ(p.score, std::numeric_limits<int64_t>::max());
}

TEST(LeadProfileTest, MergeFromSumsScoresAndMergesMemberships) {
  LeadProfile a, b;
  a.AddScore(3);
  a.MergeMembership(MembershipKind::kList, "l", 10, true);
  a.MergeMembership(MembershipKind::kTag, "t", 5, false);
  a.AddIndexedEmail("a@x.io");
  b.AddScore(-1);
  b.MergeMembership(MembershipKind::kList, "l", 12, false);
  b.MergeMembership(MembershipKind::kTag, "t", 5, true);
  LeadProfile u;
  u.MergeFrom(a);
  u.MergeFrom(b);
  EXPECT_EQ(u.score, 2);
  EXPECT_FALSE(u.IsMember(MembershipKind::kList, "l"));
  EXPECT_TRUE(u.IsMember(MembershipKind::kTag, "t"));
  EXPECT_TRUE(u.indexed_emails.empty());  // per-identity bookkeeping
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
