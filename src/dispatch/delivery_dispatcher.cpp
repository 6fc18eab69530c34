#include "dispatch/delivery_dispatcher.h"

#include <curl/curl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <future>
#include <limits>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "common/crypto.h"
#include "common/hash.h"
#include "common/hex.h"
#include "dispatch/failure_text.h"
#include "dispatch/mail_message.h"
#include "storage/keys.h"
#include "storage/schema.h"

namespace fairway::dispatch {
namespace {

constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
// The dispatcher thread waits at most this long for socket activity, so a ManualClock that
// jumped (next attempts and token buckets) is noticed without a Notify.
constexpr int kPollMs = 50;
// Keys of one tenant examined per scan step: a tenant with a huge backlog of rows waiting for
// their next attempt cannot hold the thread for long.
constexpr size_t kScanBudget = 1024;
// Rows moved per synced write by Retry.
constexpr size_t kRetryChunk = 1000;
constexpr size_t kMaxListLimit = 1000;
constexpr const char* kUserAgent = "Fairway/0.1";

// Created-to-delivered latency, seconds: deliveries wait for retries, so up to a day.
std::vector<double> DeliveryLatencyBuckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,  1,     2.5,
          5,     10,   30,    60,   300, 900,  3600, 21600, 86400};
}

std::once_flag curl_init_once;

bool IEqualsPrefix(std::string_view line, std::string_view name) {
  if (line.size() < name.size()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(line[i])) !=
        std::tolower(static_cast<unsigned char>(name[i]))) {
      return false;
    }
  }
  return true;
}

struct Row;

struct Destination {
  std::string origin;
  std::deque<Row*> queue;  // loaded, due, not started
  uint32_t in_flight = 0;
  size_t loaded = 0;  // rows of this destination in memory
  double tokens = 0;
  int64_t refill_ns = 0;
  // A scan passed over a due row of this destination because it had max_loaded_per_destination
  // rows in memory: scan again once it has drained to half.
  bool skipped_due = false;
  bool in_ready = false;  // listed in Tenant::ready
};

struct Row {
  std::string key;
  Delivery d;
  Destination* dest = nullptr;
  bool in_flight = false;
};

struct TenantMetrics {
  Counter* delivered = nullptr;
  Counter* retried = nullptr;
  Counter* dead = nullptr;
  Gauge* in_flight = nullptr;
  Gauge* loaded = nullptr;
  Histogram* latency = nullptr;
};

struct Removal {
  TenantId tenant;
  std::promise<Status> done;
};

// One tenant's deliveries as the dispatcher thread sees them. Owned by that thread.
struct Tenant {
  TenantId id;
  std::string pending_prefix, pending_end;
  std::unordered_map<std::string, std::unique_ptr<Row>> rows;  // loaded rows by key
  std::unordered_map<std::string, std::unique_ptr<Destination>> dests;
  std::deque<Destination*> ready;  // destinations with queued rows, round robin
  size_t queued = 0;
  uint32_t in_flight = 0;
  bool in_rr = false;
  // Disk scan. A pass walks the tenant's pending rows once, in key order and in budgeted steps,
  // loading the due ones not yet in memory and noting the earliest next attempt of the others.
  bool pass_active = false;
  std::string pass_cursor;
  int64_t pass_min_due = kNever;
  // Rows may be on disk that no pass has seen (new rows, revived rows): start a pass.
  bool dirty = true;
  // After a pass: the earliest next attempt among rows left on disk.
  int64_t wake_ms = kNever;
  std::shared_ptr<Removal> removal;  // set while being removed
  TenantMetrics m;
};

enum class OutcomeKind { kDelivered, kRetry, kDead };

struct Outcome {
  Tenant* tenant = nullptr;
  Row* row = nullptr;
  OutcomeKind kind = OutcomeKind::kDelivered;
  Delivery updated;  // the row's new state (retry, dead)
};

// A transfer in flight: one libcurl easy handle and what its callbacks fill in.
struct Transfer {
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

// The peer's answer is not kept: last_error shows the status code and a fixed reason only, so
// a webhook aimed at an internal service cannot read its answers.
size_t DiscardBody(char*, size_t size, size_t n, void*) { return size * n; }

// Every connection attempt of a webhook, with the address DNS resolved to: refuses the ones
// the destination filter does not allow (a refused attempt counts as a failed connect, so
// libcurl tries the host's next address, if any).
curl_socket_t OpenWebhookSocket(void* user, curlsocktype purpose, curl_sockaddr* address) {
  auto* t = static_cast<Transfer*>(user);
  std::optional<std::string> refusal =
      purpose == CURLSOCKTYPE_IPCXN ? t->filter->Check(&address->addr)
                                    : std::optional<std::string>("destination is not a connection");
  if (refusal) {
    if (t->refusal.empty()) t->refusal = std::move(*refusal);
    return CURL_SOCKET_BAD;
  }
  t->attempted = true;
  return socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
}

size_t ReadHeader(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view line(data, size * n);
  if (IEqualsPrefix(line, "HTTP/")) {
    t->retry_after_s = -1;  // a new response (after an interim 1xx)
  } else if (IEqualsPrefix(line, "Retry-After:")) {
    std::string_view v = line.substr(12);
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    int64_t secs = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), secs);
    // Only delta-seconds; an HTTP-date is ignored (the back-off applies).
    if (ec == std::errc() && secs >= 0) t->retry_after_s = secs;
  }
  return size * n;
}

size_t ReadPayload(char* buf, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t bytes = std::min(size * n, t->payload.size() - t->read_pos);
  std::memcpy(buf, t->payload.data() + t->read_pos, bytes);
  t->read_pos += bytes;
  return bytes;
}

}  // namespace

struct DeliveryDispatcher::Impl {
  Impl(storage::Store* store, const Clock* clock, MetricsRegistry* metrics,
       DeliveryDispatcherOptions o)
      : store(store),
        clock(clock),
        metrics(metrics),
        options(std::move(o)),
        filter(options.allow_networks) {
    options.max_attempts = std::max<uint32_t>(options.max_attempts, 1);
    options.per_destination_concurrency =
        std::max<uint32_t>(options.per_destination_concurrency, 1);
    options.tenant_in_flight = std::max<uint32_t>(options.tenant_in_flight, 1);
    options.global_in_flight = std::max<uint32_t>(options.global_in_flight, 1);
    options.max_loaded_per_tenant = std::max<size_t>(options.max_loaded_per_tenant, 1);
    options.max_loaded_per_destination = std::max<size_t>(options.max_loaded_per_destination, 1);
    std::call_once(curl_init_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    multi = curl_multi_init();
  }
  ~Impl() {
    if (multi != nullptr) curl_multi_cleanup(multi);
  }

  storage::Store* const store;
  const Clock* const clock;
  MetricsRegistry* const metrics;
  DeliveryDispatcherOptions options;
  const DestinationFilter filter;
  std::function<std::optional<std::string>(const TenantId&)> secrets;
  DeliveryListener* listener = nullptr;
  CURLM* multi = nullptr;

  // --- shared with other threads (mu) ---
  std::mutex lifecycle_mu;  // Start / Stop
  bool started = false;
  std::thread thread;
  std::mutex mu;
  std::condition_variable cv;  // WaitIdle
  bool running = false;
  bool stopping = false;
  std::unordered_set<std::string> notified;
  std::vector<std::shared_ptr<Removal>> removals;
  // Published by the dispatcher thread after each turn.
  bool idle = false;
  int64_t next_wake_ms = kNever;

  // --- owned by the dispatcher thread ---
  std::unordered_map<std::string, std::unique_ptr<Tenant>> tenants;
  std::deque<Tenant*> rr;  // tenants with queued rows
  uint32_t in_flight = 0;
  std::vector<Outcome> outcomes;   // decided, not yet written
  std::vector<Outcome> unwritten;  // their write failed; retried every turn
  std::vector<std::shared_ptr<Removal>> removing;
  std::unordered_set<Transfer*> live;  // transfers added to `multi`, owned here
  int64_t token_wait_ns = kNever;
  bool write_failing = false;

  void Loop();
  void DrainInbox();
  Tenant* GetTenant(const TenantId& id);
  void BeginRemoval(std::shared_ptr<Removal> r);
  void FinishRemovals(bool force);
  Status DeleteTenantRows(const TenantId& tenant);

  bool NeedsScan(const Tenant* t, int64_t now_ms) const;
  void Scan(Tenant* t, int64_t now_ms);
  Destination* GetDestination(Tenant* t, const Delivery& d);
  void Load(Tenant* t, Destination* dest, std::string key, Delivery d);
  void Release(Tenant* t, Row* row);

  bool TakeToken(Destination* d, int64_t now_ns);
  void StartTransfers(int64_t now_ms, int64_t now_ns);
  bool StartOne(Tenant* t, int64_t now_ms, int64_t now_ns);
  void Launch(Tenant* t, Row* row, int64_t now_ms);
  Status SetUpWebhook(Transfer* x, int64_t now_ms);
  Status SetUpEmail(Transfer* x, int64_t now_ms);
  // Returns how many transfers finished.
  size_t CollectCompletions();
  void Classify(Transfer* x, CURLcode rc);
  void Fail(Tenant* t, Row* row, bool permanent, std::string error, int64_t retry_after_ms,
            int64_t started_ms);
  int64_t Backoff(const Tenant* t, const Delivery& d, int64_t retry_after_ms) const;
  void WriteOutcomes(std::vector<Outcome> batch);
  void Apply(const Outcome& o);
  void AbortAll();
  void ReapIdle(int64_t now_ns);
  void Publish(int64_t now_ms);
  // `freed`: transfers finished this turn, so queued rows may start now.
  int PollTimeoutMs(int64_t now_ms, bool freed) const;
};

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
    auto it = tenants.find(id);
    if (it != tenants.end() && it->second->removal) continue;  // going away
    GetTenant(TenantId(id))->dirty = true;
  }
  for (auto& r : rems) BeginRemoval(std::move(r));
}

void DeliveryDispatcher::Impl::BeginRemoval(std::shared_ptr<Removal> r) {
  auto it = tenants.find(r->tenant.str());
  if (it == tenants.end()) {
    Status st = DeleteTenantRows(r->tenant);
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
  drop(unwritten);
  drop(outcomes);
  removing.push_back(std::move(r));
}

void DeliveryDispatcher::Impl::FinishRemovals(bool force) {
  std::vector<std::shared_ptr<Removal>> still;
  for (auto& r : removing) {
    auto it = tenants.find(r->tenant.str());
    Tenant* t = it == tenants.end() ? nullptr : it->second.get();
    if (t != nullptr && t->in_flight > 0 && !force) {
      still.push_back(std::move(r));
      continue;
    }
    Status st = DeleteTenantRows(r->tenant);
    if (t != nullptr && t->removal == r) {
      std::erase(rr, t);
      tenants.erase(it);
    }
    r->done.set_value(st);
  }
  removing = std::move(still);
}

Status DeliveryDispatcher::Impl::DeleteTenantRows(const TenantId& tenant) {
  std::string begin = TenantPrefix(tenant);
  storage::WriteBatch batch;
  batch.DeleteRange(storage::kDeliveries, begin, storage::PrefixEnd(begin));
  FAIRWAY_RETURN_IF_ERROR(store->Write(batch, /*sync=*/true));
  metrics->RemoveSeriesWithLabel("tenant", tenant.str());
  return Status::Ok();
}

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
  auto x = std::make_unique<Transfer>();
  x->tenant = t;
  x->row = row;
  x->started_ms = now_ms;
  x->easy = curl_easy_init();
  if (x->easy == nullptr) {
    Fail(t, row, /*permanent=*/false, "could not create a transfer (out of memory)", 0, now_ms);
    return;
  }
  CURL* e = x->easy;
  curl_easy_setopt(e, CURLOPT_PRIVATE, x.get());
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(options.request_timeout.count()));
  Status st = row->d.kind == DeliveryKind::kEmail ? SetUpEmail(x.get(), now_ms)
                                                  : SetUpWebhook(x.get(), now_ms);
  if (!st.ok()) {
    Fail(t, row, /*permanent=*/false, st.message(), 0, now_ms);
    return;
  }
  if (curl_multi_add_handle(multi, e) != CURLM_OK) {
    Fail(t, row, /*permanent=*/false, "could not start a transfer", 0, now_ms);
    return;
  }
  live.insert(x.release());  // freed by CollectCompletions or AbortAll
  row->in_flight = true;
  row->dest->in_flight++;
  t->in_flight++;
  t->m.in_flight->Add(1);
  in_flight++;
}

Status DeliveryDispatcher::Impl::SetUpWebhook(Transfer* x, int64_t now_ms) {
  const Delivery& d = x->row->d;
  CURL* e = x->easy;
  curl_easy_setopt(e, CURLOPT_URL, d.url.c_str());
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  // No proxy, whatever the environment says: the destination filter must see the address of
  // the real destination, not the proxy's.
  curl_easy_setopt(e, CURLOPT_PROXY, "");
  x->filter = &filter;
  curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, OpenWebhookSocket);
  curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, x);
  curl_easy_setopt(e, CURLOPT_USERAGENT, kUserAgent);
  bool send_body =
      !d.body.empty() || d.method == "POST" || d.method == "PUT" || d.method == "PATCH";
  if (send_body) {
    // The row outlives the transfer, so libcurl may point at its body.
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, d.body.data());
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(d.body.size()));
    if (d.method != "POST") curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, d.method.c_str());
  } else if (d.method == "GET") {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  } else {
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, d.method.c_str());
  }
  bool has_content_type = false;
  auto add = [x](const std::string& line) {
    curl_slist* next = curl_slist_append(x->headers, line.c_str());
    if (next == nullptr) return false;
    x->headers = next;
    return true;
  };
  bool ok = true;
  for (const auto& [name, value] : d.headers) {
    if (IEqualsPrefix(name, "Content-Type") && name.size() == 12) has_content_type = true;
    // "Name;" is libcurl's spelling of a header with an empty value.
    ok = ok && add(value.empty() ? name + ";" : name + ": " + value);
  }
  ok = ok && add("Idempotency-Key: " + d.id);
  if (secrets) {
    if (auto secret = secrets(x->tenant->id)) {
      std::string t = std::to_string(now_ms / 1000);
      ok = ok &&
           add("X-Fairway-Signature: t=" + t + ",v1=" + HmacSha256Hex(*secret, t + "." + d.body));
    }
  }
  // No 100-continue round trip, and no form content type invented by libcurl.
  ok = ok && add("Expect:");
  if (send_body && !has_content_type) ok = ok && add("Content-Type:");
  if (!ok) return Internal("could not build the request headers (out of memory)");
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, DiscardBody);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, ReadHeader);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
  return Status::Ok();
}

Status DeliveryDispatcher::Impl::SetUpEmail(Transfer* x, int64_t now_ms) {
  const Delivery& d = x->row->d;
  CURL* e = x->easy;
  x->payload = BuildMailMessage(d, now_ms);
  x->rcpt = curl_slist_append(nullptr, ("<" + d.mail_to + ">").c_str());
  if (x->rcpt == nullptr) return Internal("could not build the recipient list (out of memory)");
  curl_easy_setopt(e, CURLOPT_URL, options.smtp_url.c_str());
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
  curl_easy_setopt(e, CURLOPT_USE_SSL, static_cast<long>(CURLUSESSL_TRY));
  curl_easy_setopt(e, CURLOPT_MAIL_FROM, ("<" + d.mail_from + ">").c_str());
  curl_easy_setopt(e, CURLOPT_MAIL_RCPT, x->rcpt);
  if (!options.smtp_username.empty()) {
    curl_easy_setopt(e, CURLOPT_USERNAME, options.smtp_username.c_str());
    curl_easy_setopt(e, CURLOPT_PASSWORD, options.smtp_password.c_str());
  }
  curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(x->payload.size()));
  curl_easy_setopt(e, CURLOPT_READFUNCTION, ReadPayload);
  curl_easy_setopt(e, CURLOPT_READDATA, x);
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// Outcomes

size_t DeliveryDispatcher::Impl::CollectCompletions() {
  size_t done = 0;
  int left = 0;
  while (CURLMsg* msg = curl_multi_info_read(multi, &left)) {
    if (msg->msg != CURLMSG_DONE) continue;
    ++done;
    CURL* e = msg->easy_handle;
    CURLcode rc = msg->data.result;
    Transfer* raw = nullptr;
    curl_easy_getinfo(e, CURLINFO_PRIVATE, &raw);
    curl_multi_remove_handle(multi, e);
    live.erase(raw);
    std::unique_ptr<Transfer> x(raw);
    Tenant* t = x->tenant;
    Row* row = x->row;
    row->in_flight = false;
    row->dest->in_flight--;
    t->in_flight--;
    t->m.in_flight->Add(-1);
    in_flight--;
    if (t->removal) {
      Release(t, row);  // its rows are about to be deleted
      continue;
    }
    Classify(x.get(), rc);
  }
  return done;
}

void DeliveryDispatcher::Impl::Classify(Transfer* x, CURLcode rc) {
  Tenant* t = x->tenant;
  Row* row = x->row;
  long code = 0;
  curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
  // Tenants read last_error: libcurl's fixed text for the code, never its error buffer, which
  // can quote what the peer sent. Operators find the details in the debug log.
  std::string curl_error = curl_easy_strerror(rc);
  if (rc != CURLE_OK && x->errbuf[0] != '\0') {
    spdlog::debug("dispatch: tenant {}: delivery {}: {}", t->id.str(), row->d.id, x->errbuf);
  }
  std::string timeout =
      fmt::format("timeout after {} ms", static_cast<int64_t>(options.request_timeout.count()));
  if (row->d.kind == DeliveryKind::kEmail) {
    if (rc == CURLE_OK) {
      outcomes.push_back({t, row, OutcomeKind::kDelivered, {}});
      return;
    }
    if (rc == CURLE_OPERATION_TIMEDOUT) {
      Fail(t, row, false, timeout, 0, x->started_ms);
      return;
    }
    if (code >= 500 && code < 600) {
      Fail(t, row, true, SmtpFailureText(code), 0, x->started_ms);
    } else if (code >= 400 && code < 500) {
      Fail(t, row, false, SmtpFailureText(code), 0, x->started_ms);
    } else {
      Fail(t, row, false, "SMTP connection error: " + curl_error, 0, x->started_ms);
    }
    return;
  }
  if (code >= 200 && code < 300) {
    // The receiver accepted it, even if the transfer broke off afterwards (a timeout or a reset
    // while reading the response body): sending it again would only duplicate it.
    outcomes.push_back({t, row, OutcomeKind::kDelivered, {}});
    return;
  }
  if (rc == CURLE_OK) {
    std::string error = HttpFailureText(code);
    if (code >= 300 && code < 400) error += " (redirects are not followed)";
    bool transient = code == 408 || code == 425 || code == 429 || (code >= 500 && code < 600);
    int64_t retry_after_ms = 0;
    if ((code == 429 || code == 503) && x->retry_after_s >= 0) {
      retry_after_ms = std::min<int64_t>(x->retry_after_s, kNever / 2000) * 1000;
    }
    Fail(t, row, !transient, std::move(error), retry_after_ms, x->started_ms);
    return;
  }
  if (!x->refusal.empty() && !x->attempted) {
    // Every address the host resolved to was refused: sending again cannot help.
    Fail(t, row, true, x->refusal, 0, x->started_ms);
  } else if (rc == CURLE_OPERATION_TIMEDOUT) {
    Fail(t, row, false, timeout, 0, x->started_ms);
  } else if (rc == CURLE_UNSUPPORTED_PROTOCOL || rc == CURLE_URL_MALFORMAT) {
    Fail(t, row, true, "invalid request: " + curl_error, 0, x->started_ms);
  } else {
    Fail(t, row, false, "connection error: " + curl_error, 0, x->started_ms);
  }
}

int64_t DeliveryDispatcher::Impl::Backoff(const Tenant* t, const Delivery& d,
                                          int64_t retry_after_ms) const {
  int64_t initial = std::max<int64_t>(options.initial_backoff.count(), 0);
  int64_t cap = std::max<int64_t>(options.max_backoff.count(), initial);
  uint32_t n = std::max<uint32_t>(d.attempts, 1) - 1;  // 0 after the first failure
  int64_t base = initial;
  for (uint32_t i = 0; i < n && base < cap; ++i) base = base > cap / 2 ? cap : base * 2;
  base = std::min(base, cap);
  // Deterministic jitter in [0, 20%): spreads a burst of failures of one endpoint apart.
  uint64_t h = Hash64(fmt::format("{}\x1f{}\x1f{}", t->id.str(), d.id, d.attempts));
  int64_t delay = base + static_cast<int64_t>(static_cast<double>(base) * 0.2 *
                                              static_cast<double>(h % 10000) / 10000.0);
  if (retry_after_ms > delay) delay = std::max(delay, std::min(retry_after_ms, cap));
  return delay;
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
    u.next_attempt_ms = now + Backoff(t, u, retry_after_ms);
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
        break;
      case OutcomeKind::kRetry:
        batch.Put(storage::kDeliveries, key, EncodeDelivery(o.updated));
        break;
      case OutcomeKind::kDead:
        batch.Delete(storage::kDeliveries, key);
        batch.Put(storage::kDeliveries, DeadKey(o.tenant->id, o.updated.id),
                  EncodeDelivery(o.updated));
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

void DeliveryDispatcher::Impl::AbortAll() {
  // Transfers are dropped without an outcome: their rows stay pending as last written and are
  // sent again after a restart.
  for (Transfer* x : live) {
    curl_multi_remove_handle(multi, x->easy);
    x->row->in_flight = false;
    x->row->dest->in_flight--;
    x->tenant->in_flight--;
    x->tenant->m.in_flight->Add(-1);
    in_flight--;
    delete x;
  }
  live.clear();
}

// ---------------------------------------------------------------------------------------------
// The thread

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
    int running_handles = 0;
    curl_multi_perform(multi, &running_handles);
    size_t finished = CollectCompletions();
    if (!outcomes.empty()) {
      std::vector<Outcome> batch;
      batch.swap(outcomes);
      WriteOutcomes(std::move(batch));
    }
    FinishRemovals(/*force=*/false);
    ReapIdle(now_ns);
    Publish(now_ms);
    curl_multi_poll(multi, nullptr, 0, PollTimeoutMs(now_ms, finished > 0), nullptr);
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
  if (im.multi == nullptr) {
    spdlog::error("dispatch: could not create the libcurl multi handle; not delivering");
    return;
  }
  // Recovery: every tenant with a pending row gets a scan.
  std::vector<std::string> found;
  auto it = im.store->NewIterator(storage::kDeliveries, {}, {}, /*fill_cache=*/false);
  it->SeekToFirst();
  while (it->Valid()) {
    std::string_view key = it->key();
    size_t nul = key.find('\0');
    if (nul == std::string_view::npos) {
      it->Next();
      continue;
    }
    TenantId tenant{std::string(key.substr(0, nul))};
    std::string pending = PendingPrefix(tenant);
    it->Seek(pending);
    if (it->Valid() && it->key().starts_with(pending)) found.push_back(tenant.str());
    it->Seek(storage::PrefixEnd(TenantPrefix(tenant)));
  }
  if (!it->status().ok()) {
    spdlog::error("dispatch: scanning the deliveries at start failed: {}", it->status().ToString());
  }
  {
    std::lock_guard lock(im.mu);
    im.running = true;
    for (auto& t : found) im.notified.insert(std::move(t));
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
  curl_multi_wakeup(im.multi);
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
  curl_multi_wakeup(im.multi);
}

Result<DeliveryDispatcher::Page> DeliveryDispatcher::List(const TenantId& tenant, bool dead,
                                                          std::string_view cursor, size_t limit) {
  limit = std::clamp<size_t>(limit, 1, kMaxListLimit);
  std::string prefix = dead ? DeadPrefix(tenant) : PendingPrefix(tenant);
  std::string lower = prefix;
  if (!cursor.empty()) {
    auto suffix = HexDecode(cursor.substr(1));
    bool ok = suffix && cursor.front() == (dead ? 'd' : 'p') && !suffix->empty() &&
              (dead || suffix->size() > 8);
    if (!ok) return InvalidArgument("parameter 'cursor' is not valid");
    lower += *suffix;
    lower.push_back('\0');  // strictly after the cursor's row
  }
  auto it = impl_->store->NewIterator(storage::kDeliveries, lower, storage::PrefixEnd(prefix));
  Page page;
  std::string last_key;
  for (it->Seek(lower); it->Valid(); it->Next()) {
    if (page.items.size() == limit) {
      page.next_cursor = (dead ? "d" : "p") + HexEncode(last_key.substr(prefix.size()));
      break;
    }
    auto d = DecodeDelivery(it->value());
    if (!d.ok()) {
      spdlog::error("dispatch: tenant {}: skipping a corrupt delivery row in a listing: {}",
                    tenant.str(), d.status().ToString());
      continue;
    }
    last_key = std::string(it->key());
    page.items.push_back(std::move(d).value());
  }
  FAIRWAY_RETURN_IF_ERROR(it->status());
  return page;
}

Result<size_t> DeliveryDispatcher::Retry(const TenantId& tenant,
                                         const std::vector<std::string>& ids) {
  Impl& im = *impl_;
  std::vector<std::pair<std::string, Delivery>> rows;  // dead key, row
  if (ids.empty()) {
    std::string prefix = DeadPrefix(tenant);
    auto it = im.store->NewIterator(storage::kDeliveries, prefix, storage::PrefixEnd(prefix));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      auto d = DecodeDelivery(it->value());
      if (!d.ok()) {
        spdlog::error("dispatch: tenant {}: cannot retry a corrupt dead row: {}", tenant.str(),
                      d.status().ToString());
        continue;
      }
      rows.emplace_back(std::string(it->key()), std::move(d).value());
    }
    FAIRWAY_RETURN_IF_ERROR(it->status());
  } else {
    std::unordered_set<std::string_view> seen;
    for (const auto& id : ids) {
      if (!seen.insert(id).second) continue;
      std::string key = DeadKey(tenant, id);
      FAIRWAY_ASSIGN_OR_RETURN(auto v, im.store->Get(storage::kDeliveries, key));
      if (!v) {
        return NotFound(
            fmt::format("dead delivery '{}' of tenant '{}' not found", id, tenant.str()));
      }
      auto d = DecodeDelivery(*v);
      if (!d.ok()) return Internal(fmt::format("dead delivery '{}': {}", id, d.status().message()));
      rows.emplace_back(std::move(key), std::move(d).value());
    }
  }
  size_t moved = 0;
  for (size_t i = 0; i < rows.size(); i += kRetryChunk) {
    storage::WriteBatch batch;
    for (size_t j = i; j < std::min(rows.size(), i + kRetryChunk); ++j) {
      auto& [dead_key, d] = rows[j];
      d.attempts = 0;
      d.next_attempt_ms = 0;
      d.dead_at_ms = 0;
      batch.Delete(storage::kDeliveries, dead_key);
      batch.Put(storage::kDeliveries, PendingKey(tenant, d.created_ms, d.id), EncodeDelivery(d));
    }
    FAIRWAY_RETURN_IF_ERROR(im.store->Write(batch, /*sync=*/true));
    moved = std::min(rows.size(), i + kRetryChunk);
    Notify(tenant);
  }
  return moved;
}

Status DeliveryDispatcher::RemoveTenant(const TenantId& tenant) {
  Impl& im = *impl_;
  std::unique_lock lock(im.mu);
  if (!im.running) {
    // No thread to coordinate with; holding mu keeps Start from racing the delete.
    return im.DeleteTenantRows(tenant);
  }
  auto r = std::make_shared<Removal>();
  r->tenant = tenant;
  auto done = r->done.get_future();
  im.removals.push_back(std::move(r));
  im.idle = false;
  lock.unlock();
  curl_multi_wakeup(im.multi);
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
