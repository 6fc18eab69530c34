#include "campaigns/campaign_processor.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/json.hpp>
#include <deque>
#include <set>
#include <unordered_map>

#include "campaigns/action.h"
#include "campaigns/campaign_state.h"
#include "campaigns/template.h"
#include "common/json_writer.h"
#include "common/time_format.h"
#include "dispatch/delivery.h"
#include "model/generated_activities.h"
#include "model/json_limits.h"
#include "storage/schema.h"

namespace fairway::campaigns {

namespace json = boost::json;
using model::Activity;
using model::ActivityType;

std::string WaitElapsedMessageId(std::string_view campaign, std::string_view run_id,
                                 uint32_t step) {
  return fmt::format("fw:wait:{}.{}.{}", campaign, run_id, step);
}

namespace {

constexpr int64_t kDayMs = 86'400'000;
// Most deferred matches kept per anonymous identity.
constexpr size_t kMaxDeferredPerIdentity = 100;

// Looks up a dotted path in a JSON object.
const json::value* Path(const json::object& o, std::string_view path) {
  const json::object* cur = &o;
  while (true) {
    size_t dot = path.find('.');
    std::string_view head = path.substr(0, dot);
    const json::value* v = cur->if_contains(head);
    if (!v) return nullptr;
    if (dot == std::string_view::npos) return v;
    if (!v->is_object()) return nullptr;
    cur = &v->get_object();
    path.remove_prefix(dot + 1);
  }
}

FieldValue FromJsonValue(const json::value* v) {
  if (!v) return FieldValue::Missing();
  if (v->is_string()) return FieldValue::String(std::string(v->get_string()));
  if (v->is_double()) return FieldValue::Number(v->get_double());
  return FieldValue::FromJson(json::serialize(*v));  // integers keep their exact text
}

// An activity's fields as JSON, parsed on first use.
class ActivityFields {
 public:
  explicit ActivityFields(const std::string& fields_json) : text_(fields_json) {}
  const json::object& get() {
    if (!parsed_) {
      parsed_ = true;
      json::error_code ec;
      json::value v = json::parse("{" + text_ + "}", ec, {}, model::JsonParseOptions());
      if (!ec && v.is_object()) {
        obj_ = std::move(v.get_object());
      } else {
        error_ = ec ? ec.message() : "not an object";
      }
    }
    return obj_;
  }
  // Parses the fields (once). Internal when they cannot be parsed (not JSON, or nested deeper
  // than model::kMaxJsonDepth, which ingest refuses): such an activity can never be processed
  // right, and reading its properties as missing would silently run the wrong flow, so it is
  // dead-lettered instead.
  Status Parse() {
    get();
    if (error_.empty()) return Status::Ok();
    return Internal(
        fmt::format("the activity's fields cannot be parsed ({}; at most {} levels "
                    "of nesting are read)",
                    error_, model::kMaxJsonDepth));
  }
  // A property: looked up in "properties", then among the top-level fields ("traits.x").
  const json::value* Property(std::string_view path) {
    const json::object& o = get();
    if (auto* props = o.if_contains("properties"); props && props->is_object()) {
      if (auto* v = Path(props->get_object(), path)) return v;
    }
    return Path(o, path);
  }
  // A property as a test sees it, converted once per activity.
  const FieldValue& Value(std::string_view path) {
    for (const auto& [p, v] : values_) {
      if (p == path) return v;
    }
    values_.emplace_back(std::string(path), FromJsonValue(Property(path)));
    return values_.back().second;
  }
  uint32_t Depth() {
    const json::value* d = Path(get(), "context.fairway.depth");
    return d && d->is_int64() && d->get_int64() > 0 ? static_cast<uint32_t>(d->get_int64()) : 0;
  }

 private:
  const std::string& text_;
  bool parsed_ = false;
  std::string error_;  // why parsing failed; empty if it did not
  json::object obj_;
  std::deque<std::pair<std::string, FieldValue>> values_;  // stable references
};

bool TriggerMatches(const Trigger& t, ActivityFields& fields, int64_t now_ms) {
  for (const auto& w : t.where) {
    if (w.any_path) {
      bool any = std::any_of(w.paths.begin(), w.paths.end(), [&](const std::string& p) {
        const FieldValue& v = fields.Value(p);
        return v.kind != FieldValue::Kind::kMissing && w.test.Test(v, now_ms);
      });
      if (!any) return false;
      continue;
    }
    const FieldValue* v = &fields.Value(w.paths.front());
    for (size_t i = 1; i < w.paths.size() && v->kind == FieldValue::Kind::kMissing; ++i) {
      v = &fields.Value(w.paths[i]);
    }
    if (!w.test.Test(*v, now_ms)) return false;
  }
  return true;
}

struct LeadContext {
  // Deleted in this work item: it starts and continues nothing more.
  bool deleted = false;
  bool loaded = false;
  std::optional<identity::LeadView> view;
  // The person's identities other than this key (campaign state rows written before merges).
  bool others_loaded = false;
  std::vector<LeadId> others;
  LeadOverlay overlay;
  // Run keys written in this work item (not yet visible to StateTxn::Scan).
  std::set<std::string> touched_runs;
};

}  // namespace

// One work item's execution.
class Execution {
 public:
  Execution(CampaignProcessor* p, engine::WorkItem& item, const TenantCampaigns& snap)
      : p_(p),
        item_(item),
        snap_(snap),
        tenant_(item.tenant()),
        now_(p->clock_->NowMillis()),
        day_(static_cast<uint32_t>(DayOf(now_))) {}

  Status Handle(const log::LogEntry& entry);
  // Adds the item's summed statistics to its commit.
  void Finalize() { FlushStats(); }
  // The first failed lead read: the item's decisions may rest on a missing lead, so it must
  // not commit.
  const Status& read_error() const { return read_error_; }
  int64_t min_timer_due() const { return min_timer_due_; }
  bool has_deliveries() const { return has_deliveries_; }

 private:
  friend class StepContext;
  // Routes a trigger match of activity `a`: starts the campaign for the activity's person, or
  // defers or forwards the match (campaign_state.h, "DeferredMatch").
  Status TryStart(const CompiledCampaign& c, const Activity& a, ActivityFields& fields,
                  uint32_t depth);
  // Starts a run of `c` for `person` from a trigger (qualification, history, filters).
  Status Start(const CompiledCampaign& c, const RunState& trigger, const LeadId& person);
  // Keeps the match under the activity's lead key `key`: for `forward_to` (the person the key
  // resolves to, who is told through an identity_linked activity), or, when empty, until the
  // anonymous visitor becomes known.
  Status Defer(const CompiledCampaign& c, const Activity& a, const RunState& trigger,
               const LeadId& key, const std::string& forward_to);
  // identity_linked: runs the deferred matches of the linked identity for the activity's person.
  Status Drain(const Activity& a, ActivityFields& fields);
  // The deferred rows under `prefix` as this work item sees them (committed, minus consumed,
  // plus written); valid until the next call.
  std::map<std::string, std::string>* DeferredRows(const std::string& prefix, Status* error);
  void ConsumeDeferred(const std::string& key);
  void EmitLinked(const std::string& person, std::string_view identity, std::string_view kind,
                  std::string_view cause);
  // The person's identities other than `person` (LeadContext::others).
  const std::vector<LeadId>& Others(const LeadId& person);
  Status Resume(const Activity& a, ActivityFields& fields);
  Status RunFrom(const CompiledCampaign& c, RunState& r, const LeadId& lead);
  Result<Outcome> Execute(const CompiledCampaign& c, RunState& r, uint32_t step,
                          const Action& action, const LeadId& lead);
  Status RemoveRuns(const LeadId& lead, const std::vector<std::string>& campaigns,
                    std::string_view except, const char* reason);
  Status EndRun(std::string_view campaign, const LeadId& lead, const RunState& r,
                const char* metric);
  // A deleted lead leaves every flow and loses its campaign history and mail log; nothing more
  // starts or continues for it in this work item.
  Status ForgetLead(const LeadId& lead);

  Result<std::optional<RunState>> GetRun(const LeadId& lead, std::string_view campaign);
  void PutRun(const LeadId& lead, std::string_view campaign, const RunState& r);
  // The lead's context with its view loaded (read errors: see read_error()).
  LeadContext& Lead(const LeadId& lead);
  // The lead's context without reading the lead.
  LeadContext& Ctx(const LeadId& lead) { return leads_[lead]; }
  FieldValue LeadField(const LeadId& lead, std::string_view field);
  bool Evaluate(const Condition& c, const LeadId& lead);
  std::string Render(std::string_view tmpl, const CompiledCampaign& c, const RunState& r,
                     uint32_t step, const LeadId& lead, Escape escape);
  // The tenant's IANA time zone; nullopt without CampaignProcessorOptions::tenant_timezone.
  std::optional<std::string> TenantTimezone() const {
    if (!p_->options_.tenant_timezone) return std::nullopt;
    return p_->options_.tenant_timezone(tenant_);
  }

  // Statistics are summed over the work item and merged once per key at its end (one write
  // per counter per item instead of one per event: the same counts, fewer memtable inserts).
  void Stat(std::string_view campaign, std::string_view metric, int64_t delta = 1) {
    stats_[StatsKey(tenant_, campaign, day_, metric)] += delta;
  }
  void InFlow(std::string_view campaign, int64_t delta) {
    stats_[StatsKey(tenant_, campaign, kTotalDay, "in_flow")] += delta;
  }
  void FlushStats() {
    for (auto& [key, delta] : stats_) {
      if (delta != 0) item_.state().MergeIn(storage::kCampaignStats, key, delta);
    }
    stats_.clear();
  }
  // Emits a generated activity of run `r` at `step`; `props` are `"k":v` pairs.
  void Emit(const CompiledCampaign& c, const RunState& r, uint32_t step, std::string_view event,
            std::string_view props, std::string_view suffix = {});
  Status Enqueue(dispatch::Delivery d);

  CampaignProcessor* p_;
  engine::WorkItem& item_;
  const TenantCampaigns& snap_;
  const TenantId& tenant_;
  const int64_t now_;
  const uint32_t day_;
  std::unordered_map<LeadId, LeadContext> leads_;
  int64_t min_timer_due_ = INT64_MAX;
  bool has_deliveries_ = false;
  std::vector<TenantCampaigns::TriggerRef> refs_;
  // Deferred rows written in this work item, and those consumed in it (StateTxn::Scan sees
  // committed rows only).
  std::map<std::string, std::string> pending_deferred_;
  std::set<std::string> consumed_deferred_;
  std::map<std::string, std::string> rows_;
  // identity_linked message ids emitted in this work item.
  std::set<std::string> linked_emitted_;
  Status read_error_;
  std::unordered_map<std::string, int64_t> stats_;
};

// One step of run `r` of campaign `c` for `lead`, as its action sees it (action.h).
class StepContext final : public ActionContext {
 public:
  StepContext(Execution* exec, const CompiledCampaign& c, const RunState& r, uint32_t step,
              const LeadId& lead)
      : exec_(exec),
        c_(c),
        r_(r),
        step_(step),
        lead_(lead),
        delivery_id_(fmt::format("{}.{}.{}", c.record.id, r.run_id, step)) {}

  int64_t now_ms() const override { return exec_->now_; }
  const CampaignSettings& settings() const override { return exec_->snap_.settings; }
  const Campaign& campaign() const override { return c_.campaign; }
  const LeadId& lead() const override { return lead_; }
  const std::vector<LeadId>& other_identities() override { return exec_->Others(lead_); }
  const std::string& delivery_id() const override { return delivery_id_; }

  std::string Render(std::string_view tmpl, Escape escape) override {
    return exec_->Render(tmpl, c_, r_, step_, lead_, escape);
  }
  FieldValue LeadField(std::string_view field) override { return exec_->LeadField(lead_, field); }
  LeadOverlay& overlay() override { return exec_->Ctx(lead_).overlay; }
  engine::StateTxn& state() override { return exec_->item_.state(); }
  std::optional<std::string> TenantTimezone() override { return exec_->TenantTimezone(); }

  void Emit(std::string_view event, std::string_view properties) override {
    exec_->Emit(c_, r_, step_, event, properties);
  }
  Status Enqueue(dispatch::Delivery d) override { return exec_->Enqueue(std::move(d)); }
  void Stat(std::string_view metric) override { exec_->Stat(c_.record.id, metric); }
  Status RemoveFromFlows(const std::vector<std::string>& campaigns) override {
    return exec_->RemoveRuns(lead_, campaigns, c_.record.id, "removed_from_flow");
  }
  Outcome Fail(std::string_view why) override {
    spdlog::debug("campaigns: {} {} step {} for '{}' failed: {}", exec_->tenant_.str(),
                  c_.record.id, step_ + 1, lead_.str(), why);
    return Outcome::kFailed;
  }

 private:
  Execution* exec_;
  const CompiledCampaign& c_;
  const RunState& r_;
  const uint32_t step_;
  const LeadId& lead_;
  const std::string delivery_id_;
};

LeadContext& Execution::Lead(const LeadId& lead) {
  LeadContext& ctx = leads_[lead];
  if (!ctx.loaded) {
    ctx.loaded = true;
    auto view = p_->leads_->Find(tenant_, lead.view());
    if (view.ok()) {
      ctx.view = std::move(view).value();
    } else if (read_error_.ok()) {
      read_error_ =
          Unavailable(fmt::format("reading lead '{}': {}", lead.str(), view.status().ToString()));
    }
  }
  return ctx;
}

FieldValue Execution::LeadField(const LeadId& lead, std::string_view field) {
  LeadContext& ctx = Lead(lead);
  const identity::LeadView* v = ctx.view ? &*ctx.view : nullptr;
  if (auto it = ctx.overlay.traits.find(std::string(field)); it != ctx.overlay.traits.end()) {
    return FieldValue::FromJson(it->second);
  }
  if (field == "score") {
    return FieldValue::Number(static_cast<double>((v ? v->score : 0) + ctx.overlay.score_delta));
  }
  if (field == "id") return v ? FieldValue::String(v->id) : FieldValue::String(lead.str());
  if (field == "known") return FieldValue::FromJson(v && v->known ? "true" : "false");
  if (!v) return FieldValue::Missing();
  if (field == "first_seen" && v->activity_count > 0) {
    return FieldValue::Number(static_cast<double>(v->first_seen_ms));
  }
  if (field == "last_seen" && v->activity_count > 0) {
    return FieldValue::Number(static_cast<double>(v->last_seen_ms));
  }
  if (field == "activity_count") return FieldValue::Number(static_cast<double>(v->activity_count));
  if (field == "lists" || field == "tags") {
    std::set<std::string> names(field == "lists" ? v->lists.begin() : v->tags.begin(),
                                field == "lists" ? v->lists.end() : v->tags.end());
    for (const auto& [n, member] : field == "lists" ? ctx.overlay.lists : ctx.overlay.tags) {
      if (member) {
        names.insert(n);
      } else {
        names.erase(n);
      }
    }
    std::string joined;
    for (const auto& n : names) joined += (joined.empty() ? "" : ",") + n;
    return FieldValue::String(joined);
  }
  if (field.starts_with("account.")) {
    std::string_view name = field.substr(8);
    if (name == "id") {
      if (ctx.overlay.account) return FieldValue::String(*ctx.overlay.account);
      return v->account ? FieldValue::String(v->account->id) : FieldValue::Missing();
    }
    if (!v->account) return FieldValue::Missing();
    for (const auto& t : v->account->traits) {
      if (t.name == name) return FieldValue::FromJson(t.json);
    }
    return FieldValue::Missing();
  }
  if (const auto* t = v->FindTrait(field)) return FieldValue::FromJson(t->json);
  return FieldValue::Missing();
}

bool Execution::Evaluate(const Condition& c, const LeadId& lead) {
  switch (c.kind) {
    case Condition::Kind::kField:
      return c.test.Test(LeadField(lead, c.field), now_);
    case Condition::Kind::kMemberOfList:
    case Condition::Kind::kHasTag: {
      LeadContext& ctx = Lead(lead);
      bool lists = c.kind == Condition::Kind::kMemberOfList;
      const auto& overlay = lists ? ctx.overlay.lists : ctx.overlay.tags;
      bool member = false;
      if (auto it = overlay.find(c.name); it != overlay.end()) {
        member = it->second;
      } else if (ctx.view) {
        member = lists ? ctx.view->HasList(c.name) : ctx.view->HasTag(c.name);
      }
      return member != c.negate;
    }
    case Condition::Kind::kActivityHistory: {
      LeadContext& ctx = Lead(lead);
      uint64_t n = 0;
      if (ctx.view) {
        int64_t since = c.within_days == 0
                            ? INT64_MIN / 2
                            : (DayOf(now_) - static_cast<int64_t>(c.within_days) + 1) * kDayMs;
        n = ctx.view->CountActivitiesMatching(
            c.activity_type,
            [&](std::string_view name) {
              return !c.name_test || c.name_test->Test(FieldValue::String(std::string(name)), now_);
            },
            since, now_);
      }
      return n >= c.min_count && (!c.max_count || n <= *c.max_count);
    }
    case Condition::Kind::kAll:
      return std::all_of(c.children.begin(), c.children.end(),
                         [&](const Condition& x) { return Evaluate(x, lead); });
    case Condition::Kind::kAny:
      return std::any_of(c.children.begin(), c.children.end(),
                         [&](const Condition& x) { return Evaluate(x, lead); });
    case Condition::Kind::kNot:
      return !Evaluate(c.children.at(0), lead);
  }
  return false;
}

std::string Execution::Render(std::string_view tmpl, const CompiledCampaign& c, const RunState& r,
                              uint32_t step, const LeadId& lead, Escape escape) {
  if (tmpl.find("{{") == std::string_view::npos) return std::string(tmpl);
  std::optional<ActivityFields> trigger;
  auto resolve = [&](std::string_view path) -> std::optional<std::string> {
    if (path.starts_with("lead.")) {
      std::string_view f = path.substr(5);
      FieldValue v = LeadField(lead, f == "owner" ? "owner" : f);
      if (v.kind == FieldValue::Kind::kMissing || v.kind == FieldValue::Kind::kNull) {
        return std::nullopt;
      }
      return v.text;
    }
    if (path.starts_with("trigger.")) {
      std::string_view f = path.substr(8);
      if (f == "event" || f == "name") return r.trigger_event;
      if (f == "type") {
        return std::string(model::ActivityTypeName(static_cast<ActivityType>(r.trigger_type)));
      }
      if (f == "timestamp") return FormatIso8601Millis(r.trigger_time_ms);
      if (!trigger) trigger.emplace(r.trigger_fields_json);
      FieldValue v = FromJsonValue(trigger->Property(f));
      if (v.kind == FieldValue::Kind::kMissing || v.kind == FieldValue::Kind::kNull) {
        return std::nullopt;
      }
      return v.text;
    }
    if (path.starts_with("my.")) {
      auto it = c.campaign.tokens.find(std::string(path.substr(3)));
      if (it == c.campaign.tokens.end()) return std::nullopt;
      return it->second;
    }
    if (path.starts_with("request.")) {
      auto it = r.tokens.find(std::string(path.substr(8)));
      if (it == r.tokens.end()) return std::nullopt;
      return it->second;
    }
    if (path == "campaign.id") return c.record.id;
    if (path == "campaign.name") return c.campaign.name;
    if (path == "run.id") return r.run_id;
    if (path == "step") return std::to_string(step + 1);
    return std::nullopt;
  };
  return RenderTemplate(tmpl, resolve, escape);
}

Result<std::optional<RunState>> Execution::GetRun(const LeadId& lead, std::string_view campaign) {
  FAIRWAY_ASSIGN_OR_RETURN(auto v, item_.state().Get(RunKey(lead, campaign)));
  if (!v) return std::optional<RunState>();
  FAIRWAY_ASSIGN_OR_RETURN(auto r, DecodeRunState(*v));
  return std::optional<RunState>(std::move(r));
}

void Execution::PutRun(const LeadId& lead, std::string_view campaign, const RunState& r) {
  std::string key = RunKey(lead, campaign);
  Ctx(lead).touched_runs.insert(key);
  item_.state().Put(key, EncodeRunState(r));
}

void Execution::Emit(const CompiledCampaign& c, const RunState& r, uint32_t step,
                     std::string_view event, std::string_view props, std::string_view suffix) {
  Activity g;
  g.type = ActivityType::kFairway;
  g.event = std::string(event);
  g.message_id = MessageId(fmt::format("fw:{}.{}.{}{}", c.record.id, r.run_id, step, suffix));
  g.user_id = r.user_id;
  g.anonymous_id = r.anonymous_id;
  g.timestamp_ms = now_;
  std::string f = "\"properties\":{";
  f.append(props);
  if (!props.empty()) f.push_back(',');
  f.append("\"campaign\":");
  AppendJsonString(&f, c.record.id);
  f.append(fmt::format(",\"step\":{}}}", step + 1));
  f.append(fmt::format(",\"context\":{{\"fairway\":{{\"depth\":{},\"campaign\":", r.depth + 1));
  AppendJsonString(&f, c.record.id);
  f.append(",\"run\":");
  AppendJsonString(&f, r.run_id);
  f.append("}}");
  g.fields_json = std::move(f);
  item_.Emit(std::move(g));
}

Status Execution::Enqueue(dispatch::Delivery d) {
  d.created_ms = now_;
  FAIRWAY_RETURN_IF_ERROR(dispatch::ValidateDelivery(d));
  item_.state().PutIn(storage::kDeliveries, dispatch::PendingKey(tenant_, d.created_ms, d.id),
                      dispatch::EncodeDelivery(d));
  has_deliveries_ = true;
  return Status::Ok();
}

Status Execution::EndRun(std::string_view campaign, const LeadId& lead, const RunState& r,
                         const char* metric) {
  std::string key = RunKey(lead, campaign);
  item_.state().Delete(key);
  Ctx(lead).touched_runs.insert(key);
  if (r.wait_due_ms > 0) {
    item_.state().DeleteIn(storage::kTimers,
                           TimerKey(tenant_, r.wait_due_ms, lead, campaign, r.run_id));
  }
  InFlow(campaign, -1);
  Stat(campaign, metric);
  return Status::Ok();
}

Status Execution::RemoveRuns(const LeadId& lead, const std::vector<std::string>& campaigns,
                             std::string_view except, const char* reason) {
  std::set<std::string> targets(campaigns.begin(), campaigns.end());
  if (campaigns.empty()) {
    // Every campaign the lead is in: committed runs plus those written in this work item.
    std::string prefix = RunPrefix(lead);
    FAIRWAY_RETURN_IF_ERROR(item_.state().Scan(prefix, [&](std::string_view k, std::string_view) {
      targets.insert(std::string(k.substr(prefix.size())));
      return true;
    }));
    for (const auto& k : Ctx(lead).touched_runs) targets.insert(k.substr(prefix.size()));
  }
  targets.erase(std::string(except));
  for (const auto& c : targets) {
    FAIRWAY_ASSIGN_OR_RETURN(auto run, GetRun(lead, c));
    if (run) FAIRWAY_RETURN_IF_ERROR(EndRun(c, lead, *run, reason));
  }
  return Status::Ok();
}

Status Execution::ForgetLead(const LeadId& lead) {
  FAIRWAY_RETURN_IF_ERROR(RemoveRuns(lead, {}, "", "lead_deleted"));
  // Its history, and the matches it deferred.
  std::string prefix = HistoryPrefix(lead);
  std::vector<std::string> history;
  FAIRWAY_RETURN_IF_ERROR(item_.state().Scan(prefix, [&](std::string_view k, std::string_view) {
    history.emplace_back(k);
    return true;
  }));
  for (const auto& k : history) item_.state().Delete(k);
  Status error;
  auto* deferred = DeferredRows(DeferredPrefix(lead), &error);
  FAIRWAY_RETURN_IF_ERROR(error);
  std::vector<std::string> keys;
  for (const auto& [k, v] : *deferred) keys.push_back(k);
  for (const auto& k : keys) ConsumeDeferred(k);
  item_.state().Delete(MailKey(lead));
  Ctx(lead).deleted = true;
  return Status::Ok();
}

Result<Outcome> Execution::Execute(const CompiledCampaign& c, RunState& r, uint32_t step,
                                   const Action& a, const LeadId& lead) {
  StepContext ctx(this, c, r, step, lead);
  return a.Execute(ctx);
}

Status Execution::RunFrom(const CompiledCampaign& c, RunState& r, const LeadId& lead) {
  const auto& flow = c.campaign.flow;
  while (r.step < flow.size()) {
    const uint32_t i = r.step;
    const Step& s = flow[i];
    const Action* action = s.action ? &*s.action : nullptr;
    if (s.has_choices()) {
      action = s.default_action ? &*s.default_action : nullptr;
      for (const auto& choice : s.choices) {
        if (Evaluate(choice.when, lead)) {
          action = choice.then ? &*choice.then : nullptr;
          break;
        }
      }
    }
    r.step = i + 1;
    const std::string step_metric = fmt::format("step.{}.", i + 1);
    if (!action) {
      Stat(c.record.id, step_metric + "skipped");
      continue;
    }
    if (action->pauses()) {
      Stat(c.record.id, step_metric + "executed");
      StepContext ctx(this, c, r, i, lead);
      int64_t due = action->ResumeAt(ctx);
      if (due <= now_) continue;
      r.wait_due_ms = due;
      PutRun(lead, c.record.id, r);
      Timer t;
      t.campaign = c.record.id;
      t.run_id = r.run_id;
      t.step = r.step;
      t.user_id = r.user_id;
      t.anonymous_id = r.anonymous_id;
      item_.state().PutIn(storage::kTimers, TimerKey(tenant_, due, lead, c.record.id, r.run_id),
                          EncodeTimer(t));
      min_timer_due_ = std::min(min_timer_due_, due);
      return Status::Ok();
    }
    FAIRWAY_ASSIGN_OR_RETURN(Outcome outcome, Execute(c, r, i, *action, lead));
    switch (outcome) {
      case Outcome::kExecuted:
        Stat(c.record.id, step_metric + "executed");
        break;
      case Outcome::kBlocked:
        Stat(c.record.id, step_metric + "blocked");
        break;
      case Outcome::kFailed:
        Stat(c.record.id, step_metric + "failed");
        break;
      case Outcome::kLeadDeleted:
        Stat(c.record.id, step_metric + "executed");
        r.wait_due_ms = 0;
        FAIRWAY_RETURN_IF_ERROR(EndRun(c.record.id, lead, r, "lead_deleted"));
        return ForgetLead(lead);
    }
  }
  r.wait_due_ms = 0;
  return EndRun(c.record.id, lead, r, "completed");
}

const std::vector<LeadId>& Execution::Others(const LeadId& person) {
  LeadContext& ctx = Lead(person);
  if (!ctx.others_loaded) {
    ctx.others_loaded = true;
    if (ctx.view) {
      for (const auto* ids : {&ctx.view->user_ids, &ctx.view->anonymous_ids}) {
        for (const auto& id : *ids) {
          if (id != person.view()) ctx.others.emplace_back(id);
        }
      }
    }
  }
  return ctx.others;
}

// The run-to-be of a trigger match: everything but the run id.
static RunState TriggerOf(const CompiledCampaign& c, const Activity& a, ActivityFields& fields,
                          uint32_t depth, int64_t now_ms) {
  RunState r;
  r.campaign_created_ms = c.record.created_ms;
  r.depth = depth;
  r.started_ms = now_ms;
  r.trigger_message_id = a.message_id.str();
  r.trigger_event = a.event;
  r.trigger_type = static_cast<uint8_t>(a.type);
  r.trigger_time_ms = a.timestamp_ms;
  r.trigger_fields_json = a.fields_json;
  r.user_id = a.user_id;
  r.anonymous_id = a.anonymous_id;
  if (a.type == ActivityType::kFairway && a.event == model::CampaignRequested::kEvent) {
    if (auto* t = fields.Property(model::CampaignRequested::kTokens); t && t->is_object()) {
      for (const auto& kv : t->get_object()) {
        r.tokens[std::string(kv.key())] = kv.value().is_string()
                                              ? std::string(kv.value().get_string())
                                              : json::serialize(kv.value());
      }
    }
  }
  return r;
}

Status Execution::TryStart(const CompiledCampaign& c, const Activity& a, ActivityFields& fields,
                           uint32_t depth) {
  const LeadId key(a.LeadKey());
  if (Ctx(key).deleted) return Status::Ok();
  // Who the activity's person is: a key merged into another lead (an anonymousId an identify
  // claimed, a userId an alias merged) hands the match over to that lead's own work, the single
  // writer of the person's campaign state.
  LeadContext& ctx = Lead(key);
  if (!read_error_.ok()) return Status::Ok();
  const RunState trigger = TriggerOf(c, a, fields, depth, now_);
  if (ctx.view && ctx.view->id != key.view()) return Defer(c, a, trigger, key, ctx.view->id);
  if (a.user_id.empty()) {
    switch (c.campaign.anonymous) {
      case AnonymousPolicy::kRun:
        break;
      case AnonymousPolicy::kDefer:
        if (snap_.settings.defer_days > 0) return Defer(c, a, trigger, key, "");
        [[fallthrough]];
      case AnonymousPolicy::kIgnore:
        Stat(c.record.id, "anonymous_ignored");
        return Status::Ok();
    }
  }
  return Start(c, trigger, key);
}

std::map<std::string, std::string>* Execution::DeferredRows(const std::string& prefix,
                                                            Status* error) {
  rows_.clear();
  *error = item_.state().Scan(prefix, [&](std::string_view k, std::string_view v) {
    if (!consumed_deferred_.contains(std::string(k))) rows_.emplace(k, v);
    return true;
  });
  for (auto it = pending_deferred_.lower_bound(prefix);
       it != pending_deferred_.end() && it->first.starts_with(prefix); ++it) {
    rows_[it->first] = it->second;
  }
  return &rows_;
}

void Execution::ConsumeDeferred(const std::string& key) {
  item_.state().Delete(key);
  pending_deferred_.erase(key);
  consumed_deferred_.insert(key);
}

Status Execution::Defer(const CompiledCampaign& c, const Activity& a, const RunState& trigger,
                        const LeadId& key, const std::string& forward_to) {
  if (forward_to.empty()) {
    // An anonymous visitor keeps one match per campaign (its earliest by event time within the
    // window) and at most kMaxDeferredPerIdentity in all; expired ones go as it comes back.
    const int64_t oldest = now_ - static_cast<int64_t>(snap_.settings.defer_days) * kDayMs;
    if (trigger.trigger_time_ms < oldest) {
      Stat(c.record.id, "deferred_expired");
      return Status::Ok();
    }
    Status error;
    auto* rows = DeferredRows(DeferredPrefix(key), &error);
    FAIRWAY_RETURN_IF_ERROR(error);
    size_t kept = 0;
    std::vector<std::string> drop;
    for (const auto& [k, v] : *rows) {
      auto m = DecodeDeferredMatch(v);
      if (!m.ok() || m->forwarded) {
        ++kept;
        continue;
      }
      if (m->trigger.trigger_time_ms < oldest) {
        drop.push_back(k);
        continue;
      }
      if (m->campaign == c.record.id) {
        if (m->trigger.trigger_time_ms <= trigger.trigger_time_ms) {
          Stat(c.record.id, "already_deferred");
          return Status::Ok();
        }
        drop.push_back(k);  // a late activity earlier than the kept match takes its place
        continue;
      }
      ++kept;
    }
    for (const auto& k : drop) ConsumeDeferred(k);
    if (kept >= kMaxDeferredPerIdentity) {
      Stat(c.record.id, "deferred_dropped");
      return Status::Ok();
    }
    Stat(c.record.id, "deferred");
  } else {
    Stat(c.record.id, "forwarded");
  }
  DeferredMatch m{.campaign = c.record.id,
                  .forwarded = !forward_to.empty(),
                  .forward_to = forward_to,
                  .trigger = trigger};
  std::string k =
      DeferredKey(key, trigger.trigger_time_ms, c.record.id, trigger.trigger_message_id);
  std::string v = EncodeDeferredMatch(m);
  item_.state().Put(k, v);
  consumed_deferred_.erase(k);
  pending_deferred_[std::move(k)] = std::move(v);
  if (!forward_to.empty()) {
    EmitLinked(
        forward_to, key.view(),
        a.user_id.empty() ? model::IdentityLinked::kAnonymousId : model::IdentityLinked::kUserId,
        a.message_id.view());
  }
  return Status::Ok();
}

void Execution::EmitLinked(const std::string& person, std::string_view identity,
                           std::string_view kind, std::string_view cause) {
  std::string id = fmt::format("fw:fwd:{}:{}:{}", person, identity, cause);
  if (!linked_emitted_.insert(id).second) return;
  Activity g;
  g.type = ActivityType::kFairway;
  g.event = std::string(model::IdentityLinked::kEvent);
  g.message_id = MessageId(std::move(id));
  g.user_id = person;
  g.timestamp_ms = now_;
  std::string f = "\"properties\":{";
  model::IdentityLinked{.identity = identity, .kind = kind}.AppendProperties(&f);
  f.append("},\"context\":{\"fairway\":{\"cause\":");
  AppendJsonString(&f, cause);
  f.append("}}");
  g.fields_json = std::move(f);
  item_.Emit(std::move(g));
}

Status Execution::Drain(const Activity& a, ActivityFields& fields) {
  const json::value* identity = fields.Property(model::IdentityLinked::kIdentity);
  const json::value* kind = fields.Property(model::IdentityLinked::kKind);
  if (a.user_id.empty() || !identity || !identity->is_string() || !kind || !kind->is_string()) {
    return Status::Ok();  // not one of ours
  }
  const LeadId person(a.user_id);
  if (Ctx(person).deleted || identity->get_string() == person.view()) return Status::Ok();
  LeadContext& ctx = Lead(person);
  if (!read_error_.ok()) return Status::Ok();
  if (ctx.view && ctx.view->id != person.view()) {
    // The person merged into another lead since: its work runs the matches.
    EmitLinked(ctx.view->id, identity->get_string(), kind->get_string(), a.message_id.view());
    return Status::Ok();
  }
  const LeadId linked(std::string(identity->get_string()));
  // Only while the identity is still the person's: an anonymous id identified by another user
  // since, or a person deleted since, takes nothing.
  LeadContext& linked_ctx = Lead(linked);
  if (!read_error_.ok()) return Status::Ok();
  if (!linked_ctx.view || linked_ctx.view->id != person.view()) return Status::Ok();
  Status error;
  auto* rows = DeferredRows(DeferredPrefix(linked), &error);
  FAIRWAY_RETURN_IF_ERROR(error);
  std::vector<std::pair<std::string, std::string>> ordered(rows->begin(), rows->end());
  const int64_t oldest = now_ - static_cast<int64_t>(snap_.settings.defer_days) * kDayMs;
  // In event order; each row is consumed in the same commit as the run it starts (and never
  // twice in one work item), so a redone work item finds it again and a committed one never.
  for (const auto& [k, v] : ordered) {
    auto m = DecodeDeferredMatch(v);
    if (!m.ok()) {
      spdlog::warn("campaigns: {} dropped a deferred match of '{}': {}", tenant_.str(),
                   linked.str(), m.status().ToString());
      ConsumeDeferred(k);
      continue;
    }
    // Handed over to another person (the identity was re-identified since): theirs to run.
    if (m->forwarded && m->forward_to != person.view()) continue;
    ConsumeDeferred(k);
    const CompiledCampaign* c = snap_.Find(m->campaign);
    if (!c || !c->record.active || c->record.created_ms != m->trigger.campaign_created_ms) {
      continue;  // deleted, deactivated or re-created since the match
    }
    if (!m->forwarded && m->trigger.trigger_time_ms < oldest) {
      Stat(c->record.id, "deferred_expired");
      continue;
    }
    if (!m->forwarded) Stat(c->record.id, "promoted");
    FAIRWAY_RETURN_IF_ERROR(Start(*c, m->trigger, person));
    if (!read_error_.ok()) return Status::Ok();
  }
  return Status::Ok();
}

Status Execution::Start(const CompiledCampaign& c, const RunState& trigger, const LeadId& lead) {
  Stat(c.record.id, "triggered");
  if (trigger.depth >= snap_.settings.max_chain_depth) {
    Stat(c.record.id, "blocked_chain_depth");
    spdlog::info(
        "campaigns: {} campaign '{}' not started for '{}': activity {} is {} campaign steps deep "
        "(max_chain_depth {})",
        tenant_.str(), c.record.id, lead.str(), trigger.trigger_message_id, trigger.depth,
        snap_.settings.max_chain_depth);
    return Status::Ok();
  }
  // Run state and history are the person's: rows under any of its identities count.
  const std::vector<LeadId>& others = Others(lead);
  FAIRWAY_ASSIGN_OR_RETURN(auto run, GetRun(lead, c.record.id));
  for (size_t i = 0; !run && i < others.size(); ++i) {
    FAIRWAY_ASSIGN_OR_RETURN(run, GetRun(others[i], c.record.id));
  }
  if (run) {
    Stat(c.record.id, "already_in_flow");
    return Status::Ok();
  }
  const std::string run_id = MakeRunId(c.record.id, trigger.trigger_message_id);
  History h;  // the person's own row, rewritten below
  History merged;
  bool duplicate = false;
  for (size_t i = 0; i <= others.size(); ++i) {
    const LeadId& id = i == 0 ? lead : others[i - 1];
    FAIRWAY_ASSIGN_OR_RETURN(auto stored, item_.state().Get(HistoryKey(id, c.record.id)));
    if (!stored) continue;
    FAIRWAY_ASSIGN_OR_RETURN(History one, DecodeHistory(*stored));
    // History of an earlier campaign with the same id does not count.
    if (one.campaign_created_ms != c.record.created_ms) continue;
    // The same activity again (a re-append that outlived the log's dedup window): its run
    // happened already.
    if (one.last_run_id == run_id) duplicate = true;
    merged.runs += one.runs;
    merged.last_start_event_ms = std::max(merged.last_start_event_ms, one.last_start_event_ms);
    if (i == 0) h = std::move(one);
  }
  if (duplicate) {
    Stat(c.record.id, "duplicate_trigger");
    return Status::Ok();
  }
  if (merged.runs > 0) {
    bool again = c.campaign.qualification == Qualification::kEveryTime ||
                 (c.campaign.qualification == Qualification::kEveryNDays &&
                  trigger.trigger_time_ms - merged.last_start_event_ms >=
                      static_cast<int64_t>(c.campaign.qualification_days) * kDayMs);
    if (!again) {
      Stat(c.record.id, "not_qualified");
      return Status::Ok();
    }
  }
  if (c.campaign.filter && !Evaluate(*c.campaign.filter, lead)) {
    Stat(c.record.id, "filtered_out");
    return Status::Ok();
  }
  RunState r = trigger;
  r.run_id = run_id;
  r.started_ms = now_;
  if (r.user_id != lead.view() && r.anonymous_id != lead.view()) {
    // A match handed over to a known person: the run, its timers and its generated activities
    // belong to the person's userId.
    r.user_id = lead.str();
    r.anonymous_id.clear();
  }
  h.runs++;
  h.last_start_event_ms = std::max(h.last_start_event_ms, trigger.trigger_time_ms);
  h.last_run_id = run_id;
  h.campaign_created_ms = c.record.created_ms;
  item_.state().Put(HistoryKey(lead, c.record.id), EncodeHistory(h));
  Stat(c.record.id, "qualified");
  InFlow(c.record.id, 1);
  return RunFrom(c, r, lead);
}

Status Execution::Resume(const Activity& a, ActivityFields& fields) {
  const LeadId lead(a.LeadKey());
  const json::value* campaign = fields.Property(model::CampaignWaitElapsed::kCampaign);
  const json::value* run_id = fields.Property(model::CampaignWaitElapsed::kRun);
  const json::value* step = fields.Property(model::CampaignWaitElapsed::kStep);
  if (!campaign || !campaign->is_string() || !run_id || !run_id->is_string() || !step ||
      !step->is_int64()) {
    return Status::Ok();  // not one of ours: nothing to resume
  }
  std::string cid(campaign->get_string());
  if (Ctx(lead).deleted) return Status::Ok();
  FAIRWAY_ASSIGN_OR_RETURN(auto run, GetRun(lead, cid));
  // A stale wake-up (the lead left the flow, or a newer run took its place) does nothing.
  if (!run || run->run_id != run_id->get_string() ||
      run->step != static_cast<uint64_t>(step->get_int64()) || run->wait_due_ms == 0) {
    return Status::Ok();
  }
  const CompiledCampaign* c = snap_.Find(cid);
  if (c && c->record.created_ms != run->campaign_created_ms)
    c = nullptr;  // a new campaign, same id
  if (!c || (!c->record.active && !c->campaign.finish_flow_when_inactive)) {
    // Deleted (or re-created), or deactivated with "leave_flow": the lead leaves when its wait
    // ends.
    item_.state().Delete(RunKey(lead, cid));
    InFlow(cid, -1);
    Stat(cid, "left_flow");
    return Status::Ok();
  }
  run->wait_due_ms = 0;
  return RunFrom(*c, *run, lead);
}

Status Execution::Handle(const log::LogEntry& entry) {
  const Activity& a = entry.activity;
  if (a.LeadKey().empty()) return Status::Ok();
  ActivityFields fields(a.fields_json);
  if (a.type == ActivityType::kFairway) {
    if (a.event == model::CampaignWaitElapsed::kEvent) {
      FAIRWAY_RETURN_IF_ERROR(fields.Parse());
      return Resume(a, fields);
    }
    if (a.event == model::LeadDeleted::kEvent) {
      // Runs started between the deleting step and this activity reaching the log leave too.
      return ForgetLead(LeadId(a.LeadKey()));
    }
    if (a.event == model::IdentityLinked::kEvent) {
      FAIRWAY_RETURN_IF_ERROR(fields.Parse());
      return Drain(a, fields);
    }
  }
  refs_.clear();
  if (a.type == ActivityType::kFairway && a.event == model::CampaignRequested::kEvent) {
    FAIRWAY_RETURN_IF_ERROR(fields.Parse());
    const json::value* requested = fields.Property(model::CampaignRequested::kRequested);
    if (!requested || !requested->is_string()) return Status::Ok();
    snap_.Lookup(a.type, RequestTriggerName(requested->get_string().c_str()), &refs_);
  } else {
    snap_.Lookup(a.type, a.event, &refs_);
  }
  if (refs_.empty()) return Status::Ok();
  FAIRWAY_RETURN_IF_ERROR(fields.Parse());
  const uint32_t depth = fields.Depth();
  // A campaign starts at most once per activity, whichever of its triggers matched.
  std::vector<const CompiledCampaign*> started;
  for (const auto& ref : refs_) {
    if (std::find(started.begin(), started.end(), ref.campaign) != started.end()) continue;
    if (!TriggerMatches(*ref.trigger, fields, now_)) continue;
    started.push_back(ref.campaign);
    FAIRWAY_RETURN_IF_ERROR(TryStart(*ref.campaign, a, fields, depth));
  }
  return Status::Ok();
}

CampaignProcessor::CampaignProcessor(CampaignRegistry* registry, const identity::LeadStore* leads,
                                     const Clock* clock, CampaignProcessorOptions options)
    : registry_(registry), leads_(leads), clock_(clock), options_(std::move(options)) {
  spec_.name = "campaigns";
  spec_.ordering = engine::Ordering::kPerLead;
  spec_.batch_size = options_.batch_size;
  spec_.after = "leads";
}

void CampaignProcessor::Process(engine::WorkItem& item) {
  auto snap = registry_->Snapshot(item.tenant());
  if (!snap.ok()) {
    item.Finish(Unavailable("loading campaigns: " + snap.status().ToString()));
    return;
  }
  Execution exec(this, item, **snap);
  for (const auto& e : item.entries()) {
    Status st = exec.Handle(e);
    if (st.ok()) st = exec.read_error();
    if (!st.ok()) {
      // The code decides the retry (engine::RetryClassOf): storage trouble is retried, a
      // corrupt state row (Internal) never heals and is dead-lettered.
      item.Finish(Status(
          st.code(), fmt::format("activity {}: {}", e.activity.message_id.str(), st.message())));
      return;
    }
  }
  exec.Finalize();
  if (exec.min_timer_due() != INT64_MAX && options_.on_timers) {
    item.AfterCommit([fn = options_.on_timers, tenant = item.tenant(), due = exec.min_timer_due()] {
      fn(tenant, due);
    });
  }
  if (exec.has_deliveries() && options_.on_deliveries) {
    item.AfterCommit([fn = options_.on_deliveries, tenant = item.tenant()] { fn(tenant); });
  }
  // The snapshot must outlive the work: the compiled campaigns it points to are shared.
  item.Finish();
}

}  // namespace fairway::campaigns
