#pragma once
// SessionProcessor: the "sessions" processor. Cuts each visitor's activities (by lead key:
// userId, else anonymousId) into sessions on event time: a session ends after the tenant's
// inactivity timeout (default 30 minutes) or when a page view brings another utm campaign.
// Late and out-of-order activities extend, open or merge the sessions they fall into. Keeps
// summaries (session_state.h) for GET /v1/sessions and for the sessionId of each activity,
// and announces session_started / session_ended activities (campaign triggers).
//
// A session still open is ended by the SessionSweeper (session_sweeper.h): once its idle time
// has passed by the wall clock, the sweeper appends a session_timeout activity that this
// processor turns into session_ended, in the visitor's order, unless the visitor came back.
//
// Exactly once: state, the sweeper index and the generated activities (message ids derived
// from the session id) are committed atomically with the offsets (engine/processor.h).
//
// Runs on engine threads; holds no mutable state of its own.

#include <cstdint>
#include <functional>
#include <string_view>

#include "common/ids.h"
#include "engine/processor.h"

namespace fairway::sessions {

inline constexpr int64_t kDefaultTimeoutMs = 30 * 60'000;
// Most earlier sessions kept per visitor; older ones are dropped.
inline constexpr size_t kMaxPastSessions = 100;

struct SessionProcessorOptions {
  uint32_t batch_size = 512;
  // The tenant's inactivity timeout in ms (unset: kDefaultTimeoutMs).
  std::function<int64_t(const TenantId&)> timeout_ms;
  // Whether the tenant wants session_started / session_ended activities (`event`): generated
  // activities cost log space and processing, so they are written only when something (a
  // campaign trigger) listens. Unset: always.
  std::function<bool(const TenantId&, std::string_view event)> announce;
};

class SessionProcessor final : public engine::Processor {
 public:
  explicit SessionProcessor(SessionProcessorOptions options = {});

  const engine::ProcessorSpec& spec() const override { return spec_; }
  void Process(engine::WorkItem& item) override;

 private:
  SessionProcessorOptions options_;
  engine::ProcessorSpec spec_;
};

}  // namespace fairway::sessions
