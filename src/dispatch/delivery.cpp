#include "dispatch/delivery.h"

#include <curl/curl.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <memory>

#include "common/ascii.h"
#include "common/coding.h"

namespace fairway::dispatch {
namespace {

constexpr uint8_t kFormatVersion = 1;

bool IEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

bool HasLineBreak(std::string_view s) { return s.find_first_of("\r\n") != std::string_view::npos; }

// True when `s` holds no ASCII control character (tab allowed when `allow_tab`).
bool NoControls(std::string_view s, bool allow_tab) {
  return std::all_of(s.begin(), s.end(), [allow_tab](char c) {
    auto u = static_cast<unsigned char>(c);
    return (u >= 0x20 && u != 0x7f) || (allow_tab && c == '\t');
  });
}

// RFC 9110 token characters (header names).
bool IsTchar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// RFC 5322 atext.
bool IsAtext(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) ||
         std::string_view("!#$%&'*+-/=?^_`{|}~").find(c) != std::string_view::npos;
}

// A bare addr-spec: dot-atom local part, `@`, a DNS name (or an [IPv4] literal). ASCII only:
// the dispatcher does not negotiate SMTPUTF8.
bool IsMailAddress(std::string_view a) {
  if (a.empty() || a.size() > kMaxAddressBytes) return false;
  size_t at = a.rfind('@');
  if (at == std::string_view::npos || at == 0 || at + 1 == a.size()) return false;
  std::string_view local = a.substr(0, at), domain = a.substr(at + 1);
  if (local.size() > 64 || local.front() == '.' || local.back() == '.' ||
      local.find("..") != std::string_view::npos) {
    return false;
  }
  if (!std::all_of(local.begin(), local.end(), [](char c) { return IsAtext(c) || c == '.'; })) {
    return false;
  }
  if (domain.size() >= 2 && domain.front() == '[' && domain.back() == ']') {
    std::string_view ip = domain.substr(1, domain.size() - 2);
    return !ip.empty() && std::all_of(ip.begin(), ip.end(), [](char c) {
      return std::isdigit(static_cast<unsigned char>(c)) || c == '.';
    });
  }
  if (domain.front() == '.' || domain.back() == '.' || domain.front() == '-' ||
      domain.find("..") != std::string_view::npos) {
    return false;
  }
  return std::all_of(domain.begin(), domain.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.';
  });
}

// Headers the dispatcher writes itself or that curl must control; a row may not set them.
constexpr std::array<std::string_view, 8> kReservedHeaders = {
    "Idempotency-Key", "X-Fairway-Signature", "User-Agent", "Host",
    "Content-Length",  "Transfer-Encoding",   "Expect",     "Connection",
};

struct UrlDeleter {
  void operator()(CURLU* u) const { curl_url_cleanup(u); }
};
struct CurlStringDeleter {
  void operator()(char* p) const { curl_free(p); }
};

std::string GetUrlPart(CURLU* u, CURLUPart part, unsigned flags) {
  char* raw = nullptr;
  if (curl_url_get(u, part, &raw, flags) != CURLUE_OK || raw == nullptr) return {};
  std::unique_ptr<char, CurlStringDeleter> owned(raw);
  return std::string(raw);
}

Status CheckLabel(std::string_view name, std::string_view value) {
  if (value.size() > kMaxLabelBytes) {
    return InvalidArgument(fmt::format("field '{}' is longer than {} bytes", name, kMaxLabelBytes));
  }
  if (!NoControls(value, /*allow_tab=*/false)) {
    return InvalidArgument(fmt::format("field '{}' contains a control character", name));
  }
  return Status::Ok();
}

Status ValidateWebhook(const Delivery& d) {
  static constexpr std::array<std::string_view, 5> kMethods = {"GET", "POST", "PUT", "PATCH",
                                                               "DELETE"};
  if (std::find(kMethods.begin(), kMethods.end(), d.method) == kMethods.end()) {
    return InvalidArgument(
        "field 'method' must be one of GET, POST, PUT, PATCH, DELETE (upper case)");
  }
  if (d.url.size() > kMaxUrlBytes) {
    return InvalidArgument(fmt::format("field 'url' is longer than {} bytes", kMaxUrlBytes));
  }
  auto origin = WebhookOrigin(d.url);
  if (!origin.ok()) return origin.status();
  if (d.headers.size() > kMaxHeaders) {
    return InvalidArgument(fmt::format("field 'headers' has more than {} entries", kMaxHeaders));
  }
  for (const auto& [name, value] : d.headers) {
    if (name.empty() || !std::all_of(name.begin(), name.end(), IsTchar)) {
      return InvalidArgument(
          fmt::format("field 'header name' is not a valid HTTP header name: '{}'",
                      NoControls(name, false) ? name : "<control characters>"));
    }
    for (std::string_view reserved : kReservedHeaders) {
      if (IEquals(name, reserved)) {
        return InvalidArgument(fmt::format(
            "field 'header name': '{}' is set by the dispatcher and cannot be given", name));
      }
    }
    if (HasLineBreak(value) || !NoControls(value, /*allow_tab=*/true)) {
      return InvalidArgument(fmt::format(
          "field 'header {}' contains a line break or control character (header injection)", name));
    }
    if (value.size() > kMaxHeaderValueBytes) {
      return InvalidArgument(
          fmt::format("field 'header {}' is longer than {} bytes", name, kMaxHeaderValueBytes));
    }
  }
  if (d.body.size() > kMaxBodyBytes) {
    return InvalidArgument(fmt::format("field 'body' is longer than {} bytes", kMaxBodyBytes));
  }
  return Status::Ok();
}

Status ValidateEmail(const Delivery& d) {
  for (auto [name, value] :
       {std::pair<std::string_view, std::string_view>{"mail_from", d.mail_from},
        {"mail_to", d.mail_to}}) {
    if (HasLineBreak(value)) {
      return InvalidArgument(
          fmt::format("field '{}' contains a line break (header injection)", name));
    }
    if (!IsMailAddress(value)) {
      return InvalidArgument(
          fmt::format("field '{}' is not a valid email address (local@domain)", name));
    }
  }
  if (HasLineBreak(d.subject)) {
    return InvalidArgument("field 'subject' contains a line break (header injection)");
  }
  if (!NoControls(d.subject, /*allow_tab=*/true)) {
    return InvalidArgument("field 'subject' contains a control character");
  }
  if (d.subject.size() > kMaxSubjectBytes) {
    return InvalidArgument(
        fmt::format("field 'subject' is longer than {} bytes", kMaxSubjectBytes));
  }
  if (d.text_body.size() > kMaxBodyBytes) {
    return InvalidArgument(fmt::format("field 'text_body' is longer than {} bytes", kMaxBodyBytes));
  }
  return Status::Ok();
}

Status Corrupt(std::string_view what) {
  return InvalidArgument(fmt::format("delivery record is corrupt: {}", what));
}

}  // namespace

const char* DeliveryKindName(DeliveryKind kind) {
  switch (kind) {
    case DeliveryKind::kWebhook:
      return "webhook";
    case DeliveryKind::kEmail:
      return "email";
  }
  return "unknown";
}

std::string EncodeDelivery(const Delivery& d) {
  std::string out;
  out.reserve(64 + d.id.size() + d.url.size() + d.body.size() + d.text_body.size());
  out.push_back(static_cast<char>(kFormatVersion));
  // State first: PeekNextAttempt reads only these.
  PutVarintSigned64(&out, d.next_attempt_ms);
  PutVarint64(&out, d.attempts);
  PutVarintSigned64(&out, d.last_attempt_ms);
  PutVarintSigned64(&out, d.dead_at_ms);
  PutLengthPrefixed(&out, d.last_error);
  out.push_back(static_cast<char>(d.kind));
  PutLengthPrefixed(&out, d.id);
  PutLengthPrefixed(&out, d.purpose);
  PutLengthPrefixed(&out, d.source);
  PutVarintSigned64(&out, d.created_ms);
  PutLengthPrefixed(&out, d.method);
  PutLengthPrefixed(&out, d.url);
  PutVarint64(&out, d.headers.size());
  for (const auto& [name, value] : d.headers) {
    PutLengthPrefixed(&out, name);
    PutLengthPrefixed(&out, value);
  }
  PutLengthPrefixed(&out, d.body);
  PutLengthPrefixed(&out, d.mail_from);
  PutLengthPrefixed(&out, d.mail_to);
  PutLengthPrefixed(&out, d.subject);
  PutLengthPrefixed(&out, d.text_body);
  return out;
}

Result<int64_t> PeekNextAttempt(std::string_view in) {
  Decoder dec(in);
  uint8_t version = 0;
  int64_t next = 0;
  if (!dec.GetByte(&version)) return Corrupt("empty");
  if (version != kFormatVersion) return Corrupt(fmt::format("unknown version {}", version));
  if (!dec.GetVarintSigned64(&next)) return Corrupt("truncated state");
  return next;
}

Result<Delivery> DecodeDelivery(std::string_view in) {
  Decoder dec(in);
  Delivery d;
  uint8_t version = 0, kind = 0;
  uint64_t attempts = 0, header_count = 0;
  std::string_view last_error, id, purpose, source, method, url, body, from, to, subject, text;
  if (!dec.GetByte(&version)) return Corrupt("empty");
  if (version != kFormatVersion) return Corrupt(fmt::format("unknown version {}", version));
  if (!dec.GetVarintSigned64(&d.next_attempt_ms) || !dec.GetVarint64(&attempts) ||
      !dec.GetVarintSigned64(&d.last_attempt_ms) || !dec.GetVarintSigned64(&d.dead_at_ms) ||
      !dec.GetLengthPrefixed(&last_error) || !dec.GetByte(&kind)) {
    return Corrupt("truncated state");
  }
  if (attempts > UINT32_MAX) return Corrupt("attempts out of range");
  if (kind != static_cast<uint8_t>(DeliveryKind::kWebhook) &&
      kind != static_cast<uint8_t>(DeliveryKind::kEmail)) {
    return Corrupt(fmt::format("unknown kind {}", kind));
  }
  if (!dec.GetLengthPrefixed(&id) || !dec.GetLengthPrefixed(&purpose) ||
      !dec.GetLengthPrefixed(&source) || !dec.GetVarintSigned64(&d.created_ms) ||
      !dec.GetLengthPrefixed(&method) || !dec.GetLengthPrefixed(&url) ||
      !dec.GetVarint64(&header_count)) {
    return Corrupt("truncated header");
  }
  // Each header takes at least two bytes: a count larger than the rest is corrupt, and checking
  // it first keeps a corrupt count from reserving huge memory.
  if (header_count > dec.rest().size() / 2) return Corrupt("header count out of range");
  d.headers.reserve(header_count);
  for (uint64_t i = 0; i < header_count; ++i) {
    std::string_view name, value;
    if (!dec.GetLengthPrefixed(&name) || !dec.GetLengthPrefixed(&value)) {
      return Corrupt("truncated headers");
    }
    d.headers.emplace_back(std::string(name), std::string(value));
  }
  if (!dec.GetLengthPrefixed(&body) || !dec.GetLengthPrefixed(&from) ||
      !dec.GetLengthPrefixed(&to) || !dec.GetLengthPrefixed(&subject) ||
      !dec.GetLengthPrefixed(&text)) {
    return Corrupt("truncated payload");
  }
  if (!dec.empty()) return Corrupt("trailing bytes");
  d.kind = static_cast<DeliveryKind>(kind);
  d.attempts = static_cast<uint32_t>(attempts);
  d.last_error = last_error;
  d.id = id;
  d.purpose = purpose;
  d.source = source;
  d.method = method;
  d.url = url;
  d.body = body;
  d.mail_from = from;
  d.mail_to = to;
  d.subject = subject;
  d.text_body = text;
  return d;
}

std::string TenantPrefix(const TenantId& tenant) {
  std::string k = tenant.str();
  k.push_back('\0');
  return k;
}

std::string PendingPrefix(const TenantId& tenant) { return TenantPrefix(tenant) + 'p'; }

std::string DeadPrefix(const TenantId& tenant) { return TenantPrefix(tenant) + 'd'; }

std::string PendingKey(const TenantId& tenant, int64_t created_ms, std::string_view id) {
  std::string k = PendingPrefix(tenant);
  PutFixed64BE(&k, static_cast<uint64_t>(created_ms));
  k.append(id);
  return k;
}

std::string DeadKey(const TenantId& tenant, std::string_view id) {
  std::string k = DeadPrefix(tenant);
  k.append(id);
  return k;
}

Result<std::string> WebhookOrigin(std::string_view url) {
  if (url.empty()) return InvalidArgument("field 'url' is required");
  if (!NoControls(url, /*allow_tab=*/false) || url.find(' ') != std::string_view::npos) {
    return InvalidArgument("field 'url' contains spaces or control characters");
  }
  std::unique_ptr<CURLU, UrlDeleter> u(curl_url());
  if (!u) return Internal("out of memory parsing a URL");
  std::string copy(url);
  if (curl_url_set(u.get(), CURLUPART_URL, copy.c_str(), 0) != CURLUE_OK) {
    return InvalidArgument(fmt::format("field 'url' is not a valid absolute URL: '{}'", url));
  }
  const std::string scheme = AsciiLower(GetUrlPart(u.get(), CURLUPART_SCHEME, 0));
  if (scheme != "http" && scheme != "https") {
    return InvalidArgument(
        fmt::format("field 'url' must use http:// or https://, not '{}://'", scheme));
  }
  std::string host = GetUrlPart(u.get(), CURLUPART_HOST, 0);
  if (host.empty()) return InvalidArgument("field 'url' has no host");
  std::transform(host.begin(), host.end(), host.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  std::string port = GetUrlPart(u.get(), CURLUPART_PORT, CURLU_DEFAULT_PORT);
  if (port.empty()) return InvalidArgument("field 'url' has no valid port");
  return scheme + "://" + host + ":" + port;
}

Status ValidateDelivery(const Delivery& d) {
  if (d.id.empty()) return InvalidArgument("field 'id' is required");
  if (d.id.size() > kMaxDeliveryIdBytes) {
    return InvalidArgument(fmt::format("field 'id' is longer than {} bytes", kMaxDeliveryIdBytes));
  }
  if (!std::all_of(d.id.begin(), d.id.end(), [](char c) { return c > 0x20 && c < 0x7f; })) {
    return InvalidArgument("field 'id' must be printable ASCII without spaces");
  }
  FAIRWAY_RETURN_IF_ERROR(CheckLabel("purpose", d.purpose));
  FAIRWAY_RETURN_IF_ERROR(CheckLabel("source", d.source));
  if (d.created_ms < 0) return InvalidArgument("field 'created_ms' must not be negative");
  switch (d.kind) {
    case DeliveryKind::kWebhook:
      return ValidateWebhook(d);
    case DeliveryKind::kEmail:
      return ValidateEmail(d);
  }
  return InvalidArgument("field 'kind' must be webhook or email");
}

}  // namespace fairway::dispatch
