#pragma once
// The HTTP boundary between the server (Boost.Beast, server.cpp) and the API (api.cpp): plain
// request and response structs and an asynchronous handler, so no other file sees Beast.

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace fairway::http {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // path and query, as sent
  std::string authorization;
  std::string content_type;
  std::string body;
  // The node that forwarded this request (header Fairway-Forwarded-By), empty when a client
  // sent it.
  std::string forwarded_by;
  // Origin, User-Agent and Host headers, and X-Forwarded-Proto (set by a TLS proxy in front).
  std::string origin = {};
  std::string user_agent = {};
  std::string host = {};
  std::string forwarded_proto = {};
  // The client's address: the connection's peer, or the first X-Forwarded-For entry when the
  // server trusts it (ServerOptions::trust_forwarded_for).
  std::string client_ip = {};
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

// Completes one request; may be called from any thread, exactly once.
using Responder = std::function<void(HttpResponse)>;

class Handler {
 public:
  virtual ~Handler() = default;
  // Runs on an I/O thread: must not block. Hands blocking work elsewhere and responds later.
  virtual void Handle(HttpRequest request, Responder respond) = 0;
  // Called once a request's header has arrived, before its body is read (`head.body` is
  // empty). An answer here refuses the request cheaply: the body is never read and the
  // connection is closed. Runs on an I/O thread: must not block.
  virtual std::optional<HttpResponse> Screen(const HttpRequest& head) { return std::nullopt; }
};

}  // namespace fairway::http
