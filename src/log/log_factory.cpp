#include "log/log_factory.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

namespace fairway::log {

const std::vector<std::string_view>& ActivityLogBackends() {
  static const std::vector<std::string_view> backends = {kEmbeddedBackend, kKafkaBackend};
  return backends;
}

Status CheckActivityLogBackend(std::string_view backend) {
  const auto& known = ActivityLogBackends();
  if (std::find(known.begin(), known.end(), backend) != known.end()) return Status::Ok();
  return InvalidArgument(fmt::format("config key 'log.backend' must be one of: {}; not '{}'",
                                     fmt::join(known, ", "), backend));
}

Result<OpenedActivityLog> OpenActivityLog(const LogConfig& config, storage::Store* store,
                                          const Clock* clock, MetricsRegistry* metrics) {
  FAIRWAY_RETURN_IF_ERROR(CheckActivityLogBackend(config.backend));
  OpenedActivityLog opened;
  if (config.backend == kKafkaBackend) {
    FAIRWAY_ASSIGN_OR_RETURN(auto kafka, KafkaLog::Open(config.kafka, store, clock, metrics));
    opened.index = kafka.get();
    opened.log = std::move(kafka);
    return opened;
  }
  auto log = std::make_unique<EmbeddedLog>(store, clock, metrics, config.embedded);
  opened.index = log.get();
  opened.log = std::move(log);
  return opened;
}

}  // namespace fairway::log
