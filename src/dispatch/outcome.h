#pragma once
// What a finished delivery attempt means (internal to the dispatcher): delivered, or failed
// with a tenant-readable error, permanently or with a retry, and when the retry comes. Pure
// functions: thread-safe; the dispatcher thread records the outcomes.

#include <chrono>
#include <cstdint>
#include <string>

#include "common/ids.h"
#include "dispatch/delivery.h"
#include "dispatch/delivery_dispatcher.h"
#include "dispatch/transport.h"

namespace fairway::dispatch {

// The meaning of one transfer.
struct AttemptVerdict {
  bool delivered = false;
  // When not delivered: sending again cannot help, the delivery is dead at once.
  bool permanent = false;
  // When not delivered: the delivery's last_error, in fixed words that never quote the peer.
  std::string error;
  // When not delivered: the least delay the receiver asked for (Retry-After), 0 if none.
  int64_t retry_after_ms = 0;
};

// Webhooks: 2xx delivered (even if the transfer broke off afterwards); 408, 425, 429, 5xx,
// timeouts and connection errors retried, honouring Retry-After on 429 and 503; other codes
// (redirects are not followed), refused destinations and malformed URLs permanent. Email: a
// completed exchange delivered; SMTP 4xx, timeouts and connection errors retried; 5xx
// permanent. `request_timeout` is named in the timeout's error.
AttemptVerdict ClassifyTransfer(DeliveryKind kind, const TransferResult& result,
                                std::chrono::milliseconds request_timeout);

// The delay before the next attempt of `d`, whose `attempts` already counts the failure just
// seen: initial_backoff * 2^(attempts-1) capped at max_backoff, plus a deterministic jitter of
// up to 20% derived from (tenant, id, attempts); a longer `retry_after_ms` wins, capped at
// max_backoff.
int64_t RetryDelayMs(const TenantId& tenant, const Delivery& d, int64_t retry_after_ms,
                     const DeliveryDispatcherOptions& options);

}  // namespace fairway::dispatch
