#pragma once
// Tenant: a customer workspace. Its configuration, quotas and credentials (stored only as
// SHA-256 digests), with the JSON forms used by the admin API and by the tenant store.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/ids.h"
#include "common/status.h"

namespace fairway::model {

// Per-tenant limits. Every field can be set on creation and changed later (PATCH), except where
// noted; changes take effect at once.
struct Quotas {
  // Sustained ingest rate in events per second (token bucket refill rate).
  double ingest_rate = 5'000;
  // Largest burst of events accepted at once (token bucket size).
  double ingest_burst = 50'000;
  // Most activities processed per second, per processor (0 = no limit).
  double processing_rate = 0;
  // Share of processing when several tenants have work (used by the processing engine).
  uint32_t processing_weight = 1;
  // Most activities of this tenant in processing at once.
  uint32_t max_in_flight = 4'096;
  // Days activities are kept; 0 keeps them forever.
  uint32_t retention_days = 90;
  // Seconds during which a re-sent messageId is recognised and not stored again.
  uint32_t dedup_window_seconds = 7 * 86'400;
};

enum class TenantStatus : uint8_t { kActive = 0, kSuspended = 1, kDeleting = 2 };
std::string_view TenantStatusName(TenantStatus s);

// One layout of a tenant's log: `count` partitions numbered from `first`. Changing a tenant's
// partition count starts a new layout after the current one, whose partitions are then sealed:
// `ends` holds each sealed partition's end offset (empty for the current layout). A lead's
// activities go to one partition of the layout current when they are appended.
struct PartitionLayout {
  uint32_t first = 0;
  uint32_t count = 0;
  std::vector<uint64_t> ends;
  bool operator==(const PartitionLayout&) const = default;
};

// Where a cluster processes the tenant (docs/distributed.md, "Placement"). Each tenant belongs to
// one slot; the nodes split the slots.
struct Placement {
  // The load the tenant is expected to bring, relative to others (1..kMaxPlacementWeight): a
  // new tenant goes to the least loaded node's least loaded slot. Can be changed later; a change
  // counts for the tenants placed after it.
  uint32_t weight = 1;
  // Affinity: tenants of one group share a slot, so one node processes them all. Set on
  // creation only.
  std::string group;
  // The slot, chosen when a cluster node creates the tenant (or asked for on creation); then
  // fixed. Unset on one node, and for tenants created before placement was recorded: their slot
  // is their id's hash (cluster::SlotOf).
  std::optional<uint32_t> slot;
  bool operator==(const Placement&) const = default;
};

inline constexpr uint32_t kMaxPlacementWeight = 1'000'000;

// What browsers may send (docs/web.md). Every field can be changed later.
struct WebSettings {
  // Origins of the pages that may send events from a browser: "https://shop.example.com",
  // "http://localhost:8080", or "https://*.example.com" for every subdomain. Empty: any origin.
  // Requests without an Origin header (servers, mobile apps) are not checked.
  std::vector<std::string> allowed_origins;
  // Whether events whose User-Agent names a bot, crawler or spider are dropped (answered as
  // accepted so that they are not re-sent, and counted).
  bool drop_bots = true;
  // Whether browsers' events get their context filled before they are stored (user agent,
  // country, campaign, referrer: docs/web.md, "Enrichment").
  bool enrich = true;
  // Whether the client's address is stored with its last octet (IPv4) or last 80 bits (IPv6)
  // zeroed, the country being looked up first.
  bool anonymize_ip = false;
  // A visitor's session ends after this many minutes without activity (event time), 1 to 1440.
  uint32_t session_timeout_minutes = 30;
  bool operator==(const WebSettings&) const = default;
};

inline constexpr size_t kMaxAllowedOrigins = 100;

// Whether `origin` (an Origin header's value) may send events for a tenant with `web`.
bool OriginAllowed(const WebSettings& web, std::string_view origin);
// Whether a User-Agent names a bot, crawler or spider (a short list of markers, not a parser).
bool IsBotUserAgent(std::string_view user_agent);

struct TenantConfig {
  TenantId id;
  std::string name;
  std::string timezone = "UTC";
  Quotas quotas;
  // Partitions of the tenant's current layout (1..256). A change (PATCH) starts a new layout.
  uint32_t partitions = 4;
  // Earlier layouts, oldest first, each sealed (PartitionLayout::ends set).
  std::vector<PartitionLayout> sealed_layouts;
  Placement placement;
  WebSettings web;
  TenantStatus status = TenantStatus::kActive;
  int64_t created_at_ms = 0;
  int64_t updated_at_ms = 0;
  // SHA-256 hex digests of the credentials.
  std::string write_key_hash;
  std::string api_key_hash;

  // The first log partition of the current layout.
  uint32_t first_partition() const {
    return sealed_layouts.empty() ? 0 : sealed_layouts.back().first + sealed_layouts.back().count;
  }
  // Log partitions over all layouts: every partition the tenant's log has, numbered 0..n-1.
  uint32_t log_partitions() const { return first_partition() + partitions; }
  // The current layout (not sealed).
  PartitionLayout current_layout() const { return {first_partition(), partitions, {}}; }
};

inline constexpr uint32_t kMaxPartitions = 256;
// Most log partitions over all of a tenant's layouts, and most layouts.
inline constexpr uint32_t kMaxLogPartitions = 1024;
inline constexpr uint32_t kMaxLayouts = 64;

// Parses a creation body: {"id", "name", "timezone", "partitions", "quotas": {...},
// "placement": {"weight", "group", "slot"}, "web": {"allowed_origins", "drop_bots", "enrich",
// "anonymize_ip", "session_timeout_minutes"}}. Missing
// fields take the values of `defaults`. Errors name the field ("quotas.ingest_rate").
Result<TenantConfig> ParseTenantCreate(std::string_view body, const TenantConfig& defaults);

// Applies a PATCH body (name, timezone, quotas, partitions, placement.weight, web; any subset) to
// `config`. The placement's group and slot are fixed: FailedPrecondition for another value.
// Validates everything before changing anything. A new `partitions` value is only validated and set
// here (the log seals the old layout: see TenantRegistry::Update); FailedPrecondition when the
// tenant's layouts would exceed kMaxLogPartitions or kMaxLayouts.
Status ApplyTenantPatch(std::string_view body, TenantConfig* config);

// The admin API's view: everything but the key digests.
std::string TenantToApiJson(const TenantConfig& t);
// Full form for the tenant store, digests included.
std::string TenantToStoredJson(const TenantConfig& t);
Result<TenantConfig> TenantFromStoredJson(std::string_view json);

// True when `tz` names a zone of the IANA time zone database ("Europe/Berlin", "UTC").
bool IsKnownTimeZone(std::string_view tz);

}  // namespace fairway::model
