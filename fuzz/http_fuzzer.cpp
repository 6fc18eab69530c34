// Fuzzes the HTTP request path behind the socket: the Api handler (routing, authentication,
// ingest, tenant admin, activities, leads, processing and campaign routes) over the real store,
// log, engine and campaign services, built once per process on a temporary directory (on
// /dev/shm when it exists, so synced writes cost little). One tenant, "fz", exists throughout,
// so requests carrying its keys reach the deep paths.
//
// Input: an HTTP/1.1 request in text form (no Beast: the request-line and header parsing of
// server.cpp are Beast's own):
//   METHOD TARGET [HTTP/1.1]
//   Authorization: Basic $WRITE_KEY:          (user:pass is base64-encoded here)
//   Content-Type: application/json
//
//   body
// $WRITE_KEY, $API_KEY and $ADMIN_TOKEN in the Authorization value and the body are replaced by
// the fixture's credentials.
//
// Checks: the handler answers every request exactly once, with a status in 200..599 other
// than 500 (a request must never reach an internal error), and a JSON answer parses.

#include <unistd.h>

#include <boost/json/parse.hpp>
#include <boost/json/parse_options.hpp>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "campaigns/campaign_processor.h"
#include "campaigns/campaign_registry.h"
#include "campaigns/timer_service.h"
#include "common/crypto.h"
#include "dispatch/delivery_dispatcher.h"
#include "engine/engine.h"
#include "http/api.h"
#include "identity/lead_processor.h"
#include "identity/lead_store.h"
#include "log/embedded_log.h"
#include "storage/schema.h"
#include "storage/store.h"
#include "tenancy/tenant_registry.h"

namespace fairway::fuzz {
namespace {

constexpr char kAdminToken[] = "fuzz-admin-token";
constexpr char kTenant[] = "fz";
// Quotas high enough that the fuzzer's request rate is never refused for rate.
constexpr char kTenantQuotas[] =
    R"({"quotas":{"ingest_rate":1e9,"ingest_burst":1e9,"processing_rate":0,"max_in_flight":4096}})";

[[noreturn]] void Fail(const std::string& what) {
  fprintf(stderr, "http_fuzzer: %s\n", what.c_str());
  std::abort();
}

void Replace(std::string* s, std::string_view from, std::string_view to) {
  for (size_t pos = s->find(from); pos != std::string::npos; pos = s->find(from, pos + to.size())) {
    s->replace(pos, from.size(), to);
  }
}

// Everything the Api needs, wired as `fairway serve` wires it (app/main.cpp), minus the
// socket server, the timer and dispatcher threads and the retention service.
class Fixture {
 public:
  Fixture() {
    std::string base = std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp";
    std::string tmpl = base + "/fairway-fuzz-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) Fail("cannot create a temporary directory");
    dir_ = tmpl;
    storage::StoreOptions so;
    so.path = dir_ + "/store";
    so.column_families = storage::FairwayColumnFamilies();
    so.block_cache_bytes = 8u << 20;
    so.background_jobs = 1;
    store_ = Unwrap(storage::Store::Open(so), "store");
    tenants_ = Unwrap(tenancy::TenantRegistry::Open(store_.get(), clock_), "tenant registry");
    log::EmbeddedLogOptions lo;
    lo.sync = false;
    log_ = std::make_unique<log::EmbeddedLog>(store_.get(), clock_, &metrics_, lo);
    leads_ = std::make_unique<identity::LeadStore>(store_.get());
    campaigns_ = std::make_unique<campaigns::CampaignRegistry>(store_.get(), clock_);
    auto tenant_config =
        [registry = tenants_.get()](const TenantId& id) -> std::optional<model::TenantConfig> {
      auto t = registry->Get(id);
      if (!t.ok()) return std::nullopt;
      return *t;
    };
    timers_ =
        std::make_unique<campaigns::TimerService>(store_.get(), log_.get(), clock_, tenant_config);
    dispatcher_ = std::make_unique<dispatch::DeliveryDispatcher>(
        store_.get(), clock_, &metrics_, dispatch::DeliveryDispatcherOptions{});
    engine::EngineOptions eo;
    eo.threads = 1;
    engine_ = std::make_unique<engine::Engine>(store_.get(), log_.get(), clock_, &metrics_, eo);
    engine_->AddProcessor(std::make_unique<identity::LeadProcessor>());
    campaigns::CampaignProcessorOptions cpo;
    cpo.tenant_timezone = [tenant_config](const TenantId& t) {
      auto c = tenant_config(t);
      return c ? c->timezone : std::string();
    };
    engine_->AddProcessor(std::make_unique<campaigns::CampaignProcessor>(
        campaigns_.get(), leads_.get(), clock_, cpo));
    engine_->Start();
    log_->Start();
    http::ApiOptions ao;
    ao.admin_token = kAdminToken;
    api_ = std::make_unique<http::Api>(ao, tenants_.get(), log_.get(), log_.get(), engine_.get(),
                                       leads_.get(), clock_, &metrics_);
    api_->SetCampaignServices({campaigns_.get(), timers_.get(), dispatcher_.get(), store_.get()});
    api_->SetReady(true);
    RestoreTenant();
    // An active campaign that the API may request, so trigger requests reach deep paths.
    http::HttpRequest create;
    create.method = "POST";
    create.target = "/v1/campaigns";
    create.authorization = "Bearer " + api_key_;
    create.body =
        R"({"id":"requested","name":"Requested","status":"active",)"
        R"("triggers":[{"type":"campaign_requested"}],)"
        R"("flow":[{"action":"change_score","change":5},{"action":"add_tag","tag":"{{my.offer}}"}]})";
    auto r = Send(std::move(create));
    if (r.status != 201 && r.status != 200) Fail("cannot create the seed campaign: " + r.body);
  }

  // Stops the services and removes the directory (at exit; a crash leaves the directory).
  void Shutdown() {
    engine_->Stop();
    log_->Stop();
    api_->Stop();
    api_.reset();
    engine_.reset();
    dispatcher_.reset();
    timers_.reset();
    campaigns_.reset();
    leads_.reset();
    log_.reset();
    tenants_.reset();
    store_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Sends one request and waits for its answer.
  http::HttpResponse Send(http::HttpRequest req) {
    struct Slot {
      std::mutex mu;
      std::condition_variable cv;
      int answers = 0;
      http::HttpResponse response;
    };
    auto slot = std::make_shared<Slot>();
    api_->Handle(std::move(req), [slot](http::HttpResponse r) {
      std::lock_guard lock(slot->mu);
      if (++slot->answers > 1) Fail("a request was answered twice");
      slot->response = std::move(r);
      slot->cv.notify_all();
    });
    std::unique_lock lock(slot->mu);
    slot->cv.wait(lock, [&] { return slot->answers > 0; });
    return slot->response;
  }

  // Puts tenant "fz" back as the fuzz inputs expect it (active, known keys, high quotas) and
  // deletes every other tenant, so an admin request cannot take the deep paths away for the
  // inputs after it, nor make the state grow without bound.
  void RestoreTenant() {
    for (const auto& t : tenants_->List()) {
      if (t.id.str() == kTenant) continue;
      http::HttpRequest del;
      del.method = "DELETE";
      del.target = "/admin/v1/tenants/" + t.id.str();
      del.authorization = std::string("Bearer ") + kAdminToken;
      auto r = Send(std::move(del));
      if (r.status != 204 && r.status != 200 && r.status != 404) {
        Fail("cannot delete tenant " + t.id.str() + ": " + r.body);
      }
    }
    TenantId id(kTenant);
    auto existing = tenants_->Get(id);
    if (existing.ok() && !existing->sealed_layouts.empty()) {
      // A partition-count change leaves layouts that would pile up input after input: the
      // tenant starts again from one layout.
      http::HttpRequest del;
      del.method = "DELETE";
      del.target = std::string("/admin/v1/tenants/") + kTenant;
      del.authorization = std::string("Bearer ") + kAdminToken;
      auto r = Send(std::move(del));
      if (r.status != 200) Fail("cannot delete the tenant: " + r.body);
      if (Status st = log_->ReopenTenant(id); !st.ok()) Fail("cannot reopen: " + st.ToString());
      existing = tenants_->Get(id);
    }
    if (!existing.ok()) {
      model::TenantConfig c;
      c.id = id;
      c.name = "Fuzz";
      auto created = tenants_->Create(c);
      if (!created.ok()) Fail("cannot create the tenant: " + created.status().ToString());
      write_key_ = created->keys.write_key;
      api_key_ = created->keys.api_key;
    } else if (!tenants_->AuthenticateApiKey(api_key_).ok()) {
      auto keys = tenants_->RotateKeys(id);
      if (!keys.ok()) Fail("cannot rotate keys: " + keys.status().ToString());
      write_key_ = keys->write_key;
      api_key_ = keys->api_key;
    }
    if (Status st = tenants_->SetStatus(id, model::TenantStatus::kActive).status(); !st.ok()) {
      Fail("cannot resume the tenant: " + st.ToString());
    }
    // The reset changes quotas only: no partition layout starts.
    auto updated = tenants_->Update(
        id, kTenantQuotas,
        [](const model::TenantConfig&, uint32_t) -> Result<std::vector<uint64_t>> {
          return FailedPrecondition("the fuzzer's reset changes no partition count");
        });
    if (!updated.ok()) Fail("cannot reset quotas: " + updated.status().ToString());
    if (Status st = engine_->UpsertTenant(*updated); !st.ok()) {
      Fail("cannot start processing: " + st.ToString());
    }
  }

  const std::string& write_key() const { return write_key_; }
  const std::string& api_key() const { return api_key_; }

 private:
  template <typename T>
  static T Unwrap(Result<T> r, const char* what) {
    if (!r.ok()) Fail(std::string(what) + ": " + r.status().ToString());
    return std::move(r).value();
  }

  const Clock* clock_ = SystemClock::Default();
  std::string dir_;
  MetricsRegistry metrics_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<tenancy::TenantRegistry> tenants_;
  std::unique_ptr<log::EmbeddedLog> log_;
  std::unique_ptr<identity::LeadStore> leads_;
  std::unique_ptr<campaigns::CampaignRegistry> campaigns_;
  std::unique_ptr<campaigns::TimerService> timers_;
  std::unique_ptr<dispatch::DeliveryDispatcher> dispatcher_;
  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<http::Api> api_;
  std::string write_key_, api_key_;
};

Fixture* fixture = nullptr;

// Parses the text form above. Lenient: whatever is missing stays empty.
http::HttpRequest ParseRequest(std::string_view in, const Fixture& f) {
  http::HttpRequest req;
  auto next_line = [&in]() {
    size_t end = in.find('\n');
    std::string_view line = in.substr(0, end);
    in = end == std::string_view::npos ? std::string_view() : in.substr(end + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    return line;
  };
  std::string_view request_line = next_line();
  size_t sp = request_line.find(' ');
  req.method = std::string(request_line.substr(0, sp));
  if (sp != std::string_view::npos) {
    std::string_view rest = request_line.substr(sp + 1);
    req.target = std::string(rest.substr(0, rest.find(' ')));
  }
  while (!in.empty()) {
    std::string_view line = next_line();
    if (line.empty()) break;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view name = line.substr(0, colon);
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    if (name == "Authorization") req.authorization = std::string(value);
    if (name == "Content-Type") req.content_type = std::string(value);
  }
  req.body = std::string(in);
  for (std::string* s : {&req.authorization, &req.body}) {
    Replace(s, "$WRITE_KEY", f.write_key());
    Replace(s, "$API_KEY", f.api_key());
    Replace(s, "$ADMIN_TOKEN", kAdminToken);
  }
  constexpr std::string_view kBasic = "Basic ";
  if (req.authorization.starts_with(kBasic) && req.authorization.find(':') != std::string::npos) {
    req.authorization =
        std::string(kBasic) + Base64Encode(std::string_view(req.authorization).substr(6));
  }
  return req;
}

}  // namespace
}  // namespace fairway::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  using fairway::fuzz::fixture;
  fixture = new fairway::fuzz::Fixture();
  std::atexit([] { fixture->Shutdown(); });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fairway::fuzz;
  auto req = ParseRequest(std::string_view(reinterpret_cast<const char*>(data), size), *fixture);
  const bool admin = req.authorization.find(kAdminToken) != std::string::npos;
  const std::string method = req.method, target = req.target;
  auto r = fixture->Send(std::move(req));
  if (r.status < 200 || r.status > 599 || r.status == 500) {
    Fail(method + " " + target + " answered " + std::to_string(r.status) + ": " + r.body);
  }
  if (r.content_type == "application/json" && !r.body.empty()) {
    boost::system::error_code ec;
    boost::json::parse_options opts;
    opts.max_depth = 100'000;
    boost::json::parse(r.body, ec, {}, opts);
    if (ec) Fail(method + " " + target + " answered invalid JSON: " + r.body);
  }
  if (admin) fixture->RestoreTenant();
  return 0;
}
