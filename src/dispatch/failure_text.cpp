#include "dispatch/failure_text.h"

#include <fmt/format.h>

#include <iterator>
#include <string_view>

namespace fairway::dispatch {
namespace {

struct Reason {
  long code;
  std::string_view text;
};

// RFC 9110 and the IANA HTTP status code registry.
constexpr Reason kHttpReasons[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {103, "Early Hints"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {203, "Non-Authoritative Information"},
    {204, "No Content"},
    {205, "Reset Content"},
    {206, "Partial Content"},
    {300, "Multiple Choices"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {304, "Not Modified"},
    {305, "Use Proxy"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {402, "Payment Required"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {407, "Proxy Authentication Required"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {412, "Precondition Failed"},
    {413, "Content Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {416, "Range Not Satisfiable"},
    {417, "Expectation Failed"},
    {421, "Misdirected Request"},
    {422, "Unprocessable Content"},
    {423, "Locked"},
    {424, "Failed Dependency"},
    {425, "Too Early"},
    {426, "Upgrade Required"},
    {428, "Precondition Required"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {451, "Unavailable For Legal Reasons"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
    {506, "Variant Also Negotiates"},
    {507, "Insufficient Storage"},
    {508, "Loop Detected"},
    {510, "Not Extended"},
    {511, "Network Authentication Required"},
};

// RFC 5321 section 4.2.3 and RFC 4954 (AUTH).
constexpr Reason kSmtpReasons[] = {
    {421, "service not available"},
    {432, "password transition needed"},
    {450, "mailbox unavailable"},
    {451, "local error in processing"},
    {452, "insufficient system storage"},
    {454, "temporary authentication failure"},
    {455, "server unable to accommodate parameters"},
    {500, "syntax error, command unrecognized"},
    {501, "syntax error in parameters or arguments"},
    {502, "command not implemented"},
    {503, "bad sequence of commands"},
    {504, "command parameter not implemented"},
    {521, "server does not accept mail"},
    {523, "message too large"},
    {530, "authentication required"},
    {534, "authentication mechanism is too weak"},
    {535, "authentication credentials invalid"},
    {538, "encryption required for the authentication mechanism"},
    {550, "mailbox unavailable"},
    {551, "user not local"},
    {552, "exceeded storage allocation"},
    {553, "mailbox name not allowed"},
    {554, "transaction failed"},
    {555, "MAIL FROM/RCPT TO parameters not recognized or not implemented"},
    {556, "domain does not accept mail"},
};

std::string WithReason(std::string_view protocol, long code, const Reason* begin,
                       const Reason* end) {
  std::string_view reason;
  for (const Reason* r = begin; r != end; ++r) {
    if (r->code == code) reason = r->text;
  }
  return reason.empty() ? fmt::format("{} {}", protocol, code)
                        : fmt::format("{} {} {}", protocol, code, reason);
}

}  // namespace

std::string HttpFailureText(long code) {
  return WithReason("HTTP", code, std::begin(kHttpReasons), std::end(kHttpReasons));
}

std::string SmtpFailureText(long code) {
  return WithReason("SMTP", code, std::begin(kSmtpReasons), std::end(kSmtpReasons));
}

}  // namespace fairway::dispatch
