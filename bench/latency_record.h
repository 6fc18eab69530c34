#pragma once
// Exact latency percentiles from a vector of every sample.

#include <cstddef>
#include <cstdint>
#include <vector>

namespace fairway::bench {

// Every recorded latency in nanoseconds; percentiles are exact (nearest rank over the sorted
// samples). At 8 bytes a sample this is cheap for benchmark-sized runs (a million requests is
// 8 MB), and merging per-thread records is a plain concatenation.
class LatencyRecord {
 public:
  void Reserve(size_t n) { samples_.reserve(n); }
  void Record(int64_t nanos) { samples_.push_back(nanos); }
  void Merge(const LatencyRecord& other);

  // Sorts the samples; call once before asking for percentiles.
  void Finish();
  // The q-th quantile (0 < q <= 1) in nanoseconds, 0 if there are no samples.
  int64_t Percentile(double q) const;
  size_t count() const { return samples_.size(); }

 private:
  std::vector<int64_t> samples_;
  bool sorted_ = false;
};

}  // namespace fairway::bench
