#pragma once
// Clock: the only source of time in Fairway. Production uses SystemClock; tests use ManualClock
// and advance it by hand, so nothing depends on sleeping.

#include <atomic>
#include <chrono>
#include <cstdint>

namespace fairway {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock time in milliseconds since the Unix epoch (event times, receivedAt).
  virtual int64_t NowMillis() const = 0;
  // Monotonic time in nanoseconds (rate limiting, latency).
  virtual int64_t MonotonicNanos() const = 0;
};

// Real time. Thread-safe; one shared instance is enough.
class SystemClock final : public Clock {
 public:
  int64_t NowMillis() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  int64_t MonotonicNanos() const override {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  // Returns the process-wide instance.
  static SystemClock* Default();
};

// Time that moves only when a test says so. Thread-safe.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t now_ms = 1'700'000'000'000) : now_ns_(now_ms * 1'000'000) {}
  int64_t NowMillis() const override { return now_ns_.load() / 1'000'000; }
  int64_t MonotonicNanos() const override { return now_ns_.load(); }
  void AdvanceMillis(int64_t ms) { now_ns_ += ms * 1'000'000; }

 private:
  std::atomic<int64_t> now_ns_;
};

}  // namespace fairway
