#pragma once
// What every end-to-end suite uses: the admin token its servers are started with, and the
// names it writes unqualified.

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "http/tests/test_client.h"
#include "testing/temp_dir.h"

namespace fairway::e2e {

using ::fairway::testing::TempDir;
using http::BasicAuth;
using http::BearerAuth;
using http::TestClient;
using nlohmann::json;
using namespace std::chrono_literals;

// The admin token of every server the suites start.
inline constexpr char kToken[] = "e2e-admin-token";

// GET `path` of the server at `url` with `token` as the bearer; null unless it answers 200.
inline json Get(const std::string& url, const std::string& path, const std::string& token) {
  TestClient c(url);
  auto r = c.Request("GET", path, {}, {BearerAuth(token)});
  if (r.status != 200) return json();
  return json::parse(r.body);
}

// The processing status of a tenant's "campaigns" processor (admin API); null if unknown.
inline json CampaignsStream(const std::string& url, const std::string& tenant) {
  json body = Get(url, "/admin/v1/tenants/" + tenant + "/processing", kToken);
  if (body.is_null()) return json();
  for (auto& p : body["processors"]) {
    if (p["name"] == "campaigns") return p;
  }
  return json();
}

// Polls `done` (a condition, not a timer) until it holds or `deadline` passes.
inline bool Eventually(const std::function<bool()>& done,
                       std::chrono::milliseconds deadline = std::chrono::seconds(90)) {
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < until) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling, with a deadline
  }
  return false;
}

}  // namespace fairway::e2e
