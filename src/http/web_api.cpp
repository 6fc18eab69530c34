// The browser front door (docs/web.md): what analytics.js and no-JS pages need besides the
// Segment routes. Short routes (/v1/t, /v1/p, ...), CORS preflights, the settings analytics.js
// loads, and the pixel.

#include <fmt/format.h>

#include "common/crypto.h"
#include "common/json_writer.h"
#include "http/api.h"

namespace fairway::http {

namespace {

// A transparent 1x1 GIF.
constexpr unsigned char kPixel[] = {
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00,
    0x00, 0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00,
    0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b};

constexpr std::string_view kSettingsPrefix = "/v1/projects/";
constexpr std::string_view kSettingsSuffix = "/settings";
constexpr std::string_view kPixelPrefix = "/v1/pixel/";

}  // namespace

std::optional<std::string_view> Api::IngestRouteKind(std::string_view kind) {
  // analytics.js sends to the first letter of each call's type, and batches to /b.
  if (kind.size() == 1) {
    switch (kind[0]) {
      case 't':
        return "track";
      case 'p':
        return "page";
      case 'i':
        return "identify";
      case 'g':
        return "group";
      case 'a':
        return "alias";
      case 's':
        return "screen";
      case 'b':
        return "batch";
      default:
        return std::nullopt;
    }
  }
  if (kind == "batch" || kind == "import") return kind;
  if (auto t = model::ParseActivityType(kind); t && model::IsClientActivityType(*t)) return kind;
  return std::nullopt;
}

void Api::AddCors(std::string_view origin, HttpResponse* r) {
  if (origin.empty()) return;
  r->headers.emplace_back("Access-Control-Allow-Origin", std::string(origin));
  r->headers.emplace_back("Vary", "Origin");
}

bool Api::HandleWeb(HttpRequest& req, std::string_view path, std::string_view query,
                    Responder& respond, int64_t start_ns) {
  const bool settings = path.starts_with(kSettingsPrefix) && path.ends_with(kSettingsSuffix);
  const bool pixel = path.starts_with(kPixelPrefix);
  const bool ingest = path.starts_with("/v1/") && IngestRouteKind(path.substr(4)).has_value();
  if (req.method == "OPTIONS" && (settings || pixel || ingest)) {
    // A preflight names no tenant: it is answered for any origin, and the request that follows
    // is checked against its tenant's allowed origins.
    HttpResponse r;
    r.status = 204;
    r.content_type.clear();
    AddCors(req.origin.empty() ? "*" : req.origin, &r);
    r.headers.emplace_back("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    r.headers.emplace_back("Access-Control-Allow-Headers",
                           "Content-Type, Authorization, Content-Encoding");
    r.headers.emplace_back("Access-Control-Max-Age", "86400");
    respond(std::move(r));
    return true;
  }
  if (req.method != "GET") return false;
  if (settings) {
    std::string_view key = path.substr(
        kSettingsPrefix.size(), path.size() - kSettingsPrefix.size() - kSettingsSuffix.size());
    respond(ProjectSettings(req, key));
    return true;
  }
  if (pixel) {
    HandlePixel(req, path.substr(kPixelPrefix.size()), query, std::move(respond), start_ns);
    return true;
  }
  return false;
}

HttpResponse Api::ProjectSettings(const HttpRequest& req, std::string_view write_key) {
  tenancy::IngestAdmission adm;
  Status st = tenants_->AdmitIngest(write_key, 0, &adm);
  if (st.code() == StatusCode::kUnauthenticated) {
    HttpResponse r = Error(NotFound("no source has this write key"));
    AddCors(req.origin, &r);
    return r;
  }
  // A suspended tenant's page still loads; its events are refused when they are sent.
  if (!req.origin.empty() && !model::OriginAllowed(adm.tenant.web, req.origin)) {
    return Error(
        PermissionDenied(fmt::format("origin '{}' is not in tenant '{}''s web.allowed_origins",
                                     req.origin, adm.tenant.id.str())));
  }
  // analytics.js sends to <protocol>://<apiHost>/<t|p|i|...>: back to this server.
  const std::string host = req.host.empty() ? "localhost" : req.host;
  const std::string protocol = options_.tls || req.forwarded_proto == "https" ? "https" : "http";
  JsonWriter w;
  w.BeginObject().Key("integrations").BeginObject().Key("Segment.io").BeginObject();
  w.Key("apiKey").String(write_key).Key("apiHost").String(host + "/v1");
  w.Key("protocol").String(protocol);
  w.Key("unbundledIntegrations").BeginArray().EndArray();
  w.Key("addBundledMetadata").Bool(true);
  w.Key("maybeBundledConfigIds").BeginObject().EndObject();
  w.EndObject().EndObject();
  w.Key("plan").BeginObject();
  for (const char* kind : {"track", "identify", "group"}) {
    w.Key(kind).BeginObject().Key("__default").BeginObject().Key("enabled").Bool(true);
    w.Key("integrations").BeginObject().EndObject().EndObject().EndObject();
  }
  w.EndObject();
  w.Key("edgeFunction").BeginObject().EndObject();
  w.Key("analyticsNextEnabled").Bool(true);
  w.Key("middlewareSettings").BeginObject().EndObject();
  w.Key("enabledMiddleware").BeginObject().EndObject();
  w.Key("metrics").BeginObject().Key("sampleRate").Int(0).EndObject();
  w.Key("legacyVideoPluginsEnabled").Bool(false);
  w.Key("remotePlugins").BeginArray().EndArray();
  w.EndObject();
  HttpResponse r = Json(200, w.Take());
  r.headers.emplace_back("Cache-Control", "public, max-age=300");
  AddCors(req.origin.empty() ? "*" : req.origin, &r);
  return r;
}

void Api::HandlePixel(HttpRequest& req, std::string_view kind, std::string_view query,
                      Responder respond, int64_t start_ns) {
  auto type = model::ParseActivityType(kind);
  if (!type || !model::IsClientActivityType(*type)) {
    return respond(Error(NotFound(fmt::format(
        "no pixel route for '{}': use /v1/pixel/track, page, identify, group, alias or screen",
        kind))));
  }
  auto params = ParseQuery(query);
  if (!params.ok()) return respond(Error(params.status()));
  std::optional<std::string> data;
  for (auto& [k, v] : *params) {
    if (k == "data") data = std::move(v);
  }
  if (!data || data->empty()) {
    return respond(Error(InvalidArgument(
        "parameter 'data' is required: the event's JSON, base64-encoded, with its writeKey")));
  }
  // Standard or URL-safe base64; a '+' left unencoded in the query reads as a space.
  for (char& c : *data) {
    if (c == ' ' || c == '-') c = '+';
    if (c == '_') c = '/';
  }
  auto body = Base64Decode(*data);
  if (!body) {
    return respond(Error(InvalidArgument("parameter 'data' is not valid base64")));
  }
  req.body = std::move(*body);
  HandleIngest(
      req, type,
      [respond = std::move(respond)](HttpResponse r) {
        if (r.status == 200) {
          r.content_type = "image/gif";
          r.body.assign(reinterpret_cast<const char*>(kPixel), sizeof(kPixel));
          r.headers.emplace_back("Cache-Control", "no-store");
        }
        respond(std::move(r));
      },
      start_ns, /*browser=*/true);
}

}  // namespace fairway::http
