#include "dispatch/outcome.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <limits>
#include <utility>

#include "common/hash.h"
#include "dispatch/dispatcher_impl.h"
#include "dispatch/failure_text.h"
#include "storage/schema.h"

namespace fairway::dispatch {
namespace {

AttemptVerdict Delivered() {
  AttemptVerdict v;
  v.delivered = true;
  return v;
}

AttemptVerdict Failed(bool permanent, std::string error, int64_t retry_after_ms = 0) {
  return {.delivered = false,
          .permanent = permanent,
          .error = std::move(error),
          .retry_after_ms = retry_after_ms};
}

}  // namespace

AttemptVerdict ClassifyTransfer(DeliveryKind kind, const TransferResult& r,
                                std::chrono::milliseconds request_timeout) {
  // Tenants read last_error: libcurl's fixed text for the code, never its error buffer, which
  // can quote what the peer sent.
  const std::string& error_text = r.error_text;
  std::string timeout =
      fmt::format("timeout after {} ms", static_cast<int64_t>(request_timeout.count()));
  const long code = r.code;
  if (kind == DeliveryKind::kEmail) {
    if (r.error == TransferError::kNone) return Delivered();
    if (r.error == TransferError::kTimeout) return Failed(false, timeout);
    if (code >= 500 && code < 600) return Failed(true, SmtpFailureText(code));
    if (code >= 400 && code < 500) return Failed(false, SmtpFailureText(code));
    return Failed(false, "SMTP connection error: " + error_text);
  }
  if (code >= 200 && code < 300) {
    // The receiver accepted it, even if the transfer broke off afterwards (a timeout or a reset
    // while reading the response body): sending it again would only duplicate it.
    return Delivered();
  }
  if (r.error == TransferError::kNone) {
    std::string error = HttpFailureText(code);
    if (code >= 300 && code < 400) error += " (redirects are not followed)";
    bool transient = code == 408 || code == 425 || code == 429 || (code >= 500 && code < 600);
    int64_t retry_after_ms = 0;
    if ((code == 429 || code == 503) && r.retry_after_s >= 0) {
      retry_after_ms =
          std::min<int64_t>(r.retry_after_s, std::numeric_limits<int64_t>::max() / 2000) * 1000;
    }
    return Failed(!transient, std::move(error), retry_after_ms);
  }
  if (!r.refusal.empty() && !r.attempted) {
    // Every address the host resolved to was refused: sending again cannot help.
    return Failed(true, r.refusal);
  }
  if (r.error == TransferError::kTimeout) return Failed(false, timeout);
  if (r.error == TransferError::kInvalidRequest) {
    return Failed(true, "invalid request: " + error_text);
  }
  return Failed(false, "connection error: " + error_text);
}

int64_t RetryDelayMs(const TenantId& tenant, const Delivery& d, int64_t retry_after_ms,
                     const DeliveryDispatcherOptions& options) {
  int64_t initial = std::max<int64_t>(options.initial_backoff.count(), 0);
  int64_t cap = std::max<int64_t>(options.max_backoff.count(), initial);
  uint32_t n = std::max<uint32_t>(d.attempts, 1) - 1;  // 0 after the first failure
  int64_t base = initial;
  for (uint32_t i = 0; i < n && base < cap; ++i) base = base > cap / 2 ? cap : base * 2;
  base = std::min(base, cap);
  // Deterministic jitter in [0, 20%): spreads a burst of failures of one endpoint apart.
  uint64_t h = Hash64(fmt::format("{}\x1f{}\x1f{}", tenant.str(), d.id, d.attempts));
  int64_t delay = base + static_cast<int64_t>(static_cast<double>(base) * 0.2 *
                                              static_cast<double>(h % 10000) / 10000.0);
  if (retry_after_ms > delay) delay = std::max(delay, std::min(retry_after_ms, cap));
  return delay;
}

// ---------------------------------------------------------------------------------------------
// Recording outcomes (dispatcher thread)

size_t DeliveryDispatcher::Impl::CollectCompletions() {
  std::vector<Completion> done = transport.Collect();
  for (const Completion& c : done) {
    Tenant* t = c.tenant;
    Row* row = c.row;
    row->in_flight = false;
    row->dest->in_flight--;
    t->in_flight--;
    t->m.in_flight->Add(-1);
    in_flight--;
    if (t->removal && !t->removal->keep_rows) {
      Release(t, row);  // its rows are about to be deleted
      continue;
    }
    Record(c);
  }
  return done.size();
}

void DeliveryDispatcher::Impl::Record(const Completion& c) {
  Tenant* t = c.tenant;
  Row* row = c.row;
  // Tenants read last_error, which never quotes the peer; operators find libcurl's details in
  // the debug log.
  if (!c.result.detail.empty()) {
    spdlog::debug("dispatch: tenant {}: delivery {}: {}", t->id.str(), row->d.id, c.result.detail);
  }
  AttemptVerdict v = ClassifyTransfer(row->d.kind, c.result, options.request_timeout);
  if (v.delivered) {
    outcomes.push_back({t, row, OutcomeKind::kDelivered, {}});
    return;
  }
  Fail(t, row, v.permanent, std::move(v.error), v.retry_after_ms, c.result.started_ms);
}

void DeliveryDispatcher::Impl::Fail(Tenant* t, Row* row, bool permanent, std::string error,
                                    int64_t retry_after_ms, int64_t started_ms) {
  int64_t now = clock->NowMillis();
  Outcome o{t, row, OutcomeKind::kRetry, row->d};
  Delivery& u = o.updated;
  u.attempts++;
  u.last_attempt_ms = started_ms;
  u.last_error = std::move(error);
  if (permanent || u.attempts >= options.max_attempts) {
    o.kind = OutcomeKind::kDead;
    u.dead_at_ms = now;
    u.next_attempt_ms = 0;
  } else {
    u.next_attempt_ms = now + RetryDelayMs(t->id, u, retry_after_ms, options);
  }
  outcomes.push_back(std::move(o));
}

void DeliveryDispatcher::Impl::WriteOutcomes(std::vector<Outcome> batch_outcomes) {
  if (batch_outcomes.empty()) return;
  storage::WriteBatch batch;
  for (const Outcome& o : batch_outcomes) {
    const std::string& key = o.row->key;
    switch (o.kind) {
      case OutcomeKind::kDelivered:
        batch.Delete(storage::kDeliveries, key);
        if (listener != nullptr) listener->AddDeliveredWrites(o.tenant->id, o.row->d, &batch);
        break;
      case OutcomeKind::kRetry:
        batch.Put(storage::kDeliveries, key, EncodeDelivery(o.updated));
        break;
      case OutcomeKind::kDead:
        batch.Delete(storage::kDeliveries, key);
        batch.Put(storage::kDeliveries, DeadKey(o.tenant->id, o.updated.id),
                  EncodeDelivery(o.updated));
        if (listener != nullptr) listener->AddDeadWrites(o.tenant->id, o.updated, &batch);
        break;
    }
  }
  // Not synced: losing these writes in a power cut only re-sends or re-tries rows (with their
  // idempotency key); no row is lost.
  Status st = store->Write(batch, /*sync=*/false);
  if (!st.ok()) {
    if (!write_failing) {
      spdlog::error("dispatch: writing {} delivery outcomes failed (retrying): {}",
                    batch_outcomes.size(), st.ToString());
    }
    write_failing = true;
    for (auto& o : batch_outcomes) unwritten.push_back(std::move(o));
    return;
  }
  write_failing = false;
  for (const Outcome& o : batch_outcomes) Apply(o);
}

void DeliveryDispatcher::Impl::Apply(const Outcome& o) {
  Tenant* t = o.tenant;
  int64_t now = clock->NowMillis();
  switch (o.kind) {
    case OutcomeKind::kDelivered:
      t->m.delivered->Add();
      t->m.latency->Observe(static_cast<double>(std::max<int64_t>(now - o.row->d.created_ms, 0)) /
                            1000.0);
      if (listener != nullptr) listener->OnDelivered(t->id, o.row->d);
      break;
    case OutcomeKind::kRetry:
      t->m.retried->Add();
      t->wake_ms = std::min(t->wake_ms, o.updated.next_attempt_ms);
      break;
    case OutcomeKind::kDead:
      t->m.dead->Add();
      if (listener != nullptr) listener->OnDead(t->id, o.updated);
      break;
  }
  Release(t, o.row);
}

}  // namespace fairway::dispatch
