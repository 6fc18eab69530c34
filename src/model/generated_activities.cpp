#include "model/generated_activities.h"

#include <fmt/format.h>

#include "common/json_writer.h"

namespace fairway::model {

namespace {

// Appends `"key":` after a comma unless it is the first pair.
void AppendKey(std::string* out, std::string_view key, bool first = false) {
  if (!first) out->push_back(',');
  out->push_back('"');
  out->append(key);
  out->append("\":");
}

void AppendStringPair(std::string* out, std::string_view key, std::string_view value,
                      bool first = false) {
  AppendKey(out, key, first);
  AppendJsonString(out, value);
}

void AppendJsonPair(std::string* out, std::string_view key, std::string_view json,
                    bool first = false) {
  AppendKey(out, key, first);
  out->append(json.empty() ? "null" : json);
}

}  // namespace

void LeadCreated::AppendProperties(std::string* out) const {
  AppendStringPair(out, kUserId, user_id, true);
}

void DataValueChanged::AppendProperties(std::string* out) const {
  AppendStringPair(out, kField, field, true);
  AppendJsonPair(out, kFrom, from_json);
  AppendJsonPair(out, kTo, to_json);
  AppendStringPair(out, kOrigin, origin == Origin::kIdentify ? "identify" : "campaign");
}

void ScoreChanged::AppendProperties(std::string* out) const {
  AppendKey(out, kChange, true);
  fmt::format_to(std::back_inserter(*out), "{}", change);
}

void ListMembershipChanged::AppendProperties(std::string* out) const {
  AppendStringPair(out, kList, list, true);
}

void TagChanged::AppendProperties(std::string* out) const {
  AppendStringPair(out, kTag, tag, true);
}

void AddedToAccount::AppendProperties(std::string* out) const {
  AppendStringPair(out, kAccountId, account_id, true);
}

void MessageQueued::AppendProperties(std::string* out) const {
  AppendStringPair(out, kTo, to, true);
  AppendStringPair(out, kSubject, subject);
}

void EmailBlocked::AppendProperties(std::string* out) const {
  AppendStringPair(out, kReason, kCommunicationLimit, true);
  AppendStringPair(out, kTo, to);
}

void CrmTaskCreated::AppendProperties(std::string* out) const {
  AppendStringPair(out, kSubject, subject, true);
}

void CampaignRequested::AppendProperties(std::string* out) const {
  AppendStringPair(out, kRequested, requested, true);
  AppendJsonPair(out, kTokens, tokens_json.empty() ? std::string_view("{}") : tokens_json);
}

void InterestingMoment::AppendProperties(std::string* out) const {
  AppendStringPair(out, kMomentType, moment_type, true);
  AppendStringPair(out, kDescription, description);
}

void LeadDeleted::AppendProperties(std::string*) const {}

void CampaignWaitElapsed::AppendProperties(std::string* out) const {
  AppendStringPair(out, kCampaign, campaign, true);
  AppendStringPair(out, kRun, run);
  fmt::format_to(std::back_inserter(*out), ",\"{}\":{},\"{}\":{}", kStep, step, kDue, due_ms);
}

void IdentityLinked::AppendProperties(std::string* out) const {
  AppendStringPair(out, kIdentity, identity, true);
  AppendStringPair(out, kKind, kind);
}

void SessionStarted::AppendProperties(std::string* out) const {
  AppendStringPair(out, kSessionId, session_id, true);
  AppendStringPair(out, kLandingPage, landing_page);
  AppendStringPair(out, kSource, source);
  AppendStringPair(out, kCampaign, campaign);
}

void SessionEnded::AppendProperties(std::string* out) const {
  AppendStringPair(out, kSessionId, session_id, true);
  fmt::format_to(std::back_inserter(*out), ",\"{}\":{},\"{}\":{},\"{}\":{},\"{}\":{}", kStart,
                 start_ms, kDurationSeconds, duration_s, kPages, pages, kEvents, events);
  AppendStringPair(out, kLandingPage, landing_page);
  AppendStringPair(out, kSource, source);
}

void SessionTimeout::AppendProperties(std::string* out) const {
  AppendStringPair(out, kSessionId, session_id, true);
  fmt::format_to(std::back_inserter(*out), ",\"{}\":{}", kDue, due_ms);
}

}  // namespace fairway::model
