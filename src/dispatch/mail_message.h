#pragma once
// The RFC 5322 message of an email delivery: what the dispatcher uploads after SMTP DATA.
// Internal to dispatch; pure functions, thread-safe.

#include <cstdint>
#include <string>
#include <string_view>

#include "dispatch/delivery.h"

namespace fairway::dispatch {

// The whole message, headers and body, with CRLF line endings and a final CRLF:
// Date (from `now_ms`, UTC), From, To, Subject (RFC 2047 encoded when not plain ASCII),
// Message-ID (MessageIdFor), X-Fairway-Idempotency-Key, MIME-Version, Content-Type text/plain;
// charset=UTF-8, and Content-Transfer-Encoding 7bit (ASCII with lines of at most 998 bytes) or
// quoted-printable (anything else). SMTP dot-stuffing is left to the transport (libcurl does it).
// Requires: ValidateDelivery(d) is OK and d.kind is kEmail.
std::string BuildMailMessage(const Delivery& d, int64_t now_ms);

// `<...@fairway>` built from the delivery id: the same id always gives the same Message-ID, and
// different ids give different ones (characters outside RFC 5322 dot-atom-text, and `=`, are
// written as `=XX`).
std::string MessageIdFor(std::string_view id);

// The value of an unstructured header (Subject): as is when it is printable ASCII without "=?";
// otherwise RFC 2047 "B" encoded words of at most 75 characters, split on UTF-8 character
// boundaries and folded with CRLF SP.
std::string EncodeHeaderText(std::string_view utf8);

// RFC 5322 date-time in UTC: "Tue, 14 Nov 2023 22:13:20 +0000".
std::string FormatMailDate(int64_t ms);

// Body text with every line break (CRLF, CR or LF) turned into CRLF and a final CRLF. Sets
// `*quoted_printable` and encodes the text when it is not 7-bit ASCII with short lines.
std::string EncodeMailBody(std::string_view text, bool* quoted_printable);

}  // namespace fairway::dispatch
