#pragma once
// The on-disk block of the embedded log: the records one group commit appended to one tenant
// partition, stored under one key and LZ4-compressed when that pays. Contiguous offsets
// [base, base + count) are implied by the key and the count.
//
// Layout: version(1) codec(1) count(varint) max_received_at(zigzag varint)
//         raw_size(varint) payload; payload = count x (len(varint) record).

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace fairway::log {

struct BlockHeader {
  uint32_t count = 0;
  int64_t max_received_at_ms = 0;
};

// Builds one block from encoded records.
class BlockBuilder {
 public:
  void Add(std::string_view record, int64_t received_at_ms);
  // Returns the finished block; compresses with LZ4 when the payload is at least
  // `compress_min_bytes` and compression saves space.
  std::string Finish(size_t compress_min_bytes);
  uint32_t count() const { return count_; }

 private:
  std::string payload_;
  uint32_t count_ = 0;
  int64_t max_received_at_ms_ = INT64_MIN;
};

// Reads only the uncompressed header.
Result<BlockHeader> ReadBlockHeader(std::string_view block);
// Decodes all records; views point into `*scratch` or `block`.
Status DecodeBlock(std::string_view block, std::string* scratch,
                   std::vector<std::string_view>* records);

}  // namespace fairway::log
