#include "dispatch/outcome.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

namespace fairway::dispatch {
namespace {

using std::chrono::milliseconds;

constexpr milliseconds kTimeout{10'000};

TransferResult Answered(long code) {
  TransferResult r;
  r.code = code;
  return r;
}

TransferResult Broken(TransferError error, std::string text, long code = 0) {
  TransferResult r;
  r.error = error;
  r.error_text = std::move(text);
  r.code = code;
  return r;
}

TEST(ClassifyTransferTest, Webhook2xxIsDeliveredEvenIfTheTransferBrokeOffAfterwards) {
  EXPECT_TRUE(ClassifyTransfer(DeliveryKind::kWebhook, Answered(200), kTimeout).delivered);
  EXPECT_TRUE(ClassifyTransfer(DeliveryKind::kWebhook, Answered(204), kTimeout).delivered);
  EXPECT_TRUE(ClassifyTransfer(DeliveryKind::kWebhook,
                               Broken(TransferError::kTimeout, "Timeout was reached", 202),
                               kTimeout)
                  .delivered);
}

TEST(ClassifyTransferTest, WebhookStatusCodesAreTransientOrPermanent) {
  for (long code : {408L, 425L, 429L, 500L, 503L, 599L}) {
    AttemptVerdict v = ClassifyTransfer(DeliveryKind::kWebhook, Answered(code), kTimeout);
    EXPECT_FALSE(v.delivered) << code;
    EXPECT_FALSE(v.permanent) << code;
  }
  for (long code : {301L, 400L, 404L, 410L}) {
    AttemptVerdict v = ClassifyTransfer(DeliveryKind::kWebhook, Answered(code), kTimeout);
    EXPECT_FALSE(v.delivered) << code;
    EXPECT_TRUE(v.permanent) << code;
  }
  EXPECT_EQ(ClassifyTransfer(DeliveryKind::kWebhook, Answered(503), kTimeout).error,
            "HTTP 503 Service Unavailable");
  EXPECT_NE(ClassifyTransfer(DeliveryKind::kWebhook, Answered(302), kTimeout)
                .error.find("redirects are not followed"),
            std::string::npos);
}

TEST(ClassifyTransferTest, RetryAfterCountsOnlyOn429And503) {
  TransferResult r = Answered(429);
  r.retry_after_s = 30;
  EXPECT_EQ(ClassifyTransfer(DeliveryKind::kWebhook, r, kTimeout).retry_after_ms, 30'000);
  r.code = 503;
  EXPECT_EQ(ClassifyTransfer(DeliveryKind::kWebhook, r, kTimeout).retry_after_ms, 30'000);
  r.code = 500;
  EXPECT_EQ(ClassifyTransfer(DeliveryKind::kWebhook, r, kTimeout).retry_after_ms, 0);
}

TEST(ClassifyTransferTest, WebhookTransportErrors) {
  AttemptVerdict timeout = ClassifyTransfer(
      DeliveryKind::kWebhook, Broken(TransferError::kTimeout, "Timeout was reached"), kTimeout);
  EXPECT_FALSE(timeout.permanent);
  EXPECT_EQ(timeout.error, "timeout after 10000 ms");
  AttemptVerdict invalid = ClassifyTransfer(
      DeliveryKind::kWebhook,
      Broken(TransferError::kInvalidRequest, "URL using bad/illegal format"), kTimeout);
  EXPECT_TRUE(invalid.permanent);
  EXPECT_EQ(invalid.error, "invalid request: URL using bad/illegal format");
  AttemptVerdict refused =
      ClassifyTransfer(DeliveryKind::kWebhook,
                       Broken(TransferError::kOther, "Couldn't connect to server"), kTimeout);
  EXPECT_FALSE(refused.permanent);
  EXPECT_EQ(refused.error, "connection error: Couldn't connect to server");
}

TEST(ClassifyTransferTest, AWebhookWhoseEveryAddressWasRefusedIsPermanent) {
  TransferResult r = Broken(TransferError::kOther, "Couldn't connect to server");
  r.refusal = "destination address 127.0.0.1 is not allowed (loopback)";
  AttemptVerdict v = ClassifyTransfer(DeliveryKind::kWebhook, r, kTimeout);
  EXPECT_TRUE(v.permanent);
  EXPECT_EQ(v.error, r.refusal);
  // One address was allowed: the failure is the connection's, not the filter's.
  r.attempted = true;
  v = ClassifyTransfer(DeliveryKind::kWebhook, r, kTimeout);
  EXPECT_FALSE(v.permanent);
  EXPECT_EQ(v.error, "connection error: Couldn't connect to server");
}

TEST(ClassifyTransferTest, EmailReplies) {
  EXPECT_TRUE(ClassifyTransfer(DeliveryKind::kEmail, Answered(250), kTimeout).delivered);
  AttemptVerdict rejected = ClassifyTransfer(
      DeliveryKind::kEmail, Broken(TransferError::kOther, "Failed sending data", 550), kTimeout);
  EXPECT_TRUE(rejected.permanent);
  EXPECT_EQ(rejected.error.rfind("SMTP 550", 0), 0u) << rejected.error;
  AttemptVerdict busy = ClassifyTransfer(
      DeliveryKind::kEmail, Broken(TransferError::kOther, "Failed sending data", 451), kTimeout);
  EXPECT_FALSE(busy.permanent);
  AttemptVerdict down = ClassifyTransfer(
      DeliveryKind::kEmail, Broken(TransferError::kOther, "Couldn't connect to server"), kTimeout);
  EXPECT_FALSE(down.permanent);
  EXPECT_EQ(down.error, "SMTP connection error: Couldn't connect to server");
  EXPECT_EQ(ClassifyTransfer(DeliveryKind::kEmail,
                             Broken(TransferError::kTimeout, "Timeout was reached"), kTimeout)
                .error,
            "timeout after 10000 ms");
}

TEST(RetryDelayTest, DoublesFromTheInitialBackoffUpToTheCapWithJitter) {
  DeliveryDispatcherOptions o;
  o.initial_backoff = milliseconds(1000);
  o.max_backoff = milliseconds(10'000);
  TenantId acme("acme");
  Delivery d;
  d.id = "r1";
  for (uint32_t attempts = 1; attempts <= 6; ++attempts) {
    d.attempts = attempts;
    int64_t base = std::min<int64_t>(1000LL << (attempts - 1), 10'000);
    int64_t delay = RetryDelayMs(acme, d, 0, o);
    EXPECT_GE(delay, base) << attempts;
    EXPECT_LT(delay, base + base / 5 + 1) << attempts;
    EXPECT_EQ(delay, RetryDelayMs(acme, d, 0, o)) << "deterministic";
  }
  d.attempts = 1;
  // A longer Retry-After wins, capped at max_backoff.
  EXPECT_EQ(RetryDelayMs(acme, d, 5000, o), 5000);
  EXPECT_EQ(RetryDelayMs(acme, d, 60'000, o), 10'000);
}

}  // namespace
}  // namespace fairway::dispatch
