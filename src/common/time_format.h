#pragma once
// ISO 8601 / RFC 3339 timestamps as Segment clients send them
// ("2024-01-02T03:04:05.678Z", "2024-01-02T03:04:05+02:00", "2024-01-02").

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace fairway {

// Parses an ISO 8601 date-time into milliseconds since the Unix epoch. Accepts a date alone
// (midnight UTC), 'T' or ' ' as separator, optional seconds and fraction, and 'Z' or +hh:mm /
// +hhmm offsets (no offset means UTC). Returns nullopt on anything else.
std::optional<int64_t> ParseIso8601Millis(std::string_view s);

// Formats milliseconds since the epoch as "YYYY-MM-DDTHH:MM:SS.mmmZ".
std::string FormatIso8601Millis(int64_t ms);

// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d);

}  // namespace fairway
