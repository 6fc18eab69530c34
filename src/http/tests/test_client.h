#pragma once
// A small blocking HTTP client for tests (libcurl), one keep-alive connection per object.

#include <map>
#include <string>
#include <vector>

namespace fairway::http {

struct ClientResponse {
  long status = 0;  // 0 when the request failed at transport level
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
};

class TestClient {
 public:
  explicit TestClient(std::string base_url);
  ~TestClient();
  TestClient(const TestClient&) = delete;
  TestClient& operator=(const TestClient&) = delete;

  ClientResponse Request(const std::string& method, const std::string& path,
                         const std::string& body = {},
                         const std::vector<std::string>& headers = {});

 private:
  std::string base_;
  void* curl_;
};

// "Authorization: Basic base64(write_key:)".
std::string BasicAuth(const std::string& write_key);
std::string BearerAuth(const std::string& token);

}  // namespace fairway::http
