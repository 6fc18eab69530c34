#pragma once
// TenantRegistry: every tenant's configuration, credentials and ingest quota state. Tenants are
// stored in the embedded store (column family `tenants`, synced writes) and held in memory for
// the request path: key lookups and rate-limit decisions take a shared lock and never touch disk.
//
// Thread-safe. Credentials are generated here, returned once, and kept only as SHA-256 digests.

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "model/tenant.h"
#include "storage/store.h"
#include "tenancy/token_bucket.h"

namespace fairway::tenancy {

struct IssuedKeys {
  std::string write_key;
  std::string api_key;
};

struct CreatedTenant {
  model::TenantConfig config;
  IssuedKeys keys;
};

// The answer to an ingest request's admission check.
struct IngestAdmission {
  model::TenantConfig tenant;
  // RateLimit headers.
  double limit = 0;
  double remaining = 0;
  // When refused for rate (status ResourceExhausted): seconds to wait.
  double retry_after_s = 0;
};

// Where the nodes of a cluster share tenant changes (cluster/config_topic.h). A registry with a
// journal records every change there before it stores it.
class ConfigJournal {
 public:
  virtual ~ConfigJournal() = default;
  // Records the tenant's stored form (model::TenantToStoredJson; nullopt: the tenant is gone)
  // and returns its position in the journal once it is durable there.
  virtual Result<int64_t> Record(const TenantId& id, const std::optional<std::string>& stored) = 0;
};

// What a journaled change did to this node's registry.
struct JournaledChange {
  // False when this node already held the same or a later change of the tenant.
  bool applied = false;
  // The tenant after the change; nullopt when it is gone.
  std::optional<model::TenantConfig> config;
};

class TenantRegistry {
 public:
  // Loads every stored tenant. `store` must use storage::FairwayColumnFamilies().
  static Result<std::unique_ptr<TenantRegistry>> Open(storage::Store* store, const Clock* clock);

  // Creates a tenant with fresh keys. AlreadyExists if the id is taken.
  Result<CreatedTenant> Create(model::TenantConfig config);
  std::vector<model::TenantConfig> List() const;
  Result<model::TenantConfig> Get(const TenantId& id) const;
  // The slot recorded in the tenant's placement; nullopt when the tenant is not known or has
  // none. Cheap: for every write of tenant state in a cluster.
  std::optional<uint32_t> PlacedSlot(const TenantId& id) const;
  // Starts a layout of `count` partitions after `tenant`'s current one and returns the sealed
  // layout's end offsets (ActivityLog::StartLayout).
  using LayoutStarter = std::function<Result<std::vector<uint64_t>>(
      const model::TenantConfig& tenant, uint32_t count)>;
  // Applies a PATCH body; quotas take effect for the next request. A changed partition count
  // starts a new layout through `start_layout` before the change is stored.
  Result<model::TenantConfig> Update(const TenantId& id, std::string_view patch_body,
                                     const LayoutStarter& start_layout);
  // Takes the layouts the log recorded for the tenant (ActivityLog::Layouts) when they are newer
  // than the stored ones: a restart came between the log starting a layout and the registry
  // storing it. Returns the tenant's configuration.
  Result<model::TenantConfig> AdoptLayouts(const TenantId& id,
                                           const std::vector<model::PartitionLayout>& layouts);
  Result<model::TenantConfig> SetStatus(const TenantId& id, model::TenantStatus status);
  // Replaces both keys; the old ones stop working at once.
  Result<IssuedKeys> RotateKeys(const TenantId& id);
  // Forgets the tenant (after its data has been dropped).
  Status Remove(const TenantId& id);

  // Shares every change through `journal` (not owned; must outlive the registry). Requires:
  // before any change.
  void SetJournal(ConfigJournal* journal) { journal_ = journal; }
  // A change recorded in the journal at `position` (by any node, this one included), in
  // journal order: stored unless this node already holds a later change of the tenant. The
  // tenant's token bucket survives a change.
  Result<JournaledChange> ApplyJournaled(const TenantId& id,
                                         const std::optional<std::string>& stored,
                                         int64_t position);

  // Ingest path: authenticates a write key, checks the tenant is active and takes `events`
  // tokens from its bucket. Unauthenticated, PermissionDenied (suspended/deleting) or
  // ResourceExhausted (rate; admission.retry_after_s says how long to wait).
  Status AdmitIngest(std::string_view write_key, size_t events, IngestAdmission* admission);
  // The same admission for activities a tenant adds through its API key (campaign requests):
  // one bucket and one set of rules for every way activities enter the log. NotFound if the
  // tenant is unknown; otherwise as AdmitIngest.
  Status AdmitTenantIngest(const TenantId& tenant, size_t events, IngestAdmission* admission);
  // Read path: the tenant an API key belongs to. Unauthenticated if none.
  Result<model::TenantConfig> AuthenticateApiKey(std::string_view api_key) const;

 private:
  struct Entry {
    model::TenantConfig config;
    std::mutex bucket_mu;
    TokenBucket bucket;
  };
  TenantRegistry(storage::Store* store, const Clock* clock) : store_(store), clock_(clock) {}
  Status Persist(const model::TenantConfig& config);
  // Requires: mu_ held (shared).
  Status Admit(Entry* e, size_t events, IngestAdmission* admission);
  void IndexKeys(Entry* e);
  void UnindexKeys(const Entry& e);

  storage::Store* store_;
  const Clock* clock_;
  ConfigJournal* journal_ = nullptr;
  std::mutex write_mu_;  // serialises changes (persist + swap)
  // Guarded by write_mu_: the journal position of the latest change held, per tenant.
  std::unordered_map<std::string, int64_t> positions_;
  mutable std::shared_mutex mu_;
  std::unordered_map<std::string, std::unique_ptr<Entry>> by_id_;
  std::unordered_map<std::string, Entry*> by_write_hash_;
  std::unordered_map<std::string, Entry*> by_api_hash_;
};

}  // namespace fairway::tenancy
