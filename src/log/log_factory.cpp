#include "log/log_factory.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

namespace fairway::log {

const std::vector<std::string_view>& ActivityLogBackends() {
  static const std::vector<std::string_view> backends = {kEmbeddedBackend};
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
  // The only backend so far: CheckActivityLogBackend accepted nothing else.
  auto log = std::make_unique<EmbeddedLog>(store, clock, metrics, config.embedded);
  OpenedActivityLog opened;
  opened.index = log.get();
  opened.log = std::move(log);
  return opened;
}

}  // namespace fairway::log
