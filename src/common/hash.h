#pragma once
// Stable 64-bit hashing. The value of Hash64 is part of the on-disk format (it picks a lead's
// partition), so it must never change.

#include <cstdint>
#include <string_view>

namespace fairway {

// FNV-1a over the bytes, finished with a murmur3 avalanche so low bits are well mixed.
constexpr uint64_t Hash64(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

}  // namespace fairway
