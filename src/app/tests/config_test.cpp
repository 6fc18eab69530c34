#include "app/config.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

namespace fairway::app {
namespace {

using ::fairway::testing::StatusIs;
using ::fairway::testing::TempDir;
using ::testing::HasSubstr;

TEST(ConfigTest, DefaultsFileThenEnvironment) {
  TempDir dir;
  std::string path = dir.Sub("fairway.toml");
  std::ofstream(path) << "[server]\nlisten = \"0.0.0.0:9000\"\nio_threads = 3\n"
                         "[log]\nsync = true\n[tenants]\ningest_rate = 42\n";
  ::setenv("FAIRWAY_IO_THREADS", "4", 1);
  auto c = LoadConfig(path);
  ::unsetenv("FAIRWAY_IO_THREADS");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->server.host, "0.0.0.0");
  EXPECT_EQ(c->server.port, 9000);
  EXPECT_EQ(c->server.io_threads, 4);  // environment wins
  EXPECT_EQ(c->tenant_defaults.quotas.ingest_rate, 42);
  EXPECT_EQ(c->data_dir, "./data");
  EXPECT_TRUE(c->log.embedded.sync);
}

TEST(ConfigTest, ErrorsNameTheKey) {
  TempDir dir;
  std::string path = dir.Sub("bad.toml");
  std::ofstream(path) << "[server]\nio_threads = \"many\"\n";
  auto c = LoadConfig(path);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("server.io_threads"), std::string::npos);
  std::ofstream(path) << "[server]\nlisen = \"x\"\n";
  c = LoadConfig(path);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("server.lisen"), std::string::npos);
  Config cfg;
  EXPECT_FALSE(SetListen("nohostport", &cfg).ok());
  EXPECT_FALSE(SetListen("127.0.0.1:99999", &cfg).ok());
}

TEST(ConfigTest, AllowNetworksIsEmptyByDefaultAndParsedFromFileOrEnvironment) {
  TempDir dir;
  std::string path = dir.Sub("fairway.toml");
  std::ofstream(path) << "[server]\nio_threads = 2\n";
  auto c = LoadConfig(path);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->dispatch.allow_networks.empty());
  std::ofstream(path) << "[dispatch]\nallow_networks = \"10.1.0.0/16, ::1/128\"\n";
  c = LoadConfig(path);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_EQ(c->dispatch.allow_networks.size(), 2u);
  EXPECT_EQ(dispatch::NetworkText(c->dispatch.allow_networks[0]), "10.1.0.0/16");
  EXPECT_EQ(dispatch::NetworkText(c->dispatch.allow_networks[1]), "::1/128");
  ::setenv("FAIRWAY_DISPATCH_ALLOW_NETWORKS", "127.0.0.0/33", 1);
  c = LoadConfig(path);
  ::unsetenv("FAIRWAY_DISPATCH_ALLOW_NETWORKS");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("dispatch.allow_networks"), std::string::npos)
      << c.status().message();
}

TEST(ConfigTest, ServerLimitsAreReadAndZeroIsRejected) {
  TempDir dir;
  std::string path = dir.Sub("limits.toml");
  std::ofstream(path) << "[server]\nmax_connections = 500\nmax_buffered_bytes = 1048576\n"
                         "read_timeout_seconds = 1\nmetrics_token = \"m\"\n"
                         "ingest_queue_events = 100\n";
  auto c = LoadConfig(path);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->server.max_connections, 500);
  EXPECT_EQ(c->server.max_buffered_bytes, 1048576u);
  EXPECT_EQ(c->server.read_timeout_seconds, 1);
  EXPECT_EQ(c->metrics_token, "m");
  EXPECT_EQ(c->ingest_queue_events, 100u);
  for (const char* bad :
       {"read_timeout_seconds = 0", "idle_timeout_seconds = 0", "max_connections = 0",
        "max_buffered_bytes = 1000", "ingest_queue_events = 0", "max_connections = -5",
        "read_timeout_seconds = \"soon\""}) {
    std::ofstream(path) << "[server]\n" << bad << "\n";
    auto r = LoadConfig(path);
    ASSERT_FALSE(r.ok()) << bad;
    std::string key = std::string(bad).substr(0, std::string(bad).find(' '));
    EXPECT_NE(r.status().message().find("server." + key), std::string::npos)
        << r.status().message();
  }
}

// The watchdog's stall timeout: the default, 0 (off), the largest value, and what is refused.
TEST(ConfigTest, StallTimeoutIsReadWithZeroMeaningOff) {
  TempDir dir;
  std::string path = dir.Sub("engine.toml");
  std::ofstream(path) << "[engine]\nthreads = 2\n";
  auto c = LoadConfig(path);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->engine.stall_timeout, std::chrono::seconds(60));
  for (auto [text, seconds] : {std::pair{"0", 0}, std::pair{"1", 1}, std::pair{"86400", 86'400}}) {
    std::ofstream(path) << "[engine]\nstall_timeout_seconds = " << text << "\n";
    c = LoadConfig(path);
    ASSERT_TRUE(c.ok()) << text << ": " << c.status().ToString();
    EXPECT_EQ(c->engine.stall_timeout, std::chrono::seconds(seconds)) << text;
  }
  for (const char* bad : {"-1", "86401", "\"soon\"", "1.5"}) {
    std::ofstream(path) << "[engine]\nstall_timeout_seconds = " << bad << "\n";
    c = LoadConfig(path);
    ASSERT_FALSE(c.ok()) << bad;
    EXPECT_NE(c.status().message().find("engine.stall_timeout_seconds"), std::string::npos)
        << c.status().message();
  }
}

// The log's tail cache: 64 MiB by default, 0 turns it off, sizes past 1 TiB and non-numbers are
// refused with the key named.
TEST(ConfigTest, TailCacheSizeIsReadWithZeroMeaningOff) {
  TempDir dir;
  std::string path = dir.Sub("tail.toml");
  std::ofstream(path) << "[log]\nsync = true\n";
  auto c = LoadConfig(path);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->log.embedded.tail_cache_bytes, size_t{64} << 20);
  for (auto [text, mb] : {std::pair{"0", 0}, std::pair{"1", 1}, std::pair{"1048576", 1 << 20}}) {
    std::ofstream(path) << "[log]\ntail_cache_mb = " << text << "\n";
    c = LoadConfig(path);
    ASSERT_TRUE(c.ok()) << text << ": " << c.status().ToString();
    EXPECT_EQ(c->log.embedded.tail_cache_bytes, size_t(mb) << 20) << text;
  }
  for (const char* bad : {"-1", "1048577", "\"big\"", "0.5"}) {
    std::ofstream(path) << "[log]\ntail_cache_mb = " << bad << "\n";
    c = LoadConfig(path);
    ASSERT_FALSE(c.ok()) << bad;
    EXPECT_THAT(c.status(), StatusIs(StatusCode::kInvalidArgument, HasSubstr("log.tail_cache_mb")));
  }
}

// The activity log's backend: embedded by default; a name this build cannot open is refused,
// from the file or the environment, with the key named.
TEST(ConfigTest, LogBackendIsEmbeddedByDefaultAndUnknownNamesAreRefused) {
  TempDir dir;
  std::string path = dir.Sub("log.toml");
  std::ofstream(path) << "[log]\nsync = true\n";
  ASSERT_OK_AND_ASSIGN(Config c, LoadConfig(path));
  EXPECT_EQ(c.log.backend, "embedded");
  std::ofstream(path) << "[log]\nbackend = \"embedded\"\n";
  ASSERT_OK_AND_ASSIGN(c, LoadConfig(path));
  EXPECT_EQ(c.log.backend, "embedded");
  std::ofstream(path) << "[log]\nbackend = \"kafka-typo\"\n";
  EXPECT_THAT(LoadConfig(path), StatusIs(StatusCode::kInvalidArgument, HasSubstr("log.backend")));
  std::ofstream(path) << "[log]\nsync = true\n";
  ::setenv("FAIRWAY_LOG_BACKEND", "rocks", 1);
  auto from_env = LoadConfig(path);
  ::unsetenv("FAIRWAY_LOG_BACKEND");
  EXPECT_THAT(from_env, StatusIs(StatusCode::kInvalidArgument, HasSubstr("'rocks'")));
}

TEST(ConfigTest, KafkaSettingsAreReadAndTheBackendNeedsBrokers) {
  TempDir dir;
  std::string path = dir.Sub("kafka.toml");
  std::ofstream(path) << "[log]\nbackend = \"kafka\"\n";
  EXPECT_THAT(LoadConfig(path),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("'kafka.brokers' is required")));
  std::ofstream(path) << "[log]\nbackend = \"kafka\"\nmax_queued_events = 2000\n"
                      << "[kafka]\nbrokers = \"k1:9092,k2:9092\"\ntopic_prefix = \"acme-prod.\"\n"
                      << "properties = \"security.protocol=SASL_SSL; sasl.mechanism=PLAIN;;"
                      << "ssl.cipher.suites=A,B=C\"\ncreate_topics = false\n"
                      << "replication_factor = 3\ndelivery_timeout_ms = 100\n"
                      << "progress_interval_ms = 100\n";
  ASSERT_OK_AND_ASSIGN(Config c, LoadConfig(path));
  EXPECT_EQ(c.log.backend, "kafka");
  EXPECT_EQ(c.log.kafka.brokers, "k1:9092,k2:9092");
  EXPECT_EQ(c.log.kafka.topic_prefix, "acme-prod.");
  using Pairs = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(c.log.kafka.client_properties, (Pairs{{"security.protocol", "SASL_SSL"},
                                                  {"sasl.mechanism", "PLAIN"},
                                                  {"ssl.cipher.suites", "A,B=C"}}));
  EXPECT_FALSE(c.log.kafka.create_topics);
  EXPECT_EQ(c.log.kafka.replication_factor, 3);
  EXPECT_EQ(c.log.kafka.delivery_timeout_ms, 100);
  EXPECT_EQ(c.log.kafka.max_queued_events, 2000u);
  EXPECT_EQ(c.kafka_progress_interval_ms, 100);
  std::ofstream(path) << "[kafka]\nbrokers = \"k:1\"\nprogress_interval_ms = 0\n";
  ASSERT_OK_AND_ASSIGN(Config never, LoadConfig(path));
  EXPECT_EQ(never.kafka_progress_interval_ms, 0);

  for (const auto& [line, key] : std::vector<std::pair<std::string, std::string>>{
           {"topic_prefix = \"a/b\"", "kafka.topic_prefix"},
           {"properties = \"acks\"", "kafka.properties"},
           {"properties = \"=1\"", "kafka.properties"},
           {"create_topics = \"maybe\"", "kafka.create_topics"},
           {"replication_factor = 0", "kafka.replication_factor"},
           {"replication_factor = -2", "kafka.replication_factor"},
           {"delivery_timeout_ms = 99", "kafka.delivery_timeout_ms"},
           {"delivery_timeout_ms = 3600001", "kafka.delivery_timeout_ms"},
           {"progress_interval_ms = 1", "kafka.progress_interval_ms"},
           {"progress_interval_ms = 99", "kafka.progress_interval_ms"},
           {"progress_interval_ms = -1", "kafka.progress_interval_ms"},
           {"progress_interval_ms = 3600001", "kafka.progress_interval_ms"},
           {"progress_interval_ms = \"soon\"", "kafka.progress_interval_ms"}}) {
    std::ofstream(path) << "[kafka]\nbrokers = \"k:1\"\n" << line << "\n";
    EXPECT_THAT(LoadConfig(path), StatusIs(StatusCode::kInvalidArgument, HasSubstr(key))) << line;
  }
}

TEST(ConfigTest, TheNodeIdIsANameOrEmpty) {
  TempDir dir;
  std::string path = dir.Sub("node.toml");
  std::ofstream(path) << "[cluster]\nnode_id = \"fw-eu.1\"\n";
  ASSERT_OK_AND_ASSIGN(Config c, LoadConfig(path));
  EXPECT_EQ(c.node_id, "fw-eu.1");
  std::ofstream(path) << "[server]\nlisten = \"127.0.0.1:0\"\n";
  ASSERT_OK_AND_ASSIGN(Config unset, LoadConfig(path));
  EXPECT_EQ(unset.node_id, "");
  for (const std::string& bad : std::vector<std::string>{"a/b", "a b", std::string(65, 'n')}) {
    std::ofstream(path) << "[cluster]\nnode_id = \"" << bad << "\"\n";
    EXPECT_THAT(LoadConfig(path),
                StatusIs(StatusCode::kInvalidArgument, HasSubstr("cluster.node_id")))
        << bad;
  }
}

TEST(ConfigTest, ClusterSettingsAreReadAtTheirLimitsAndNeedTheKafkaBackend) {
  TempDir dir;
  std::string path = dir.Sub("cluster.toml");
  const std::string kafka = "[log]\nbackend = \"kafka\"\n[kafka]\nbrokers = \"k:1\"\n";
  ASSERT_OK_AND_ASSIGN(Config defaults, LoadConfig(""));
  EXPECT_FALSE(defaults.cluster_enabled);
  EXPECT_EQ(defaults.cluster_slots, 64u);
  EXPECT_EQ(defaults.cluster_session_timeout_ms, 6000);
  EXPECT_EQ(defaults.cluster_append_poll_ms, 100);
  EXPECT_EQ(defaults.cluster_layout_change_timeout_ms, 20'000);
  EXPECT_EQ(defaults.cluster_snapshot_kb, 65'536u);
  std::ofstream(path) << kafka
                      << "[cluster]\nenabled = true\nslots = 1\nsession_timeout_ms = 1000\n"
                         "append_poll_ms = 10\nlayout_change_timeout_ms = 100\nadvertised_url = "
                         "\"http://10.0.0.5:8080//\"\nsnapshot_kb = 0\n";
  ASSERT_OK_AND_ASSIGN(Config low, LoadConfig(path));
  EXPECT_TRUE(low.cluster_enabled);
  EXPECT_EQ(low.cluster_slots, 1u);
  EXPECT_EQ(low.cluster_session_timeout_ms, 1000);
  EXPECT_EQ(low.cluster_append_poll_ms, 10);
  EXPECT_EQ(low.cluster_layout_change_timeout_ms, 100);
  EXPECT_EQ(low.cluster_advertised_url, "http://10.0.0.5:8080");
  EXPECT_EQ(low.cluster_snapshot_kb, 0u);
  std::ofstream(path) << kafka
                      << "[cluster]\nslots = 4096\nsession_timeout_ms = 3600000\n"
                         "append_poll_ms = 10000\nlayout_change_timeout_ms = 600000\n"
                         "snapshot_kb = 1073741824\n";
  ASSERT_OK_AND_ASSIGN(Config high, LoadConfig(path));
  EXPECT_EQ(high.cluster_slots, 4096u);
  EXPECT_EQ(high.cluster_session_timeout_ms, 3'600'000);
  EXPECT_EQ(high.cluster_append_poll_ms, 10'000);
  EXPECT_EQ(high.cluster_layout_change_timeout_ms, 600'000);
  EXPECT_EQ(high.cluster_snapshot_kb, uint64_t{1} << 30);
  for (const auto& [line, key] : std::vector<std::pair<std::string, std::string>>{
           {"slots = 0", "cluster.slots"},
           {"slots = 4097", "cluster.slots"},
           {"slots = \"many\"", "cluster.slots"},
           {"session_timeout_ms = 999", "cluster.session_timeout_ms"},
           {"session_timeout_ms = 3600001", "cluster.session_timeout_ms"},
           {"append_poll_ms = 0", "cluster.append_poll_ms"},
           {"append_poll_ms = 9", "cluster.append_poll_ms"},
           {"append_poll_ms = 10001", "cluster.append_poll_ms"},
           {"layout_change_timeout_ms = 0", "cluster.layout_change_timeout_ms"},
           {"layout_change_timeout_ms = 99", "cluster.layout_change_timeout_ms"},
           {"layout_change_timeout_ms = 600001", "cluster.layout_change_timeout_ms"},
           {"layout_change_timeout_ms = -5", "cluster.layout_change_timeout_ms"},
           {"snapshot_kb = -1", "cluster.snapshot_kb"},
           {"snapshot_kb = 1073741825", "cluster.snapshot_kb"},
           {"snapshot_kb = \"big\"", "cluster.snapshot_kb"},
           {"advertised_url = \"10.0.0.5:8080\"", "cluster.advertised_url"},
           {"enabled = \"yes\"", "cluster.enabled"}}) {
    std::ofstream(path) << kafka << "[cluster]\n" << line << "\n";
    EXPECT_THAT(LoadConfig(path), StatusIs(StatusCode::kInvalidArgument, HasSubstr(key))) << line;
  }
  // A cluster shares its tenants and state through Kafka: the embedded log cannot.
  std::ofstream(path) << "[cluster]\nenabled = true\n";
  EXPECT_THAT(LoadConfig(path),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("cluster.enabled")));
}

TEST(ConfigTest, ReferenceListsEveryKey) {
  std::string md = ConfigReferenceMarkdown();
  for (const char* key :
       {"server.listen", "log.backend", "log.sync", "admin.token", "FAIRWAY_DATA_DIR"}) {
    EXPECT_NE(md.find(key), std::string::npos) << key;
  }
}

}  // namespace
}  // namespace fairway::app
