#pragma once
// Forwards a request to another node of a cluster (the node that processes the request's
// tenant) over HTTP and returns that node's answer. The request goes with its method, target,
// body, Authorization and Content-Type, and a `Fairway-Forwarded-By` header naming this node, so
// the other node never forwards it again. Blocking (libcurl): call it off the I/O threads.

#include <string>

#include "http/handler.h"

namespace fairway::http {

inline constexpr char kForwardedByHeader[] = "Fairway-Forwarded-By";

// `base_url` is the other node's "scheme://host:port". A transfer that fails answers 503 naming
// the node's address (the client retries; the owner may be moving).
HttpResponse ForwardRequest(const std::string& base_url, const HttpRequest& req,
                            const std::string& node_id);

}  // namespace fairway::http
