// Webhook requests over HTTP(S): the request a delivery becomes, the destination filter on every
// connection attempt, and the response headers the dispatcher reads (Retry-After).

#include <curl/curl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <optional>
#include <string>
#include <string_view>

#include "common/crypto.h"
#include "dispatch/curl_transfer.h"

namespace fairway::dispatch {
namespace {

constexpr const char* kUserAgent = "Fairway/0.1";

bool IEqualsPrefix(std::string_view line, std::string_view name) {
  if (line.size() < name.size()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(line[i])) !=
        std::tolower(static_cast<unsigned char>(name[i]))) {
      return false;
    }
  }
  return true;
}

// The peer's answer is not kept: last_error shows the status code and a fixed reason only, so
// a webhook aimed at an internal service cannot read its answers.
size_t DiscardBody(char*, size_t size, size_t n, void*) { return size * n; }

// Every connection attempt of a webhook, with the address DNS resolved to: refuses the ones
// the destination filter does not allow (a refused attempt counts as a failed connect, so
// libcurl tries the host's next address, if any).
curl_socket_t OpenWebhookSocket(void* user, curlsocktype purpose, curl_sockaddr* address) {
  auto* t = static_cast<Transfer*>(user);
  std::optional<std::string> refusal =
      purpose == CURLSOCKTYPE_IPCXN ? t->filter->Check(&address->addr)
                                    : std::optional<std::string>("destination is not a connection");
  if (refusal) {
    if (t->refusal.empty()) t->refusal = std::move(*refusal);
    return CURL_SOCKET_BAD;
  }
  t->attempted = true;
  return socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
}

size_t ReadHeader(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view line(data, size * n);
  if (IEqualsPrefix(line, "HTTP/")) {
    t->retry_after_s = -1;  // a new response (after an interim 1xx)
  } else if (IEqualsPrefix(line, "Retry-After:")) {
    std::string_view v = line.substr(12);
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    int64_t secs = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), secs);
    // Only delta-seconds; an HTTP-date is ignored (the back-off applies).
    if (ec == std::errc() && secs >= 0) t->retry_after_s = secs;
  }
  return size * n;
}

}  // namespace

Status SetUpWebhook(Transfer* x, const Delivery& d, const DestinationFilter* filter,
                    const std::optional<std::string>& secret, int64_t now_ms) {
  CURL* e = x->easy;
  curl_easy_setopt(e, CURLOPT_URL, d.url.c_str());
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  // No proxy, whatever the environment says: the destination filter must see the address of
  // the real destination, not the proxy's.
  curl_easy_setopt(e, CURLOPT_PROXY, "");
  x->filter = filter;
  curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, OpenWebhookSocket);
  curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, x);
  curl_easy_setopt(e, CURLOPT_USERAGENT, kUserAgent);
  bool send_body =
      !d.body.empty() || d.method == "POST" || d.method == "PUT" || d.method == "PATCH";
  if (send_body) {
    // The row outlives the transfer, so libcurl may point at its body.
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, d.body.data());
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(d.body.size()));
    if (d.method != "POST") curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, d.method.c_str());
  } else if (d.method == "GET") {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  } else {
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, d.method.c_str());
  }
  bool has_content_type = false;
  auto add = [x](const std::string& line) {
    curl_slist* next = curl_slist_append(x->headers, line.c_str());
    if (next == nullptr) return false;
    x->headers = next;
    return true;
  };
  bool ok = true;
  for (const auto& [name, value] : d.headers) {
    if (IEqualsPrefix(name, "Content-Type") && name.size() == 12) has_content_type = true;
    // "Name;" is libcurl's spelling of a header with an empty value.
    ok = ok && add(value.empty() ? name + ";" : name + ": " + value);
  }
  ok = ok && add("Idempotency-Key: " + d.id);
  if (secret) {
    std::string t = std::to_string(now_ms / 1000);
    ok = ok &&
         add("X-Fairway-Signature: t=" + t + ",v1=" + HmacSha256Hex(*secret, t + "." + d.body));
  }
  // No 100-continue round trip, and no form content type invented by libcurl.
  ok = ok && add("Expect:");
  if (send_body && !has_content_type) ok = ok && add("Content-Type:");
  if (!ok) return Internal("could not build the request headers (out of memory)");
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, DiscardBody);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, ReadHeader);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
  return Status::Ok();
}

}  // namespace fairway::dispatch
