// The watchdog, status snapshots for the API and metrics, and metric registration.

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "engine/engine_internal.h"

namespace fairway::engine {

// ---------------------------------------------------------------------------------------------
// Watchdog

void Engine::Impl::WatchdogLoop() {
  const auto period = std::clamp<std::chrono::milliseconds>(
      options.stall_timeout / 4, std::chrono::milliseconds(10), std::chrono::milliseconds(250));
  std::unique_lock lock(mu);
  while (!stopping) {
    watchdog_cv.wait_for(lock, period);
    if (stopping) break;
    WatchdogPass(clock->MonotonicNanos());
  }
}

bool Engine::Impl::ExpectsProgress(Stream* s, int64_t now_ns) {
  if (s->in_flight_items > 0) return true;
  const Tenant* t = s->tenant.get();
  if (!s->enabled || !t->active() || s->breaker.state == Breaker::State::kOpen) return false;
  // With nothing in processing no lead is busy; a ready lead may still be backing off.
  size_t checked = 0;
  bool ready = false;
  for (const Lead* l : s->ready) {
    if (!l->empty() && l->not_before_ns <= now_ns) {
      ready = true;
      break;
    }
    if (++checked == 64) break;
  }
  if (!ready) return false;
  double rate = t->config.quotas.processing_rate;
  return rate <= 0 || s->throttle.Available(rate, now_ns) >= 1;
}

void Engine::Impl::WatchdogPass(int64_t now_ns) {
  const int64_t stall_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(options.stall_timeout).count();
  for (auto& [id, t] : tenants) {
    if (t->removing) continue;
    for (auto& sp : t->streams) {
      Stream* s = sp.get();
      // (A stream the watchdog has not seen yet starts its watch now: a tenant that arrives
      // with a backlog has ready work before it has had a chance to dispatch any.)
      if (s->watchdog_since_ns == 0 || s->progress != s->watchdog_progress ||
          !ExpectsProgress(s, now_ns) || s->breaker.state == Breaker::State::kOpen) {
        s->watchdog_progress = s->progress;
        s->watchdog_since_ns = now_ns;
        continue;
      }
      if (now_ns - s->watchdog_since_ns < stall_ns) continue;
      s->last_error = fmt::format(
          "watchdog: no work item dispatched or completed for {} s with {} activities in "
          "processing and {} leads ready",
          (now_ns - s->watchdog_since_ns) / kNsPerSec, s->in_flight_events, s->ready.size());
      spdlog::error("engine: tenant {} processor {}: {}", t->config.id.str(), s->spec->name,
                    s->last_error);
      watchdog_trips->Add();
      s->watchdog_since_ns = now_ns;
      OpenBreaker(s, now_ns);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Status

StreamStatus Engine::Impl::Snapshot(Stream* s, int64_t now_ns) {
  StreamStatus st;
  st.processor = s->spec->name;
  st.ordering = std::string(OrderingName(s->spec->ordering));
  st.enabled = s->enabled;
  st.processed_total = s->processed->value();
  st.failures_total = s->failures->value();
  st.dead_letters_total = s->dead_letters->value();
  st.events_per_second = s->rate.Rate(now_ns);
  st.in_flight = s->in_flight_events;
  st.buffered_bytes = s->buffered_bytes;
  st.latency_p50_s = s->latency->Quantile(0.5);
  st.latency_p99_s = s->latency->Quantile(0.99);
  st.last_error = s->last_error;
  for (size_t p = 0; p < s->partitions.size(); ++p) {
    PartitionProgress pp;
    pp.partition = static_cast<uint32_t>(p);
    pp.committed = s->committed_lwm[p];
    pp.completed_above = s->committed_above[p];
    pp.high_watermark = std::max(s->partitions[p].hwm, pp.committed);
    st.lag_events += pp.high_watermark - pp.committed -
                     std::min(pp.completed_above, pp.high_watermark - pp.committed);
    st.partitions.push_back(pp);
  }
  if (!s->enabled) {
    st.state = "disabled";
  } else if (!s->tenant->active()) {
    st.state = "tenant_suspended";
  } else if (s->breaker.state == Breaker::State::kOpen) {
    st.state = "breaker_open";
  } else if (s->breaker.state == Breaker::State::kHalfOpen) {
    st.state = "half_open";
  } else {
    st.state = st.lag_events == 0 && s->in_flight_items == 0 ? "idle" : "running";
  }
  if (s->breaker.state != Breaker::State::kClosed) {
    st.breaker_opened_at_ms = s->breaker.opened_at_ms;
    st.breaker_probe_at_ms =
        clock->NowMillis() + std::max<int64_t>(0, (s->breaker.probe_at_ns - now_ns) / kNsPerMs);
  }
  return st;
}

void Engine::Impl::FillLagSeconds(const TenantId& tenant, StreamStatus* status) {
  int64_t oldest = INT64_MAX;
  for (const auto& p : status->partitions) {
    if (p.committed >= p.high_watermark) continue;
    auto r = log->Read(tenant, PartitionId(p.partition), Offset(p.committed), 1);
    if (r.ok() && !r->empty()) oldest = std::min(oldest, r->front().activity.received_at_ms);
  }
  if (oldest != INT64_MAX) {
    status->lag_seconds =
        std::max<double>(0, static_cast<double>(clock->NowMillis() - oldest) / 1e3);
  }
}

std::vector<std::pair<TenantId, StreamStatus>> Engine::Impl::MetricsSnapshot() {
  std::lock_guard lock(metrics_snapshot_mu);
  const int64_t now = clock->MonotonicNanos();
  if (!metrics_snapshot_at_ns || now - *metrics_snapshot_at_ns >= 100 * kNsPerMs ||
      now < *metrics_snapshot_at_ns) {
    metrics_snapshot = SnapshotAll();
    metrics_snapshot_at_ns = now;
  }
  return metrics_snapshot;
}

std::vector<std::pair<TenantId, StreamStatus>> Engine::Impl::SnapshotAll() {
  std::vector<std::pair<TenantId, StreamStatus>> out;
  {
    std::lock_guard lock(mu);
    int64_t now_ns = clock->MonotonicNanos();
    for (auto& [id, t] : tenants) {
      if (t->removing) continue;
      for (auto& s : t->streams) out.emplace_back(t->config.id, Snapshot(s.get(), now_ns));
    }
  }
  for (auto& [id, st] : out) FillLagSeconds(id, &st);
  return out;
}

}  // namespace fairway::engine
