#include "engine/offsets.h"

#include "common/coding.h"

namespace fairway::engine {

void CommittedOffsets::MarkDone(uint64_t begin, uint64_t end) {
  if (begin < lwm_) begin = lwm_;
  if (begin >= end) return;
  // Merge with an overlapping or adjacent range that starts before `begin`.
  auto it = ranges_.upper_bound(begin);
  if (it != ranges_.begin()) {
    auto prev = std::prev(it);
    if (prev->second >= begin) {
      begin = prev->first;
      end = std::max(end, prev->second);
      it = ranges_.erase(prev);
    }
  }
  // Swallow ranges that start inside or right after [begin, end).
  while (it != ranges_.end() && it->first <= end) {
    end = std::max(end, it->second);
    it = ranges_.erase(it);
  }
  if (begin == lwm_) {
    lwm_ = end;
  } else {
    ranges_.emplace(begin, end);
  }
  // A range may now touch the new low-water mark.
  if (!ranges_.empty() && ranges_.begin()->first == lwm_) {
    lwm_ = ranges_.begin()->second;
    ranges_.erase(ranges_.begin());
  }
}

bool CommittedOffsets::IsDone(uint64_t offset) const {
  if (offset < lwm_) return true;
  auto it = ranges_.upper_bound(offset);
  if (it == ranges_.begin()) return false;
  --it;
  return offset < it->second;
}

uint64_t CommittedOffsets::done_above() const {
  uint64_t n = 0;
  for (const auto& [b, e] : ranges_) n += e - b;
  return n;
}

std::string CommittedOffsets::Encode() const {
  std::string out;
  PutVarint64(&out, lwm_);
  PutVarint64(&out, ranges_.size());
  uint64_t prev = lwm_;
  for (const auto& [b, e] : ranges_) {
    PutVarint64(&out, b - prev);
    PutVarint64(&out, e - b);
    prev = e;
  }
  return out;
}

Result<CommittedOffsets> CommittedOffsets::Decode(std::string_view value) {
  Decoder d(value);
  CommittedOffsets out;
  uint64_t n = 0;
  if (!d.GetVarint64(&out.lwm_) || !d.GetVarint64(&n)) {
    return InvalidArgument("committed offsets: truncated header");
  }
  uint64_t prev = out.lwm_;
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t gap = 0, len = 0;
    // Ranges are disjoint, non-adjacent and above the mark: no gap or length is 0.
    if (!d.GetVarint64(&gap) || !d.GetVarint64(&len) || len == 0 || gap == 0) {
      return InvalidArgument("committed offsets: corrupt range");
    }
    uint64_t b = prev + gap;
    out.ranges_.emplace(b, b + len);
    prev = b + len;
  }
  if (!d.empty()) return InvalidArgument("committed offsets: trailing bytes");
  return out;
}

}  // namespace fairway::engine
