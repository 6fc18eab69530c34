// The processing and lead routes of the public API:
//   GET  /admin/v1/tenants/{id}/processing
//   POST /admin/v1/tenants/{id}/processing/{processor}/{enable,disable,resume}
//   GET  /admin/v1/tenants/{id}/dead-letters?processor=&cursor=&limit=
//   POST /admin/v1/tenants/{id}/dead-letters/replay   {"processor":..,"ids":[..],"limit":..}
//   GET  /v1/leads/{id}, GET /v1/leads?...

#include <fmt/format.h>

#include <algorithm>
#include <boost/json.hpp>
#include <boost/url/pct_string_view.hpp>
#include <map>

#include "common/json_writer.h"
#include "common/time_format.h"
#include "http/api.h"
#include "log/lead_index.h"
#include "model/json_limits.h"
#include "storage/schema.h"

namespace fairway::http {

namespace {

namespace json = boost::json;

void WriteStatus(JsonWriter& w, const engine::StreamStatus& s) {
  w.BeginObject();
  w.Key("name").String(s.processor).Key("ordering").String(s.ordering);
  w.Key("enabled").Bool(s.enabled).Key("state").String(s.state);
  w.Key("lag_events").Uint(s.lag_events).Key("lag_seconds").Double(s.lag_seconds);
  w.Key("processed_total").Uint(s.processed_total);
  w.Key("failures_total").Uint(s.failures_total);
  w.Key("dead_letters_total").Uint(s.dead_letters_total);
  w.Key("events_per_second").Double(s.events_per_second);
  w.Key("in_flight").Uint(s.in_flight).Key("buffered_bytes").Uint(s.buffered_bytes);
  w.Key("latency_seconds").BeginObject();
  w.Key("p50").Double(s.latency_p50_s).Key("p99").Double(s.latency_p99_s).EndObject();
  w.Key("last_error");
  if (s.last_error.empty()) {
    w.Null();
  } else {
    w.String(s.last_error);
  }
  w.Key("breaker");
  if (s.breaker_opened_at_ms == 0) {
    w.Null();
  } else {
    w.BeginObject();
    w.Key("opened_at").String(FormatIso8601Millis(s.breaker_opened_at_ms));
    w.Key("probe_at").String(FormatIso8601Millis(s.breaker_probe_at_ms));
    w.EndObject();
  }
  w.Key("partitions").BeginArray();
  for (const auto& p : s.partitions) {
    w.BeginObject().Key("partition").Uint(p.partition).Key("committed").Uint(p.committed);
    w.Key("completed_above").Uint(p.completed_above);
    w.Key("high_watermark").Uint(p.high_watermark).EndObject();
  }
  w.EndArray().EndObject();
}

void WriteDeadLetter(JsonWriter& w, const engine::DeadLetter& d) {
  w.BeginObject().Key("id").String(d.id).Key("partition").Uint(d.partition);
  w.Key("offset").Uint(d.offset);
  w.Key("error_class").String(engine::ErrorClassName(d.error_class));
  w.Key("reason").String(d.reason).Key("attempts").Uint(d.attempts);
  w.Key("failed_at").String(FormatIso8601Millis(d.failed_at_ms));
  std::string activity;
  model::AppendActivityJson(d.activity, &activity);
  w.Key("activity").Raw(activity).EndObject();
}

// The dead-letter replay body.
struct ReplayRequest {
  std::string processor;
  std::vector<std::string> ids;
  size_t limit = 1'000;
};

Result<ReplayRequest> ParseReplay(std::string_view body) {
  ReplayRequest r;
  if (body.empty()) return InvalidArgument("body must be a JSON object with 'processor'");
  boost::system::error_code ec;
  json::value v = json::parse(body, ec, {}, model::JsonParseOptions());
  if (ec || !v.is_object()) return InvalidArgument("body must be a JSON object");
  for (const auto& kv : v.as_object()) {
    if (kv.key() == "processor") {
      if (!kv.value().is_string()) return InvalidArgument("field 'processor' must be a string");
      r.processor = std::string(kv.value().as_string());
    } else if (kv.key() == "ids") {
      if (!kv.value().is_array()) return InvalidArgument("field 'ids' must be an array");
      for (const auto& id : kv.value().as_array()) {
        if (!id.is_string()) return InvalidArgument("field 'ids' must hold strings");
        r.ids.emplace_back(id.as_string());
      }
    } else if (kv.key() == "limit") {
      if (!kv.value().is_int64() || kv.value().as_int64() < 1 || kv.value().as_int64() > 10'000) {
        return InvalidArgument("field 'limit' must be a whole number from 1 to 10000");
      }
      r.limit = static_cast<size_t>(kv.value().as_int64());
    } else {
      return InvalidArgument(fmt::format("field '{}' is not known", std::string(kv.key())));
    }
  }
  if (r.processor.empty()) return InvalidArgument("field 'processor' is required");
  return r;
}

// A query of the paging parameters and one more, `name` (into *value); InvalidArgument names a
// bad or unknown parameter.
Status ParsePagedQuery(std::string_view query, std::string_view name, std::string* value,
                       std::string* cursor, size_t* limit) {
  FAIRWAY_ASSIGN_OR_RETURN(auto params, ParseQuery(query));
  for (const auto& [k, v] : params) {
    if (k == name) {
      *value = v;
    } else if (Status st; PageParam(k, v, cursor, limit, &st)) {
      FAIRWAY_RETURN_IF_ERROR(st);
    } else {
      return InvalidArgument(fmt::format("parameter '{}' is not known", k));
    }
  }
  return Status::Ok();
}

}  // namespace

HttpResponse Api::HandleClusterAdmin(std::string_view query) {
  std::string only, cursor;
  size_t limit = 100;
  if (Status st = ParsePagedQuery(query, "tenant", &only, &cursor, &limit); !st.ok()) {
    return Error(st);
  }
  // A page of tenants in id order, from after the cursor (the last id of the page before).
  std::vector<model::TenantConfig> tenants;
  if (!only.empty()) {
    auto t = tenants_->Get(TenantId(only));
    if (!t.ok()) return Error(t.status());
    tenants.push_back(std::move(t).value());
  } else {
    for (auto& t : tenants_->List()) {
      if (t.status != model::TenantStatus::kDeleting && t.id.str() > cursor) {
        tenants.push_back(std::move(t));
      }
    }
    std::sort(tenants.begin(), tenants.end(),
              [](const auto& a, const auto& b) { return a.id.str() < b.id.str(); });
  }
  std::string next_cursor;
  if (tenants.size() > limit) {
    tenants.resize(limit);
    next_cursor = tenants.back().id.str();
  }
  std::map<std::string, std::vector<log::ProcessingProgress>> progress;
  for (auto& p : engine_->Progress()) progress[p.tenant.str()].push_back(std::move(p));

  const std::string& node = options_.node_id;
  const bool clustered = cluster_.slots > 0;
  JsonWriter w;
  w.BeginObject().Key("node").String(node);
  w.Key("nodes").BeginArray().BeginObject().Key("id").String(node).Key("self").Bool(true);
  if (clustered) {
    w.Key("slots").BeginArray();
    const auto active = cluster_.active_slots();
    for (uint32_t s : active) w.Uint(s);
    w.EndArray();
    // The placement weights of the tenants of the slots processed here.
    uint64_t load = 0;
    for (const auto& t : tenants_->List()) {
      if (std::binary_search(active.begin(), active.end(), cluster_.slot_of(t.id))) {
        load += t.placement.weight;
      }
    }
    w.Key("load").Uint(load);
  }
  w.EndObject().EndArray();
  if (clustered) w.Key("slots").Uint(cluster_.slots);
  w.Key("data").BeginArray();
  for (const auto& t : tenants) {
    // In a cluster another node may own the tenant: this one knows only that it does not.
    const bool here = !clustered || cluster_.owns(t.id);
    auto owner = [&] {
      if (here) {
        w.String(node);
      } else {
        w.Null();
      }
    };
    w.BeginObject().Key("tenant").String(t.id.str()).Key("owner");
    owner();
    if (clustered) {
      w.Key("slot").Uint(cluster_.slot_of(t.id)).Key("weight").Uint(t.placement.weight);
      w.Key("group");
      if (t.placement.group.empty()) {
        w.Null();
      } else {
        w.String(t.placement.group);
      }
    }
    if (storage::Store* store = campaigns_.store) {
      const std::string begin = log::TenantKeyPrefix(t.id), end = log::TenantKeyEnd(t.id);
      uint64_t state_bytes = 0, log_bytes = 0;
      for (auto cf : storage::kTenantStateFamilies)
        state_bytes += store->ApproximateBytes(cf, begin, end);
      for (auto cf : storage::kTenantLogFamilies)
        log_bytes += store->ApproximateBytes(cf, begin, end);
      w.Key("state_bytes").Uint(state_bytes).Key("log_bytes").Uint(log_bytes);
    }
    w.Key("tasks").BeginArray();
    const auto& streams = progress[t.id.str()];
    size_t partitions = 0;
    for (const auto& s : streams) partitions = std::max(partitions, s.committed.size());
    for (uint32_t p = 0; p < partitions; ++p) {
      uint64_t high = 0;
      for (const auto& s : streams) high = std::max(high, p < s.high.size() ? s.high[p] : 0);
      w.BeginObject().Key("partition").Uint(p).Key("owner");
      owner();
      if (auto at = log_->Locate(t.id, p)) {
        w.Key("topic").String(at->topic).Key("topic_partition").Uint(at->partition);
      }
      w.Key("high_watermark").Uint(high).Key("processors").BeginArray();
      for (const auto& s : streams) {
        const uint64_t committed = p < s.committed.size() ? s.committed[p] : 0;
        w.BeginObject().Key("name").String(s.processor).Key("committed").Uint(committed);
        w.Key("lag_events").Uint(high > committed ? high - committed : 0).EndObject();
      }
      w.EndArray().EndObject();
    }
    w.EndArray().EndObject();
  }
  EndPage(w, next_cursor);
  return Json(200, w.Take());
}

HttpResponse Api::HandleProcessingAdmin(const TenantId& id, std::string_view action,
                                        const std::string& method, const std::string& query,
                                        const std::string& body) {
  if (action == "processing" && method == "GET") {
    auto status = engine_->GetStatus(id);
    if (!status.ok()) return Error(status.status());
    JsonWriter w;
    w.BeginObject().Key("tenant").String(id.str()).Key("processors").BeginArray();
    for (const auto& s : *status) WriteStatus(w, s);
    w.EndArray().EndObject();
    return Json(200, w.Take());
  }
  constexpr std::string_view kProcessing = "processing/";
  if (action.starts_with(kProcessing) && method == "POST") {
    std::string_view rest = action.substr(kProcessing.size());
    auto slash = rest.find('/');
    if (slash == std::string_view::npos) {
      return Error(NotFound("use POST .../processing/{processor}/{enable,disable,resume}"));
    }
    std::string_view processor = rest.substr(0, slash), verb = rest.substr(slash + 1);
    Status st;
    if (verb == "enable" || verb == "disable") {
      st = engine_->SetEnabled(id, processor, verb == "enable");
    } else if (verb == "resume") {
      st = engine_->ResumeProcessor(id, processor);
    } else {
      return Error(NotFound(fmt::format("no processing action '{}'", verb)));
    }
    if (!st.ok()) return Error(st);
    auto status = engine_->GetStatus(id);
    if (!status.ok()) return Error(status.status());
    for (const auto& s : *status) {
      if (s.processor != processor) continue;
      JsonWriter w;
      WriteStatus(w, s);
      return Json(200, w.Take());
    }
    return Error(NotFound(fmt::format("processor '{}' not found", processor)));
  }
  if (action == "dead-letters" && method == "GET") {
    std::string processor, cursor;
    size_t limit = 100;
    if (Status st = ParsePagedQuery(query, "processor", &processor, &cursor, &limit); !st.ok()) {
      return Error(st);
    }
    if (processor.empty()) return Error(InvalidArgument("parameter 'processor' is required"));
    auto page = engine_->ListDeadLetters(id, processor, cursor, limit);
    if (!page.ok()) return Error(page.status());
    JsonWriter w;
    w.BeginObject().Key("data").BeginArray();
    for (const auto& d : page->items) WriteDeadLetter(w, d);
    EndPage(w, page->next_cursor);
    return Json(200, w.Take());
  }
  if (action == "dead-letters/replay" && method == "POST") {
    auto req = ParseReplay(body);
    if (!req.ok()) return Error(req.status());
    auto queued = engine_->ReplayDeadLetters(id, req->processor, req->ids, req->limit);
    if (!queued.ok()) return Error(queued.status());
    return Json(200, fmt::format(R"({{"queued":{}}})", *queued));
  }
  return Error(NotFound(fmt::format("no admin route {} .../{}", method, action)));
}

Result<std::vector<std::string>> Api::PersonIdentities(const TenantId& tenant,
                                                       const std::string& id) {
  std::vector<std::string> out{id};
  if (leads_ == nullptr) return out;
  FAIRWAY_ASSIGN_OR_RETURN(auto person, leads_->Find(tenant, id));
  if (!person) return out;
  out.clear();
  for (const auto* ids : {&person->user_ids, &person->anonymous_ids}) {
    out.insert(out.end(), ids->begin(), ids->end());
  }
  if (out.empty()) out.push_back(id);
  return out;
}

void Api::HandleSessions(HttpRequest& req, std::string_view query, Responder respond) {
  auto tenant = AuthenticateApiKey(req);
  if (!tenant.ok()) return respond(Error(tenant.status()));
  if (sessions_ == nullptr) return respond(Error(Unavailable("sessions are not kept here")));
  if (!CheckProcessedHere(tenant->id).ok()) {
    return ForwardOrRefuse(tenant->id, std::move(req), std::move(respond));
  }
  auto params = ParseQuery(query);
  if (!params.ok()) return respond(Error(params.status()));
  std::string lead;
  size_t limit = 100;
  int64_t before = INT64_MAX;
  for (const auto& [k, v] : *params) {
    Status st;
    if (k == "lead") {
      lead = v;
    } else if (k == "limit") {
      auto n = ParseIntParam(k, v, 1, 1000);
      st = n.status();
      if (n.ok()) limit = static_cast<size_t>(*n);
    } else if (k == "cursor") {
      auto n = ParseIntParam(k, v, INT64_MIN + 1, INT64_MAX);
      if (n.ok()) {
        before = *n;
      } else {
        st = InvalidArgument("parameter 'cursor' is not a valid cursor");
      }
    } else {
      st = InvalidArgument(fmt::format("parameter '{}' is not known", k));
    }
    if (!st.ok()) return respond(Error(st));
  }
  if (lead.empty()) return respond(Error(InvalidArgument("parameter 'lead' is required")));
  auto identities = PersonIdentities(tenant->id, lead);
  if (!identities.ok()) return respond(Error(identities.status()));
  auto page = sessions_->List(tenant->id, *identities, before, limit);
  if (!page.ok()) return respond(Error(page.status()));
  std::string body = "{\"data\":[";
  for (size_t i = 0; i < page->sessions.size(); ++i) {
    if (i) body.push_back(',');
    sessions::AppendSessionJson(page->sessions[i], tenant->timezone, clock_->NowMillis(),
                                int64_t{tenant->web.session_timeout_minutes} * 60'000, &body);
  }
  FinishPageJson(page->next_before_ms ? std::to_string(*page->next_before_ms) : std::string(),
                 &body);
  respond(Json(200, std::move(body)));
}

void Api::HandleLeads(HttpRequest& req, std::string_view path, std::string_view query,
                      Responder respond) {
  auto tenant = AuthenticateApiKey(req);
  if (!tenant.ok()) return respond(Error(tenant.status()));
  if (!CheckProcessedHere(tenant->id).ok()) {
    return ForwardOrRefuse(tenant->id, std::move(req), std::move(respond));
  }
  constexpr std::string_view kPrefix = "/v1/leads/";
  if (path.size() > kPrefix.size()) {
    auto encoded = boost::urls::make_pct_string_view(path.substr(kPrefix.size()));
    if (!encoded) return respond(Error(InvalidArgument("lead id is not validly percent-encoded")));
    std::string id = encoded->decode();
    auto lead = leads_->Find(tenant->id, id);
    if (!lead.ok()) return respond(Error(lead.status()));
    if (!lead->has_value()) {
      return respond(Error(NotFound(fmt::format("lead '{}' not found", id))));
    }
    std::string body;
    identity::AppendLeadJson(**lead, &body);
    return respond(Json(200, std::move(body)));
  }

  auto params = ParseQuery(query);
  if (!params.ok()) return respond(Error(params.status()));
  identity::LeadFilter filter;
  filter.now_ms = clock_->NowMillis();
  std::string cursor;
  size_t limit = 100;
  identity::CounterCondition counter;
  bool has_counter = false;
  for (const auto& [k, v] : *params) {
    Status st;
    if (k.starts_with("trait.") && k.size() > 6) {
      filter.traits.emplace_back(k.substr(6), v);
    } else if (k == "activity_type") {
      counter.type = model::ParseActivityType(v);
      if (!counter.type) {
        st = InvalidArgument(
            "parameter 'activity_type' must be track, identify, page, screen, group or alias");
      }
      has_counter = true;
    } else if (k == "activity_name") {
      counter.name = v;
      has_counter = true;
    } else if (k == "min_count") {
      auto n = ParseIntParam(k, v, 1, 1'000'000'000);
      st = n.status();
      if (n.ok()) counter.min_count = static_cast<uint64_t>(*n);
      has_counter = true;
    } else if (k == "within_days") {
      auto n = ParseIntParam(k, v, 0, 36'500);
      st = n.status();
      if (n.ok()) counter.within_days = static_cast<uint32_t>(*n);
      has_counter = true;
    } else if (k == "anonymous") {
      if (v != "true" && v != "false")
        st = InvalidArgument("parameter 'anonymous' must be true or false");
      filter.include_anonymous = v == "true";
    } else if (k == "seen_since") {
      auto ms = ParseIso8601Millis(v);
      if (!ms) st = InvalidArgument("parameter 'seen_since' must be an ISO 8601 date-time");
      filter.seen_since_ms = ms;
    } else if (k == "cursor") {
      cursor = v;
    } else if (k == "limit") {
      auto n = ParseIntParam(k, v, 1, 1000);
      st = n.status();
      if (n.ok()) limit = static_cast<size_t>(*n);
    } else {
      st = InvalidArgument(fmt::format("parameter '{}' is not known", k));
    }
    if (!st.ok()) return respond(Error(st));
  }
  if (has_counter) {
    if (counter.name.empty() && !counter.type) {
      return respond(Error(InvalidArgument(
          "parameter 'activity_name' or 'activity_type' is required with a count filter")));
    }
    filter.counter = counter;
  }
  auto page = leads_->List(tenant->id, filter, cursor, limit);
  if (!page.ok()) return respond(Error(page.status()));
  std::string body = "{\"data\":[";
  for (size_t i = 0; i < page->leads.size(); ++i) {
    if (i) body.push_back(',');
    identity::AppendLeadJson(page->leads[i], &body);
  }
  FinishPageJson(page->next_cursor, &body);
  respond(Json(200, std::move(body)));
}

}  // namespace fairway::http
