#pragma once
// Fairway's configuration: one struct with in-class defaults, filled from a TOML file and then
// from environment variables. One table (config.cpp) drives parsing, overrides and the
// generated docs/config.md, so the three never disagree.

#include <cstdint>
#include <string>

#include "common/status.h"
#include "dispatch/delivery_dispatcher.h"
#include "engine/engine.h"
#include "http/server.h"
#include "log/log_factory.h"
#include "model/tenant.h"

namespace fairway::app {

struct Config {
  http::ServerOptions server;
  std::string data_dir = "./data";
  size_t block_cache_mb = 128;
  // storage::StoreOptions::reserve_bytes, in MiB.
  uint64_t reserve_mb = 128;
  int recovery_interval_ms = 1000;
  log::LogConfig log;
  engine::EngineOptions engine;
  dispatch::DeliveryDispatcherOptions dispatch;
  std::string admin_token;
  std::string metrics_token;
  size_t ingest_queue_events = 4'000;
  double shed_anonymous_at = 0.5;
  model::TenantConfig tenant_defaults;
  int retention_interval_seconds = 3600;
  // This node's name (tasks' owner in GET /admin/v1/cluster); empty: the host name.
  std::string node_id;
  // How often processing progress is committed to Kafka's consumer groups (0: never).
  int64_t kafka_progress_interval_ms = 5000;
  // A cluster of nodes on the Kafka backend (cluster/): slots, membership and changelog.
  bool cluster_enabled = false;
  uint32_t cluster_slots = 64;
  int cluster_session_timeout_ms = 6000;
  int cluster_append_poll_ms = 100;
  int cluster_layout_change_timeout_ms = 20'000;
  uint64_t cluster_snapshot_kb = 64u << 10;
  std::string cluster_advertised_url;
  // Enrichment of browsers' events (docs/web.md): the ua-parser patterns and the folder of the
  // GeoIP country databases (GeoIP.dat, GeoIPv6.dat). Empty: that part is off.
  std::string user_agent_patterns = "/usr/share/uap-core/regexes.yaml";
  std::string geoip_dir = "/usr/share/GeoIP";
};

// Reads `path` (if not empty) then the FAIRWAY_* environment. Errors name the key.
Result<Config> LoadConfig(const std::string& path);
// Parses "host:port" into the server options.
Status SetListen(const std::string& listen, Config* config);
// The Markdown reference of every key.
std::string ConfigReferenceMarkdown();

}  // namespace fairway::app
