#pragma once
// Transport (internal to the dispatcher): the libcurl multi handle that carries every transfer
// of a DeliveryDispatcher, webhooks (webhook_transport.cpp) and email (smtp_transport.cpp).
// Reports each finished transfer as a TransferResult in libcurl-free terms, so deciding what a
// result means (outcome.h) and scheduling (scheduler.cpp) never see libcurl. libcurl's headers
// stay in the transport .cpp files.
//
// Owned by the dispatcher; every member but Wakeup runs on the dispatcher thread.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "dispatch/delivery.h"
#include "dispatch/delivery_dispatcher.h"
#include "dispatch/destination_filter.h"

namespace fairway::dispatch {

struct Tenant;
struct Row;

// Why a transfer ended without a complete exchange.
enum class TransferError : uint8_t {
  kNone,            // the exchange completed (a response or the final SMTP reply was read)
  kTimeout,         // DeliveryDispatcherOptions::request_timeout passed
  kInvalidRequest,  // the URL was malformed or its scheme unsupported
  kOther,           // connection refused or reset, TLS, DNS, a protocol error, ...
};

// What a finished transfer reports.
struct TransferResult {
  TransferError error = TransferError::kNone;
  // libcurl's fixed text for the error code ("No error" when there was none); never quotes the
  // peer, so tenants may read it.
  std::string error_text;
  // libcurl's error buffer, which can quote the peer: for the operators' debug log only. May be
  // empty.
  std::string detail;
  // The HTTP status or SMTP reply code of the last response; 0 when there was none.
  long code = 0;
  // Webhooks: the delta-seconds of the last response's Retry-After header; -1 when absent.
  int64_t retry_after_s = -1;
  // Webhooks: why the first refused connection attempt was refused; empty if none was.
  std::string refusal;
  // Webhooks: whether any connection attempt was allowed by the destination filter.
  bool attempted = false;
  // When the transfer started (clock ms).
  int64_t started_ms = 0;
};

// A finished transfer and the row it carried.
struct Completion {
  Tenant* tenant = nullptr;
  Row* row = nullptr;
  TransferResult result;
};

class Transport {
 public:
  // Reads request_timeout and the smtp_* settings of `options`, which must outlive it.
  explicit Transport(const DeliveryDispatcherOptions* options);
  ~Transport();
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  // False when the multi handle could not be created: nothing can be sent.
  bool ok() const;

  // Start the transfer of the webhook or email `d` for (`tenant`, `row`), which are handed
  // back in its Completion. A failure to start (out of memory) is an error naming what failed;
  // then nothing is in flight. Requires: `d` is valid (ValidateDelivery) and outlives the
  // transfer. `secret`: the tenant's signing secret, if any. Email requires a smtp_url.
  Status StartWebhook(Tenant* tenant, Row* row, const Delivery& d, const DestinationFilter* filter,
                      const std::optional<std::string>& secret, int64_t now_ms);
  Status StartEmail(Tenant* tenant, Row* row, const Delivery& d, int64_t now_ms);

  // Moves every transfer forward as far as it can without blocking.
  void Perform();
  // The transfers that finished since the last call; they are no longer in flight.
  std::vector<Completion> Collect();
  // Waits up to `timeout_ms` for socket activity or a Wakeup.
  void Poll(int timeout_ms);
  // Ends a Poll early. Thread-safe.
  void Wakeup();
  // Drops every transfer in flight without a result and returns what they carried.
  std::vector<std::pair<Tenant*, Row*>> AbortAll();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fairway::dispatch
