#pragma once
// Pieces the in-process benchmarks (engine_bench, campaign_bench) share.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>

#include "log/activity_log.h"

namespace fairway::bench {

inline int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

inline double SecondsSince(int64_t t0_ns) { return static_cast<double>(NowNs() - t0_ns) / 1e9; }

// Appends requests to a log with at most `window` of them in flight (the log's group commit
// batches them), and waits for all. Throws on the first append that failed.
class AppendWindow {
 public:
  AppendWindow(log::ActivityLog* log, int window = 8) : log_(log), window_(window) {}
  ~AppendWindow() { Drain(); }

  void Append(log::AppendRequest req) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return in_flight_ < window_; });
      ++in_flight_;
    }
    log_->Append(std::move(req), [this](Result<log::AppendResult> r) {
      std::lock_guard lock(mu_);
      if (!r.ok() && error_.empty()) error_ = r.status().ToString();
      --in_flight_;
      cv_.notify_all();
    });
  }

  // Waits for every append; throws std::runtime_error if one failed.
  void Wait() {
    Drain();
    if (!error_.empty()) throw std::runtime_error("append: " + error_);
  }

 private:
  void Drain() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return in_flight_ == 0; });
  }

  log::ActivityLog* log_;
  const int window_;
  std::mutex mu_;
  std::condition_variable cv_;
  int in_flight_ = 0;
  std::string error_;
};

}  // namespace fairway::bench
