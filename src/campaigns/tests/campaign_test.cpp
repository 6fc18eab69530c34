#include "campaigns/campaign.h"

#include <gtest/gtest.h>

#include "campaigns/action.h"
#include "campaigns/campaign_state.h"
#include "campaigns/template.h"

namespace fairway::campaigns {
namespace {

constexpr int64_t kNow = 1'700'000'000'000;

std::string ErrorOf(std::string_view json) {
  auto r = ParseCampaign(json, "c1");
  EXPECT_FALSE(r.ok()) << json;
  return r.ok() ? "" : r.status().message();
}

TEST(CampaignParseTest, AFullDefinitionCompiles) {
  auto r = ParseCampaign(R"J({
    "name": "Pricing follow-up",
    "triggers": [
      {"type": "visits_web_page", "url": {"op": "contains", "value": "/pricing"}},
      {"type": "fills_out_form", "form": "Contact Us"},
      {"type": "track", "event": "Signed Up", "where": [{"property": "plan", "op": "is", "value": ["pro", "team"]}]},
      {"type": "score_changed", "min_change": 10},
      {"type": "data_value_changes", "field": "country", "to": "DE"},
      {"type": "campaign_requested"}
    ],
    "filters": [
      {"field": "country", "op": "is", "value": ["DE", "AT"]},
      {"activity": {"type": "page", "name": {"op": "matches", "value": "/pricing*"}}, "min_count": 3, "within_days": 7},
      {"member_of_list": "customers"}
    ],
    "filter_logic": "1 and (2 or not 3)",
    "flow": [
      {"action": "change_score", "change": 10},
      {"action": "wait", "duration": "2d"},
      {"choices": [
         {"if": {"field": "score", "op": "at_least", "value": 50}, "then": {"action": "send_alert", "subject": "Hot lead {{lead.email}}", "body": "b"}},
         {"if": {"has_tag": "vip"}, "then": null}],
       "default": {"action": "send_email", "subject": "Hi {{lead.firstName|there}}", "body": "..."}},
      {"action": "call_webhook", "url": "https://example.com/hook?lead={{lead.id}}", "body": {"lead": "{{lead.id}}"}},
      {"action": "wait", "at": "09:30", "timezone": "Europe/Berlin"}
    ],
    "qualification": {"rule": "every_n_days", "days": 7},
    "tokens": {"offer": "20% off"}
  })J",
                         "pricing");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const Campaign& c = *r;
  ASSERT_EQ(c.triggers.size(), 6u);
  EXPECT_EQ(c.triggers[0].type, model::ActivityType::kPage);
  EXPECT_EQ(c.triggers[0].name, "*");
  EXPECT_EQ(c.triggers[1].name, "Form Submitted");
  EXPECT_EQ(c.triggers[5].name, "campaign_requested/pricing");
  ASSERT_TRUE(c.filter);
  EXPECT_EQ(c.filter->kind, Condition::Kind::kAll);
  ASSERT_EQ(c.filter->children.size(), 2u);
  EXPECT_EQ(c.filter->children[1].kind, Condition::Kind::kAny);
  EXPECT_EQ(c.filter->children[1].children[1].kind, Condition::Kind::kNot);
  ASSERT_EQ(c.flow.size(), 5u);
  EXPECT_EQ(ActionJson(*c.flow[1].action), R"({"action":"wait","duration":"2d"})");
  EXPECT_EQ(c.flow[2].choices.size(), 2u);
  EXPECT_EQ(c.flow[2].choices[1].then, nullptr);
  EXPECT_EQ(ActionJson(*c.flow[2].default_action),
            R"({"action":"send_email","subject":"Hi {{lead.firstName|there}}","body":"...",)"
            R"("to":"{{lead.email}}"})");
  EXPECT_EQ(ActionJson(*c.flow[3].action), R"({"action":"call_webhook","method":"POST",)"
                                           R"("url":"https://example.com/hook?lead={{lead.id}}",)"
                                           R"("headers":{"Content-Type":"application/json"},)"
                                           R"("body":"{\"lead\":\"{{lead.id}}\"}"})");
  EXPECT_EQ(ActionJson(*c.flow[4].action),
            R"({"action":"wait","at":"09:30","timezone":"Europe/Berlin"})");
  EXPECT_EQ(c.qualification, Qualification::kEveryNDays);
  EXPECT_EQ(c.tokens.at("offer"), "20% off");
}

TEST(CampaignParseTest, ErrorsNameThePathOfTheBadField) {
  const std::string head = R"({"name":"x","triggers":[{"type":"lead_created"}],)";
  EXPECT_EQ(
      ErrorOf(head +
              R"("flow":[{"action":"change_score","change":1},{"action":"wait","duration":"1d"},
      {"choices":[{"if":{"fieldx":"a"},"then":null}]}]})"),
      "flow[2].choices[0].if: must have one of field, member_of_list, not_member_of_list, "
      "has_tag, not_has_tag, activity, all, any, not");
  EXPECT_EQ(
      ErrorOf(
          head +
          R"("flow":[{"choices":[{"if":{"field":"x","op":"bigger","value":1},"then":null}]}]})"),
      "flow[0].choices[0].if.op: must be one of is, is_not, contains, not_contains, "
      "starts_with, ends_with, matches, greater_than, less_than, at_least, at_most, "
      "between, is_empty, is_not_empty, in_past_days, before, after");
  EXPECT_EQ(
      ErrorOf(head +
              R"("flow":[{"choices":[{"if":{"field":7,"op":"is","value":1},"then":null}]}]})"),
      "flow[0].choices[0].if.field: must be a string");
  EXPECT_EQ(
      ErrorOf(
          R"({"name":"x","triggers":[{"type":"visits_web_page","url":{"op":"greater_than","value":"a"}}],"flow":[]})"),
      "triggers[0].url.value: must be a number");
  EXPECT_EQ(ErrorOf(R"({"name":"x","triggers":[{"type":"nope"}],"flow":[]})").substr(0, 22),
            "triggers[0].type: must");
  EXPECT_EQ(ErrorOf(R"({"name":"x","triggers":[],"flow":[]})"),
            "triggers: must list 1 to 20 triggers");
  EXPECT_EQ(ErrorOf(head + R"("flow":[{"action":"wait","duration":"2 days"}]})"),
            "flow[0].duration: must be like 90s, 15m, 2h, 3d, 1w or 1d12h (at most 10 years)");
  EXPECT_EQ(ErrorOf(head + R"("flow":[{"action":"wait","duration":"1d","until":"2030-01-01"}]})"),
            "flow[0]: a wait needs exactly one of duration, until, at");
  EXPECT_EQ(ErrorOf(head + R"("flow":[{"action":"wait","at":"9:30"}]})"),
            "flow[0].at: must be a time of day, HH:MM");
  EXPECT_EQ(ErrorOf(head + R"("flow":[{"action":"wait","at":"09:30","timezone":"Mars/Base"}]})"),
            "flow[0].timezone: must be lead, tenant or an IANA time zone");
  EXPECT_EQ(ErrorOf(head + R"("flow":[{"action":"call_webhook","url":"ftp://x"}]})"),
            "flow[0].url: must be an http:// or https:// URL");
  EXPECT_EQ(ErrorOf(head + R"("flow":[{"action":"send_email","subject":"s"}]})"),
            "flow[0].body: is required");
  EXPECT_EQ(ErrorOf(head + R"("flow":[{"action":"change_score","change":1,"extra":1}]})"),
            "flow[0].extra: unknown field");
  EXPECT_EQ(
      ErrorOf(
          head +
          R"("flow":[{"choices":[{"if":{"has_tag":"a"},"then":{"action":"wait","duration":"1d"}}]}]})"),
      "flow[0].choices[0].then.action: a wait cannot be a choice; use a wait step");
  EXPECT_EQ(
      ErrorOf(head +
              R"("filters":[{"has_tag":"a"},{"has_tag":"b"}],"filter_logic":"1 and 3","flow":[]})"),
      "filter_logic: filter 3 does not exist (there are 2)");
  EXPECT_EQ(ErrorOf(head +
                    R"("filters":[{"has_tag":"a"},{"has_tag":"b"}],"filter_logic":"1","flow":[]})"),
            "filter_logic: does not use filter 2");
  EXPECT_EQ(ErrorOf(head + R"("filters":[{"has_tag":"a"}],"filter_logic":"(1","flow":[]})"),
            "filter_logic: expected ')' at position 3");
  EXPECT_EQ(ErrorOf(head + R"("qualification":{"rule":"every_n_days"},"flow":[]})"),
            "qualification.days: is required");
  EXPECT_EQ(ErrorOf(R"({"id":"other","name":"x","triggers":[{"type":"lead_created"}],"flow":[]})"),
            "id: is 'other' but the campaign is 'c1'");
  EXPECT_EQ(ErrorOf("[1]"), "body: must be an object");
  EXPECT_EQ(ErrorOf("{"), "body: not valid JSON (incomplete JSON)");
}

TEST(ValueTestTest, OperatorsOnTextNumbersAndTimes) {
  auto parse_filter = [](std::string_view filter) {
    std::string json = R"({"name":"x","triggers":[{"type":"lead_created"}],"filters":[)" +
                       std::string(filter) + R"(],"flow":[]})";
    auto r = ParseCampaign(json, "c");
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? r->filter->children.at(0).test : ValueTest{};
  };
  auto str = [](std::string s) { return FieldValue::String(std::move(s)); };
  EXPECT_TRUE(parse_filter(R"({"field":"f","op":"is","value":["DE","at"]})").Test(str("de"), kNow));
  EXPECT_FALSE(parse_filter(R"({"field":"f","op":"is","value":"DE"})").Test(str("FR"), kNow));
  EXPECT_TRUE(parse_filter(R"({"field":"f","op":"is_not","value":"DE"})")
                  .Test(FieldValue::Missing(), kNow));
  EXPECT_TRUE(parse_filter(R"({"field":"f","op":"is","value":42})")
                  .Test(FieldValue::FromJson("42.0"), kNow));
  EXPECT_TRUE(parse_filter(R"({"field":"f","op":"contains","value":"PRIC"})")
                  .Test(str("/en/pricing"), kNow));
  EXPECT_TRUE(parse_filter(R"({"field":"f","op":"starts_with","value":"/en"})")
                  .Test(str("/en/pricing"), kNow));
  EXPECT_TRUE(parse_filter(R"({"field":"f","op":"matches","value":"/*/pricing*"})")
                  .Test(str("/en/pricing/team"), kNow));
  EXPECT_FALSE(parse_filter(R"({"field":"f","op":"matches","value":"/pricing"})")
                   .Test(str("/pricing/x"), kNow));
  EXPECT_TRUE(
      parse_filter(R"({"field":"f","op":"greater_than","value":10})").Test(str("10.5"), kNow));
  EXPECT_FALSE(parse_filter(R"({"field":"f","op":"greater_than","value":10})")
                   .Test(FieldValue::Number(10), kNow));
  EXPECT_TRUE(parse_filter(R"({"field":"f","op":"between","value":[1,3]})")
                  .Test(FieldValue::Number(3), kNow));
  EXPECT_TRUE(parse_filter(R"({"field":"f","op":"is_empty"})").Test(str(""), kNow));
  EXPECT_TRUE(
      parse_filter(R"({"field":"f","op":"is_empty"})").Test(FieldValue::FromJson("null"), kNow));
  EXPECT_FALSE(parse_filter(R"({"field":"f","op":"is_empty"})").Test(str("x"), kNow));
  ValueTest past = parse_filter(R"({"field":"f","op":"in_past_days","days":7})");
  EXPECT_TRUE(past.Test(FieldValue::Number(static_cast<double>(kNow - 86'400'000)), kNow));
  EXPECT_FALSE(past.Test(FieldValue::Number(static_cast<double>(kNow - 8 * 86'400'000)), kNow));
  EXPECT_TRUE(past.Test(str("2023-11-13T00:00:00Z"), kNow));  // kNow is 2023-11-14T22:13Z
  EXPECT_TRUE(parse_filter(R"({"field":"f","op":"before","value":"2024-01-01"})")
                  .Test(str("2023-06-01T00:00:00Z"), kNow));
}

TEST(TemplateTest, TokensFallbacksAndEscaping) {
  TokenResolver resolve = [](std::string_view path) -> std::optional<std::string> {
    if (path == "lead.firstName") return "Ann \"Q\"";
    if (path == "lead.empty") return "";
    return std::nullopt;
  };
  EXPECT_EQ(RenderTemplate("Hi {{lead.firstName}}!", resolve, Escape::kNone), "Hi Ann \"Q\"!");
  EXPECT_EQ(RenderTemplate("Hi {{ lead.unknown | there }}!", resolve, Escape::kNone), "Hi there!");
  EXPECT_EQ(RenderTemplate("Hi {{lead.empty|you}}", resolve, Escape::kNone), "Hi you");
  EXPECT_EQ(RenderTemplate("Hi {{lead.unknown}}.", resolve, Escape::kNone), "Hi .");
  EXPECT_EQ(RenderTemplate(R"({"n":"{{lead.firstName}}"})", resolve, Escape::kJson),
            R"({"n":"Ann \"Q\""})");
  EXPECT_EQ(RenderTemplate("q={{lead.firstName}}", resolve, Escape::kUrl), "q=Ann%20%22Q%22");
  EXPECT_EQ(RenderTemplate("unclosed {{lead.firstName", resolve, Escape::kNone),
            "unclosed {{lead.firstName");
}

TEST(CampaignStateTest, CodecsRoundTripAndRejectCorruption) {
  RunState r;
  r.run_id = MakeRunId("c", "m1");
  r.step = 3;
  r.wait_due_ms = kNow;
  r.depth = 2;
  r.trigger_fields_json = R"("properties":{"a":1})";
  r.tokens = {{"k", "v"}};
  r.user_id = "u1";
  auto back = DecodeRunState(EncodeRunState(r));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->run_id, r.run_id);
  EXPECT_EQ(back->step, 3u);
  EXPECT_EQ(back->tokens.at("k"), "v");
  EXPECT_EQ(back->user_id, "u1");
  EXPECT_EQ(r.run_id.size(), 32u);
  EXPECT_NE(MakeRunId("c", "m1"), MakeRunId("c", "m2"));
  EXPECT_FALSE(DecodeRunState(EncodeRunState(r).substr(0, 10)).ok());
  auto mail = DecodeMailLog(EncodeMailLog({kNow - 5, kNow}));
  ASSERT_TRUE(mail.ok());
  EXPECT_EQ(*mail, (std::vector<int64_t>{kNow - 5, kNow}));
  Timer t;
  t.campaign = "c";
  t.run_id = r.run_id;
  t.step = 2;
  t.user_id = "u1";
  std::string key = TimerKey(TenantId("acme"), kNow, LeadId("u1"), "c", t.run_id);
  auto tb = DecodeTimer(key, EncodeTimer(t));
  ASSERT_TRUE(tb.ok());
  EXPECT_EQ(tb->due_ms, kNow);
  EXPECT_EQ(tb->lead, LeadId("u1"));
  EXPECT_EQ(tb->step, 2u);
  // Timer keys of a tenant sort by due time.
  EXPECT_LT(TimerKey(TenantId("acme"), kNow, LeadId("zz"), "c", "r"),
            TimerKey(TenantId("acme"), kNow + 1, LeadId("a"), "c", "r"));
}

}  // namespace
}  // namespace fairway::campaigns
