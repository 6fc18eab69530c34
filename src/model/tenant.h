#pragma once
// Tenant: a customer workspace. Its configuration, quotas and credentials (stored only as
// SHA-256 digests), with the JSON forms used by the admin API and by the tenant store.

#include <cstdint>
#include <string>
#include <string_view>

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

struct TenantConfig {
  TenantId id;
  std::string name;
  std::string timezone = "UTC";
  Quotas quotas;
  // Partitions of the tenant's log, fixed at creation (1..256).
  uint32_t partitions = 4;
  TenantStatus status = TenantStatus::kActive;
  int64_t created_at_ms = 0;
  int64_t updated_at_ms = 0;
  // SHA-256 hex digests of the credentials.
  std::string write_key_hash;
  std::string api_key_hash;
};

inline constexpr uint32_t kMaxPartitions = 256;

// Parses a creation body: {"id", "name", "timezone", "partitions", "quotas": {...}}. Missing
// fields take the values of `defaults`. Errors name the field ("quotas.ingest_rate").
Result<TenantConfig> ParseTenantCreate(std::string_view body, const TenantConfig& defaults);

// Applies a PATCH body (name, timezone, quotas; any subset) to `config`. Validates everything
// before changing anything.
Status ApplyTenantPatch(std::string_view body, TenantConfig* config);

// The admin API's view: everything but the key digests.
std::string TenantToApiJson(const TenantConfig& t);
// Full form for the tenant store, digests included.
std::string TenantToStoredJson(const TenantConfig& t);
Result<TenantConfig> TenantFromStoredJson(std::string_view json);

// True when `tz` names a zone of the IANA time zone database ("Europe/Berlin", "UTC").
bool IsKnownTimeZone(std::string_view tz);

}  // namespace fairway::model
