// The campaign routes of the public API (tenant API key):
//   POST   /v1/campaigns                      create ({"id": ..} optional; generated if absent)
//   GET    /v1/campaigns?cursor=&limit=       list
//   GET    /v1/campaigns/{id}                 one campaign with its definition
//   PUT    /v1/campaigns/{id}                 replace the definition
//   DELETE /v1/campaigns/{id}
//   POST   /v1/campaigns/{id}/{activate,deactivate}
//   POST   /v1/campaigns/{id}/trigger         request the campaign for leads, with tokens
//   GET    /v1/campaigns/{id}/stats?since=&until=
//   GET    /v1/campaign-settings, PATCH /v1/campaign-settings
//   GET    /v1/deliveries?state=pending|dead&cursor=&limit=
//   POST   /v1/deliveries/retry               {"ids": [..]} (empty: every dead delivery)

#include <fmt/format.h>

#include <boost/json.hpp>
#include <boost/url/pct_string_view.hpp>
#include <future>

#include "campaigns/campaign_state.h"
#include "campaigns/campaign_stats.h"
#include "common/crypto.h"
#include "common/json_writer.h"
#include "common/time_format.h"
#include "http/api.h"
#include "model/generated_activities.h"
#include "model/json_limits.h"

namespace fairway::http {

namespace {

namespace json = boost::json;

constexpr int64_t kDayMs = 86'400'000;

void WriteRecord(JsonWriter& w, const campaigns::CampaignRecord& r, bool with_definition) {
  w.BeginObject().Key("id").String(r.id);
  w.Key("status").String(r.active ? "active" : "inactive");
  w.Key("version").Uint(r.version);
  w.Key("created_at").String(FormatIso8601Millis(r.created_ms));
  w.Key("updated_at").String(FormatIso8601Millis(r.updated_ms));
  if (with_definition) w.Key("definition").Raw(r.definition_json);
  w.EndObject();
}

std::string RecordJson(const campaigns::CampaignRecord& r) {
  JsonWriter w;
  WriteRecord(w, r, true);
  return w.Take();
}

std::string SettingsJson(const campaigns::CampaignSettings& s) {
  JsonWriter w;
  w.BeginObject();
  w.Key("emails_per_day").Uint(s.emails_per_day);
  w.Key("emails_per_week").Uint(s.emails_per_week);
  w.Key("max_chain_depth").Uint(s.max_chain_depth);
  w.Key("defer_days").Uint(s.defer_days);
  w.Key("email_from").String(s.email_from);
  w.Key("crm_url").String(s.crm_url);
  w.Key("webhook_secret").String(s.webhook_secret);
  w.EndObject();
  return w.Take();
}

void WriteDelivery(JsonWriter& w, const dispatch::Delivery& d) {
  w.BeginObject().Key("id").String(d.id);
  w.Key("kind").String(dispatch::DeliveryKindName(d.kind)).Key("purpose").String(d.purpose);
  w.Key("campaign").String(d.source);
  w.Key("created_at").String(FormatIso8601Millis(d.created_ms));
  if (d.kind == dispatch::DeliveryKind::kWebhook) {
    w.Key("method").String(d.method).Key("url").String(d.url);
  } else {
    w.Key("to").String(d.mail_to).Key("subject").String(d.subject);
  }
  w.Key("attempts").Uint(d.attempts);
  w.Key("next_attempt_at");
  if (d.next_attempt_ms > 0 && d.dead_at_ms == 0) {
    w.String(FormatIso8601Millis(d.next_attempt_ms));
  } else {
    w.Null();
  }
  w.Key("last_error").String(d.last_error);
  w.Key("dead_at");
  if (d.dead_at_ms > 0) {
    w.String(FormatIso8601Millis(d.dead_at_ms));
  } else {
    w.Null();
  }
  w.EndObject();
}

// The body of POST /v1/campaigns/{id}/trigger.
struct TriggerRequest {
  std::vector<std::string> leads;
  std::string tokens_json = "{}";
};

Result<TriggerRequest> ParseTrigger(std::string_view body) {
  json::error_code ec;
  json::value v = json::parse(body, ec, {}, model::JsonParseOptions());
  if (ec || !v.is_object()) return InvalidArgument("body: must be a JSON object with 'leads'");
  TriggerRequest r;
  for (const auto& kv : v.get_object()) {
    if (kv.key() == "leads") {
      if (!kv.value().is_array() || kv.value().get_array().empty() ||
          kv.value().get_array().size() > 1000) {
        return InvalidArgument("leads: must list 1 to 1000 lead ids");
      }
      for (size_t i = 0; i < kv.value().get_array().size(); ++i) {
        const auto& id = kv.value().get_array()[i];
        if (!id.is_string() || id.get_string().empty() || id.get_string().size() > 200) {
          return InvalidArgument(fmt::format("leads[{}]: must be a lead id (1 to 200 bytes)", i));
        }
        r.leads.emplace_back(id.get_string());
      }
    } else if (kv.key() == "tokens") {
      if (!kv.value().is_object()) return InvalidArgument("tokens: must be an object");
      for (const auto& t : kv.value().get_object()) {
        if (!t.value().is_string() && !t.value().is_number() && !t.value().is_bool()) {
          return InvalidArgument(
              fmt::format("tokens.{}: must be a string, number or boolean", std::string(t.key())));
        }
      }
      r.tokens_json = json::serialize(kv.value());
    } else {
      return InvalidArgument(fmt::format("{}: unknown field", std::string(kv.key())));
    }
  }
  if (r.leads.empty()) return InvalidArgument("leads: is required");
  return r;
}

// "YYYY-MM-DD" -> days since the epoch.
Result<int64_t> ParseDayParam(std::string_view name, std::string_view value) {
  auto ms = ParseIso8601Millis(value);
  if (!ms || value.size() != 10) {
    return InvalidArgument(fmt::format("parameter '{}' must be a date, YYYY-MM-DD", name));
  }
  return campaigns::DayOf(*ms);
}

}  // namespace

HttpResponse Api::HandleCampaignRoute(const model::TenantConfig& tenant, std::string_view path,
                                      const std::string& method, const std::string& query,
                                      const std::string& body) {
  campaigns::CampaignRegistry* registry = campaigns_.registry;
  const TenantId& t = tenant.id;
  if (path == "/v1/campaign-settings") {
    if (method == "GET") {
      auto s = registry->GetSettings(t);
      return s.ok() ? Json(200, SettingsJson(*s)) : Error(s.status());
    }
    if (method == "PATCH" || method == "PUT") {
      auto s = registry->UpdateSettings(t, body);
      return s.ok() ? Json(200, SettingsJson(*s)) : Error(s.status());
    }
    return Error(InvalidArgument("use GET or PATCH for /v1/campaign-settings"));
  }
  if (path == "/v1/deliveries") {
    if (method != "GET") return Error(InvalidArgument("use GET for /v1/deliveries"));
    auto params = ParseQuery(query);
    if (!params.ok()) return Error(params.status());
    bool dead = false;
    std::string cursor;
    size_t limit = 100;
    for (const auto& [k, v] : *params) {
      if (k == "state") {
        if (v != "pending" && v != "dead") {
          return Error(InvalidArgument("parameter 'state' must be pending or dead"));
        }
        dead = v == "dead";
      } else if (Status st; PageParam(k, v, &cursor, &limit, &st)) {
        if (!st.ok()) return Error(st);
      } else {
        return Error(InvalidArgument(fmt::format("parameter '{}' is not known", k)));
      }
    }
    auto page = campaigns_.dispatcher->List(t, dead, cursor, limit);
    if (!page.ok()) return Error(page.status());
    JsonWriter w;
    w.BeginObject().Key("data").BeginArray();
    for (const auto& d : page->items) WriteDelivery(w, d);
    EndPage(w, page->next_cursor);
    return Json(200, w.Take());
  }
  if (path == "/v1/deliveries/retry") {
    if (method != "POST") return Error(InvalidArgument("use POST for /v1/deliveries/retry"));
    std::vector<std::string> ids;
    if (!body.empty()) {
      json::error_code ec;
      json::value v = json::parse(body, ec, {}, model::JsonParseOptions());
      if (ec || !v.is_object()) return Error(InvalidArgument("body: must be a JSON object"));
      for (const auto& kv : v.get_object()) {
        if (kv.key() != "ids") {
          return Error(InvalidArgument(fmt::format("{}: unknown field", std::string(kv.key()))));
        }
        if (!kv.value().is_array()) return Error(InvalidArgument("ids: must be an array"));
        for (size_t i = 0; i < kv.value().get_array().size(); ++i) {
          const auto& id = kv.value().get_array()[i];
          if (!id.is_string())
            return Error(InvalidArgument(fmt::format("ids[{}]: must be a string", i)));
          ids.emplace_back(id.get_string());
        }
      }
    }
    auto n = campaigns_.dispatcher->Retry(t, ids);
    if (!n.ok()) return Error(n.status());
    return Json(200, fmt::format(R"({{"retried":{}}})", *n));
  }

  // /v1/campaigns[/{id}[/{action}]]
  std::string_view rest = path.substr(std::string_view("/v1/campaigns").size());
  if (rest.empty()) {
    if (method == "GET") {
      auto params = ParseQuery(query);
      if (!params.ok()) return Error(params.status());
      std::string cursor;
      size_t limit = 100;
      for (const auto& [k, v] : *params) {
        Status st;
        if (!PageParam(k, v, &cursor, &limit, &st)) {
          st = InvalidArgument(fmt::format("parameter '{}' is not known", k));
        }
        if (!st.ok()) return Error(st);
      }
      auto page = registry->List(t, cursor, limit);
      if (!page.ok()) return Error(page.status());
      JsonWriter w;
      w.BeginObject().Key("data").BeginArray();
      for (const auto& r : page->items) WriteRecord(w, r, false);
      EndPage(w, page->next_cursor);
      return Json(200, w.Take());
    }
    if (method == "POST") {
      // The id comes from the body, or is generated.
      std::string id;
      json::error_code ec;
      json::value v = json::parse(body, ec, {}, model::JsonParseOptions());
      if (!ec && v.is_object()) {
        if (auto* given = v.get_object().if_contains("id")) {
          if (!given->is_string()) return Error(InvalidArgument("id: must be a string"));
          id = std::string(given->get_string());
        }
      }
      if (id.empty()) {
        id = RandomToken("c", 9);
        std::transform(id.begin(), id.end(), id.begin(), [](char c) {
          return std::isalnum(static_cast<unsigned char>(c))
                     ? static_cast<char>(std::tolower(static_cast<unsigned char>(c)))
                     : '0';
        });
      }
      auto r = registry->Create(t, id, body);
      return r.ok() ? Json(201, RecordJson(*r)) : Error(r.status());
    }
    return Error(InvalidArgument("use GET or POST for /v1/campaigns"));
  }
  rest.remove_prefix(1);
  std::string_view id = rest.substr(0, rest.find('/'));
  std::string_view action =
      rest.find('/') == std::string_view::npos ? "" : rest.substr(rest.find('/') + 1);
  if (!campaigns::ValidCampaignId(id)) {
    return Error(NotFound(fmt::format("campaign '{}' not found", id)));
  }
  if (action.empty()) {
    if (method == "GET") {
      auto r = registry->Get(t, id);
      return r.ok() ? Json(200, RecordJson(*r)) : Error(r.status());
    }
    if (method == "PUT") {
      auto r = registry->Replace(t, id, body);
      return r.ok() ? Json(200, RecordJson(*r)) : Error(r.status());
    }
    if (method == "DELETE") {
      Status st = registry->Delete(t, id);
      return st.ok() ? Json(200, fmt::format(R"({{"deleted":"{}"}})", id)) : Error(st);
    }
    return Error(InvalidArgument("use GET, PUT or DELETE for /v1/campaigns/{id}"));
  }
  if ((action == "activate" || action == "deactivate") && method == "POST") {
    auto r = registry->SetActive(t, id, action == "activate");
    return r.ok() ? Json(200, RecordJson(*r)) : Error(r.status());
  }
  if (action == "trigger" && method == "POST") {
    auto snap = registry->Snapshot(t);
    if (!snap.ok()) return Error(snap.status());
    const campaigns::CompiledCampaign* c = (*snap)->Find(id);
    if (!c) return Error(NotFound(fmt::format("campaign '{}' not found", id)));
    // A request the campaign would drop is refused rather than accepted for nothing.
    if (!c->record.active) {
      return Error(FailedPrecondition(fmt::format("campaign '{}' is not active", id)));
    }
    if (!campaigns::AcceptsRequests(c->campaign)) {
      return Error(
          FailedPrecondition(fmt::format("campaign '{}' has no campaign_requested trigger", id)));
    }
    auto req = ParseTrigger(body);
    if (!req.ok()) return Error(req.status());
    log::AppendRequest append = log::AppendRequestFor(tenant);
    const int64_t now = clock_->NowMillis();
    const std::string nonce = RandomToken("", 12);
    for (size_t i = 0; i < req->leads.size(); ++i) {
      const std::string& lead = req->leads[i];
      model::Activity a;
      a.type = model::ActivityType::kFairway;
      a.event = model::CampaignRequested::kEvent;
      a.message_id = MessageId(fmt::format("fw:request:{}:{}:{}", id, nonce, i));
      // A known lead is requested by its userId; anything else as an anonymous visitor.
      auto view = leads_->Find(t, lead);
      if (!view.ok())
        return Error(Unavailable("reading lead '" + lead + "': " + view.status().message()));
      if (*view && (*view)->known) {
        a.user_id = (*view)->id;
      } else {
        a.anonymous_id = lead;
      }
      a.timestamp_ms = now;
      a.received_at_ms = now;
      std::string f = "\"properties\":{";
      model::CampaignRequested{.requested = id, .tokens_json = req->tokens_json}.AppendProperties(
          &f);
      f.push_back('}');
      a.fields_json = std::move(f);
      append.activities.push_back(std::move(a));
    }
    // Requested activities enter the log like ingested ones: through the tenant's ingest
    // admission (status and rate), one token per lead, taken once nothing but the append can
    // fail. A refusal writes nothing.
    tenancy::IngestAdmission adm;
    Status admitted = tenants_->AdmitTenantIngest(t, req->leads.size(), &adm);
    if (!admitted.ok()) return AdmissionRefused(admitted, adm);
    std::promise<Status> done;
    log_->Append(std::move(append),
                 [&done](Result<log::AppendResult> r) { done.set_value(r.status()); });
    Status st = done.get_future().get();
    if (!st.ok()) return Error(st);
    return Json(202, fmt::format(R"({{"requested":{}}})", req->leads.size()));
  }
  if (action == "stats" && method == "GET") {
    // Statistics outlive their campaign: a deleted campaign's stay readable.
    auto params = ParseQuery(query);
    if (!params.ok()) return Error(params.status());
    int64_t until = campaigns::DayOf(clock_->NowMillis());
    int64_t since = until - 29;
    for (const auto& [k, v] : *params) {
      if (k != "since" && k != "until") {
        return Error(InvalidArgument(fmt::format("parameter '{}' is not known", k)));
      }
      auto day = ParseDayParam(k, v);
      if (!day.ok()) return Error(day.status());
      (k == "since" ? since : until) = *day;
    }
    if (since > until) return Error(InvalidArgument("parameter 'since' must not be after 'until'"));
    if (until - since > 366) return Error(InvalidArgument("at most 366 days at once"));
    auto report = campaigns::ReadCampaignStats(campaigns_.store, t, id, since, until);
    if (!report.ok()) return Error(report.status());
    auto metrics = [](JsonWriter& w, const std::map<std::string, int64_t>& m) {
      w.BeginObject();
      for (const auto& [k, v] : m) {
        if (!k.starts_with("step.")) w.Key(k).Int(v);
      }
      w.EndObject();
    };
    auto steps = [](JsonWriter& w, const std::map<std::string, int64_t>& m) {
      // step.<n>.<outcome> -> [{"step": n, "executed": .., ...}] in step order.
      std::map<int, std::map<std::string, int64_t>> by_step;
      for (const auto& [k, v] : m) {
        if (!k.starts_with("step.")) continue;
        size_t dot = k.find('.', 5);
        if (dot == std::string::npos) continue;
        by_step[std::atoi(k.substr(5, dot - 5).c_str())][k.substr(dot + 1)] += v;
      }
      w.BeginArray();
      for (const auto& [n, outcomes] : by_step) {
        w.BeginObject().Key("step").Int(n);
        for (const char* o : {"executed", "blocked", "failed", "skipped"}) {
          auto it = outcomes.find(o);
          w.Key(o).Int(it == outcomes.end() ? 0 : it->second);
        }
        w.EndObject();
      }
      w.EndArray();
    };
    JsonWriter w;
    w.BeginObject().Key("campaign").String(std::string(id));
    w.Key("since").String(FormatIso8601Millis(since * kDayMs).substr(0, 10));
    w.Key("until").String(FormatIso8601Millis(until * kDayMs).substr(0, 10));
    w.Key("in_flow").Int(report->in_flow);
    w.Key("totals");
    metrics(w, report->totals);
    w.Key("steps");
    steps(w, report->totals);
    w.Key("days").BeginArray();
    for (const auto& [day, m] : report->days) {
      w.BeginObject().Key("day").String(FormatIso8601Millis(day * kDayMs).substr(0, 10));
      w.Key("metrics");
      metrics(w, m);
      w.Key("steps");
      steps(w, m);
      w.EndObject();
    }
    w.EndArray().EndObject();
    return Json(200, w.Take());
  }
  return Error(NotFound(fmt::format("no route for {} {}", method, path)));
}

void Api::HandleCampaigns(HttpRequest& req, std::string_view path, std::string_view query,
                          Responder respond) {
  auto tenant = AuthenticateApiKey(req);
  if (!tenant.ok()) return respond(Error(tenant.status()));
  if (!CheckProcessedHere(tenant->id).ok()) {
    return ForwardOrRefuse(tenant->id, std::move(req), std::move(respond));
  }
  if (!campaigns_.registry || !campaigns_.dispatcher || !campaigns_.store) {
    return respond(Error(Unavailable("campaigns are not enabled in this server")));
  }
  // Definitions and settings are written synchronously: off the I/O threads, in order.
  admin_tasks_->Submit([this, tenant = std::move(tenant).value(), path = std::string(path),
                        query = std::string(query), method = req.method, body = std::move(req.body),
                        respond = std::move(respond)]() {
    respond(HandleCampaignRoute(tenant, path, method, query, body));
  });
}

}  // namespace fairway::http
