#pragma once
// DeliveryDispatcher: delivers every tenant's durable delivery rows (storage::kDeliveries,
// see delivery.h) to webhooks over HTTP(S) and to an SMTP relay, with retries and dead letters.
//
// - One thread, owned by the dispatcher, drives all transfers through one libcurl multi handle;
//   the rows it has loaded, the per-destination limits and the round robin are owned by that
//   thread. Other threads talk to it through a small inbox (Notify, RemoveTenant, Stop).
// - Fair: tenants with due rows take turns, one transfer each per turn, within per-tenant,
//   per-destination and global in-flight caps and a per-destination token bucket. A destination
//   is (tenant, scheme://host:port), so a slow or hanging endpoint fills only its own
//   destination's slots: other destinations and other tenants keep going.
// - Durable, at least once: a row leaves the pending rows only after its outcome is written
// (deleted
//   when delivered, moved to the dead rows when given up, rewritten with its next attempt time
//   when it will be retried). A crash re-sends at most the transfers in flight, with the same
//   idempotency key; it never loses a row.
// - Bounded memory: at most DeliveryDispatcherOptions::max_loaded_per_tenant rows of a tenant are
// held in
//   memory; the rest stay on disk and are found by an incremental scan of the tenant's rows.
// - Time: every schedule (next attempt, back-off, token buckets, signatures, Date headers) reads
//   the injected Clock, so tests drive it with a ManualClock. The thread wakes at least every
//   50 ms to notice a clock that jumped.
//
// Limits: dead rows are keyed by delivery id, so List(dead) is in id order, not age order. An
// idempotency key is unique per tenant by contract: two pending rows with the same id are sent
// twice and share one dead slot.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/ids.h"
#include "common/metrics.h"
#include "common/status.h"
#include "dispatch/delivery.h"
#include "dispatch/destination_filter.h"
#include "storage/store.h"

namespace fairway::dispatch {

struct DeliveryDispatcherOptions {
  // Failed attempts after which a delivery becomes dead (moved to the tenant's dead rows).
  // Permanent failures (HTTP 4xx other than 408/425/429, SMTP 5xx) make it dead at once.
  // Default 8.
  uint32_t max_attempts = 8;
  // Back-off before retry n (n = failed attempts so far) is initial_backoff * 2^(n-1), capped at
  // max_backoff, plus a jitter of up to 20% derived from the delivery id (deterministic). A
  // larger `Retry-After` (seconds, on 429 and 503) wins, also capped at max_backoff.
  // Defaults 1 s and 1 h.
  std::chrono::milliseconds initial_backoff{1000};
  std::chrono::milliseconds max_backoff{3'600'000};
  // Transfers in flight per destination, a destination being (tenant, scheme://host:port) for
  // webhooks and (tenant, smtp_url) for email. Isolates tenants and endpoints from each other.
  // Default 4.
  uint32_t per_destination_concurrency = 4;
  // Requests per second started per destination (token bucket holding one second's worth, at
  // least one token); 0 = unlimited. Refills on the injected Clock's monotonic time. Default 50.
  double per_destination_rate = 50;
  // Transfers in flight per tenant, over all its destinations. Default 16.
  uint32_t tenant_in_flight = 16;
  // Transfers in flight in total. Default 256.
  uint32_t global_in_flight = 256;
  // Whole-transfer timeout (connect, send, wait, receive); a timeout is retried. Default 10 s.
  std::chrono::milliseconds request_timeout{10'000};
  // SMTP relay for email deliveries, e.g. "smtp://127.0.0.1:2525" or "smtps://relay:465"
  // (STARTTLS is used when the server offers it). Empty: email deliveries fail with a clear
  // error and go dead at once. Default empty.
  std::string smtp_url;
  // Optional SMTP AUTH credentials (sent only when smtp_username is not empty). Use smtps://
  // or a relay that offers STARTTLS: on a plain connection they travel in clear.
  std::string smtp_username, smtp_password;
  // Networks that webhooks may reach although they are not public (loopback, private,
  // link-local, ...: see DestinationFilter). Every other non-public destination is refused when
  // the connection is made, after DNS resolution, and the delivery is dead at once with
  // "destination address <ip> is not allowed (<range>)". Webhooks never use a proxy (the
  // *_proxy environment variables are ignored), so the check sees the real destination. The
  // SMTP relay is operator configuration and is not filtered. Default empty: public only.
  std::vector<IpNetwork> allow_networks;
  // Rows of one tenant held in memory (queued or in flight); the rest wait on disk and are
  // loaded as these finish. Bounds memory under any backlog. Default 256.
  size_t max_loaded_per_tenant = 256;
  // Rows of one destination held in memory. Keeps a tenant's window from filling up with rows
  // of one slow destination while its other destinations wait on disk. Default 64.
  size_t max_loaded_per_destination = 64;
};

// Told about final outcomes. Runs on the dispatcher thread: must not block, and must not call
// DeliveryDispatcher::Stop or RemoveTenant (Notify, List and Retry are fine).
class DeliveryListener {
 public:
  virtual ~DeliveryListener() = default;
  // Before a final outcome is written: adds the listener's own writes for it (counters) to
  // `batch`, the same atomic write that records the outcome, so they count each delivery
  // exactly once whatever crashes. May run more than once for an outcome whose write failed
  // (each time into a fresh batch).
  virtual void AddDeliveredWrites(const TenantId& tenant, const Delivery& d,
                                  storage::WriteBatch* batch) {}
  virtual void AddDeadWrites(const TenantId& tenant, const Delivery& d,
                             storage::WriteBatch* batch) {}
  // After the delivered row was deleted from the pending rows.
  virtual void OnDelivered(const TenantId& tenant, const Delivery& d) {}
  // After the row was moved to the dead rows (`d` carries attempts, last_error, dead_at_ms).
  virtual void OnDead(const TenantId& tenant, const Delivery& d) {}
};

class DeliveryDispatcher {
 public:
  // `store` must be opened with storage::FairwayColumnFamilies(). None of the pointers is owned;
  // all must outlive the dispatcher.
  DeliveryDispatcher(storage::Store* store, const Clock* clock, MetricsRegistry* metrics,
                     DeliveryDispatcherOptions options);
  // Stops the dispatcher if it is running.
  ~DeliveryDispatcher();
  DeliveryDispatcher(const DeliveryDispatcher&) = delete;
  DeliveryDispatcher& operator=(const DeliveryDispatcher&) = delete;

  // Signing secret of a tenant's webhooks; nullopt leaves them unsigned. With a secret, each
  // request carries `X-Fairway-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
  // "<t>.<body>")>`. Called on the dispatcher thread for every webhook request: must be fast and
  // thread-safe. Requires: before Start.
  void SetSigningSecrets(std::function<std::optional<std::string>(const TenantId&)> secrets);
  // Optional. Requires: before Start.
  void SetListener(DeliveryListener* listener);

  // Finds every tenant with pending rows (recovery after a restart) and starts the dispatcher
  // thread. Requires: called once.
  void Start();
  // Stops taking work, aborts the transfers in flight (their rows stay pending and are sent
  // again after a restart, with the same idempotency key) and joins the thread. Idempotent.
  void Stop();

  // Wakes the dispatcher for a tenant whose new rows were just committed. Call after the commit.
  // Thread-safe, never blocks; a no-op before Start and after Stop (Start finds the rows).
  void Notify(const TenantId& tenant);

  struct Page {
    std::vector<Delivery> items;
    // Pass to the next call; empty on the last page.
    std::string next_cursor;
  };
  // Lists a tenant's pending deliveries, oldest first (with their attempts, next attempt and
  // last error), or its dead deliveries (in id order), from disk. `cursor` is a previous page's
  // next_cursor (InvalidArgument names `cursor` when it is not one); `limit` is clamped to
  // 1..1000. Thread-safe; works whether or not the dispatcher runs.
  Result<Page> List(const TenantId& tenant, bool dead, std::string_view cursor, size_t limit);

  // Moves dead deliveries back to pending with attempts, next attempt and dead time reset (the
  // last error is kept for reference), all of them when `ids` is empty, in one synced write per
  // thousand rows. Returns how many moved. An unknown id is NotFound naming it, and then nothing
  // moves. Thread-safe.
  Result<size_t> Retry(const TenantId& tenant, const std::vector<std::string>& ids);

  // Forgets a tenant: stops starting its deliveries, waits for its transfers in flight (at most
  // request_timeout), deletes all its rows, pending and dead (synced), and drops its metric
  // series. Rows enqueued afterwards start afresh. Thread-safe; blocks the caller.
  Status RemoveTenant(const TenantId& tenant);

  // In a cluster, a node delivers the rows of the tenants it owns only: Notify and the recovery
  // scan skip the others. Requires: before Start.
  void SetOwnership(std::function<bool(const TenantId&)> owns);
  // Stops starting the tenant's deliveries and waits for its transfers in flight (at most
  // request_timeout) and for their outcomes to be written; its rows stay on disk for whoever
  // delivers them next (a Notify here, once the node owns the tenant again). Thread-safe;
  // blocks the caller.
  Status ReleaseTenant(const TenantId& tenant);

  // For tests and tools: true once nothing is in flight or queued, no row on disk is due now
  // (next attempt <= clock now) as far as the dispatcher knows after handling every Notify
  // made before the call, and every outcome is written; false if `timeout` (real time) passes
  // first, or if the dispatcher is not running.
  bool WaitIdle(std::chrono::milliseconds timeout);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace fairway::dispatch
