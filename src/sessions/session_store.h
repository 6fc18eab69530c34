#pragma once
// SessionStore: reads the sessions processor's summaries (session_state.h) back: a person's
// sessions across its identities, and the session an activity belongs to. Reads committed
// state only, so it lags the log by the processor's backlog.
//
// Thread-safe: holds no mutable state.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/ids.h"
#include "common/status.h"
#include "sessions/session_state.h"
#include "storage/store.h"

namespace fairway::sessions {

struct SessionView {
  // The identity (lead key) whose activities the session holds.
  std::string lead;
  Session session;
};

struct SessionPage {
  std::vector<SessionView> sessions;
  // Pass back as `before_ms` for the next page; nullopt when there is nothing more.
  std::optional<int64_t> next_before_ms;
};

class SessionStore {
 public:
  // `store` (not owned) must outlive the SessionStore.
  explicit SessionStore(storage::Store* store);

  // The sessions of `leads` (lead keys of one person) that started before `before_ms`, newest
  // first, at most `limit`.
  Result<SessionPage> List(const TenantId& tenant, const std::vector<std::string>& leads,
                           int64_t before_ms, size_t limit) const;

  // The id of the session of `lead` that holds event time `time_ms`; nullopt when none does
  // (not processed yet, or not a visit).
  Result<std::optional<std::string>> SessionAt(const TenantId& tenant, std::string_view lead,
                                               int64_t time_ms) const;

 private:
  storage::Store* store_;
};

// Appends a session as JSON: {"id","lead","start","end","duration_s","pages","events",
// "landing_page","source","campaign","ended","day"}; `day` is the local date of its start in
// `timezone` (IANA; empty or unknown: UTC). `ended`: ended by the processor, or idle for
// `timeout_ms` at `now_ms` (sessions of tenants that do not listen to session_ended are not
// ended by the sweeper).
void AppendSessionJson(const SessionView& s, std::string_view timezone, int64_t now_ms,
                       int64_t timeout_ms, std::string* out);

}  // namespace fairway::sessions
