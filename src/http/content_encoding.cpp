#include "http/content_encoding.h"

#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>

#include "common/ascii.h"

namespace fairway::http {

namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Inflates with the given zlib window bits (16 + 15: gzip, 15: zlib, -15: raw deflate).
Result<std::string> Inflate(std::string_view in, int window_bits, size_t max_bytes,
                            std::string_view name) {
  z_stream zs{};
  if (inflateInit2(&zs, window_bits) != Z_OK) return Internal("zlib: inflateInit2 failed");
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  std::string out;
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    if (out.size() > max_bytes) break;
    // Room for one byte past the limit, so that reaching it is noticed.
    size_t room = std::min<size_t>(64 * 1024, max_bytes + 1 - out.size());
    size_t used = out.size();
    out.resize(used + room);
    zs.next_out = reinterpret_cast<Bytef*>(out.data() + used);
    zs.avail_out = static_cast<uInt>(room);
    rc = inflate(&zs, Z_NO_FLUSH);
    out.resize(used + room - zs.avail_out);
    if (rc == Z_STREAM_END) break;
    if (rc != Z_OK && !(rc == Z_BUF_ERROR && zs.avail_out == 0)) {
      inflateEnd(&zs);
      return InvalidArgument(fmt::format("request body is not valid {} data", name));
    }
    if (zs.avail_in == 0 && zs.avail_out != 0) {
      inflateEnd(&zs);
      return InvalidArgument(fmt::format("request body is truncated {} data", name));
    }
  }
  const bool trailing = rc == Z_STREAM_END && zs.avail_in != 0;
  inflateEnd(&zs);
  if (out.size() > max_bytes) {
    return TooLarge(
        fmt::format("decoded request body is larger than the limit of {} bytes", max_bytes));
  }
  if (trailing) {
    // A second gzip member or bytes after the stream: refuse rather than drop data silently.
    return InvalidArgument(
        fmt::format("request body has data after the end of its {} stream", name));
  }
  return out;
}

}  // namespace

ContentEncoding ParseContentEncoding(std::string_view header) {
  std::string v = AsciiLower(Trim(header));
  if (v.empty() || v == "identity") return ContentEncoding::kIdentity;
  if (v == "gzip" || v == "x-gzip") return ContentEncoding::kGzip;
  if (v == "deflate") return ContentEncoding::kDeflate;
  return ContentEncoding::kUnsupported;
}

Result<std::string> DecodeBody(ContentEncoding encoding, std::string_view body, size_t max_bytes) {
  switch (encoding) {
    case ContentEncoding::kIdentity:
      return std::string(body);
    case ContentEncoding::kGzip:
      return Inflate(body, 16 + MAX_WBITS, max_bytes, "gzip");
    case ContentEncoding::kDeflate: {
      // RFC 9110 deflate is zlib-wrapped; some clients send raw deflate. A zlib stream starts
      // with a header whose first two bytes, read big-endian, are a multiple of 31.
      bool zlib_wrapped =
          body.size() >= 2 && (static_cast<uint8_t>(body[0]) & 0x0f) == 8 &&
          ((static_cast<uint8_t>(body[0]) << 8) | static_cast<uint8_t>(body[1])) % 31 == 0;
      return Inflate(body, zlib_wrapped ? MAX_WBITS : -MAX_WBITS, max_bytes, "deflate");
    }
    case ContentEncoding::kUnsupported:
      break;
  }
  return InvalidArgument("unsupported Content-Encoding");
}

}  // namespace fairway::http
