#include "dispatch/delivery_dispatcher.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>

#include "dispatch/dispatcher_impl.h"
#include "storage/keys.h"

namespace fairway::dispatch {
namespace {

// The dispatcher thread waits at most this long for socket activity, so a ManualClock that
// jumped (next attempts and token buckets) is noticed without a Notify.
constexpr int kPollMs = 50;

// Created-to-delivered latency, seconds: deliveries wait for retries, so up to a day.
std::vector<double> DeliveryLatencyBuckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,  1,     2.5,
          5,     10,   30,    60,   300, 900,  3600, 21600, 86400};
}

}  // namespace

DeliveryDispatcher::Impl::Impl(storage::Store* store, const Clock* clock, MetricsRegistry* metrics,
                               DeliveryDispatcherOptions o)
    : store(store),
      clock(clock),
      metrics(metrics),
      options(std::move(o)),
      filter(options.allow_networks),
      transport(&options) {
  options.max_attempts = std::max<uint32_t>(options.max_attempts, 1);
  options.per_destination_concurrency = std::max<uint32_t>(options.per_destination_concurrency, 1);
  options.tenant_in_flight = std::max<uint32_t>(options.tenant_in_flight, 1);
  options.global_in_flight = std::max<uint32_t>(options.global_in_flight, 1);
  options.max_loaded_per_tenant = std::max<size_t>(options.max_loaded_per_tenant, 1);
  options.max_loaded_per_destination = std::max<size_t>(options.max_loaded_per_destination, 1);
}

// ---------------------------------------------------------------------------------------------
// Inbox and tenants

Tenant* DeliveryDispatcher::Impl::GetTenant(const TenantId& id) {
  auto& slot = tenants[id.str()];
  if (!slot) {
    slot = std::make_unique<Tenant>();
    slot->id = id;
    slot->pending_prefix = PendingPrefix(id);
    slot->pending_end = storage::PrefixEnd(slot->pending_prefix);
    Labels base = {{"tenant", id.str()}};
    auto with_outcome = [&](const char* outcome) {
      Labels l = base;
      l.emplace_back("outcome", outcome);
      return metrics->GetCounter(
          "fairway_dispatch_deliveries_total",
          "Delivery attempts by tenant and outcome (delivered, retried, dead).", l);
    };
    slot->m.delivered = with_outcome("delivered");
    slot->m.retried = with_outcome("retried");
    slot->m.dead = with_outcome("dead");
    slot->m.in_flight =
        metrics->GetGauge("fairway_dispatch_in_flight", "Deliveries in flight, by tenant.", base);
    slot->m.loaded = metrics->GetGauge(
        "fairway_dispatch_loaded_rows",
        "Pending deliveries held in memory (queued, in flight or being written), by tenant.", base);
    slot->m.latency = metrics->GetHistogram(
        "fairway_dispatch_latency_seconds",
        "Time from a delivery's creation to its successful delivery, by tenant.",
        DeliveryLatencyBuckets(), base);
  }
  return slot.get();
}

void DeliveryDispatcher::Impl::DrainInbox() {
  std::unordered_set<std::string> notes;
  std::vector<std::shared_ptr<Removal>> rems;
  {
    std::lock_guard lock(mu);
    notes.swap(notified);
    rems.swap(removals);
    // WaitIdle must not see the last turn's verdict while this turn handles new work.
    if (!notes.empty() || !rems.empty()) idle = false;
  }
  for (const auto& id : notes) {
    if (owns && !owns(TenantId(id))) continue;  // another node delivers its rows
    auto it = tenants.find(id);
    if (it != tenants.end() && it->second->removal) continue;  // going away
    GetTenant(TenantId(id))->dirty = true;
  }
  for (auto& r : rems) BeginRemoval(std::move(r));
}

void DeliveryDispatcher::Impl::BeginRemoval(std::shared_ptr<Removal> r) {
  auto it = tenants.find(r->tenant.str());
  if (it == tenants.end()) {
    Status st = r->keep_rows ? Status::Ok() : DeleteTenantRows(r->tenant);
    r->done.set_value(st);
    return;
  }
  Tenant* t = it->second.get();
  if (t->removal) {
    // Already being removed: finish this request with the same deletion.
    removing.push_back(std::move(r));
    return;
  }
  t->removal = r;
  // Queued rows are dropped; rows in flight finish and are then discarded.
  for (auto& [origin, dest] : t->dests) {
    for (Row* row : dest->queue) {
      dest->loaded--;
      t->m.loaded->Add(-1);
      t->rows.erase(std::string(row->key));  // a copy: the row dies with the erase
    }
    dest->queue.clear();
  }
  t->queued = 0;
  t->ready.clear();
  for (auto& [origin, dest] : t->dests) dest->in_ready = false;
  std::erase(rr, t);
  t->in_rr = false;
  t->pass_active = false;
  t->dirty = false;
  t->wake_ms = kNever;
  auto drop = [t](std::vector<Outcome>& v) {
    std::erase_if(v, [t](const Outcome& o) {
      if (o.tenant != t) return false;
      o.row->dest->loaded--;
      t->m.loaded->Add(-1);
      t->rows.erase(std::string(o.row->key));
      return true;
    });
  };
  if (!r->keep_rows) {
    drop(unwritten);
    drop(outcomes);
  }
  removing.push_back(std::move(r));
}

void DeliveryDispatcher::Impl::FinishRemovals(bool force) {
  std::vector<std::shared_ptr<Removal>> still;
  for (auto& r : removing) {
    auto it = tenants.find(r->tenant.str());
    Tenant* t = it == tenants.end() ? nullptr : it->second.get();
    // A release waits for its outcomes to be written too (they name the tenant's rows).
    const bool unwritten_rows =
        t != nullptr && r->keep_rows &&
        (std::ranges::any_of(unwritten, [t](const Outcome& o) { return o.tenant == t; }) ||
         std::ranges::any_of(outcomes, [t](const Outcome& o) { return o.tenant == t; }));
    if (t != nullptr && (t->in_flight > 0 || unwritten_rows) && !force) {
      still.push_back(std::move(r));
      continue;
    }
    if (unwritten_rows) {
      // Stopping: the outcomes not written stay pending on disk, as after a crash.
      std::erase_if(unwritten, [t](const Outcome& o) { return o.tenant == t; });
      std::erase_if(outcomes, [t](const Outcome& o) { return o.tenant == t; });
    }
    Status st = r->keep_rows ? Status::Ok() : DeleteTenantRows(r->tenant);
    if (t != nullptr && t->removal == r) {
      std::erase(rr, t);
      tenants.erase(it);
    }
    r->done.set_value(st);
  }
  removing = std::move(still);
}

// ---------------------------------------------------------------------------------------------
// The thread

void DeliveryDispatcher::Impl::AbortAll() {
  // Transfers are dropped without an outcome: their rows stay pending as last written and are
  // sent again after a restart.
  for (auto [t, row] : transport.AbortAll()) {
    row->in_flight = false;
    row->dest->in_flight--;
    t->in_flight--;
    t->m.in_flight->Add(-1);
    in_flight--;
  }
}

void DeliveryDispatcher::Impl::ReapIdle(int64_t now_ns) {
  for (auto it = tenants.begin(); it != tenants.end();) {
    Tenant* t = it->second.get();
    for (auto d = t->dests.begin(); d != t->dests.end();) {
      Destination* dest = d->second.get();
      bool full_bucket = options.per_destination_rate <= 0 ||
                         dest->tokens + static_cast<double>(now_ns - dest->refill_ns) *
                                            options.per_destination_rate / 1e9 >=
                             std::max(1.0, options.per_destination_rate);
      if (dest->loaded == 0 && !dest->in_ready && full_bucket) {
        d = t->dests.erase(d);
      } else {
        ++d;
      }
    }
    bool idle_tenant = t->rows.empty() && !t->pass_active && !t->dirty && t->wake_ms == kNever &&
                       !t->removal && t->dests.empty();
    if (idle_tenant) {
      std::erase(rr, t);
      it = tenants.erase(it);
    } else {
      ++it;
    }
  }
}

void DeliveryDispatcher::Impl::Publish(int64_t now_ms) {
  bool now_idle = in_flight == 0 && unwritten.empty() && outcomes.empty() && removing.empty();
  int64_t wake = kNever;
  for (auto& [id, t] : tenants) {
    if (!t->rows.empty() || t->pass_active || t->dirty || t->wake_ms <= now_ms) now_idle = false;
    wake = std::min(wake, t->wake_ms);
  }
  std::lock_guard lock(mu);
  idle = now_idle && notified.empty() && removals.empty();
  next_wake_ms = wake;
  cv.notify_all();
}

int DeliveryDispatcher::Impl::PollTimeoutMs(int64_t now_ms, bool freed) const {
  if (freed && !rr.empty()) return 0;
  int64_t timeout = kPollMs;
  for (auto& [id, t] : tenants) {
    // A tenant whose window is full scans again when a row finishes (socket activity).
    if (t->removal || t->rows.size() >= options.max_loaded_per_tenant) continue;
    if (t->pass_active || t->dirty) return 0;
    if (t->wake_ms != kNever)
      timeout = std::min(timeout, std::max<int64_t>(t->wake_ms - now_ms, 0));
  }
  if (token_wait_ns != kNever) {
    timeout = std::min<int64_t>(timeout, std::max<int64_t>(token_wait_ns / 1'000'000, 1));
  }
  return static_cast<int>(timeout);
}

void DeliveryDispatcher::Impl::Loop() {
  while (true) {
    {
      std::lock_guard lock(mu);
      if (stopping) break;
    }
    DrainInbox();
    if (!unwritten.empty()) {
      std::vector<Outcome> retry;
      retry.swap(unwritten);
      WriteOutcomes(std::move(retry));
    }
    int64_t now_ms = clock->NowMillis();
    int64_t now_ns = clock->MonotonicNanos();
    for (auto& [id, t] : tenants) {
      if (NeedsScan(t.get(), now_ms)) Scan(t.get(), now_ms);
    }
    StartTransfers(now_ms, now_ns);
    transport.Perform();
    size_t finished = CollectCompletions();
    if (!outcomes.empty()) {
      std::vector<Outcome> batch;
      batch.swap(outcomes);
      WriteOutcomes(std::move(batch));
    }
    FinishRemovals(/*force=*/false);
    ReapIdle(now_ns);
    Publish(now_ms);
    transport.Poll(PollTimeoutMs(now_ms, finished > 0));
  }
  AbortAll();
  if (!outcomes.empty()) {
    std::vector<Outcome> batch;
    batch.swap(outcomes);
    WriteOutcomes(std::move(batch));
  }
  if (!unwritten.empty()) {
    std::vector<Outcome> retry;
    retry.swap(unwritten);
    WriteOutcomes(std::move(retry));  // last chance; rows that still fail stay pending on disk
  }
  std::vector<std::shared_ptr<Removal>> late;
  {
    std::lock_guard lock(mu);
    running = false;
    idle = false;
    late.swap(removals);
    cv.notify_all();
  }
  for (auto& r : late) BeginRemoval(std::move(r));
  FinishRemovals(/*force=*/true);
  unwritten.clear();
  rr.clear();
  tenants.clear();
}

// ---------------------------------------------------------------------------------------------
// Public API

DeliveryDispatcher::DeliveryDispatcher(storage::Store* store, const Clock* clock,
                                       MetricsRegistry* metrics, DeliveryDispatcherOptions options)
    : impl_(std::make_unique<Impl>(store, clock, metrics, std::move(options))) {}

DeliveryDispatcher::~DeliveryDispatcher() { Stop(); }

void DeliveryDispatcher::SetSigningSecrets(
    std::function<std::optional<std::string>(const TenantId&)> secrets) {
  impl_->secrets = std::move(secrets);
}

void DeliveryDispatcher::SetListener(DeliveryListener* listener) { impl_->listener = listener; }

void DeliveryDispatcher::Start() {
  Impl& im = *impl_;
  std::lock_guard life(im.lifecycle_mu);
  if (im.started) return;
  im.started = true;
  if (!im.transport.ok()) {
    spdlog::error("dispatch: could not create the libcurl multi handle; not delivering");
    return;
  }
  // Recovery: every tenant with a pending row gets a scan.
  std::vector<std::string> found = im.TenantsWithPendingRows();
  {
    std::lock_guard lock(im.mu);
    im.running = true;
    for (auto& t : found) im.notified.insert(std::move(t));  // (the thread checks ownership)
  }
  im.thread = std::thread([&im] { im.Loop(); });
}

void DeliveryDispatcher::Stop() {
  Impl& im = *impl_;
  std::lock_guard life(im.lifecycle_mu);
  if (!im.thread.joinable()) return;
  {
    std::lock_guard lock(im.mu);
    im.stopping = true;
  }
  im.transport.Wakeup();
  im.thread.join();
}

void DeliveryDispatcher::Notify(const TenantId& tenant) {
  Impl& im = *impl_;
  {
    std::lock_guard lock(im.mu);
    if (!im.running || im.stopping) return;
    im.notified.insert(tenant.str());
    im.idle = false;
  }
  im.transport.Wakeup();
}

void DeliveryDispatcher::SetOwnership(std::function<bool(const TenantId&)> owns) {
  impl_->owns = std::move(owns);
}

Status DeliveryDispatcher::RemoveTenant(const TenantId& tenant) {
  return impl_->Remove(tenant, /*keep_rows=*/false);
}

Status DeliveryDispatcher::ReleaseTenant(const TenantId& tenant) {
  return impl_->Remove(tenant, /*keep_rows=*/true);
}

Status DeliveryDispatcher::Impl::Remove(const TenantId& tenant, bool keep_rows) {
  Impl& im = *this;
  std::unique_lock lock(im.mu);
  if (!im.running) {
    // No thread to coordinate with; holding mu keeps Start from racing the delete.
    return keep_rows ? Status::Ok() : im.DeleteTenantRows(tenant);
  }
  auto r = std::make_shared<Removal>();
  r->tenant = tenant;
  r->keep_rows = keep_rows;
  auto done = r->done.get_future();
  im.removals.push_back(std::move(r));
  im.idle = false;
  lock.unlock();
  im.transport.Wakeup();
  return done.get();
}

bool DeliveryDispatcher::WaitIdle(std::chrono::milliseconds timeout) {
  Impl& im = *impl_;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock lock(im.mu);
  while (true) {
    if (!im.running) return false;
    if (im.idle && im.notified.empty() && im.removals.empty() &&
        im.clock->NowMillis() < im.next_wake_ms) {
      return true;
    }
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    // Bounded steps: the clock may move without the dispatcher publishing anything.
    im.cv.wait_until(lock, std::min(deadline, now + std::chrono::milliseconds(10)));
  }
}

}  // namespace fairway::dispatch
