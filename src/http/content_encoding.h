#pragma once
// Request bodies sent compressed (`Content-Encoding: gzip` or `deflate`, as Segment's
// libraries can send them): which encodings are understood, and inflating one within a size
// limit so that a small compressed body cannot expand without bound.

#include <cstddef>
#include <string>
#include <string_view>

#include "common/status.h"

namespace fairway::http {

enum class ContentEncoding { kIdentity, kGzip, kDeflate, kUnsupported };

// The encoding named by a Content-Encoding header value (case-insensitive; empty and
// "identity" are kIdentity; "x-gzip" is kGzip). A list of several encodings is kUnsupported.
ContentEncoding ParseContentEncoding(std::string_view header);

// Inflates `body` (gzip, or deflate: zlib-wrapped or raw). TooLarge when the result would be
// longer than `max_bytes`; InvalidArgument when the data is not valid for the encoding.
Result<std::string> DecodeBody(ContentEncoding encoding, std::string_view body, size_t max_bytes);

}  // namespace fairway::http
