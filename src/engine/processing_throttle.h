#pragma once
// ProcessingThrottle: one stream's processing_rate quota, a token bucket counted in activities.
// Owned by the stream; guarded by the engine's lock (not thread-safe on its own).
//
// - The bucket holds at most Burst(rate) tokens, never less than one activity, so a full
//   bucket can always pay for the smallest work item and a throttled stream always advances.
// - Time only moves forward: a clock reading older than the last refill (another thread read
//   the clock later and refilled first) adds nothing and takes nothing away. An older reading
//   that lowered the tokens kept a stream just below one token forever.
// - The wait for the next token is at least kMinWaitNs, so a throttled stream never re-arms a
//   timer that is due again at once.

#include <algorithm>
#include <cstdint>

namespace fairway::engine {

class ProcessingThrottle {
 public:
  // The shortest wait WaitNanos returns.
  static constexpr int64_t kMinWaitNs = 1'000'000;

  // Largest number of tokens the bucket holds at `rate` activities per second: a tenth of a
  // second's worth, and never below one activity.
  static double Burst(double rate) { return std::max(1.0, rate / 10); }

  // Refills the bucket up to `now_ns` and returns the tokens available.
  // Requires: rate > 0.
  double Available(double rate, int64_t now_ns) {
    const double burst = Burst(rate);
    if (!started_) {
      started_ = true;
      tokens_ = burst;
      at_ns_ = now_ns;
    } else if (now_ns > at_ns_) {
      tokens_ += static_cast<double>(now_ns - at_ns_) / 1e9 * rate;
      at_ns_ = now_ns;
    }
    tokens_ = std::min(tokens_, burst);
    return tokens_;
  }

  // Pays for `n` activities dispatched.
  void Take(uint32_t n) { tokens_ -= n; }

  // Tokens as of the last refill.
  double tokens() const { return tokens_; }

  // When (in the clock of Available's readings) one activity's worth of tokens is available:
  // at least kMinWaitNs after the last refill.
  // Requires: rate > 0.
  int64_t NextTokenAt(double rate) const {
    double missing = std::max(0.0, 1 - tokens_);
    double ns = std::min(missing / rate * 1e9, 1e17);
    return at_ns_ + std::max(kMinWaitNs, static_cast<int64_t>(ns) + 1);
  }

 private:
  bool started_ = false;
  double tokens_ = 0;
  int64_t at_ns_ = 0;
};

}  // namespace fairway::engine
