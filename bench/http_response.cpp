#include "http_response.h"

#include <charconv>
#include <cstdint>

namespace fairway::bench {
namespace {

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i] >= 'A' && a[i] <= 'Z' ? static_cast<char>(a[i] + 32) : a[i];
    char y = b[i] >= 'A' && b[i] <= 'Z' ? static_cast<char>(b[i] + 32) : b[i];
    if (x != y) return false;
  }
  return true;
}

bool ContainsIgnoreCase(std::string_view haystack, std::string_view needle) {
  if (needle.size() > haystack.size()) return false;
  for (size_t i = 0; i + needle.size() <= haystack.size(); ++i) {
    if (EqualsIgnoreCase(haystack.substr(i, needle.size()), needle)) return true;
  }
  return false;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Decodes a chunked body starting at `pos`; returns the end offset, 0 if incomplete, -1 if bad.
ptrdiff_t ParseChunked(std::string_view in, size_t pos, std::string* body) {
  body->clear();
  for (;;) {
    size_t line_end = in.find("\r\n", pos);
    if (line_end == std::string_view::npos) return 0;
    std::string_view size_text = in.substr(pos, line_end - pos);
    size_t semicolon = size_text.find(';');
    if (semicolon != std::string_view::npos) size_text = size_text.substr(0, semicolon);
    size_text = Trim(size_text);
    uint64_t size = 0;
    auto [ptr, ec] =
        std::from_chars(size_text.data(), size_text.data() + size_text.size(), size, 16);
    if (ec != std::errc() || ptr != size_text.data() + size_text.size()) return -1;
    pos = line_end + 2;
    if (size == 0) {
      // Trailers, then an empty line.
      for (;;) {
        size_t end = in.find("\r\n", pos);
        if (end == std::string_view::npos) return 0;
        bool empty = end == pos;
        pos = end + 2;
        if (empty) return static_cast<ptrdiff_t>(pos);
      }
    }
    if (in.size() < pos + size + 2) return 0;
    body->append(in.substr(pos, size));
    pos += size;
    if (in.substr(pos, 2) != "\r\n") return -1;
    pos += 2;
  }
}

}  // namespace

ptrdiff_t ParseHttpResponse(std::string_view in, bool eof, HttpResponse* out) {
  size_t head_end = in.find("\r\n\r\n");
  if (head_end == std::string_view::npos) {
    return in.size() >= 5 && in.substr(0, 5) != "HTTP/" ? -1 : 0;
  }
  std::string_view head = in.substr(0, head_end);
  size_t line_end = head.find("\r\n");
  std::string_view status_line = head.substr(0, line_end);
  if (status_line.size() < 12 || status_line.substr(0, 5) != "HTTP/") return -1;
  int status = 0;
  auto [ptr, ec] = std::from_chars(status_line.data() + 9, status_line.data() + 12, status);
  if (ec != std::errc() || ptr != status_line.data() + 12) return -1;

  bool http10 = status_line.substr(0, 8) == "HTTP/1.0";
  bool close = http10;
  bool chunked = false;
  bool has_length = false;
  uint64_t length = 0;
  size_t pos = line_end == std::string_view::npos ? head.size() : line_end + 2;
  while (pos < head.size()) {
    size_t end = head.find("\r\n", pos);
    if (end == std::string_view::npos) end = head.size();
    std::string_view line = head.substr(pos, end - pos);
    pos = end + 2;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view name = Trim(line.substr(0, colon));
    std::string_view value = Trim(line.substr(colon + 1));
    if (EqualsIgnoreCase(name, "content-length")) {
      auto [p, e] = std::from_chars(value.data(), value.data() + value.size(), length);
      if (e != std::errc() || p != value.data() + value.size()) return -1;
      has_length = true;
    } else if (EqualsIgnoreCase(name, "transfer-encoding")) {
      chunked = ContainsIgnoreCase(value, "chunked");
    } else if (EqualsIgnoreCase(name, "connection")) {
      if (ContainsIgnoreCase(value, "close")) close = true;
      if (ContainsIgnoreCase(value, "keep-alive")) close = false;
    }
  }

  size_t body_start = head_end + 4;
  if (status >= 100 && status < 200) {
    // Interim answer (100 Continue): the real one follows.
    ptrdiff_t rest = ParseHttpResponse(in.substr(body_start), eof, out);
    return rest <= 0 ? rest : static_cast<ptrdiff_t>(body_start) + rest;
  }
  out->status = status;
  out->close = close;
  if (status == 204 || status == 304) {
    out->body.clear();
    return static_cast<ptrdiff_t>(body_start);
  }
  if (chunked) return ParseChunked(in, body_start, &out->body);
  if (has_length) {
    if (in.size() < body_start + length) return 0;
    out->body.assign(in.substr(body_start, length));
    return static_cast<ptrdiff_t>(body_start + length);
  }
  // No framing: the body runs until the server closes.
  if (!eof) return 0;
  out->body.assign(in.substr(body_start));
  out->close = true;
  return static_cast<ptrdiff_t>(in.size());
}

}  // namespace fairway::bench
