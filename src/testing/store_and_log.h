#pragma once
// The real storage and activity log of Fairway on a temporary directory, for tests:
//
// - OpenFairwayStore() opens a Store with every Fairway column family, for suites that need only
//   the store.
// - StoreAndLog owns a TempDir, a ManualClock, the Store and the EmbeddedLog over it, and can
//   Reopen() them on the same files (a restart: nothing but what reached the store survives).
// - StoreAndLogTest is the GoogleTest fixture that opens a StoreAndLog before each test.
//
// Time is the fixture's ManualClock unless the options name another clock: tests advance it by
// hand (ManualClock::AdvanceMillis) instead of sleeping. Suites that drive real-time services
// (the engine's retries, an HTTP server) pass SystemClock::Default().

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "common/clock.h"
#include "common/metrics.h"
#include "common/status.h"
#include "log/embedded_log.h"
#include "storage/store.h"
#include "testing/temp_dir.h"

namespace fairway::testing {

// Opens (creating if missing) a Store at `path` with storage::FairwayColumnFamilies().
// `clock` times TTL expiry; it must outlive the Store.
Result<std::unique_ptr<storage::Store>> OpenFairwayStore(
    const std::string& path, const Clock* clock = SystemClock::Default());

struct StoreAndLogOptions {
  // Options of the EmbeddedLog (its defaults: fsync on). Suites that do not test durability
  // turn `sync` off: it is the slow part of every append.
  log::EmbeddedLogOptions log;
  // Time of the store's TTLs and of the log (dedup windows); nullptr: the fixture's ManualClock.
  const Clock* clock = nullptr;
  // Starts the log's writer thread on Open. Off for suites that must subscribe to appends
  // first (the engine sets the log's append listener before the log starts).
  bool start_log = true;
};

// Owns the store and the log of one test. Not thread-safe: the test's thread opens and closes
// them; the objects themselves may be used from any thread in between.
//
// Its members are protected, not private, so that a fixture deriving from it (through
// StoreAndLogTest) reads `store_`, `log_`, `metrics_`, `clock_` and `dir_` directly.
class StoreAndLog {
 public:
  explicit StoreAndLog(StoreAndLogOptions options = {});
  // Stops the log and closes the store.
  virtual ~StoreAndLog();
  StoreAndLog(const StoreAndLog&) = delete;
  StoreAndLog& operator=(const StoreAndLog&) = delete;

  // Opens the store in the temporary directory, a fresh MetricsRegistry and the log over the
  // store (started unless options say not). Requires: closed.
  Status Open();
  // Closes, then opens again on the same files, as a restart of the process would.
  Status Reopen();
  // The same, with new options (for example a smaller log queue) from now on.
  Status Reopen(StoreAndLogOptions options);
  // Stops the log (completing what it has queued), then closes the log and the store.
  // Whatever uses them (an engine, a server) must be stopped first.
  void Close();

  const TempDir& dir() const { return dir_; }
  ManualClock& clock() { return clock_; }
  // The clock given to the store and the log.
  const Clock* log_clock() const { return options_.clock ? options_.clock : &clock_; }
  storage::Store* store() { return store_.get(); }
  log::EmbeddedLog* log() { return log_.get(); }
  MetricsRegistry* metrics() { return metrics_.get(); }
  const StoreAndLogOptions& options() const { return options_; }

 protected:
  TempDir dir_;
  ManualClock clock_;
  StoreAndLogOptions options_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<MetricsRegistry> metrics_;
  std::unique_ptr<log::EmbeddedLog> log_;
};

// A fixture whose store and log are open when the test starts. A derived fixture chooses other
// options in its constructor (by passing them on, or by setting options_).
class StoreAndLogTest : public ::testing::Test, public StoreAndLog {
 protected:
  explicit StoreAndLogTest(StoreAndLogOptions options = {}) : StoreAndLog(std::move(options)) {}
  void SetUp() override;
  void TearDown() override { Close(); }
};

}  // namespace fairway::testing
