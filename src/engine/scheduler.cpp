// The fair scheduler and the worker threads: which stream runs next (deficit round robin by
// weight, throttles, in-flight caps), reading the log ahead, and handing work items to processors.

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <string_view>
#include <unordered_map>
#include <utility>

#include "common/coding.h"
#include "engine/engine_internal.h"
#include "log/lead_index.h"
#include "storage/schema.h"

namespace fairway::engine {

// ---------------------------------------------------------------------------------------------
// Scheduling

bool Engine::Impl::CanDispatch(Stream* s, int64_t now_ns) {
  Tenant* t = s->tenant.get();
  if (!s->enabled || !t->active() || s->ready.empty()) return false;
  if (s->breaker.state == Breaker::State::kOpen) return false;
  if (s->breaker.state == Breaker::State::kHalfOpen && s->breaker.probe_in_flight) return false;
  if (s->in_flight_items >= s->spec->concurrency) return false;
  if (s->in_flight_events >= t->config.quotas.max_in_flight) return false;
  double rate = t->config.quotas.processing_rate;
  if (rate > 0 && s->throttle.Available(rate, now_ns) < 1) {
    if (!s->throttle_timer) {
      s->throttle_timer = true;
      std::weak_ptr<Stream> weak = s->self.lock();
      AddTimer(s->throttle.NextTokenAt(rate), [this, weak] {
        if (auto st = weak.lock()) {
          st->throttle_timer = false;
          Activate(st.get());
        }
      });
    }
    return false;
  }
  return true;
}

void Engine::Impl::Activate(Stream* s) {
  if (s->in_rr) {
    work_cv.notify_one();  // it may have more ready work than the busy workers can take
    return;
  }
  if (!CanDispatch(s, clock->MonotonicNanos())) return;
  s->in_rr = true;
  s->has_turn = false;
  s->deficit = 0;
  rr.push_back(s);
  work_cv.notify_one();
}

uint64_t Engine::Impl::ReadLimit(Stream* s, size_t p) {
  // Layouts: a lead's activities in one layout all run before any of its activities in a later
  // layout, because a later layout's partitions are read only once every partition of the
  // layouts before it is processed to its sealed end (the whole tenant waits, not just the lead).
  const auto& sealed = s->tenant->config.sealed_layouts;
  while (s->drained_layouts < sealed.size()) {
    const model::PartitionLayout& l = sealed[s->drained_layouts];
    bool drained = true;
    for (uint32_t i = 0; i < l.count && drained; ++i) {
      drained = l.first + i >= s->partitions.size() || s->committed_lwm[l.first + i] >= l.ends[i];
    }
    if (!drained) break;
    ++s->drained_layouts;
  }
  if (s->drained_layouts < sealed.size()) {
    const model::PartitionLayout& waiting = sealed[s->drained_layouts];
    if (p >= waiting.first + waiting.count) return 0;
  }
  uint64_t limit = s->partitions[p].hwm;
  if (auto up = s->upstream.lock(); up && up->enabled && p < up->partitions.size()) {
    limit = std::min(limit, up->committed_lwm[p].load());
  }
  return limit;
}

void Engine::Impl::WakeDownstream(Stream* s) {
  for (const auto& weak : s->downstream) {
    if (auto d = weak.lock()) MaybeQueueFetch(d);
  }
}

void Engine::Impl::MaybeQueueFetch(const std::shared_ptr<Stream>& s) {
  if (s->fetching || s->fetch_queued || !s->enabled || !s->tenant->active()) return;
  if (s->breaker.state == Breaker::State::kOpen) return;
  // A heavier tenant drains its buffer faster: its read-ahead grows with its weight, so it
  // never runs dry (and loses its turn) while its backlog waits in the log.
  size_t budget = options.stream_buffer_bytes *
                  std::min<uint32_t>(16, s->tenant->config.quotas.processing_weight);
  if (s->buffered_bytes > budget / 2) return;
  if (global_buffered >= options.global_buffer_bytes) {
    global_starved = true;
    return;
  }
  for (size_t p = 0; p < s->partitions.size(); ++p) {
    if (s->partitions[p].next_fetch < ReadLimit(s.get(), p)) {
      s->fetch_queued = true;
      fetch_queue.push_back(s);
      work_cv.notify_one();
      return;
    }
  }
}

void Engine::Impl::MakeReady(Stream* s, Lead* l, int64_t now_ns) {
  if (l->busy || l->ready || l->empty() || l->not_before_ns > now_ns) return;
  l->ready = true;
  s->ready.push_back(l);
}

void Engine::Impl::AddTimer(int64_t at_ns, std::function<void()> fn) {
  bool earliest = timers.empty() || at_ns < timers.begin()->first;
  timers.emplace(at_ns, std::move(fn));
  if (earliest) work_cv.notify_one();
}

void Engine::Impl::RunDueTimers(int64_t now_ns) {
  while (!timers.empty() && timers.begin()->first <= now_ns) {
    auto fn = std::move(timers.begin()->second);
    timers.erase(timers.begin());
    fn();
  }
}

std::unique_ptr<ItemImpl> Engine::Impl::NextItem(int64_t now_ns) {
  // Deficit round robin over streams with ready work: each turn, a stream may take up to
  // quantum x weight activities.
  size_t visits = rr.size() * 2 + 1;
  while (!rr.empty() && visits-- > 0) {
    Stream* s = rr.front();
    if (!CanDispatch(s, now_ns)) {
      rr.pop_front();
      s->in_rr = false;
      s->has_turn = false;
      s->deficit = 0;
      continue;
    }
    if (!s->has_turn) {
      s->has_turn = true;
      // A turn is at least one full batch of the processor, times the tenant's weight.
      s->deficit += static_cast<int64_t>(std::max(options.quantum, s->spec->batch_size)) *
                    s->tenant->config.quotas.processing_weight;
    }
    auto item = Dispatch(s, static_cast<uint32_t>(std::max<int64_t>(1, s->deficit)), now_ns);
    if (item) s->deficit -= static_cast<int64_t>(item->entries_.size());
    if (!item || s->deficit <= 0) {
      // Turn over: next stream.
      s->has_turn = false;
      if (s->deficit < 0) s->deficit = 0;
      rr.pop_front();
      rr.push_back(s);
    }
    if (item) return item;
  }
  return nullptr;
}

std::unique_ptr<ItemImpl> Engine::Impl::Dispatch(Stream* s, uint32_t cap, int64_t now_ns) {
  const auto& quotas = s->tenant->config.quotas;
  cap = std::min(cap, s->spec->batch_size);
  cap = std::min(cap, quotas.max_in_flight - s->in_flight_events);
  if (quotas.processing_rate > 0) {
    cap = std::min(cap, static_cast<uint32_t>(std::clamp(s->throttle.tokens(), 1.0, 1e9)));
  }
  bool probe = s->breaker.state == Breaker::State::kHalfOpen;
  if (probe) cap = 1;
  if (cap == 0) return nullptr;

  auto item = std::make_unique<ItemImpl>(this, s->self.lock());
  item->entries_.reserve(cap);
  item->chunks_.reserve(cap);
  item->leads_.reserve(cap);
  item->attempts_.reserve(cap);
  item->replay_.reserve(cap);
  item->bytes_.reserve(cap);
  auto take = [&](Lead* l, uint32_t n) {
    for (uint32_t i = 0; i < n && !l->empty(); ++i) {
      if (i > 0 && l->head->replay) break;  // replays run alone
      Pending* p = l->PopFront();
      item->entries_.push_back(p->entry);
      item->chunks_.push_back(std::move(p->chunk));
      item->leads_.push_back(l);
      item->attempts_.push_back(p->attempts);
      item->replay_.push_back(p->replay ? 1 : 0);
      item->bytes_.push_back(p->bytes);
      pool.Put(p);
    }
    l->busy = true;
  };
  while (!s->ready.empty() && item->entries_.size() < cap) {
    Lead* l = s->ready.front();
    if (l->busy || l->empty() || l->not_before_ns > now_ns) {
      s->ready.pop_front();
      l->ready = false;
      continue;
    }
    if (l->solo > 0 || l->head->replay) {
      if (!item->entries_.empty()) break;
      s->ready.pop_front();
      l->ready = false;
      if (l->solo > 0) l->solo--;
      take(l, 1);
      item->solo_ = true;
      break;
    }
    s->ready.pop_front();
    l->ready = false;
    auto room = static_cast<uint32_t>(cap - item->entries_.size());
    take(l, room);
  }
  if (item->entries_.empty()) return nullptr;
  // A half-open probe is one activity alone: its failures count as attempts, so an activity
  // that always fails is dead-lettered rather than probed forever.
  if (probe) item->solo_ = true;
  if (item->solo_) item->attempt_ = item->attempts_[0] + 1;
  item->probe_ = probe;
  if (probe) s->breaker.probe_in_flight = true;
  auto n = static_cast<uint32_t>(item->entries_.size());
  s->in_flight_items++;
  s->in_flight_events += n;
  total_in_flight++;
  if (quotas.processing_rate > 0) s->throttle.Take(n);
  s->progress++;
  return item;
}

void Engine::Impl::InsertFetched(Stream* s, const ChunkRef& chunk,
                                 std::span<const log::LogEntry* const> entries,
                                 const std::vector<uint64_t>& keys, int64_t now_ns, bool replay) {
  for (size_t i = 0; i < entries.size(); ++i) {
    auto [it, inserted] = s->leads.try_emplace(keys[i]);
    if (inserted) {
      if (s->spare_leads.empty()) {
        it->second = std::make_unique<Lead>();
      } else {
        it->second = std::move(s->spare_leads.back());
        s->spare_leads.pop_back();
      }
      it->second->key = keys[i];
    }
    Lead* l = it->second.get();
    if (l->idle) {
      l->idle = false;
      s->idle_leads--;
    }
    Pending* p = pool.Get();
    p->bytes = EntryBytes(*entries[i]);
    p->replay = replay;
    p->entry = entries[i];
    p->chunk = chunk;
    s->buffered_bytes += p->bytes;
    global_buffered += p->bytes;
    l->PushBack(p);
    MakeReady(s, l, now_ns);
  }
}

std::pair<ChunkRef, size_t> ChunkCache::Find(const Tenant* t, uint32_t p, uint64_t from) {
  std::lock_guard lock(mu_);
  auto it = chunks_.upper_bound(Key{t, p, from});
  if (it == chunks_.begin()) return {};
  --it;
  const auto& [tenant, partition, begin] = it->first;
  if (tenant != t || partition != p || from >= it->second.end) return {};
  return {it->second.chunk, static_cast<size_t>(from - begin)};
}

void ChunkCache::Add(const Tenant* t, uint32_t p, const ChunkRef& chunk, uint32_t readers) {
  if (chunk->entries.empty() || readers == 0 || chunk->bytes > limit_) return;
  std::lock_guard lock(mu_);
  while (bytes_ + chunk->bytes > limit_ && !order_.empty()) {
    auto it = chunks_.find(order_.front());
    order_.pop_front();
    if (it != chunks_.end()) Erase(it);
  }
  Key key{t, p, chunk->entries.front().offset.value()};
  auto [it, inserted] = chunks_.try_emplace(key);
  if (!inserted) return;  // another stream read the same stretch meanwhile
  it->second = Entry{chunk->entries.back().offset.value() + 1, chunk, readers};
  bytes_ += chunk->bytes;
  order_.push_back(key);
}

void ChunkCache::Consumed(const Tenant* t, uint32_t p, const ChunkRef& chunk) {
  std::lock_guard lock(mu_);
  auto it = chunks_.find(Key{t, p, chunk->entries.front().offset.value()});
  if (it == chunks_.end() || it->second.chunk != chunk) return;
  if (--it->second.readers == 0) Erase(it);
}

void ChunkCache::DropTenant(const Tenant* t) {
  std::lock_guard lock(mu_);
  auto it = chunks_.lower_bound(Key{t, 0, 0});
  while (it != chunks_.end() && std::get<0>(it->first) == t) {
    auto next = std::next(it);
    Erase(it);
    it = next;
  }
}

void ChunkCache::Erase(std::map<Key, Entry>::iterator it) {
  bytes_ -= it->second.chunk->bytes;
  chunks_.erase(it);
  if (chunks_.empty()) order_.clear();
}

void Engine::Impl::SweepIdleLeads(Stream* s) {
  for (auto it = s->leads.begin(); it != s->leads.end();) {
    Lead* l = it->second.get();
    if (l->idle && !l->busy && !l->ready && l->empty()) {
      l->idle = false;
      l->not_before_ns = 0;
      if (s->spare_leads.size() < kSpareLeads) s->spare_leads.push_back(std::move(it->second));
      it = s->leads.erase(it);
    } else {
      ++it;
    }
  }
  s->idle_leads = 0;
}

std::shared_ptr<Stream> Engine::Impl::FindStream(const TenantId& tenant,
                                                 std::string_view processor) {
  auto it = tenants.find(tenant.str());
  if (it == tenants.end() || it->second->removing) return nullptr;
  for (auto& s : it->second->streams) {
    if (s->spec->name == processor) return s;
  }
  return nullptr;
}

bool Engine::Impl::StreamIdle(Stream* s) {
  // Work in processing finishes even when the stream is parked.
  if (s->in_flight_items > 0 || s->fetching || s->loading) return false;
  if (!s->enabled || !s->tenant->active()) return true;
  if (s->breaker.state != Breaker::State::kClosed) return true;
  if (s->buffered_bytes > 0) return false;
  for (size_t p = 0; p < s->partitions.size(); ++p) {
    const auto& ps = s->partitions[p];
    if (s->committed_lwm[p] < ps.hwm || ps.next_fetch < ps.hwm) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Workers

void Engine::Impl::WorkerLoop() {
  std::unique_lock lock(mu);
  while (!stopping) {
    int64_t now = clock->MonotonicNanos();
    RunDueTimers(now);
    if (!outbox_rescans.empty()) {
      auto rescans = std::move(outbox_rescans);
      outbox_rescans.clear();
      lock.unlock();
      for (const auto& t : rescans) ScanOutbox(t);
      lock.lock();
      continue;
    }
    if (!fetch_queue.empty()) {
      auto s = std::move(fetch_queue.front());
      fetch_queue.pop_front();
      s->fetch_queued = false;
      if (s->fetching || !s->enabled || !s->tenant->active() ||
          s->breaker.state == Breaker::State::kOpen) {
        continue;
      }
      // Round robin over the partitions that have unread records and that no other stream
      // of the tenant is reading now.
      Tenant* t = s->tenant.get();
      const bool shared = t->streams.size() > 1;
      bool wait_for_read = false;
      size_t n = s->partitions.size();
      for (size_t i = 0; i < n; ++i) {
        size_t p = (s->fetch_rr + i) % n;
        uint64_t limit = ReadLimit(s.get(), p);
        if (s->partitions[p].next_fetch >= limit) continue;
        if (shared && !t->reading.insert(static_cast<uint32_t>(p)).second) {
          wait_for_read = true;
          continue;
        }
        s->fetch_rr = p + 1;
        s->fetching = true;
        uint64_t from = s->partitions[p].next_fetch;
        wait_for_read = false;
        lock.unlock();
        Fetch(std::move(s), static_cast<uint32_t>(p), from, limit);
        lock.lock();
        break;
      }
      if (wait_for_read) {
        bool listed = std::ranges::any_of(
            t->read_waiters, [&](const std::weak_ptr<Stream>& w) { return w.lock() == s; });
        if (!listed) t->read_waiters.push_back(s);
      }
      continue;
    }
    if (auto item = NextItem(now)) {
      Processor* processor = item->stream_->processor;
      lock.unlock();
      ItemImpl* raw = item.release();  // owned by the processor until Finish
      processor->Process(*raw);
      lock.lock();
      continue;
    }
    if (timers.empty()) {
      work_cv.wait(lock);
    } else {
      auto wait_ns = timers.begin()->first - clock->MonotonicNanos();
      if (wait_ns > 0) {
        // Wait in bounded steps so a test clock that jumps is noticed too.
        work_cv.wait_for(lock, std::chrono::nanoseconds(std::min<int64_t>(wait_ns, 50 * kNsPerMs)));
      }
    }
  }
}

void Engine::Impl::Fetch(std::shared_ptr<Stream> s, uint32_t partition, uint64_t from,
                         uint64_t hwm) {
  const TenantId& tenant = s->tenant_id;
  Tenant* t = s->tenant.get();
  const bool shared = t->streams.size() > 1;
  // Another stream of the tenant may have read this stretch already.
  auto [chunk, first_index] =
      shared ? chunks.Find(t, partition, from) : std::pair<ChunkRef, size_t>{};
  const bool cached = chunk != nullptr;
  Status read_status;
  uint64_t removed_below = from;
  if (!chunk) {
    auto read =
        log->Read(tenant, PartitionId(partition), Offset(from),
                  static_cast<size_t>(std::min<uint64_t>(options.fetch_records, hwm - from)));
    if (read.ok()) {
      auto fresh = std::make_shared<Chunk>();
      fresh->entries = std::move(read).value();
      // `hwm` is the read limit: an upstream processor may not have committed what follows.
      std::erase_if(fresh->entries,
                    [&](const log::LogEntry& e) { return e.offset.value() >= hwm; });
      for (const auto& e : fresh->entries) fresh->bytes += EntryBytes(e);
      // Records removed by retention before they were processed: nothing is left to do for
      // them. Only offsets below the log's start count as removed; a short read is just short.
      uint64_t first = fresh->entries.empty() ? hwm : fresh->entries.front().offset.value();
      if (first > from) {
        auto start = log->LowWatermark(tenant, PartitionId(partition));
        if (start.ok()) removed_below = std::min(first, start->value());
      }
      chunk = std::move(fresh);
      first_index = 0;
      if (shared) {
        chunks.Add(t, partition, chunk, static_cast<uint32_t>(t->streams.size() - 1));
      }
    } else {
      read_status = read.status();
    }
  }
  std::vector<const log::LogEntry*> entries;
  uint64_t next = from;
  bool skipped_removed = false;
  if (chunk) {
    size_t i = first_index;
    for (; i < chunk->entries.size(); ++i) {
      if (chunk->entries[i].offset.value() >= hwm) break;
      entries.push_back(&chunk->entries[i]);
    }
    if (cached && i == chunk->entries.size()) chunks.Consumed(t, partition, chunk);
    std::lock_guard commit_lock(s->commit_mu);
    auto& committed = s->partitions[partition].committed;
    if (removed_below > from) {
      spdlog::info(
          "engine: {} {} partition {}: offsets {}-{} were removed by retention before "
          "they were processed",
          tenant.str(), s->spec->name, partition, from, removed_below - 1);
      committed.MarkDone(from, removed_below);
      s->PublishCommitted(partition);
      skipped_removed = true;
    }
    next = entries.empty() ? removed_below : entries.back()->offset.value() + 1;
    if (committed.ranges() > 0 || committed.low_water_mark() > from) {
      // After a restart: skip work committed out of order before it.
      std::erase_if(entries,
                    [&](const log::LogEntry* e) { return committed.IsDone(e->offset.value()); });
    }
  }
  if (chunk && options.skip_repeats && !entries.empty()) {
    auto repeats = SkipRepeats(s.get(), &entries);
    if (!repeats.ok()) {
      // Retried like a failed read: nothing of this stretch reaches the processor yet.
      read_status = repeats.status();
      chunk = nullptr;
      entries.clear();
    } else if (!repeats->empty()) {
      std::lock_guard commit_lock(s->commit_mu);
      auto& committed = s->partitions[partition].committed;
      for (uint64_t o : *repeats) committed.MarkDone(o, o + 1);
      s->PublishCommitted(partition);
      s->repeats->Add(repeats->size());
      skipped_removed = true;
    }
  }
  std::vector<uint64_t> keys;
  keys.reserve(entries.size());
  for (const auto* e : entries) keys.push_back(OrderingKey(s->spec->ordering, *e));
  std::lock_guard lock(mu);
  s->fetching = false;
  // (Unconditionally: the tenant may have gained a stream since this read began.)
  t->reading.erase(partition);
  auto waiters = std::move(t->read_waiters);
  t->read_waiters.clear();
  for (const auto& w : waiters) {
    if (auto st = w.lock()) MaybeQueueFetch(st);
  }
  auto& ps = s->partitions[partition];
  if (!chunk || (entries.empty() && next == from && from < hwm)) {
    s->fetch_error =
        chunk ? "the log returned nothing below its high watermark" : read_status.ToString();
    spdlog::warn("engine: reading {} partition {}: {}", tenant.str(), partition, s->fetch_error);
    std::weak_ptr<Stream> weak = s;
    AddTimer(clock->MonotonicNanos() + kNsPerSec, [this, weak] {
      if (auto st = weak.lock()) MaybeQueueFetch(st);
    });
    MaybeReleaseBuffers(s.get());
    done_cv.notify_all();
    return;
  }
  s->fetch_error.clear();
  if (skipped_removed) WakeDownstream(s.get());
  ps.next_fetch = std::max(ps.next_fetch, next);
  InsertFetched(s.get(), chunk, entries, keys, clock->MonotonicNanos());
  Activate(s.get());
  MaybeQueueFetch(s);
  MaybeReleaseBuffers(s.get());
  done_cv.notify_all();
}

Result<std::vector<uint64_t>> Engine::Impl::SkipRepeats(
    Stream* s, std::vector<const log::LogEntry*>* entries) {
  std::vector<uint64_t> skipped;
  const int64_t window_ms = int64_t{s->tenant->dedup_window_seconds.load()} * 1000;
  if (window_ms == 0) return skipped;
  std::vector<std::string> keys;
  std::vector<size_t> at;  // keys[k] is the messageId of (*entries)[at[k]]
  keys.reserve(entries->size());
  at.reserve(entries->size());
  for (size_t i = 0; i < entries->size(); ++i) {
    const std::string& id = (*entries)[i]->activity.message_id.str();
    if (id.empty()) continue;
    keys.push_back(log::DedupKey(s->tenant_id, id));
    at.push_back(i);
  }
  if (keys.empty()) return skipped;
  std::vector<std::string_view> views(keys.begin(), keys.end());
  std::vector<std::optional<std::string>> found;
  FAIRWAY_RETURN_IF_ERROR(store->MultiGet(storage::kProcessedIds, views, &found));
  // The first copy of each messageId as known so far: recorded, or met in this stretch.
  struct First {
    std::pair<uint32_t, uint64_t> at;  // partition, offset
    int64_t expiry_ms = 0;
    bool known = false, write = false;
  };
  std::unordered_map<std::string_view, First> first;
  std::vector<uint8_t> repeat(entries->size(), 0);
  for (size_t k = 0; k < keys.size(); ++k) {
    const log::LogEntry& e = *(*entries)[at[k]];
    const std::pair<uint32_t, uint64_t> here{e.partition.value(), e.offset.value()};
    auto [it, fresh] = first.try_emplace(views[k]);
    First& f = it->second;
    if (fresh && found[k]) {
      std::string_view pos;
      const int64_t expiry = storage::DecodeTtlValue(*found[k], &pos);
      if (pos.size() == 12) {
        f = {{DecodeFixed32BE(pos.data()), DecodeFixed64BE(pos.data() + 4)}, expiry, true, false};
      }
    }
    // Log partitions are numbered in layout order: an earlier position was appended earlier.
    if (f.known && f.at < here && e.activity.received_at_ms < f.expiry_ms) {
      repeat[at[k]] = 1;
      continue;
    }
    if (f.known && f.at == here) continue;  // the first copy itself, read again
    // The first copy: none is known, the known one is past its window, or (read by a stream
    // behind another) the known one is a later copy.
    f = {here, e.activity.received_at_ms + window_ms, true, true};
  }
  storage::WriteBatch batch;
  for (const auto& [key, f] : first) {
    if (!f.write) continue;
    std::string pos;
    PutFixed32BE(&pos, f.at.first);
    PutFixed64BE(&pos, f.at.second);
    batch.Put(storage::kProcessedIds, key, storage::EncodeTtlValue(f.expiry_ms, pos));
  }
  // Written before the first copies are processed: their commits come after it in the store's
  // write-ahead log (and in a cluster, in the slot's changelog).
  if (batch.Count() > 0) FAIRWAY_RETURN_IF_ERROR(store->Write(batch, /*sync=*/false));
  size_t out = 0;
  for (size_t i = 0; i < entries->size(); ++i) {
    if (repeat[i]) {
      skipped.push_back((*entries)[i]->offset.value());
    } else {
      (*entries)[out++] = (*entries)[i];
    }
  }
  entries->resize(out);
  return skipped;
}

}  // namespace fairway::engine
