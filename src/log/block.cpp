#include "log/block.h"

#include <lz4.h>

#include "common/coding.h"

namespace fairway::log {

namespace {
constexpr uint8_t kBlockVersion = 1;
constexpr uint8_t kCodecNone = 0;
constexpr uint8_t kCodecLz4 = 1;
}  // namespace

void BlockBuilder::Add(std::string_view record, int64_t received_at_ms) {
  PutLengthPrefixed(&payload_, record);
  ++count_;
  if (received_at_ms > max_received_at_ms_) max_received_at_ms_ = received_at_ms;
}

std::string BlockBuilder::Finish(size_t compress_min_bytes) {
  std::string out;
  std::string compressed;
  uint8_t codec = kCodecNone;
  if (payload_.size() >= compress_min_bytes) {
    int bound = LZ4_compressBound(static_cast<int>(payload_.size()));
    compressed.resize(static_cast<size_t>(bound));
    int n = LZ4_compress_default(payload_.data(), compressed.data(),
                                 static_cast<int>(payload_.size()), bound);
    if (n > 0 && static_cast<size_t>(n) < payload_.size() * 9 / 10) {
      compressed.resize(static_cast<size_t>(n));
      codec = kCodecLz4;
    }
  }
  const std::string& body = codec == kCodecLz4 ? compressed : payload_;
  out.reserve(body.size() + 24);
  out.push_back(static_cast<char>(kBlockVersion));
  out.push_back(static_cast<char>(codec));
  PutVarint64(&out, count_);
  PutVarintSigned64(&out, max_received_at_ms_);
  PutVarint64(&out, payload_.size());
  out.append(body);
  return out;
}

namespace {

Status ParseHeader(Decoder* d, BlockHeader* h, uint8_t* codec, uint64_t* raw_size) {
  uint8_t version;
  uint64_t count;
  if (!d->GetByte(&version) || version != kBlockVersion || !d->GetByte(codec) ||
      !d->GetVarint64(&count) || !d->GetVarintSigned64(&h->max_received_at_ms) ||
      !d->GetVarint64(raw_size) || count > UINT32_MAX) {
    return Internal("log block: corrupt header");
  }
  h->count = static_cast<uint32_t>(count);
  return Status::Ok();
}

}  // namespace

Result<BlockHeader> ReadBlockHeader(std::string_view block) {
  Decoder d(block);
  BlockHeader h;
  uint8_t codec;
  uint64_t raw_size;
  FAIRWAY_RETURN_IF_ERROR(ParseHeader(&d, &h, &codec, &raw_size));
  return h;
}

Status DecodeBlock(std::string_view block, std::string* scratch,
                   std::vector<std::string_view>* records) {
  Decoder d(block);
  BlockHeader h;
  uint8_t codec;
  uint64_t raw_size;
  FAIRWAY_RETURN_IF_ERROR(ParseHeader(&d, &h, &codec, &raw_size));
  std::string_view payload = d.rest();
  if (codec == kCodecLz4) {
    // LZ4 expands at most ~255:1, so a larger raw size is corruption, not a reason to allocate
    // up to a gigabyte for a block of a few bytes.
    if (raw_size > (1u << 30) || raw_size > payload.size() * 255 + 64) {
      return Internal("log block: implausible size");
    }
    scratch->resize(raw_size);
    int n = LZ4_decompress_safe(payload.data(), scratch->data(), static_cast<int>(payload.size()),
                                static_cast<int>(raw_size));
    if (n < 0 || static_cast<uint64_t>(n) != raw_size) {
      return Internal("log block: corrupt compressed payload");
    }
    payload = *scratch;
  } else if (codec != kCodecNone) {
    return Internal("log block: unknown codec");
  }
  // Every record takes at least its one-byte length: a larger count is corruption (and must
  // not size the reservation below).
  if (h.count > payload.size()) return Internal("log block: count exceeds payload");
  records->clear();
  records->reserve(h.count);
  Decoder p(payload);
  for (uint32_t i = 0; i < h.count; ++i) {
    std::string_view r;
    if (!p.GetLengthPrefixed(&r)) return Internal("log block: truncated record");
    records->push_back(r);
  }
  return Status::Ok();
}

}  // namespace fairway::log
