#include "sessions/session_processor.h"

#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>
#include <iterator>
#include <map>
#include <optional>
#include <unordered_map>
#include <vector>

#include "model/activity.h"
#include "model/generated_activities.h"
#include "sessions/session_state.h"

namespace fairway::sessions {

namespace {

using model::Activity;
using model::ActivityType;

// What a page view says about its visit.
struct PageInfo {
  std::string url;
  std::string source;
  std::string campaign;
};

std::string_view StringAt(simdjson::dom::element e, std::initializer_list<std::string_view> path) {
  for (std::string_view k : path) {
    auto next = e[k];
    if (next.error()) return {};
    e = next.value_unsafe();
  }
  std::string_view out;
  if (e.get_string().get(out)) return {};
  return out;
}

PageInfo ReadPage(const std::string& fields_json) {
  PageInfo info;
  thread_local simdjson::dom::parser parser;
  std::string doc;
  doc.reserve(fields_json.size() + 2 + simdjson::SIMDJSON_PADDING);
  doc.push_back('{');
  doc.append(fields_json);
  doc.push_back('}');
  simdjson::dom::element root;
  if (parser.parse(doc).get(root)) return info;  // ingest checked it: nothing to learn
  info.url = StringAt(root, {"properties", "url"});
  if (info.url.empty()) info.url = StringAt(root, {"properties", "path"});
  std::string_view source = StringAt(root, {"context", "campaign", "source"});
  std::string_view medium = StringAt(root, {"context", "campaign", "medium"});
  info.campaign = StringAt(root, {"context", "campaign", "name"});
  if (!source.empty()) {
    info.source = medium.empty() ? std::string(source) : fmt::format("{}/{}", source, medium);
  } else {
    info.source = StringAt(root, {"context", "referrer", "type"});
  }
  return info;
}

bool IsVisit(ActivityType t) {
  return t == ActivityType::kPage || t == ActivityType::kScreen || t == ActivityType::kTrack ||
         t == ActivityType::kIdentify;
}

// Adds activity time `t` (a page view when `page` is set) to session `s`.
void Extend(Session& s, int64_t t, const PageInfo* page) {
  ++s.events;
  if (page) ++s.pages;
  if (page && (t < s.start_ms || s.landing_page.empty())) {
    s.landing_page = page->url;
    s.source = page->source;
    s.campaign = page->campaign;
  }
  s.start_ms = std::min(s.start_ms, t);
  s.end_ms = std::max(s.end_ms, t);
}

// Whether `later` may join `earlier` when they come within the timeout of each other: not when
// `later` was opened by another utm campaign.
bool Joinable(const Session& earlier, const Session& later) {
  return later.campaign.empty() || later.campaign == earlier.campaign;
}

// Adds session `from` (earlier than `into`) to `into`, keeping `into`'s id.
void Absorb(Session& into, const Session& from) {
  into.events += from.events;
  into.pages += from.pages;
  if (!from.landing_page.empty() && from.start_ms <= into.start_ms) {
    into.landing_page = from.landing_page;
    into.source = from.source;
    into.campaign = from.campaign;
  }
  into.start_ms = std::min(into.start_ms, from.start_ms);
  into.end_ms = std::max(into.end_ms, from.end_ms);
}

// One work item's sessions: each visitor's head is read once and written once at Commit.
class ItemSessions {
 public:
  ItemSessions(engine::WorkItem& item, int64_t timeout_ms, bool announce_started,
               bool announce_ended)
      : item_(item),
        txn_(item.state()),
        timeout_(timeout_ms),
        announce_started_(announce_started),
        announce_ended_(announce_ended) {}

  Status Visit(const Activity& a);
  Status Timeout(const Activity& a);
  Status Forget(const Activity& a);
  Status Commit();

 private:
  struct Visitor {
    std::string key;
    char kind = 'a';
    std::optional<Session> head;
    bool dirty = false;
    // Earlier sessions by start, read on first need and written back whole at Commit
    // (StateTxn::Scan does not see the item's own writes).
    bool past_loaded = false;
    bool past_dirty = false;
    std::map<int64_t, Session> past;
    std::map<int64_t, std::string> past_read;  // start -> encoded row, as read
  };
  Result<Visitor*> Load(const Activity& a);
  void Open(Visitor& v, const Activity& a, int64_t t, const PageInfo* page);
  void End(Visitor& v, Session& s, const Activity& cause);
  void Disarm(Visitor& v, Session& s) {
    if (s.due_ms == 0) return;
    txn_.Delete(DueKey(s.due_ms, v.kind, v.key));
    s.due_ms = 0;
  }
  void Arm(Visitor& v, Session& s, int64_t due_ms) {
    s.due_ms = due_ms;
    txn_.Put(DueKey(due_ms, v.kind, v.key), s.id);
  }
  // The visitor's earlier sessions, by start.
  Result<std::map<int64_t, Session>*> Past(Visitor& v);
  // Adds an earlier session (the oldest beyond kMaxPastSessions go).
  Status AddPast(Visitor& v, const Session& s);
  // Joins the latest earlier session to the head when the head now starts within the timeout
  // of its end.
  Status JoinEarlier(Visitor& v);
  Status Late(Visitor& v, const Activity& a, int64_t t, const PageInfo* page);
  void Emit(const Visitor& v, std::string_view event, std::string message_id, int64_t time_ms,
            std::string properties);

  engine::WorkItem& item_;
  engine::StateTxn& txn_;
  const int64_t timeout_;
  const bool announce_started_;
  const bool announce_ended_;
  std::unordered_map<std::string, Visitor> visitors_;
};

Result<ItemSessions::Visitor*> ItemSessions::Load(const Activity& a) {
  const std::string& key = a.user_id.empty() ? a.anonymous_id : a.user_id;
  auto [it, inserted] = visitors_.try_emplace(key);
  Visitor& v = it->second;
  if (inserted) {
    v.key = key;
    v.kind = a.user_id.empty() ? 'a' : 'u';
    FAIRWAY_ASSIGN_OR_RETURN(auto stored, txn_.Get(HeadKey(key)));
    if (stored) {
      FAIRWAY_ASSIGN_OR_RETURN(v.head, DecodeSession(*stored));
    }
  }
  return &v;
}

void ItemSessions::Emit(const Visitor& v, std::string_view event, std::string message_id,
                        int64_t time_ms, std::string properties) {
  Activity g;
  g.type = ActivityType::kFairway;
  g.event = std::string(event);
  g.message_id = MessageId(std::move(message_id));
  (v.kind == 'u' ? g.user_id : g.anonymous_id) = v.key;
  g.timestamp_ms = time_ms;
  g.fields_json = "\"properties\":{" + properties + "}";
  item_.Emit(std::move(g));
}

void ItemSessions::Open(Visitor& v, const Activity& a, int64_t t, const PageInfo* page) {
  Session s;
  s.id = MakeSessionId(v.key, a.message_id.view());
  s.kind = v.kind;
  s.start_ms = s.end_ms = t;
  Extend(s, t, page);
  // Only a session whose end someone listens to needs ending by the sweeper; readers judge the
  // others by their idle time.
  if (announce_ended_) Arm(v, s, t + timeout_);
  if (announce_started_) {
    std::string props;
    model::SessionStarted{.session_id = s.id,
                          .landing_page = s.landing_page,
                          .source = s.source,
                          .campaign = s.campaign}
        .AppendProperties(&props);
    Emit(v, model::SessionStarted::kEvent, fmt::format("fw:session_started:{}", s.id), t,
         std::move(props));
  }
  v.head = std::move(s);
  v.dirty = true;
}

void ItemSessions::End(Visitor& v, Session& s, const Activity&) {
  Disarm(v, s);
  if (s.ended) return;
  s.ended = true;
  if (!announce_ended_) return;
  std::string props;
  model::SessionEnded{.session_id = s.id,
                      .start_ms = s.start_ms,
                      .duration_s = (s.end_ms - s.start_ms) / 1000,
                      .pages = s.pages,
                      .events = s.events,
                      .landing_page = s.landing_page,
                      .source = s.source}
      .AppendProperties(&props);
  Emit(v, model::SessionEnded::kEvent, fmt::format("fw:session_ended:{}", s.id), s.end_ms,
       std::move(props));
}

Result<std::map<int64_t, Session>*> ItemSessions::Past(Visitor& v) {
  if (!v.past_loaded) {
    v.past_loaded = true;
    Status decode_error;
    FAIRWAY_RETURN_IF_ERROR(
        txn_.Scan(PastPrefix(v.key), [&](std::string_view k, std::string_view val) {
          auto s = DecodeSession(val);
          if (!s.ok()) {
            decode_error = s.status();
            return false;
          }
          v.past_read.emplace(s->start_ms, std::string(val));
          v.past.emplace(s->start_ms, std::move(*s));
          return true;
        }));
    FAIRWAY_RETURN_IF_ERROR(decode_error);
  }
  return &v.past;
}

Status ItemSessions::AddPast(Visitor& v, const Session& s) {
  FAIRWAY_ASSIGN_OR_RETURN(auto* past, Past(v));
  auto [it, inserted] = past->emplace(s.start_ms, s);
  if (!inserted) Absorb(it->second, s);  // two sessions starting at the same moment are one
  while (past->size() > kMaxPastSessions) past->erase(past->begin());
  v.past_dirty = true;
  return Status::Ok();
}

Status ItemSessions::JoinEarlier(Visitor& v) {
  FAIRWAY_ASSIGN_OR_RETURN(auto* past, Past(v));
  Session& h = *v.head;
  while (!past->empty() && std::prev(past->end())->second.end_ms + timeout_ >= h.start_ms &&
         Joinable(std::prev(past->end())->second, h)) {
    Absorb(h, std::prev(past->end())->second);
    past->erase(std::prev(past->end()));
    v.past_dirty = true;
  }
  return Status::Ok();
}

Status ItemSessions::Late(Visitor& v, const Activity& a, int64_t t, const PageInfo* page) {
  FAIRWAY_ASSIGN_OR_RETURN(auto* past, Past(v));
  std::vector<int64_t> hits;
  for (const auto& [start, s] : *past) {
    if (t >= s.start_ms - timeout_ && t <= s.end_ms + timeout_) hits.push_back(start);
  }
  if (hits.empty()) {
    // A visit nobody saw before: recorded, already over, never announced.
    Session s;
    s.id = MakeSessionId(v.key, a.message_id.view());
    s.kind = v.kind;
    s.start_ms = s.end_ms = t;
    Extend(s, t, page);
    s.ended = true;
    return AddPast(v, s);
  }
  // It falls into one session, or bridges several: they become the earliest one (a session
  // opened by another utm campaign stays apart).
  Session merged = std::move(past->at(hits.front()));
  past->erase(hits.front());
  for (size_t i = 1; i < hits.size() && Joinable(merged, past->at(hits[i])); ++i) {
    Absorb(merged, past->at(hits[i]));
    past->erase(hits[i]);
  }
  Extend(merged, t, page);
  return AddPast(v, merged);
}

Status ItemSessions::Visit(const Activity& a) {
  const bool is_page = a.type == ActivityType::kPage;
  std::optional<PageInfo> page;
  if (is_page) page = ReadPage(a.fields_json);
  const PageInfo* p = page ? &*page : nullptr;
  FAIRWAY_ASSIGN_OR_RETURN(Visitor * v, Load(a));
  const int64_t t = a.timestamp_ms;
  if (!v->head) {
    Open(*v, a, t, p);
    return Status::Ok();
  }
  Session& h = *v->head;
  const bool new_campaign = p && !p->campaign.empty() && p->campaign != h.campaign && t > h.end_ms;
  if (!new_campaign && t >= h.start_ms - timeout_ && t <= h.end_ms + timeout_) {
    const bool earlier = t < h.start_ms;
    Extend(h, t, p);
    v->dirty = true;
    if (earlier) return JoinEarlier(*v);
    return Status::Ok();
  }
  if (t > h.end_ms) {
    // The head is over: it ends (if nothing ended it yet) and a new session begins.
    End(*v, h, a);
    FAIRWAY_RETURN_IF_ERROR(AddPast(*v, h));
    Open(*v, a, t, p);
    return Status::Ok();
  }
  return Late(*v, a, t, p);
}

Status ItemSessions::Timeout(const Activity& a) {
  simdjson::dom::parser parser;
  std::string doc = "{" + a.fields_json + "}";
  simdjson::dom::element root;
  if (parser.parse(doc).get(root)) return Status::Ok();
  std::string_view id = StringAt(root, {"properties", model::SessionTimeout::kSessionId});
  int64_t due = 0;
  if (id.empty() || root["properties"][model::SessionTimeout::kDue].get_int64().get(due)) {
    return Status::Ok();  // not one of ours
  }
  FAIRWAY_ASSIGN_OR_RETURN(Visitor * v, Load(a));
  if (!v->head || v->head->id != id || v->head->ended || v->head->due_ms != due) {
    txn_.Delete(DueKey(due, v->kind, v->key));  // stale: only its own row goes
    return Status::Ok();
  }
  Session& h = *v->head;
  v->dirty = true;
  if (h.end_ms + timeout_ > due) {
    // The visitor came back since the row was armed: idle from later on.
    Disarm(*v, h);
    Arm(*v, h, h.end_ms + timeout_);
    return Status::Ok();
  }
  End(*v, h, a);
  return Status::Ok();
}

Status ItemSessions::Forget(const Activity& a) {
  FAIRWAY_ASSIGN_OR_RETURN(Visitor * v, Load(a));
  if (v->head) {
    Disarm(*v, *v->head);
    txn_.Delete(HeadKey(v->key));
  }
  FAIRWAY_ASSIGN_OR_RETURN(auto* past, Past(*v));
  past->clear();
  v->past_dirty = true;
  v->head.reset();
  v->dirty = false;
  return Status::Ok();
}

Status ItemSessions::Commit() {
  for (auto& [key, v] : visitors_) {
    if (v.dirty && v.head) txn_.Put(HeadKey(key), EncodeSession(*v.head));
    if (!v.past_dirty) continue;
    // Only the rows that changed.
    for (const auto& [start, row] : v.past_read) {
      if (!v.past.contains(start)) txn_.Delete(PastKey(key, start));
    }
    for (const auto& [start, s] : v.past) {
      std::string row = EncodeSession(s);
      auto read = v.past_read.find(start);
      if (read == v.past_read.end() || read->second != row) {
        txn_.Put(PastKey(key, start), std::move(row));
      }
    }
  }
  return Status::Ok();
}

}  // namespace

SessionProcessor::SessionProcessor(SessionProcessorOptions options) : options_(std::move(options)) {
  spec_.name = "sessions";
  spec_.ordering = engine::Ordering::kPerLead;
  spec_.batch_size = options_.batch_size;
}

void SessionProcessor::Process(engine::WorkItem& item) {
  const TenantId& tenant = item.tenant();
  const int64_t timeout = options_.timeout_ms ? options_.timeout_ms(tenant) : kDefaultTimeoutMs;
  const bool started =
      !options_.announce || options_.announce(tenant, model::SessionStarted::kEvent);
  const bool ended = !options_.announce || options_.announce(tenant, model::SessionEnded::kEvent);
  ItemSessions sessions(item, std::max<int64_t>(timeout, 1), started, ended);
  // One batched read of every visitor's latest session.
  std::vector<std::string> heads;
  heads.reserve(item.entries().size());
  for (const auto& e : item.entries()) {
    const Activity& a = e.activity;
    if (a.LeadKey().empty() || !(IsVisit(a.type) || a.type == ActivityType::kFairway)) continue;
    heads.push_back(HeadKey(a.LeadKey()));
  }
  if (Status st = item.state().Prefetch(heads); !st.ok()) {
    item.Finish(Unavailable("sessions: reading sessions: " + st.ToString()));
    return;
  }
  for (const auto& e : item.entries()) {
    const Activity& a = e.activity;
    if (a.LeadKey().empty()) continue;
    Status st;
    if (a.type == ActivityType::kFairway) {
      if (a.event == model::SessionTimeout::kEvent) {
        st = sessions.Timeout(a);
      } else if (a.event == model::LeadDeleted::kEvent) {
        st = sessions.Forget(a);
      }
    } else if (IsVisit(a.type)) {
      st = sessions.Visit(a);
    }
    if (!st.ok()) {
      item.Finish(
          Status(st.code(), fmt::format("activity {}: {}", a.message_id.str(), st.message())));
      return;
    }
  }
  if (Status st = sessions.Commit(); !st.ok()) {
    item.Finish(std::move(st));
    return;
  }
  item.Finish();
}

}  // namespace fairway::sessions
