#include "testing/store_and_log.h"

#include "storage/schema.h"
#include "testing/status_matchers.h"

namespace fairway::testing {

Result<std::unique_ptr<storage::Store>> OpenFairwayStore(const std::string& path,
                                                         const Clock* clock) {
  storage::StoreOptions options;
  options.path = path;
  options.column_families = storage::FairwayColumnFamilies();
  options.clock = clock;
  return storage::Store::Open(options);
}

StoreAndLog::StoreAndLog(StoreAndLogOptions options) : options_(std::move(options)) {}

StoreAndLog::~StoreAndLog() { Close(); }

Status StoreAndLog::Open() {
  auto store = OpenFairwayStore(dir_.path(), log_clock());
  if (!store.ok()) return store.status();
  store_ = std::move(store).value();
  metrics_ = std::make_unique<MetricsRegistry>();
  log_ =
      std::make_unique<log::EmbeddedLog>(store_.get(), log_clock(), metrics_.get(), options_.log);
  if (options_.start_log) log_->Start();
  return Status::Ok();
}

Status StoreAndLog::Reopen() {
  Close();
  return Open();
}

Status StoreAndLog::Reopen(StoreAndLogOptions options) {
  Close();
  options_ = std::move(options);
  return Open();
}

void StoreAndLog::Close() {
  if (log_) log_->Stop();
  log_.reset();
  store_.reset();
}

void StoreAndLogTest::SetUp() { ASSERT_OK(Open()); }

}  // namespace fairway::testing
