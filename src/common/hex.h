#pragma once
// Lower-case hexadecimal encoding of bytes, for opaque cursors and digests. Pure functions:
// thread-safe.

#include <optional>
#include <string>
#include <string_view>

namespace fairway {

// Two lower-case hex digits per byte of `in` ("\x01\xab" -> "01ab").
std::string HexEncode(std::string_view in);

// The bytes of a HexEncode output. nullopt when `in` has an odd length or a character other than
// 0-9 and a-f (upper case is refused: a decoded cursor must encode back to itself).
std::optional<std::string> HexDecode(std::string_view in);

}  // namespace fairway
