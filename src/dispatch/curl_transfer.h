#pragma once
// Transfer (internal to the transport files): one libcurl easy handle and what its callbacks
// fill in, shared by transport.cpp (the multi handle) and the protocol set-ups
// (webhook_transport.cpp, smtp_transport.cpp). Only those .cpp files include this header, so
// libcurl's headers reach no other file of the dispatcher.

#include <curl/curl.h>

#include <cstdint>
#include <optional>
#include <string>

#include "common/status.h"
#include "dispatch/delivery.h"
#include "dispatch/delivery_dispatcher.h"
#include "dispatch/destination_filter.h"

namespace fairway::dispatch {

struct Tenant;
struct Row;

struct Transfer {
  // What the transfer carries, handed back in its Completion; not used by the transport.
  Tenant* tenant = nullptr;
  Row* row = nullptr;
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  curl_slist* rcpt = nullptr;
  std::string payload;  // email upload
  size_t read_pos = 0;
  int64_t retry_after_s = -1;
  // Webhooks: the addresses a connection may be made to.
  const DestinationFilter* filter = nullptr;
  // Why the first refused connection attempt was refused; empty if none was.
  std::string refusal;
  // Whether any connection attempt was allowed.
  bool attempted = false;
  int64_t started_ms = 0;
  char errbuf[CURL_ERROR_SIZE] = {0};

  ~Transfer() {
    if (easy != nullptr) curl_easy_cleanup(easy);
    curl_slist_free_all(headers);
    curl_slist_free_all(rcpt);
  }
};

// Sets up `x->easy` (already created, with the options common to both kinds) to send the
// webhook `d`: method, URL, headers, body, idempotency key, signature (when `secret` is set),
// and the destination filter on every connection attempt. Internal on out of memory.
// Requires: `d` outlives the transfer (libcurl reads its body in place).
Status SetUpWebhook(Transfer* x, const Delivery& d, const DestinationFilter* filter,
                    const std::optional<std::string>& secret, int64_t now_ms);

// Sets up `x->easy` to send the email `d` through the relay of `options` (smtp_url, optional
// AUTH), with the message built for `now_ms`. Internal on out of memory.
Status SetUpEmail(Transfer* x, const Delivery& d, const DeliveryDispatcherOptions& options,
                  int64_t now_ms);

}  // namespace fairway::dispatch
