#include <algorithm>
#include <map>

#include "engine/processor.h"
#include "storage/keys.h"
#include "storage/schema.h"

namespace fairway::engine {

std::string_view OrderingName(Ordering o) {
  switch (o) {
    case Ordering::kPerLead:
      return "per_lead";
    case Ordering::kPerTenant:
      return "per_tenant";
    case Ordering::kNone:
      return "none";
  }
  return "unknown";
}

std::string_view ErrorClassName(ErrorClass c) {
  switch (c) {
    case ErrorClass::kRetryNow:
      return "retry_now";
    case ErrorClass::kRetryLater:
      return "retry_later";
    case ErrorClass::kPermanent:
      return "permanent";
  }
  return "unknown";
}

ErrorClass RetryClassOf(StatusCode code) {
  switch (code) {
    case StatusCode::kAborted:
      return ErrorClass::kRetryNow;
    case StatusCode::kUnavailable:
    case StatusCode::kResourceExhausted:
      return ErrorClass::kRetryLater;
    default:
      return ErrorClass::kPermanent;
  }
}

std::string StateKeyPrefix(const TenantId& tenant, std::string_view processor) {
  std::string p;
  p.reserve(tenant.str().size() + processor.size() + 2);
  p.append(tenant.str());
  p.push_back('\0');
  p.append(processor);
  p.push_back('\0');
  return p;
}

StateTxn::StateTxn(storage::Store* store, std::string key_prefix)
    : store_(store), prefix_(std::move(key_prefix)) {}

Result<std::optional<std::string>> StateTxn::Get(std::string_view key) {
  std::string k(key);
  if (auto it = writes_.find(k); it != writes_.end()) return it->second;
  if (auto it = reads_.find(k); it != reads_.end()) return it->second;
  std::string full = prefix_;
  full.append(key);
  return store_->Get(storage::kEngineState, full);
}

Status StateTxn::Prefetch(const std::vector<std::string>& keys) {
  std::vector<std::string> full;
  full.reserve(keys.size());
  for (const auto& k : keys) {
    if (writes_.contains(k) || reads_.contains(k)) continue;
    full.push_back(prefix_ + k);
  }
  if (full.empty()) return Status::Ok();
  std::sort(full.begin(), full.end());
  full.erase(std::unique(full.begin(), full.end()), full.end());
  std::vector<std::string_view> views(full.begin(), full.end());
  std::vector<std::optional<std::string>> values;
  FAIRWAY_RETURN_IF_ERROR(store_->MultiGet(storage::kEngineState, views, &values));
  for (size_t i = 0; i < full.size(); ++i) {
    reads_.emplace(full[i].substr(prefix_.size()), std::move(values[i]));
  }
  return Status::Ok();
}

void StateTxn::Put(std::string_view key, std::string value) {
  writes_[std::string(key)] = std::move(value);
}

void StateTxn::Delete(std::string_view key) { writes_[std::string(key)] = std::nullopt; }

void StateTxn::PutIn(storage::ColumnFamily cf, std::string key, std::string value) {
  raw_writes_.push_back({RawWrite::Op::kPut, cf, std::move(key), std::move(value)});
}

void StateTxn::DeleteIn(storage::ColumnFamily cf, std::string key) {
  raw_writes_.push_back({RawWrite::Op::kDelete, cf, std::move(key), {}});
}

void StateTxn::MergeIn(storage::ColumnFamily cf, std::string key, int64_t delta) {
  raw_writes_.push_back({RawWrite::Op::kMerge, cf, std::move(key), storage::EncodeCounter(delta)});
}

Status StateTxn::Scan(std::string_view prefix,
                      const std::function<bool(std::string_view, std::string_view)>& fn) {
  std::string lower = prefix_;
  lower.append(prefix);
  auto it = store_->NewIterator(storage::kEngineState, lower, storage::PrefixEnd(lower));
  for (it->Seek(lower); it->Valid(); it->Next()) {
    std::string_view k = it->key();
    k.remove_prefix(prefix_.size());
    if (!fn(k, it->value())) break;
  }
  return it->status();
}

void StateTxn::AppendTo(storage::WriteBatch* batch) const {
  // Sorted, so that the batch (and the tests reading it) are deterministic.
  std::map<std::string_view, const std::optional<std::string>*> sorted;
  for (const auto& [k, v] : writes_) sorted.emplace(k, &v);
  std::string full;
  for (const auto& [k, v] : sorted) {
    full.assign(prefix_);
    full.append(k);
    if (v->has_value()) {
      batch->Put(storage::kEngineState, full, **v);
    } else {
      batch->Delete(storage::kEngineState, full);
    }
  }
  // In the order they were made: a later write to the same key wins.
  for (const auto& w : raw_writes_) {
    switch (w.op) {
      case RawWrite::Op::kPut:
        batch->Put(w.cf, w.key, w.value);
        break;
      case RawWrite::Op::kDelete:
        batch->Delete(w.cf, w.key);
        break;
      case RawWrite::Op::kMerge:
        batch->Merge(w.cf, w.key, w.value);
        break;
    }
  }
}

}  // namespace fairway::engine
