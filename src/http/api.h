#pragma once
// Api: Fairway's public HTTP API (ARCHITECTURE.md section 5) as a Handler: Segment-compatible
// ingest, tenant administration, activity reads and operational endpoints. Maps Status codes
// to HTTP status codes, once, here.
//
// Runs on the server's I/O threads. Ingest never blocks them: durable appends complete on the
// log's writer thread. Admin operations that write synchronously run on a TaskQueue. Tenant
// changes are passed on to the processing engine as they happen.

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>

#include "campaigns/campaign_registry.h"
#include "campaigns/timer_service.h"
#include "common/clock.h"
#include "common/metrics.h"
#include "common/task_queue.h"
#include "dispatch/delivery_dispatcher.h"
#include "engine/engine.h"
#include "enrich/enricher.h"
#include "http/handler.h"
#include "http/ingest_shares.h"
#include "http/responses.h"
#include "identity/lead_store.h"
#include "log/activity_log.h"
#include "model/segment_parser.h"
#include "model/tenant.h"
#include "sessions/session_store.h"
#include "tenancy/tenant_registry.h"

namespace fairway::http {

// The campaign services behind /v1/campaigns, /v1/campaign-settings and /v1/deliveries. Not
// owned; they must outlive the Api.
struct CampaignServices {
  campaigns::CampaignRegistry* registry = nullptr;
  campaigns::TimerService* timers = nullptr;
  dispatch::DeliveryDispatcher* dispatcher = nullptr;
  storage::Store* store = nullptr;
};

struct ApiOptions {
  // Bearer token for /admin routes.
  std::string admin_token;
  // Settings a new tenant gets when its creation body leaves them out.
  model::TenantConfig tenant_defaults;
  model::SegmentLimits segment_limits;
  // When not empty, GET /metrics needs 'Authorization: Bearer <metrics_token>' (401 otherwise).
  std::string metrics_token;
  // Events accepted by ingest and not yet durable that the tenants share by processing weight
  // (IngestShares): a tenant past its share gets 429, and past twice this in all, 503. Keep
  // twice this at most the log's queue bound.
  size_t ingest_queue_events = 4'000;
  // This node's name in GET /admin/v1/cluster (the tasks' owner).
  std::string node_id = "fairway";
  // Whether the server speaks HTTPS: analytics.js is then told to send with https.
  bool tls = false;
  // Brownout: anonymous web traffic (requests whose events are all track, page or screen
  // calls without a userId) is refused with 503 once the events waiting for disk reach this
  // fraction of what makes everyone wait (twice ingest_queue_events), before known leads'
  // traffic is. 1: only when everyone is refused; 0: always.
  double shed_anonymous_at = 0.5;
};

class Api final : public Handler {
 public:
  // All pointers must outlive the Api.
  Api(ApiOptions options, tenancy::TenantRegistry* tenants, log::ActivityLog* log,
      log::ActivityIndex* index, engine::Engine* engine, identity::LeadStore* leads,
      const Clock* clock, MetricsRegistry* metrics);
  ~Api() override;

  void Handle(HttpRequest request, Responder respond) override;
  // Refuses, before its body is read, an ingest request of a tenant that holds its share of
  // the ingest queue (429).
  std::optional<HttpResponse> Screen(const HttpRequest& head) override;

  // Finishes and joins the admin task thread. Call before destroying the HttpServer: pending
  // tasks hold connections, which must be released while the server still exists.
  void Stop();

  // Fills browsers' events' context before they are stored (docs/web.md); not owned. Without
  // it, nothing is added. Before serving.
  void SetEnricher(const enrich::Enricher* enricher) { enricher_ = enricher; }

  // Enables the campaign routes (they answer 503 without) and the removal of a deleted
  // tenant's campaigns, timers, deliveries and statistics. Before serving.
  void SetCampaignServices(CampaignServices services) { campaigns_ = services; }

  // Enables GET /v1/sessions and the sessionId of listed activities (docs/web.md); not owned.
  // Before serving.
  void SetSessionStore(const sessions::SessionStore* sessions) { sessions_ = sessions; }

  // In a cluster: the slots and which tenants this node owns, for GET /admin/v1/cluster.
  struct ClusterView {
    uint32_t slots = 0;
    std::function<uint32_t(const TenantId&)> slot_of;
    // The slot a tenant about to be created goes to (ClusterNode::Place).
    std::function<Result<uint32_t>(const model::TenantConfig&)> place;
    std::function<std::vector<uint32_t>()> active_slots;
    std::function<bool(const TenantId&)> owns;
    // The address of the node that processes a tenant, when another node does and it is known:
    // requests about its state are forwarded there.
    std::function<std::optional<std::string>(const TenantId&)> owner_url;
    // Changes the partition count of a tenant processed here; the sealed layouts
    // (ClusterNode::ChangeLayout).
    std::function<Result<std::vector<model::PartitionLayout>>(const model::TenantConfig&, uint32_t)>
        change_layout;
  };
  // Before serving.
  void SetClusterView(ClusterView view);

  // /readyz answers 200 only after this.
  void SetReady(bool ready) { ready_ = ready; }
  // Once ready, /readyz also asks `check`: a non-OK status answers 503 with its message as the
  // reason (e.g. storage that refuses writes). Before serving; called on I/O threads.
  void SetReadinessCheck(std::function<Status()> check) { readiness_check_ = std::move(check); }

  // Finishes deleting tenants left in the `deleting` state (by a crash mid-delete).
  Status ResumeDeletions();
  // Deletes what this node keeps of a tenant being deleted: its processing state, timers,
  // deliveries, campaigns and their statistics (in a cluster, the owner of the tenant's slot
  // does this when it learns of the deletion). Not its log, nor its registry entry.
  Status DeleteTenantState(const TenantId& id);
  // Queues, behind the admin operations in progress, a pass that gives every tenant the
  // partition layouts its log has recorded and the registry has not (a partition-count change
  // cut short: its seal failed or timed out, or the process stopped), and processing with them.
  // Logs what it cannot read. The server runs it at start and then periodically.
  void FollowLogLayouts();

 private:
  // The browser front door (web_api.cpp). The long route kind of an ingest route's last part
  // ("t" -> "track", "b" -> "batch", "track" -> "track"); nullopt when it is none.
  static std::optional<std::string_view> IngestRouteKind(std::string_view kind);
  // Access-Control-Allow-Origin for `origin` (nothing when empty).
  static void AddCors(std::string_view origin, HttpResponse* r);
  // CORS preflights of the browser routes, GET /v1/projects/{writeKey}/settings and
  // GET /v1/pixel/{type}; false when `req` is none of them.
  bool HandleWeb(HttpRequest& req, std::string_view path, std::string_view query,
                 Responder& respond, int64_t start_ns);
  HttpResponse ProjectSettings(const HttpRequest& req, std::string_view write_key);
  void HandlePixel(HttpRequest& req, std::string_view kind, std::string_view query,
                   Responder respond, int64_t start_ns);
  // `browser`: the request comes from a browser although it has no Origin (the pixel).
  void HandleIngest(HttpRequest& req, std::optional<model::ActivityType> endpoint,
                    Responder respond, int64_t start_ns, bool browser = false);
  void HandleAdmin(HttpRequest& req, std::string_view path, std::string_view query,
                   Responder respond);
  void HandleActivities(HttpRequest& req, std::string_view query, Responder respond);
  // /admin/v1/tenants/{id}/processing... and /dead-letters... (on the admin task thread).
  // GET /admin/v1/cluster: the processing tasks, their owner, lag and state size.
  HttpResponse HandleClusterAdmin(std::string_view query);
  HttpResponse HandleProcessingAdmin(const TenantId& id, std::string_view action,
                                     const std::string& method, const std::string& query,
                                     const std::string& body);
  // GET /v1/leads and /v1/leads/{id}.
  void HandleSessions(HttpRequest& req, std::string_view query, Responder respond);
  // Every identity of the person `id` (a userId, anonymousId, alias or email) names, as the
  // leads processor merged them; just `id` when it does not know the id.
  Result<std::vector<std::string>> PersonIdentities(const TenantId& tenant, const std::string& id);
  void HandleLeads(HttpRequest& req, std::string_view path, std::string_view query,
                   Responder respond);
  // /v1/campaigns..., /v1/campaign-settings, /v1/deliveries... (campaigns_api.cpp).
  void HandleCampaigns(HttpRequest& req, std::string_view path, std::string_view query,
                       Responder respond);
  HttpResponse HandleCampaignRoute(const model::TenantConfig& tenant, std::string_view path,
                                   const std::string& method, const std::string& query,
                                   const std::string& body);
  // The answer to a request refused by tenancy's ingest admission: the error, and for a rate
  // refusal (ResourceExhausted) Retry-After and the RateLimit headers.
  static HttpResponse AdmissionRefused(const Status& st, const tenancy::IngestAdmission& adm);
  // The tenant an API key belongs to, or the error response.
  Result<model::TenantConfig> AuthenticateApiKey(const HttpRequest& req);
  Status DeleteTenant(const TenantId& id);
  // FollowLogLayouts for one tenant; on the admin task queue.
  Status FollowLogLayouts(const TenantId& id);
  std::atomic<bool> follow_layouts_queued_{false};
  // Tenants whose layout the registry took but the engine refused (on the admin task queue).
  std::set<std::string> engine_behind_;
  // Brownout: whether a request of `activities` is anonymous web traffic and the ingest queue
  // has reached ApiOptions::shed_anonymous_at.
  bool ShedsAnonymous(const std::vector<model::Activity>& activities) const;
  // 429 + Retry-After for a tenant holding its share of the ingest queue.
  HttpResponse OverShare(const model::TenantConfig& tenant);
  // The 429 for a write key whose tenant already holds its share of the ingest queue (checked
  // before the body is parsed, by Screen from the header and again by HandleIngest for
  // requests that reach it without Screen); nullopt to go on.
  std::optional<HttpResponse> RefuseOverShare(std::string_view write_key);

  struct TenantMetrics {
    Counter* accepted;
    Counter* duplicate;
    Counter* rejected;
    Counter* bot;
    Counter* shed;
  };
  TenantMetrics MetricsFor(const TenantId& id);

  ApiOptions options_;
  tenancy::TenantRegistry* tenants_;
  log::ActivityLog* log_;
  log::ActivityIndex* index_;
  engine::Engine* engine_;
  identity::LeadStore* leads_;
  const sessions::SessionStore* sessions_ = nullptr;
  CampaignServices campaigns_;
  const enrich::Enricher* enricher_ = nullptr;
  ClusterView cluster_;
  // In a cluster: Unavailable naming the tenant's slot unless this node processes the tenant
  // (its leads, campaigns and processing state live on the node that does).
  Status CheckProcessedHere(const TenantId& tenant) const;
  // Answers a request about the state of a tenant this node does not process: with the answer of
  // the node that does (forwarded off the I/O threads), or 503 when that node is not known or
  // the request was forwarded already (it reached a node that no longer owns the slot).
  void ForwardOrRefuse(const TenantId& tenant, HttpRequest req, Responder respond);
  // Forwarded requests wait for the other node on these threads, round robin.
  std::vector<std::unique_ptr<TaskQueue>> forward_tasks_;
  std::atomic<size_t> next_forward_{0};
  const Clock* clock_;
  MetricsRegistry* metrics_;
  std::atomic<bool> ready_{false};
  std::function<Status()> readiness_check_;
  Histogram* ingest_latency_;
  Histogram* other_latency_;
  Counter* unauthenticated_;
  Counter* over_share_;
  IngestShares ingest_shares_;
  std::mutex tenant_metrics_mu_;
  std::unordered_map<std::string, TenantMetrics> tenant_metrics_;
  std::unique_ptr<TaskQueue> admin_tasks_;
  // Partition count changes in a cluster, which wait for the other nodes: off admin_tasks_.
  std::unique_ptr<TaskQueue> layout_tasks_;
};

}  // namespace fairway::http
