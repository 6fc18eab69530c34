// The dispatcher's scheduling: which rows are loaded from disk (incremental, budgeted scans
// within the memory caps) and which loaded rows start now (round robin over tenants and their
// destinations, within the in-flight caps and the per-destination token buckets).

#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>
#include <string>
#include <utility>

#include "dispatch/dispatcher_impl.h"
#include "storage/schema.h"

namespace fairway::dispatch {
namespace {

// Keys of one tenant examined per scan step: a tenant with a huge backlog of rows waiting for
// their next attempt cannot hold the thread for long.
constexpr size_t kScanBudget = 1024;

}  // namespace

// ---------------------------------------------------------------------------------------------
// Loading rows from disk

bool DeliveryDispatcher::Impl::NeedsScan(const Tenant* t, int64_t now_ms) const {
  if (t->removal || t->rows.size() >= options.max_loaded_per_tenant) return false;
  return t->pass_active || t->dirty || t->wake_ms <= now_ms;
}

void DeliveryDispatcher::Impl::Scan(Tenant* t, int64_t now_ms) {
  if (!t->pass_active) {
    t->pass_active = true;
    t->pass_cursor = t->pending_prefix;
    t->pass_min_due = kNever;
    t->dirty = false;
    t->wake_ms = kNever;
  }
  auto it = store->NewIterator(storage::kDeliveries, t->pending_prefix, t->pending_end,
                               /*fill_cache=*/false);
  size_t examined = 0;
  for (it->Seek(t->pass_cursor); it->Valid(); it->Next()) {
    std::string_view key = it->key();
    if (examined++ == kScanBudget) {
      t->pass_cursor = std::string(key);
      return;
    }
    if (t->rows.contains(std::string(key))) continue;
    auto next = PeekNextAttempt(it->value());
    if (!next.ok()) {
      spdlog::error("dispatch: tenant {}: skipping a corrupt pending row: {}", t->id.str(),
                    next.status().ToString());
      continue;
    }
    if (*next > now_ms) {
      t->pass_min_due = std::min(t->pass_min_due, *next);
      continue;
    }
    if (t->rows.size() >= options.max_loaded_per_tenant) {
      t->pass_cursor = std::string(key);  // resume here once there is room
      return;
    }
    auto d = DecodeDelivery(it->value());
    if (!d.ok()) {
      spdlog::error("dispatch: tenant {}: skipping a corrupt pending row: {}", t->id.str(),
                    d.status().ToString());
      continue;
    }
    Destination* dest = GetDestination(t, *d);
    if (dest->loaded >= options.max_loaded_per_destination) {
      dest->skipped_due = true;
      continue;
    }
    Load(t, dest, std::string(key), std::move(d).value());
  }
  t->pass_active = false;
  if (!it->status().ok()) {
    spdlog::error("dispatch: tenant {}: reading the pending deliveries failed: {}", t->id.str(),
                  it->status().ToString());
    t->wake_ms = std::min(t->wake_ms, now_ms + 1000);  // a new pass in a second
    return;
  }
  t->wake_ms = std::min(t->wake_ms, t->pass_min_due);
}

Destination* DeliveryDispatcher::Impl::GetDestination(Tenant* t, const Delivery& d) {
  std::string origin;
  if (d.kind == DeliveryKind::kEmail) {
    origin = "smtp|" + options.smtp_url;
  } else {
    auto o = WebhookOrigin(d.url);
    origin = o.ok() ? *o : "invalid";  // Launch turns an invalid row into a dead one
  }
  auto& slot = t->dests[origin];
  if (!slot) {
    slot = std::make_unique<Destination>();
    slot->origin = origin;
    slot->tokens = std::max(1.0, options.per_destination_rate);
    slot->refill_ns = clock->MonotonicNanos();
  }
  return slot.get();
}

void DeliveryDispatcher::Impl::Load(Tenant* t, Destination* dest, std::string key, Delivery d) {
  auto row = std::make_unique<Row>();
  row->key = std::move(key);
  row->d = std::move(d);
  row->dest = dest;
  Row* raw = row.get();
  t->rows.emplace(raw->key, std::move(row));
  dest->loaded++;
  t->m.loaded->Add(1);
  dest->queue.push_back(raw);
  t->queued++;
  if (!dest->in_ready) {
    dest->in_ready = true;
    t->ready.push_back(dest);
  }
  if (!t->in_rr) {
    t->in_rr = true;
    rr.push_back(t);
  }
}

void DeliveryDispatcher::Impl::Release(Tenant* t, Row* row) {
  Destination* dest = row->dest;
  dest->loaded--;
  t->m.loaded->Add(-1);
  if (dest->skipped_due && dest->loaded <= options.max_loaded_per_destination / 2) {
    dest->skipped_due = false;
    t->dirty = true;
  }
  t->rows.erase(std::string(row->key));  // a copy: this destroys *row
}

// ---------------------------------------------------------------------------------------------
// Starting transfers

bool DeliveryDispatcher::Impl::TakeToken(Destination* d, int64_t now_ns) {
  double rate = options.per_destination_rate;
  if (rate <= 0) return true;
  double capacity = std::max(1.0, rate);
  if (now_ns > d->refill_ns) {
    d->tokens =
        std::min(capacity, d->tokens + static_cast<double>(now_ns - d->refill_ns) * rate / 1e9);
    d->refill_ns = now_ns;
  }
  if (d->tokens >= 1.0) {
    d->tokens -= 1.0;
    return true;
  }
  token_wait_ns = std::min(token_wait_ns, static_cast<int64_t>((1.0 - d->tokens) / rate * 1e9));
  return false;
}

void DeliveryDispatcher::Impl::StartTransfers(int64_t now_ms, int64_t now_ns) {
  token_wait_ns = kNever;
  // Round robin: each tenant with queued rows starts at most one transfer per turn of the ring;
  // stop when a whole ring started nothing or the global cap is reached.
  size_t stalled = 0;
  while (!rr.empty() && in_flight < options.global_in_flight && stalled < rr.size()) {
    Tenant* t = rr.front();
    rr.pop_front();
    bool started = t->in_flight < options.tenant_in_flight && StartOne(t, now_ms, now_ns);
    if (t->queued > 0) {
      rr.push_back(t);
    } else {
      t->in_rr = false;
    }
    stalled = started ? 0 : stalled + 1;
  }
}

bool DeliveryDispatcher::Impl::StartOne(Tenant* t, int64_t now_ms, int64_t now_ns) {
  for (size_t n = t->ready.size(); n > 0; --n) {
    Destination* d = t->ready.front();
    t->ready.pop_front();
    bool go = !d->queue.empty() && d->in_flight < options.per_destination_concurrency &&
              TakeToken(d, now_ns);
    Row* row = nullptr;
    if (go) {
      row = d->queue.front();
      d->queue.pop_front();
      t->queued--;
    }
    if (!d->queue.empty()) {
      t->ready.push_back(d);
    } else {
      d->in_ready = false;
    }
    if (go) {
      Launch(t, row, now_ms);
      return true;
    }
  }
  return false;
}

void DeliveryDispatcher::Impl::Launch(Tenant* t, Row* row, int64_t now_ms) {
  Status valid = ValidateDelivery(row->d);
  if (!valid.ok()) {
    Fail(t, row, /*permanent=*/true, "invalid delivery: " + valid.message(), 0, now_ms);
    return;
  }
  if (row->d.kind == DeliveryKind::kEmail && options.smtp_url.empty()) {
    Fail(t, row, /*permanent=*/true, "no SMTP server configured (smtp_url is empty)", 0, now_ms);
    return;
  }
  Status st;
  if (row->d.kind == DeliveryKind::kEmail) {
    st = transport.StartEmail(t, row, row->d, now_ms);
  } else {
    std::optional<std::string> secret;
    if (secrets) secret = secrets(t->id);
    st = transport.StartWebhook(t, row, row->d, &filter, secret, now_ms);
  }
  if (!st.ok()) {
    Fail(t, row, /*permanent=*/false, st.message(), 0, now_ms);
    return;
  }
  row->in_flight = true;
  row->dest->in_flight++;
  t->in_flight++;
  t->m.in_flight->Add(1);
  in_flight++;
}

}  // namespace fairway::dispatch
