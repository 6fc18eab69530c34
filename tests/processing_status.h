#pragma once
// The `leads` processor's status of a tenant as the admin API reports it, a bounded wait for
// processing to catch up, and one series of the metrics page: shared by the end-to-end suites.

#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>

#include "http/tests/test_client.h"

namespace fairway::e2e {

// GET /admin/v1/tenants/{tenant}/processing, the `leads` entry; on another answer an object
// with `http_status` and `body` (and no `lag_events`).
inline nlohmann::json LeadsStatus(const std::string& url, const std::string& admin_token,
                                  const std::string& tenant = "acme") {
  http::TestClient admin(url);
  auto r = admin.Request("GET", "/admin/v1/tenants/" + tenant + "/processing", {},
                         {http::BearerAuth(admin_token)});
  if (r.status != 200) return {{"http_status", r.status}, {"body", r.body}};
  // Kept in a variable: a range-for over a member of a temporary would dangle.
  nlohmann::json body = nlohmann::json::parse(r.body);
  for (auto& p : body["processors"]) {
    if (p["name"] == "leads") return p;
  }
  return {{"body", r.body}};
}

// Waits (bounded) until the `leads` processor has nothing left to process and nothing in
// flight. True when it got there; adds a test failure naming the last status otherwise.
inline bool WaitLeadsProcessed(const std::string& url, const std::string& admin_token,
                               std::chrono::seconds timeout = std::chrono::seconds(60),
                               const std::string& tenant = "acme") {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  nlohmann::json s;
  while (std::chrono::steady_clock::now() < deadline) {
    s = LeadsStatus(url, admin_token, tenant);
    if (s.contains("lag_events") && s["lag_events"] == 0 && s["in_flight"] == 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling, with a deadline
  }
  ADD_FAILURE() << "processing did not catch up: " << s.dump();
  return false;
}

// The value of one series of a Prometheus text page (0 when absent).
inline double MetricValue(const std::string& page, const std::string& series) {
  std::istringstream in(page);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return 0;
}

}  // namespace fairway::e2e
