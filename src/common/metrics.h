#pragma once
// Metrics registry rendered in the Prometheus text exposition format (version 0.0.4).
//
// Series are created on first use and live until removed; callers keep the returned pointer and
// update it lock-free. The registry is shared by all threads; only creation, removal and rendering
// take its lock.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace fairway {

// label name -> value, rendered in this order.
using Labels = std::vector<std::pair<std::string, std::string>>;

class Counter {
 public:
  void Add(uint64_t n = 1) { v_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

class Gauge {
 public:
  void Set(int64_t v) { v_.store(v, std::memory_order_relaxed); }
  void Add(int64_t d) { v_.fetch_add(d, std::memory_order_relaxed); }
  int64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> v_{0};
};

// Cumulative histogram over fixed upper bounds (plus +Inf).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v);
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  double sum() const;
  // Value below which `q` (0..1) of observations fall, interpolated within a bucket.
  double Quantile(double q) const;
  const std::vector<double>& bounds() const { return bounds_; }
  uint64_t bucket(size_t i) const { return buckets_[i].load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // bounds_.size() + 1
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_micros_{0};
};

// Latency buckets in seconds, 100 µs to 10 s.
std::vector<double> LatencyBuckets();
// Size buckets, 1 to 64K.
std::vector<double> SizeBuckets();

class MetricsRegistry {
 public:
  Counter* GetCounter(const std::string& name, const std::string& help, const Labels& labels = {});
  Gauge* GetGauge(const std::string& name, const std::string& help, const Labels& labels = {});
  Histogram* GetHistogram(const std::string& name, const std::string& help,
                          std::vector<double> bounds, const Labels& labels = {});
  // A gauge computed at render time (e.g. log size on disk).
  void SetGaugeFunction(const std::string& name, const std::string& help,
                        std::function<std::vector<std::pair<Labels, double>>()> fn);
  // Stops rendering every series that carries label `name`=`value` (tenant deletion). Pointers
  // to them stay valid (updates are ignored), so a request in flight cannot touch freed memory.
  void RemoveSeriesWithLabel(const std::string& name, const std::string& value);

  std::string RenderPrometheus() const;

 private:
  enum class Kind { kCounter, kGauge, kHistogram };
  struct Family {
    Kind kind;
    std::string help;
    std::map<Labels, std::unique_ptr<Counter>> counters;
    std::map<Labels, std::unique_ptr<Gauge>> gauges;
    std::map<Labels, std::unique_ptr<Histogram>> histograms;
  };
  Family& GetFamily(const std::string& name, const std::string& help, Kind kind);

  mutable std::mutex mu_;
  std::map<std::string, Family> families_;
  std::vector<std::shared_ptr<void>> retired_;
  std::map<std::string,
           std::pair<std::string, std::function<std::vector<std::pair<Labels, double>>()>>>
      gauge_fns_;
};

}  // namespace fairway
