#pragma once
// ASCII text helpers: lower-casing for names that compare case-insensitively (header values,
// URL schemes and hosts, origins), whatever the locale.

#include <string>
#include <string_view>

namespace fairway {

inline std::string AsciiLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

}  // namespace fairway
