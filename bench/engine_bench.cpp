// fairway_engine_bench: the processing engine's benchmarks (see bench/README.md).
//
//   throughput  drain a preloaded backlog with the trivial and the lead-profile processor
//   noisy       100 steady tenants; one storms at 100x its rate: the quiet ones' p99 latency
//   fairness    tenants of weights 1, 2, 4, all backlogged: their shares of processing
//   stragglers  one tenant's activities take 1 s each: the others' p99 latency
//   rss         the process's memory while a large backlog drains
//
// Everything runs in one process on a fresh store in a temporary directory, on the real
// EmbeddedLog and Engine. Each scenario prints readable lines and one line "RESULT {json}".

#include <fmt/format.h>
#include <stdlib.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <queue>
#include <thread>

#include "bench_common.h"
#include "engine/engine.h"
#include "identity/lead_processor.h"
#include "log/embedded_log.h"
#include "storage/schema.h"

namespace fairway::bench {
namespace {

using namespace std::chrono_literals;
using engine::ProcessorSpec;
using engine::WorkItem;
using model::Activity;
using model::ActivityType;

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  return v[i];
}

long RssKiB() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return 0;
}

// A realistic mix for lead profiles: identify (userId + anonymousId + traits) 10%, anonymous
// page views 20%, known-user tracks 70%. Tracks carry their send time (steady clock, ns) in a
// "sent_ns" property when `stamp` is set, so latency is measured below a millisecond.
Activity MakeActivity(const std::string& tenant, uint64_t seq, uint32_t leads, bool stamp) {
  Activity a;
  uint64_t lead = seq % leads;
  a.message_id = MessageId(fmt::format("{}-{}", tenant, seq));
  a.received_at_ms = SystemClock::Default()->NowMillis();
  a.timestamp_ms = a.received_at_ms;
  switch (stamp ? 5 : seq % 10) {
    case 0:
      a.type = ActivityType::kIdentify;
      a.user_id = fmt::format("user-{}", lead);
      a.anonymous_id = fmt::format("anon-{}", lead);
      a.fields_json = fmt::format(
          R"("traits":{{"email":"user-{}@example.com","plan":"pro","seats":{}}})", lead, seq % 50);
      break;
    case 1:
    case 2:
      a.type = ActivityType::kPage;
      a.anonymous_id = fmt::format("anon-{}", lead);
      a.event = seq % 3 == 0 ? "/pricing" : "/blog/launch";
      a.fields_json = R"("properties":{"path":"/pricing","referrer":"https://www.google.com/"})";
      break;
    default:
      a.type = ActivityType::kTrack;
      a.user_id = fmt::format("user-{}", lead);
      a.event = "Page Viewed";
      a.fields_json = fmt::format(
          R"("properties":{{"url":"https://example.com/pricing","plan":"pro","value":42,"sent_ns":{}}})",
          stamp ? NowNs() : 0);
      break;
  }
  return a;
}

int64_t SentNs(const Activity& a) {
  auto p = a.fields_json.find("\"sent_ns\":");
  if (p == std::string::npos) return 0;
  return std::strtoll(a.fields_json.c_str() + p + 10, nullptr, 10);
}

// Does nothing but count (and, for latency scenarios, measure ingest-to-processed time).
class TrivialProcessor : public engine::Processor {
 public:
  explicit TrivialProcessor(uint32_t batch = 256) {
    spec_.name = "trivial";
    spec_.batch_size = batch;
    spec_.concurrency = 1'000;
  }
  const ProcessorSpec& spec() const override { return spec_; }
  void Process(WorkItem& item) override {
    Record(item);
    item.Finish();
  }

  // phase >= 0 records latencies of activities (by tenant class) into that phase.
  std::atomic<int> phase{-1};
  std::string loud_tenant;
  std::mutex mu;
  std::vector<double> quiet_ms[2];
  std::map<std::string, uint64_t> processed;

 protected:
  void Record(WorkItem& item) {
    int ph = phase.load();
    int64_t now = NowNs();
    std::lock_guard lock(mu);
    processed[item.tenant().str()] += item.entries().size();
    if (ph < 0 || item.tenant().str() == loud_tenant) return;
    for (const auto& e : item.entries()) {
      int64_t sent = SentNs(e.activity);
      if (sent > 0) quiet_ms[ph].push_back(static_cast<double>(now - sent) / 1e6);
    }
  }
  ProcessorSpec spec_;
};

// TrivialProcessor whose activities of one tenant take `delay` each once `slow` is set: they
// finish asynchronously, as an HTTP call would, on a timer thread.
class StragglerProcessor final : public TrivialProcessor {
 public:
  StragglerProcessor() : TrivialProcessor(256), timer_([this] { RunTimers(); }) {}
  ~StragglerProcessor() override {
    {
      std::lock_guard lock(tmu_);
      stop_ = true;
    }
    tcv_.notify_all();
    timer_.join();
  }
  void Process(WorkItem& item) override {
    if (slow && item.tenant().str() == loud_tenant) {
      std::lock_guard lock(tmu_);
      // 1 s per activity, one after another within the work item.
      auto n = static_cast<int64_t>(item.entries().size());
      pending_.push({NowNs() + n * 1'000'000'000, &item});
      tcv_.notify_all();
      return;
    }
    TrivialProcessor::Process(item);
  }
  void Drain() {
    std::unique_lock lock(tmu_);
    tcv_.wait(lock, [&] { return pending_.empty(); });
  }
  std::atomic<bool> slow{false};

 private:
  struct Timer {
    int64_t at;
    WorkItem* item;
    bool operator>(const Timer& o) const { return at > o.at; }
  };
  void RunTimers() {
    std::unique_lock lock(tmu_);
    while (true) {
      if (pending_.empty()) {
        if (stop_) return;
        tcv_.notify_all();
        tcv_.wait(lock);
        continue;
      }
      int64_t now = NowNs();
      if (pending_.top().at <= now || !slow) {
        WorkItem* item = pending_.top().item;
        pending_.pop();
        lock.unlock();
        item->Finish();
        lock.lock();
        continue;
      }
      tcv_.wait_for(lock, std::chrono::nanoseconds(pending_.top().at - now));
    }
  }
  std::mutex tmu_;
  std::condition_variable tcv_;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> pending_;
  bool stop_ = false;
  std::thread timer_;
};

model::TenantConfig Tenant(const std::string& id, uint32_t weight = 1,
                           model::TenantStatus status = model::TenantStatus::kActive) {
  model::TenantConfig t;
  t.id = TenantId(id);
  t.name = id;
  t.partitions = 8;
  t.status = status;
  t.quotas.processing_weight = weight;
  t.quotas.dedup_window_seconds = 0;
  t.quotas.retention_days = 0;
  t.quotas.max_in_flight = 4'096;
  return t;
}

// A store, log and engine in a temporary directory, torn down in the right order.
class Env {
 public:
  Env(bool sync, engine::EngineOptions options) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "fairway-bench-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
    storage::StoreOptions so;
    so.path = dir_;
    so.column_families = storage::FairwayColumnFamilies();
    so.block_cache_bytes = 256u << 20;
    auto s = storage::Store::Open(so);
    if (!s.ok()) throw std::runtime_error(s.status().ToString());
    store_ = std::move(s).value();
    log::EmbeddedLogOptions lo;
    lo.sync = sync;
    lo.max_queued_events = 2'000'000;
    log_ = std::make_unique<log::EmbeddedLog>(store_.get(), SystemClock::Default(), &metrics_, lo);
    engine_ = std::make_unique<engine::Engine>(store_.get(), log_.get(), SystemClock::Default(),
                                               &metrics_, options);
  }
  ~Env() {
    engine_->Stop();
    log_->Stop();
    engine_.reset();
    log_.reset();
    store_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  void Start(const std::vector<model::TenantConfig>& tenants) {
    engine_->Start();
    log_->Start();
    for (const auto& t : tenants) Check(engine_->UpsertTenant(t));
  }
  static void Check(const Status& st) {
    if (!st.ok()) throw std::runtime_error(st.ToString());
  }

  // Appends `per_tenant` activities to each tenant, many requests in flight; waits for all.
  void Preload(const std::vector<model::TenantConfig>& tenants, uint64_t per_tenant, uint32_t leads,
               bool stamp = false) {
    bench::AppendWindow window(log_.get());
    constexpr uint64_t kBatch = 5'000;
    auto t0 = NowNs();
    uint64_t total = 0;
    for (uint64_t base = 0; base < per_tenant; base += kBatch) {
      for (const auto& t : tenants) {
        log::AppendRequest req;
        req.tenant = t.id;
        req.partitions = t.partitions;
        for (uint64_t i = base; i < std::min(per_tenant, base + kBatch); ++i) {
          req.activities.push_back(MakeActivity(t.id.str(), i, leads, stamp));
        }
        total += req.activities.size();
        window.Append(std::move(req));
      }
    }
    window.Wait();
    fmt::print("  preloaded {} activities in {:.1f} s\n", total,
               static_cast<double>(NowNs() - t0) / 1e9);
  }

  // Appends n activities for a tenant without waiting (paced producers); `acked` gets the
  // time from the request's creation to its durable acknowledgement, in ms.
  void AppendAsync(const model::TenantConfig& t, uint64_t first_seq, uint64_t n, uint32_t leads,
                   std::function<void(double)> acked) {
    log::AppendRequest req;
    req.tenant = t.id;
    req.partitions = t.partitions;
    int64_t created = NowNs();
    for (uint64_t i = 0; i < n; ++i) {
      req.activities.push_back(MakeActivity(t.id.str(), first_seq + i, leads, true));
    }
    log_->Append(std::move(req), [created, acked = std::move(acked)](Result<log::AppendResult>) {
      if (acked) acked(static_cast<double>(NowNs() - created) / 1e6);
    });
  }

  engine::Engine& engine() { return *engine_; }
  log::EmbeddedLog& log() { return *log_; }

 private:
  std::string dir_;
  std::unique_ptr<storage::Store> store_;
  MetricsRegistry metrics_;
  std::unique_ptr<log::EmbeddedLog> log_;
  std::unique_ptr<engine::Engine> engine_;
};

struct Options {
  size_t threads = 2;
  uint64_t events = 2'000'000;
  uint32_t tenants = 100;
  uint32_t leads = 10'000;
  double rate = 50;
  double seconds = 5;
  // Calm/storm (or normal/slow) cycles of the latency scenarios.
  int cycles = 3;
  std::string processor = "both";
  // fsync the log's group commits (the production setting) in the latency scenarios.
  bool sync = true;
  // EngineOptions::skip_repeats (on in a cluster): what looking up each messageId costs.
  bool skip_repeats = false;
};

engine::EngineOptions EngineOpts(const Options& o) {
  engine::EngineOptions e;
  e.threads = o.threads;
  e.skip_repeats = o.skip_repeats;
  return e;
}

std::vector<model::TenantConfig> Tenants(uint32_t n, model::TenantStatus status) {
  std::vector<model::TenantConfig> out;
  for (uint32_t i = 0; i < n; ++i) {
    out.push_back(Tenant(fmt::format("t{:03}", i), 1, status));
  }
  return out;
}

// Drains a preloaded backlog; returns activities per second.
double Drain(const Options& o, const std::string& which) {
  Env env(false, EngineOpts(o));
  if (which == "leads") {
    env.engine().AddProcessor(std::make_unique<identity::LeadProcessor>());
  } else {
    env.engine().AddProcessor(std::make_unique<TrivialProcessor>());
  }
  auto tenants = Tenants(o.tenants, model::TenantStatus::kSuspended);
  env.Start(tenants);
  env.Preload(tenants, o.events / o.tenants, o.leads);
  auto t0 = NowNs();
  for (auto& t : tenants) {
    t.status = model::TenantStatus::kActive;
    Env::Check(env.engine().UpsertTenant(t));
  }
  if (!env.engine().WaitIdle(3'600s)) throw std::runtime_error("drain did not finish");
  double secs = static_cast<double>(NowNs() - t0) / 1e9;
  double eps = static_cast<double>(o.events / o.tenants * o.tenants) / secs;
  fmt::print("  {} processor: {} activities in {:.2f} s = {:.0f} activities/s\n", which,
             o.events / o.tenants * o.tenants, secs, eps);
  return eps;
}

void Throughput(const Options& o) {
  fmt::print("throughput: {} activities over {} tenants, {} leads each, {} engine threads\n",
             o.events, o.tenants, o.leads, o.threads);
  double trivial = o.processor == "leads" ? 0 : Drain(o, "trivial");
  double leads = o.processor == "trivial" ? 0 : Drain(o, "leads");
  fmt::print(
      "RESULT {{\"scenario\":\"throughput\",\"events\":{},\"tenants\":{},\"threads\":{},"
      "\"trivial_eps\":{:.0f},\"leads_eps\":{:.0f},\"trivial_vs_target\":{:.3f},"
      "\"leads_vs_target\":{:.3f}}}\n",
      o.events, o.tenants, o.threads, trivial, leads, trivial / 1e6, leads / 3e5);
}

// Steady producers: every 5 ms, each tenant gets rate x 5 ms activities (the loud one
// `multiplier` times that).
class Producer {
 public:
  Producer(Env* env, std::vector<model::TenantConfig> tenants, double rate, uint32_t leads)
      : env_(env),
        tenants_(std::move(tenants)),
        rate_(rate),
        leads_(leads),
        credit_(tenants_.size()),
        seq_(tenants_.size()),
        thread_([this] { Run(); }) {}
  ~Producer() {
    stop_ = true;
    thread_.join();
  }
  std::atomic<double> loud_multiplier{1};
  size_t loud_index = 0;
  // Ingest acknowledgement latency of the quiet tenants, per phase (set by the scenario).
  std::atomic<int> phase{-1};
  std::mutex ack_mu;
  std::vector<double> ack_ms[2];

 private:
  void Run() {
    auto next = std::chrono::steady_clock::now();
    while (!stop_) {
      next += 5ms;
      std::this_thread::sleep_until(next);  // pacing of the load, not synchronisation
      for (size_t i = 0; i < tenants_.size(); ++i) {
        double r = rate_ * (i == loud_index ? loud_multiplier.load() : 1.0);
        credit_[i] += r * 0.005;
        auto n = static_cast<uint64_t>(credit_[i]);
        if (n == 0) continue;
        credit_[i] -= static_cast<double>(n);
        std::function<void(double)> acked;
        int ph = phase.load();
        if (ph >= 0 && i != loud_index) {
          acked = [this, ph](double ms) {
            std::lock_guard lock(ack_mu);
            ack_ms[ph].push_back(ms);
          };
        }
        env_->AppendAsync(tenants_[i], seq_[i], n, leads_, std::move(acked));
        seq_[i] += n;
      }
    }
  }
  Env* env_;
  std::vector<model::TenantConfig> tenants_;
  double rate_;
  uint32_t leads_;
  std::vector<double> credit_;
  std::vector<uint64_t> seq_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Registers a processor of type P whose tenant of interest is t000, and returns it.
template <typename P>
P* AddLoudTenantProcessor(Env& env) {
  auto proc = std::make_unique<P>();
  P* p = proc.get();
  p->loud_tenant = "t000";
  env.engine().AddProcessor(std::move(proc));
  return p;
}

void Noisy(const Options& o) {
  fmt::print(
      "noisy neighbour: {} tenants at {:.0f}/s each; t000 storms at 100x; {} cycles of {:.0f} s "
      "calm + {:.0f} s storm\n",
      o.tenants, o.rate, o.cycles, o.seconds, o.seconds);
  Env env(o.sync, EngineOpts(o));
  TrivialProcessor* p = AddLoudTenantProcessor<TrivialProcessor>(env);
  auto tenants = Tenants(o.tenants, model::TenantStatus::kActive);
  tenants[0].quotas.max_in_flight = 100'000;
  env.Start(tenants);
  double ack_p99[2] = {0, 0};
  {
    Producer producer(&env, tenants, o.rate, o.leads);
    std::this_thread::sleep_for(2s);  // warm-up
    // Calm and storm alternate, so slow drifts of this shared machine hit both alike.
    for (int cycle = 0; cycle < o.cycles; ++cycle) {
      for (int storm = 0; storm < 2; ++storm) {
        producer.loud_multiplier = storm ? 100 : 1;
        std::this_thread::sleep_for(1s);  // the new rate settles
        p->phase = storm;
        producer.phase = storm;
        std::this_thread::sleep_for(std::chrono::duration<double>(o.seconds));
        p->phase = -1;
        producer.phase = -1;
      }
    }
    env.log().Stop();  // every acknowledgement is in
    std::lock_guard lock(producer.ack_mu);
    ack_p99[0] = Percentile(producer.ack_ms[0], 0.99);
    ack_p99[1] = Percentile(producer.ack_ms[1], 0.99);
  }
  fmt::print("  quiet tenants' ingest acknowledgement p99: before {:.2f} ms, during {:.2f} ms\n",
             ack_p99[0], ack_p99[1]);
  env.engine().WaitIdle(120s);
  std::lock_guard lock(p->mu);
  double p99_before = Percentile(p->quiet_ms[0], 0.99),
         p99_during = Percentile(p->quiet_ms[1], 0.99);
  double p50_before = Percentile(p->quiet_ms[0], 0.5), p50_during = Percentile(p->quiet_ms[1], 0.5);
  fmt::print("  quiet tenants before: {} activities, p50 {:.2f} ms, p99 {:.2f} ms\n",
             p->quiet_ms[0].size(), p50_before, p99_before);
  fmt::print("  quiet tenants during: {} activities, p50 {:.2f} ms, p99 {:.2f} ms\n",
             p->quiet_ms[1].size(), p50_during, p99_during);
  fmt::print("  storming tenant processed {} activities in all\n", p->processed["t000"]);
  fmt::print(
      "RESULT {{\"scenario\":\"noisy\",\"tenants\":{},\"rate\":{:.0f},\"p99_before_ms\":{:.3f},"
      "\"p99_during_ms\":{:.3f},\"p99_ratio\":{:.3f},\"p50_ratio\":{:.3f},\"target\":1.25}}\n",
      o.tenants, o.rate, p99_before, p99_during, p99_during / p99_before, p50_during / p50_before);
}

void Fairness(const Options& o) {
  fmt::print("fairness: weights 1, 2, 4, {} activities backlogged each\n", o.events / 3);
  Env env(false, EngineOpts(o));
  auto proc = std::make_unique<TrivialProcessor>();
  TrivialProcessor* p = proc.get();
  env.engine().AddProcessor(std::move(proc));
  std::vector<model::TenantConfig> tenants = {Tenant("w1", 1, model::TenantStatus::kSuspended),
                                              Tenant("w2", 2, model::TenantStatus::kSuspended),
                                              Tenant("w4", 4, model::TenantStatus::kSuspended)};
  env.Start(tenants);
  env.Preload(tenants, o.events / 3, o.leads);
  for (auto& t : tenants) {
    t.status = model::TenantStatus::kActive;
    Env::Check(env.engine().UpsertTenant(t));
  }
  auto snapshot = [&] {
    std::lock_guard lock(p->mu);
    return p->processed;
  };
  std::this_thread::sleep_for(500ms);  // past the first reads
  auto before = snapshot();
  // Measure until --seconds pass or a tenant is close to the end of its backlog (after which
  // it could no longer take its share).
  auto t0 = std::chrono::steady_clock::now();
  auto after = before;
  while (std::chrono::steady_clock::now() - t0 < std::chrono::duration<double>(o.seconds)) {
    std::this_thread::sleep_for(20ms);
    after = snapshot();
    bool near_end = false;
    for (const auto& t : tenants) near_end |= after[t.id.str()] >= o.events / 3 * 9 / 10;
    if (near_end) break;
  }
  double window = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  fmt::print("  measured over {:.2f} s\n", window);
  double total = 0;
  std::map<std::string, double> got;
  bool backlogged = true;
  for (const auto& t : tenants) {
    got[t.id.str()] = static_cast<double>(after[t.id.str()] - before[t.id.str()]);
    total += got[t.id.str()];
    backlogged = backlogged && after[t.id.str()] < o.events / 3;
  }
  double worst = 0;
  std::string shares;
  for (const auto& t : tenants) {
    double expected = t.quotas.processing_weight / 7.0;
    double share = got[t.id.str()] / total;
    worst = std::max(worst, std::abs(share / expected - 1));
    fmt::print("  {} (weight {}): {:.0f} activities, share {:.4f} (expected {:.4f})\n", t.id.str(),
               t.quotas.processing_weight, got[t.id.str()], share, expected);
    shares += fmt::format("{}\"{}\":{:.4f}", shares.empty() ? "" : ",", t.id.str(), share);
  }
  if (!backlogged) fmt::print("  WARNING: a tenant ran out of backlog; use more --events\n");
  fmt::print(
      "RESULT {{\"scenario\":\"fairness\",\"shares\":{{{}}},\"worst_relative_error\":{:.4f},"
      "\"all_backlogged\":{},\"target\":0.05}}\n",
      shares, worst, backlogged);
}

void Stragglers(const Options& o) {
  fmt::print(
      "stragglers: {} tenants at {:.0f}/s each; {} cycles of {:.0f} s normal + {:.0f} s with "
      "t000's activities taking 1 s each\n",
      o.tenants, o.rate, o.cycles, o.seconds, o.seconds);
  Env env(o.sync, EngineOpts(o));
  StragglerProcessor* p = AddLoudTenantProcessor<StragglerProcessor>(env);
  auto tenants = Tenants(o.tenants, model::TenantStatus::kActive);
  env.Start(tenants);
  {
    Producer producer(&env, tenants, o.rate, o.leads);
    std::this_thread::sleep_for(2s);
    for (int cycle = 0; cycle < o.cycles; ++cycle) {
      for (int slow = 0; slow < 2; ++slow) {
        p->slow = slow != 0;
        std::this_thread::sleep_for(1s);
        p->phase = slow;
        std::this_thread::sleep_for(std::chrono::duration<double>(o.seconds));
        p->phase = -1;
      }
    }
    auto st = env.engine().GetStatus(TenantId("t000"));
    if (st.ok()) {
      fmt::print("  t000 during: {} activities in processing, lag {} activities\n",
                 st->front().in_flight, st->front().lag_events);
    }
  }
  p->slow = false;
  p->Drain();
  env.engine().WaitIdle(120s);
  std::lock_guard lock(p->mu);
  double before = Percentile(p->quiet_ms[0], 0.99), during = Percentile(p->quiet_ms[1], 0.99);
  fmt::print("  others before: {} activities, p99 {:.2f} ms\n", p->quiet_ms[0].size(), before);
  fmt::print("  others during: {} activities, p99 {:.2f} ms\n", p->quiet_ms[1].size(), during);
  fmt::print(
      "RESULT "
      "{{\"scenario\":\"stragglers\",\"tenants\":{},\"rate\":{:.0f},\"p99_before_ms\":{:.3f},"
      "\"p99_during_ms\":{:.3f},\"p99_ratio\":{:.3f},\"target\":1.1}}\n",
      o.tenants, o.rate, before, during, during / before);
}

void Rss(const Options& o) {
  fmt::print("rss: drain {} activities over {} tenants\n", o.events, o.tenants);
  Env env(false, EngineOpts(o));
  auto proc = std::make_unique<TrivialProcessor>();
  TrivialProcessor* p = proc.get();
  env.engine().AddProcessor(std::move(proc));
  auto tenants = Tenants(o.tenants, model::TenantStatus::kSuspended);
  env.Start(tenants);
  env.Preload(tenants, o.events / o.tenants, o.leads);
  long before = RssKiB();
  for (auto& t : tenants) {
    t.status = model::TenantStatus::kActive;
    Env::Check(env.engine().UpsertTenant(t));
  }
  uint64_t total = o.events / o.tenants * o.tenants;
  std::vector<std::pair<double, long>> samples;  // (fraction drained, RSS KiB)
  auto t0 = NowNs();
  while (!env.engine().WaitIdle(1s)) {
    uint64_t done = 0;
    {
      std::lock_guard lock(p->mu);
      for (const auto& [t, n] : p->processed) done += n;
    }
    samples.emplace_back(static_cast<double>(done) / static_cast<double>(total), RssKiB());
    fmt::print("  {:5.1f}% drained, RSS {} MiB\n", samples.back().first * 100,
               samples.back().second / 1024);
  }
  double secs = static_cast<double>(NowNs() - t0) / 1e9;
  long early = 0, peak = 0;
  for (const auto& [f, r] : samples) {
    if (f >= 0.1 && early == 0) early = r;
    peak = std::max(peak, r);
  }
  long end = RssKiB();
  fmt::print("  RSS before draining {} MiB, at 10% {} MiB, peak {} MiB, at the end {} MiB\n",
             before / 1024, early / 1024, peak / 1024, end / 1024);
  fmt::print(
      "RESULT {{\"scenario\":\"rss\",\"events\":{},\"drain_seconds\":{:.1f},\"rss_before_mib\":{},"
      "\"rss_at_10pct_mib\":{},\"rss_peak_mib\":{},\"rss_end_mib\":{},"
      "\"peak_over_10pct\":{:.3f}}}\n",
      total, secs, before / 1024, early / 1024, peak / 1024, end / 1024,
      early > 0 ? static_cast<double>(peak) / static_cast<double>(early) : 0.0);
}

}  // namespace
}  // namespace fairway::bench

int main(int argc, char** argv) {
  using namespace fairway::bench;
  CLI::App app{"Fairway processing engine benchmarks"};
  app.require_subcommand(1);
  Options o;
  auto common = [&](CLI::App* c) {
    c->add_option("--threads", o.threads, "engine worker threads");
    c->add_option("--events", o.events, "activities to preload");
    c->add_option("--tenants", o.tenants, "tenants");
    c->add_option("--leads", o.leads, "leads per tenant");
    c->add_option("--rate", o.rate, "activities/s per steady tenant");
    c->add_option("--seconds", o.seconds, "length of each measured phase");
    c->add_option("--sync", o.sync, "fsync log commits (latency scenarios)");
    c->add_option("--cycles", o.cycles, "calm/storm cycles (latency scenarios)");
    c->add_option("--skip-repeats", o.skip_repeats,
                  "skip repeated messageIds when processing (as a cluster node does)");
  };
  auto* tp = app.add_subcommand("throughput", "drain a backlog: trivial and lead processor");
  common(tp);
  tp->add_option("--processor", o.processor, "trivial, leads or both");
  auto* noisy = app.add_subcommand("noisy", "one tenant storms at 100x");
  common(noisy);
  auto* fair = app.add_subcommand("fairness", "weights 1, 2, 4 backlogged");
  common(fair);
  auto* strag = app.add_subcommand("stragglers", "one tenant takes 1 s per activity");
  common(strag);
  auto* rss = app.add_subcommand("rss", "memory while a backlog drains");
  common(rss);
  CLI11_PARSE(app, argc, argv);
  try {
    if (*tp) Throughput(o);
    if (*noisy) Noisy(o);
    if (*fair) Fairness(o);
    if (*strag) Stragglers(o);
    if (*rss) Rss(o);
  } catch (const std::exception& e) {
    std::cerr << "engine_bench: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
