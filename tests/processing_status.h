#pragma once
// The `leads` processor's status of a tenant as the admin API reports it, bounded waits for
// processing to catch up and for clients' acknowledgements, a partition count change, the leads'
// merged states, and one series of the metrics page: shared by the end-to-end suites.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
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

// Waits (bounded, polling) until the clients' `acknowledged` count reaches `n`; a test failure
// when it does not within a minute (the clients stopped getting acknowledgements).
inline void WaitAcknowledged(const std::atomic<int>& acknowledged, int n) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (acknowledged < n && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // polling progress, bounded
  }
  EXPECT_GE(acknowledged.load(), n) << "the clients stopped getting acknowledgements";
}

// Changes acme's partition count from 4 to 8 through `url` and checks the answer (the new
// layout from log partition 4, one sealed layout); the records of the sealed layout, or
// nullopt (and a test failure) when the change did not go through.
inline std::optional<uint64_t> ChangeAcmeFromFourToEightPartitions(const std::string& url,
                                                                   const std::string& token) {
  http::TestClient admin(url);
  auto patched = admin.Request("PATCH", "/admin/v1/tenants/acme", R"({"partitions":8})",
                               {http::BearerAuth(token)});
  EXPECT_EQ(patched.status, 200) << patched.body;
  if (patched.status != 200) return std::nullopt;
  nlohmann::json tenant = nlohmann::json::parse(patched.body);
  EXPECT_EQ(tenant["partitions"], 8);
  EXPECT_EQ(tenant["first_partition"], 4);
  EXPECT_EQ(tenant["sealed_layouts"].size(), 1u);
  if (tenant["sealed_layouts"].size() != 1) return std::nullopt;
  uint64_t sealed_records = 0;
  for (const auto& e : tenant["sealed_layouts"][0]["ends"]) sealed_records += e.get<uint64_t>();
  return sealed_records;
}

// The merged state of leads "u0" .. "u<leads - 1>" (GET /v1/leads/{id}), by userId; null for
// a lead not read. A 503 is re-sent for a while, as a client would: in a cluster, a node learns
// that a slot moved from the config topic a moment after the move, and until then forwards to
// the old owner and answers 503 when that one is gone.
inline std::map<std::string, nlohmann::json> ReadLeads(const std::string& url,
                                                       const std::string& api_key, int leads) {
  std::map<std::string, nlohmann::json> out;
  http::TestClient c(url);
  for (int i = 0; i < leads; ++i) {
    std::string u = "u" + std::to_string(i);
    auto r = c.Request("GET", "/v1/leads/" + u, {}, {http::BearerAuth(api_key)});
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (r.status == 503 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));  // a client's back-off
      r = c.Request("GET", "/v1/leads/" + u, {}, {http::BearerAuth(api_key)});
    }
    EXPECT_EQ(r.status, 200) << u << ": " << r.body;
    out[u] = r.status == 200 ? nlohmann::json::parse(r.body) : nlohmann::json();
  }
  return out;
}

// A /v1/batch body of events `first` .. `first + n - 1`, each written by `event`.
inline std::string BatchOf(int first, int n, const std::function<std::string(int)>& event) {
  std::string body = R"({"batch":[)";
  for (int i = 0; i < n; ++i) {
    if (i) body += ",";
    body += event(first + i);
  }
  return body + "]}";
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
