#include "engine/processing_throttle.h"

#include <gtest/gtest.h>

namespace fairway::engine {
namespace {

constexpr int64_t kSec = 1'000'000'000;

TEST(ProcessingThrottleTest, TheBurstIsATenthOfASecondAndNeverBelowOneActivity) {
  EXPECT_EQ(ProcessingThrottle::Burst(0.001), 1.0);
  EXPECT_EQ(ProcessingThrottle::Burst(1), 1.0);
  EXPECT_EQ(ProcessingThrottle::Burst(5), 1.0);
  EXPECT_EQ(ProcessingThrottle::Burst(10), 1.0);
  EXPECT_EQ(ProcessingThrottle::Burst(100), 10.0);
  EXPECT_EQ(ProcessingThrottle::Burst(1e12), 1e11);
}

TEST(ProcessingThrottleTest, StartsFullAndRefillsAtTheRate) {
  ProcessingThrottle t;
  EXPECT_EQ(t.Available(5, 10 * kSec), 1.0);
  t.Take(1);
  EXPECT_EQ(t.Available(5, 10 * kSec), 0.0);
  EXPECT_NEAR(t.NextTokenAt(5), 10 * kSec + kSec / 5, 2);
  EXPECT_NEAR(t.Available(5, 10 * kSec + kSec / 10), 0.5, 1e-9);
  EXPECT_NEAR(t.Available(5, 10 * kSec + kSec / 5), 1.0, 1e-9);
  // Never more than the burst, however long it waits.
  EXPECT_EQ(t.Available(5, 1000 * kSec), 1.0);
}

// The engine's freeze: the bucket was refilled with a fresh clock reading and then charged
// with an older one, which took a full bucket just below one token, again and again.
TEST(ProcessingThrottleTest, AnOlderClockReadingNeitherAddsNorTakesTokens) {
  ProcessingThrottle t;
  ASSERT_EQ(t.Available(5, 10 * kSec), 1.0);
  EXPECT_EQ(t.Available(5, 10 * kSec - 1'000), 1.0);
  EXPECT_EQ(t.Available(5, 0), 1.0);
  t.Take(1);
  EXPECT_NEAR(t.Available(5, 10 * kSec + kSec / 10), 0.5, 1e-9);
  EXPECT_NEAR(t.Available(5, 10 * kSec), 0.5, 1e-9);
  // The next token is due after the newest reading, not the older one.
  EXPECT_NEAR(t.NextTokenAt(5), 10 * kSec + kSec / 10 + kSec / 10, 2);
}

TEST(ProcessingThrottleTest, TheWaitIsNeverShorterThanAMillisecond) {
  ProcessingThrottle t;
  ASSERT_EQ(t.Available(1e6, kSec), 1e5);
  t.Take(100'000);
  ASSERT_EQ(t.Available(1e6, kSec), 0.0);
  // A token is a microsecond away at this rate.
  EXPECT_EQ(t.NextTokenAt(1e6), kSec + ProcessingThrottle::kMinWaitNs);
  // Just below one token at a low rate: still a millisecond, never a nanosecond.
  ProcessingThrottle u;
  ASSERT_EQ(u.Available(5, kSec), 1.0);
  u.Take(1);
  ASSERT_NEAR(u.Available(5, kSec + kSec / 5 - 10), 1.0, 1e-6);
  EXPECT_GE(u.NextTokenAt(5) - (kSec + kSec / 5 - 10), ProcessingThrottle::kMinWaitNs);
}

TEST(ProcessingThrottleTest, TinyRatesWaitLongWithoutOverflow) {
  ProcessingThrottle t;
  ASSERT_EQ(t.Available(1e-12, kSec), 1.0);
  t.Take(1);
  int64_t at = t.NextTokenAt(1e-12);
  EXPECT_GT(at, kSec);
  EXPECT_LE(at, kSec + static_cast<int64_t>(1e17) + 1);
  EXPECT_EQ(t.Available(1e-12, kSec), 0.0);
}

}  // namespace
}  // namespace fairway::engine
