#include "engine/engine.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "engine/engine_internal.h"

namespace fairway::engine {

namespace {

Result<DeadLetter> DecodeDeadLetter(std::string_view key, size_t prefix_size,
                                    std::string_view value) {
  DeadLetter d;
  if (key.size() != prefix_size + 12) return Internal("dead letter: bad key");
  d.partition = DecodeFixed32BE(key.data() + prefix_size);
  d.offset = DecodeFixed64BE(key.data() + prefix_size + 4);
  d.id = fmt::format("{}-{}", d.partition, d.offset);
  Decoder dec(value);
  uint8_t cls = 0;
  uint64_t attempts = 0, failed_at = 0;
  std::string_view reason;
  if (!dec.GetByte(&cls) || cls > 2 || !dec.GetVarint64(&attempts) ||
      !dec.GetFixed64BE(&failed_at) || !dec.GetLengthPrefixed(&reason)) {
    return Internal("dead letter: corrupt value");
  }
  d.error_class = static_cast<ErrorClass>(cls);
  d.attempts = static_cast<uint32_t>(attempts);
  d.failed_at_ms = static_cast<int64_t>(failed_at);
  d.reason = std::string(reason);
  FAIRWAY_ASSIGN_OR_RETURN(d.activity, model::DecodeActivity(dec.rest()));
  return d;
}

// Parses "<partition>-<offset>".
bool ParsePosition(std::string_view id, uint32_t* partition, uint64_t* offset) {
  auto dash = id.find('-');
  if (dash == std::string_view::npos || dash == 0 || dash + 1 >= id.size()) return false;
  uint64_t p = 0, o = 0;
  for (size_t i = 0; i < id.size(); ++i) {
    if (i == dash) continue;
    char c = id[i];
    if (c < '0' || c > '9') return false;
    uint64_t& v = i < dash ? p : o;
    if (v > (UINT64_MAX - 9) / 10) return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (p > UINT32_MAX) return false;
  *partition = static_cast<uint32_t>(p);
  *offset = o;
  return true;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Setup

Status Engine::Impl::LoadStream(Tenant* t, Stream* s) {
  const uint32_t partitions = t->config.log_partitions();
  s->partitions.resize(partitions);
  s->committed_lwm = std::make_unique<std::atomic<uint64_t>[]>(partitions);
  s->committed_above = std::make_unique<std::atomic<uint64_t>[]>(partitions);
  for (uint32_t p = 0; p < partitions; ++p) {
    FAIRWAY_ASSIGN_OR_RETURN(auto v,
                             store->Get(storage::kEngineOffsets, PartitionKey(s->key_prefix, p)));
    if (v) {
      auto c = CommittedOffsets::Decode(*v);
      if (!c.ok()) {
        return Internal(fmt::format("offsets of {} {} partition {}: {}", t->config.id.str(),
                                    s->spec->name, p, c.status().message()));
      }
      s->partitions[p].committed = std::move(c).value();
    }
    s->partitions[p].next_fetch = s->partitions[p].committed.low_water_mark();
    s->PublishCommitted(p);
  }
  std::string meta_key = s->key_prefix.substr(0, s->key_prefix.size() - 1);
  FAIRWAY_ASSIGN_OR_RETURN(auto meta, store->Get(storage::kEngineMeta, meta_key));
  s->enabled = meta ? *meta == "1" : s->spec->enabled_by_default;
  Labels labels = {{"tenant", t->config.id.str()}, {"processor", s->spec->name}};
  s->processed = metrics->GetCounter("fairway_engine_processed_total",
                                     "Activities processed, by tenant and processor.", labels);
  s->failures = metrics->GetCounter("fairway_engine_failures_total",
                                    "Failed processing attempts, by tenant and processor.", labels);
  s->repeats = metrics->GetCounter(
      "fairway_engine_repeats_skipped_total",
      "Activities not processed because an earlier record of the tenant's log has their "
      "messageId (EngineOptions::skip_repeats), by tenant and processor.",
      labels);
  s->dead_letters = metrics->GetCounter(
      "fairway_engine_dead_letters_total",
      "Activities moved to the dead-letter store, by tenant and processor.", labels);
  s->latency =
      metrics->GetHistogram("fairway_engine_latency_seconds",
                            "Time from ingest (receivedAt) to processed, by tenant and processor.",
                            LatencyBuckets(), labels);
  return Status::Ok();
}

void Engine::Impl::RegisterMetrics() {
  watchdog_trips = metrics->GetCounter(
      "fairway_engine_watchdog_trips_total",
      "Circuit breakers opened by the watchdog: a processor that made no progress while it had "
      "runnable work or work in processing.");
  // The registry may outlive the engine: the gauges hold no pointer into it.
  auto per_stream = [this](double (*pick)(const StreamStatus&)) {
    return [weak = self, pick] {
      std::vector<std::pair<Labels, double>> out;
      auto impl = weak.lock();
      if (!impl) return out;
      for (auto& [id, st] : impl->MetricsSnapshot()) {
        out.push_back({{{"tenant", id.str()}, {"processor", st.processor}}, pick(st)});
      }
      return out;
    };
  };
  metrics->SetGaugeFunction(
      "fairway_engine_lag_events", "Activities in the log not yet processed.",
      per_stream([](const StreamStatus& s) { return static_cast<double>(s.lag_events); }));
  metrics->SetGaugeFunction("fairway_engine_lag_seconds",
                            "Age of the oldest activity not yet processed.",
                            per_stream([](const StreamStatus& s) { return s.lag_seconds; }));
  metrics->SetGaugeFunction(
      "fairway_engine_suspended",
      "1 while a tenant's processor is not running: breaker open or half-open, disabled, or "
      "tenant suspended.",
      per_stream([](const StreamStatus& s) {
        return s.state == "running" || s.state == "idle" ? 0.0 : 1.0;
      }));
  metrics->SetGaugeFunction(
      "fairway_engine_in_flight", "Activities in processing.",
      per_stream([](const StreamStatus& s) { return static_cast<double>(s.in_flight); }));
  metrics->SetGaugeFunction("fairway_engine_buffered_bytes",
                            "Memory held by activities read ahead of processing.", [weak = self] {
                              std::vector<std::pair<Labels, double>> out;
                              if (auto impl = weak.lock()) {
                                std::lock_guard lock(impl->mu);
                                out.push_back({{}, static_cast<double>(impl->global_buffered)});
                              }
                              return out;
                            });
}

// ---------------------------------------------------------------------------------------------
// Engine

Engine::Engine(storage::Store* store, log::ActivityLog* log, const Clock* clock,
               MetricsRegistry* metrics, EngineOptions options)
    : impl_(std::make_shared<Impl>(store, log, clock, metrics, options)) {
  impl_->self = impl_;
}

Engine::~Engine() { Stop(); }

void Engine::AddProcessor(std::unique_ptr<Processor> processor) {
  const std::string& after = processor->spec().after;
  if (!after.empty() &&
      std::none_of(impl_->processors.begin(), impl_->processors.end(),
                   [&](const auto& p) { return p->processor->spec().name == after; })) {
    spdlog::critical("engine: processor '{}' runs after '{}', which is not registered before it",
                     processor->spec().name, after);
    std::abort();
  }
  auto slot = std::make_unique<ProcessorSlot>();
  slot->processor = std::move(processor);
  slot->index = impl_->processors.size();
  impl_->processors.push_back(std::move(slot));
}

void Engine::Start() {
  std::weak_ptr<Impl> weak = impl_;
  impl_->log->SetAppendListener([weak](const std::vector<log::PartitionAdvance>& advances) {
    if (auto impl = weak.lock()) impl->OnAppend(advances);
  });
  impl_->RegisterMetrics();
  std::lock_guard lock(impl_->mu);
  impl_->started = true;
  impl_->stopping = false;
  for (size_t i = 0; i < std::max<size_t>(1, impl_->options.threads); ++i) {
    impl_->workers.emplace_back([impl = impl_.get()] { impl->WorkerLoop(); });
  }
  if (impl_->options.stall_timeout.count() > 0) {
    impl_->watchdog = std::thread([impl = impl_.get()] { impl->WatchdogLoop(); });
  }
}

void Engine::Stop() {
  {
    std::lock_guard lock(impl_->mu);
    if (!impl_->started) return;
    impl_->started = false;
    impl_->stopping = true;
    impl_->work_cv.notify_all();
    impl_->watchdog_cv.notify_all();
  }
  for (auto& w : impl_->workers) w.join();
  impl_->workers.clear();
  if (impl_->watchdog.joinable()) impl_->watchdog.join();
  // Work handed to processors finishes (asynchronous processors complete on their own threads).
  std::unique_lock lock(impl_->mu);
  impl_->done_cv.wait(lock, [&] { return impl_->total_in_flight == 0; });
}

Status Engine::UpsertTenant(const model::TenantConfig& config) {
  if (config.status == model::TenantStatus::kDeleting) return RemoveTenant(config.id);
  Impl& im = *impl_;
  if (im.owns && !im.owns(config.id)) return ReleaseTenant(config.id);
  {
    // A new layout adds partitions: every stream's commits wait while they are added.
    std::shared_ptr<Tenant> existing;
    std::vector<std::shared_ptr<Stream>> growing;
    {
      std::lock_guard lock(im.mu);
      auto it = im.tenants.find(config.id.str());
      if (it != im.tenants.end()) {
        existing = it->second;
        if (config.log_partitions() > existing->config.log_partitions()) {
          growing = existing->streams;
        }
      }
    }
    std::vector<std::unique_lock<std::mutex>> commit_locks;
    for (auto& s : growing) commit_locks.emplace_back(s->commit_mu);
    std::unique_lock lock(im.mu);
    auto it = im.tenants.find(config.id.str());
    if (it != im.tenants.end()) {
      if (it->second->removing) return FailedPrecondition("tenant is being removed");
      if (it->second != existing ||
          (growing.empty() && config.log_partitions() > it->second->config.log_partitions())) {
        // Added, replaced or changed between the two lookups: again, with the right streams
        // locked.
        lock.unlock();
        commit_locks.clear();
        return UpsertTenant(config);
      }
      const uint32_t old_partitions = it->second->config.log_partitions();
      if (config.log_partitions() < old_partitions ||
          config.sealed_layouts.size() < it->second->config.sealed_layouts.size()) {
        return FailedPrecondition(fmt::format(
            "tenant '{}': a configuration with fewer partition layouts than the running one",
            config.id.str()));
      }
      const bool new_rate =
          it->second->config.quotas.processing_rate != config.quotas.processing_rate;
      if (config.log_partitions() > old_partitions) {
        for (auto& s : it->second->streams) s->GrowPartitions(config.log_partitions());
      }
      commit_locks.clear();
      it->second->config = config;
      it->second->dedup_window_seconds = config.quotas.dedup_window_seconds;
      for (auto& s : it->second->streams) {
        if (new_rate) s->throttle = ProcessingThrottle();  // a new rate starts with a full burst
        s->throttle_timer = false;                         // and re-arms the throttle
        im.Activate(s.get());
        im.MaybeQueueFetch(s);
        im.MaybeReleaseBuffers(s.get());
      }
      im.work_cv.notify_all();
      im.done_cv.notify_all();
      // The new partitions' high watermarks are read now that the append listener hears of
      // them, so no append to them is missed; all of them if an earlier read failed.
      const bool reload = std::any_of(it->second->streams.begin(), it->second->streams.end(),
                                      [](const auto& s) { return s->loading; });
      if (config.log_partitions() <= old_partitions && !reload) return Status::Ok();
      std::vector<std::shared_ptr<Stream>> streams = it->second->streams;
      lock.unlock();
      return im.ReadHighWatermarks(config, reload ? 0 : old_partitions, streams);
    }
  }
  auto t = std::make_shared<Tenant>();
  t->config = config;
  t->dedup_window_seconds = config.quotas.dedup_window_seconds;
  for (auto& slot : im.processors) {
    auto s = std::make_shared<Stream>();
    s->self = s;
    s->tenant = t;
    s->tenant_id = config.id;
    s->slot = slot.get();
    s->processor = slot->processor.get();
    s->spec = &slot->processor->spec();
    s->key_prefix = StateKeyPrefix(config.id, s->spec->name);
    FAIRWAY_RETURN_IF_ERROR(im.LoadStream(t.get(), s.get()));
    t->streams.push_back(std::move(s));
  }
  for (auto& s : t->streams) {
    if (s->spec->after.empty()) continue;
    for (auto& up : t->streams) {
      if (up->spec->name == s->spec->after) {
        s->upstream = up;
        up->downstream.push_back(s);
      }
    }
  }
  // Ownership is checked again where the tenant becomes visible, under the lock a release takes
  // to find it: a release that began meanwhile either finds the tenant or keeps it out.
  if (im.owns && !im.owns(config.id)) return Status::Ok();
  // Generated activities a crash left in the outbox go to the log before any new work runs.
  im.ScanOutbox(config);
  {
    std::lock_guard lock(im.mu);
    if ((im.owns && !im.owns(config.id)) || !im.tenants.emplace(config.id.str(), t).second) {
      t->streams.clear();
      return Status::Ok();  // added concurrently
    }
  }
  // High watermarks are read after the tenant is visible to the append listener, so no
  // append is missed; until then its streams do not count as idle.
  return im.ReadHighWatermarks(config, 0, t->streams);
}

Status Engine::Impl::ReadHighWatermarks(const model::TenantConfig& config, uint32_t from,
                                        const std::vector<std::shared_ptr<Stream>>& streams) {
  const uint32_t n = config.log_partitions();
  std::vector<uint64_t> hwms(n);
  Status read_status;
  for (uint32_t p = from; p < n && read_status.ok(); ++p) {
    auto h = log->HighWatermark(config.id, PartitionId(p));
    if (h.ok()) {
      hwms[p] = h->value();
    } else {
      read_status = h.status();
    }
  }
  std::lock_guard lock(mu);
  for (auto& s : streams) {
    for (uint32_t p = from; p < n && p < s->partitions.size(); ++p) {
      s->partitions[p].hwm = std::max(s->partitions[p].hwm, hwms[p]);
    }
    s->loading = !read_status.ok();
    MaybeQueueFetch(s);
  }
  done_cv.notify_all();
  return read_status;
}

void Engine::SetOwnership(std::function<bool(const TenantId&)> owns) {
  impl_->owns = std::move(owns);
}

Status Engine::ReleaseTenant(const TenantId& tenant) {
  Impl& im = *impl_;
  std::shared_ptr<Tenant> t;
  FAIRWAY_RETURN_IF_ERROR(im.Detach(tenant, &t));
  if (t == nullptr) return Status::Ok();
  {
    // Commits finished with the work they belong to; none is in progress now.
    std::vector<std::unique_lock<std::mutex>> commit_locks;
    for (auto& s : t->streams) commit_locks.emplace_back(s->commit_mu);
  }
  std::lock_guard lock(im.mu);
  t->streams.clear();  // breaks the tenant <-> stream cycle
  return Status::Ok();
}

Status Engine::Impl::Detach(const TenantId& tenant, std::shared_ptr<Tenant>* out) {
  Impl& im = *this;
  std::shared_ptr<Tenant> t;
  {
    std::unique_lock lock(im.mu);
    auto it = im.tenants.find(tenant.str());
    if (it == im.tenants.end()) return Status::Ok();
    t = it->second;
    if (t->removing) return FailedPrecondition("tenant is already being removed");
    t->removing = true;
    im.done_cv.wait(lock, [&] {
      for (auto& s : t->streams) {
        if (s->in_flight_items > 0 || s->fetching) return false;
      }
      return !im.tenant_outbox.contains(tenant.str());
    });
    for (auto& s : t->streams) {
      s->removed = true;
      std::erase(im.rr, s.get());
      s->in_rr = false;
      std::erase(im.fetch_queue, s);
      s->fetch_queued = false;
      im.global_buffered -= s->buffered_bytes;
      s->buffered_bytes = 0;
    }
    im.chunks.DropTenant(t.get());
    im.tenants.erase(tenant.str());
    im.Unstarve();
    im.done_cv.notify_all();
  }
  *out = std::move(t);
  return Status::Ok();
}

Status Engine::RemoveTenant(const TenantId& tenant) {
  Impl& im = *impl_;
  std::shared_ptr<Tenant> t;
  FAIRWAY_RETURN_IF_ERROR(im.Detach(tenant, &t));
  if (t == nullptr) return Status::Ok();
  std::string begin = tenant.str();
  begin.push_back('\0');
  std::string end = PrefixEnd(begin);
  storage::WriteBatch batch;
  for (auto cf : {storage::kEngineState, storage::kEngineOffsets, storage::kDeadLetters,
                  storage::kOutbox, storage::kEngineMeta}) {
    batch.DeleteRange(cf, begin, end);
  }
  Status st;
  {
    // No commit of a stream of this tenant can land after the delete.
    std::vector<std::unique_lock<std::mutex>> commit_locks;
    for (auto& s : t->streams) commit_locks.emplace_back(s->commit_mu);
    st = im.store->Write(batch, /*sync=*/true);
  }
  {
    std::lock_guard lock(im.mu);
    t->streams.clear();  // breaks the tenant <-> stream cycle
  }
  FAIRWAY_RETURN_IF_ERROR(st);
  im.metrics->RemoveSeriesWithLabel("tenant", tenant.str());
  return Status::Ok();
}

Status Engine::SetEnabled(const TenantId& tenant, std::string_view processor, bool enabled) {
  Impl& im = *impl_;
  std::shared_ptr<Stream> s;
  {
    std::lock_guard lock(im.mu);
    s = im.FindStream(tenant, processor);
  }
  if (!s) {
    return NotFound(
        fmt::format("processor '{}' of tenant '{}' not found", processor, tenant.str()));
  }
  {
    // Under the stream's commit lock, so a concurrent removal cannot leave the row behind.
    std::lock_guard commit_lock(s->commit_mu);
    if (s->removed) return NotFound(fmt::format("tenant '{}' not found", tenant.str()));
    storage::WriteBatch batch;
    batch.Put(storage::kEngineMeta, s->key_prefix.substr(0, s->key_prefix.size() - 1),
              enabled ? "1" : "0");
    FAIRWAY_RETURN_IF_ERROR(im.store->Write(batch, /*sync=*/true));
  }
  std::lock_guard lock(im.mu);
  s->enabled = enabled;
  im.Activate(s.get());
  im.MaybeQueueFetch(s);
  im.MaybeReleaseBuffers(s.get());
  im.WakeDownstream(s.get());  // they no longer wait for a disabled processor
  im.done_cv.notify_all();
  return Status::Ok();
}

Status Engine::ResumeProcessor(const TenantId& tenant, std::string_view processor) {
  Impl& im = *impl_;
  std::lock_guard lock(im.mu);
  auto s = im.FindStream(tenant, processor);
  if (!s)
    return NotFound(
        fmt::format("processor '{}' of tenant '{}' not found", processor, tenant.str()));
  s->breaker.state = Breaker::State::kClosed;
  s->breaker.reopens = 0;
  s->breaker.Reset();
  s->breaker_epoch++;
  im.Activate(s.get());
  im.MaybeQueueFetch(s);
  im.done_cv.notify_all();
  return Status::Ok();
}

Result<std::vector<StreamStatus>> Engine::GetStatus(const TenantId& tenant) {
  Impl& im = *impl_;
  std::vector<StreamStatus> out;
  {
    std::lock_guard lock(im.mu);
    auto it = im.tenants.find(tenant.str());
    if (it == im.tenants.end() || it->second->removing) {
      return NotFound(fmt::format("tenant '{}' not found", tenant.str()));
    }
    int64_t now_ns = im.clock->MonotonicNanos();
    for (auto& s : it->second->streams) out.push_back(im.Snapshot(s.get(), now_ns));
  }
  for (auto& st : out) im.FillLagSeconds(tenant, &st);
  return out;
}

std::vector<log::ProcessingProgress> Engine::Progress() {
  Impl& im = *impl_;
  std::vector<log::ProcessingProgress> out;
  std::lock_guard lock(im.mu);
  for (auto& [id, t] : im.tenants) {
    if (t->removing) continue;
    for (auto& s : t->streams) {
      log::ProcessingProgress& p = out.emplace_back();
      p.tenant = t->config.id;
      p.processor = s->spec->name;
      p.committed.reserve(s->partitions.size());
      p.high.reserve(s->partitions.size());
      for (size_t i = 0; i < s->partitions.size(); ++i) {
        p.committed.push_back(s->committed_lwm[i]);
        p.high.push_back(std::max<uint64_t>(s->partitions[i].hwm, p.committed.back()));
      }
    }
  }
  return out;
}

Result<DeadLetterPage> Engine::ListDeadLetters(const TenantId& tenant, std::string_view processor,
                                               std::string_view cursor, size_t limit) {
  Impl& im = *impl_;
  if (limit == 0) return InvalidArgument("parameter 'limit' must be at least 1");
  std::string prefix;
  {
    std::lock_guard lock(im.mu);
    auto s = im.FindStream(tenant, processor);
    if (!s)
      return NotFound(
          fmt::format("processor '{}' of tenant '{}' not found", processor, tenant.str()));
    prefix = s->key_prefix;
  }
  std::string lower = prefix;
  if (!cursor.empty()) {
    uint32_t p = 0;
    uint64_t o = 0;
    if (!ParsePosition(cursor, &p, &o)) return InvalidArgument("parameter 'cursor' is not valid");
    lower = PositionKey(prefix, p, o);
    lower.push_back('\0');  // strictly after the cursor
  }
  DeadLetterPage page;
  auto it = im.store->NewIterator(storage::kDeadLetters, lower, PrefixEnd(prefix));
  for (it->Seek(lower); it->Valid(); it->Next()) {
    if (page.items.size() == limit) {
      page.next_cursor = page.items.back().id;
      break;
    }
    FAIRWAY_ASSIGN_OR_RETURN(DeadLetter d, DecodeDeadLetter(it->key(), prefix.size(), it->value()));
    page.items.push_back(std::move(d));
  }
  FAIRWAY_RETURN_IF_ERROR(it->status());
  return page;
}

Result<size_t> Engine::ReplayDeadLetters(const TenantId& tenant, std::string_view processor,
                                         const std::vector<std::string>& ids, size_t limit) {
  Impl& im = *impl_;
  std::shared_ptr<Stream> s;
  {
    std::lock_guard lock(im.mu);
    s = im.FindStream(tenant, processor);
  }
  if (!s)
    return NotFound(
        fmt::format("processor '{}' of tenant '{}' not found", processor, tenant.str()));
  std::vector<DeadLetter> letters;
  if (ids.empty()) {
    FAIRWAY_ASSIGN_OR_RETURN(DeadLetterPage page, ListDeadLetters(tenant, processor, "", limit));
    letters = std::move(page.items);
  } else {
    for (const auto& id : ids) {
      uint32_t p = 0;
      uint64_t o = 0;
      if (!ParsePosition(id, &p, &o)) {
        return InvalidArgument(fmt::format("field 'ids' has an invalid id '{}'", id));
      }
      std::string key = PositionKey(s->key_prefix, p, o);
      FAIRWAY_ASSIGN_OR_RETURN(auto v, im.store->Get(storage::kDeadLetters, key));
      if (!v) return NotFound(fmt::format("dead letter '{}' not found", id));
      FAIRWAY_ASSIGN_OR_RETURN(DeadLetter d, DecodeDeadLetter(key, s->key_prefix.size(), *v));
      letters.push_back(std::move(d));
      if (letters.size() == limit) break;
    }
  }
  std::lock_guard lock(im.mu);
  if (s->tenant->removing) return NotFound(fmt::format("tenant '{}' not found", tenant.str()));
  auto chunk = std::make_shared<Chunk>();
  for (auto& d : letters) {
    if (!s->replaying.emplace(d.id, true).second) continue;  // already queued
    chunk->entries.push_back({PartitionId(d.partition), Offset(d.offset), std::move(d.activity)});
  }
  size_t queued = chunk->entries.size();
  std::vector<uint64_t> keys;
  std::vector<const log::LogEntry*> entries;
  for (const auto& e : chunk->entries) {
    keys.push_back(OrderingKey(s->spec->ordering, e));
    entries.push_back(&e);
  }
  im.InsertFetched(s.get(), chunk, entries, keys, im.clock->MonotonicNanos(),
                   /*replay=*/true);
  im.Activate(s.get());
  im.work_cv.notify_all();
  return queued;
}

bool Engine::WaitIdle(std::chrono::milliseconds timeout) {
  Impl& im = *impl_;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock lock(im.mu);
  while (true) {
    bool idle = im.fetch_queue.empty() && im.outbox_in_flight == 0;
    for (auto& [id, t] : im.tenants) {
      for (auto& s : t->streams) idle = idle && im.StreamIdle(s.get());
    }
    if (idle) return true;
    if (im.done_cv.wait_until(lock, deadline) == std::cv_status::timeout) return false;
  }
}

}  // namespace fairway::engine
