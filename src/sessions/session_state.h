#pragma once
// The sessions processor's state and its encodings. In the engine's (tenant, "sessions") state
// space, all rows of a visitor named by its lead key (userId, else anonymousId), so only the
// visitor's own work item writes them:
//
//   h/<lead key>                       Session: the visitor's latest session (its "head")
//   s/<lead key>\0<start(be64)>        Session: an earlier session, by start (event time)
//   o/<due(be64)><kind><lead key>      "": the head is open and idle from `due` on (wall clock);
//                                      <kind> is 'u' (userId) or 'a' (anonymousId). Read by the
//                                      SessionSweeper, which appends a session_timeout activity.
//
// Times are ms since the epoch with the sign bit flipped, so that they sort as numbers.

#include <cstdint>
#include <string>
#include <string_view>

#include "common/ids.h"
#include "common/status.h"

namespace fairway::sessions {

struct Session {
  // "s_" + 16 hex digits: a hash of the lead key and the messageId of the activity that
  // opened it. Stable when late activities move its start or merge a later session into it.
  std::string id;
  // Event times of its first and last activity.
  int64_t start_ms = 0;
  int64_t end_ms = 0;
  uint32_t events = 0;
  uint32_t pages = 0;
  // The URL (else path) of its earliest page view; empty before one.
  std::string landing_page;
  // Where the visit came from: the utm source (and medium, "google/cpc") of its first page
  // view, else that page's referrer type (search, social, email, internal, other, direct).
  std::string source;
  // The utm campaign name of its first page view; a page view of another campaign starts a new
  // session.
  std::string campaign;
  // session_ended was decided (by inactivity or by the next session).
  bool ended = false;
  // While open: the due time of its row in the sweeper index (0: none).
  int64_t due_ms = 0;
  // Whether the lead key is a userId ('u') or an anonymousId ('a').
  char kind = 'a';
};

std::string EncodeSession(const Session& s);
Result<Session> DecodeSession(std::string_view in);

// The session id of the session opened by activity `message_id` of `lead`.
std::string MakeSessionId(std::string_view lead, std::string_view message_id);

uint64_t OrderedTime(int64_t ms);
int64_t FromOrderedTime(uint64_t v);

std::string HeadKey(std::string_view lead);
std::string PastPrefix(std::string_view lead);
std::string PastKey(std::string_view lead, int64_t start_ms);
// "o/": the sweeper index, ordered by due time.
inline constexpr std::string_view kDuePrefix = "o/";
std::string DueKey(int64_t due_ms, char kind, std::string_view lead);
struct DueRow {
  int64_t due_ms = 0;
  char kind = 'a';
  std::string lead;
};
// Decodes a due key (with its "o/" prefix); nullopt if malformed.
Result<DueRow> DecodeDueKey(std::string_view key);

}  // namespace fairway::sessions
