#include "engine/offsets.h"

#include <gtest/gtest.h>

namespace fairway::engine {
namespace {

TEST(CommittedOffsetsTest, ContiguousWorkAdvancesTheLowWaterMark) {
  CommittedOffsets c;
  c.MarkDone(0, 3);
  c.MarkDone(3, 4);
  EXPECT_EQ(c.low_water_mark(), 4u);
  EXPECT_EQ(c.ranges(), 0u);
  EXPECT_TRUE(c.IsDone(3));
  EXPECT_FALSE(c.IsDone(4));
}

TEST(CommittedOffsetsTest, OutOfOrderWorkIsKeptAboveTheMarkUntilTheGapCloses) {
  CommittedOffsets c(10);
  c.MarkDone(15, 16);
  c.MarkDone(12, 14);
  c.MarkDone(14, 15);  // joins [12,14) and [15,16)
  EXPECT_EQ(c.low_water_mark(), 10u);
  EXPECT_EQ(c.ranges(), 1u);
  EXPECT_EQ(c.done_above(), 4u);
  EXPECT_FALSE(c.IsDone(11));
  EXPECT_TRUE(c.IsDone(12));
  EXPECT_TRUE(c.IsDone(15));
  EXPECT_FALSE(c.IsDone(16));
  c.MarkDone(10, 12);
  EXPECT_EQ(c.low_water_mark(), 16u);
  EXPECT_EQ(c.ranges(), 0u);
}

TEST(CommittedOffsetsTest, OverlapsAndWorkBelowTheMarkAreHarmless) {
  CommittedOffsets c(5);
  c.MarkDone(0, 3);  // below the mark: ignored
  EXPECT_EQ(c.low_water_mark(), 5u);
  c.MarkDone(8, 12);
  c.MarkDone(9, 10);
  c.MarkDone(7, 13);
  EXPECT_EQ(c.ranges(), 1u);
  EXPECT_EQ(c.done_above(), 6u);
  c.MarkDone(20, 21);
  c.MarkDone(5, 7);
  EXPECT_EQ(c.low_water_mark(), 13u);
  EXPECT_EQ(c.done_above(), 1u);
}

TEST(CommittedOffsetsTest, EncodeDecodeRoundTrip) {
  CommittedOffsets c(1'000'000);
  c.MarkDone(1'000'005, 1'000'010);
  c.MarkDone(1'000'020, 1'000'021);
  auto d = CommittedOffsets::Decode(c.Encode());
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(*d, c);
  EXPECT_TRUE(d->IsDone(1'000'020));
  EXPECT_FALSE(d->IsDone(1'000'011));
}

TEST(CommittedOffsetsTest, CorruptRecordsAreErrors) {
  EXPECT_FALSE(CommittedOffsets::Decode("").ok());
  std::string v = CommittedOffsets(7).Encode();
  v.back() = 3;  // claims 3 ranges, has none
  EXPECT_FALSE(CommittedOffsets::Decode(v).ok());
  std::string trailing = CommittedOffsets(7).Encode() + "x";
  EXPECT_FALSE(CommittedOffsets::Decode(trailing).ok());
}

}  // namespace
}  // namespace fairway::engine
