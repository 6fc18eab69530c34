#pragma once
// Enricher: fills an activity's `context` before it is stored (docs/web.md, "Enrichment"), with
// the names of Segment's spec where it has them:
// - `ip`: the client's address when the message has none (as Segment's API does), made anonymous
//   (the last octet, or the last 80 bits of an IPv6 address, zeroed) when the tenant asks;
// - `location.country` (and `location.country_code`, Fairway's) from the address, by Debian's
//   GeoIP country database;
// - `userAgent` from the request's User-Agent when a browser sent it and the message has none,
//   parsed into `os` {name, version}, `device` {type, manufacturer, model} and `browser`
//   {name, version} (Fairway's);
// - `campaign` {name, source, medium, term, content} from the page URL's utm_ parameters when
//   the message has none (or an empty one);
// - `referrer.type`: search, social, email, internal (the page's own site), other, or direct
//   (none), with `referrer.url`.
// What the message already says is kept.
//
// Thread-safe.

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "enrich/user_agent.h"
#include "model/activity.h"

namespace fairway::enrich {

inline constexpr char kDefaultGeoIpPath[] = "/usr/share/GeoIP/GeoIP.dat";
inline constexpr char kDefaultGeoIpV6Path[] = "/usr/share/GeoIP/GeoIPv6.dat";

// A country by IP address (Debian's geoip-database). Thread-safe.
class CountryLookup {
 public:
  static Result<std::unique_ptr<CountryLookup>> Open(const std::string& v4_path,
                                                     const std::string& v6_path);
  ~CountryLookup();
  struct Country {
    std::string code;  // ISO 3166-1 alpha-2
    std::string name;
  };
  std::optional<Country> Find(const std::string& ip) const;

  struct Impl;

 private:
  explicit CountryLookup(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// What the request says about the client.
struct ClientInfo {
  std::string ip;
  std::string user_agent;
  // A browser sent the request (an Origin header, or the pixel): its User-Agent is the
  // visitor's.
  bool browser = false;
};

struct EnrichOptions {
  bool anonymize_ip = false;
};

// "search", "social", "email", "internal", "other", or "direct" for an empty referrer.
std::string ClassifyReferrer(std::string_view referrer, std::string_view page_url);
// The address with its last octet (IPv4) or last 80 bits (IPv6) zeroed; `ip` itself when it is
// not an address.
std::string AnonymizeIp(const std::string& ip);

class Enricher {
 public:
  // Either may be null: that part is left out.
  Enricher(const UserAgentParser* user_agents, const CountryLookup* countries)
      : user_agents_(user_agents), countries_(countries) {}
  void Enrich(model::Activity* activity, const ClientInfo& client,
              const EnrichOptions& options) const;
  // Whether a server's message carries something of a visitor to enrich (an address, a
  // User-Agent or a browser's page context); a cheap look at its text. A server's own
  // `properties.url` is not enough: enriching every server event would cost about 3 us each.
  static bool HasVisitorContext(const model::Activity& activity);

 private:
  const UserAgentParser* user_agents_;
  const CountryLookup* countries_;
};

}  // namespace fairway::enrich
