#include "dispatch/mail_message.h"

#include <fmt/format.h>

#include <cctype>
#include <ctime>
#include <vector>

#include "common/crypto.h"

namespace fairway::dispatch {
namespace {

constexpr char kHexUpper[] = "0123456789ABCDEF";

bool IsAtext(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) ||
         std::string_view("!#$%&'*+-/?^_`{|}~").find(c) != std::string_view::npos;
}

void AppendHexEscape(std::string* out, char c) {
  auto u = static_cast<unsigned char>(c);
  out->push_back('=');
  out->push_back(kHexUpper[u >> 4]);
  out->push_back(kHexUpper[u & 0xf]);
}

// Splits text into lines at CRLF, CR or LF. A trailing line break does not start a new line.
std::vector<std::string_view> SplitLines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\r' || text[i] == '\n') {
      lines.push_back(text.substr(start, i - start));
      if (text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      start = i + 1;
    }
  }
  if (start < text.size() || lines.empty()) lines.push_back(text.substr(start));
  return lines;
}

// Quoted-printable (RFC 2045 section 6.7) of one line, with soft line breaks so no encoded line
// exceeds 76 characters.
void AppendQuotedPrintableLine(std::string* out, std::string_view line) {
  size_t column = 0;
  for (size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    auto u = static_cast<unsigned char>(c);
    bool last = i + 1 == line.size();
    bool literal = (u >= 33 && u <= 126 && c != '=') || ((c == ' ' || c == '\t') && !last);
    size_t width = literal ? 1 : 3;
    // Leave room for the soft break "=" unless this is the line's last character.
    if (column + width > (last ? 76u : 75u)) {
      out->append("=\r\n");
      column = 0;
    }
    if (literal) {
      out->push_back(c);
    } else {
      AppendHexEscape(out, c);
    }
    column += width;
  }
  out->append("\r\n");
}

}  // namespace

std::string MessageIdFor(std::string_view id) {
  std::string out = "<";
  for (size_t i = 0; i < id.size(); ++i) {
    char c = id[i];
    // dot-atom-text: no leading, trailing or doubled dots.
    bool dot_ok = c == '.' && i > 0 && i + 1 < id.size() && id[i - 1] != '.';
    if (IsAtext(c) || dot_ok) {
      out.push_back(c);
    } else {
      AppendHexEscape(&out, c);
    }
  }
  out += "@fairway>";
  return out;
}

std::string EncodeHeaderText(std::string_view utf8) {
  bool plain = utf8.find("=?") == std::string_view::npos;
  for (char c : utf8) {
    auto u = static_cast<unsigned char>(c);
    if (!((u >= 0x20 && u < 0x7f) || c == '\t')) plain = false;
  }
  if (plain) return std::string(utf8);
  // "=?UTF-8?B?" + base64 + "?=" stays within 75 characters with 45 input bytes (60 base64).
  constexpr size_t kChunkBytes = 45;
  std::string out;
  size_t pos = 0;
  while (pos < utf8.size()) {
    size_t end = std::min(pos + kChunkBytes, utf8.size());
    // Never split a multi-byte character: back up over continuation bytes.
    while (end < utf8.size() && end > pos + 1 &&
           (static_cast<unsigned char>(utf8[end]) & 0xC0) == 0x80) {
      --end;
    }
    if (!out.empty()) out += "\r\n ";
    out += "=?UTF-8?B?";
    out += Base64Encode(utf8.substr(pos, end - pos));
    out += "?=";
    pos = end;
  }
  return out;
}

std::string FormatMailDate(int64_t ms) {
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{}, {:02d} {} {:04d} {:02d}:{:02d}:{:02d} +0000", kDays[tm.tm_wday],
                     tm.tm_mday, kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                     tm.tm_sec);
}

std::string EncodeMailBody(std::string_view text, bool* quoted_printable) {
  std::vector<std::string_view> lines = SplitLines(text);
  bool seven_bit = true;
  for (std::string_view line : lines) {
    if (line.size() > 998) seven_bit = false;
    for (char c : line) {
      auto u = static_cast<unsigned char>(c);
      if (u >= 0x80 || u == 0) seven_bit = false;
    }
  }
  *quoted_printable = !seven_bit;
  std::string out;
  out.reserve(text.size() + text.size() / 8 + 2);
  for (std::string_view line : lines) {
    if (seven_bit) {
      out.append(line);
      out.append("\r\n");
    } else {
      AppendQuotedPrintableLine(&out, line);
    }
  }
  return out;
}

std::string BuildMailMessage(const Delivery& d, int64_t now_ms) {
  bool qp = false;
  std::string body = EncodeMailBody(d.text_body, &qp);
  std::string m;
  m.reserve(512 + body.size());
  m += "Date: " + FormatMailDate(now_ms) + "\r\n";
  m += "From: " + d.mail_from + "\r\n";
  m += "To: " + d.mail_to + "\r\n";
  m += "Subject: " + EncodeHeaderText(d.subject) + "\r\n";
  m += "Message-ID: " + MessageIdFor(d.id) + "\r\n";
  m += "X-Fairway-Idempotency-Key: " + d.id + "\r\n";
  m += "MIME-Version: 1.0\r\n";
  m += "Content-Type: text/plain; charset=UTF-8\r\n";
  m += std::string("Content-Transfer-Encoding: ") + (qp ? "quoted-printable" : "7bit") + "\r\n";
  m += "\r\n";
  m += body;
  return m;
}

}  // namespace fairway::dispatch
