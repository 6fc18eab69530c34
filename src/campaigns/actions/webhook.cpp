// call_webhook and create_crm_task: HTTP requests through the outbox (signed, retried and
// deduplicated by the dispatcher), to any URL or to the tenant's CRM endpoint.

#include <fmt/format.h>

#include <algorithm>
#include <cctype>

#include "campaigns/actions/action_kinds.h"
#include "campaigns/campaign_registry.h"
#include "common/json_writer.h"
#include "common/time_format.h"
#include "dispatch/delivery.h"
#include "model/generated_activities.h"

namespace fairway::campaigns::actions {

namespace {

constexpr int64_t kDayMs = 86'400'000;

std::string ValueText(const FieldValue& v) {
  return v.kind == FieldValue::Kind::kMissing || v.kind == FieldValue::Kind::kNull ? "" : v.text;
}

class CallWebhookAction final : public Action {
 public:
  std::string method;  // GET, POST, PUT, PATCH or DELETE
  std::string url;     // a template; tokens other than {{my.*}} are percent-encoded
  std::vector<std::pair<std::string, std::string>> headers;  // values are templates
  // A template; JSON-escaped when a header declares a JSON content type.
  std::string body;

  std::string_view kind() const override { return "call_webhook"; }

  void Render(JsonWriter& w) const override {
    w.BeginObject().Key("action").String(kind());
    w.Key("method").String(method).Key("url").String(url);
    if (!headers.empty()) {
      // By name, as the parser reads them back.
      auto sorted = headers;
      std::sort(sorted.begin(), sorted.end());
      w.Key("headers").BeginObject();
      for (const auto& [k, v] : sorted) w.Key(k).String(v);
      w.EndObject();
    }
    if (!body.empty()) w.Key("body").String(body);
    w.EndObject();
  }

  Result<Outcome> Execute(ActionContext& ctx) const override {
    dispatch::Delivery d;
    d.kind = dispatch::DeliveryKind::kWebhook;
    d.id = ctx.delivery_id();
    d.purpose = "webhook";
    d.source = ctx.campaign().id;
    d.method = method;
    bool json_body = false;
    for (const auto& [k, v] : headers) {
      std::string value = ctx.Render(v, Escape::kLine);
      if (Lower(k) == "content-type" && Lower(value).find("json") != std::string::npos) {
        json_body = true;
      }
      d.headers.emplace_back(k, std::move(value));
    }
    // Campaign tokens ({{my.*}}) are configuration and go in as written; everything else
    // is percent-encoded in the URL.
    const Campaign& c = ctx.campaign();
    d.url = RenderTemplate(
        url,
        [&](std::string_view path) -> std::optional<std::string> {
          if (path.starts_with("my.")) {
            auto it = c.tokens.find(std::string(path.substr(3)));
            if (it != c.tokens.end()) return it->second;
            return std::nullopt;
          }
          return ctx.Render(fmt::format("{{{{{}}}}}", path), Escape::kUrl);
        },
        Escape::kNone);
    d.body = ctx.Render(body, json_body ? Escape::kJson : Escape::kNone);
    if (Status st = ctx.Enqueue(std::move(d)); !st.ok()) return ctx.Fail(st.message());
    ctx.Stat("webhooks_queued");
    return Outcome::kExecuted;
  }
};

class CreateCrmTaskAction final : public Action {
 public:
  std::string subject, body, owner;  // templates
  int64_t due_in_days = 0;

  std::string_view kind() const override { return "create_crm_task"; }

  void Render(JsonWriter& w) const override {
    w.BeginObject().Key("action").String(kind()).Key("subject").String(subject);
    if (!body.empty()) w.Key("body").String(body);
    w.Key("owner").String(owner).Key("due_in_days").Int(due_in_days).EndObject();
  }

  Result<Outcome> Execute(ActionContext& ctx) const override {
    const CampaignSettings& settings = ctx.settings();
    if (settings.crm_url.empty()) return ctx.Fail("no CRM endpoint is configured (crm_url)");
    FieldValue email = ctx.LeadField("email");
    JsonWriter w;
    w.BeginObject()
        .Key("type")
        .String("task")
        .Key("id")
        .String(ctx.delivery_id())
        .Key("subject")
        .String(ctx.Render(subject))
        .Key("body")
        .String(ctx.Render(body))
        .Key("owner")
        .String(ctx.Render(owner))
        .Key("due_at")
        .String(FormatIso8601Millis(ctx.now_ms() + due_in_days * kDayMs))
        .Key("lead")
        .BeginObject()
        .Key("id")
        .String(ValueText(ctx.LeadField("id")))
        .Key("email")
        .String(ValueText(email))
        .EndObject()
        .Key("campaign")
        .String(ctx.campaign().id)
        .EndObject();
    dispatch::Delivery d;
    d.kind = dispatch::DeliveryKind::kWebhook;
    d.id = ctx.delivery_id();
    d.purpose = "crm_task";
    d.source = ctx.campaign().id;
    d.method = "POST";
    d.url = settings.crm_url;
    d.headers.emplace_back("Content-Type", "application/json");
    d.body = w.Take();
    if (Status st = ctx.Enqueue(std::move(d)); !st.ok()) return ctx.Fail(st.message());
    EmitGenerated(ctx, model::CrmTaskCreated::kEvent,
                  model::CrmTaskCreated{.subject = ctx.Render(subject)});
    return Outcome::kExecuted;
  }
};

}  // namespace

std::shared_ptr<const Action> ParseCallWebhook(DefinitionParser& p, const json::object& o,
                                               const std::string& path) {
  ActionInput in{p, o, path};
  if (!in.Only({"action", "method", "url", "headers", "body"})) return nullptr;
  auto a = std::make_shared<CallWebhookAction>();
  a->method = in.Str("method", false, 8);
  if (a->method.empty()) a->method = "POST";
  static const std::string_view kMethods[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};
  if (std::find(std::begin(kMethods), std::end(kMethods), a->method) == std::end(kMethods)) {
    p.Fail(in.At("method"), "must be one of GET, POST, PUT, PATCH, DELETE");
    return nullptr;
  }
  a->url = in.Str("url", true, 2048);
  if (!p.failed() && !a->url.starts_with("http://") && !a->url.starts_with("https://") &&
      !a->url.starts_with("{{")) {
    p.Fail(in.At("url"), "must be an http:// or https:// URL");
    return nullptr;
  }
  for (auto& [k, val] : p.StringMap(o, "headers", path)) {
    for (char c : k) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') {
        p.Fail(DefinitionParser::At(in.At("headers"), k), "is not a valid header name");
        return nullptr;
      }
    }
    static const std::string_view kReserved[] = {
        "idempotency-key", "x-fairway-signature", "user-agent", "host",
        "content-length",  "transfer-encoding",   "expect"};
    if (std::find(std::begin(kReserved), std::end(kReserved), Lower(k)) != std::end(kReserved)) {
      p.Fail(DefinitionParser::At(in.At("headers"), k), "is set by Fairway itself");
      return nullptr;
    }
    a->headers.emplace_back(k, val);
  }
  if (auto* body = o.if_contains("body")) {
    // A JSON object or array body is sent as JSON (its strings are templates).
    a->body = body->is_string() ? std::string(body->get_string()) : json::serialize(*body);
    if (!body->is_string()) {
      bool has_type = std::any_of(a->headers.begin(), a->headers.end(),
                                  [](const auto& h) { return Lower(h.first) == "content-type"; });
      if (!has_type) a->headers.emplace_back("Content-Type", "application/json");
    }
  }
  return a;
}

std::shared_ptr<const Action> ParseCreateCrmTask(DefinitionParser& p, const json::object& o,
                                                 const std::string& path) {
  ActionInput in{p, o, path};
  if (!in.Only({"action", "subject", "body", "owner", "due_in_days"})) return nullptr;
  auto a = std::make_shared<CreateCrmTaskAction>();
  a->subject = in.Str("subject", true, 900);
  a->body = in.Str("body", false, 16 * 1024);
  a->owner = in.Str("owner", false, 254);
  if (a->owner.empty()) a->owner = "{{lead.owner}}";
  a->due_in_days = p.Int(o, "due_in_days", path, false, 0, 365).value_or(0);
  return a;
}

}  // namespace fairway::campaigns::actions
