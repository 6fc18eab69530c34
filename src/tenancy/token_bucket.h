#pragma once
// TokenBucket: the per-tenant ingest rate limit. Refills at `rate` tokens per second up to
// `burst`. A request of n events needs min(n, burst) tokens and takes n, so a request larger
// than the burst is still admitted when the bucket is full (then the tenant waits longer).
// Not thread-safe; the owner locks.

#include <algorithm>
#include <cstdint>

namespace fairway::tenancy {

class TokenBucket {
 public:
  struct Decision {
    bool admitted = false;
    // Seconds until the request would be admitted (when refused).
    double retry_after_s = 0;
    // Tokens left after this decision.
    double remaining = 0;
  };

  Decision Take(double n, double rate, double burst, int64_t now_ns) {
    if (!initialised_) {
      tokens_ = burst;
      last_ns_ = now_ns;
      initialised_ = true;
    }
    double elapsed = static_cast<double>(now_ns - last_ns_) / 1e9;
    if (elapsed > 0) {
      tokens_ = std::min(burst, tokens_ + elapsed * rate);
      last_ns_ = now_ns;
    }
    tokens_ = std::min(tokens_, burst);
    double need = std::min(n, burst);
    Decision d;
    if (tokens_ >= need) {
      tokens_ -= n;
      d.admitted = true;
    } else {
      d.retry_after_s = (need - tokens_) / rate;
    }
    d.remaining = std::max(0.0, tokens_);
    return d;
  }

 private:
  bool initialised_ = false;
  double tokens_ = 0;
  int64_t last_ns_ = 0;
};

}  // namespace fairway::tenancy
