#include "tenancy/tenant_registry.h"

#include <fmt/format.h>

#include <algorithm>

#include "common/crypto.h"
#include "storage/schema.h"

namespace fairway::tenancy {

using model::TenantConfig;
using model::TenantStatus;

Result<std::unique_ptr<TenantRegistry>> TenantRegistry::Open(storage::Store* store,
                                                             const Clock* clock) {
  std::unique_ptr<TenantRegistry> reg(new TenantRegistry(store, clock));
  auto it = store->NewIterator(storage::kTenants);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    auto t = model::TenantFromStoredJson(it->value());
    if (!t.ok()) return t.status();
    auto e = std::make_unique<Entry>();
    e->config = std::move(t).value();
    reg->IndexKeys(e.get());
    std::string id = e->config.id.str();
    reg->by_id_.emplace(std::move(id), std::move(e));
  }
  FAIRWAY_RETURN_IF_ERROR(it->status());
  return reg;
}

Status TenantRegistry::Persist(const TenantConfig& config) {
  std::string stored = model::TenantToStoredJson(config);
  if (journal_ != nullptr) {
    FAIRWAY_ASSIGN_OR_RETURN(int64_t at, journal_->Record(config.id, stored));
    int64_t& held = positions_[config.id.str()];
    held = std::max(held, at);
  }
  storage::WriteBatch b;
  b.Put(storage::kTenants, config.id.str(), stored);
  return store_->Write(b, /*sync=*/true);
}

Result<JournaledChange> TenantRegistry::ApplyJournaled(const TenantId& id,
                                                       const std::optional<std::string>& stored,
                                                       int64_t position) {
  std::lock_guard w(write_mu_);
  JournaledChange out;
  auto held = positions_.find(id.str());
  if (held != positions_.end() && held->second >= position) {
    std::shared_lock r(mu_);
    auto it = by_id_.find(id.str());
    if (it != by_id_.end()) out.config = it->second->config;
    return out;
  }
  std::optional<TenantConfig> config;
  if (stored) {
    auto parsed = model::TenantFromStoredJson(*stored);
    if (!parsed.ok()) {
      return InvalidArgument(fmt::format("tenant '{}' at journal position {}: {}", id.str(),
                                         position, parsed.status().message()));
    }
    config = std::move(parsed).value();
    if (config->id != id) {
      return InvalidArgument(fmt::format("journal position {} is keyed '{}' but holds tenant '{}'",
                                         position, id.str(), config->id.str()));
    }
  }
  storage::WriteBatch b;
  if (config) {
    b.Put(storage::kTenants, id.str(), *stored);
  } else {
    b.Delete(storage::kTenants, id.str());
  }
  FAIRWAY_RETURN_IF_ERROR(store_->Write(b, /*sync=*/true));
  positions_[id.str()] = position;
  std::unique_lock lock(mu_);
  auto it = by_id_.find(id.str());
  if (it != by_id_.end()) UnindexKeys(*it->second);
  if (!config) {
    if (it != by_id_.end()) by_id_.erase(it);
  } else {
    if (it == by_id_.end()) it = by_id_.emplace(id.str(), std::make_unique<Entry>()).first;
    it->second->config = *config;
    IndexKeys(it->second.get());
  }
  out.applied = true;
  out.config = std::move(config);
  return out;
}

void TenantRegistry::IndexKeys(Entry* e) {
  by_write_hash_[e->config.write_key_hash] = e;
  by_api_hash_[e->config.api_key_hash] = e;
}

void TenantRegistry::UnindexKeys(const Entry& e) {
  by_write_hash_.erase(e.config.write_key_hash);
  by_api_hash_.erase(e.config.api_key_hash);
}

Result<CreatedTenant> TenantRegistry::Create(TenantConfig config) {
  std::lock_guard w(write_mu_);
  {
    std::shared_lock r(mu_);
    if (by_id_.count(config.id.str())) {
      return AlreadyExists(fmt::format("tenant '{}' already exists", config.id.str()));
    }
  }
  CreatedTenant out;
  out.keys.write_key = RandomToken("wk_");
  out.keys.api_key = RandomToken("ak_");
  config.write_key_hash = Sha256Hex(out.keys.write_key);
  config.api_key_hash = Sha256Hex(out.keys.api_key);
  config.status = TenantStatus::kActive;
  config.created_at_ms = config.updated_at_ms = clock_->NowMillis();
  FAIRWAY_RETURN_IF_ERROR(Persist(config));
  auto e = std::make_unique<Entry>();
  e->config = config;
  std::unique_lock lock(mu_);
  IndexKeys(e.get());
  by_id_.emplace(config.id.str(), std::move(e));
  out.config = std::move(config);
  return out;
}

std::vector<TenantConfig> TenantRegistry::List() const {
  std::shared_lock lock(mu_);
  std::vector<TenantConfig> out;
  out.reserve(by_id_.size());
  for (const auto& [_, e] : by_id_) out.push_back(e->config);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  return out;
}

Result<TenantConfig> TenantRegistry::Get(const TenantId& id) const {
  std::shared_lock lock(mu_);
  auto it = by_id_.find(id.str());
  if (it == by_id_.end()) return NotFound(fmt::format("tenant '{}' not found", id.str()));
  return it->second->config;
}

std::optional<uint32_t> TenantRegistry::PlacedSlot(const TenantId& id) const {
  std::shared_lock lock(mu_);
  auto it = by_id_.find(id.str());
  return it == by_id_.end() ? std::nullopt : it->second->config.placement.slot;
}

Result<TenantConfig> TenantRegistry::Update(const TenantId& id, std::string_view patch_body,
                                            const LayoutStarter& start_layout) {
  std::lock_guard w(write_mu_);
  FAIRWAY_ASSIGN_OR_RETURN(const TenantConfig before, Get(id));
  TenantConfig config = before;
  FAIRWAY_RETURN_IF_ERROR(model::ApplyTenantPatch(patch_body, &config));
  if (config.partitions != before.partitions) {
    if (before.status == TenantStatus::kDeleting) {
      return FailedPrecondition(fmt::format("tenant '{}' is being deleted", id.str()));
    }
    FAIRWAY_ASSIGN_OR_RETURN(auto ends, start_layout(before, config.partitions));
    config.sealed_layouts.push_back({before.first_partition(), before.partitions, std::move(ends)});
  }
  config.updated_at_ms = clock_->NowMillis();
  FAIRWAY_RETURN_IF_ERROR(Persist(config));
  std::unique_lock lock(mu_);
  by_id_.at(id.str())->config = config;
  return config;
}

Result<TenantConfig> TenantRegistry::AdoptLayouts(
    const TenantId& id, const std::vector<model::PartitionLayout>& layouts) {
  std::lock_guard w(write_mu_);
  FAIRWAY_ASSIGN_OR_RETURN(TenantConfig config, Get(id));
  if (layouts.size() < 2 || layouts.back().first <= config.first_partition()) return config;
  config.sealed_layouts.assign(layouts.begin(), layouts.end() - 1);
  config.partitions = layouts.back().count;
  config.updated_at_ms = clock_->NowMillis();
  FAIRWAY_RETURN_IF_ERROR(Persist(config));
  std::unique_lock lock(mu_);
  by_id_.at(id.str())->config = config;
  return config;
}

Result<TenantConfig> TenantRegistry::SetStatus(const TenantId& id, TenantStatus status) {
  std::lock_guard w(write_mu_);
  FAIRWAY_ASSIGN_OR_RETURN(TenantConfig config, Get(id));
  if (config.status == TenantStatus::kDeleting) {
    return FailedPrecondition(fmt::format("tenant '{}' is being deleted", id.str()));
  }
  config.status = status;
  config.updated_at_ms = clock_->NowMillis();
  FAIRWAY_RETURN_IF_ERROR(Persist(config));
  std::unique_lock lock(mu_);
  by_id_.at(id.str())->config = config;
  return config;
}

Result<IssuedKeys> TenantRegistry::RotateKeys(const TenantId& id) {
  std::lock_guard w(write_mu_);
  FAIRWAY_ASSIGN_OR_RETURN(TenantConfig config, Get(id));
  IssuedKeys keys{RandomToken("wk_"), RandomToken("ak_")};
  config.write_key_hash = Sha256Hex(keys.write_key);
  config.api_key_hash = Sha256Hex(keys.api_key);
  config.updated_at_ms = clock_->NowMillis();
  FAIRWAY_RETURN_IF_ERROR(Persist(config));
  std::unique_lock lock(mu_);
  Entry* e = by_id_.at(id.str()).get();
  UnindexKeys(*e);
  e->config = config;
  IndexKeys(e);
  return keys;
}

Status TenantRegistry::Remove(const TenantId& id) {
  std::lock_guard w(write_mu_);
  if (journal_ != nullptr) {
    FAIRWAY_ASSIGN_OR_RETURN(int64_t at, journal_->Record(id, std::nullopt));
    int64_t& held = positions_[id.str()];
    held = std::max(held, at);
  }
  storage::WriteBatch b;
  b.Delete(storage::kTenants, id.str());
  FAIRWAY_RETURN_IF_ERROR(store_->Write(b, /*sync=*/true));
  std::unique_lock lock(mu_);
  auto it = by_id_.find(id.str());
  if (it == by_id_.end()) return NotFound(fmt::format("tenant '{}' not found", id.str()));
  UnindexKeys(*it->second);
  by_id_.erase(it);
  return Status::Ok();
}

Status TenantRegistry::AdmitIngest(std::string_view write_key, size_t events,
                                   IngestAdmission* admission) {
  std::string hash = Sha256Hex(write_key);
  std::shared_lock lock(mu_);
  auto it = by_write_hash_.find(hash);
  if (it == by_write_hash_.end()) return Unauthenticated("unknown write key");
  return Admit(it->second, events, admission);
}

Status TenantRegistry::AdmitTenantIngest(const TenantId& tenant, size_t events,
                                         IngestAdmission* admission) {
  std::shared_lock lock(mu_);
  auto it = by_id_.find(tenant.str());
  if (it == by_id_.end()) return NotFound(fmt::format("tenant '{}' not found", tenant.str()));
  return Admit(it->second.get(), events, admission);
}

Status TenantRegistry::Admit(Entry* e, size_t events, IngestAdmission* admission) {
  admission->tenant = e->config;
  if (e->config.status == TenantStatus::kSuspended) {
    return PermissionDenied(fmt::format("tenant '{}' is suspended", e->config.id.str()));
  }
  if (e->config.status == TenantStatus::kDeleting) {
    return PermissionDenied(fmt::format("tenant '{}' is being deleted", e->config.id.str()));
  }
  const auto& q = e->config.quotas;
  TokenBucket::Decision d;
  {
    std::lock_guard b(e->bucket_mu);
    d = e->bucket.Take(static_cast<double>(events), q.ingest_rate, q.ingest_burst,
                       clock_->MonotonicNanos());
  }
  admission->limit = q.ingest_burst;
  admission->remaining = d.remaining;
  admission->retry_after_s = d.retry_after_s;
  if (!d.admitted) {
    return ResourceExhausted(
        fmt::format("tenant '{}' is over its ingest rate of {} events/s (burst {})",
                    e->config.id.str(), q.ingest_rate, q.ingest_burst));
  }
  return Status::Ok();
}

Result<TenantConfig> TenantRegistry::AuthenticateApiKey(std::string_view api_key) const {
  std::string hash = Sha256Hex(api_key);
  std::shared_lock lock(mu_);
  auto it = by_api_hash_.find(hash);
  if (it == by_api_hash_.end()) return Unauthenticated("unknown API key");
  return it->second->config;
}

}  // namespace fairway::tenancy
