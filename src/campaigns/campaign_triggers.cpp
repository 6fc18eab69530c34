// The trigger kinds of docs/campaigns.md ("Triggers"): one parse function per kind, registered
// in kTriggerKinds and looked up by the definition's "type". A trigger compiles to the activity
// (type, name) it listens to plus tests on that activity's properties; matching is the same for
// every kind (campaign_processor.cpp), so a kind is only its parse.

#include <fmt/format.h>

#include <algorithm>
#include <iterator>

#include "campaigns/definition_parser.h"
#include "model/generated_activities.h"

namespace fairway::campaigns {

namespace {

using model::ActivityType;

constexpr std::string_view kCampaignRequestedTrigger = "campaign_requested";

// What a kind's parse works on: the trigger's JSON object and the trigger being built.
struct TriggerInput {
  DefinitionParser& p;
  const json::object& o;
  const std::string& path;
  std::string_view campaign_id;
  Trigger& t;

  bool Only(std::initializer_list<std::string_view> keys) { return p.OnlyKeys(o, path, keys); }

  // A test of `key` (if given) on the first present of the activity's properties `paths`, or
  // on any of them with `any_path`.
  bool Prop(std::string_view key, std::vector<std::string> paths, bool any_path = false) {
    if (auto* x = o.if_contains(key)) {
      auto test = p.Test(*x, DefinitionParser::At(path, key));
      if (!test) return false;
      t.where.push_back({std::move(paths), std::move(*test), any_path});
    }
    return true;
  }

  // "where": [{"property": ..., test}, ...], if given.
  bool Where() {
    auto* w = o.if_contains("where");
    if (!w) return true;
    std::string wp = DefinitionParser::At(path, "where");
    if (!w->is_array()) return p.Fail(wp, "must be an array of property tests");
    for (size_t i = 0; i < w->get_array().size(); ++i) {
      std::string ip = DefinitionParser::Index(wp, i);
      auto* wo = p.Object(w->get_array()[i], ip);
      if (!wo) return false;
      auto property = p.String(*wo, "property", ip, true, 200);
      if (!property) return false;
      auto test = p.Test(w->get_array()[i], ip, "property");
      if (!test) return false;
      t.where.push_back({{*property}, std::move(*test)});
    }
    return true;
  }
};

// An "is" test of one property against one text, compared case-insensitively.
void AddPropertyIs(Trigger& t, std::string_view property, std::string_view text) {
  ValueTest is;
  is.op = Op::kIs;
  is.text = {Lower(text)};
  t.where.push_back({{std::string(property)}, std::move(is)});
}

bool ParseVisitsWebPage(TriggerInput& in) {
  in.t.type = ActivityType::kPage;
  in.t.name = "*";
  return in.Only({"type", "url", "where"}) && in.Prop("url", {"url", "path"}) && in.Where();
}

bool ParseFillsOutForm(TriggerInput& in) {
  in.t.type = ActivityType::kTrack;
  in.t.name = "Form Submitted";
  return in.Only({"type", "form", "where"}) && in.Prop("form", {"form"}) && in.Where();
}

bool ParseClicksEmailLink(TriggerInput& in) {
  in.t.type = ActivityType::kTrack;
  in.t.name = "Email Link Clicked";
  return in.Only({"type", "email", "link", "where"}) &&
         in.Prop("email", {"email_subject", "email_id"}, true) && in.Prop("link", {"link_url"}) &&
         in.Where();
}

// The email events a client reports as track calls (opens, bounces, unsubscribes).
bool ParseEmailEvent(TriggerInput& in, std::string_view event) {
  in.t.type = ActivityType::kTrack;
  in.t.name = std::string(event);
  return in.Only({"type", "email", "where"}) &&
         in.Prop("email", {"email_subject", "email_id"}, true) && in.Where();
}

bool ParseDataValueChanges(TriggerInput& in) {
  using model::DataValueChanged;
  in.t.type = ActivityType::kFairway;
  in.t.name = std::string(DataValueChanged::kEvent);
  auto field = in.p.String(in.o, "field", in.path, true, 200);
  if (!field || !in.Only({"type", "field", "from", "to"})) return false;
  AddPropertyIs(in.t, DataValueChanged::kField, *field);
  return in.Prop("from", {std::string(DataValueChanged::kFrom)}) &&
         in.Prop("to", {std::string(DataValueChanged::kTo)});
}

bool ParseScoreChanged(TriggerInput& in) {
  in.t.type = ActivityType::kFairway;
  in.t.name = std::string(model::ScoreChanged::kEvent);
  bool ok = in.Only({"type", "min_change", "max_change"});
  for (auto [key, op] :
       {std::pair{"min_change", Op::kAtLeast}, std::pair{"max_change", Op::kAtMost}}) {
    if (!ok) break;
    if (auto n = in.p.Int(in.o, key, in.path, false, -1'000'000'000, 1'000'000'000)) {
      ValueTest test;
      test.op = op;
      test.numbers = {static_cast<double>(*n)};
      in.t.where.push_back({{std::string(model::ScoreChanged::kChange)}, std::move(test)});
    }
    ok = !in.p.failed();
  }
  return ok;
}

bool ParseAddedToList(TriggerInput& in) {
  in.t.type = ActivityType::kFairway;
  in.t.name = std::string(model::ListMembershipChanged::kAddedEvent);
  auto list = in.p.String(in.o, "list", in.path, true, 200);
  if (!list || !in.Only({"type", "list"})) return false;
  AddPropertyIs(in.t, model::ListMembershipChanged::kList, *list);
  return true;
}

bool ParseLeadCreated(TriggerInput& in) {
  in.t.type = ActivityType::kFairway;
  in.t.name = std::string(model::LeadCreated::kEvent);
  return in.Only({"type"});
}

// A visitor's session began or ended (sessions processor): "where" tests its summary
// (pages, events, duration_s, landing_page, source).
bool ParseSessionEvent(TriggerInput& in, std::string_view event) {
  in.t.type = ActivityType::kFairway;
  in.t.name = std::string(event);
  return in.Only({"type", "where"}) && in.Where();
}

bool ParseAccountChanged(TriggerInput& in) {
  in.t.type = ActivityType::kGroup;
  in.t.name = "*";
  return in.Only({"type", "where"}) && in.Where();
}

bool ParseCampaignRequested(TriggerInput& in) {
  // Indexed by the requested campaign, so a request reaches only its campaign.
  in.t.type = ActivityType::kFairway;
  in.t.name = RequestTriggerName(in.campaign_id);
  return in.Only({"type"});
}

bool ParseTrack(TriggerInput& in) {
  in.t.type = ActivityType::kTrack;
  auto event = in.p.String(in.o, "event", in.path, true, 200);
  if (!event || !in.Only({"type", "event", "where"}) || !in.Where()) return false;
  in.t.name = *event;
  return true;
}

bool ParseActivity(TriggerInput& in) {
  auto type = in.p.String(in.o, "activity_type", in.path, true, 32);
  if (!type || !in.Only({"type", "activity_type", "name", "where"})) return false;
  auto at = model::ParseActivityType(*type);
  if (!at) {
    return in.p.Fail(DefinitionParser::At(in.path, "activity_type"),
                     "must be one of track, identify, page, screen, group, alias, fairway");
  }
  in.t.type = *at;
  auto name = in.p.String(in.o, "name", in.path, false, 200);
  in.t.name = name && !name->empty() ? *name : "*";
  return !in.p.failed() && in.Where();
}

struct TriggerKind {
  std::string_view name;
  bool (*parse)(TriggerInput& in);
};

// In the order docs/campaigns.md lists them (and the error message names them).
constexpr TriggerKind kTriggerKinds[] = {
    {"visits_web_page", ParseVisitsWebPage},
    {"fills_out_form", ParseFillsOutForm},
    {"clicks_email_link", ParseClicksEmailLink},
    {"opens_email", [](TriggerInput& in) { return ParseEmailEvent(in, "Email Opened"); }},
    {"email_bounced", [](TriggerInput& in) { return ParseEmailEvent(in, "Email Bounced"); }},
    {"unsubscribes", [](TriggerInput& in) { return ParseEmailEvent(in, "Unsubscribed"); }},
    {"data_value_changes", ParseDataValueChanges},
    {"score_changed", ParseScoreChanged},
    {"added_to_list", ParseAddedToList},
    {"lead_created", ParseLeadCreated},
    {"session_started",
     [](TriggerInput& in) { return ParseSessionEvent(in, model::SessionStarted::kEvent); }},
    {"session_ended",
     [](TriggerInput& in) { return ParseSessionEvent(in, model::SessionEnded::kEvent); }},
    {"account_changed", ParseAccountChanged},
    {kCampaignRequestedTrigger, ParseCampaignRequested},
    {"track", ParseTrack},
    {"activity", ParseActivity},
};

}  // namespace

std::string RequestTriggerName(std::string_view campaign_id) {
  return fmt::format("{}/{}", model::CampaignRequested::kEvent, campaign_id);
}

bool AcceptsRequests(const Campaign& c) {
  return std::any_of(c.triggers.begin(), c.triggers.end(),
                     [](const Trigger& t) { return t.kind == kCampaignRequestedTrigger; });
}

std::optional<Trigger> ParseTrigger(DefinitionParser& p, const json::value& v,
                                    const std::string& path, std::string_view campaign_id) {
  auto* o = p.Object(v, path);
  if (!o) return std::nullopt;
  auto kind = p.String(*o, "type", path, true, 64);
  if (!kind) return std::nullopt;
  auto it = std::find_if(std::begin(kTriggerKinds), std::end(kTriggerKinds),
                         [&](const TriggerKind& k) { return k.name == *kind; });
  if (it == std::end(kTriggerKinds)) {
    std::string names;
    for (const auto& k : kTriggerKinds) {
      if (!names.empty()) names.append(", ");
      names.append(k.name);
    }
    p.Fail(DefinitionParser::At(path, "type"), "must be one of " + names);
    return std::nullopt;
  }
  Trigger t;
  t.kind = *kind;
  TriggerInput in{p, *o, path, campaign_id, t};
  if (!it->parse(in) || p.failed()) return std::nullopt;
  return t;
}

}  // namespace fairway::campaigns
