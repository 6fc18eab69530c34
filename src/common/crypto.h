#pragma once
// Small cryptographic helpers on OpenSSL: key generation, hashing of stored secrets, message
// authentication codes, base64.

#include <optional>
#include <string>
#include <string_view>

namespace fairway {

// Hex SHA-256 of `data`. Secrets (API keys, write keys) are stored only as this digest.
std::string Sha256Hex(std::string_view data);

// Lower-case hex HMAC-SHA256 (RFC 2104) of `data` under `key` (any length). Signs outgoing
// webhooks so receivers can check that a request came from Fairway and was not altered.
std::string HmacSha256Hex(std::string_view key, std::string_view data);

// A random token of `bytes` bytes of entropy from the OS CSPRNG, base64url without padding,
// prefixed with `prefix` ("wk_", "ak_").
std::string RandomToken(std::string_view prefix, size_t bytes = 24);

// Standard base64 decoding (RFC 4648, padding optional). nullopt on invalid input.
std::optional<std::string> Base64Decode(std::string_view in);
std::string Base64Encode(std::string_view in);

// Compares two strings in time independent of where they differ.
bool ConstantTimeEquals(std::string_view a, std::string_view b);

}  // namespace fairway
