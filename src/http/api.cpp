#include "http/api.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/url/params_view.hpp>
#include <charconv>
#include <cmath>

#include "campaigns/campaign_stats.h"
#include "common/crypto.h"
#include "common/json_writer.h"
#include "common/time_format.h"
#include "http/forward.h"
#include "http/responses.h"

namespace fairway::http {

Api::Api(ApiOptions options, tenancy::TenantRegistry* tenants, log::ActivityLog* log,
         log::ActivityIndex* index, engine::Engine* engine, identity::LeadStore* leads,
         const Clock* clock, MetricsRegistry* metrics)
    : options_(std::move(options)),
      tenants_(tenants),
      log_(log),
      index_(index),
      engine_(engine),
      leads_(leads),
      clock_(clock),
      metrics_(metrics),
      ingest_shares_(options_.ingest_queue_events),
      admin_tasks_(std::make_unique<TaskQueue>()) {
  ingest_latency_ = metrics->GetHistogram("fairway_http_request_seconds",
                                          "HTTP request latency, receipt to response.",
                                          LatencyBuckets(), {{"route", "ingest"}});
  other_latency_ = metrics->GetHistogram("fairway_http_request_seconds", "", LatencyBuckets(),
                                         {{"route", "other"}});
  unauthenticated_ = metrics->GetCounter("fairway_ingest_unauthenticated_total",
                                         "Ingest requests refused for a bad or missing write key.");
  over_share_ = metrics->GetCounter(
      "fairway_ingest_over_share_total",
      "Ingest requests refused because their tenant held its share of the ingest queue.");
}

Api::~Api() { Stop(); }

void Api::Stop() {
  admin_tasks_->Stop();
  if (layout_tasks_) layout_tasks_->Stop();
  for (auto& q : forward_tasks_) q->Stop();
}

void Api::SetClusterView(ClusterView view) {
  cluster_ = std::move(view);
  while (forward_tasks_.size() < 4) forward_tasks_.push_back(std::make_unique<TaskQueue>());
  if (!layout_tasks_) layout_tasks_ = std::make_unique<TaskQueue>();
}

void Api::ForwardOrRefuse(const TenantId& tenant, HttpRequest req, Responder respond) {
  std::optional<std::string> owner =
      req.forwarded_by.empty() && cluster_.owner_url ? cluster_.owner_url(tenant) : std::nullopt;
  if (!owner || forward_tasks_.empty()) return respond(Error(CheckProcessedHere(tenant)));
  TaskQueue& q = *forward_tasks_[next_forward_++ % forward_tasks_.size()];
  q.Submit([this, owner = std::move(*owner), req = std::move(req),
            respond = std::move(respond)]() mutable {
    respond(ForwardRequest(owner, req, options_.node_id));
  });
}

Api::TenantMetrics Api::MetricsFor(const TenantId& id) {
  std::lock_guard lock(tenant_metrics_mu_);
  auto it = tenant_metrics_.find(id.str());
  if (it != tenant_metrics_.end()) return it->second;
  const char* help = "Ingested events per tenant by outcome.";
  TenantMetrics m{metrics_->GetCounter("fairway_ingest_events_total", help,
                                       {{"tenant", id.str()}, {"outcome", "accepted"}}),
                  metrics_->GetCounter("fairway_ingest_events_total", help,
                                       {{"tenant", id.str()}, {"outcome", "duplicate"}}),
                  metrics_->GetCounter("fairway_ingest_events_total", help,
                                       {{"tenant", id.str()}, {"outcome", "rejected"}}),
                  metrics_->GetCounter("fairway_ingest_events_total", help,
                                       {{"tenant", id.str()}, {"outcome", "bot"}}),
                  metrics_->GetCounter("fairway_ingest_events_total", help,
                                       {{"tenant", id.str()}, {"outcome", "shed"}})};
  return tenant_metrics_.emplace(id.str(), m).first->second;
}

void Api::Handle(HttpRequest req, Responder respond) {
  const int64_t start_ns = clock_->MonotonicNanos();
  std::string_view target = req.target;
  std::string_view path = target.substr(0, target.find('?'));
  std::string_view query =
      target.find('?') == std::string_view::npos ? "" : target.substr(target.find('?') + 1);
  path = StripTrailingSlash(path);

  if (path.substr(0, 4) == "/v1/" && req.method == "POST") {
    if (auto kind = IngestRouteKind(path.substr(4))) {
      if (*kind == "batch" || *kind == "import") {
        return HandleIngest(req, std::nullopt, std::move(respond), start_ns);
      }
      return HandleIngest(req, model::ParseActivityType(*kind), std::move(respond), start_ns);
    }
  }
  if (path.substr(0, 4) == "/v1/" && HandleWeb(req, path, query, respond, start_ns)) return;
  auto timed = [this, start_ns, respond = std::move(respond)](HttpResponse r) {
    other_latency_->Observe(static_cast<double>(clock_->MonotonicNanos() - start_ns) / 1e9);
    respond(std::move(r));
  };
  if (path.substr(0, 10) == "/admin/v1/") return HandleAdmin(req, path, query, std::move(timed));
  if (path == "/v1/leads" || path.substr(0, 10) == "/v1/leads/") {
    if (req.method != "GET") return timed(Error(InvalidArgument("use GET for /v1/leads")));
    return HandleLeads(req, path, query, std::move(timed));
  }
  if (path == "/v1/campaigns" || path.starts_with("/v1/campaigns/") ||
      path == "/v1/campaign-settings" || path == "/v1/deliveries" ||
      path == "/v1/deliveries/retry") {
    return HandleCampaigns(req, path, query, std::move(timed));
  }
  if (path == "/v1/sessions") {
    if (req.method != "GET") return timed(Error(InvalidArgument("use GET for /v1/sessions")));
    return HandleSessions(req, query, std::move(timed));
  }
  if (path == "/v1/activities") {
    if (req.method != "GET") return timed(Error(InvalidArgument("use GET for /v1/activities")));
    return HandleActivities(req, query, std::move(timed));
  }
  if (path == "/healthz") return timed(Json(200, R"({"status":"ok"})"));
  if (path == "/readyz") {
    Status healthy = readiness_check_ ? readiness_check_() : Status::Ok();
    if (ready_ && healthy.ok()) return timed(Json(200, R"({"status":"ready"})"));
    JsonWriter w;
    if (!ready_) {
      w.BeginObject().Key("status").String("starting");
    } else {
      w.BeginObject().Key("status").String("unavailable").Key("reason").String(healthy.message());
    }
    w.EndObject();
    HttpResponse r = Json(503, w.Take());
    r.headers.emplace_back("Retry-After", "1");
    return timed(std::move(r));
  }
  if (path == "/metrics") {
    if (!options_.metrics_token.empty()) {
      auto token = BearerToken(req.authorization);
      if (!token || !ConstantTimeEquals(*token, options_.metrics_token)) {
        HttpResponse r =
            Error(Unauthenticated("/metrics needs 'Authorization: Bearer <metrics token>'"));
        r.headers = {{"WWW-Authenticate", "Bearer realm=\"fairway-metrics\""}};
        return timed(std::move(r));
      }
    }
    HttpResponse r;
    r.content_type = "text/plain; version=0.0.4";
    r.body = metrics_->RenderPrometheus();
    return timed(std::move(r));
  }
  timed(Error(NotFound(fmt::format("no route for {} {}", req.method, path))));
}

std::optional<HttpResponse> Api::Screen(const HttpRequest& head) {
  if (head.method != "POST" || !head.target.starts_with("/v1/")) return std::nullopt;
  auto write_key = BasicUser(head.authorization);
  if (!write_key || write_key->empty()) return std::nullopt;
  return RefuseOverShare(*write_key);
}

std::optional<HttpResponse> Api::RefuseOverShare(std::string_view write_key) {
  tenancy::IngestAdmission pre;
  if (!tenants_->AdmitIngest(write_key, 0, &pre).ok()) return std::nullopt;
  if (!ingest_shares_.OverShare(pre.tenant.id, pre.tenant.quotas.processing_weight)) {
    return std::nullopt;
  }
  return OverShare(pre.tenant);
}

void Api::HandleIngest(HttpRequest& req, std::optional<model::ActivityType> endpoint,
                       Responder respond, int64_t start_ns, bool browser) {
  // A browser may read the answer, unless its origin is refused.
  auto cors = std::make_shared<bool>(!req.origin.empty());
  auto done = [this, start_ns, cors, origin = req.origin,
               respond = std::move(respond)](HttpResponse r) {
    if (*cors) AddCors(origin, &r);
    ingest_latency_->Observe(static_cast<double>(clock_->MonotonicNanos() - start_ns) / 1e9);
    respond(std::move(r));
  };
  std::optional<std::string> write_key;
  if (!req.authorization.empty()) {
    write_key = BasicUser(req.authorization);
    if (!write_key || write_key->empty()) {
      unauthenticated_->Add();
      return done(Error(
          Unauthenticated("Authorization must be HTTP Basic with the write key as user name")));
    }
  }
  // A tenant that already holds its share of the ingest queue is refused before its body is
  // parsed, so a flood costs the server little.
  if (write_key) {
    if (auto refused = RefuseOverShare(*write_key)) return done(std::move(*refused));
  }
  auto parsed =
      model::ParseSegmentRequest(req.body, endpoint, clock_->NowMillis(), options_.segment_limits);
  if (!write_key && parsed.ok() && !parsed->body_write_key.empty()) {
    write_key = parsed->body_write_key;
  }
  if (!write_key) {
    unauthenticated_->Add();
    return done(Error(Unauthenticated(
        "missing write key: send it as the HTTP Basic user name or as 'writeKey' in the body")));
  }
  size_t events = parsed.ok() ? parsed->activities.size() + parsed->errors.size() : 1;
  tenancy::IngestAdmission adm;
  Status admitted = tenants_->AdmitIngest(*write_key, events, &adm);
  if (admitted.code() == StatusCode::kUnauthenticated) {
    unauthenticated_->Add();
    return done(Error(admitted));
  }
  TenantMetrics tm = MetricsFor(adm.tenant.id);
  if (!admitted.ok()) {
    tm.rejected->Add(events);
    return done(AdmissionRefused(admitted, adm));
  }
  if (!req.origin.empty() && !model::OriginAllowed(adm.tenant.web, req.origin)) {
    tm.rejected->Add(events);
    *cors = false;
    return done(Error(
        PermissionDenied(fmt::format("origin '{}' is not in tenant '{}''s web.allowed_origins",
                                     req.origin, adm.tenant.id.str()))));
  }
  if (adm.tenant.web.drop_bots && !req.user_agent.empty() &&
      model::IsBotUserAgent(req.user_agent)) {
    // Answered as accepted, so that the bot does not re-send.
    tm.bot->Add(events);
    return done(Json(200, R"({"success":true,"dropped":"bot"})"));
  }
  if (!parsed.ok()) {
    tm.rejected->Add(events);
    return done(Error(parsed.status()));
  }
  if (!parsed->errors.empty()) {
    tm.rejected->Add(events);
    JsonWriter w;
    w.BeginObject().Key("success").Bool(false).Key("error").BeginObject();
    w.Key("code").String("invalid_argument");
    w.Key("message").String(
        fmt::format("{} invalid message(s); nothing was stored", parsed->errors.size()));
    w.EndObject().Key("errors").BeginArray();
    for (const auto& e : parsed->errors) {
      w.BeginObject().Key("index").Int(e.index).Key("field").String(e.field);
      w.Key("message").String(e.message).EndObject();
    }
    w.EndArray().EndObject();
    return done(Json(400, w.Take()));
  }
  if (ShedsAnonymous(parsed->activities)) {
    tm.shed->Add(events);
    HttpResponse r = Error(Unavailable(
        "the server is under load and sheds anonymous visitors' events first; retry later"));
    r.headers.emplace_back("Retry-After", "1");
    return done(std::move(r));
  }
  if (enricher_ != nullptr && adm.tenant.web.enrich) {
    // A browser's request says who the visitor is (address, User-Agent); a server's says who
    // the server is, so only what its messages carry is enriched.
    browser = browser || !req.origin.empty();
    const enrich::ClientInfo client{
        .ip = browser ? req.client_ip : "", .user_agent = req.user_agent, .browser = browser};
    for (auto& a : parsed->activities) {
      if (browser || enrich::Enricher::HasVisitorContext(a)) {
        enricher_->Enrich(&a, client, {.anonymize_ip = adm.tenant.web.anonymize_ip});
      }
    }
  }
  size_t queued = parsed->activities.size();
  switch (ingest_shares_.TryAcquire(adm.tenant.id, adm.tenant.quotas.processing_weight, queued)) {
    case IngestShares::Verdict::kAdmitted:
      break;
    case IngestShares::Verdict::kOverShare:
      tm.rejected->Add(events);
      return done(OverShare(adm.tenant));
    case IngestShares::Verdict::kFull:
      tm.rejected->Add(events);
      return done(Error(Unavailable("the ingest queue is full; retry later")));
  }
  log::AppendRequest append = log::AppendRequestFor(adm.tenant);
  append.activities = std::move(parsed->activities);
  std::string remaining = fmt::format("{:.0f}", adm.remaining);
  std::string limit = fmt::format("{:.0f}", adm.limit);
  log_->Append(std::move(append), [this, tenant = adm.tenant.id, queued, tm, done = std::move(done),
                                   remaining, limit](Result<log::AppendResult> r) mutable {
    ingest_shares_.Release(tenant, queued);
    if (!r.ok()) return done(Error(r.status()));
    tm.accepted->Add(r->stored);
    tm.duplicate->Add(r->duplicates);
    HttpResponse res = Json(200, R"({"success":true})");
    res.headers.emplace_back("RateLimit-Limit", limit);
    res.headers.emplace_back("RateLimit-Remaining", remaining);
    done(std::move(res));
  });
}

bool Api::ShedsAnonymous(const std::vector<model::Activity>& activities) const {
  const double full = 2.0 * static_cast<double>(ingest_shares_.capacity());
  if (static_cast<double>(ingest_shares_.total()) < options_.shed_anonymous_at * full) {
    return false;
  }
  // Known leads' events, and the identifies and aliases that make a visitor known, go on.
  for (const auto& a : activities) {
    if (!a.user_id.empty() ||
        (a.type != model::ActivityType::kTrack && a.type != model::ActivityType::kPage &&
         a.type != model::ActivityType::kScreen)) {
      return false;
    }
  }
  return !activities.empty();
}

HttpResponse Api::OverShare(const model::TenantConfig& tenant) {
  over_share_->Add();
  HttpResponse r = Error(ResourceExhausted(fmt::format(
      "tenant '{}' has {} events waiting to be stored, its share of the ingest queue (quotas."
      "processing_weight {}); retry later",
      tenant.id.str(), ingest_shares_.InFlight(tenant.id), tenant.quotas.processing_weight)));
  r.headers.emplace_back("Retry-After", "1");
  return r;
}

HttpResponse Api::AdmissionRefused(const Status& st, const tenancy::IngestAdmission& adm) {
  HttpResponse r = Error(st);
  if (st.code() == StatusCode::kResourceExhausted) {
    auto wait = static_cast<int64_t>(std::ceil(std::max(adm.retry_after_s, 0.001)));
    r.headers.emplace_back("Retry-After", std::to_string(wait));
    r.headers.emplace_back("RateLimit-Limit", fmt::format("{:.0f}", adm.limit));
    r.headers.emplace_back("RateLimit-Remaining", fmt::format("{:.0f}", adm.remaining));
    r.headers.emplace_back("RateLimit-Reset", std::to_string(wait));
  }
  return r;
}

Status Api::DeleteTenant(const TenantId& id) {
  auto marked = tenants_->SetStatus(id, model::TenantStatus::kDeleting);
  if (!marked.ok() && marked.status().code() != StatusCode::kFailedPrecondition) {
    return marked.status();  // (already deleting is fine: finish the job)
  }
  FAIRWAY_RETURN_IF_ERROR(DeleteTenantState(id));
  FAIRWAY_RETURN_IF_ERROR(log_->DropTenant(id));
  FAIRWAY_RETURN_IF_ERROR(tenants_->Remove(id));
  metrics_->RemoveSeriesWithLabel("tenant", id.str());
  std::lock_guard lock(tenant_metrics_mu_);
  tenant_metrics_.erase(id.str());
  return Status::Ok();
}

Status Api::CheckProcessedHere(const TenantId& tenant) const {
  if (cluster_.slots == 0 || cluster_.owns(tenant)) return Status::Ok();
  // Transient: the slot is between owners, or this node has not heard of its new one yet.
  return Unavailable(fmt::format(
      "tenant '{}' is processed by another node of this cluster (slot {}), which holds its "
      "leads, campaigns and processing state, and that node is not known here now (the slot "
      "is moving between nodes): retry",
      tenant.str(), cluster_.slot_of(tenant)));
}

Status Api::DeleteTenantState(const TenantId& id) {
  // Processing stops first (waiting for work in progress), so nothing writes state after it
  // is deleted.
  FAIRWAY_RETURN_IF_ERROR(engine_->RemoveTenant(id));
  if (campaigns_.timers) FAIRWAY_RETURN_IF_ERROR(campaigns_.timers->RemoveTenant(id));
  if (campaigns_.dispatcher) FAIRWAY_RETURN_IF_ERROR(campaigns_.dispatcher->RemoveTenant(id));
  if (campaigns_.registry) FAIRWAY_RETURN_IF_ERROR(campaigns_.registry->RemoveTenant(id));
  if (campaigns_.store) {
    FAIRWAY_RETURN_IF_ERROR(campaigns::RemoveCampaignStats(campaigns_.store, id));
  }
  return Status::Ok();
}

Status Api::ResumeDeletions() {
  for (const auto& t : tenants_->List()) {
    if (t.status == model::TenantStatus::kDeleting) FAIRWAY_RETURN_IF_ERROR(DeleteTenant(t.id));
  }
  return Status::Ok();
}

void Api::FollowLogLayouts() {
  // One pass waits at a time: a pass slowed down (a seal waiting for Kafka) does not pile up
  // more of them in front of admin operations.
  if (follow_layouts_queued_.exchange(true)) return;
  admin_tasks_->Submit([this] {
    follow_layouts_queued_ = false;
    for (const auto& t : tenants_->List()) {
      if (t.status == model::TenantStatus::kDeleting) continue;
      if (Status st = FollowLogLayouts(t.id); !st.ok()) {
        spdlog::warn("partition layouts of tenant '{}': {}", t.id.str(), st.ToString());
      }
    }
  });
}

Status Api::FollowLogLayouts(const TenantId& id) {
  FAIRWAY_ASSIGN_OR_RETURN(auto layouts, log_->Layouts(id));
  FAIRWAY_ASSIGN_OR_RETURN(auto before, tenants_->Get(id));
  FAIRWAY_ASSIGN_OR_RETURN(auto adopted, tenants_->AdoptLayouts(id, layouts));
  // The engine is given the layout when the registry takes it, and again after that failed.
  const bool changed = adopted.first_partition() != before.first_partition();
  if (!changed && !engine_behind_.count(id.str())) return Status::Ok();
  if (changed) {
    spdlog::info("tenant '{}': took the partition layout from {} ({} partitions) the log started",
                 id.str(), adopted.first_partition(), adopted.partitions);
  }
  Status st = engine_->UpsertTenant(adopted);
  if (st.ok()) {
    engine_behind_.erase(id.str());
  } else {
    engine_behind_.insert(id.str());
  }
  return st;
}

void Api::HandleAdmin(HttpRequest& req, std::string_view path, std::string_view query,
                      Responder respond) {
  auto token = BearerToken(req.authorization);
  if (!token || options_.admin_token.empty() || !ConstantTimeEquals(*token, options_.admin_token)) {
    HttpResponse r =
        Error(Unauthenticated("admin routes need 'Authorization: Bearer <admin token>'"));
    r.headers = {{"WWW-Authenticate", "Bearer realm=\"fairway-admin\""}};
    return respond(std::move(r));
  }
  if (StripTrailingSlash(path) == "/admin/v1/cluster") {
    if (req.method != "GET") {
      return respond(Error(InvalidArgument(fmt::format("{} is not allowed here", req.method))));
    }
    admin_tasks_->Submit([this, query = std::string(query), respond = std::move(respond)] {
      respond(HandleClusterAdmin(query));
    });
    return;
  }
  constexpr std::string_view kTenants = "/admin/v1/tenants";
  if (path.substr(0, kTenants.size()) != kTenants) {
    return respond(Error(NotFound(fmt::format("no admin route {}", path))));
  }
  std::string_view rest = path.substr(kTenants.size());
  std::string method = req.method;
  std::string body = std::move(req.body);
  // Every admin operation writes synchronously or reads a consistent view: run them in order,
  // off the I/O threads.
  admin_tasks_->Submit([this, rest = std::string(rest), query = std::string(query), method,
                        body = std::move(body), forwarded_by = std::move(req.forwarded_by),
                        respond = std::move(respond)]() {
    // Tenant changes reach the processing engine before the answer does.
    auto applied = [this](const Result<model::TenantConfig>& t) -> HttpResponse {
      if (!t.ok()) return Error(t.status());
      if (Status st = engine_->UpsertTenant(*t); !st.ok()) return Error(st);
      return Json(200, model::TenantToApiJson(*t));
    };
    auto tenant_json = [](const model::TenantConfig& t) { return model::TenantToApiJson(t); };
    if (rest.empty()) {
      if (method == "GET") {
        JsonWriter w;
        w.BeginObject().Key("tenants").BeginArray();
        for (const auto& t : tenants_->List()) w.Raw(tenant_json(t));
        w.EndArray().EndObject();
        return respond(Json(200, w.Take()));
      }
      if (method == "POST") {
        auto config = model::ParseTenantCreate(body, options_.tenant_defaults);
        if (!config.ok()) return respond(Error(config.status()));
        if (cluster_.slots > 0) {
          auto slot = cluster_.place(*config);
          if (!slot.ok()) return respond(Error(slot.status()));
          config->placement.slot = *slot;
        } else if (config->placement.slot) {
          return respond(Error(InvalidArgument(
              "field 'placement.slot' applies to a cluster's nodes only (cluster.enabled)")));
        }
        if (!tenants_->Get(config->id).ok()) {
          // The id may belong to a tenant deleted earlier: let the log accept it again.
          if (Status st = log_->ReopenTenant(config->id); !st.ok()) return respond(Error(st));
        }
        auto created = tenants_->Create(std::move(config).value());
        if (!created.ok()) return respond(Error(created.status()));
        if (Status st = engine_->UpsertTenant(created->config); !st.ok()) {
          return respond(Error(st));
        }
        std::string json = tenant_json(created->config);
        json.pop_back();
        json += fmt::format(R"(,"write_key":"{}","api_key":"{}"}})", created->keys.write_key,
                            created->keys.api_key);
        spdlog::info("tenant '{}' created", created->config.id.str());
        return respond(Json(201, std::move(json)));
      }
      return respond(Error(InvalidArgument(fmt::format("{} is not allowed here", method))));
    }
    std::string_view r = rest;
    r.remove_prefix(1);
    std::string_view id_part = r.substr(0, r.find('/'));
    std::string_view action =
        r.find('/') == std::string_view::npos ? "" : r.substr(r.find('/') + 1);
    TenantId id(id_part);
    if (action.empty()) {
      if (method == "GET") {
        auto t = tenants_->Get(id);
        return respond(t.ok() ? Json(200, tenant_json(*t)) : Error(t.status()));
      }
      if (method == "PATCH") {
        // A layout the log started without the registry storing it (a change that failed or
        // was cut short) is taken before the change, and again after a failed one, so that
        // processing follows the log.
        // In a cluster, the node that processes the tenant changes its partition count.
        if (cluster_.slots == 0) (void)FollowLogLayouts(id);
        bool forward = false;
        std::optional<uint32_t> cluster_count;
        auto layout_starter = [&](const model::TenantConfig& t,
                                  uint32_t count) -> Result<std::vector<uint64_t>> {
          if (cluster_.slots > 0) {
            // Made below, outside the registry's write lock: the change waits for the
            // other nodes, whose answers come through the config topic, which the registry
            // takes too.
            forward = !CheckProcessedHere(t.id).ok();
            cluster_count = count;
            return FailedPrecondition("field 'partitions': changed in the cluster");
          }
          auto ends = log_->StartLayout(t, count);
          if (ends.ok()) {
            spdlog::info("tenant '{}': {} partitions from partition {} after {} from {}",
                         t.id.str(), count, t.log_partitions(), t.partitions, t.first_partition());
          }
          return ends;
        };
        auto updated = tenants_->Update(id, body, layout_starter);
        if (cluster_count && !forward) {
          // The change through every node, recorded in the registry (and the config topic)
          // once sealed; then the rest of the body, whose partition count now holds. It waits
          // for the other nodes (up to cluster.layout_change_timeout_ms): on a queue of its
          // own, so that this node's other admin operations do not wait behind it.
          return layout_tasks_->Submit([this, id, body, count = *cluster_count, applied,
                                        respond = std::move(respond)]() mutable {
            auto t = tenants_->Get(id);
            if (!t.ok()) return respond(Error(t.status()));
            auto layouts = cluster_.change_layout(*t, count);
            if (!layouts.ok()) return respond(Error(layouts.status()));
            auto adopted = tenants_->AdoptLayouts(id, *layouts);
            if (!adopted.ok()) return respond(Error(adopted.status()));
            respond(applied(tenants_->Update(
                id, body,
                [](const model::TenantConfig&, uint32_t) -> Result<std::vector<uint64_t>> {
                  return FailedPrecondition(
                      "field 'partitions': the count changed again while this change ran");
                })));
          });
        }
        if (forward) {
          HttpRequest again{.method = method,
                            .target = fmt::format("/admin/v1/tenants{}", rest),
                            .authorization = "Bearer " + options_.admin_token,
                            .content_type = "application/json",
                            .body = body,
                            .forwarded_by = forwarded_by};
          return ForwardOrRefuse(id, std::move(again), std::move(respond));
        }
        if (!updated.ok() && cluster_.slots == 0) (void)FollowLogLayouts(id);
        return respond(applied(updated));
      }
      if (method == "DELETE") {
        if (auto t = tenants_->Get(id); !t.ok()) return respond(Error(t.status()));
        Status st = DeleteTenant(id);
        if (!st.ok()) return respond(Error(st));
        spdlog::info("tenant '{}' deleted", id.str());
        return respond(Json(200, R"({"success":true})"));
      }
    } else if (method == "POST") {
      if (action == "suspend" || action == "resume") {
        return respond(
            applied(tenants_->SetStatus(id, action == "suspend" ? model::TenantStatus::kSuspended
                                                                : model::TenantStatus::kActive)));
      }
      if (action == "rotate-keys") {
        auto keys = tenants_->RotateKeys(id);
        if (!keys.ok()) return respond(Error(keys.status()));
        return respond(Json(200, fmt::format(R"({{"id":"{}","write_key":"{}","api_key":"{}"}})",
                                             id.str(), keys->write_key, keys->api_key)));
      }
    }
    if (action.starts_with("processing") || action.starts_with("dead-letters")) {
      if (auto t = tenants_->Get(id); !t.ok()) return respond(Error(t.status()));
      if (!CheckProcessedHere(id).ok()) {
        HttpRequest again{
            .method = method,
            .target = fmt::format("/admin/v1/tenants{}{}{}", rest, query.empty() ? "" : "?", query),
            .authorization = "Bearer " + options_.admin_token,
            .content_type = "application/json",
            .body = body,
            .forwarded_by = forwarded_by};
        return ForwardOrRefuse(id, std::move(again), std::move(respond));
      }
      return respond(HandleProcessingAdmin(id, action, method, query, body));
    }
    respond(Error(NotFound(fmt::format("no admin route {} /admin/v1/tenants{}", method, rest))));
  });
}

Result<model::TenantConfig> Api::AuthenticateApiKey(const HttpRequest& req) {
  auto token = BearerToken(req.authorization);
  if (!token) return Unauthenticated("send the tenant's API key as 'Authorization: Bearer'");
  return tenants_->AuthenticateApiKey(*token);
}

void Api::HandleActivities(HttpRequest& req, std::string_view query, Responder respond) {
  auto tenant = AuthenticateApiKey(req);
  if (!tenant.ok()) return respond(Error(tenant.status()));
  // In a cluster, the index of every node's activities is the processing node's.
  if (!CheckProcessedHere(tenant->id).ok()) {
    return ForwardOrRefuse(tenant->id, std::move(req), std::move(respond));
  }

  log::ActivityQuery q;
  q.tenant = tenant->id;
  auto params = ParseQuery(query);
  if (!params.ok()) return respond(Error(params.status()));
  // Not a structured binding: clang 14 (the fuzz build) cannot capture one in a lambda.
  for (auto& param : *params) {
    const std::string& key = param.first;
    std::string& value = param.second;
    auto parse_time = [&](int64_t* out) -> Status {
      if (auto ms = ParseIso8601Millis(value)) {
        *out = *ms;
        return Status::Ok();
      }
      return InvalidArgument(fmt::format("parameter '{}' must be an ISO 8601 date-time", key));
    };
    Status st;
    if (key == "lead") {
      q.lead = LeadId(value);
    } else if (key == "type") {
      auto t = model::ParseActivityType(value);
      if (!t)
        st = InvalidArgument(
            "parameter 'type' must be track, identify, page, screen, group or alias");
      q.type = t;
    } else if (key == "event") {
      q.event = value;
    } else if (key == "since") {
      st = parse_time(&q.since_ms);
    } else if (key == "until") {
      st = parse_time(&q.until_ms);
    } else if (key == "cursor") {
      q.cursor = value;
    } else if (key == "order") {
      if (value != "asc" && value != "desc")
        st = InvalidArgument("parameter 'order' must be asc or desc");
      q.newest_first = value != "asc";
    } else if (key == "limit") {
      auto n = ParseIntParam(key, value, 1, 1000);
      st = n.status();
      if (n.ok()) q.limit = static_cast<size_t>(*n);
    } else {
      st = InvalidArgument(fmt::format("parameter '{}' is not known", key));
    }
    if (!st.ok()) return respond(Error(st));
  }
  if (q.lead.empty()) return respond(Error(InvalidArgument("parameter 'lead' is required")));
  // Any identity of a person (userId, anonymousId, alias, email) reads the person's whole
  // timeline: the activities indexed under every identity the leads processor merged.
  auto identities = PersonIdentities(q.tenant, q.lead.str());
  if (!identities.ok()) return respond(Error(identities.status()));
  for (auto& id : *identities) q.also.emplace_back(std::move(id));
  auto page = index_->Query(q);
  if (!page.ok()) return respond(Error(page.status()));
  std::string body = "{\"data\":[";
  for (size_t i = 0; i < page->entries.size(); ++i) {
    const auto& e = page->entries[i];
    if (i) body.push_back(',');
    std::string extra =
        fmt::format(R"("partition":{},"offset":{})", e.partition.value(), e.offset.value());
    // The visit's session, once the sessions processor has seen it.
    if (sessions_ != nullptr && e.activity.type != model::ActivityType::kFairway &&
        !e.activity.LeadKey().empty()) {
      auto session = sessions_->SessionAt(q.tenant, e.activity.LeadKey(), e.activity.timestamp_ms);
      if (!session.ok()) return respond(Error(session.status()));
      if (*session) {
        extra.append(",\"sessionId\":");
        AppendJsonString(&extra, **session);
      }
    }
    model::AppendActivityJson(e.activity, &body, extra);
  }
  FinishPageJson(page->next_cursor, &body);
  respond(Json(200, std::move(body)));
}

}  // namespace fairway::http
