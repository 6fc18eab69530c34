#pragma once
// What every end-to-end suite uses: the admin token its servers are started with, and the
// names it writes unqualified.

#include <chrono>
#include <nlohmann/json.hpp>

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

}  // namespace fairway::e2e
