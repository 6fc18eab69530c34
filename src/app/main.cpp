// fairway: the server and its command-line tools.

#include <curl/curl.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <thread>

#include "app/cluster_node.h"
#include "app/config.h"
#include "campaigns/campaign_processor.h"
#include "campaigns/campaign_stats.h"
#include "campaigns/timer_service.h"
#include "cluster/changelog.h"
#include "cluster/config_topic.h"
#include "cluster/placement.h"
#include "cluster/slot_membership.h"
#include "common/crypto.h"
#include "dispatch/delivery_dispatcher.h"
#include "engine/engine.h"
#include "enrich/enricher.h"
#include "http/api.h"
#include "http/server.h"
#include "identity/lead_processor.h"
#include "identity/lead_store.h"
#include "log/log_factory.h"
#include "sessions/session_processor.h"
#include "sessions/session_store.h"
#include "sessions/session_sweeper.h"
#include "storage/schema.h"
#include "tenancy/tenant_registry.h"

namespace fairway::app {
namespace {

// Reads the admin token from the config, or from <data_dir>/admin_token, creating it (0600
// from its first byte: a temporary file opened with that mode, then renamed) on first start.
Result<std::string> ResolveAdminToken(const Config& config, bool* generated) {
  *generated = false;
  if (!config.admin_token.empty()) return config.admin_token;
  std::string path = config.data_dir + "/admin_token";
  std::ifstream in(path);
  std::string token;
  if (in && std::getline(in, token) && !token.empty()) return token;
  std::error_code ec;
  std::filesystem::create_directories(config.data_dir, ec);
  token = RandomToken("adm_");
  std::string tmp = path + ".tmp";
  ::unlink(tmp.c_str());  // left over by a crash: it may have another owner or mode
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Unavailable(fmt::format("cannot write '{}': {}", tmp, std::strerror(errno)));
  std::string line = token + "\n";
  bool written = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) &&
                 ::fsync(fd) == 0;
  ::close(fd);
  if (!written) {
    ::unlink(tmp.c_str());
    return Unavailable(fmt::format("cannot write '{}': {}", tmp, std::strerror(errno)));
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) return Unavailable(fmt::format("cannot write '{}': {}", path, ec.message()));
  *generated = true;
  return token;
}

// Runs `pass` now and then every `interval` on a thread of its own; Stop() wakes and joins it.
class PeriodicService {
 public:
  PeriodicService(std::chrono::milliseconds interval, std::function<void()> pass)
      : interval_(interval), pass_(std::move(pass)) {}
  ~PeriodicService() { Stop(); }
  void Start() {
    thread_ = std::thread([this] { Run(); });
  }
  void Stop() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Run() {
    std::unique_lock lock(mu_);
    while (!stopping_) {
      lock.unlock();
      pass_();
      lock.lock();
      cv_.wait_for(lock, interval_, [&] { return stopping_; });
    }
  }
  std::chrono::milliseconds interval_;
  std::function<void()> pass_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

// Removes expired activities from every tenant's log.
void RetentionPass(tenancy::TenantRegistry* tenants, log::ActivityLog* log, const Clock* clock) {
  for (const auto& t : tenants->List()) {
    if (t.quotas.retention_days == 0 || t.status == model::TenantStatus::kDeleting) continue;
    int64_t cutoff = clock->NowMillis() - int64_t{t.quotas.retention_days} * 86'400'000;
    auto removed = log->ApplyRetention(t.id, t.log_partitions(), cutoff);
    if (!removed.ok()) {
      spdlog::warn("retention for tenant '{}': {}", t.id.str(), removed.status().ToString());
    } else if (*removed > 0) {
      spdlog::info("retention removed {} activities of tenant '{}'", *removed, t.id.str());
    }
  }
}

// Shows the engine's progress where the log's own tools look (Kafka's consumer groups): one line
// when that starts failing, one when it works again.
void PublishProgress(engine::Engine* engine, log::ActivityLog* log, bool* failing) {
  Status st = log->PublishProgress(engine->Progress());
  if (!st.ok() && !*failing) {
    spdlog::warn("publishing processing progress: {}", st.ToString());
  } else if (st.ok() && *failing) {
    spdlog::info("publishing processing progress works again");
  }
  *failing = !st.ok();
}

int Serve(Config config) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // threads started below inherit the mask

  // Everything the server creates (store files, the admin token, directories) is for its own
  // user only: files 0600, directories 0700.
  ::umask(077);
  {
    std::error_code ec;
    std::filesystem::create_directories(config.data_dir, ec);
    std::filesystem::permissions(config.data_dir, std::filesystem::perms::owner_all,
                                 std::filesystem::perm_options::replace, ec);
  }
  bool generated = false;
  auto token = ResolveAdminToken(config, &generated);
  if (!token.ok()) {
    spdlog::error("{}", token.status().message());
    return 1;
  }
  const Clock* clock = SystemClock::Default();
  MetricsRegistry metrics;
  storage::StoreOptions so;
  so.path = config.data_dir + "/store";
  so.column_families = storage::FairwayColumnFamilies();
  so.block_cache_bytes = config.block_cache_mb << 20;
  so.reserve_bytes = config.reserve_mb << 20;
  so.recovery_interval_ms = config.recovery_interval_ms;
  // One line when writes stop, one when they resume.
  so.on_health_change = [](const storage::StorageHealth& health) {
    if (health.writable) {
      spdlog::info("storage recovered: accepting writes again");
    } else {
      spdlog::error("storage failed: refusing writes (503) until it recovers by itself: {}",
                    health.reason);
    }
  };
  auto store = storage::Store::Open(so);
  if (!store.ok()) {
    spdlog::error("{}", store.status().message());
    return 1;
  }
  auto tenants = tenancy::TenantRegistry::Open(store->get(), clock);
  if (!tenants.ok()) {
    spdlog::error("{}", tenants.status().message());
    return 1;
  }
  // In a cluster every node appends to every tenant's log.
  config.log.kafka.shared_appends = config.cluster_enabled;
  // Each node's own index holds only what it ingested: the processing node's is complete.
  config.log.kafka.processed_index = config.cluster_enabled;
  // ...so its append-time dedup sees only this node's appends: processing skips the repeats.
  config.engine.skip_repeats = config.cluster_enabled;
  auto opened_log = log::OpenActivityLog(config.log, store->get(), clock, &metrics);
  if (!opened_log.ok()) {
    spdlog::error("{}", opened_log.status().message());
    return 1;
  }
  log::ActivityLog& log = *opened_log->log;
  // In a cluster, tenants are shared through the config topic, and every write of a tenant's
  // processing state goes through the changelog of its slot (docs/distributed.md).
  std::string node_id = config.node_id;
  if (node_id.empty()) {
    char host[256] = {};
    node_id = ::gethostname(host, sizeof host - 1) == 0 && host[0] ? host : "fairway";
  }
  std::unique_ptr<cluster::Changelog> changelog;
  std::unique_ptr<cluster::ConfigTopic> config_topic;
  storage::Store* state_store = store->get();
  if (config.cluster_enabled) {
    cluster::ChangelogOptions changelog_options;
    changelog_options.kafka = config.log.kafka;
    changelog_options.node_id = node_id;
    changelog_options.slots = config.cluster_slots;
    changelog_options.slot_of = [registry = tenants->get(),
                                 slots = config.cluster_slots](const TenantId& t) {
      return cluster::SlotOfTenant(*registry, t, slots);
    };
    changelog_options.snapshot_bytes = config.cluster_snapshot_kb << 10;
    auto opened = cluster::Changelog::Open(changelog_options, store->get());
    if (!opened.ok()) {
      spdlog::error("cluster changelog: {}", opened.status().ToString());
      return 1;
    }
    changelog = std::move(opened).value();
    state_store = changelog->store();
    auto topic = cluster::ConfigTopic::Open(config.log.kafka, store->get(), tenants->get());
    if (!topic.ok()) {
      spdlog::error("cluster config topic: {}", topic.status().ToString());
      return 1;
    }
    config_topic = std::move(topic).value();
    (*tenants)->SetJournal(config_topic.get());
  }
  // The engine subscribes to the log before the log's writer starts, so it hears of every
  // append; it processes every tenant the registry knows (in a cluster, of the slots it owns).
  identity::LeadStore leads(state_store);
  campaigns::CampaignRegistry campaign_registry(state_store, clock);
  auto tenant_config =
      [registry = tenants->get()](const TenantId& id) -> std::optional<model::TenantConfig> {
    auto t = registry->Get(id);
    if (!t.ok()) return std::nullopt;
    return *t;
  };
  campaigns::TimerService timers(state_store, &log, clock, tenant_config);
  dispatch::DeliveryDispatcher dispatcher(state_store, clock, &metrics, config.dispatch);
  campaigns::DeliveryStatsRecorder delivery_stats(clock);
  dispatcher.SetListener(&delivery_stats);
  dispatcher.SetSigningSecrets(
      [&campaign_registry](const TenantId& t) -> std::optional<std::string> {
        auto s = campaign_registry.GetSettings(t);
        if (!s.ok()) {
          spdlog::error("campaigns: no webhook secret for {}: {}", t.str(), s.status().ToString());
          return std::nullopt;
        }
        return s->webhook_secret;
      });
  engine::Engine engine(state_store, &log, clock, &metrics, config.engine);
  identity::LeadProcessorOptions lead_options{.metrics = &metrics};
  if (config.cluster_enabled) {
    lead_options.index_retention_ms = [tenant_config](const TenantId& t) -> int64_t {
      auto c = tenant_config(t);
      return c ? int64_t{c->quotas.retention_days} * 86'400'000 : 0;
    };
  }
  engine.AddProcessor(std::make_unique<identity::LeadProcessor>(lead_options));
  // Sessions (docs/web.md): session_started / session_ended are written only for tenants with
  // an active campaign that listens to them.
  sessions::SessionProcessorOptions session_options;
  session_options.timeout_ms = [tenant_config](const TenantId& t) -> int64_t {
    auto c = tenant_config(t);
    return (c ? int64_t{c->web.session_timeout_minutes} : 30) * 60'000;
  };
  session_options.announce = [&campaign_registry](const TenantId& t, std::string_view event) {
    auto snap = campaign_registry.Snapshot(t);
    if (!snap.ok()) return true;  // unsure: announce (a duplicate costs less than a miss)
    std::vector<campaigns::TenantCampaigns::TriggerRef> refs;
    (*snap)->Lookup(model::ActivityType::kFairway, event, &refs);
    return !refs.empty();
  };
  engine.AddProcessor(std::make_unique<sessions::SessionProcessor>(session_options));
  campaigns::CampaignProcessorOptions cpo;
  cpo.on_timers = [&timers](const TenantId& t, int64_t due) { timers.Notify(t, due); };
  cpo.on_deliveries = [&dispatcher](const TenantId& t) { dispatcher.Notify(t); };
  cpo.tenant_timezone = [tenant_config](const TenantId& t) {
    auto c = tenant_config(t);
    return c ? c->timezone : std::string();
  };
  engine.AddProcessor(
      std::make_unique<campaigns::CampaignProcessor>(&campaign_registry, &leads, clock, cpo));
  engine.Start();
  log.Start();
  http::ApiOptions ao;
  ao.admin_token = *token;
  ao.tenant_defaults = config.tenant_defaults;
  ao.metrics_token = config.metrics_token;
  ao.node_id = node_id;
  ao.tls = !config.server.tls_cert_file.empty();
  ao.shed_anonymous_at = config.shed_anonymous_at;
  // Twice the fair-share capacity stays within the log's queue, so ingest meets 429 per tenant
  // before anyone meets the log's overload 503.
  ao.ingest_queue_events = std::min(config.ingest_queue_events,
                                    std::max<size_t>(1, config.log.embedded.max_queued_events / 2));
  http::Api api(ao, tenants->get(), &log, opened_log->index, &engine, &leads, clock, &metrics);
  // Browsers' events get their context filled (docs/web.md); a part whose data cannot be
  // loaded is left out, and said so.
  std::unique_ptr<enrich::UserAgentParser> user_agents;
  std::unique_ptr<enrich::CountryLookup> countries;
  if (!config.user_agent_patterns.empty()) {
    auto loaded = enrich::UserAgentParser::Load(config.user_agent_patterns);
    if (loaded.ok()) {
      user_agents = std::move(loaded).value();
    } else {
      spdlog::error("enrichment: no user agent parsing: {}", loaded.status().message());
    }
  }
  if (!config.geoip_dir.empty()) {
    auto opened = enrich::CountryLookup::Open(config.geoip_dir + "/GeoIP.dat",
                                              config.geoip_dir + "/GeoIPv6.dat");
    if (opened.ok()) {
      countries = std::move(opened).value();
    } else {
      spdlog::error("enrichment: no countries: {}", opened.status().message());
    }
  }
  enrich::Enricher enricher(user_agents.get(), countries.get());
  api.SetEnricher(&enricher);
  api.SetCampaignServices({&campaign_registry, &timers, &dispatcher, state_store});
  sessions::SessionStore session_store(state_store);
  api.SetSessionStore(&session_store);
  sessions::SessionSweeper session_sweeper(state_store, &log, clock);
  std::unique_ptr<ClusterNode> cluster_node;
  if (config.cluster_enabled) {
    cluster_node = std::make_unique<ClusterNode>(
        ClusterServices{
            .tenants = tenants->get(),
            .changelog = changelog.get(),
            .engine = &engine,
            .dispatcher = &dispatcher,
            .timers = &timers,
            .metrics = &metrics,
            .delete_state = [&api](const TenantId& t) { return api.DeleteTenantState(t); },
            .config_topic = config_topic.get(),
            .node_id = node_id,
            .log = &log,
            .layout_wait = std::chrono::milliseconds(config.cluster_layout_change_timeout_ms)},
        config.cluster_slots);
    auto owns = [node = cluster_node.get()](const TenantId& t) { return node->Owns(t); };
    api.SetClusterView(
        {.slots = config.cluster_slots,
         .slot_of = [node = cluster_node.get()](const TenantId& t) { return node->SlotOf(t); },
         .place = [node =
                       cluster_node.get()](const model::TenantConfig& t) { return node->Place(t); },
         .active_slots = [node = cluster_node.get()] { return node->ActiveSlots(); },
         .owns = owns,
         .owner_url = [node = cluster_node.get()](const TenantId& t) { return node->OwnerUrl(t); },
         .change_layout = [node = cluster_node.get()](
                              const model::TenantConfig& t,
                              uint32_t count) { return node->ChangeLayout(t, count); }});
    engine.SetOwnership(owns);
    dispatcher.SetOwnership(owns);
    timers.SetOwnership(owns);
  }
  api.SetReadinessCheck([store = store->get(), &log, node = cluster_node.get()]() -> Status {
    auto health = store->Health();
    if (!health.writable) {
      std::string why = "storage refuses writes: " + health.reason;
      if (!health.last_resume_error.empty()) {
        why += "; resuming failed: " + health.last_resume_error;
      }
      return Unavailable(std::move(why));
    }
    if (node != nullptr) FAIRWAY_RETURN_IF_ERROR(node->Ready());
    return log.Health();
  });
  if (config_topic) {
    config_topic->SetSlotOwnerListener(
        [node = cluster_node.get()](uint32_t slot, std::string_view value) {
          node->OnSlotOwner(slot, value);
        });
    config_topic->SetNoteListener(
        "layout",
        [node = cluster_node.get()](std::string_view tenant, std::string_view value,
                                    int64_t offset) { node->OnLayoutNote(tenant, value, offset); });
    config_topic->SetNoteListener(
        "layout-ack", [node = cluster_node.get()](std::string_view name, std::string_view value,
                                                  int64_t) { node->OnLayoutAck(name, value); });
    // Every tenant change any node recorded, before anything runs on the registry.
    Status st = config_topic->Follow(
        [node = cluster_node.get()](const TenantId& t, const tenancy::JournaledChange& change) {
          node->OnTenantChange(t, change);
        },
        std::chrono::seconds(60));
    if (!st.ok()) {
      spdlog::error("cluster config topic: {}", st.ToString());
      return 1;
    }
  }
  if (Status st = api.ResumeDeletions(); !st.ok()) {
    spdlog::error("finishing interrupted tenant deletions: {}", st.ToString());
    return 1;
  }
  for (const auto& t : tenants->get()->List()) {
    if (Status st = engine.UpsertTenant(t); !st.ok()) {
      spdlog::error("starting processing for tenant '{}': {}", t.id.str(), st.ToString());
      return 1;
    }
  }
  // A partition layout the log started without the registry storing it (the process stopped,
  // or the change's seal failed) is taken now, and looked for again now and then.
  // In a cluster, the node processing a tenant completes its interrupted changes.
  PeriodicService follow_layouts(std::chrono::seconds(10), [&api, node = cluster_node.get()] {
    if (node != nullptr) {
      node->CompleteLayoutChanges();
    } else {
      api.FollowLogLayouts();
    }
  });
  follow_layouts.Start();
  // Sessions nobody came back to end (on this node: of the tenants it processes).
  PeriodicService sweep_sessions(
      std::chrono::seconds(1),
      [&session_sweeper, registry = tenants->get(), node = cluster_node.get()] {
        std::function<bool(const TenantId&)> owns;
        if (node != nullptr) owns = [node](const TenantId& t) { return node->Owns(t); };
        auto swept = session_sweeper.Sweep(registry->List(), owns);
        if (!swept.ok())
          spdlog::warn("sessions: sweeping idle sessions: {}", swept.status().ToString());
      });
  sweep_sessions.Start();
  // In a cluster, the slots whose changelog grew enough get a snapshot (restores start there).
  PeriodicService snapshots(std::chrono::seconds(1), [node = cluster_node.get()] {
    if (node != nullptr) node->SnapshotSlots();
  });
  if (cluster_node != nullptr) snapshots.Start();
  PeriodicService retention(
      std::chrono::seconds(config.retention_interval_seconds),
      [registry = tenants->get(), &log, clock] { RetentionPass(registry, &log, clock); });
  retention.Start();
  // In a cluster, other nodes ingest the tenants this node processes: their ends are polled.
  bool poll_failing = false;
  PeriodicService foreign_appends(
      std::chrono::milliseconds(config.cluster_append_poll_ms),
      [&log, registry = tenants->get(), node = cluster_node.get(), &poll_failing] {
        std::vector<std::pair<TenantId, uint32_t>> owned;
        for (const auto& t : registry->List()) {
          if (t.status != model::TenantStatus::kDeleting && node->Owns(t.id)) {
            owned.emplace_back(t.id, t.log_partitions());
          }
        }
        Status st = log.PollForeignAppends(owned);
        if (!st.ok() && !poll_failing) spdlog::warn("cluster: {}", st.ToString());
        if (st.ok() && poll_failing) spdlog::info("cluster: polling partition ends works again");
        poll_failing = !st.ok();
      });
  if (cluster_node) foreign_appends.Start();
  bool progress_failing = false;
  const bool publish_progress =
      config.log.backend == log::kKafkaBackend && config.kafka_progress_interval_ms > 0;
  PeriodicService progress(std::chrono::milliseconds(config.kafka_progress_interval_ms),
                           [&] { PublishProgress(&engine, &log, &progress_failing); });
  if (publish_progress) progress.Start();
  if (Status st = timers.Start(); !st.ok()) {
    spdlog::error("starting campaign timers: {}", st.ToString());
    return 1;
  }
  dispatcher.Start();
  std::unique_ptr<cluster::SlotMembership> membership;
  if (cluster_node) {
    auto joined = cluster::SlotMembership::Join(
        {.kafka = config.log.kafka,
         .node_id = node_id,
         .slots = config.cluster_slots,
         .session_timeout_ms = config.cluster_session_timeout_ms,
         .heartbeat_interval_ms = std::max(100, config.cluster_session_timeout_ms / 6)},
        cluster_node.get());
    if (!joined.ok()) {
      spdlog::error("cluster membership: {}", joined.status().ToString());
      timers.Stop();
      dispatcher.Stop();
      engine.Stop();
      log.Stop();
      return 1;
    }
    membership = std::move(joined).value();
  }
  http::HttpServer server(config.server, &api);
  if (Status st = server.Start(); !st.ok()) {
    spdlog::error("{}", st.message());
    if (membership) {
      cluster_node->Stop();
      membership->Leave();
    }
    foreign_appends.Stop();
    retention.Stop();
    progress.Stop();
    follow_layouts.Stop();
    sweep_sessions.Stop();
    snapshots.Stop();
    timers.Stop();
    dispatcher.Stop();
    engine.Stop();
    log.Stop();
    return 1;
  }
  api.SetReady(true);
  const char* scheme = config.server.tls_cert_file.empty() ? "http" : "https";
  std::string url = fmt::format("{}://{}:{}", scheme, config.server.host, server.port());
  if (cluster_node) {
    // Where the other nodes forward requests about this node's tenants.
    std::string advertised = config.cluster_advertised_url;
    if (advertised.empty()) {
      const bool any_address = config.server.host == "0.0.0.0" || config.server.host == "::";
      advertised = any_address ? fmt::format("{}://{}:{}", scheme, node_id, server.port()) : url;
    }
    cluster_node->SetAdvertisedUrl(advertised);
  }
  spdlog::info("fairway listening on {} (data in {})", url, config.data_dir);
  if (config.admin_token.empty()) {
    std::cout << fmt::format(
        "Admin token: {}/admin_token{}\n"
        "Quick start:\n"
        "  TOKEN=$(cat {}/admin_token)\n"
        "  curl -s -H \"Authorization: Bearer $TOKEN\" -d '{{\"id\":\"acme\"}}' "
        "{}/admin/v1/tenants\n"
        "  curl -s -u WRITE_KEY: -d '{{\"userId\":\"u1\",\"event\":\"Signed Up\"}}' {}/v1/track\n",
        config.data_dir, generated ? " (generated now)" : "", config.data_dir, url, url);
  }
  std::cout << "READY " << server.port() << std::endl;

  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("signal {}: shutting down", sig);
  api.SetReady(false);
  // Stop everything that can still answer a request (and so holds connections) before the
  // server, which owns the connections' event loop, is destroyed at the end of this scope.
  server.Stop();
  if (membership) {
    // Hands every slot over cleanly (its work finished, its state in the changelog) before
    // anything stops, so the other nodes take them at once.
    cluster_node->Stop();
    membership->Leave();
  }
  foreign_appends.Stop();
  retention.Stop();
  progress.Stop();
  follow_layouts.Stop();
  sweep_sessions.Stop();
  snapshots.Stop();
  timers.Stop();
  engine.Stop();
  // The progress of the last work items, for whoever watches the consumer groups.
  if (publish_progress) PublishProgress(&engine, &log, &progress_failing);
  dispatcher.Stop();
  log.Stop();
  api.Stop();
  return 0;
}

// Calls the admin API of a running server (tenant subcommands).
int AdminCall(const std::string& server, const std::string& token, const std::string& method,
              const std::string& path, const std::string& body) {
  CURL* c = curl_easy_init();
  std::string url = server + path;
  std::string response;
  struct curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, ("Authorization: Bearer " + token).c_str());
  headers = curl_slist_append(headers, "Content-Type: application/json");
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  if (method != "GET") curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(
      c, CURLOPT_WRITEFUNCTION, +[](char* d, size_t s, size_t n, void* out) {
        static_cast<std::string*>(out)->append(d, s * n);
        return s * n;
      });
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &response);
  CURLcode rc = curl_easy_perform(c);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(c);
  if (rc != CURLE_OK) {
    std::cerr << "cannot reach " << server << ": " << curl_easy_strerror(rc) << "\n";
    return 2;
  }
  std::cout << response << "\n";
  return status >= 200 && status < 300 ? 0 : 1;
}

}  // namespace
}  // namespace fairway::app

int main(int argc, char** argv) {
  using namespace fairway::app;
  // Logs go to stderr; stdout carries only what scripts read (the READY line, CLI answers).
  spdlog::set_default_logger(spdlog::stderr_color_mt("fairway"));
  // A client or pipe that goes away must not kill the server.
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App cli{"Fairway: a multi-tenant customer-activity engine"};
  cli.require_subcommand(1);

  std::string config_path, data_dir, listen;
  auto* serve = cli.add_subcommand("serve", "Run the server");
  serve->add_option("--config", config_path, "TOML configuration file");
  serve->add_option("--data-dir", data_dir, "Data directory (overrides the config)");
  serve->add_option("--listen", listen, "HOST:PORT to listen on (overrides the config)");

  auto* reference = cli.add_subcommand("config-reference", "Print the configuration reference");

  std::string server = "http://127.0.0.1:8080", token, tenant_data_dir = "./data";
  auto* tenant = cli.add_subcommand("tenant", "Manage tenants of a running server");
  tenant->require_subcommand(1);
  tenant->add_option("--server", server, "Server URL")->capture_default_str();
  tenant->add_option("--admin-token", token,
                     "Admin token (default: $FAIRWAY_ADMIN_TOKEN, "
                     "then <data-dir>/admin_token)");
  tenant->add_option("--data-dir", tenant_data_dir, "Where to find admin_token")
      ->capture_default_str();
  std::string id, name, timezone = "UTC", quotas;
  uint32_t partitions = 0;
  auto* create = tenant->add_subcommand("create", "Create a tenant; prints its keys once");
  create->add_option("id", id, "Tenant id")->required();
  create->add_option("--name", name, "Display name");
  create->add_option("--timezone", timezone, "IANA time zone")->capture_default_str();
  create->add_option("--partitions", partitions, "Log partitions (1-256)");
  create->add_option("--quotas", quotas, "Quotas as JSON, e.g. '{\"ingest_rate\":1000}'");
  auto* list = tenant->add_subcommand("list", "List tenants");
  std::string patch;
  auto* update =
      tenant->add_subcommand("update", "Change name, timezone, quotas or partition count");
  update->add_option("id", id)->required();
  update->add_option("--patch", patch, "JSON body, e.g. '{\"partitions\":8}'")->required();
  std::map<std::string, CLI::App*> id_commands;
  for (const char* verb : {"get", "delete", "suspend", "resume", "rotate-keys"}) {
    auto* sub = tenant->add_subcommand(verb, std::string(verb) + " a tenant");
    sub->add_option("id", id)->required();
    id_commands[verb] = sub;
  }

  CLI11_PARSE(cli, argc, argv);

  if (*reference) {
    std::cout << ConfigReferenceMarkdown();
    return 0;
  }
  if (*serve) {
    auto config = LoadConfig(config_path);
    if (!config.ok()) {
      std::cerr << config.status().message() << "\n";
      return 2;
    }
    if (!data_dir.empty()) config->data_dir = data_dir;
    if (!listen.empty()) {
      if (auto st = SetListen(listen, &*config); !st.ok()) {
        std::cerr << st.message() << "\n";
        return 2;
      }
    }
    return Serve(std::move(config).value());
  }
  // tenant subcommands
  if (token.empty()) {
    if (const char* env = std::getenv("FAIRWAY_ADMIN_TOKEN")) token = env;
  }
  if (token.empty()) {
    std::ifstream in(tenant_data_dir + "/admin_token");
    std::getline(in, token);
  }
  if (token.empty()) {
    std::cerr << "no admin token: pass --admin-token, set FAIRWAY_ADMIN_TOKEN or --data-dir\n";
    return 2;
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  if (*create) {
    std::string body = fmt::format(R"({{"id":"{}","timezone":"{}")", id, timezone);
    if (!name.empty()) body += fmt::format(R"(,"name":"{}")", name);
    if (partitions) body += fmt::format(R"(,"partitions":{})", partitions);
    if (!quotas.empty()) body += ",\"quotas\":" + quotas;
    body += "}";
    return AdminCall(server, token, "POST", "/admin/v1/tenants", body);
  }
  if (*list) return AdminCall(server, token, "GET", "/admin/v1/tenants", "");
  if (*update) return AdminCall(server, token, "PATCH", "/admin/v1/tenants/" + id, patch);
  if (*id_commands["get"]) return AdminCall(server, token, "GET", "/admin/v1/tenants/" + id, "");
  if (*id_commands["delete"]) {
    return AdminCall(server, token, "DELETE", "/admin/v1/tenants/" + id, "");
  }
  for (const char* verb : {"suspend", "resume", "rotate-keys"}) {
    if (*id_commands[verb]) {
      return AdminCall(server, token, "POST", "/admin/v1/tenants/" + id + "/" + verb, "");
    }
  }
  return 0;
}
