#include "campaigns/timer_service.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <future>

#include "campaigns/campaign_processor.h"
#include "campaigns/campaign_state.h"
#include "common/coding.h"
#include "model/generated_activities.h"
#include "storage/schema.h"

namespace fairway::campaigns {

TimerService::TimerService(
    storage::Store* store, log::ActivityLog* log, const Clock* clock,
    std::function<std::optional<model::TenantConfig>(const TenantId&)> tenant_config,
    TimerServiceOptions options)
    : store_(store),
      log_(log),
      clock_(clock),
      tenant_config_(std::move(tenant_config)),
      options_(options) {}

TimerService::~TimerService() { Stop(); }

Status TimerService::Start() {
  // Every tenant with timers: skip from one tenant's first row to the next tenant.
  auto it = store_->NewIterator(storage::kTimers);
  for (it->SeekToFirst(); it->Valid();) {
    std::string_view key = it->key();
    size_t zero = key.find('\0');
    if (zero == std::string_view::npos || key.size() < zero + 9) {
      it->Next();
      continue;
    }
    std::string tenant(key.substr(0, zero));
    int64_t due = static_cast<int64_t>(DecodeFixed64BE(key.data() + zero + 1));
    if (!owns_ || owns_(TenantId(tenant))) {
      std::lock_guard lock(mu_);
      next_due_[tenant] = due;
    }
    it->Seek(tenant + '\1');
  }
  FAIRWAY_RETURN_IF_ERROR(it->status());
  std::lock_guard lock(mu_);
  stopping_ = false;
  thread_ = std::thread([this] { Run(); });
  return Status::Ok();
}

void TimerService::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void TimerService::Notify(const TenantId& tenant, int64_t due_ms) {
  if (owns_ && !owns_(tenant)) return;
  {
    std::lock_guard lock(mu_);
    auto [it, inserted] = next_due_.try_emplace(tenant.str(), due_ms);
    if (!inserted) it->second = std::min(it->second, due_ms);
  }
  cv_.notify_all();
}

Status TimerService::RemoveTenant(const TenantId& tenant) {
  std::unique_lock lock(mu_);
  // Not while a chunk of this tenant is being released; the service skips it from now on.
  next_due_.erase(tenant.str());
  idle_cv_.wait(lock, [&] { return releasing_ != tenant.str(); });
  storage::WriteBatch batch;
  batch.DeleteRange(storage::kTimers, TimerTenantPrefix(tenant), TimerTenantEnd(tenant));
  return store_->Write(batch, /*sync=*/true);
}

void TimerService::SetOwnership(std::function<bool(const TenantId&)> owns) {
  owns_ = std::move(owns);
}

void TimerService::ReleaseTenant(const TenantId& tenant) {
  std::unique_lock lock(mu_);
  next_due_.erase(tenant.str());
  idle_cv_.wait(lock, [&] { return releasing_ != tenant.str(); });
}

Status TimerService::TakeTenant(const TenantId& tenant) {
  std::string prefix = TimerTenantPrefix(tenant);
  auto it = store_->NewIterator(storage::kTimers, prefix, TimerTenantEnd(tenant));
  it->Seek(prefix);
  FAIRWAY_RETURN_IF_ERROR(it->status());
  if (!it->Valid() || it->key().size() < prefix.size() + 8) return Status::Ok();
  Notify(tenant, static_cast<int64_t>(DecodeFixed64BE(it->key().data() + prefix.size())));
  return Status::Ok();
}

uint64_t TimerService::released() const {
  std::lock_guard lock(mu_);
  return released_;
}

bool TimerService::WaitIdle(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return idle_cv_.wait_for(lock, timeout, [&] {
    if (busy_) return false;
    int64_t now = clock_->NowMillis();
    for (const auto& [t, due] : next_due_) {
      if (due <= now) return false;
    }
    return true;
  });
}

int64_t TimerService::ReleaseChunk(const std::string& tenant_str, int64_t now_ms) {
  TenantId tenant(tenant_str);
  auto config = tenant_config_(tenant);
  if (!config) return now_ms + 1000;  // not (yet) known: look again later
  std::string lower = TimerTenantPrefix(tenant);
  std::string upper = lower;
  PutFixed64BE(&upper, static_cast<uint64_t>(now_ms) + 1);
  log::AppendRequest req = log::AppendRequestFor(*config);
  req.dedup_window_ms = std::max(req.dedup_window_ms, log::kGeneratedDedupWindowMs);
  std::vector<std::string> keys;
  {
    auto it = store_->NewIterator(storage::kTimers, lower, upper);
    for (it->Seek(lower); it->Valid() && keys.size() < options_.chunk; it->Next()) {
      auto t = DecodeTimer(it->key(), it->value());
      keys.emplace_back(it->key());
      if (!t.ok()) {
        spdlog::error("campaigns: dropping a corrupt timer of {}: {}", tenant_str,
                      t.status().ToString());
        continue;
      }
      model::Activity a;
      a.type = model::ActivityType::kFairway;
      a.event = model::CampaignWaitElapsed::kEvent;
      a.message_id = MessageId(WaitElapsedMessageId(t->campaign, t->run_id, t->step));
      a.user_id = t->user_id;
      a.anonymous_id = t->anonymous_id;
      a.timestamp_ms = now_ms;
      a.received_at_ms = now_ms;
      std::string f = "\"properties\":{";
      model::CampaignWaitElapsed{
          .campaign = t->campaign, .run = t->run_id, .step = t->step, .due_ms = t->due_ms}
          .AppendProperties(&f);
      f.push_back('}');
      a.fields_json = std::move(f);
      req.activities.push_back(std::move(a));
    }
    if (!it->status().ok()) {
      spdlog::warn("campaigns: reading timers of {}: {}", tenant_str, it->status().ToString());
      return now_ms + 1000;
    }
  }
  const size_t count = req.activities.size();
  if (count > 0) {
    std::promise<Status> appended;
    auto future = appended.get_future();
    log_->Append(std::move(req),
                 [&appended](Result<log::AppendResult> r) { appended.set_value(r.status()); });
    Status st = future.get();
    if (!st.ok()) {
      spdlog::warn("campaigns: releasing timers of {}: {}", tenant_str, st.ToString());
      return now_ms + 1000;
    }
  }
  if (!keys.empty()) {
    storage::WriteBatch batch;
    for (const auto& k : keys) batch.Delete(storage::kTimers, k);
    // Unsynced: a lost delete re-appends activities that the log's dedup drops.
    if (Status st = store_->Write(batch, /*sync=*/false); !st.ok()) {
      spdlog::warn("campaigns: deleting released timers of {}: {}", tenant_str, st.ToString());
    }
    std::lock_guard lock(mu_);
    released_ += count;
  }
  // The next row decides when to look again.
  auto it = store_->NewIterator(storage::kTimers, lower, TimerTenantEnd(tenant));
  it->Seek(lower);
  if (!it->Valid()) return INT64_MAX;
  return static_cast<int64_t>(DecodeFixed64BE(it->key().data() + lower.size()));
}

void TimerService::Run() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    const int64_t now = clock_->NowMillis();
    std::vector<std::string> due;
    int64_t earliest = INT64_MAX;
    for (const auto& [tenant, at] : next_due_) {
      if (at <= now) {
        due.push_back(tenant);
      } else {
        earliest = std::min(earliest, at);
      }
    }
    if (due.empty()) {
      idle_cv_.notify_all();
      // Bounded waits, so a test clock that jumps is noticed.
      int64_t wait_ms = earliest == INT64_MAX ? 50 : std::clamp<int64_t>(earliest - now, 1, 50);
      cv_.wait_for(lock, std::chrono::milliseconds(wait_ms));
      continue;
    }
    // One chunk per due tenant per round.
    busy_ = true;
    for (const auto& tenant : due) {
      auto due_it = next_due_.find(tenant);
      if (due_it == next_due_.end()) continue;  // removed meanwhile
      due_it->second = INT64_MAX;               // a Notify during the release lowers it again
      releasing_ = tenant;
      lock.unlock();
      int64_t next = ReleaseChunk(tenant, now);
      lock.lock();
      releasing_.clear();
      idle_cv_.notify_all();
      if (auto it = next_due_.find(tenant); it != next_due_.end()) {
        it->second = std::min(it->second, next);
        if (it->second == INT64_MAX) next_due_.erase(it);
      }
      if (stopping_) break;
    }
    busy_ = false;
    idle_cv_.notify_all();
  }
}

}  // namespace fairway::campaigns
