#pragma once
// Delivery: one external effect (a webhook request or an email) waiting in a tenant's durable
// delivery rows, the `deliveries` column family (storage/schema.h):
//
//   tenant \0 'p' created_ms(be64) id  -> pending delivery (EncodeDelivery)
//   tenant \0 'd' id                   -> dead delivery (gave up; revived by
//                                         DeliveryDispatcher::Retry)
//
// Producers (the campaigns processor) validate a delivery with ValidateDelivery and put its
// pending row (PendingKey -> EncodeDelivery) in the same atomic write as the step that causes
// it, then call DeliveryDispatcher::Notify once that write is committed. The DeliveryDispatcher
// owns the rows from then on. Everything here is a pure function: thread-safe.

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/ids.h"
#include "common/status.h"

namespace fairway::dispatch {

enum class DeliveryKind : uint8_t { kWebhook = 1, kEmail = 2 };

// Returns "webhook" or "email" ("unknown" for any other value).
const char* DeliveryKindName(DeliveryKind kind);

// Limits enforced by ValidateDelivery.
inline constexpr size_t kMaxDeliveryIdBytes = 200;
inline constexpr size_t kMaxLabelBytes = 200;  // purpose, source
inline constexpr size_t kMaxUrlBytes = 2048;
inline constexpr size_t kMaxHeaders = 64;
inline constexpr size_t kMaxHeaderValueBytes = 4096;
inline constexpr size_t kMaxBodyBytes = 1u << 20;  // webhook body, email text
inline constexpr size_t kMaxAddressBytes = 254;    // RFC 5321 path limit
inline constexpr size_t kMaxSubjectBytes = 900;

struct Delivery {
  DeliveryKind kind = DeliveryKind::kWebhook;
  // Idempotency key, unique per tenant: printable ASCII without spaces, at most 200 bytes
  // (e.g. "welcome.r7f3a.2"). Sent as `Idempotency-Key` (webhooks) and
  // `X-Fairway-Idempotency-Key` (email); a re-delivery after a crash carries the same key.
  std::string id;
  // Free label for reports: "webhook", "email", "alert", "crm_task".
  std::string purpose;
  // Who caused it (a campaign id), for stats; may be empty.
  std::string source;
  // When the producer created it (ms since the epoch, producer's clock). Orders the pending
  // rows and starts the created-to-delivered latency.
  int64_t created_ms = 0;

  // Webhook: method (GET POST PUT PATCH DELETE), http:// or https:// URL, extra request
  // headers and body. No `Content-Type` is added when none is given.
  std::string method;
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  // Email: envelope and header addresses (bare addr-spec, `local@domain`), subject (UTF-8) and
  // plain-text body (UTF-8).
  std::string mail_from, mail_to, subject, text_body;

  // Delivery state, written by the dispatcher.
  // Failed attempts so far.
  uint32_t attempts = 0;
  // Not sent before this time (ms since the epoch); 0 = now.
  int64_t next_attempt_ms = 0;
  // Start of the last attempt; 0 = never tried.
  int64_t last_attempt_ms = 0;
  // Why the last attempt failed, in fixed words that never quote the peer: "HTTP 503 Service
  // Unavailable", "timeout after 10000 ms", "SMTP 550 mailbox unavailable", "destination
  // address 10.0.0.7 is not allowed (private)". Tenants read it.
  std::string last_error;
  // When it became dead; 0 while pending.
  int64_t dead_at_ms = 0;

  bool operator==(const Delivery&) const = default;
};

// Versioned binary encoding (common/coding.h). The state fields come first so the dispatcher can
// read a row's next attempt time without decoding its payload.
std::string EncodeDelivery(const Delivery& d);
// InvalidArgument naming "delivery" on corrupt or truncated input or an unknown version.
Result<Delivery> DecodeDelivery(std::string_view in);
// The next attempt time of an encoded delivery, without decoding the rest. InvalidArgument
// naming "delivery" on corrupt input.
Result<int64_t> PeekNextAttempt(std::string_view in);

// Keys in storage::kDeliveries. `created_ms` must be >= 0 (ValidateDelivery checks it).
std::string PendingKey(const TenantId& tenant, int64_t created_ms, std::string_view id);
std::string DeadKey(const TenantId& tenant, std::string_view id);
// The key ranges of one tenant: all its rows, its pending rows, its dead rows. Each is a prefix;
// storage::PrefixEnd gives the exclusive upper bound.
std::string TenantPrefix(const TenantId& tenant);
std::string PendingPrefix(const TenantId& tenant);
std::string DeadPrefix(const TenantId& tenant);

// Checks a delivery before it is enqueued. InvalidArgument naming the field at fault ("id",
// "method", "url", "header name", "header 'X-A'", "mail_to", "subject", ...). Rejects CR or LF in
// anything that becomes a header line (header injection), URLs that are not absolute http(s),
// headers the dispatcher sets itself (Idempotency-Key, X-Fairway-Signature, User-Agent, Host,
// Content-Length, Transfer-Encoding, Expect), and oversized fields.
Status ValidateDelivery(const Delivery& d);

// The destination of a webhook URL, `scheme://host:port` with the default port filled in and the
// host lower-cased ("https://api.example.com:443"). InvalidArgument naming "url" when it is not a
// valid absolute http(s) URL.
Result<std::string> WebhookOrigin(std::string_view url);

}  // namespace fairway::dispatch
