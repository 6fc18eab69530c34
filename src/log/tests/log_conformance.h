#pragma once
// The conformance suite of ActivityLog: what every backend must do, whichever stores the log.
// It runs once per backend (value-parameterised over LogBackend); a backend joins it with
//
//   INSTANTIATE_TEST_SUITE_P(Kafka, ActivityLogConformanceTest,
//                            ::testing::Values(LogBackend{"kafka", MakeKafkaHarness}),
//                            LogBackendName);
//
// in its own test file of log_test. The tests are in log_conformance_test.cpp.

#include <gtest/gtest.h>

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <ostream>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "log/activity_log.h"

namespace fairway::log {

// One backend under test, on storage of its own that outlives Close() for the next Open().
class LogBackendHarness {
 public:
  virtual ~LogBackendHarness() = default;
  // Opens the log, not started: on empty storage the first time, then on what the previous
  // log left (a restart).
  virtual Status Open() = 0;
  // Stops and closes the log; its data stays for the next Open().
  virtual void Close() = 0;
  // The open log.
  virtual ActivityLog* log() = 0;
  // The time the log sees (dedup windows); the suite advances it.
  virtual ManualClock* clock() = 0;
  // Makes the next append fail as a storage failure would. Returns false when the backend
  // cannot inject failures (the test that needs it is then skipped).
  virtual bool FailNextAppend() = 0;
  // Whether ApplyRetention removes records. When it does not (Kafka: the broker applies the
  // topic's retention.ms), the retention test is skipped and the backend's own suite shows how
  // reads behave at a retention gap.
  virtual bool RetentionRemovesRecords() { return true; }
  // Whether DropTenant removes the tenant's records at once, so that a tenant re-created with
  // the same id starts from offset 0. When it does not (Kafka: the topic is deleted by the
  // broker later), the rest of the drop contract is still checked.
  virtual bool DropRemovesRecords() { return true; }
};

struct LogBackend {
  // Names the instances of the suite: letters, digits and '_' only.
  std::string name;
  std::function<std::unique_ptr<LogBackendHarness>()> make;
};

inline std::string LogBackendName(const ::testing::TestParamInfo<LogBackend>& info) {
  return info.param.name;
}
inline void PrintTo(const LogBackend& backend, std::ostream* os) { *os << backend.name; }

class ActivityLogConformanceTest : public ::testing::TestWithParam<LogBackend> {
 protected:
  // A commit the append listener reported, and what a read saw at that moment.
  struct SeenAdvance {
    PartitionAdvance advance;
    // The record just below `advance.next` was readable when the listener ran.
    bool readable = false;
  };

  void SetUp() override;
  void TearDown() override;

  // Closes the log and opens it again on the same storage (a restart).
  void Reopen();

  ActivityLog* log() { return harness_->log(); }
  bool FailNextAppend() { return harness_->FailNextAppend(); }
  ManualClock* clock() { return harness_->clock(); }
  LogBackendHarness* harness() { return harness_.get(); }

  // An activity of lead `user`, received now.
  model::Activity MakeActivity(std::string message_id, std::string user, int64_t ts);
  AppendRequest Request(const std::string& tenant, std::vector<model::Activity> activities,
                        uint32_t partitions, int64_t dedup_window_ms);
  // Appends and waits for the callback.
  Result<AppendResult> AppendSync(AppendRequest request);
  // Every record of one partition from offset 0 (retention-removed ones skipped).
  std::vector<LogEntry> ReadAll(const std::string& tenant, uint32_t partition);
  // The sorted message ids of all records of the tenant's partitions.
  std::vector<std::string> AllIds(const std::string& tenant, uint32_t partitions);
  // The high watermark, expecting success.
  uint64_t High(const std::string& tenant, uint32_t partition);
  uint64_t Low(const std::string& tenant, uint32_t partition);
  // Waits (bounded; real time) until the listener reported `next` or beyond for the partition.
  bool WaitForAdvance(const std::string& tenant, uint32_t partition, uint64_t next);
  std::vector<SeenAdvance> Advances();

 private:
  void StartWithListener();

  std::unique_ptr<LogBackendHarness> harness_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<SeenAdvance> advances_;
};

}  // namespace fairway::log
