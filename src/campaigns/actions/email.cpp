// send_email and send_alert: an email through the outbox, to the lead (within the tenant's
// communication limits unless operational) or about the lead to its owner.

#include <fmt/format.h>

#include <algorithm>

#include "campaigns/actions/action_kinds.h"
#include "campaigns/campaign_registry.h"
#include "campaigns/campaign_state.h"
#include "common/json_writer.h"
#include "dispatch/delivery.h"
#include "engine/processor.h"
#include "model/generated_activities.h"

namespace fairway::campaigns::actions {

namespace {

constexpr int64_t kDayMs = 86'400'000;

class SendMessageAction final : public Action {
 public:
  // Templates: subject, body, from, to.
  std::string subject, body, from, to;
  // Alert: to the lead's owner, about the lead; never limited.
  bool alert = false;
  // Email: exempt from communication limits.
  bool operational = false;

  std::string_view kind() const override { return alert ? "send_alert" : "send_email"; }

  void Render(JsonWriter& w) const override {
    w.BeginObject().Key("action").String(kind());
    w.Key("subject").String(subject).Key("body").String(body);
    if (!from.empty()) w.Key("from").String(from);
    w.Key("to").String(to);
    if (operational) w.Key("operational").Bool(true);
    w.EndObject();
  }

  Result<Outcome> Execute(ActionContext& ctx) const override {
    const CampaignSettings& settings = ctx.settings();
    const int64_t now = ctx.now_ms();
    std::string rendered_to = ctx.Render(to, Escape::kLine);
    if (rendered_to.find('@') == std::string::npos) {
      return ctx.Fail(alert ? "the lead has no owner email" : "the lead has no email address");
    }
    std::optional<std::string> mail_log;  // written only if the email is queued
    if (!alert && !operational && (settings.emails_per_day > 0 || settings.emails_per_week > 0)) {
      std::vector<int64_t> sends;
      FAIRWAY_ASSIGN_OR_RETURN(auto log, ctx.state().Get(MailKey(ctx.lead())));
      if (log) {
        FAIRWAY_ASSIGN_OR_RETURN(sends, DecodeMailLog(*log));
      }
      // Emails sent to the person's other identities before they merged count too; the
      // person's own log keeps only its own sends.
      std::vector<int64_t> others;
      for (const LeadId& id : ctx.other_identities()) {
        FAIRWAY_ASSIGN_OR_RETURN(auto other, ctx.state().Get(MailKey(id)));
        if (!other) continue;
        FAIRWAY_ASSIGN_OR_RETURN(auto decoded, DecodeMailLog(*other));
        others.insert(others.end(), decoded.begin(), decoded.end());
      }
      std::erase_if(sends, [&](int64_t t) { return t <= now - 7 * kDayMs; });
      std::erase_if(others, [&](int64_t t) { return t <= now - 7 * kDayMs; });
      auto in_day = [&](const std::vector<int64_t>& v) {
        return std::count_if(v.begin(), v.end(), [&](int64_t t) { return t > now - kDayMs; });
      };
      auto day = in_day(sends) + in_day(others);
      bool blocked =
          (settings.emails_per_day > 0 && day >= settings.emails_per_day) ||
          (settings.emails_per_week > 0 &&
           sends.size() + others.size() >= static_cast<size_t>(settings.emails_per_week));
      if (blocked) {
        ctx.Stat("emails_blocked");
        EmitGenerated(ctx, model::EmailBlocked::kEvent, model::EmailBlocked{.to = rendered_to});
        return Outcome::kBlocked;
      }
      sends.push_back(now);
      mail_log = EncodeMailLog(sends);
    }
    const std::string rendered_subject = ctx.Render(subject, Escape::kLine);
    dispatch::Delivery d;
    d.kind = dispatch::DeliveryKind::kEmail;
    d.id = ctx.delivery_id();
    d.purpose = alert ? "alert" : "email";
    d.source = ctx.campaign().id;
    d.mail_from = from.empty() ? settings.email_from : ctx.Render(from, Escape::kLine);
    d.mail_to = rendered_to;
    d.subject = rendered_subject;
    d.text_body = ctx.Render(body);
    if (Status st = ctx.Enqueue(std::move(d)); !st.ok()) return ctx.Fail(st.message());
    if (mail_log) ctx.state().Put(MailKey(ctx.lead()), std::move(*mail_log));
    ctx.Stat(alert ? "alerts_queued" : "emails_queued");
    EmitGenerated(ctx,
                  alert ? model::MessageQueued::kAlertEvent : model::MessageQueued::kEmailEvent,
                  model::MessageQueued{.to = rendered_to, .subject = rendered_subject});
    return Outcome::kExecuted;
  }
};

std::shared_ptr<const Action> Parse(const ActionInput& in, bool alert) {
  if (!in.Only(
          alert ? std::initializer_list<std::string_view>{"action", "subject", "body", "from", "to"}
                : std::initializer_list<std::string_view>{"action", "subject", "body", "from", "to",
                                                          "operational"})) {
    return nullptr;
  }
  auto a = std::make_shared<SendMessageAction>();
  a->alert = alert;
  a->subject = in.Str("subject", true, 900);
  a->body = in.Str("body", true, 256 * 1024);
  a->from = in.Str("from", false, 254);
  a->to = in.Str("to", false, 254);
  if (a->to.empty()) a->to = alert ? "{{lead.owner}}" : "{{lead.email}}";
  if (!CheckAddress(in.p, a->from, in.At("from")) || !CheckAddress(in.p, a->to, in.At("to"))) {
    return nullptr;
  }
  if (!alert) a->operational = in.p.Bool(in.o, "operational", in.path).value_or(false);
  return a;
}

}  // namespace

std::shared_ptr<const Action> ParseSendEmail(DefinitionParser& p, const json::object& o,
                                             const std::string& path) {
  return Parse({p, o, path}, false);
}

std::shared_ptr<const Action> ParseSendAlert(DefinitionParser& p, const json::object& o,
                                             const std::string& path) {
  return Parse({p, o, path}, true);
}

}  // namespace fairway::campaigns::actions
