#include "app/config.h"

#include <fmt/format.h>
#include <toml++/toml.h>

#include <charconv>
#include <cstdlib>
#include <functional>
#include <vector>

namespace fairway::app {

namespace {

struct Key {
  const char* name;  // dotted TOML path
  const char* env;
  const char* default_text;
  const char* meaning;
  std::function<Status(const std::string&, Config*)> set;
};

template <typename T>
Status ParseNumber(const std::string& key, const std::string& v, T min, T max, T* out) {
  T value{};
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), value);
  if (ec != std::errc() || p != v.data() + v.size() || value < min || value > max) {
    return InvalidArgument(
        fmt::format("config key '{}' must be a number from {} to {}, not '{}'", key, min, max, v));
  }
  *out = value;
  return Status::Ok();
}

// A size given in units of 2^shift bytes (KiB: 10, MiB: 20), between min and max units, in bytes.
Status ParseSize(const std::string& key, const std::string& v, int shift, size_t min, size_t max,
                 size_t* bytes) {
  size_t units = 0;
  FAIRWAY_RETURN_IF_ERROR(ParseNumber<size_t>(key, v, min, max, &units));
  *bytes = units << shift;
  return Status::Ok();
}

Status ParseBool(const std::string& key, const std::string& v, bool* out) {
  if (v == "true" || v == "1") {
    *out = true;
  } else if (v == "false" || v == "0") {
    *out = false;
  } else {
    return InvalidArgument(fmt::format("config key '{}' must be true or false, not '{}'", key, v));
  }
  return Status::Ok();
}

const std::vector<Key>& Keys() {
  static const std::vector<Key> keys = {
      {"server.listen", "FAIRWAY_LISTEN", "127.0.0.1:8080",
       "Address and port the HTTP server listens on. Port 0 picks a free port.",
       [](const std::string& v, Config* c) { return SetListen(v, c); }},
      {"server.io_threads", "FAIRWAY_IO_THREADS", "2",
       "Threads serving HTTP (parsing, validation). More than the cores only adds switching.",
       [](const std::string& v, Config* c) {
         return ParseNumber("server.io_threads", v, 1, 64, &c->server.io_threads);
       }},
      {"server.max_body_bytes", "FAIRWAY_MAX_BODY_BYTES", "512000",
       "Largest request body; larger requests get 413. Segment's limit is 500 KB.",
       [](const std::string& v, Config* c) {
         return ParseNumber<size_t>("server.max_body_bytes", v, 1024, 64u << 20,
                                    &c->server.max_body_bytes);
       }},
      {"server.read_timeout_seconds", "FAIRWAY_READ_TIMEOUT_SECONDS", "30",
       "From its first byte, a request's header and body must arrive within this time, or "
       "the client gets 408 and the connection closes (slow or short-bodied clients).",
       [](const std::string& v, Config* c) {
         return ParseNumber("server.read_timeout_seconds", v, 1, 3600,
                            &c->server.read_timeout_seconds);
       }},
      {"server.idle_timeout_seconds", "FAIRWAY_IDLE_TIMEOUT_SECONDS", "60",
       "Idle keep-alive connections are closed after this time.",
       [](const std::string& v, Config* c) {
         return ParseNumber("server.idle_timeout_seconds", v, 1, 3600,
                            &c->server.idle_timeout_seconds);
       }},
      {"server.max_connections", "FAIRWAY_MAX_CONNECTIONS", "10000",
       "Most client connections open at once; past it a connection gets 503 with Retry-After "
       "and is closed. Lowered at start to leave a quarter of the file descriptor limit "
       "(RLIMIT_NOFILE, raised to its hard limit) to the store.",
       [](const std::string& v, Config* c) {
         return ParseNumber("server.max_connections", v, 1, 1'000'000, &c->server.max_connections);
       }},
      {"server.max_buffered_bytes", "FAIRWAY_MAX_BUFFERED_BYTES", "268435456",
       "Request bytes all connections together may hold in memory; a request whose "
       "Content-Length would exceed it gets 503 with Retry-After before its body is read.",
       [](const std::string& v, Config* c) {
         return ParseNumber<size_t>("server.max_buffered_bytes", v, 1u << 20, size_t{1} << 40,
                                    &c->server.max_buffered_bytes);
       }},
      {"server.ingest_queue_events", "FAIRWAY_INGEST_QUEUE_EVENTS", "4000",
       "Events accepted by ingest and not yet durable that tenants share by "
       "quotas.processing_weight: a tenant holding its share gets 429 with Retry-After (before "
       "its body is read). Small keeps a flood from queueing ahead of other tenants (each waits "
       "behind at most this many events); at most half of log.max_queued_events is used.",
       [](const std::string& v, Config* c) {
         return ParseNumber<size_t>("server.ingest_queue_events", v, 100, 50'000'000,
                                    &c->ingest_queue_events);
       }},
      {"server.shed_anonymous_at", "FAIRWAY_SHED_ANONYMOUS_AT", "0.5",
       "Brownout: anonymous web traffic (track, page and screen events without a userId) gets "
       "503 with Retry-After once the events waiting for disk reach this fraction of the point "
       "where every request waits (twice server.ingest_queue_events); known leads' events, "
       "identifies and aliases go on. 1: never before everyone; 0: always. 0 to 1.",
       [](const std::string& v, Config* c) {
         return ParseNumber<double>("server.shed_anonymous_at", v, 0, 1, &c->shed_anonymous_at);
       }},
      {"server.tls_cert_file", "FAIRWAY_TLS_CERT_FILE", "(none)",
       "PEM certificate chain: with server.tls_key_file, the listener speaks TLS (1.2 and "
       "later) only. Without them it speaks plain HTTP and warns when not on loopback.",
       [](const std::string& v, Config* c) {
         c->server.tls_cert_file = v;
         return Status::Ok();
       }},
      {"server.tls_key_file", "FAIRWAY_TLS_KEY_FILE", "(none)",
       "PEM private key of server.tls_cert_file.",
       [](const std::string& v, Config* c) {
         c->server.tls_key_file = v;
         return Status::Ok();
       }},
      {"server.trust_forwarded_for", "FAIRWAY_TRUST_FORWARDED_FOR", "false",
       "Take the client's address from the first X-Forwarded-For entry (set by a proxy or load "
       "balancer in front) instead of the connection's peer. Only behind a proxy that sets it: "
       "otherwise clients choose their address.",
       [](const std::string& v, Config* c) {
         return ParseBool("server.trust_forwarded_for", v, &c->server.trust_forwarded_for);
       }},
      {"enrich.user_agent_patterns", "FAIRWAY_ENRICH_USER_AGENT_PATTERNS",
       "/usr/share/uap-core/regexes.yaml",
       "The ua-parser patterns (Debian's uap-core) that name browsers' operating systems, "
       "devices and browsers (docs/web.md); empty turns that part of enrichment off.",
       [](const std::string& v, Config* c) {
         c->user_agent_patterns = v;
         return Status::Ok();
       }},
      {"enrich.geoip_dir", "FAIRWAY_ENRICH_GEOIP_DIR", "/usr/share/GeoIP",
       "Folder of the GeoIP country databases GeoIP.dat and GeoIPv6.dat (Debian's "
       "geoip-database) that give browsers' events their country; empty turns it off.",
       [](const std::string& v, Config* c) {
         c->geoip_dir = v;
         return Status::Ok();
       }},
      {"server.metrics_token", "FAIRWAY_METRICS_TOKEN", "(none)",
       "When set, GET /metrics needs 'Authorization: Bearer <token>' (401 otherwise). Without "
       "it /metrics is open and lists tenant ids.",
       [](const std::string& v, Config* c) {
         c->metrics_token = v;
         return Status::Ok();
       }},
      {"storage.data_dir", "FAIRWAY_DATA_DIR", "./data",
       "Directory of the embedded store (RocksDB files) and the generated admin token.",
       [](const std::string& v, Config* c) {
         if (v.empty()) return InvalidArgument("config key 'storage.data_dir' must not be empty");
         c->data_dir = v;
         return Status::Ok();
       }},
      {"storage.block_cache_mb", "FAIRWAY_BLOCK_CACHE_MB", "128",
       "Read cache of the embedded store, in MiB.",
       [](const std::string& v, Config* c) {
         return ParseNumber<size_t>("storage.block_cache_mb", v, 8, 1u << 20, &c->block_cache_mb);
       }},
      {"storage.reserve_mb", "FAIRWAY_STORAGE_RESERVE_MB", "128",
       "Disk space held in a preallocated file in the data directory so that a full disk never "
       "stops the server from starting: it is given back at start for the replay of the "
       "write-ahead log (capped at half of it) and taken again after. Writes are refused "
       "(503) while it cannot be held. 0 turns it off.",
       [](const std::string& v, Config* c) {
         return ParseNumber<uint64_t>("storage.reserve_mb", v, 0, 1u << 20, &c->reserve_mb);
       }},
      {"storage.recovery_interval_ms", "FAIRWAY_STORAGE_RECOVERY_INTERVAL_MS", "1000",
       "After a storage error (such as a full disk) writes are refused with 503; this is how "
       "often the server tries to resume them by itself.",
       [](const std::string& v, Config* c) {
         return ParseNumber("storage.recovery_interval_ms", v, 10, 3'600'000,
                            &c->recovery_interval_ms);
       }},
      {"log.backend", "FAIRWAY_LOG_BACKEND", "embedded",
       "Where the activity log is kept. 'embedded': in the store under storage.data_dir, "
       "written with group commit (the log.* keys below configure it). 'kafka': in a Kafka "
       "cluster, a topic per tenant (the kafka.* keys); the node's store keeps the messageId "
       "dedup window and the read-by-lead index.",
       [](const std::string& v, Config* c) {
         FAIRWAY_RETURN_IF_ERROR(log::CheckActivityLogBackend(v));
         c->log.backend = v;
         return Status::Ok();
       }},
      {"log.sync", "FAIRWAY_LOG_SYNC", "true",
       "fsync each group commit before acknowledging. false loses acknowledged events on power "
       "loss: for throwaway environments only.",
       [](const std::string& v, Config* c) {
         return ParseBool("log.sync", v, &c->log.embedded.sync);
       }},
      {"log.max_commit_events", "FAIRWAY_LOG_MAX_COMMIT_EVENTS", "20000",
       "Most events in one group commit. Larger commits amortise fsync better but wait longer.",
       [](const std::string& v, Config* c) {
         return ParseNumber<size_t>("log.max_commit_events", v, 1, 1'000'000,
                                    &c->log.embedded.max_commit_events);
       }},
      {"log.max_queued_events", "FAIRWAY_LOG_MAX_QUEUED_EVENTS", "500000",
       "Events waiting for disk (or for Kafka's acknowledgement) beyond which ingest answers 503: "
       "bounds memory under overload.",
       [](const std::string& v, Config* c) {
         FAIRWAY_RETURN_IF_ERROR(ParseNumber<size_t>("log.max_queued_events", v, 1000, 100'000'000,
                                                     &c->log.embedded.max_queued_events));
         c->log.kafka.max_queued_events = c->log.embedded.max_queued_events;
         return Status::Ok();
       }},
      {"log.tail_cache_mb", "FAIRWAY_LOG_TAIL_CACHE_MB", "64",
       "Memory for the newest committed log blocks (or records Kafka acknowledged), from which "
       "processors that keep up read without touching the store or fetching. 0 turns it off.",
       [](const std::string& v, Config* c) {
         FAIRWAY_RETURN_IF_ERROR(
             ParseSize("log.tail_cache_mb", v, 20, 0, 1u << 20, &c->log.embedded.tail_cache_bytes));
         c->log.kafka.tail_cache_bytes = c->log.embedded.tail_cache_bytes;
         return Status::Ok();
       }},
      {"kafka.brokers", "FAIRWAY_KAFKA_BROKERS", "",
       "bootstrap.servers of the Kafka cluster (host:port,host:port); required by "
       "log.backend = 'kafka'.",
       [](const std::string& v, Config* c) {
         c->log.kafka.brokers = v;
         return Status::Ok();
       }},
      {"kafka.topic_prefix", "FAIRWAY_KAFKA_TOPIC_PREFIX", "fairway.",
       "A tenant's activities go to the topic named by this prefix and the tenant id.",
       [](const std::string& v, Config* c) {
         for (char ch : v) {
           if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '.' && ch != '_' &&
               ch != '-') {
             return InvalidArgument(fmt::format(
                 "config key 'kafka.topic_prefix' may hold letters, digits, '.', '_' and '-' "
                 "only; not '{}'",
                 v));
           }
         }
         c->log.kafka.topic_prefix = v;
         return Status::Ok();
       }},
      {"kafka.properties", "FAIRWAY_KAFKA_PROPERTIES", "",
       "librdkafka client properties set on every client, as name=value pairs separated by "
       "';' (security.protocol=SASL_SSL;sasl.mechanism=PLAIN;sasl.username=...): how TLS and "
       "SASL settings reach the clients.",
       [](const std::string& v, Config* c) {
         c->log.kafka.client_properties.clear();
         size_t start = 0;
         while (start <= v.size()) {
           size_t end = v.find(';', start);
           if (end == std::string::npos) end = v.size();
           auto trim = [](std::string t) {
             t.erase(0, t.find_first_not_of(" \t\n"));
             t.erase(t.find_last_not_of(" \t\n") + 1);
             return t;
           };
           std::string pair = trim(v.substr(start, end - start));
           start = end + 1;
           if (pair.empty()) continue;
           size_t eq = pair.find('=');
           if (eq == std::string::npos || eq == 0) {
             return InvalidArgument(fmt::format(
                 "config key 'kafka.properties' holds name=value pairs separated by ';'; not "
                 "'{}'",
                 pair));
           }
           c->log.kafka.client_properties.emplace_back(trim(pair.substr(0, eq)),
                                                       trim(pair.substr(eq + 1)));
         }
         return Status::Ok();
       }},
      {"kafka.create_topics", "FAIRWAY_KAFKA_CREATE_TOPICS", "true",
       "Create a tenant's topic (its partition count, retention.ms from its retention) through "
       "the admin API on its first append. false: the operator creates the topics, and an "
       "append to a missing one is refused naming it.",
       [](const std::string& v, Config* c) {
         return ParseBool("kafka.create_topics", v, &c->log.kafka.create_topics);
       }},
      {"kafka.replication_factor", "FAIRWAY_KAFKA_REPLICATION_FACTOR", "-1",
       "Replication factor of the topics Fairway creates; -1 takes the broker's default.",
       [](const std::string& v, Config* c) {
         int rf = 0;
         FAIRWAY_RETURN_IF_ERROR(ParseNumber("kafka.replication_factor", v, -1, 100, &rf));
         if (rf == 0) {
           return InvalidArgument(
               "config key 'kafka.replication_factor' must be -1 (the broker's default) or 1-100");
         }
         c->log.kafka.replication_factor = rf;
         return Status::Ok();
       }},
      {"kafka.delivery_timeout_ms", "FAIRWAY_KAFKA_DELIVERY_TIMEOUT_MS", "30000",
       "How long an append waits for Kafka to acknowledge every record before it fails with "
       "503 (the client retries; records already stored are recognised by messageId).",
       [](const std::string& v, Config* c) {
         return ParseNumber<int64_t>("kafka.delivery_timeout_ms", v, 100, 3'600'000,
                                     &c->log.kafka.delivery_timeout_ms);
       }},
      {"cluster.node_id", "FAIRWAY_NODE_ID", "",
       "This node's name, shown as the owner of its processing tasks (GET /admin/v1/cluster); "
       "empty: the host name. Letters, digits, '.', '_' and '-', at most 64.",
       [](const std::string& v, Config* c) {
         if (v.size() > 64 || v.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTU"
                                                  "VWXYZ0123456789._-") != std::string::npos) {
           return InvalidArgument(
               "config key 'cluster.node_id' may hold letters, digits, '.', '_' and '-' (at "
               "most 64)");
         }
         c->node_id = v;
         return Status::Ok();
       }},
      {"cluster.enabled", "FAIRWAY_CLUSTER_ENABLED", "false",
       "Run as one node of a cluster (needs log.backend = 'kafka'): the nodes share tenants "
       "through the topic '<topic_prefix>__config', split the slots of "
       "'<topic_prefix>__slots' in one consumer group, and each processes the tenants of its "
       "slots, whose state follows them through '<topic_prefix>__changelog' "
       "(docs/distributed.md).",
       [](const std::string& v, Config* c) {
         return ParseBool("cluster.enabled", v, &c->cluster_enabled);
       }},
      {"cluster.slots", "FAIRWAY_CLUSTER_SLOTS", "64",
       "Slots of a cluster, the unit of placement: partitions of the slots and changelog "
       "topics. Fixed for the cluster's life; every node must use the same. 1 to 4096.",
       [](const std::string& v, Config* c) {
         return ParseNumber<uint32_t>("cluster.slots", v, 1, 4096, &c->cluster_slots);
       }},
      {"cluster.session_timeout_ms", "FAIRWAY_CLUSTER_SESSION_TIMEOUT_MS", "6000",
       "A node silent this long (it died, or lost the network) leaves the cluster and its slots "
       "move to the others. Kafka brokers accept 6000-1800000 by default.",
       [](const std::string& v, Config* c) {
         return ParseNumber<int>("cluster.session_timeout_ms", v, 1000, 3'600'000,
                                 &c->cluster_session_timeout_ms);
       }},
      {"cluster.layout_change_timeout_ms", "FAIRWAY_CLUSTER_LAYOUT_CHANGE_TIMEOUT_MS", "20000",
       "How long a tenant's partition count change waits for every node to stop appending to "
       "the old partitions before it answers 503; the change then completes by itself once they "
       "have (the tenant's activities are refused with 503 meanwhile). 100 to 600000.",
       [](const std::string& v, Config* c) {
         return ParseNumber<int>("cluster.layout_change_timeout_ms", v, 100, 600'000,
                                 &c->cluster_layout_change_timeout_ms);
       }},
      {"cluster.snapshot_kb", "FAIRWAY_CLUSTER_SNAPSHOT_KB", "65536",
       "A slot's owner writes a snapshot of the slot's state to the changelog once this many "
       "KiB were written to the slot since its last one (or since its restore); restores start "
       "at the latest snapshot and the records before it are deleted. 0: never (restores read "
       "the whole changelog). 0 to 1073741824 (1 TiB).",
       [](const std::string& v, Config* c) {
         return ParseNumber<uint64_t>("cluster.snapshot_kb", v, 0, uint64_t{1} << 30,
                                      &c->cluster_snapshot_kb);
       }},
      {"cluster.advertised_url", "FAIRWAY_CLUSTER_ADVERTISED_URL", "(the listen address)",
       "Where the other nodes of a cluster reach this node to forward requests about the "
       "tenants it processes, e.g. http://10.0.0.5:8080. Default: the listen address, with the "
       "node id as host when listening on all interfaces. All nodes need the same admin_token.",
       [](const std::string& v, Config* c) {
         if (!v.empty() && !v.starts_with("http://") && !v.starts_with("https://")) {
           return InvalidArgument(
               "config key 'cluster.advertised_url' must start with http:// or https://");
         }
         c->cluster_advertised_url = v;
         while (c->cluster_advertised_url.ends_with('/')) c->cluster_advertised_url.pop_back();
         return Status::Ok();
       }},
      {"cluster.append_poll_ms", "FAIRWAY_CLUSTER_APPEND_POLL_MS", "100",
       "How often a node asks Kafka for the ends of its tenants' partitions, to find the "
       "activities other nodes ingested: the most such activities wait before processing "
       "starts. 10 to 10000.",
       [](const std::string& v, Config* c) {
         return ParseNumber<int>("cluster.append_poll_ms", v, 10, 10'000,
                                 &c->cluster_append_poll_ms);
       }},
      {"kafka.progress_interval_ms", "FAIRWAY_KAFKA_PROGRESS_INTERVAL_MS", "5000",
       "How often each processor's progress is committed as the offsets of the consumer group "
       "'<topic_prefix>processing.<processor>', so that Kafka's consumer-lag tools show how far "
       "Fairway has processed (for watching only; 0: never). 100 to 3600000, or 0.",
       [](const std::string& v, Config* c) {
         int64_t ms = 0;
         FAIRWAY_RETURN_IF_ERROR(
             ParseNumber<int64_t>("kafka.progress_interval_ms", v, 0, 3'600'000, &ms));
         if (ms != 0 && ms < 100) {
           return InvalidArgument(
               "config key 'kafka.progress_interval_ms' must be 0 (never) or 100-3600000");
         }
         c->kafka_progress_interval_ms = ms;
         return Status::Ok();
       }},
      {"engine.threads", "FAIRWAY_ENGINE_THREADS", "2",
       "Worker threads of the processing engine (reading the log and running processors).",
       [](const std::string& v, Config* c) {
         return ParseNumber<size_t>("engine.threads", v, 1, 256, &c->engine.threads);
       }},
      {"engine.stream_buffer_kb", "FAIRWAY_ENGINE_STREAM_BUFFER_KB", "512",
       "Read-ahead of one tenant's processor, in KiB of decoded activities.",
       [](const std::string& v, Config* c) {
         return ParseSize("engine.stream_buffer_kb", v, 10, 16, 1u << 20,
                          &c->engine.stream_buffer_bytes);
       }},
      {"engine.global_buffer_mb", "FAIRWAY_ENGINE_GLOBAL_BUFFER_MB", "256",
       "Read-ahead of all processors together, in MiB: the engine's memory bound under any "
       "backlog.",
       [](const std::string& v, Config* c) {
         return ParseSize("engine.global_buffer_mb", v, 20, 1, 1u << 20,
                          &c->engine.global_buffer_bytes);
       }},
      {"engine.stall_timeout_seconds", "FAIRWAY_ENGINE_STALL_TIMEOUT_SECONDS", "60",
       "Watchdog: a tenant's processor that has runnable work or work in processing and makes "
       "no progress for this long has its circuit breaker opened, with the reason logged and "
       "shown in its status. 0 turns the watchdog off.",
       [](const std::string& v, Config* c) {
         uint32_t seconds = 0;
         Status st = ParseNumber<uint32_t>("engine.stall_timeout_seconds", v, 0, 86'400, &seconds);
         c->engine.stall_timeout = std::chrono::seconds(seconds);
         return st;
       }},
      {"dispatch.smtp_url", "FAIRWAY_SMTP_URL", "(none)",
       "SMTP relay for campaign emails and alerts, e.g. smtp://127.0.0.1:25 or "
       "smtps://relay:465. Without it, email deliveries fail and become dead.",
       [](const std::string& v, Config* c) {
         if (!v.empty() && !v.starts_with("smtp://") && !v.starts_with("smtps://")) {
           return InvalidArgument(
               "config key 'dispatch.smtp_url' must start with smtp:// or smtps://");
         }
         c->dispatch.smtp_url = v;
         return Status::Ok();
       }},
      {"dispatch.smtp_username", "FAIRWAY_SMTP_USERNAME", "(none)",
       "SMTP AUTH user name (sent in clear unless the relay offers TLS).",
       [](const std::string& v, Config* c) {
         c->dispatch.smtp_username = v;
         return Status::Ok();
       }},
      {"dispatch.smtp_password", "FAIRWAY_SMTP_PASSWORD", "(none)", "SMTP AUTH password.",
       [](const std::string& v, Config* c) {
         c->dispatch.smtp_password = v;
         return Status::Ok();
       }},
      {"dispatch.max_attempts", "FAIRWAY_DISPATCH_MAX_ATTEMPTS", "8",
       "Failed attempts after which an email or webhook delivery becomes dead (listed by "
       "GET /v1/deliveries?state=dead, retried by POST /v1/deliveries/retry).",
       [](const std::string& v, Config* c) {
         return ParseNumber<uint32_t>("dispatch.max_attempts", v, 1, 100,
                                      &c->dispatch.max_attempts);
       }},
      {"dispatch.per_destination_concurrency", "FAIRWAY_DISPATCH_PER_DESTINATION_CONCURRENCY", "4",
       "Requests in flight at once to one destination (scheme://host:port) of one tenant: a "
       "slow endpoint holds only these slots.",
       [](const std::string& v, Config* c) {
         return ParseNumber<uint32_t>("dispatch.per_destination_concurrency", v, 1, 1000,
                                      &c->dispatch.per_destination_concurrency);
       }},
      {"dispatch.per_destination_rate", "FAIRWAY_DISPATCH_PER_DESTINATION_RATE", "50",
       "Requests per second to one destination of one tenant (0 = no limit).",
       [](const std::string& v, Config* c) {
         return ParseNumber<double>("dispatch.per_destination_rate", v, 0, 1e6,
                                    &c->dispatch.per_destination_rate);
       }},
      {"dispatch.request_timeout_ms", "FAIRWAY_DISPATCH_REQUEST_TIMEOUT_MS", "10000",
       "A delivery attempt that takes longer fails and is retried with back-off.",
       [](const std::string& v, Config* c) {
         int64_t ms = 0;
         Status st = ParseNumber<int64_t>("dispatch.request_timeout_ms", v, 100, 600'000, &ms);
         c->dispatch.request_timeout = std::chrono::milliseconds(ms);
         return st;
       }},
      {"dispatch.allow_networks", "FAIRWAY_DISPATCH_ALLOW_NETWORKS", "(none)",
       "Networks that webhooks may reach although they are not public, as a comma-separated "
       "CIDR list, e.g. \"10.20.0.0/16,fd00::/8\" or \"127.0.0.0/8,::1/128\" for receivers on "
       "this machine. Without it webhooks reach public addresses only: loopback, private, "
       "link-local, unique-local, multicast and reserved addresses are refused at connect time "
       "(after DNS resolution) and the delivery is dead.",
       [](const std::string& v, Config* c) {
         auto networks = dispatch::ParseNetworks(v, "config key 'dispatch.allow_networks'");
         if (!networks.ok()) return networks.status();
         c->dispatch.allow_networks = std::move(networks).value();
         return Status::Ok();
       }},
      {"tenants.processing_rate", "FAIRWAY_TENANT_PROCESSING_RATE", "0",
       "Default processing throttle of a new tenant, activities/s per processor (0 = none).",
       [](const std::string& v, Config* c) {
         return ParseNumber<double>("tenants.processing_rate", v, 0, 1e12,
                                    &c->tenant_defaults.quotas.processing_rate);
       }},
      {"admin.token", "FAIRWAY_ADMIN_TOKEN", "(generated)",
       "Bearer token of the admin API. When unset, one is generated on first start and kept in "
       "<data_dir>/admin_token (mode 0600).",
       [](const std::string& v, Config* c) {
         c->admin_token = v;
         return Status::Ok();
       }},
      {"tenants.partitions", "FAIRWAY_TENANT_PARTITIONS", "4",
       "Log partitions of a new tenant (1-256) when its creation body does not say.",
       [](const std::string& v, Config* c) {
         return ParseNumber<uint32_t>("tenants.partitions", v, 1, model::kMaxPartitions,
                                      &c->tenant_defaults.partitions);
       }},
      {"tenants.ingest_rate", "FAIRWAY_TENANT_INGEST_RATE", "5000",
       "Default sustained ingest rate of a new tenant, events/s.",
       [](const std::string& v, Config* c) {
         return ParseNumber<double>("tenants.ingest_rate", v, 1, 1e12,
                                    &c->tenant_defaults.quotas.ingest_rate);
       }},
      {"tenants.ingest_burst", "FAIRWAY_TENANT_INGEST_BURST", "50000",
       "Default ingest burst of a new tenant, events.",
       [](const std::string& v, Config* c) {
         return ParseNumber<double>("tenants.ingest_burst", v, 1, 1e12,
                                    &c->tenant_defaults.quotas.ingest_burst);
       }},
      {"tenants.retention_days", "FAIRWAY_TENANT_RETENTION_DAYS", "90",
       "Default days a new tenant's activities are kept (0 = forever).",
       [](const std::string& v, Config* c) {
         return ParseNumber<uint32_t>("tenants.retention_days", v, 0, 36'500,
                                      &c->tenant_defaults.quotas.retention_days);
       }},
      {"tenants.dedup_window_seconds", "FAIRWAY_TENANT_DEDUP_WINDOW_SECONDS", "604800",
       "Default idempotency window of a new tenant: a messageId re-sent within it is not "
       "stored again.",
       [](const std::string& v, Config* c) {
         return ParseNumber<uint32_t>("tenants.dedup_window_seconds", v, 0, 366u * 86'400u,
                                      &c->tenant_defaults.quotas.dedup_window_seconds);
       }},
      {"retention.interval_seconds", "FAIRWAY_RETENTION_INTERVAL_SECONDS", "3600",
       "How often expired activities are removed.",
       [](const std::string& v, Config* c) {
         return ParseNumber("retention.interval_seconds", v, 1, 86'400,
                            &c->retention_interval_seconds);
       }},
  };
  return keys;
}

std::string TomlValueText(const toml::node& n) {
  if (auto s = n.as_string()) return s->get();
  if (auto i = n.as_integer()) return std::to_string(i->get());
  if (auto f = n.as_floating_point()) return fmt::format("{}", f->get());
  if (auto b = n.as_boolean()) return b->get() ? "true" : "false";
  return "\x01";  // not a scalar: rejected by every setter
}

}  // namespace

Status SetListen(const std::string& listen, Config* c) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return InvalidArgument(fmt::format("listen address must be HOST:PORT, not '{}'", listen));
  }
  uint16_t port = 0;
  std::string port_text = listen.substr(colon + 1);
  auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || p != port_text.data() + port_text.size()) {
    return InvalidArgument(fmt::format("listen port must be 0-65535, not '{}'", port_text));
  }
  std::string host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  c->server.host = host == "localhost" ? "127.0.0.1" : host;
  c->server.port = port;
  return Status::Ok();
}

Result<Config> LoadConfig(const std::string& path) {
  Config c;
  if (!path.empty()) {
    toml::table table;
    try {
      table = toml::parse_file(path);
    } catch (const toml::parse_error& e) {
      return InvalidArgument(fmt::format("config file '{}': {}", path, e.description()));
    }
    // Reject unknown keys: a typo should not be silently ignored.
    std::vector<std::string> known;
    for (const auto& k : Keys()) known.push_back(k.name);
    for (auto& [section, node] : table) {
      auto* sub = node.as_table();
      if (!sub) {
        return InvalidArgument(fmt::format("config key '{}' is not known", section.str()));
      }
      for (auto& [key, _] : *sub) {
        std::string full = std::string(section.str()) + "." + std::string(key.str());
        if (std::find(known.begin(), known.end(), full) == known.end()) {
          return InvalidArgument(fmt::format("config key '{}' is not known", full));
        }
      }
    }
    for (const auto& k : Keys()) {
      if (auto node = table.at_path(k.name)) {
        FAIRWAY_RETURN_IF_ERROR(k.set(TomlValueText(*node.node()), &c));
      }
    }
  }
  for (const auto& k : Keys()) {
    if (const char* v = std::getenv(k.env)) FAIRWAY_RETURN_IF_ERROR(k.set(v, &c));
  }
  if (c.log.backend == log::kKafkaBackend && c.log.kafka.brokers.empty()) {
    return InvalidArgument("config key 'kafka.brokers' is required when log.backend is 'kafka'");
  }
  if (c.cluster_enabled && c.log.backend != log::kKafkaBackend) {
    return InvalidArgument("config key 'cluster.enabled' needs log.backend = 'kafka'");
  }
  return c;
}

std::string ConfigReferenceMarkdown() {
  std::string out =
      "# Configuration reference\n\n"
      "Generated by `fairway config-reference`; do not edit by hand.\n\n"
      "Fairway reads one TOML file (`fairway serve --config FILE`), then the environment: an "
      "environment variable overrides the file. Command-line flags `--data-dir` and `--listen` "
      "override both. Unknown keys are errors.\n\n"
      "| key | environment | default | meaning |\n|---|---|---|---|\n";
  for (const auto& k : Keys()) {
    out += fmt::format("| `{}` | `{}` | `{}` | {} |\n", k.name, k.env, k.default_text, k.meaning);
  }
  return out;
}

}  // namespace fairway::app
