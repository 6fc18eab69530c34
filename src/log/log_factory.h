#pragma once
// Opens the activity log backend that the configuration names. The rest of Fairway reaches the
// log only through ActivityLog and ActivityIndex, so choosing a backend is configuration, not
// code: "embedded" (the RocksDB store in the data directory) or "kafka" (a Kafka cluster, with
// the dedup window and lead index in the node's store).

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/metrics.h"
#include "common/status.h"
#include "log/activity_log.h"
#include "log/embedded_log.h"
#include "log/kafka_log.h"
#include "storage/store.h"

namespace fairway::log {

// The backend that keeps the log in Fairway's embedded store.
inline constexpr std::string_view kEmbeddedBackend = "embedded";
// The backend that keeps the log in Kafka topics.
inline constexpr std::string_view kKafkaBackend = "kafka";

struct LogConfig {
  // Which backend stores the log (config key log.backend). One of ActivityLogBackends().
  std::string backend = std::string(kEmbeddedBackend);
  // Options of the embedded backend (log.sync, log.max_commit_events, log.max_queued_events).
  EmbeddedLogOptions embedded;
  // Options of the Kafka backend (kafka.*).
  KafkaLogOptions kafka;
};

// The backend names this build can open.
const std::vector<std::string_view>& ActivityLogBackends();

// OK when `backend` names a backend this build can open; otherwise InvalidArgument naming the
// config key log.backend and the names it accepts.
Status CheckActivityLogBackend(std::string_view backend);

// A backend opened by OpenActivityLog, not yet started.
struct OpenedActivityLog {
  std::unique_ptr<ActivityLog> log;
  // The read-by-lead index over the same activities; owned by `log` and valid as long as it.
  ActivityIndex* index = nullptr;
};

// Opens the backend `config.backend` names. The embedded backend keeps its data in `store`, the
// Kafka backend its dedup window and lead index; it must be opened with
// storage::FairwayColumnFamilies() and outlive the log; `clock` and
// `metrics` must outlive it too. The log is not started: set its append listener, then Start().
// InvalidArgument naming log.backend for a backend this build cannot open.
Result<OpenedActivityLog> OpenActivityLog(const LogConfig& config, storage::Store* store,
                                          const Clock* clock, MetricsRegistry* metrics);

}  // namespace fairway::log
