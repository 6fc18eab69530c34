#include "latency_record.h"

#include <algorithm>
#include <cassert>
#include <cmath>

namespace fairway::bench {

void LatencyRecord::Merge(const LatencyRecord& other) {
  samples_.insert(samples_.end(), other.samples_.begin(), other.samples_.end());
  sorted_ = false;
}

void LatencyRecord::Finish() {
  std::sort(samples_.begin(), samples_.end());
  sorted_ = true;
}

int64_t LatencyRecord::Percentile(double q) const {
  assert(sorted_);
  if (samples_.empty()) return 0;
  auto rank = static_cast<size_t>(std::ceil(q * static_cast<double>(samples_.size())));
  rank = std::clamp<size_t>(rank, 1, samples_.size());
  return samples_[rank - 1];
}

}  // namespace fairway::bench
