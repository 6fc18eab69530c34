#include "sessions/session_sweeper.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <future>

#include "common/coding.h"
#include "engine/processor.h"
#include "model/generated_activities.h"
#include "sessions/session_state.h"
#include "storage/schema.h"

namespace fairway::sessions {

SessionSweeper::SessionSweeper(storage::Store* store, log::ActivityLog* log, const Clock* clock,
                               SessionSweeperOptions options)
    : store_(store), log_(log), clock_(clock), options_(options) {}

Result<size_t> SessionSweeper::Sweep(const std::vector<model::TenantConfig>& tenants,
                                     const std::function<bool(const TenantId&)>& owns) {
  std::lock_guard lock(mu_);
  const int64_t now = clock_->NowMillis();
  size_t total = 0;
  Status first;
  for (const auto& t : tenants) {
    if (t.status == model::TenantStatus::kDeleting || (owns && !owns(t.id))) {
      released_.erase(t.id.str());
      continue;
    }
    auto n = SweepTenant(t, now);
    if (n.ok()) {
      total += *n;
    } else if (first.ok()) {
      first = n.status();
    }
  }
  if (!first.ok()) return first;
  return total;
}

Result<size_t> SessionSweeper::SweepTenant(const model::TenantConfig& tenant, int64_t now_ms) {
  const std::string state = engine::StateKeyPrefix(tenant.id, "sessions");
  const std::string lower = state + std::string(kDuePrefix);
  std::string upper = lower;
  PutFixed64BE(&upper, OrderedTime(now_ms) + 1);
  std::set<std::string>& released = released_[tenant.id.str()];
  std::set<std::string> still;  // released rows still present
  log::AppendRequest req = log::AppendRequestFor(tenant);
  req.dedup_window_ms = std::max(req.dedup_window_ms, log::kGeneratedDedupWindowMs);
  std::vector<std::string> keys;
  auto it = store_->NewIterator(storage::kEngineState, lower, upper);
  // Rows released before and not yet consumed are passed over, a bounded number of them: a
  // processor far behind does not make every sweep walk its whole backlog.
  size_t seen = 0;
  for (it->Seek(lower); it->Valid() && keys.size() < options_.chunk && seen < 10 * options_.chunk;
       it->Next(), ++seen) {
    std::string key(it->key());
    if (released.contains(key)) {
      still.insert(std::move(key));
      continue;
    }
    auto row = DecodeDueKey(std::string_view(key).substr(state.size()));
    if (!row.ok()) {
      spdlog::error("sessions: skipping a corrupt due row of {}: {}", tenant.id.str(),
                    row.status().ToString());
      continue;
    }
    model::Activity a;
    a.type = model::ActivityType::kFairway;
    a.event = model::SessionTimeout::kEvent;
    std::string session_id(it->value());
    a.message_id = MessageId(fmt::format("fw:session_timeout:{}:{}", session_id, row->due_ms));
    (row->kind == 'u' ? a.user_id : a.anonymous_id) = row->lead;
    a.timestamp_ms = now_ms;
    a.received_at_ms = now_ms;
    a.fields_json = "\"properties\":{";
    model::SessionTimeout{.session_id = session_id, .due_ms = row->due_ms}.AppendProperties(
        &a.fields_json);
    a.fields_json.push_back('}');
    req.activities.push_back(std::move(a));
    keys.push_back(std::move(key));
  }
  FAIRWAY_RETURN_IF_ERROR(it->status());
  // Released rows past where the scan stopped are still released.
  if (it->Valid()) {
    for (auto r = released.lower_bound(std::string(it->key())); r != released.end(); ++r) {
      still.insert(*r);
    }
  }
  released = std::move(still);
  if (req.activities.empty()) return size_t{0};
  std::promise<Status> appended;
  auto future = appended.get_future();
  log_->Append(std::move(req),
               [&appended](Result<log::AppendResult> r) { appended.set_value(r.status()); });
  FAIRWAY_RETURN_IF_ERROR(future.get());
  for (auto& k : keys) released.insert(std::move(k));
  return keys.size();
}

}  // namespace fairway::sessions
