#include "log/log_factory.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "testing/status_matchers.h"
#include "testing/store_and_log.h"
#include "testing/temp_dir.h"

namespace fairway::log {
namespace {

using ::fairway::testing::StatusIs;
using ::testing::HasSubstr;

TEST(LogFactoryTest, OpensTheEmbeddedBackendUnstarted) {
  ::fairway::testing::TempDir dir;
  ManualClock clock;
  ASSERT_OK_AND_ASSIGN(auto store, ::fairway::testing::OpenFairwayStore(dir.path(), &clock));
  MetricsRegistry metrics;
  ASSERT_OK_AND_ASSIGN(OpenedActivityLog opened,
                       OpenActivityLog(LogConfig{}, store.get(), &clock, &metrics));
  ASSERT_NE(opened.log, nullptr);
  ASSERT_NE(opened.index, nullptr);
  // Not started: an append is refused until Start().
  std::optional<Status> before;
  opened.log->Append({}, [&](Result<AppendResult> r) { before = r.status(); });
  ASSERT_TRUE(before.has_value());
  EXPECT_THAT(*before, StatusIs(StatusCode::kUnavailable));
  opened.log->Start();
  opened.log->Stop();
}

TEST(LogFactoryTest, AnUnknownBackendIsRefusedNamingTheConfigKey) {
  EXPECT_OK(CheckActivityLogBackend("embedded"));
  LogConfig config;
  config.backend = "kafka-typo";
  auto opened = OpenActivityLog(config, nullptr, SystemClock::Default(), nullptr);
  EXPECT_THAT(opened, StatusIs(StatusCode::kInvalidArgument, HasSubstr("log.backend")));
  EXPECT_THAT(opened, StatusIs(StatusCode::kInvalidArgument, HasSubstr("'kafka-typo'")));
  EXPECT_THAT(CheckActivityLogBackend(""),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("must be one of: embedded, kafka")));
}

}  // namespace
}  // namespace fairway::log
