// Completing a work item: retries, dead letters, breaker bookkeeping, the atomic commit of state,
// offsets and generated activities, and forwarding generated activities to the log.

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "engine/engine_internal.h"

namespace fairway::engine {

namespace {

// A failed attempt, as the engine retries it.
struct Failure {
  ErrorClass error_class;
  std::string message;
};

std::string EncodeDeadLetter(ErrorClass cls, uint32_t attempts, int64_t failed_at_ms,
                             std::string_view reason, const model::Activity& a) {
  std::string v;
  v.push_back(static_cast<char>(cls));
  PutVarint64(&v, attempts);
  PutFixed64BE(&v, static_cast<uint64_t>(failed_at_ms));
  PutLengthPrefixed(&v, reason);
  model::EncodeActivity(a, &v);
  return v;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Completion and commit

Status Engine::Impl::Commit(Stream* s, storage::WriteBatch* batch,
                            const std::vector<const log::LogEntry*>& entries,
                            const std::vector<uint8_t>& counts_as_done,
                            const std::string* replay_key, const log::AppendRequest* generated) {
  // (partition, offset) of the entries whose offsets this commit completes, coalesced into runs.
  std::vector<std::pair<uint32_t, uint64_t>> positions;
  positions.reserve(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    if (counts_as_done[i]) {
      positions.emplace_back(entries[i]->partition.value(), entries[i]->offset.value());
    }
  }
  std::sort(positions.begin(), positions.end());
  std::lock_guard commit_lock(s->commit_mu);
  if (s->removed) return Aborted("tenant removed");
  if (replay_key != nullptr) {
    FAIRWAY_ASSIGN_OR_RETURN(auto row, store->Get(storage::kDeadLetters, *replay_key));
    if (!row) return Aborted("dead letter already replayed");
  }
  std::vector<std::pair<uint32_t, CommittedOffsets>> updated;
  for (size_t i = 0; i < positions.size();) {
    uint32_t p = positions[i].first;
    CommittedOffsets c = s->partitions[p].committed;
    while (i < positions.size() && positions[i].first == p) {
      uint64_t begin = positions[i].second, end = begin + 1;
      ++i;
      while (i < positions.size() && positions[i].first == p && positions[i].second == end) {
        ++end;
        ++i;
      }
      c.MarkDone(begin, end);
    }
    batch->Put(storage::kEngineOffsets, PartitionKey(s->key_prefix, p), c.Encode());
    updated.emplace_back(p, std::move(c));
  }
  if (generated != nullptr && !generated->activities.empty()) {
    // The generated activities join the log in this same write.
    Status st = log->AppendInWrite(*generated, batch, [this](storage::WriteBatch* b) {
      return store->Write(*b, /*sync=*/false);
    });
    if (st.code() == StatusCode::kNotFound) return Aborted("tenant removed");
    FAIRWAY_RETURN_IF_ERROR(st);
  } else {
    if (batch->Count() == 0) return Status::Ok();
    FAIRWAY_RETURN_IF_ERROR(store->Write(*batch, /*sync=*/false));
  }
  for (auto& [p, c] : updated) {
    s->partitions[p].committed = std::move(c);
    s->PublishCommitted(p);
  }
  return Status::Ok();
}

void Engine::Impl::Complete(ItemImpl* raw, Status status) {
  std::unique_ptr<ItemImpl> item(raw);
  std::optional<Failure> error;
  if (!status.ok()) error = Failure{RetryClassOf(status.code()), status.message()};
  Stream* s = item->stream_.get();
  const ProcessorSpec& spec = *s->spec;
  const size_t n = item->entries_.size();
  const int64_t now_ms = clock->NowMillis();
  std::vector<uint8_t> done(n);
  for (size_t i = 0; i < n; ++i) done[i] = item->replay_[i] ? 0 : 1;
  // A replay runs alone (Dispatch): its dead letter must still exist when it commits.
  std::optional<std::string> replay_key;
  if (n == 1 && item->replay_[0]) {
    replay_key = PositionKey(s->key_prefix, item->entries_[0]->partition.value(),
                             item->entries_[0]->offset.value());
  }
  // Nothing to apply: the replay was applied already, or the tenant is gone.
  bool dropped = false;

  std::vector<std::string> outbox_keys;
  bool committed = false;
  // The processor succeeded but its commit failed: retried as it is after
  // EngineOptions::storage_retry, without counting as an attempt, a failure or a breaker
  // outcome, so a storage outage never dead-letters activities or opens breakers.
  bool storage_failed = false;
  if (!error) {
    storage::WriteBatch batch;
    item->txn_.AppendTo(&batch);
    for (size_t i = 0; i < n; ++i) {
      if (item->replay_[i]) {
        batch.Delete(storage::kDeadLetters,
                     PositionKey(s->key_prefix, item->entries_[i]->partition.value(),
                                 item->entries_[i]->offset.value()));
      }
    }
    for (model::Activity& a : item->emitted_) {
      if (a.received_at_ms == 0) a.received_at_ms = now_ms;
      if (a.timestamp_ms == 0) a.timestamp_ms = now_ms;
    }
    std::optional<log::AppendRequest> generated;
    if (!item->emitted_.empty() && log->AppendsInWrite()) {
      // The log shares the store: the generated activities are appended in the commit itself.
      {
        std::lock_guard lock(mu);
        generated = log::AppendRequestFor(s->tenant->config);
      }
      generated->activities = std::move(item->emitted_);
      item->emitted_.clear();
    } else {
      // Otherwise they wait in the outbox, written with the commit, until the log has them.
      std::string record;
      for (size_t i = 0; i < item->emitted_.size(); ++i) {
        std::string key = PositionKey(s->key_prefix, item->entries_[0]->partition.value(),
                                      item->entries_[0]->offset.value());
        PutFixed32BE(&key, static_cast<uint32_t>(i));
        record.clear();
        model::EncodeActivity(item->emitted_[i], &record);
        batch.Put(storage::kOutbox, key, record);
        outbox_keys.push_back(std::move(key));
      }
    }
    Status st = Commit(s, &batch, item->entries_, done, replay_key ? &*replay_key : nullptr,
                       generated ? &*generated : nullptr);
    if (st.ok()) {
      committed = true;
    } else if (st.code() == StatusCode::kAborted) {
      dropped = true;
      outbox_keys.clear();
    } else {
      // Unavailable: the storage refuses writes (a full disk, an I/O error), not the
      // activities' fault. Anything else (corruption, a bad batch) is retried and dead-lettered
      // like a processing failure, so it cannot loop forever.
      storage_failed = st.code() == StatusCode::kUnavailable;
      // Retried with back-off whatever its code: the store's trouble, not the activities'.
      error = Failure{ErrorClass::kRetryLater, "commit failed: " + st.message()};
      outbox_keys.clear();
    }
  }

  // Before the item counts as done, so that an idle engine has run every hook.
  if (committed) {
    for (auto& fn : item->after_commit_) fn();
  }

  bool dead_lettered = false;
  if (error && item->solo_ && !storage_failed) {
    uint32_t attempts = item->attempts_[0] + 1;
    if (error->error_class == ErrorClass::kPermanent || attempts >= spec.retry.max_attempts) {
      const log::LogEntry& e = *item->entries_[0];
      storage::WriteBatch batch;
      batch.Put(storage::kDeadLetters,
                PositionKey(s->key_prefix, e.partition.value(), e.offset.value()),
                EncodeDeadLetter(error->error_class, attempts, now_ms, error->message, e.activity));
      Status st = Commit(s, &batch, item->entries_, done, replay_key ? &*replay_key : nullptr);
      if (st.ok()) {
        dead_lettered = true;
      } else if (st.code() == StatusCode::kAborted) {
        dropped = true;
        error.reset();
      } else {
        spdlog::error("engine: dead-lettering {} {}-{}: {}", s->tenant_id.str(),
                      e.partition.value(), e.offset.value(), st.ToString());
      }
    }
  }

  // Bookkeeping that needs no lock.
  const bool retry = error && !dead_lettered;
  size_t freed = 0;
  uint64_t processed = 0;
  if (!retry) {
    for (size_t i = 0; i < n; ++i) {
      freed += item->bytes_[i];
      if (dead_lettered || dropped) continue;
      ++processed;
      if (!item->replay_[i]) {
        s->latency->Observe(
            static_cast<double>(now_ms - item->entries_[i]->activity.received_at_ms) / 1e3);
      }
    }
  }

  std::vector<model::Activity> emitted;
  model::TenantConfig tenant_config;
  {
    std::lock_guard lock(mu);
    const int64_t now_ns = clock->MonotonicNanos();
    s->in_flight_items--;
    s->in_flight_events -= static_cast<uint32_t>(n);
    s->progress++;
    // Breaker bookkeeping: every attempt of the processor counts.
    bool should_open = !storage_failed && s->breaker.Record(error.has_value(), spec.breaker);
    if (error) {
      if (!storage_failed) s->failures->Add();
      s->last_error = error->message;
    }
    if (item->probe_) {
      s->breaker.probe_in_flight = false;
      if (storage_failed) {
        // Not an outcome: the next probe tries again once the retry is due.
      } else if (error) {
        s->breaker.reopens++;
        OpenBreaker(s, now_ns);
      } else {
        s->breaker.state = Breaker::State::kClosed;
        s->breaker.reopens = 0;
        s->breaker.Reset();
      }
    } else if (should_open && s->breaker.state == Breaker::State::kClosed) {
      OpenBreaker(s, now_ns);
    }

    if (!retry) {
      for (size_t i = 0; i < n; ++i) {
        if (item->replay_[i]) {
          s->replaying.erase(fmt::format("{}-{}", item->entries_[i]->partition.value(),
                                         item->entries_[i]->offset.value()));
        }
      }
      if (dead_lettered) s->dead_letters->Add();
      s->processed->Add(processed);
      s->rate.Add(now_ns, processed);
      s->buffered_bytes -= freed;
      global_buffered -= freed;
      Lead* prev = nullptr;
      for (Lead* l : item->leads_) {
        if (l == prev) continue;
        prev = l;
        l->busy = false;
        if (l->empty() && !l->ready && l->solo == 0) {
          l->idle = true;
          s->idle_leads++;
        } else {
          MakeReady(s, l, now_ns);
        }
      }
      if (s->idle_leads > kMaxIdleLeads) SweepIdleLeads(s);
    } else {
      // Put the activities back at the front of their leads, in order, and back off. After a
      // failed batch, each is retried alone so the failing one is found.
      for (size_t i = n; i-- > 0;) {
        Pending* p = pool.Get();
        p->entry = item->entries_[i];
        p->chunk = std::move(item->chunks_[i]);
        p->attempts = item->attempts_[i] + (item->solo_ && !storage_failed ? 1 : 0);
        p->replay = item->replay_[i] != 0;
        p->bytes = item->bytes_[i];
        item->leads_[i]->PushFront(p);
        if (!storage_failed) item->leads_[i]->solo++;
      }
      int64_t delay_ms = spec.retry.retry_now_delay.count();
      if (storage_failed) {
        delay_ms = options.storage_retry.count();
      } else if (item->solo_ && error->error_class != ErrorClass::kRetryNow) {
        uint32_t attempts = item->attempts_[0] + 1;
        delay_ms = spec.retry.initial_backoff.count();
        for (uint32_t a = 1; a < attempts && delay_ms < spec.retry.max_backoff.count(); ++a) {
          delay_ms *= 2;
        }
        delay_ms = std::min<int64_t>(delay_ms, spec.retry.max_backoff.count());
      }
      const int64_t at = now_ns + delay_ms * kNsPerMs;
      std::weak_ptr<Stream> weak = item->stream_;
      Lead* prev = nullptr;
      for (Lead* l : item->leads_) {
        if (l == prev) continue;
        prev = l;
        l->busy = false;
        l->not_before_ns = at;
        AddTimer(at, [this, weak, key = l->key] {
          auto st = weak.lock();
          if (!st) return;
          auto it = st->leads.find(key);
          if (it == st->leads.end()) return;
          MakeReady(st.get(), it->second.get(), clock->MonotonicNanos());
          Activate(st.get());
        });
      }
    }
    Activate(s);
    MaybeQueueFetch(item->stream_);
    MaybeReleaseBuffers(s);
    Unstarve();
    // A dead letter moves the low-water mark too.
    if (committed || dead_lettered) WakeDownstream(s);
    if (!outbox_keys.empty()) {
      outbox_in_flight++;  // counted before the item stops counting, so no idle gap
      tenant_outbox[s->tenant_id.str()]++;
      emitted = std::move(item->emitted_);
      tenant_config = s->tenant->config;
    }
    done_cv.notify_all();
  }
  if (!outbox_keys.empty()) {
    ForwardOutbox(tenant_config, std::move(outbox_keys), std::move(emitted));
  }
  // Last: Stop() waits for this, so nothing here runs after the engine is gone.
  std::lock_guard lock(mu);
  total_in_flight--;
  done_cv.notify_all();
}

void Engine::Impl::OpenBreaker(Stream* s, int64_t now_ns) {
  const BreakerPolicy& p = s->spec->breaker;
  s->breaker.state = Breaker::State::kOpen;
  s->breaker.opened_at_ms = clock->NowMillis();
  int64_t open_ms = p.open_for.count();
  for (uint32_t i = 0; i < s->breaker.reopens && open_ms < p.max_open_for.count(); ++i) {
    open_ms *= 2;
  }
  open_ms = std::min<int64_t>(open_ms, p.max_open_for.count());
  s->breaker.probe_at_ns = now_ns + open_ms * kNsPerMs;
  uint64_t epoch = ++s->breaker_epoch;
  spdlog::warn("engine: circuit breaker open for tenant {} processor {} ({} ms): {}",
               s->tenant->config.id.str(), s->spec->name, open_ms, s->last_error);
  std::weak_ptr<Stream> weak = s->self.lock();
  AddTimer(s->breaker.probe_at_ns, [this, weak, epoch] {
    auto st = weak.lock();
    if (!st || st->breaker_epoch != epoch || st->breaker.state != Breaker::State::kOpen) return;
    st->breaker.state = Breaker::State::kHalfOpen;
    st->breaker.probe_in_flight = false;
    Activate(st.get());
    MaybeQueueFetch(st);
  });
}

void Engine::Impl::ForwardOutbox(const model::TenantConfig& tenant, std::vector<std::string> keys,
                                 std::vector<model::Activity> activities) {
  log::AppendRequest req = log::AppendRequestFor(tenant);
  // A re-send after a crash must be recognised whatever the tenant's own dedup window.
  req.dedup_window_ms = std::max(req.dedup_window_ms, log::kGeneratedDedupWindowMs);
  req.activities = std::move(activities);
  // The log may outlive the engine: the callback holds no pointer into it.
  log->Append(std::move(req), [weak = self, store = store, keys = std::move(keys),
                               tenant](Result<log::AppendResult> r) {
    // Counted down once the outbox rows are cleared: a release waits for that.
    auto done = [&weak, &tenant] {
      if (auto impl = weak.lock()) {
        std::lock_guard lock(impl->mu);
        impl->outbox_in_flight--;
        if (--impl->tenant_outbox[tenant.id.str()] == 0) {
          impl->tenant_outbox.erase(tenant.id.str());
        }
        impl->done_cv.notify_all();
      }
    };
    if (!r.ok()) {
      // Stays in the outbox and is sent again (dedup makes a re-send harmless).
      spdlog::warn("engine: appending generated activities of {}: {}", tenant.id.str(),
                   r.status().ToString());
      if (auto impl = weak.lock()) {
        std::lock_guard lock(impl->mu);
        impl->AddTimer(impl->clock->MonotonicNanos() + kNsPerSec, [impl = impl.get(), tenant] {
          if (impl->tenants.contains(tenant.id.str())) impl->outbox_rescans.push_back(tenant);
        });
      }
      done();
      return;
    }
    storage::WriteBatch batch;
    for (const auto& k : keys) batch.Delete(storage::kOutbox, k);
    Status st = store->Write(batch, false);
    if (!st.ok()) spdlog::warn("engine: clearing outbox of {}: {}", tenant.id.str(), st.ToString());
    done();
  });
}

void Engine::Impl::ScanOutbox(const model::TenantConfig& tenant) {
  std::string prefix = tenant.id.str();
  prefix.push_back('\0');
  auto it = store->NewIterator(storage::kOutbox, prefix, PrefixEnd(prefix));
  std::vector<std::string> keys;
  std::vector<model::Activity> activities;
  for (it->Seek(prefix); it->Valid(); it->Next()) {
    auto a = model::DecodeActivity(it->value());
    if (!a.ok()) {
      spdlog::error("engine: corrupt outbox record of {}: {}", tenant.id.str(),
                    a.status().ToString());
      continue;
    }
    keys.emplace_back(it->key());
    activities.push_back(std::move(a).value());
    if (activities.size() >= 1'000) {
      {
        std::lock_guard lock(mu);
        outbox_in_flight++;
        tenant_outbox[tenant.id.str()]++;
      }
      ForwardOutbox(tenant, std::move(keys), std::move(activities));
      keys.clear();
      activities.clear();
    }
  }
  if (!activities.empty()) {
    {
      std::lock_guard lock(mu);
      outbox_in_flight++;
      tenant_outbox[tenant.id.str()]++;
    }
    ForwardOutbox(tenant, std::move(keys), std::move(activities));
  }
}

void Engine::Impl::MaybeReleaseBuffers(Stream* s) {
  // Not for an open breaker: its leads' retry state (attempts, solo, back-off) must survive the
  // open period, and it holds at most its own read-ahead budget. Not while replays are queued
  // (the API said they were).
  const bool parked = !s->enabled || !s->tenant->active();
  if (!parked || s->in_flight_items > 0 || s->fetching || s->buffered_bytes == 0 ||
      !s->replaying.empty()) {
    return;
  }
  for (auto& [key, lead] : s->leads) {
    while (!lead->empty()) {
      pool.Put(lead->PopFront());
    }
  }
  s->leads.clear();
  s->ready.clear();
  s->idle_leads = 0;
  global_buffered -= s->buffered_bytes;
  s->buffered_bytes = 0;
  // Nothing commits now (nothing is in processing): the published mark is current.
  for (size_t p = 0; p < s->partitions.size(); ++p) {
    s->partitions[p].next_fetch = s->committed_lwm[p];
  }
  Unstarve();
  done_cv.notify_all();
}

void Engine::Impl::Unstarve() {
  if (!global_starved || global_buffered >= options.global_buffer_bytes) return;
  global_starved = false;
  for (auto& [id, t] : tenants) {
    for (auto& st : t->streams) MaybeQueueFetch(st);
  }
}

void Engine::Impl::OnAppend(const std::vector<log::PartitionAdvance>& advances) {
  std::lock_guard lock(mu);
  for (const auto& a : advances) {
    auto it = tenants.find(a.tenant.str());
    if (it == tenants.end()) continue;
    for (auto& s : it->second->streams) {
      if (a.partition.value() >= s->partitions.size()) continue;
      auto& p = s->partitions[a.partition.value()];
      p.hwm = std::max(p.hwm, a.next.value());
      MaybeQueueFetch(s);
    }
  }
}

}  // namespace fairway::engine
