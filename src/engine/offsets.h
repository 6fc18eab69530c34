#pragma once
// CommittedOffsets: how far a processor has got in one partition of a tenant's log. Work
// finishes out of order (other leads run past a slow one), so the record is the low-water mark
// (every offset below it is done) plus the ranges of offsets above it that are done too. After a
// restart, reading resumes at the low-water mark and skips the completed ranges: nothing is
// processed twice and nothing is skipped.

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "common/status.h"

namespace fairway::engine {

class CommittedOffsets {
 public:
  CommittedOffsets() = default;
  explicit CommittedOffsets(uint64_t low_water_mark) : lwm_(low_water_mark) {}

  // Marks [begin, end) done and advances the low-water mark over any now-contiguous prefix.
  void MarkDone(uint64_t begin, uint64_t end);
  bool IsDone(uint64_t offset) const;

  uint64_t low_water_mark() const { return lwm_; }
  // Offsets done above the low-water mark.
  uint64_t done_above() const;
  // Number of separate ranges above the low-water mark.
  size_t ranges() const { return ranges_.size(); }

  std::string Encode() const;
  static Result<CommittedOffsets> Decode(std::string_view value);

  bool operator==(const CommittedOffsets&) const = default;

 private:
  uint64_t lwm_ = 0;
  // begin -> end of disjoint, non-adjacent ranges, all above lwm_.
  std::map<uint64_t, uint64_t> ranges_;
};

}  // namespace fairway::engine
