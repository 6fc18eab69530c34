#include "model/tenant.h"

#include <date/tz.h>
#include <fmt/format.h>

#include <boost/json.hpp>
#include <cctype>
#include <cmath>

#include "common/ascii.h"
#include "model/json_limits.h"

namespace fairway::model {

namespace json = boost::json;

std::string_view TenantStatusName(TenantStatus s) {
  switch (s) {
    case TenantStatus::kActive:
      return "active";
    case TenantStatus::kSuspended:
      return "suspended";
    case TenantStatus::kDeleting:
      return "deleting";
  }
  return "unknown";
}

bool IsKnownTimeZone(std::string_view tz) {
  if (tz.empty() || tz.size() > 64) return false;
  try {
    return date::locate_zone(std::string(tz)) != nullptr;
  } catch (const std::exception&) {
    return false;
  }
}

namespace {

Result<json::object> ParseObject(std::string_view body) {
  json::error_code ec;
  json::value v = json::parse(body, ec, {}, model::JsonParseOptions());
  if (ec) return InvalidArgument(fmt::format("body is not valid JSON: {}", ec.message()));
  if (!v.is_object()) return InvalidArgument("body must be a JSON object");
  return std::move(v.as_object());
}

Result<double> GetNumber(const json::value& v, const std::string& field) {
  if (v.is_int64()) return static_cast<double>(v.as_int64());
  if (v.is_uint64()) return static_cast<double>(v.as_uint64());
  if (v.is_double()) return v.as_double();
  return InvalidArgument(fmt::format("field '{}' must be a number", field));
}

Result<uint32_t> GetUint(const json::value& v, const std::string& field, uint64_t min,
                         uint64_t max) {
  FAIRWAY_ASSIGN_OR_RETURN(double d, GetNumber(v, field));
  if (d != std::floor(d) || d < static_cast<double>(min) || d > static_cast<double>(max)) {
    return InvalidArgument(
        fmt::format("field '{}' must be a whole number from {} to {}", field, min, max));
  }
  return static_cast<uint32_t>(d);
}

Result<std::string> GetString(const json::value& v, const std::string& field, size_t max_len) {
  if (!v.is_string()) return InvalidArgument(fmt::format("field '{}' must be a string", field));
  std::string s(v.as_string());
  if (s.size() > max_len) {
    return InvalidArgument(fmt::format("field '{}' must be at most {} characters", field, max_len));
  }
  return s;
}

Status ApplyQuotas(const json::value& v, const std::string& prefix, Quotas* q) {
  if (!v.is_object()) return InvalidArgument(fmt::format("field '{}' must be an object", prefix));
  Quotas out = *q;
  for (const auto& kv : v.as_object()) {
    std::string key(kv.key());
    std::string field = prefix + "." + key;
    if (key == "ingest_rate" || key == "ingest_burst") {
      FAIRWAY_ASSIGN_OR_RETURN(double d, GetNumber(kv.value(), field));
      if (!(d >= 1 && d <= 1e12)) {
        return InvalidArgument(fmt::format("field '{}' must be from 1 to 1e12", field));
      }
      (key == "ingest_rate" ? out.ingest_rate : out.ingest_burst) = d;
    } else if (key == "processing_rate") {
      FAIRWAY_ASSIGN_OR_RETURN(double d, GetNumber(kv.value(), field));
      if (!(d >= 0 && d <= 1e12)) {
        return InvalidArgument(fmt::format("field '{}' must be from 0 to 1e12", field));
      }
      out.processing_rate = d;
    } else if (key == "processing_weight") {
      FAIRWAY_ASSIGN_OR_RETURN(out.processing_weight, GetUint(kv.value(), field, 1, 1000));
    } else if (key == "max_in_flight") {
      FAIRWAY_ASSIGN_OR_RETURN(out.max_in_flight, GetUint(kv.value(), field, 1, 1'000'000));
    } else if (key == "retention_days") {
      FAIRWAY_ASSIGN_OR_RETURN(out.retention_days, GetUint(kv.value(), field, 0, 36'500));
    } else if (key == "dedup_window_seconds") {
      FAIRWAY_ASSIGN_OR_RETURN(out.dedup_window_seconds,
                               GetUint(kv.value(), field, 0, 366u * 86'400u));
    } else {
      return InvalidArgument(fmt::format("field '{}' is not a known quota", field));
    }
  }
  *q = out;
  return Status::Ok();
}

// Applies a "placement" object. On creation every field may be set; afterwards only the weight
// changes (the group and the slot may be repeated as they are).
Status ApplyPlacement(const json::value& v, bool creating, Placement* p) {
  if (!v.is_object()) return InvalidArgument("field 'placement' must be an object");
  Placement out = *p;
  for (const auto& kv : v.as_object()) {
    std::string key(kv.key());
    std::string field = "placement." + key;
    if (key == "weight") {
      FAIRWAY_ASSIGN_OR_RETURN(out.weight, GetUint(kv.value(), field, 1, kMaxPlacementWeight));
    } else if (key == "group") {
      std::string group;
      if (!kv.value().is_null()) {
        FAIRWAY_ASSIGN_OR_RETURN(group, GetString(kv.value(), field, 63));
        if (!IsValidTenantId(group)) {
          return InvalidArgument(
              fmt::format("field '{}' must match [a-z0-9][a-z0-9_-]{{0,62}}", field));
        }
      }
      out.group = std::move(group);
    } else if (key == "slot") {
      std::optional<uint32_t> slot;
      if (!kv.value().is_null()) {
        FAIRWAY_ASSIGN_OR_RETURN(slot, GetUint(kv.value(), field, 0, 65'535));
      }
      out.slot = slot;
    } else {
      return InvalidArgument(fmt::format("field '{}' is not a placement field", field));
    }
  }
  if (!creating) {
    if (out.group != p->group) {
      return FailedPrecondition(
          "field 'placement.group' is set when the tenant is created and cannot be changed");
    }
    if (out.slot != p->slot) {
      return FailedPrecondition(
          "field 'placement.slot' is set when the tenant is created and cannot be changed: "
          "moving a tenant to another slot is not supported");
    }
  }
  *p = std::move(out);
  return Status::Ok();
}

// "https://host[:port]" with an optional "*." before the host; lower case. False otherwise.
bool ValidOriginPattern(std::string_view o) {
  size_t sep = o.find("://");
  if (sep == std::string_view::npos) return false;
  std::string_view scheme = o.substr(0, sep), rest = o.substr(sep + 3);
  if (scheme != "http" && scheme != "https") return false;
  if (rest.starts_with("*.")) rest.remove_prefix(2);
  std::string_view host = rest.substr(0, rest.find(':'));
  if (host.empty() || host.front() == '.' || host.back() == '.') return false;
  for (char c : host) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.')) return false;
  }
  if (rest.size() > host.size()) {
    std::string_view port = rest.substr(host.size() + 1);
    if (port.empty() || port.size() > 5) return false;
    for (char c : port) {
      if (c < '0' || c > '9') return false;
    }
  }
  return true;
}

Status ApplyWeb(const json::value& v, WebSettings* w) {
  if (!v.is_object()) return InvalidArgument("field 'web' must be an object");
  WebSettings out = *w;
  for (const auto& kv : v.as_object()) {
    std::string key(kv.key());
    std::string field = "web." + key;
    if (key == "allowed_origins") {
      if (!kv.value().is_array()) {
        return InvalidArgument(fmt::format("field '{}' must be an array of origins", field));
      }
      const auto& items = kv.value().as_array();
      if (items.size() > kMaxAllowedOrigins) {
        return InvalidArgument(fmt::format("field '{}' has {} origins; at most {}", field,
                                           items.size(), kMaxAllowedOrigins));
      }
      out.allowed_origins.clear();
      for (size_t i = 0; i < items.size(); ++i) {
        std::string item_field = fmt::format("{}[{}]", field, i);
        FAIRWAY_ASSIGN_OR_RETURN(std::string o, GetString(items[i], item_field, 300));
        o = AsciiLower(o);
        if (!ValidOriginPattern(o)) {
          return InvalidArgument(fmt::format(
              "field '{}' must be an origin: http(s)://host[:port], the host may start with "
              "'*.'; not '{}'",
              item_field, o));
        }
        out.allowed_origins.push_back(std::move(o));
      }
    } else if (key == "drop_bots" || key == "enrich" || key == "anonymize_ip") {
      if (!kv.value().is_bool()) {
        return InvalidArgument(fmt::format("field '{}' must be true or false", field));
      }
      (key == "drop_bots" ? out.drop_bots
       : key == "enrich"  ? out.enrich
                          : out.anonymize_ip) = kv.value().as_bool();
    } else if (key == "session_timeout_minutes") {
      const auto& v = kv.value();
      if (!v.is_int64() || v.as_int64() < 1 || v.as_int64() > 1440) {
        return InvalidArgument(
            fmt::format("field '{}' must be a whole number of minutes from 1 to 1440", field));
      }
      out.session_timeout_minutes = static_cast<uint32_t>(v.as_int64());
    } else {
      return InvalidArgument(fmt::format("field '{}' is not a web field", field));
    }
  }
  *w = std::move(out);
  return Status::Ok();
}

json::object WebToJson(const WebSettings& w) {
  json::array origins;
  for (const auto& o : w.allowed_origins) origins.emplace_back(o);
  return {{"allowed_origins", std::move(origins)},
          {"drop_bots", w.drop_bots},
          {"enrich", w.enrich},
          {"anonymize_ip", w.anonymize_ip},
          {"session_timeout_minutes", w.session_timeout_minutes}};
}

json::object PlacementToJson(const Placement& p) {
  json::object o{{"weight", p.weight}};
  if (p.group.empty()) {
    o["group"] = nullptr;
  } else {
    o["group"] = p.group;
  }
  if (p.slot) {
    o["slot"] = *p.slot;
  } else {
    o["slot"] = nullptr;
  }
  return o;
}

// Applies the fields shared by create and patch.
Status ApplyCommon(const json::object& obj, TenantConfig* t) {
  if (auto* v = obj.if_contains("name")) {
    FAIRWAY_ASSIGN_OR_RETURN(t->name, GetString(*v, "name", 200));
  }
  if (auto* v = obj.if_contains("timezone")) {
    FAIRWAY_ASSIGN_OR_RETURN(std::string tz, GetString(*v, "timezone", 64));
    if (!IsKnownTimeZone(tz)) {
      return InvalidArgument(
          fmt::format("field 'timezone' is not a known IANA time zone: '{}'", tz));
    }
    t->timezone = tz;
  }
  if (auto* v = obj.if_contains("quotas")) {
    FAIRWAY_RETURN_IF_ERROR(ApplyQuotas(*v, "quotas", &t->quotas));
  }
  if (auto* v = obj.if_contains("web")) FAIRWAY_RETURN_IF_ERROR(ApplyWeb(*v, &t->web));
  return Status::Ok();
}

// Whole numbers print as integers ("5000", not "5E3").
json::value Number(double v) {
  if (v == std::floor(v) && std::abs(v) < 9e15) return static_cast<int64_t>(v);
  return v;
}

json::object QuotasToJson(const Quotas& q) {
  return {{"ingest_rate", Number(q.ingest_rate)},
          {"ingest_burst", Number(q.ingest_burst)},
          {"processing_rate", Number(q.processing_rate)},
          {"processing_weight", q.processing_weight},
          {"max_in_flight", q.max_in_flight},
          {"retention_days", q.retention_days},
          {"dedup_window_seconds", q.dedup_window_seconds}};
}

json::array LayoutsToJson(const std::vector<PartitionLayout>& layouts) {
  json::array out;
  for (const auto& l : layouts) {
    json::array ends;
    for (uint64_t e : l.ends) ends.push_back(e);
    out.push_back(json::object{
        {"first_partition", l.first}, {"partitions", l.count}, {"ends", std::move(ends)}});
  }
  return out;
}

Result<std::vector<PartitionLayout>> LayoutsFromJson(const json::value& v) {
  std::vector<PartitionLayout> out;
  uint32_t next = 0;
  for (const auto& item : v.as_array()) {
    const auto& o = item.as_object();
    PartitionLayout l;
    l.first = static_cast<uint32_t>(o.at("first_partition").to_number<uint64_t>());
    l.count = static_cast<uint32_t>(o.at("partitions").to_number<uint64_t>());
    for (const auto& e : o.at("ends").as_array()) l.ends.push_back(e.to_number<uint64_t>());
    if (l.first != next || l.count == 0 || l.ends.size() != l.count) {
      return Internal("stored tenant record has an inconsistent sealed layout");
    }
    next = l.first + l.count;
    out.push_back(std::move(l));
  }
  return out;
}

json::object ApiObject(const TenantConfig& t) {
  return {{"id", t.id.str()},
          {"name", t.name},
          {"timezone", t.timezone},
          {"partitions", t.partitions},
          {"first_partition", t.first_partition()},
          {"sealed_layouts", LayoutsToJson(t.sealed_layouts)},
          {"status", std::string(TenantStatusName(t.status))},
          {"quotas", QuotasToJson(t.quotas)},
          {"placement", PlacementToJson(t.placement)},
          {"web", WebToJson(t.web)},
          {"created_at_ms", t.created_at_ms},
          {"updated_at_ms", t.updated_at_ms}};
}

}  // namespace

Result<TenantConfig> ParseTenantCreate(std::string_view body, const TenantConfig& defaults) {
  FAIRWAY_ASSIGN_OR_RETURN(json::object obj, ParseObject(body));
  TenantConfig t = defaults;
  t.status = TenantStatus::kActive;
  for (const auto& kv : obj) {
    std::string_view key = kv.key();
    if (key != "id" && key != "name" && key != "timezone" && key != "quotas" &&
        key != "partitions" && key != "placement" && key != "web") {
      return InvalidArgument(fmt::format("field '{}' is not a tenant field", key));
    }
  }
  auto* id = obj.if_contains("id");
  if (!id) return InvalidArgument("field 'id' is required");
  FAIRWAY_ASSIGN_OR_RETURN(std::string id_str, GetString(*id, "id", 63));
  if (!IsValidTenantId(id_str)) {
    return InvalidArgument("field 'id' must match [a-z0-9][a-z0-9_-]{0,62}");
  }
  t.id = TenantId(id_str);
  t.name = id_str;
  if (auto* v = obj.if_contains("partitions")) {
    FAIRWAY_ASSIGN_OR_RETURN(t.partitions, GetUint(*v, "partitions", 1, kMaxPartitions));
  }
  FAIRWAY_RETURN_IF_ERROR(ApplyCommon(obj, &t));
  if (auto* v = obj.if_contains("placement")) {
    FAIRWAY_RETURN_IF_ERROR(ApplyPlacement(*v, /*creating=*/true, &t.placement));
  }
  return t;
}

Status ApplyTenantPatch(std::string_view body, TenantConfig* config) {
  FAIRWAY_ASSIGN_OR_RETURN(json::object obj, ParseObject(body));
  for (const auto& kv : obj) {
    std::string_view key = kv.key();
    if (key == "id") return FailedPrecondition("field 'id' cannot be changed");
    if (key != "name" && key != "timezone" && key != "quotas" && key != "partitions" &&
        key != "placement" && key != "web") {
      return InvalidArgument(fmt::format("field '{}' is not a tenant field", key));
    }
  }
  TenantConfig updated = *config;
  if (auto* v = obj.if_contains("partitions")) {
    FAIRWAY_ASSIGN_OR_RETURN(updated.partitions, GetUint(*v, "partitions", 1, kMaxPartitions));
    if (updated.partitions != config->partitions) {
      // The current layout is sealed and a new one follows it.
      if (config->sealed_layouts.size() + 1 >= kMaxLayouts) {
        return FailedPrecondition(fmt::format(
            "field 'partitions' was changed {} times already: a tenant has at most {} layouts",
            config->sealed_layouts.size(), kMaxLayouts));
      }
      if (config->log_partitions() + updated.partitions > kMaxLogPartitions) {
        return FailedPrecondition(fmt::format(
            "field 'partitions': the tenant's log has {} partitions over its layouts; {} more "
            "would pass the limit of {}",
            config->log_partitions(), updated.partitions, kMaxLogPartitions));
      }
    }
  }
  FAIRWAY_RETURN_IF_ERROR(ApplyCommon(obj, &updated));
  if (auto* v = obj.if_contains("placement")) {
    FAIRWAY_RETURN_IF_ERROR(ApplyPlacement(*v, /*creating=*/false, &updated.placement));
  }
  *config = std::move(updated);
  return Status::Ok();
}

std::string TenantToApiJson(const TenantConfig& t) { return json::serialize(ApiObject(t)); }

std::string TenantToStoredJson(const TenantConfig& t) {
  json::object o = ApiObject(t);
  o["format"] = 1;
  o["write_key_hash"] = t.write_key_hash;
  o["api_key_hash"] = t.api_key_hash;
  return json::serialize(o);
}

Result<TenantConfig> TenantFromStoredJson(std::string_view body) {
  FAIRWAY_ASSIGN_OR_RETURN(json::object obj, ParseObject(body));
  try {
    TenantConfig t;
    t.id = TenantId(std::string(obj.at("id").as_string()));
    t.name = std::string(obj.at("name").as_string());
    t.timezone = std::string(obj.at("timezone").as_string());
    t.partitions = static_cast<uint32_t>(obj.at("partitions").to_number<uint64_t>());
    if (auto* layouts = obj.if_contains("sealed_layouts")) {
      FAIRWAY_ASSIGN_OR_RETURN(t.sealed_layouts, LayoutsFromJson(*layouts));
    }
    std::string status(obj.at("status").as_string());
    t.status = status == "suspended"  ? TenantStatus::kSuspended
               : status == "deleting" ? TenantStatus::kDeleting
                                      : TenantStatus::kActive;
    t.created_at_ms = obj.at("created_at_ms").to_number<int64_t>();
    t.updated_at_ms = obj.at("updated_at_ms").to_number<int64_t>();
    t.write_key_hash = std::string(obj.at("write_key_hash").as_string());
    t.api_key_hash = std::string(obj.at("api_key_hash").as_string());
    FAIRWAY_RETURN_IF_ERROR(ApplyQuotas(obj.at("quotas"), "quotas", &t.quotas));
    if (auto* placement = obj.if_contains("placement")) {
      FAIRWAY_RETURN_IF_ERROR(ApplyPlacement(*placement, /*creating=*/true, &t.placement));
    }
    if (auto* web = obj.if_contains("web")) FAIRWAY_RETURN_IF_ERROR(ApplyWeb(*web, &t.web));
    return t;
  } catch (const std::exception& e) {
    return Internal(fmt::format("stored tenant record is corrupt: {}", e.what()));
  }
}

bool OriginAllowed(const WebSettings& web, std::string_view origin) {
  if (web.allowed_origins.empty()) return true;
  const std::string o = AsciiLower(origin);
  const size_t sep = o.find("://");
  if (sep == std::string::npos) return false;
  const std::string_view scheme = std::string_view(o).substr(0, sep);
  const std::string_view rest = std::string_view(o).substr(sep + 3);
  const std::string_view host = rest.substr(0, rest.find(':'));
  const std::string_view port = rest.substr(host.size());  // ":8080" or ""
  for (const auto& pattern : web.allowed_origins) {
    if (pattern == o) return true;
    const size_t star = pattern.find("://*.");
    if (star == std::string::npos || std::string_view(pattern).substr(0, star) != scheme) continue;
    std::string_view p_rest = std::string_view(pattern).substr(star + 5);
    std::string_view p_host = p_rest.substr(0, p_rest.find(':'));
    if (p_rest.substr(p_host.size()) != port) continue;
    // A subdomain of the pattern's host, at any depth; not the host itself.
    if (host.size() > p_host.size() + 1 && host.ends_with(p_host) &&
        host[host.size() - p_host.size() - 1] == '.') {
      return true;
    }
  }
  return false;
}

bool IsBotUserAgent(std::string_view user_agent) {
  // Words of letters and digits: a bot names itself "...bot" (Googlebot, bingbot, AhrefsBot) or
  // crawler, spider and the like; "CUBOT" is a phone.
  const std::string ua = AsciiLower(user_agent);
  static constexpr std::string_view kWords[] = {
      "facebookexternalhit", "mediapartners", "archiver", "pingdom", "phantomjs", "slurp"};
  size_t i = 0;
  while (i < ua.size()) {
    while (i < ua.size() && !std::isalnum(static_cast<unsigned char>(ua[i]))) ++i;
    size_t j = i;
    while (j < ua.size() && std::isalnum(static_cast<unsigned char>(ua[j]))) ++j;
    std::string_view word = std::string_view(ua).substr(i, j - i);
    if ((word.ends_with("bot") && word != "cubot") || word.find("crawl") != word.npos ||
        word.find("spider") != word.npos) {
      return true;
    }
    for (std::string_view w : kWords) {
      if (word == w) return true;
    }
    i = j;
  }
  return false;
}

}  // namespace fairway::model
