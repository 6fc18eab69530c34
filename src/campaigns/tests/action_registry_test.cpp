#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>

#include "campaigns/action.h"
#include "campaigns/campaign.h"

namespace fairway::campaigns {
namespace {

// A definition with one step: `action`.
Result<Campaign> ParseStep(std::string_view action) {
  std::string json =
      R"({"name":"x","triggers":[{"type":"lead_created"}],"flow":[)" + std::string(action) + "]}";
  return ParseCampaign(json, "c1");
}

// Every registered kind, with each of its fields given (and the variants of kinds that have
// them). A kind registered without a sample here fails EveryKindRoundTrips.
const std::multimap<std::string, std::string>& Samples() {
  static const std::multimap<std::string, std::string> kSamples = {
      {"send_email", R"({"action":"send_email","subject":"Hi {{lead.firstName|there}}","body":"b",)"
                     R"("from":"sales@example.com","to":"{{lead.email}}","operational":true})"},
      {"send_email", R"({"action":"send_email","subject":"s","body":"b"})"},
      {"send_alert", R"({"action":"send_alert","subject":"Hot","body":"b","from":"a@b.c"})"},
      {"change_score", R"({"action":"change_score","change":-5})"},
      {"change_data_value",
       R"({"action":"change_data_value","field":"plan","op":"set","value":"{{trigger.plan}}"})"},
      {"change_data_value", R"({"action":"change_data_value","field":"n","value":12})"},
      {"change_data_value", R"({"action":"change_data_value","field":"f","value":null})"},
      {"change_data_value",
       R"({"action":"change_data_value","field":"n","op":"increment","value":2.5})"},
      {"change_data_value", R"({"action":"change_data_value","field":"n","op":"clear"})"},
      {"add_to_list", R"({"action":"add_to_list","list":"customers"})"},
      {"remove_from_list", R"({"action":"remove_from_list","list":"customers"})"},
      {"add_tag", R"({"action":"add_tag","tag":"vip"})"},
      {"remove_tag", R"({"action":"remove_tag","tag":"vip"})"},
      {"change_lifecycle_stage", R"({"action":"change_lifecycle_stage","stage":"MQL"})"},
      {"change_owner", R"({"action":"change_owner","owner":"ann@example.com"})"},
      {"add_to_account", R"({"action":"add_to_account","account":"{{lead.company}}"})"},
      {"wait", R"({"action":"wait","duration":"1d12h"})"},
      {"wait", R"({"action":"wait","duration":"90s"})"},
      {"wait", R"({"action":"wait","until":"2030-01-01T08:00:00.000Z"})"},
      {"wait", R"({"action":"wait","at":"09:30"})"},
      {"wait", R"({"action":"wait","at":"18:05","timezone":"Europe/Berlin"})"},
      {"call_webhook",
       R"({"action":"call_webhook","method":"PUT","url":"https://example.com/h?l={{lead.id}}",)"
       R"("headers":{"x-b":"{{lead.email}}","X-A":"1"},"body":{"lead":"{{lead.id}}"}})"},
      {"call_webhook", R"({"action":"call_webhook","url":"{{my.hook}}","body":"text"})"},
      {"request_campaign",
       R"({"action":"request_campaign","campaign":"other","tokens":{"a":"x","n":3,"b":true}})"},
      {"request_campaign", R"({"action":"request_campaign","campaign":"other"})"},
      {"remove_from_flow", R"({"action":"remove_from_flow","campaigns":["a","b-2"]})"},
      {"remove_from_flow", R"({"action":"remove_from_flow"})"},
      {"interesting_moment",
       R"({"action":"interesting_moment","moment_type":"web","description":"Saw {{trigger.url}}"})"},
      {"interesting_moment", R"({"action":"interesting_moment","description":"d"})"},
      {"create_crm_task",
       R"({"action":"create_crm_task","subject":"Call","body":"b","owner":"o@example.com",)"
       R"("due_in_days":3})"},
      {"create_crm_task", R"({"action":"create_crm_task","subject":"Call"})"},
      {"delete_lead", R"({"action":"delete_lead"})"},
  };
  return kSamples;
}

TEST(ActionRegistryTest, EveryKindRoundTripsParseRenderParse) {
  std::set<std::string> sampled;
  for (const auto& [kind, json] : Samples()) {
    SCOPED_TRACE(json);
    ASSERT_NE(FindActionDefinition(kind), nullptr);
    auto first = ParseStep(json);
    ASSERT_TRUE(first.ok()) << first.status().ToString();
    const Action& a = *first->flow.at(0).action;
    EXPECT_EQ(a.kind(), kind);
    const std::string rendered = ActionJson(a);
    auto second = ParseStep(rendered);
    ASSERT_TRUE(second.ok()) << rendered << ": " << second.status().ToString();
    EXPECT_EQ(second->flow.at(0).action->kind(), kind);
    EXPECT_EQ(ActionJson(*second->flow.at(0).action), rendered);
    sampled.insert(kind);
  }
  for (const ActionDefinition& d : ActionDefinitions()) {
    EXPECT_TRUE(sampled.count(std::string(d.name))) << "no sample of " << d.name;
  }
}

TEST(ActionRegistryTest, RenderingFillsInDefaults) {
  auto c = ParseStep(R"({"action":"send_alert","subject":"s","body":"b"})");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(ActionJson(*c->flow[0].action),
            R"({"action":"send_alert","subject":"s","body":"b","to":"{{lead.owner}}"})");
  c = ParseStep(R"({"action":"wait","at":"07:00"})");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(ActionJson(*c->flow[0].action), R"({"action":"wait","at":"07:00","timezone":"lead"})");
  c = ParseStep(R"({"action":"wait","duration":"3600s"})");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(ActionJson(*c->flow[0].action), R"({"action":"wait","duration":"1h"})");
}

TEST(ActionRegistryTest, AnUnknownKindNamesEveryRegisteredOne) {
  auto c = ParseStep(R"({"action":"send_fax"})");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(),
            "flow[0].action: must be one of send_email, send_alert, change_score, "
            "change_data_value, add_to_list, remove_from_list, add_tag, remove_tag, "
            "change_lifecycle_stage, change_owner, add_to_account, wait, call_webhook, "
            "request_campaign, remove_from_flow, interesting_moment, create_crm_task, "
            "delete_lead");
  EXPECT_EQ(FindActionDefinition("send_fax"), nullptr);
}

TEST(ActionRegistryTest, AnUnknownTriggerTypeNamesEveryRegisteredOne) {
  auto c = ParseCampaign(R"({"name":"x","triggers":[{"type":"nope"}],"flow":[]})", "c1");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(),
            "triggers[0].type: must be one of visits_web_page, fills_out_form, "
            "clicks_email_link, opens_email, email_bounced, unsubscribes, data_value_changes, "
            "score_changed, added_to_list, lead_created, session_started, session_ended, "
            "account_changed, campaign_requested, "
            "track, activity");
}

}  // namespace
}  // namespace fairway::campaigns
