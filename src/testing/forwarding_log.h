#pragma once
// ForwardingLog: an ActivityLog that passes every call to another one. Tests derive from it and
// override the calls they watch or hold back (counting reads, holding appends), instead of
// restating the whole interface.

#include "log/activity_log.h"

namespace fairway::testing {

class ForwardingLog : public log::ActivityLog {
 public:
  // `inner` is not owned and must outlive this object.
  explicit ForwardingLog(log::ActivityLog* inner) : inner_(inner) {}

  void Start() override { inner_->Start(); }
  void Stop() override { inner_->Stop(); }
  void Append(log::AppendRequest request, log::AppendCallback done) override {
    inner_->Append(std::move(request), std::move(done));
  }
  Result<std::vector<log::LogEntry>> Read(const TenantId& tenant, PartitionId partition,
                                          Offset from, size_t max_records) override {
    return inner_->Read(tenant, partition, from, max_records);
  }
  Result<Offset> HighWatermark(const TenantId& tenant, PartitionId partition) override {
    return inner_->HighWatermark(tenant, partition);
  }
  Result<Offset> LowWatermark(const TenantId& tenant, PartitionId partition) override {
    return inner_->LowWatermark(tenant, partition);
  }
  Result<uint64_t> ApplyRetention(const TenantId& tenant, uint32_t partitions,
                                  int64_t cutoff_ms) override {
    return inner_->ApplyRetention(tenant, partitions, cutoff_ms);
  }
  Status DropTenant(const TenantId& tenant) override { return inner_->DropTenant(tenant); }
  Status ReopenTenant(const TenantId& tenant) override { return inner_->ReopenTenant(tenant); }
  bool AppendsInWrite() const override { return inner_->AppendsInWrite(); }
  Status AppendInWrite(const log::AppendRequest& request, storage::WriteBatch* batch,
                       const std::function<Status(storage::WriteBatch*)>& write) override {
    return inner_->AppendInWrite(request, batch, write);
  }
  Result<std::vector<uint64_t>> StartLayout(const model::TenantConfig& tenant,
                                            uint32_t count) override {
    return inner_->StartLayout(tenant, count);
  }
  Result<std::vector<model::PartitionLayout>> Layouts(const TenantId& tenant) override {
    return inner_->Layouts(tenant);
  }
  Status Health() override { return inner_->Health(); }
  void SetAppendListener(log::AppendListener listener) override {
    inner_->SetAppendListener(std::move(listener));
  }

 protected:
  log::ActivityLog* inner() const { return inner_; }

 private:
  log::ActivityLog* inner_;
};

}  // namespace fairway::testing
