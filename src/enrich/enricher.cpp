#include "enrich/enricher.h"

#include <GeoIP.h>
#include <arpa/inet.h>
#include <fmt/format.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cctype>

#include "common/ascii.h"
#include "model/json_limits.h"

namespace fairway::enrich {

namespace json = boost::json;

struct CountryLookup::Impl {
  GeoIP* v4 = nullptr;
  GeoIP* v6 = nullptr;
  ~Impl() {
    if (v4 != nullptr) GeoIP_delete(v4);
    if (v6 != nullptr) GeoIP_delete(v6);
  }
};

CountryLookup::CountryLookup(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CountryLookup::~CountryLookup() = default;

Result<std::unique_ptr<CountryLookup>> CountryLookup::Open(const std::string& v4_path,
                                                           const std::string& v6_path) {
  auto impl = std::make_unique<Impl>();
  // GeoIP prints to stderr when a file is missing: look first.
  for (const auto* path : {&v4_path, &v6_path}) {
    if (::access(path->c_str(), R_OK) != 0) {
      return NotFound(fmt::format("GeoIP country database '{}' cannot be read", *path));
    }
  }
  impl->v4 = GeoIP_open(v4_path.c_str(), GEOIP_MEMORY_CACHE);
  impl->v6 = GeoIP_open(v6_path.c_str(), GEOIP_MEMORY_CACHE);
  if (impl->v4 == nullptr || impl->v6 == nullptr) {
    return InvalidArgument(
        fmt::format("GeoIP country databases '{}', '{}' cannot be opened", v4_path, v6_path));
  }
  return std::unique_ptr<CountryLookup>(new CountryLookup(std::move(impl)));
}

std::optional<CountryLookup::Country> CountryLookup::Find(const std::string& ip) const {
  // The _gl lookups keep their state in `gl`: safe from many threads on one database.
  GeoIPLookup gl{};
  in_addr a4{};
  in6_addr a6{};
  const char* code = nullptr;
  const char* name = nullptr;
  if (inet_pton(AF_INET, ip.c_str(), &a4) == 1) {
    code = GeoIP_country_code_by_addr_gl(impl_->v4, ip.c_str(), &gl);
    name = GeoIP_country_name_by_addr_gl(impl_->v4, ip.c_str(), &gl);
  } else if (inet_pton(AF_INET6, ip.c_str(), &a6) == 1) {
    code = GeoIP_country_code_by_addr_v6_gl(impl_->v6, ip.c_str(), &gl);
    name = GeoIP_country_name_by_addr_v6_gl(impl_->v6, ip.c_str(), &gl);
  }
  if (code == nullptr || name == nullptr || *code == '\0') return std::nullopt;
  return Country{code, name};
}

namespace {

// The host of a URL, lower case, without "www." and a port; empty when there is none.
std::string HostOf(std::string_view url) {
  const size_t sep = url.find("://");
  if (sep == std::string_view::npos) return {};
  std::string_view rest = url.substr(sep + 3);
  rest = rest.substr(0, rest.find_first_of("/?#"));
  if (const size_t at = rest.rfind('@'); at != std::string_view::npos) rest.remove_prefix(at + 1);
  rest = rest.substr(0, rest.find(':'));
  std::string host = AsciiLower(rest);
  if (host.starts_with("www.")) host.erase(0, 4);
  return host;
}

// The last two labels of a host ("shop.example.com" -> "example.com").
std::string_view BaseDomain(std::string_view host) {
  const size_t last = host.rfind('.');
  if (last == std::string_view::npos || last == 0) return host;
  const size_t before = host.rfind('.', last - 1);
  return before == std::string_view::npos ? host : host.substr(before + 1);
}

bool HostIs(std::string_view host, std::string_view domain) {
  return host == domain || (host.size() > domain.size() && host.ends_with(domain) &&
                            host[host.size() - domain.size() - 1] == '.');
}

std::string PercentDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() &&
               std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
               std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// The utm_ parameters of a URL as Segment's context.campaign; empty when it has none.
json::object CampaignOf(std::string_view url) {
  json::object out;
  const size_t q = url.find('?');
  if (q == std::string_view::npos) return out;
  std::string_view query = url.substr(q + 1);
  query = query.substr(0, query.find('#'));
  while (!query.empty()) {
    std::string_view pair = query.substr(0, query.find('&'));
    query.remove_prefix(std::min(query.size(), pair.size() + 1));
    const size_t eq = pair.find('=');
    if (eq == std::string_view::npos) continue;
    const std::string key = AsciiLower(pair.substr(0, eq));
    static constexpr std::pair<std::string_view, std::string_view> kNames[] = {
        {"utm_campaign", "name"},
        {"utm_source", "source"},
        {"utm_medium", "medium"},
        {"utm_term", "term"},
        {"utm_content", "content"}};
    for (const auto& [utm, name] : kNames) {
      if (key == utm) out[name] = PercentDecode(pair.substr(eq + 1)).substr(0, 500);
    }
  }
  return out;
}

std::string_view StringAt(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  return v != nullptr && v->is_string() ? std::string_view(v->as_string()) : std::string_view();
}

json::object& ObjectAt(json::object& o, std::string_view key) {
  json::value& v = o[key];
  if (!v.is_object()) v = json::object();
  return v.as_object();
}

}  // namespace

std::string ClassifyReferrer(std::string_view referrer, std::string_view page_url) {
  if (referrer.empty()) return "direct";
  // Android apps refer as android-app://<package>.
  if (referrer.starts_with("android-app://")) {
    const std::string app = AsciiLower(referrer.substr(14, referrer.find('/', 14) - 14));
    if (app == "com.google.android.gm" || app.starts_with("com.microsoft.office.outlook") ||
        app == "com.yahoo.mobile.client.android.mail") {
      return "email";
    }
    if (app == "com.google.android.googlequicksearchbox") return "search";
    for (std::string_view social :
         {"com.facebook.", "com.twitter.", "com.linkedin.", "com.instagram.", "com.reddit.",
          "com.pinterest", "com.zhiliaoapp.musically"}) {
      if (app.starts_with(social)) return "social";
    }
    return "other";
  }
  const std::string host = HostOf(referrer);
  if (host.empty()) return "other";
  const std::string page = HostOf(page_url);
  if (!page.empty() && BaseDomain(host) == BaseDomain(page)) return "internal";
  if (host.starts_with("mail.") || host.starts_with("webmail.") || HostIs(host, "outlook.com") ||
      HostIs(host, "outlook.live.com") || HostIs(host, "outlook.office.com") ||
      HostIs(host, "office365.com") || HostIs(host, "mail.yahoo.com") ||
      HostIs(host, "protonmail.com") || HostIs(host, "proton.me")) {
    return "email";
  }
  static constexpr std::string_view kSocial[] = {
      "facebook.com",         "fb.com",     "t.co",          "twitter.com", "x.com",
      "linkedin.com",         "lnkd.in",    "instagram.com", "reddit.com",  "pinterest.com",
      "youtube.com",          "tiktok.com", "threads.net",   "bsky.app",    "mastodon.social",
      "news.ycombinator.com", "quora.com",  "vk.com",        "weibo.com",   "xing.com"};
  for (std::string_view d : kSocial) {
    if (HostIs(host, d)) return "social";
  }
  const std::string_view base = BaseDomain(host);
  static constexpr std::string_view kSearchBases[] = {
      "bing.com",  "duckduckgo.com", "baidu.com", "ecosia.org", "ask.com",
      "naver.com", "startpage.com",  "qwant.com", "seznam.cz",  "sogou.com"};
  for (std::string_view d : kSearchBases) {
    if (base == d) return "search";
  }
  // google.com, google.de, google.co.uk, search.yahoo.com, yandex.ru, search.brave.com.
  if (host.starts_with("google.") || host.find(".google.") != std::string::npos ||
      HostIs(host, "search.yahoo.com") || host.starts_with("yandex.") ||
      HostIs(host, "search.brave.com")) {
    return "search";
  }
  return "other";
}

std::string AnonymizeIp(const std::string& ip) {
  in_addr a4{};
  in6_addr a6{};
  char buf[INET6_ADDRSTRLEN] = {};
  if (inet_pton(AF_INET, ip.c_str(), &a4) == 1) {
    reinterpret_cast<unsigned char*>(&a4.s_addr)[3] = 0;
    return inet_ntop(AF_INET, &a4, buf, sizeof(buf)) != nullptr ? buf : ip;
  }
  if (inet_pton(AF_INET6, ip.c_str(), &a6) == 1) {
    for (int i = 6; i < 16; ++i) a6.s6_addr[i] = 0;
    return inet_ntop(AF_INET6, &a6, buf, sizeof(buf)) != nullptr ? buf : ip;
  }
  return ip;
}

bool Enricher::HasVisitorContext(const model::Activity& activity) {
  const std::string_view f = activity.fields_json;
  return f.find("\"ip\":") != std::string_view::npos ||
         f.find("\"userAgent\":") != std::string_view::npos ||
         f.find("\"page\":") != std::string_view::npos;
}

void Enricher::Enrich(model::Activity* activity, const ClientInfo& client,
                      const EnrichOptions& options) const {
  std::string text;
  text.reserve(activity->fields_json.size() + 2);
  text += '{';
  text += activity->fields_json;
  text += '}';
  json::error_code ec;
  json::value parsed = json::parse(text, ec, {}, model::JsonParseOptions());
  if (ec || !parsed.is_object()) return;  // the parser accepted it: nothing to add then
  json::object& fields = parsed.as_object();
  json::object& ctx = ObjectAt(fields, "context");

  // The address: the message's own, else the client's.
  std::string ip(StringAt(ctx, "ip"));
  if (ip.empty()) ip = client.ip;
  if (!ip.empty()) {
    if (countries_ != nullptr) {
      json::object& location = ObjectAt(ctx, "location");
      if (StringAt(location, "country").empty()) {
        if (auto country = countries_->Find(ip)) {
          location["country"] = country->name;
          location["country_code"] = country->code;
        }
      }
      if (location.empty()) ctx.erase("location");
    }
    ctx["ip"] = options.anonymize_ip ? AnonymizeIp(ip) : ip;
  }

  std::string ua(StringAt(ctx, "userAgent"));
  if (ua.empty() && client.browser && !client.user_agent.empty()) {
    ua = client.user_agent.substr(0, 1024);
    ctx["userAgent"] = ua;
  }
  if (!ua.empty() && user_agents_ != nullptr) {
    const ParsedUserAgent p = user_agents_->Parse(ua);
    json::object& os = ObjectAt(ctx, "os");
    if (!os.contains("name")) os["name"] = p.os;
    if (!os.contains("version") && !p.os_version.empty()) os["version"] = p.os_version;
    json::object& device = ObjectAt(ctx, "device");
    if (!device.contains("type")) device["type"] = p.device_type;
    if (!device.contains("manufacturer") && !p.device_brand.empty()) {
      device["manufacturer"] = p.device_brand;
    }
    if (!device.contains("model") && !p.device_model.empty()) device["model"] = p.device_model;
    json::object& browser = ObjectAt(ctx, "browser");
    if (!browser.contains("name")) browser["name"] = p.browser;
    if (!browser.contains("version") && !p.browser_version.empty()) {
      browser["version"] = p.browser_version;
    }
  }

  // The page: analytics.js puts it in context.page; page calls may carry it in properties.
  std::string url, referrer;
  if (auto* page = ctx.if_contains("page"); page != nullptr && page->is_object()) {
    url = StringAt(page->as_object(), "url");
    referrer = StringAt(page->as_object(), "referrer");
  }
  if (auto* props = fields.if_contains("properties"); props != nullptr && props->is_object()) {
    if (url.empty()) url = StringAt(props->as_object(), "url");
    if (referrer.empty()) referrer = StringAt(props->as_object(), "referrer");
  }
  if (!url.empty()) {
    auto* campaign = ctx.if_contains("campaign");
    if (campaign == nullptr || !campaign->is_object() || campaign->as_object().empty()) {
      json::object found = CampaignOf(url);
      if (!found.empty()) ctx["campaign"] = std::move(found);
    }
    auto* ref = ctx.if_contains("referrer");
    if (ref == nullptr || !ref->is_object() || !ref->as_object().contains("type")) {
      json::object& r = ObjectAt(ctx, "referrer");
      r["type"] = ClassifyReferrer(referrer, url);
      if (!referrer.empty() && !r.contains("url")) r["url"] = referrer;
    }
  }

  std::string out = json::serialize(fields);
  activity->fields_json.assign(out, 1, out.size() - 2);
}

}  // namespace fairway::enrich
