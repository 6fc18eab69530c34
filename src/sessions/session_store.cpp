#include "sessions/session_store.h"

#include <date/date.h>
#include <date/tz.h>

#include <algorithm>

#include "common/coding.h"
#include "common/json_writer.h"
#include "common/time_format.h"
#include "engine/processor.h"
#include "storage/schema.h"

namespace fairway::sessions {

namespace {

constexpr std::string_view kProcessor = "sessions";

Result<std::optional<Session>> Head(storage::Store* store, const std::string& state,
                                    std::string_view lead) {
  FAIRWAY_ASSIGN_OR_RETURN(auto v, store->Get(storage::kEngineState, state + HeadKey(lead)));
  if (!v) return std::optional<Session>();
  FAIRWAY_ASSIGN_OR_RETURN(Session s, DecodeSession(*v));
  return std::optional<Session>(std::move(s));
}

// The local date of `ms` in `timezone` (UTC when empty or unknown).
std::string LocalDate(int64_t ms, std::string_view timezone) {
  using namespace std::chrono;
  date::sys_time<milliseconds> tp{milliseconds(ms)};
  try {
    const date::time_zone* zone = date::locate_zone(timezone.empty() ? "UTC" : timezone);
    return date::format("%F", date::floor<date::days>(zone->to_local(tp)));
  } catch (const std::exception&) {
    return date::format("%F", date::floor<date::days>(tp));
  }
}

}  // namespace

SessionStore::SessionStore(storage::Store* store) : store_(store) {}

Result<SessionPage> SessionStore::List(const TenantId& tenant,
                                       const std::vector<std::string>& leads, int64_t before_ms,
                                       size_t limit) const {
  const std::string state = engine::StateKeyPrefix(tenant, kProcessor);
  std::vector<SessionView> all;
  for (const auto& lead : leads) {
    FAIRWAY_ASSIGN_OR_RETURN(auto head, Head(store_, state, lead));
    if (head && head->start_ms < before_ms) all.push_back({lead, std::move(*head)});
    // Earlier sessions, newest first: at most `limit` of each identity can be on the page.
    const std::string prefix = state + PastPrefix(lead);
    std::string upper = prefix;
    PutFixed64BE(&upper, OrderedTime(before_ms));
    auto it = store_->NewIterator(storage::kEngineState, prefix, upper);
    size_t taken = 0;
    for (it->SeekToLast(); it->Valid() && taken < limit; it->Prev(), ++taken) {
      FAIRWAY_ASSIGN_OR_RETURN(Session s, DecodeSession(it->value()));
      all.push_back({lead, std::move(s)});
    }
    FAIRWAY_RETURN_IF_ERROR(it->status());
  }
  std::sort(all.begin(), all.end(), [](const SessionView& a, const SessionView& b) {
    if (a.session.start_ms != b.session.start_ms) return a.session.start_ms > b.session.start_ms;
    return a.session.id < b.session.id;
  });
  SessionPage page;
  if (all.size() > limit) {
    all.resize(limit);
    page.next_before_ms = all.back().session.start_ms;
  }
  page.sessions = std::move(all);
  return page;
}

Result<std::optional<std::string>> SessionStore::SessionAt(const TenantId& tenant,
                                                           std::string_view lead,
                                                           int64_t time_ms) const {
  const std::string state = engine::StateKeyPrefix(tenant, kProcessor);
  FAIRWAY_ASSIGN_OR_RETURN(auto head, Head(store_, state, lead));
  if (head && time_ms >= head->start_ms && time_ms <= head->end_ms) {
    return std::optional<std::string>(head->id);
  }
  // The latest earlier session that starts at or before the time.
  const std::string prefix = state + PastPrefix(lead);
  std::string upper = prefix;
  PutFixed64BE(&upper, OrderedTime(time_ms) + 1);
  auto it = store_->NewIterator(storage::kEngineState, prefix, upper);
  it->SeekToLast();
  if (it->Valid()) {
    FAIRWAY_ASSIGN_OR_RETURN(Session s, DecodeSession(it->value()));
    if (time_ms <= s.end_ms) return std::optional<std::string>(s.id);
  }
  FAIRWAY_RETURN_IF_ERROR(it->status());
  return std::optional<std::string>();
}

void AppendSessionJson(const SessionView& v, std::string_view timezone, int64_t now_ms,
                       int64_t timeout_ms, std::string* out) {
  const Session& s = v.session;
  JsonWriter w;
  w.BeginObject();
  w.Key("id").String(s.id);
  w.Key("lead").String(v.lead);
  w.Key("start").String(FormatIso8601Millis(s.start_ms));
  w.Key("end").String(FormatIso8601Millis(s.end_ms));
  w.Key("duration_s").Int((s.end_ms - s.start_ms) / 1000);
  w.Key("pages").Uint(s.pages);
  w.Key("events").Uint(s.events);
  w.Key("landing_page").String(s.landing_page);
  w.Key("source").String(s.source);
  w.Key("campaign").String(s.campaign);
  w.Key("ended").Bool(s.ended || s.end_ms + timeout_ms <= now_ms);
  w.Key("day").String(LocalDate(s.start_ms, timezone));
  w.EndObject();
  out->append(w.Take());
}

}  // namespace fairway::sessions
