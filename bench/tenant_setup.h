#pragma once
// Fairway target setup: creating the benchmark tenants through the admin API and collecting
// their write keys.

#include <netinet/in.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "http_response.h"

namespace fairway::bench {

// A blocking HTTP/1.1 client on one keep-alive connection, for the few setup calls.
class BlockingHttpClient {
 public:
  explicit BlockingHttpClient(const sockaddr_in& address) : address_(address) {}
  ~BlockingHttpClient();
  BlockingHttpClient(const BlockingHttpClient&) = delete;
  BlockingHttpClient& operator=(const BlockingHttpClient&) = delete;

  // Sends one complete request and reads the whole answer. A kept-alive connection found
  // closed is reopened once.
  bool Exchange(std::string_view request, HttpResponse* response, std::string* error);

 private:
  bool Connect(std::string* error);
  bool TryExchange(std::string_view request, HttpResponse* response, std::string* error,
                   bool* retryable);
  void Disconnect();

  sockaddr_in address_;
  int fd_ = -1;
  std::string in_;
};

// Where and how to reach the admin API.
struct AdminSettings {
  sockaddr_in address{};
  std::string host_header;  // "127.0.0.1:8080"
  std::string admin_token;
  std::string keys_file;  // optional: "tenant write_key" lines, read first and rewritten after
  size_t parallel = 4;    // concurrent creation requests
};

// Returns the write key of every tenant in `tenant_names` (same order): taken from the keys
// file when it has one, otherwise by creating the tenant with unlimited-for-the-benchmark
// ingest quotas. nullopt with *error set on failure.
std::optional<std::vector<std::string>> ObtainWriteKeys(
    const AdminSettings& settings, const std::vector<std::string>& tenant_names,
    std::string* error);

// The value of the JSON string field `"name"` in `json` (no unescaping), or nullopt.
std::optional<std::string> FindJsonString(std::string_view json, std::string_view name);

}  // namespace fairway::bench
