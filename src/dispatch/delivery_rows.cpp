// Row I/O on the store outside the dispatcher thread's turn: finding the tenants with pending
// rows at start, listing and reviving rows for the API, and deleting a tenant's rows.

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "common/hex.h"
#include "dispatch/dispatcher_impl.h"
#include "storage/keys.h"
#include "storage/schema.h"

namespace fairway::dispatch {
namespace {

// Rows moved per synced write by Retry.
constexpr size_t kRetryChunk = 1000;
constexpr size_t kMaxListLimit = 1000;

}  // namespace

std::vector<std::string> DeliveryDispatcher::Impl::TenantsWithPendingRows() {
  std::vector<std::string> found;
  auto it = store->NewIterator(storage::kDeliveries, {}, {}, /*fill_cache=*/false);
  it->SeekToFirst();
  while (it->Valid()) {
    std::string_view key = it->key();
    size_t nul = key.find('\0');
    if (nul == std::string_view::npos) {
      it->Next();
      continue;
    }
    TenantId tenant{std::string(key.substr(0, nul))};
    std::string pending = PendingPrefix(tenant);
    it->Seek(pending);
    if (it->Valid() && it->key().starts_with(pending)) found.push_back(tenant.str());
    it->Seek(storage::PrefixEnd(TenantPrefix(tenant)));
  }
  if (!it->status().ok()) {
    spdlog::error("dispatch: scanning the deliveries at start failed: {}", it->status().ToString());
  }
  return found;
}

Status DeliveryDispatcher::Impl::DeleteTenantRows(const TenantId& tenant) {
  std::string begin = TenantPrefix(tenant);
  storage::WriteBatch batch;
  batch.DeleteRange(storage::kDeliveries, begin, storage::PrefixEnd(begin));
  FAIRWAY_RETURN_IF_ERROR(store->Write(batch, /*sync=*/true));
  metrics->RemoveSeriesWithLabel("tenant", tenant.str());
  return Status::Ok();
}

Result<DeliveryDispatcher::Page> DeliveryDispatcher::List(const TenantId& tenant, bool dead,
                                                          std::string_view cursor, size_t limit) {
  limit = std::clamp<size_t>(limit, 1, kMaxListLimit);
  std::string prefix = dead ? DeadPrefix(tenant) : PendingPrefix(tenant);
  std::string lower = prefix;
  if (!cursor.empty()) {
    auto suffix = HexDecode(cursor.substr(1));
    bool ok = suffix && cursor.front() == (dead ? 'd' : 'p') && !suffix->empty() &&
              (dead || suffix->size() > 8);
    if (!ok) return InvalidArgument("parameter 'cursor' is not valid");
    lower += *suffix;
    lower.push_back('\0');  // strictly after the cursor's row
  }
  auto it = impl_->store->NewIterator(storage::kDeliveries, lower, storage::PrefixEnd(prefix));
  Page page;
  std::string last_key;
  for (it->Seek(lower); it->Valid(); it->Next()) {
    if (page.items.size() == limit) {
      page.next_cursor = (dead ? "d" : "p") + HexEncode(last_key.substr(prefix.size()));
      break;
    }
    auto d = DecodeDelivery(it->value());
    if (!d.ok()) {
      spdlog::error("dispatch: tenant {}: skipping a corrupt delivery row in a listing: {}",
                    tenant.str(), d.status().ToString());
      continue;
    }
    last_key = std::string(it->key());
    page.items.push_back(std::move(d).value());
  }
  FAIRWAY_RETURN_IF_ERROR(it->status());
  return page;
}

Result<size_t> DeliveryDispatcher::Retry(const TenantId& tenant,
                                         const std::vector<std::string>& ids) {
  Impl& im = *impl_;
  std::vector<std::pair<std::string, Delivery>> rows;  // dead key, row
  if (ids.empty()) {
    std::string prefix = DeadPrefix(tenant);
    auto it = im.store->NewIterator(storage::kDeliveries, prefix, storage::PrefixEnd(prefix));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      auto d = DecodeDelivery(it->value());
      if (!d.ok()) {
        spdlog::error("dispatch: tenant {}: cannot retry a corrupt dead row: {}", tenant.str(),
                      d.status().ToString());
        continue;
      }
      rows.emplace_back(std::string(it->key()), std::move(d).value());
    }
    FAIRWAY_RETURN_IF_ERROR(it->status());
  } else {
    std::unordered_set<std::string_view> seen;
    for (const auto& id : ids) {
      if (!seen.insert(id).second) continue;
      std::string key = DeadKey(tenant, id);
      FAIRWAY_ASSIGN_OR_RETURN(auto v, im.store->Get(storage::kDeliveries, key));
      if (!v) {
        return NotFound(
            fmt::format("dead delivery '{}' of tenant '{}' not found", id, tenant.str()));
      }
      auto d = DecodeDelivery(*v);
      if (!d.ok()) return Internal(fmt::format("dead delivery '{}': {}", id, d.status().message()));
      rows.emplace_back(std::move(key), std::move(d).value());
    }
  }
  size_t moved = 0;
  for (size_t i = 0; i < rows.size(); i += kRetryChunk) {
    storage::WriteBatch batch;
    for (size_t j = i; j < std::min(rows.size(), i + kRetryChunk); ++j) {
      auto& [dead_key, d] = rows[j];
      d.attempts = 0;
      d.next_attempt_ms = 0;
      d.dead_at_ms = 0;
      batch.Delete(storage::kDeliveries, dead_key);
      batch.Put(storage::kDeliveries, PendingKey(tenant, d.created_ms, d.id), EncodeDelivery(d));
    }
    FAIRWAY_RETURN_IF_ERROR(im.store->Write(batch, /*sync=*/true));
    moved = std::min(rows.size(), i + kRetryChunk);
    Notify(tenant);
  }
  return moved;
}

}  // namespace fairway::dispatch
