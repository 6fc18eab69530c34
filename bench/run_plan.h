#pragma once
// What a load-generating worker is told to do (RunPlan, Workload) and what it reports back
// (WorkerResult), plus the clocks they share.

#include <time.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/time_format.h"
#include "latency_record.h"

namespace fairway::bench {

inline constexpr int64_t kNanosPerSecond = 1'000'000'000;
inline constexpr int64_t kNever = INT64_MAX / 4;  // far future, still safe to add to
inline constexpr size_t kMaxErrorSamples = 5;
inline constexpr uint64_t kUnlimited = UINT64_MAX;

// Monotonic time in nanoseconds (CLOCK_MONOTONIC, the clock timerfd and clock_nanosleep use).
inline int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * kNanosPerSecond + ts.tv_nsec;
}

// The requests every worker sends: tenants and the fixed parts of the request shape.
struct Workload {
  std::vector<std::string> tenant_names;  // all the same width
  std::vector<std::string> http_heads;    // fairway: request line and headers, per tenant
  uint32_t batch = 100;
  uint32_t users = 5000;
  uint32_t run_id = 0;
};

// One worker's share of a run. Times are NowNs() values. A request is measured when its
// intended send time is at or after measure_start_ns (earlier ones are warm-up).
struct RunPlan {
  int64_t measure_start_ns = 0;
  int64_t stop_ns = kNever;            // no request is intended at or after this
  int64_t drain_deadline_ns = kNever;  // requests still unanswered then count as failed
  int64_t first_send_ns = 0;           // open loop: intended time of the first request
  double rate = 0;                     // this worker's requests/s; 0 = closed loop
  uint64_t max_requests = kUnlimited;  // measured requests this worker may start
  int64_t request_timeout_ns = 30 * kNanosPerSecond;
  size_t first_tenant = 0;  // the worker's k-th request goes to first_tenant + k * tenant_step
  size_t tenant_step = 1;
};

// What one worker measured.
struct WorkerResult {
  LatencyRecord latencies;  // successful measured requests, from intended send to full answer
  uint64_t ok_requests = 0;
  uint64_t failed_requests = 0;
  uint64_t events = 0;
  uint64_t connect_failures = 0;
  int64_t last_completion_ns = 0;
  std::vector<std::string> error_samples;
  std::string fatal;  // set when the worker could not run at all

  void AddErrorSample(std::string_view text) {
    if (error_samples.size() < kMaxErrorSamples) error_samples.emplace_back(text.substr(0, 400));
  }
};

// Open-loop send schedule: the k-th request is intended at first + k / rate, computed from k
// so that rounding never drifts.
class IntentSchedule {
 public:
  IntentSchedule(int64_t first_ns, double rate)
      : first_ns_(first_ns), period_ns_(rate > 0 ? 1e9 / rate : 0) {}

  int64_t next_ns() const {
    return first_ns_ + static_cast<int64_t>(std::llround(static_cast<double>(count_) * period_ns_));
  }
  void Advance() { ++count_; }

 private:
  int64_t first_ns_;
  double period_ns_;
  uint64_t count_ = 0;
};

// The current wall-clock time as an ISO 8601 event timestamp, formatted at most once per
// millisecond.
class TimestampClock {
 public:
  std::string_view Now() {
    int64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count();
    if (ms != last_ms_) {
      last_ms_ = ms;
      text_ = FormatIso8601Millis(ms);
    }
    return text_;
  }

 private:
  int64_t last_ms_ = -1;
  std::string text_;
};

}  // namespace fairway::bench
