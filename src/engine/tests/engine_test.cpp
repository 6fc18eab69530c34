#include "engine/engine.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <future>
#include <map>
#include <set>
#include <thread>
#include <tuple>

#include "common/coding.h"
#include "engine/engine_internal.h"
#include "engine/processing_throttle.h"
#include "log/embedded_log.h"
#include "storage/schema.h"
#include "testing/forwarding_log.h"
#include "testing/status_matchers.h"
#include "testing/store_and_log.h"

namespace fairway::engine {
namespace {

using namespace std::chrono_literals;
using model::Activity;
using model::ActivityType;

constexpr auto kWait = 60s;

struct Seen {
  std::string tenant;
  std::string lead;
  std::string message_id;
  uint32_t partition;
  uint64_t offset;
  std::chrono::steady_clock::time_point at;
};

// A processor whose behaviour each test sets: it counts activities per lead in its state,
// records what it processed, and can fail or hold (finish later) chosen activities.
class TestProcessor final : public Processor {
 public:
  // OK: process the activity; an error fails its work item with that status.
  using FailFn = std::function<Status(const TenantId&, const log::LogEntry&)>;
  using HoldFn = std::function<bool(const TenantId&, const log::LogEntry&)>;

  explicit TestProcessor(ProcessorSpec spec) : spec_(std::move(spec)) {}
  const ProcessorSpec& spec() const override { return spec_; }

  void SetFail(FailFn f) {
    std::lock_guard lock(mu_);
    fail_ = std::move(f);
  }
  void SetHold(HoldFn f) {
    std::lock_guard lock(mu_);
    hold_ = std::move(f);
  }
  void SetEmit(bool emit) { emit_ = emit; }
  // Process() blocks its thread until `gate` is ready.
  void SetGate(std::shared_future<void> gate) {
    std::lock_guard lock(mu_);
    gate_ = std::move(gate);
  }

  void Process(WorkItem& item) override {
    std::shared_future<void> gate;
    {
      std::lock_guard lock(mu_);
      gate = gate_;
    }
    if (gate.valid()) gate.wait();
    FailFn fail;
    {
      std::lock_guard lock(mu_);
      fail = fail_;
      if (hold_) {
        for (const auto& e : item.entries()) {
          if (hold_(item.tenant(), e)) {
            held_.push_back(&item);
            max_held_events_ = std::max(max_held_events_, HeldEvents());
            cv_.notify_all();
            return;
          }
        }
      }
      attempts_ += item.entries().size();
    }
    Run(item, fail);
  }

  // Runs every held item now (with the current fail function).
  void ReleaseHeld() {
    std::vector<WorkItem*> held;
    FailFn fail;
    {
      std::lock_guard lock(mu_);
      held.swap(held_);
      hold_ = nullptr;
      fail = fail_;
    }
    for (WorkItem* item : held) Run(*item, fail);
  }
  // Fails every held item with `error`.
  void FailHeld(const Status& error) {
    std::vector<WorkItem*> held;
    {
      std::lock_guard lock(mu_);
      held.swap(held_);
    }
    for (WorkItem* item : held) item->Finish(error);
  }

  template <typename Pred>
  bool WaitFor(Pred pred, std::chrono::milliseconds timeout = kWait) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return pred(); });
  }
  size_t seen_count() {
    std::lock_guard lock(mu_);
    return seen_.size();
  }
  size_t CountFor(const std::string& tenant) {
    std::lock_guard lock(mu_);
    return static_cast<size_t>(std::count_if(seen_.begin(), seen_.end(),
                                             [&](const Seen& x) { return x.tenant == tenant; }));
  }
  std::vector<Seen> seen() {
    std::lock_guard lock(mu_);
    return seen_;
  }
  size_t held_count() {
    std::lock_guard lock(mu_);
    return held_.size();
  }
  // Caller holds mu_ (inside WaitFor predicates).
  size_t held_unlocked() const { return held_.size(); }
  size_t seen_unlocked() const { return seen_.size(); }
  size_t attempts_unlocked() const { return attempts_; }
  const std::vector<Seen>& seen_unlocked_ref() const { return seen_; }
  // Activities handed to Process() and run (not held), counting every attempt.
  size_t attempts() {
    std::lock_guard lock(mu_);
    return attempts_;
  }
  size_t max_held_events() {
    std::lock_guard lock(mu_);
    return max_held_events_;
  }

 private:
  size_t HeldEvents() const {
    size_t n = 0;
    for (auto* i : held_) n += i->entries().size();
    return n;
  }

  void Run(WorkItem& item, const FailFn& fail) {
    if (fail) {
      for (const auto& e : item.entries()) {
        if (Status err = fail(item.tenant(), e); !err.ok()) {
          item.Finish(std::move(err));
          std::lock_guard lock(mu_);
          cv_.notify_all();
          return;
        }
      }
    }
    std::vector<Seen> seen;
    for (const auto& e : item.entries()) {
      std::string key = "n/" + std::string(e.activity.LeadKey());
      auto v = item.state().Get(key);
      uint64_t n = v.ok() && v->has_value() ? std::stoull(**v) : 0;
      item.state().Put(key, std::to_string(n + 1));
      seen.push_back({item.tenant().str(), std::string(e.activity.LeadKey()),
                      e.activity.message_id.str(), e.partition.value(), e.offset.value(),
                      std::chrono::steady_clock::now()});
      if (emit_ && e.activity.event != "generated") {
        Activity g;
        g.type = ActivityType::kTrack;
        g.message_id = MessageId("gen-" + e.activity.message_id.str());
        g.user_id = e.activity.user_id;
        g.anonymous_id = e.activity.anonymous_id;
        g.event = "generated";
        item.Emit(std::move(g));
      }
    }
    // Recorded before the commit, so that an idle engine implies a complete record; waiters
    // are woken after it.
    {
      std::lock_guard lock(mu_);
      seen_.insert(seen_.end(), seen.begin(), seen.end());
    }
    item.Finish();
    std::lock_guard lock(mu_);
    cv_.notify_all();
  }

  ProcessorSpec spec_;
  std::atomic<bool> emit_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  FailFn fail_;
  HoldFn hold_;
  std::shared_future<void> gate_;
  std::vector<WorkItem*> held_;
  size_t max_held_events_ = 0;
  std::vector<Seen> seen_;
  size_t attempts_ = 0;
};

ProcessorSpec Spec(Ordering ordering = Ordering::kPerLead) {
  ProcessorSpec s;
  s.name = "test";
  s.ordering = ordering;
  s.batch_size = 16;
  s.retry.max_attempts = 3;
  s.retry.retry_now_delay = 1ms;
  s.retry.initial_backoff = 2ms;
  s.retry.max_backoff = 20ms;
  s.breaker.window = 1'000;
  s.breaker.min_failures = 1'000;
  return s;
}

// Spec() named `name`, running after `after` (none when empty).
ProcessorSpec Named(std::string name, std::string after = {}) {
  ProcessorSpec s = Spec();
  s.name = std::move(name);
  s.after = std::move(after);
  return s;
}

model::TenantConfig Tenant(const std::string& id, uint32_t weight = 1, uint32_t partitions = 4) {
  model::TenantConfig t;
  t.id = TenantId(id);
  t.name = id;
  t.partitions = partitions;
  t.quotas.processing_weight = weight;
  return t;
}

// The store and log run on real time; the engine subscribes to the log before it starts.
class EngineTest : public ::fairway::testing::StoreAndLogTest {
 protected:
  EngineTest()
      : StoreAndLogTest(
            {.log = {.sync = false}, .clock = SystemClock::Default(), .start_log = false}) {}
  void SetUp() override { OpenStore(); }
  void TearDown() override { Close(); }

  void OpenStore() { ASSERT_OK(Open()); }

  // Builds and starts an engine running `processor` for `tenants`.
  TestProcessor* StartEngine(ProcessorSpec spec, const std::vector<model::TenantConfig>& tenants,
                             EngineOptions options = {}, const Clock* clock = nullptr) {
    auto p = std::make_unique<TestProcessor>(std::move(spec));
    TestProcessor* raw = p.get();
    std::vector<std::unique_ptr<Processor>> processors;
    processors.push_back(std::move(p));
    StartProcessors(std::move(processors), tenants, options, clock);
    return raw;
  }

  // Builds and starts an engine over `log` (default: the fixture's) running `processors`, in
  // order, for `tenants`.
  void StartProcessors(std::vector<std::unique_ptr<Processor>> processors,
                       const std::vector<model::TenantConfig>& tenants, EngineOptions options = {},
                       const Clock* clock = nullptr, log::ActivityLog* log = nullptr) {
    engine_ =
        std::make_unique<Engine>(store_.get(), log ? log : log_.get(),
                                 clock ? clock : SystemClock::Default(), metrics_.get(), options);
    for (auto& p : processors) engine_->AddProcessor(std::move(p));
    engine_->Start();
    if (!log_started_) {
      log_->Start();
      log_started_ = true;
    }
    for (const auto& t : tenants) EXPECT_TRUE(engine_->UpsertTenant(t).ok());
  }

  void StopEngine() {
    if (engine_) engine_->Stop();
  }

  void Close() {
    if (engine_) engine_->Stop();
    if (log_) log_->Stop();
    engine_.reset();
    StoreAndLog::Close();
  }

  // Appends `n` track activities for tenant `t`, spread over `leads` leads; message ids are
  // "<tenant>-<seq>" with seq counting on from earlier calls.
  void Append(const model::TenantConfig& t, int n, int leads) {
    log::AppendRequest req;
    req.tenant = t.id;
    req.partitions = t.partitions;
    req.first_partition = t.first_partition();
    for (int i = 0; i < n; ++i) {
      int seq = next_seq_[t.id.str()]++;
      Activity a;
      a.type = ActivityType::kTrack;
      a.message_id = MessageId(fmt::format("{}-{:06}", t.id.str(), seq));
      a.user_id = fmt::format("lead{}", seq % leads);
      a.event = "Clicked";
      a.timestamp_ms = 1'700'000'000'000 + seq;
      a.received_at_ms = SystemClock::Default()->NowMillis();
      req.activities.push_back(std::move(a));
    }
    std::promise<Status> done;
    log_->Append(std::move(req), [&](Result<log::AppendResult> r) { done.set_value(r.status()); });
    ASSERT_TRUE(done.get_future().get().ok());
  }

  uint64_t StateCount(const std::string& tenant, const std::string& lead) {
    StateTxn txn(store_.get(), StateKeyPrefix(TenantId(tenant), "test"));
    auto v = txn.Get("n/" + lead);
    EXPECT_TRUE(v.ok());
    return v.ok() && v->has_value() ? std::stoull(**v) : 0;
  }

  // Polls the tenant's first stream until `pred` holds of its status (bounded by kWait).
  bool StatusBecomes(const std::string& tenant,
                     const std::function<bool(const StreamStatus&)>& pred) {
    auto deadline = std::chrono::steady_clock::now() + kWait;
    while (std::chrono::steady_clock::now() < deadline) {
      if (pred(StatusOf(tenant))) return true;
      std::this_thread::yield();
    }
    return false;
  }

  uint64_t WatchdogTrips() {
    return metrics_->GetCounter("fairway_engine_watchdog_trips_total", "")->value();
  }

  StreamStatus StatusOf(const std::string& tenant) {
    auto st = engine_->GetStatus(TenantId(tenant));
    EXPECT_TRUE(st.ok()) << st.status().ToString();
    return st.ok() && !st->empty() ? st->front() : StreamStatus{};
  }

  // Tenant alpha (one partition) with ten activities, the one at offset 5 dead-lettered; the
  // processor then succeeds but holds offset 5 when it comes back (replayed).
  TestProcessor* DeadLetterOffset5() {
    auto a = Tenant("alpha", 1, 1);
    TestProcessor* p = StartEngine(Spec(), {a});
    p->SetFail([](const TenantId&, const log::LogEntry& e) -> Status {
      if (e.offset.value() != 5) return Status::Ok();
      return InvalidArgument("bad");
    });
    Append(a, 10, 10);
    EXPECT_TRUE(engine_->WaitIdle(kWait));
    EXPECT_EQ(StateCount("alpha", "lead5"), 0u);
    p->SetFail(nullptr);
    p->SetHold([](const TenantId&, const log::LogEntry& e) { return e.offset.value() == 5; });
    return p;
  }

  // Every message of `tenant` processed exactly once, and each lead in log (message) order.
  void ExpectExactlyOnceInOrder(const std::vector<Seen>& seen, const std::string& tenant, int n,
                                bool check_order = true) {
    std::map<std::string, std::vector<std::string>> by_lead;
    std::set<std::string> ids;
    for (const auto& s : seen) {
      if (s.tenant != tenant) continue;
      EXPECT_TRUE(ids.insert(s.message_id).second) << "processed twice: " << s.message_id;
      by_lead[s.lead].push_back(s.message_id);
    }
    EXPECT_EQ(ids.size(), static_cast<size_t>(n)) << tenant;
    for (const auto& [lead, msgs] : by_lead) {
      if (!check_order) break;
      EXPECT_TRUE(std::is_sorted(msgs.begin(), msgs.end())) << "lead " << lead << " out of order";
    }
  }

  // An engine running processor "up", then "down" (ProcessorSpec::after "up"), for `t`. "up"
  // holds the activities `hold` selects from the start, and takes one activity per work item (a
  // held item holds only its own lead).
  std::pair<TestProcessor*, TestProcessor*> StartUpAndDown(const model::TenantConfig& t,
                                                           TestProcessor::HoldFn hold) {
    ProcessorSpec up_spec = Named("up");
    up_spec.batch_size = 1;
    ProcessorSpec down_spec = Named("down", "up");
    auto up = std::make_unique<TestProcessor>(up_spec);
    auto down = std::make_unique<TestProcessor>(down_spec);
    std::pair<TestProcessor*, TestProcessor*> out{up.get(), down.get()};
    up->SetHold(std::move(hold));
    std::vector<std::unique_ptr<Processor>> processors;
    processors.push_back(std::move(up));
    processors.push_back(std::move(down));
    StartProcessors(std::move(processors), {t});
    return out;
  }

  std::unique_ptr<Engine> engine_;
  bool log_started_ = false;
  std::map<std::string, int> next_seq_;
};

TEST_F(EngineTest, ProcessesEveryActivityOnceInPerLeadOrder) {
  auto a = Tenant("alpha"), b = Tenant("beta", 1, 2);
  TestProcessor* p = StartEngine(Spec(), {a, b});
  Append(a, 1'000, 37);
  Append(b, 500, 5);
  Append(a, 1'000, 37);
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  auto seen = p->seen();
  ExpectExactlyOnceInOrder(seen, "alpha", 2'000);
  ExpectExactlyOnceInOrder(seen, "beta", 500);
  // State committed with the offsets: 2000 activities over 37 leads.
  uint64_t total = 0;
  for (int l = 0; l < 37; ++l) total += StateCount("alpha", fmt::format("lead{}", l));
  EXPECT_EQ(total, 2'000u);
  EXPECT_EQ(StateCount("beta", "lead0"), 100u);
  StreamStatus st = StatusOf("alpha");
  EXPECT_EQ(st.lag_events, 0u);
  EXPECT_EQ(st.processed_total, 2'000u);
  EXPECT_EQ(st.state, "idle");
  uint64_t committed = 0;
  for (const auto& part : st.partitions) committed += part.committed;
  EXPECT_EQ(committed, 2'000u);
}

// A partition-count change under load: a later layout's activities run only once every
// activity of the layouts before it is processed, so each lead keeps its order; here one lead's
// old activities are held, which holds the whole new layout back (the tenant drains, not just
// the lead). Then, after a restart, the engine reads all the tenant's log partitions again.
TEST_F(EngineTest, APartitionCountChangeKeepsEveryLeadsOrder) {
  auto t = Tenant("alpha", 1, 2);
  TestProcessor* p = StartEngine(Spec(), {t});
  p->SetHold([](const TenantId&, const log::LogEntry& e) {
    return e.partition.value() < 2 && e.activity.user_id == "lead0";
  });
  Append(t, 200, 7);
  ASSERT_TRUE(p->WaitFor([&] { return p->held_unlocked() > 0; }));

  ASSERT_OK_AND_ASSIGN(auto ends, log_->StartLayout(t, 3));
  auto grown = t;
  grown.sealed_layouts.push_back({0, 2, ends});
  grown.partitions = 3;
  ASSERT_OK(engine_->UpsertTenant(grown));
  // Appended naming the old layout (as a request admitted before the change would): the log
  // routes them to the new one.
  Append(t, 200, 7);
  auto new_seen = [&] {
    for (const auto& s : p->seen_unlocked_ref()) {
      if (s.partition >= 2) return true;
    }
    return false;
  };
  // (The bound only makes a wrong early start visible; nothing may start while lead0 waits.)
  EXPECT_FALSE(p->WaitFor(new_seen, 300ms)) << "the new layout ran before the old one drained";
  p->ReleaseHeld();
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  auto seen = p->seen();
  ExpectExactlyOnceInOrder(seen, "alpha", 400);
  for (const auto& s : seen) {
    const bool old_layout = s.message_id < "alpha-000200";
    EXPECT_EQ(s.partition,
              old_layout ? log::LayoutPartition(s.lead, 0, 2) : log::LayoutPartition(s.lead, 2, 3))
        << s.message_id;
  }
  EXPECT_EQ(StatusOf("alpha").partitions.size(), 5u);

  // Restarted with the grown configuration: every partition is known, nothing runs again, and
  // new activities are processed in the new layout.
  Close();
  OpenStore();
  log_started_ = false;
  p = StartEngine(Spec(), {grown});
  Append(grown, 50, 7);
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  EXPECT_EQ(p->seen().size(), 50u);
  uint64_t total = 0;
  for (int l = 0; l < 7; ++l) total += StateCount("alpha", fmt::format("lead{}", l));
  EXPECT_EQ(total, 450u);
  StreamStatus st = StatusOf("alpha");
  ASSERT_EQ(st.partitions.size(), 5u);
  EXPECT_EQ(st.lag_events, 0u);
}

TEST_F(EngineTest, RestartResumesFromCommittedOffsets) {
  auto a = Tenant("alpha");
  TestProcessor* p = StartEngine(Spec(), {a});
  Append(a, 300, 10);
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  auto first = p->seen();
  StopEngine();
  Append(a, 200, 10);  // arrives while the engine is down
  p = StartEngine(Spec(), {a});
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  auto all = first;
  auto second = p->seen();
  EXPECT_EQ(second.size(), 200u);
  all.insert(all.end(), second.begin(), second.end());
  ExpectExactlyOnceInOrder(all, "alpha", 500);
  EXPECT_EQ(StateCount("alpha", "lead3"), 50u);
}

TEST_F(EngineTest, WorkCompletedAboveTheLowWaterMarkIsNotRedoneAfterRestart) {
  auto a = Tenant("alpha", 1, 1);
  ProcessorSpec slow_retry = Spec();
  slow_retry.retry.retry_now_delay = 3'600'000ms;
  slow_retry.retry.initial_backoff = 3'600'000ms;
  slow_retry.batch_size = 1;  // a held work item holds every lead in it
  TestProcessor* p = StartEngine(slow_retry, {a});
  // lead0's first activity is held; every other lead runs past it.
  p->SetHold([](const TenantId&, const log::LogEntry& e) { return e.activity.user_id == "lead0"; });
  Append(a, 100, 10);
  ASSERT_TRUE(p->WaitFor([&] {
    return p->seen_unlocked() == 90 && p->held_unlocked() == 1 &&
           StatusOf("alpha").partitions[0].completed_above == 90;
  }));
  StreamStatus st = StatusOf("alpha");
  EXPECT_EQ(st.partitions[0].committed, 0u);  // offset 0 is lead0's, still in processing
  EXPECT_EQ(st.partitions[0].completed_above, 90u);
  // The held work fails and waits for a retry; the engine stops before retrying it.
  p->SetFail([](const TenantId&, const log::LogEntry&) { return Unavailable("down"); });
  p->ReleaseHeld();
  auto first = p->seen();
  StopEngine();
  // Restart: only lead0's ten activities are left, and nothing else is processed again.
  p = StartEngine(Spec(), {a});
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  auto second = p->seen();
  EXPECT_EQ(second.size(), 10u);
  for (const auto& s : second) EXPECT_EQ(s.lead, "lead0");
  first.insert(first.end(), second.begin(), second.end());
  ExpectExactlyOnceInOrder(first, "alpha", 100);
  EXPECT_EQ(StatusOf("alpha").partitions[0].committed, 100u);
}

TEST_F(EngineTest, ASlowLeadHoldsOnlyItself) {
  auto a = Tenant("alpha");
  ProcessorSpec spec = Spec();
  spec.batch_size = 1;  // a held work item holds every lead in it
  TestProcessor* p = StartEngine(spec, {a});
  p->SetHold([](const TenantId&, const log::LogEntry& e) { return e.activity.user_id == "lead7"; });
  Append(a, 400, 20);  // 20 per lead
  // Everything but lead7 completes while lead7's first work item is stuck.
  ASSERT_TRUE(p->WaitFor([&] { return p->seen_unlocked() == 380; }));
  EXPECT_EQ(p->held_count(), 1u);
  for (const auto& s : p->seen()) EXPECT_NE(s.lead, "lead7");
  p->ReleaseHeld();
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  ExpectExactlyOnceInOrder(p->seen(), "alpha", 400);
}

TEST_F(EngineTest, AStuckTenantHoldsOnlyItselfEvenWithStrictOrder) {
  auto a = Tenant("alpha"), b = Tenant("beta");
  TestProcessor* p = StartEngine(Spec(Ordering::kPerTenant), {a, b});
  p->SetHold([](const TenantId& t, const log::LogEntry&) { return t.str() == "alpha"; });
  Append(a, 100, 10);
  Append(b, 300, 10);
  ASSERT_TRUE(p->WaitFor([&] { return p->seen_unlocked() == 300; }));
  // Strict order: alpha has exactly one work item in processing, nothing else of it ran.
  EXPECT_EQ(p->held_count(), 1u);
  EXPECT_EQ(StatusOf("alpha").processed_total, 0u);
  p->ReleaseHeld();
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  auto seen = p->seen();
  ExpectExactlyOnceInOrder(seen, "alpha", 100);
  ExpectExactlyOnceInOrder(seen, "beta", 300);
  // Per-tenant order: within each partition, alpha's offsets were processed in order.
  std::map<uint32_t, uint64_t> last;
  for (const auto& s : seen) {
    if (s.tenant != "alpha") continue;
    if (last.contains(s.partition)) {
      EXPECT_GT(s.offset, last[s.partition]);
    }
    last[s.partition] = s.offset;
  }
}

TEST_F(EngineTest, AFailingActivityIsIsolatedRetriedAndDeadLettered) {
  auto a = Tenant("alpha", 1, 1);
  TestProcessor* p = StartEngine(Spec(), {a});
  std::atomic<int> attempts{0};
  p->SetFail([&](const TenantId&, const log::LogEntry& e) -> Status {
    if (e.activity.message_id.str() != "alpha-000042") return Status::Ok();
    attempts++;
    return Unavailable("crm answered 500");
  });
  Append(a, 200, 4);  // alpha-000042 belongs to lead2, in a batch with others
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  // Everything else processed once; lead2's later activities ran after the dead-lettering.
  auto seen = p->seen();
  ExpectExactlyOnceInOrder(seen, "alpha", 199);
  EXPECT_EQ(attempts.load(), 1 + 3);  // the failed batch, then three attempts alone
  auto page = engine_->ListDeadLetters(TenantId("alpha"), "test", "", 10);
  ASSERT_TRUE(page.ok()) << page.status().ToString();
  ASSERT_EQ(page->items.size(), 1u);
  const DeadLetter& d = page->items[0];
  EXPECT_EQ(d.activity.message_id.str(), "alpha-000042");
  EXPECT_EQ(d.offset, 42u);
  EXPECT_EQ(d.id, "0-42");
  EXPECT_EQ(d.attempts, 3u);
  EXPECT_EQ(d.reason, "crm answered 500");
  EXPECT_EQ(d.error_class, ErrorClass::kRetryLater);
  StreamStatus st = StatusOf("alpha");
  EXPECT_EQ(st.dead_letters_total, 1u);
  EXPECT_EQ(st.partitions[0].committed, 200u);  // the dead letter does not hold the offsets
  EXPECT_EQ(StateCount("alpha", "lead2"), 49u);

  // Replay once the dependency is healthy: it leaves the store in the same write as its state.
  p->SetFail(nullptr);
  auto queued = engine_->ReplayDeadLetters(TenantId("alpha"), "test", {}, 100);
  ASSERT_TRUE(queued.ok());
  EXPECT_EQ(*queued, 1u);
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  EXPECT_EQ(StateCount("alpha", "lead2"), 50u);
  page = engine_->ListDeadLetters(TenantId("alpha"), "test", "", 10);
  ASSERT_TRUE(page.ok());
  EXPECT_TRUE(page->items.empty());
  ExpectExactlyOnceInOrder(p->seen(), "alpha", 200, /*check_order=*/false);
}

TEST_F(EngineTest, AReplayIsAppliedOnceEvenWhenRequestedTwice) {
  TestProcessor* p = DeadLetterOffset5();
  auto first = engine_->ReplayDeadLetters(TenantId("alpha"), "test", {"0-5"}, 10);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*first, 1u);
  ASSERT_TRUE(p->WaitFor([&] { return p->held_unlocked() == 1; }));
  // Asked again while the first replay runs: not queued twice.
  auto second = engine_->ReplayDeadLetters(TenantId("alpha"), "test", {"0-5"}, 10);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(*second, 0u);
  p->ReleaseHeld();
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  EXPECT_EQ(StateCount("alpha", "lead5"), 1u);
  EXPECT_EQ(engine_->ReplayDeadLetters(TenantId("alpha"), "test", {"0-5"}, 10).status().code(),
            StatusCode::kNotFound);
}

TEST_F(EngineTest, AReplayWhoseDeadLetterIsGoneAppliesNothing) {
  TestProcessor* p = DeadLetterOffset5();
  ASSERT_TRUE(engine_->ReplayDeadLetters(TenantId("alpha"), "test", {"0-5"}, 10).ok());
  ASSERT_TRUE(p->WaitFor([&] { return p->held_unlocked() == 1; }));
  // Another replay of the same dead letter completed meanwhile (its row is gone): this one
  // must not apply its state change a second time.
  auto it = store_->NewIterator(storage::kDeadLetters, "alpha", "alpha\x01");
  it->SeekToFirst();
  ASSERT_TRUE(it->Valid());
  storage::WriteBatch del;
  del.Delete(storage::kDeadLetters, it->key());
  ASSERT_TRUE(store_->Write(del, false).ok());
  p->ReleaseHeld();
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  EXPECT_EQ(StateCount("alpha", "lead5"), 0u);
}

TEST_F(EngineTest, PermanentErrorsAreDeadLetteredWithoutRetries) {
  auto a = Tenant("alpha", 1, 1);
  TestProcessor* p = StartEngine(Spec(), {a});
  std::atomic<int> attempts{0};
  p->SetFail([&](const TenantId&, const log::LogEntry& e) -> Status {
    if (e.offset.value() % 10 != 3) return Status::Ok();
    attempts++;
    return InvalidArgument("unknown event");
  });
  Append(a, 50, 50);
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  auto page = engine_->ListDeadLetters(TenantId("alpha"), "test", "", 2);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->items.size(), 2u);
  EXPECT_EQ(page->items[0].attempts, 1u);
  EXPECT_EQ(page->next_cursor, "0-13");
  auto rest = engine_->ListDeadLetters(TenantId("alpha"), "test", page->next_cursor, 10);
  ASSERT_TRUE(rest.ok());
  EXPECT_EQ(rest->items.size(), 3u);
  EXPECT_FALSE(engine_->ListDeadLetters(TenantId("alpha"), "test", "zz", 10).ok());
  ExpectExactlyOnceInOrder(p->seen(), "alpha", 45);
}

TEST_F(EngineTest, CircuitBreakerSuspendsATenantsProcessorAndResumesLosingNothing) {
  auto a = Tenant("alpha"), b = Tenant("beta");
  ProcessorSpec spec = Spec();
  spec.retry.max_attempts = 1'000;
  spec.breaker.window = 20;
  spec.breaker.min_failures = 10;
  spec.breaker.failure_rate = 0.5;
  spec.breaker.open_for = 3'600'000ms;  // no probe during the test: resumed by call
  TestProcessor* p = StartEngine(spec, {a, b});
  std::atomic<bool> alpha_down{true};
  p->SetFail([&](const TenantId& t, const log::LogEntry&) -> Status {
    if (t.str() == "alpha" && alpha_down) return Aborted("timeout");
    return Status::Ok();
  });
  Append(a, 100, 10);
  Append(b, 100, 10);
  ASSERT_TRUE(engine_->WaitIdle(kWait));  // alpha's breaker is open: nothing can progress
  StreamStatus st = StatusOf("alpha");
  EXPECT_EQ(st.state, "breaker_open");
  EXPECT_EQ(st.last_error, "timeout");
  EXPECT_EQ(st.lag_events, 100u);
  EXPECT_GT(st.breaker_probe_at_ms, st.breaker_opened_at_ms);
  EXPECT_EQ(StatusOf("beta").processed_total, 100u);
  EXPECT_NE(metrics_->RenderPrometheus().find(
                R"(fairway_engine_suspended{tenant="alpha",processor="test"} 1)"),
            std::string::npos);
  alpha_down = false;
  ASSERT_TRUE(engine_->ResumeProcessor(TenantId("alpha"), "test").ok());
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  EXPECT_EQ(StatusOf("alpha").state, "idle");
  ExpectExactlyOnceInOrder(p->seen(), "alpha", 100);
  auto page = engine_->ListDeadLetters(TenantId("alpha"), "test", "", 10);
  EXPECT_TRUE(page.ok() && page->items.empty());
}

TEST_F(EngineTest, HalfOpenProbeClosesTheBreakerAfterRecovery) {
  auto a = Tenant("alpha");
  ProcessorSpec spec = Spec();
  spec.retry.max_attempts = 1'000;
  spec.breaker.window = 10;
  spec.breaker.min_failures = 5;
  spec.breaker.open_for = 20ms;
  spec.breaker.max_open_for = 40ms;
  TestProcessor* p = StartEngine(spec, {a});
  std::atomic<int> failures_left{20};
  p->SetFail([&](const TenantId&, const log::LogEntry&) -> Status {
    if (failures_left.fetch_sub(1) > 0) return Aborted("flaky");
    return Status::Ok();
  });
  Append(a, 50, 5);
  // Probes fail until the failures run out; then one succeeds and the breaker closes.
  ASSERT_TRUE(p->WaitFor([&] { return p->seen_unlocked() == 50; }));
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  EXPECT_EQ(StatusOf("alpha").state, "idle");
  ExpectExactlyOnceInOrder(p->seen(), "alpha", 50);
}

TEST_F(EngineTest, AnActivityThatFailsEveryProbeIsDeadLetteredInTheEnd) {
  auto a = Tenant("alpha", 1, 1);
  ProcessorSpec spec = Spec();
  spec.retry.max_attempts = 4;
  spec.breaker.window = 4;
  spec.breaker.min_failures = 2;
  spec.breaker.open_for = 5ms;
  spec.breaker.max_open_for = 10ms;
  TestProcessor* p = StartEngine(spec, {a});
  p->SetFail([](const TenantId&, const log::LogEntry& e) -> Status {
    if (e.offset.value() != 0) return Status::Ok();
    return Aborted("always");
  });
  Append(a, 100, 10);
  // The breaker opens on offset 0's failures; its probes are attempts of offset 0 too, so it is
  // dead-lettered and everything else runs, without anybody resuming the breaker.
  ASSERT_TRUE(p->WaitFor([&] { return p->seen_unlocked() == 99; }));
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  auto page = engine_->ListDeadLetters(TenantId("alpha"), "test", "", 10);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->items.size(), 1u);
  EXPECT_EQ(page->items[0].offset, 0u);
  ExpectExactlyOnceInOrder(p->seen(), "alpha", 99);
}

TEST_F(EngineTest, BackloggedTenantsShareProcessingByWeight) {
  auto t1 = Tenant("w1", 1), t2 = Tenant("w2", 2), t4 = Tenant("w4", 4);
  EngineOptions options;
  options.threads = 1;
  options.quantum = 8;
  ProcessorSpec spec = Spec();
  spec.batch_size = 8;
  // All three backlogged before any runs: created suspended, filled, then resumed.
  std::vector<model::TenantConfig> suspended = {t1, t2, t4};
  for (auto& t : suspended) t.status = model::TenantStatus::kSuspended;
  TestProcessor* p = StartEngine(spec, suspended, options);
  Append(t1, 2'000, 500);
  Append(t2, 2'000, 500);
  Append(t4, 2'000, 500);
  // The only worker thread blocks in its first work item until all three are resumed.
  std::promise<void> open;
  p->SetGate(open.get_future().share());
  for (const auto& t : {t1, t2, t4}) ASSERT_TRUE(engine_->UpsertTenant(t).ok());
  p->SetGate({});
  open.set_value();
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  // Measure a window in which all three are backlogged (after their first reads).
  std::map<std::string, double> share;
  auto seen = p->seen();
  ASSERT_EQ(seen.size(), 6'000u);
  for (size_t i = 300; i < 1'700; ++i) share[seen[i].tenant] += 1;
  EXPECT_NEAR(share["w1"] / 200, 1.0, 0.05) << share["w1"];
  EXPECT_NEAR(share["w2"] / 400, 1.0, 0.05) << share["w2"];
  EXPECT_NEAR(share["w4"] / 800, 1.0, 0.05) << share["w4"];
}

TEST_F(EngineTest, MaxInFlightQuotaCapsConcurrentWork) {
  auto a = Tenant("alpha");
  a.quotas.max_in_flight = 5;
  ProcessorSpec spec = Spec(Ordering::kNone);
  spec.batch_size = 1;
  TestProcessor* p = StartEngine(spec, {a});
  p->SetHold([](const TenantId&, const log::LogEntry&) { return true; });
  Append(a, 50, 50);
  ASSERT_TRUE(p->WaitFor([&] { return p->held_unlocked() == 5; }));
  EXPECT_EQ(StatusOf("alpha").in_flight, 5u);
  EXPECT_LE(p->max_held_events(), 5u);
  p->ReleaseHeld();
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  EXPECT_EQ(p->seen_count(), 50u);
}

TEST_F(EngineTest, ProcessingRateQuotaThrottlesATenant) {
  ManualClock clock;
  auto a = Tenant("alpha");
  a.quotas.processing_rate = 100;  // 10 per 100 ms
  TestProcessor* p = StartEngine(Spec(), {a}, {}, &clock);
  Append(a, 100, 100);
  ASSERT_TRUE(p->WaitFor([&] { return p->seen_unlocked() == 10; }));
  // Time stands still: no more tokens, so once those 10 are done nothing else can start.
  ASSERT_TRUE(StatusBecomes("alpha", [](const StreamStatus& st) { return st.in_flight == 0; }));
  EXPECT_EQ(p->seen_count(), 10u);
  EXPECT_EQ(StatusOf("alpha").lag_events, 90u);
  // Each 100 ms of (test) time lets exactly 10 more through.
  for (size_t step = 2; step <= 10; ++step) {
    clock.AdvanceMillis(100);
    ASSERT_TRUE(p->WaitFor([&] { return p->seen_unlocked() >= step * 10; }));
    EXPECT_EQ(p->seen_count(), step * 10);
  }
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  EXPECT_EQ(p->seen_count(), 100u);
}

// Throttles of 1 to 100 activities a second, on the real clock: each throttled tenant gets
// exactly its rate (after a first burst), while an unthrottled tenant's work and the engine's
// status stay prompt. A burst of 1 (any rate up to 10/s) used to freeze every worker.
TEST_F(EngineTest, LowProcessingRatesThrottleOnTheRealClockAndFreezeNobody) {
  const std::vector<double> rates = {1, 2, 5, 10, 100};
  std::vector<model::TenantConfig> tenants;
  for (double rate : rates) {
    auto t = Tenant(fmt::format("rate{}", rate), 1, 2);
    t.quotas.processing_rate = rate;
    tenants.push_back(t);
  }
  auto free = Tenant("free");
  tenants.push_back(free);
  EngineOptions options;
  options.stall_timeout = 300ms;  // throttled streams wait longer than this: not a stall
  const auto start = std::chrono::steady_clock::now();
  TestProcessor* p = StartEngine(Spec(), tenants, options);
  // Two seconds' worth beyond the first burst.
  std::map<std::string, int> expected;
  for (size_t i = 0; i < rates.size(); ++i) {
    int n = static_cast<int>(ProcessingThrottle::Burst(rates[i]) + 2 * rates[i]);
    expected[tenants[i].id.str()] = n;
    Append(tenants[i], n, 3);
  }
  // While they are throttled, the unthrottled tenant's work goes through and status answers.
  ASSERT_TRUE(p->WaitFor([&] { return p->seen_unlocked() >= 3; }));
  Append(free, 500, 10);
  ASSERT_TRUE(p->WaitFor([&] {
    size_t n = 0;
    for (const auto& s : p->seen_unlocked_ref()) n += s.tenant == "free";
    return n == 500;
  }));
  // The processor records an activity just before its commit, which counts it: the status
  // catches up a moment later, while the throttled tenants still wait.
  EXPECT_TRUE(StatusBecomes("free", [](const StreamStatus& st) {
    return st.processed_total == 500u;
  })) << StatusOf("free").processed_total;
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  auto seen = p->seen();
  ExpectExactlyOnceInOrder(seen, "free", 500);
  for (size_t i = 0; i < rates.size(); ++i) {
    const std::string id = tenants[i].id.str();
    ExpectExactlyOnceInOrder(seen, id, expected[id]);
    auto last = start;
    for (const auto& s : seen) {
      if (s.tenant == id) last = std::max(last, s.at);
    }
    // The bucket starts full (one burst); the rest needs (n - burst) / rate seconds at least.
    double min_seconds = (expected[id] - ProcessingThrottle::Burst(rates[i])) / rates[i];
    EXPECT_GE(std::chrono::duration<double>(last - start).count(), min_seconds * 0.99) << id;
  }
  EXPECT_EQ(WatchdogTrips(), 0u);
}

TEST_F(EngineTest, AThrottledTenantKeepsItsRateAndItsPlaceAcrossRestarts) {
  auto a = Tenant("alpha", 1, 1);
  a.quotas.processing_rate = 2;
  TestProcessor* p = StartEngine(Spec(), {a});
  Append(a, 8, 2);
  ASSERT_TRUE(p->WaitFor([&] { return p->seen_unlocked() >= 2; }));
  StopEngine();
  auto before = p->seen();
  ASSERT_GE(before.size(), 2u);
  ASSERT_LT(before.size(), 8u);
  const auto restarted = std::chrono::steady_clock::now();
  p = StartEngine(Spec(), {a});
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  auto after = p->seen();
  std::vector<Seen> all = before;
  all.insert(all.end(), after.begin(), after.end());
  ExpectExactlyOnceInOrder(all, "alpha", 8);
  // After the restart: one token at once, then one every half second.
  ASSERT_FALSE(after.empty());
  double min_seconds = (static_cast<double>(after.size()) - 1) / 2;
  EXPECT_GE(std::chrono::duration<double>(after.back().at - restarted).count(), min_seconds * 0.99);
}

TEST_F(EngineTest, ProcessingRateChangesTakeEffectWhileThrottled) {
  auto a = Tenant("alpha", 1, 1);
  a.quotas.processing_rate = 1;  // 300 activities would take five minutes
  TestProcessor* p = StartEngine(Spec(), {a});
  Append(a, 300, 5);
  ASSERT_TRUE(p->WaitFor([&] { return p->seen_unlocked() >= 1; }));
  EXPECT_EQ(StatusOf("alpha").state, "running");
  a.quotas.processing_rate = 0;  // no limit
  ASSERT_TRUE(engine_->UpsertTenant(a).ok());
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  ExpectExactlyOnceInOrder(p->seen(), "alpha", 300);
  // And back to a tiny rate: one activity at once, the next in 1,000 s.
  a.quotas.processing_rate = 0.001;
  ASSERT_TRUE(engine_->UpsertTenant(a).ok());
  Append(a, 2, 1);
  ASSERT_TRUE(StatusBecomes("alpha", [](const StreamStatus& st) {
    return st.processed_total == 301 && st.lag_events == 1;
  }));
  EXPECT_EQ(p->seen_count(), 301u);
  EXPECT_EQ(StatusOf("alpha").state, "running");
}

// A tenant whose processor stops finishing its work (a runaway task) has its breaker opened by
// the watchdog once stall_timeout passes on the engine clock, with the reason in its status;
// other tenants run on, and the tenant recovers by the breaker's probe once the work finishes.
TEST_F(EngineTest, TheWatchdogOpensTheBreakerOfAStreamThatMakesNoProgress) {
  ManualClock clock;
  EngineOptions options;
  options.stall_timeout = 10s;
  auto a = Tenant("alpha"), b = Tenant("beta");
  TestProcessor* p = StartEngine(Spec(Ordering::kPerTenant), {a, b}, options, &clock);
  p->SetHold([](const TenantId& t, const log::LogEntry&) { return t.str() == "alpha"; });
  Append(a, 20, 5);
  Append(b, 20, 5);
  ASSERT_TRUE(p->WaitFor([&] { return p->seen_unlocked() == 20 && p->held_unlocked() == 1; }));
  int64_t advanced_ms = 0;
  bool tripped = false;
  while (!tripped && advanced_ms < 120'000) {
    clock.AdvanceMillis(1'000);
    advanced_ms += 1'000;
    auto deadline = std::chrono::steady_clock::now() + 300ms;
    while (!tripped && std::chrono::steady_clock::now() < deadline) {
      tripped = StatusOf("alpha").state == "breaker_open";
      std::this_thread::yield();
    }
  }
  ASSERT_TRUE(tripped);
  EXPECT_GE(advanced_ms, 10'000);
  EXPECT_THAT(StatusOf("alpha").last_error, ::testing::HasSubstr("watchdog: no work item"));
  EXPECT_EQ(WatchdogTrips(), 1u);
  EXPECT_EQ(StatusOf("beta").state, "idle");
  // The other tenant runs on.
  Append(b, 10, 5);
  ASSERT_TRUE(p->WaitFor([&] { return p->seen_unlocked() == 30; }));
  // The stuck work finishes; the breaker's probe (30 s later) closes it again.
  p->ReleaseHeld();
  clock.AdvanceMillis(31'000);
  ASSERT_TRUE(StatusBecomes("alpha", [](const StreamStatus& st) { return st.state == "idle"; }));
  auto seen = p->seen();
  ExpectExactlyOnceInOrder(seen, "alpha", 20);
  ExpectExactlyOnceInOrder(seen, "beta", 30);
  EXPECT_EQ(WatchdogTrips(), 1u);
}

// The storage refuses writes for a while (a full disk, an I/O error): every commit fails, the
// work is retried as it is, and once writes succeed again everything is processed exactly once,
// with no attempt, failure, breaker opening or dead letter charged to the activities.
TEST_F(EngineTest, AStorageOutageIsWaitedOutWithoutDeadLettersOrBreakers) {
  auto a = Tenant("alpha");
  ProcessorSpec spec = Spec();
  spec.breaker = BreakerPolicy{};  // the default: opens after 20 failures in 50 attempts
  EngineOptions options;
  options.storage_retry = 2ms;
  std::promise<void> gate;
  TestProcessor* p = StartEngine(spec, {a}, options);
  p->SetGate(gate.get_future().share());
  Append(a, 100, 10);
  constexpr int kFailedCommits = 300;  // far past max_attempts (3) and the breaker's 20
  store_->InjectWriteFailures(kFailedCommits);
  gate.set_value();
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  // Each failed commit was one more run of a work item of at least one activity.
  EXPECT_GE(p->attempts(), 100u + kFailedCommits);
  StreamStatus after = StatusOf("alpha");
  EXPECT_EQ(after.state, "idle");
  EXPECT_EQ(after.processed_total, 100u);
  EXPECT_EQ(after.failures_total, 0u);
  EXPECT_EQ(after.dead_letters_total, 0u);
  EXPECT_THAT(after.last_error, ::testing::HasSubstr("commit failed"));
  for (int lead = 0; lead < 10; ++lead) {
    EXPECT_EQ(StateCount("alpha", fmt::format("lead{}", lead)), 10u);
  }
}

TEST_F(EngineTest, TenantsComeGoPauseAndResumeWhileRunning) {
  auto a = Tenant("alpha"), b = Tenant("beta"), c = Tenant("gamma");
  TestProcessor* p = StartEngine(Spec(), {a, b});
  Append(a, 200, 10);
  Append(b, 200, 10);
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  // Added while running.
  ASSERT_TRUE(engine_->UpsertTenant(c).ok());
  Append(c, 100, 10);
  // Suspended: its new work waits.
  auto a_suspended = a;
  a_suspended.status = model::TenantStatus::kSuspended;
  ASSERT_TRUE(engine_->UpsertTenant(a_suspended).ok());
  Append(a, 100, 10);
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  StreamStatus st = StatusOf("alpha");
  EXPECT_EQ(st.state, "tenant_suspended");
  EXPECT_EQ(st.lag_events, 100u);
  EXPECT_EQ(StatusOf("gamma").processed_total, 100u);
  // Resumed: it carries on from where it stopped.
  ASSERT_TRUE(engine_->UpsertTenant(a).ok());
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  auto seen = p->seen();
  ExpectExactlyOnceInOrder(seen, "alpha", 300);
  ExpectExactlyOnceInOrder(seen, "gamma", 100);
  // Removed: its state and offsets go; the others are untouched.
  ASSERT_TRUE(engine_->RemoveTenant(TenantId("beta")).ok());
  EXPECT_FALSE(engine_->GetStatus(TenantId("beta")).ok());
  EXPECT_EQ(StateCount("beta", "lead1"), 0u);
  EXPECT_EQ(StateCount("alpha", "lead1"), 30u);
  auto it = store_->NewIterator(storage::kEngineOffsets, "beta", "beta\x01");
  it->SeekToFirst();
  EXPECT_FALSE(it->Valid());
}

TEST_F(EngineTest, DisabledProcessorKeepsItsPlace) {
  auto a = Tenant("alpha");
  TestProcessor* p = StartEngine(Spec(), {a});
  Append(a, 100, 10);
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  ASSERT_TRUE(engine_->SetEnabled(TenantId("alpha"), "test", false).ok());
  Append(a, 100, 10);
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  EXPECT_EQ(StatusOf("alpha").state, "disabled");
  EXPECT_EQ(p->seen_count(), 100u);
  // The setting survives a restart.
  StopEngine();
  p = StartEngine(Spec(), {a});
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  EXPECT_EQ(p->seen_count(), 0u);
  EXPECT_EQ(StatusOf("alpha").lag_events, 100u);
  ASSERT_TRUE(engine_->SetEnabled(TenantId("alpha"), "test", true).ok());
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  EXPECT_EQ(p->seen_count(), 100u);
  EXPECT_EQ(StateCount("alpha", "lead0"), 20u);
  EXPECT_EQ(engine_->SetEnabled(TenantId("alpha"), "nope", true).code(), StatusCode::kNotFound);
}

TEST_F(EngineTest, AParkedStreamGivesBackItsReadAhead) {
  auto a = Tenant("alpha", 1, 1);
  a.quotas.max_in_flight = 1;
  ProcessorSpec spec = Spec();
  spec.batch_size = 1;
  TestProcessor* p = StartEngine(spec, {a});
  p->SetHold([](const TenantId&, const log::LogEntry& e) { return e.offset.value() == 0; });
  Append(a, 100, 10);
  ASSERT_TRUE(p->WaitFor([&] { return p->held_unlocked() == 1; }));
  ASSERT_TRUE(engine_->SetEnabled(TenantId("alpha"), "test", false).ok());
  // Its one work item is still in processing: the read-ahead stays until it finishes.
  EXPECT_GT(StatusOf("alpha").buffered_bytes, 0u);
  p->ReleaseHeld();
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  StreamStatus st = StatusOf("alpha");
  EXPECT_EQ(st.buffered_bytes, 0u);
  EXPECT_EQ(st.lag_events, 99u);
  // On again: what was dropped is read again, and everything is processed once.
  ASSERT_TRUE(engine_->SetEnabled(TenantId("alpha"), "test", true).ok());
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  ExpectExactlyOnceInOrder(p->seen(), "alpha", 100);
}

TEST_F(EngineTest, ReadAheadStaysWithinTheStreamBudget) {
  auto a = Tenant("alpha", 1, 1);
  EngineOptions options;
  options.stream_buffer_bytes = 64 << 10;
  options.fetch_records = 64;
  TestProcessor* p = StartEngine(Spec(), {a}, options);
  p->SetHold([](const TenantId&, const log::LogEntry&) { return true; });
  for (int i = 0; i < 10; ++i) Append(a, 2'000, 1'000);
  ASSERT_TRUE(p->WaitFor([&] { return p->held_unlocked() > 0; }));
  // The engine reads until half the budget is used, then stops (one read may overshoot it):
  // 20,000 activities are waiting.
  ASSERT_TRUE(StatusBecomes("alpha", [&](const StreamStatus& st) {
    return st.buffered_bytes > options.stream_buffer_bytes / 2;
  }));
  StreamStatus st = StatusOf("alpha");
  EXPECT_GT(st.buffered_bytes, 0u);
  EXPECT_LE(st.buffered_bytes, options.stream_buffer_bytes / 2 + 64 * 1'024);
  EXPECT_EQ(st.lag_events, 20'000u);
  p->ReleaseHeld();
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  EXPECT_EQ(p->seen_count(), 20'000u);
}

TEST_F(EngineTest, GeneratedActivitiesReachTheLogExactlyOnce) {
  auto a = Tenant("alpha", 1, 2);
  TestProcessor* p = StartEngine(Spec(), {a});
  p->SetEmit(true);
  Append(a, 100, 10);
  // The 100 generated activities are processed too (and generate nothing).
  ASSERT_TRUE(p->WaitFor([&] { return p->seen_unlocked() == 200; }));
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  StopEngine();
  log_->Stop();  // runs the append callbacks that clear the outbox
  uint64_t stored = 0;
  for (uint32_t part = 0; part < 2; ++part) {
    auto entries = log_->Read(TenantId("alpha"), PartitionId(part), Offset(0), 1'000);
    ASSERT_TRUE(entries.ok());
    for (const auto& e : *entries) stored += e.activity.event == "generated" ? 1 : 0;
  }
  EXPECT_EQ(stored, 100u);
  auto it = store_->NewIterator(storage::kOutbox, "alpha", "alpha\x01");
  it->SeekToFirst();
  EXPECT_FALSE(it->Valid()) << "outbox not emptied";
}

}  // namespace
}  // namespace fairway::engine

namespace fairway::engine {
namespace {

// Counts into a counter column family and a side row, with an after-commit hook; fails every
// activity's first attempt, so a discarded attempt's writes and hooks can be told apart.
class SideWriteProcessor final : public Processor {
 public:
  SideWriteProcessor() {
    spec_.name = "side";
    spec_.batch_size = 8;
    spec_.retry.retry_now_delay = 1ms;
  }
  const ProcessorSpec& spec() const override { return spec_; }
  void Process(WorkItem& item) override {
    for (const auto& e : item.entries()) {
      item.state().MergeIn(storage::kCampaignStats, "count", 1);
      item.state().PutIn(storage::kTimers, "row/" + e.activity.message_id.str(), "x");
    }
    size_t n = item.entries().size();
    item.AfterCommit([this, n] { hooked_ += n; });
    if (item.attempt() == 1 && failed_.fetch_add(1) == 0) {
      item.Finish(Aborted("first attempt fails"));
      return;
    }
    item.Finish();
  }
  std::atomic<size_t> hooked_{0};
  std::atomic<int> failed_{0};

 private:
  ProcessorSpec spec_;
};

TEST_F(EngineTest, SideWritesAndAfterCommitHooksGoWithTheCommitOnly) {
  auto a = Tenant("alpha", 1, 2);
  auto p = std::make_unique<SideWriteProcessor>();
  SideWriteProcessor* raw = p.get();
  std::vector<std::unique_ptr<Processor>> processors;
  processors.push_back(std::move(p));
  StartProcessors(std::move(processors), {a});
  Append(a, 50, 7);
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  EXPECT_GE(raw->failed_.load(), 1);
  // The failed attempt's merge, rows and hook were discarded: every activity counted once.
  EXPECT_EQ(storage::DecodeCounter(store_->Get(storage::kCampaignStats, "count")->value_or("")),
            50);
  EXPECT_EQ(raw->hooked_.load(), 50u);
  size_t rows = 0;
  auto it = store_->NewIterator(storage::kTimers, "row/", "row0");
  for (it->SeekToFirst(); it->Valid(); it->Next()) ++rows;
  EXPECT_EQ(rows, 50u);
}

TEST_F(EngineTest, ADownstreamProcessorSeesOnlyWhatItsUpstreamCommitted) {
  auto a = Tenant("alpha", 1, 1);
  // The upstream holds offset 5 (lead5's first activity), so its low-water mark stays at 5
  // while it completes everything else.
  auto procs = StartUpAndDown(
      a, [](const TenantId&, const log::LogEntry& e) { return e.offset.value() == 5; });
  TestProcessor* up_raw = procs.first;
  TestProcessor* down_raw = procs.second;
  // Whatever happens below, nothing stays held when the engine stops.
  std::unique_ptr<TestProcessor, void (*)(TestProcessor*)> release(
      up_raw, [](TestProcessor* p) { p->ReleaseHeld(); });
  Append(a, 40, 10);
  ASSERT_TRUE(up_raw->WaitFor([&] { return up_raw->seen_unlocked() == 36; }));
  ASSERT_TRUE(down_raw->WaitFor([&] { return down_raw->seen_unlocked() == 5; }));
  // Nothing at or after offset 5 reaches the downstream while the upstream has not committed it.
  for (const auto& s : down_raw->seen()) EXPECT_LT(s.offset, 5u);
  auto status = engine_->GetStatus(TenantId("alpha"));
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->at(1).processor, "down");
  EXPECT_EQ(status->at(1).partitions.at(0).committed, 5u);
  up_raw->ReleaseHeld();
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  ExpectExactlyOnceInOrder(down_raw->seen(), "alpha", 40);

  // With the upstream disabled, the downstream does not wait for it.
  ASSERT_TRUE(engine_->SetEnabled(TenantId("alpha"), "up", false).ok());
  Append(a, 10, 10);
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  EXPECT_EQ(down_raw->seen_count(), 50u);
  EXPECT_EQ(up_raw->seen_count(), 40u);
}

}  // namespace
}  // namespace fairway::engine

namespace fairway::engine {
namespace {

TEST_F(EngineTest, ADeadLetterInTheUpstreamReleasesTheDownstream) {
  auto a = Tenant("alpha", 1, 1);
  // Offset 5 is held until everything else has committed, then fails for good: its dead
  // letter is the upstream's last commit, and that commit alone moves the low-water mark.
  auto procs = StartUpAndDown(
      a, [](const TenantId&, const log::LogEntry& e) { return e.offset.value() == 5; });
  TestProcessor* up_raw = procs.first;
  TestProcessor* down_raw = procs.second;
  std::unique_ptr<TestProcessor, void (*)(TestProcessor*)> release(
      up_raw, [](TestProcessor* p) { p->ReleaseHeld(); });
  Append(a, 40, 40);  // one activity per lead: nothing follows offset 5 in the upstream
  ASSERT_TRUE(up_raw->WaitFor([&] { return up_raw->seen_unlocked() == 39; }));
  ASSERT_TRUE(down_raw->WaitFor([&] { return down_raw->seen_unlocked() == 5; }));
  up_raw->SetFail([](const TenantId&, const log::LogEntry& e) -> Status {
    if (e.offset.value() != 5) return Status::Ok();
    return InvalidArgument("bad");
  });
  up_raw->ReleaseHeld();
  // The downstream then gets everything, the dead-lettered activity included.
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  EXPECT_EQ(StatusOf("alpha").dead_letters_total, 1u);
  ExpectExactlyOnceInOrder(down_raw->seen(), "alpha", 40);
}

}  // namespace
}  // namespace fairway::engine

namespace fairway::engine {
namespace {

TEST_F(EngineTest, ATrippedProcessorHoldsOnlyItselfAndCatchesUpLosingNothing) {
  auto a = Tenant("alpha", 1, 2);
  ProcessorSpec up_spec = Named("up");
  ProcessorSpec down_spec = Named("down", "up");
  down_spec.retry.max_attempts = 1'000;
  down_spec.breaker.window = 20;
  down_spec.breaker.min_failures = 10;
  down_spec.breaker.failure_rate = 0.5;
  down_spec.breaker.open_for = 3'600'000ms;  // no probe during the test: resumed by call
  auto up = std::make_unique<TestProcessor>(up_spec);
  auto down = std::make_unique<TestProcessor>(down_spec);
  TestProcessor* up_raw = up.get();
  TestProcessor* down_raw = down.get();
  std::atomic<bool> down_broken{true};
  down->SetFail([&](const TenantId&, const log::LogEntry&) -> Status {
    if (down_broken) return Aborted("peer down");
    return Status::Ok();
  });
  std::vector<std::unique_ptr<Processor>> processors;
  processors.push_back(std::move(up));
  processors.push_back(std::move(down));
  StartProcessors(std::move(processors), {a});

  Append(a, 200, 20);
  // The downstream's breaker opens; the upstream processes everything meanwhile.
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  auto status = engine_->GetStatus(TenantId("alpha"));
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->at(0).state, "idle");
  EXPECT_EQ(status->at(0).processed_total, 200u);
  EXPECT_EQ(status->at(1).state, "breaker_open");
  EXPECT_EQ(status->at(1).lag_events, 200u);
  ExpectExactlyOnceInOrder(up_raw->seen(), "alpha", 200);
  EXPECT_EQ(down_raw->seen_count(), 0u);
  // More arrives while it is tripped: the upstream keeps going.
  Append(a, 100, 20);
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  EXPECT_EQ(up_raw->seen_count(), 300u);
  EXPECT_EQ(down_raw->seen_count(), 0u);

  // Repaired and resumed, the downstream catches up from its own offsets: each activity once,
  // per lead in log order, nothing lost.
  down_broken = false;
  ASSERT_TRUE(engine_->ResumeProcessor(TenantId("alpha"), "down").ok());
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  ExpectExactlyOnceInOrder(down_raw->seen(), "alpha", 300);
  EXPECT_EQ(up_raw->seen_count(), 300u);
  status = engine_->GetStatus(TenantId("alpha"));
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->at(1).state, "idle");
  EXPECT_EQ(status->at(1).lag_events, 0u);
  auto page = engine_->ListDeadLetters(TenantId("alpha"), "down", "", 10);
  EXPECT_TRUE(page.ok() && page->items.empty());
}

TEST_F(EngineTest, GeneratedActivitiesJoinTheLogInTheCommitThatCausedThem) {
  auto a = Tenant("alpha", 1, 2);
  TestProcessor* p = StartEngine(Spec(), {a});
  p->SetEmit(true);
  auto* group_commits = metrics_->GetCounter("fairway_log_commits_total", "");
  const uint64_t before = group_commits->value();
  Append(a, 100, 10);
  ASSERT_TRUE(p->WaitFor([&] { return p->seen_unlocked() == 200; }));
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  // Only the test's own append took a group commit (and its fsync): the generated activities
  // went into the log in the engine's commits, and never through the outbox.
  EXPECT_EQ(group_commits->value() - before, 1u);
  auto it = store_->NewIterator(storage::kOutbox, "alpha", "alpha\x01");
  it->SeekToFirst();
  EXPECT_FALSE(it->Valid());
  // Each generated activity sits in its lead's partition, after its cause.
  std::map<std::string, std::pair<uint32_t, uint64_t>> where;
  for (uint32_t part = 0; part < 2; ++part) {
    auto entries = log_->Read(TenantId("alpha"), PartitionId(part), Offset(0), 1'000);
    ASSERT_TRUE(entries.ok());
    for (const auto& e : *entries) {
      where[e.activity.message_id.str()] = {e.partition.value(), e.offset.value()};
    }
  }
  ASSERT_EQ(where.size(), 200u);
  for (const auto& [id, pos] : where) {
    if (!id.starts_with("gen-")) continue;
    auto cause = where.at(id.substr(4));
    EXPECT_EQ(pos.first, cause.first) << id;
    EXPECT_GT(pos.second, cause.second) << id;
  }
}

}  // namespace
}  // namespace fairway::engine

namespace fairway::engine {
namespace {

// Passes everything to a real log and counts the records read from it.
class CountingLog final : public ::fairway::testing::ForwardingLog {
 public:
  using ForwardingLog::ForwardingLog;
  Result<std::vector<log::LogEntry>> Read(const TenantId& t, PartitionId p, Offset from,
                                          size_t max) override {
    auto r = ForwardingLog::Read(t, p, from, max);
    if (r.ok()) records_read += r->size();
    return r;
  }
  std::atomic<uint64_t> records_read{0};
};

TEST_F(EngineTest, AReleasedTenantStopsAndResumesFromItsCommittedOffsets) {
  auto a = Tenant("alpha", 1, 2);
  auto b = Tenant("beta", 1, 2);
  auto proc = std::make_unique<TestProcessor>(Named("p"));
  TestProcessor* p = proc.get();
  std::vector<std::unique_ptr<Processor>> processors;
  processors.push_back(std::move(proc));
  StartProcessors(std::move(processors), {});
  std::atomic<bool> owns_beta{false};
  engine_->SetOwnership([&](const TenantId& t) { return t.str() != "beta" || owns_beta.load(); });
  ASSERT_OK(engine_->UpsertTenant(a));
  ASSERT_OK(engine_->UpsertTenant(b));  // not owned: not processed
  Append(a, 300, 10);
  Append(b, 200, 10);
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  ExpectExactlyOnceInOrder(p->seen(), "alpha", 300);
  EXPECT_EQ(p->CountFor("beta"), 0u);

  // Released, alpha keeps its offsets and stops; taken again, it goes on from them.
  ASSERT_OK(engine_->ReleaseTenant(a.id));
  ASSERT_OK(engine_->ReleaseTenant(a.id));  // again: nothing to do
  Append(a, 300, 10);
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  EXPECT_EQ(p->CountFor("alpha"), 300u);
  ASSERT_OK(engine_->UpsertTenant(a));
  owns_beta = true;
  ASSERT_OK(engine_->UpsertTenant(b));
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  ExpectExactlyOnceInOrder(p->seen(), "alpha", 600);
  ExpectExactlyOnceInOrder(p->seen(), "beta", 200);

  // No longer owned: an upsert releases it.
  owns_beta = false;
  ASSERT_OK(engine_->UpsertTenant(b));
  Append(b, 50, 5);
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  EXPECT_EQ(p->CountFor("beta"), 200u);
  auto status = engine_->GetStatus(b.id);
  EXPECT_FALSE(status.ok());
}

TEST_F(EngineTest, TheTenantsProcessorsShareOneReadOfEachStretchOfTheLog) {
  auto a = Tenant("alpha", 1, 2);
  auto up = std::make_unique<TestProcessor>(Named("up"));
  auto down = std::make_unique<TestProcessor>(Named("down", "up"));
  auto other = std::make_unique<TestProcessor>(Named("other"));
  std::vector<TestProcessor*> procs{up.get(), down.get(), other.get()};
  CountingLog counting(log_.get());
  std::vector<std::unique_ptr<Processor>> processors;
  processors.push_back(std::move(up));
  processors.push_back(std::move(down));
  processors.push_back(std::move(other));
  StartProcessors(std::move(processors), {a}, {}, nullptr, &counting);
  constexpr int kActivities = 3'000;
  for (int i = 0; i < 6; ++i) Append(a, kActivities / 6, 50);
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  for (TestProcessor* p : procs) ExpectExactlyOnceInOrder(p->seen(), "alpha", kActivities);
  // Three processors, and the log was read once: each read is kept until the tenant's other
  // processors have taken it, and a processor that would read a partition another one is
  // reading waits for that read instead (before it did, up to half the records were read
  // twice on a busy machine).
  EXPECT_EQ(counting.records_read.load(), static_cast<uint64_t>(kActivities));
}

log::LogEntry Entry(uint64_t offset, size_t payload = 10) {
  log::LogEntry e;
  e.offset = Offset(offset);
  e.activity.message_id = MessageId(fmt::format("m{}", offset));
  e.activity.fields_json = std::string(payload, 'x');
  return e;
}

ChunkRef MakeChunk(uint64_t begin, uint64_t end, size_t payload = 10) {
  auto c = std::make_shared<Chunk>();
  for (uint64_t o = begin; o < end; ++o) {
    c->entries.push_back(Entry(o, payload));
    c->bytes += EntryBytes(c->entries.back());
  }
  return c;
}

TEST(ChunkCacheTest, FindsTheChunkHoldingAnOffsetOfItsTenantAndPartitionOnly) {
  ChunkCache cache(1 << 20);
  engine::Tenant t1, t2;
  auto c = MakeChunk(100, 110);
  cache.Add(&t1, 0, c, 1);
  EXPECT_EQ(cache.Find(&t1, 0, 100), std::make_pair(c, size_t{0}));
  EXPECT_EQ(cache.Find(&t1, 0, 109), std::make_pair(c, size_t{9}));
  EXPECT_EQ(cache.Find(&t1, 0, 99).first, nullptr);
  EXPECT_EQ(cache.Find(&t1, 0, 110).first, nullptr);
  EXPECT_EQ(cache.Find(&t1, 1, 105).first, nullptr);
  EXPECT_EQ(cache.Find(&t2, 0, 105).first, nullptr);
  EXPECT_EQ(cache.bytes(), c->bytes);
}

TEST(ChunkCacheTest, AChunkLeavesOnceEveryOtherReaderTookIt) {
  ChunkCache cache(1 << 20);
  engine::Tenant t;
  auto c = MakeChunk(0, 10);
  cache.Add(&t, 0, c, 2);
  cache.Consumed(&t, 0, c);
  EXPECT_NE(cache.Find(&t, 0, 5).first, nullptr);
  cache.Consumed(&t, 0, c);
  EXPECT_EQ(cache.Find(&t, 0, 5).first, nullptr);
  EXPECT_EQ(cache.bytes(), 0u);
  // Nobody else reads: nothing is kept. Nor is an empty chunk.
  cache.Add(&t, 0, MakeChunk(10, 20), 0);
  cache.Add(&t, 0, MakeChunk(20, 20), 1);
  EXPECT_EQ(cache.bytes(), 0u);
}

TEST(ChunkCacheTest, StaysWithinItsBoundDroppingTheOldestFirst) {
  auto probe = MakeChunk(0, 10, 100);
  const size_t chunk_bytes = probe->bytes;
  ChunkCache cache(chunk_bytes * 3);
  engine::Tenant t;
  for (uint64_t i = 0; i < 5; ++i) cache.Add(&t, 0, MakeChunk(i * 10, i * 10 + 10, 100), 1);
  EXPECT_LE(cache.bytes(), chunk_bytes * 3);
  EXPECT_EQ(cache.Find(&t, 0, 5).first, nullptr);
  EXPECT_EQ(cache.Find(&t, 0, 15).first, nullptr);
  EXPECT_NE(cache.Find(&t, 0, 25).first, nullptr);
  EXPECT_NE(cache.Find(&t, 0, 45).first, nullptr);
  // A chunk larger than the whole bound is never kept; a bound of 0 keeps nothing.
  cache.Add(&t, 1, MakeChunk(0, 100, 100), 1);
  EXPECT_EQ(cache.Find(&t, 1, 0).first, nullptr);
  ChunkCache none(0);
  none.Add(&t, 0, MakeChunk(0, 1), 1);
  EXPECT_EQ(none.bytes(), 0u);
}

TEST(ChunkCacheTest, DroppingATenantDropsOnlyItsChunks) {
  ChunkCache cache(1 << 20);
  engine::Tenant t1, t2;
  cache.Add(&t1, 0, MakeChunk(0, 10), 1);
  cache.Add(&t1, 3, MakeChunk(0, 10), 1);
  auto kept = MakeChunk(0, 10);
  cache.Add(&t2, 0, kept, 1);
  cache.DropTenant(&t1);
  EXPECT_EQ(cache.Find(&t1, 0, 0).first, nullptr);
  EXPECT_EQ(cache.Find(&t1, 3, 0).first, nullptr);
  EXPECT_EQ(cache.Find(&t2, 0, 0).first, kept);
  EXPECT_EQ(cache.bytes(), kept->bytes);
}

}  // namespace
}  // namespace fairway::engine

namespace fairway::engine {
namespace {

// Several nodes appending to one log store a client's re-sent activity twice when the copies
// reach different nodes. With skip_repeats, no processor sees the later copy of a messageId
// received within the tenant's dedup window, before and after a restart.
TEST_F(EngineTest, ProcessingSkipsARepeatedMessageIdInEveryProcessorAndAcrossRestarts) {
  auto a = Tenant("alpha", 1, 2);
  a.quotas.dedup_window_seconds = 60;
  auto open = Tenant("open", 1, 2);
  open.quotas.dedup_window_seconds = 0;  // no window: every copy is processed
  const int64_t now = SystemClock::Default()->NowMillis();
  // Appends (messageId, lead, received_at) as stored, copies included (no append-time dedup).
  auto append = [&](const model::TenantConfig& t,
                    const std::vector<std::tuple<std::string, std::string, int64_t>>& acts) {
    log::AppendRequest req;
    req.tenant = t.id;
    req.partitions = t.partitions;
    for (const auto& [id, lead, received] : acts) {
      Activity x;
      x.type = ActivityType::kTrack;
      x.message_id = MessageId(id);
      x.user_id = lead;
      x.event = "Clicked";
      x.timestamp_ms = received;
      x.received_at_ms = received;
      req.activities.push_back(std::move(x));
    }
    std::promise<Status> done;
    log_->Append(std::move(req), [&](Result<log::AppendResult> r) { done.set_value(r.status()); });
    ASSERT_OK(done.get_future().get());
  };
  auto start = [&] {
    std::vector<std::unique_ptr<Processor>> processors;
    auto up = std::make_unique<TestProcessor>(Named("up"));
    auto down = std::make_unique<TestProcessor>(Named("down", "up"));
    std::pair<TestProcessor*, TestProcessor*> out{up.get(), down.get()};
    processors.push_back(std::move(up));
    processors.push_back(std::move(down));
    StartProcessors(std::move(processors), {a, open}, {.skip_repeats = true});
    return out;
  };
  auto ids = [](TestProcessor* p, const std::string& tenant) {
    std::multiset<std::string> out;
    for (const auto& s : p->seen()) {
      if (s.tenant == tenant) out.insert(s.message_id);
    }
    return out;
  };
  auto [up, down] = start();
  // m4's first copy is older than the window when its second copy arrives: both are processed.
  append(a, {{"m1", "u1", now},
             {"m2", "u2", now},
             {"m4", "u4", now - 120'000},
             {"m1", "u1", now + 1},
             {"m3", "u3", now}});
  append(a, {{"m2", "u2", now + 2}, {"m4", "u4", now}, {"m1", "u1", now + 3}});
  append(open, {{"m1", "u1", now}, {"m1", "u1", now + 1}});
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  const std::multiset<std::string> once{"m1", "m2", "m3", "m4", "m4"};
  EXPECT_EQ(ids(up, "alpha"), once);
  EXPECT_EQ(ids(down, "alpha"), once);
  EXPECT_EQ(ids(up, "open"), (std::multiset<std::string>{"m1", "m1"}));
  EXPECT_EQ(metrics_
                ->GetCounter("fairway_engine_repeats_skipped_total", "",
                             {{"tenant", "alpha"}, {"processor", "down"}})
                ->value(),
            3u);
  auto status = engine_->GetStatus(a.id);
  ASSERT_OK(status.status());
  for (const auto& stream : *status) EXPECT_EQ(stream.lag_events, 0u) << stream.processor;

  // After a restart, the first copies are still known.
  StopEngine();
  std::tie(up, down) = start();
  append(a, {{"m1", "u1", now + 4}, {"m5", "u5", now}});
  ASSERT_TRUE(engine_->WaitIdle(kWait));
  EXPECT_EQ(ids(up, "alpha"), (std::multiset<std::string>{"m5"}));
  EXPECT_EQ(ids(down, "alpha"), (std::multiset<std::string>{"m5"}));
}

}  // namespace
}  // namespace fairway::engine
