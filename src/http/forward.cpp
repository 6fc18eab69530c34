#include "http/forward.h"

#include <curl/curl.h>
#include <fmt/format.h>

#include <cctype>
#include <optional>
#include <string_view>

#include "http/responses.h"

namespace fairway::http {
namespace {

size_t Append(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

struct Headers {
  std::string content_type, retry_after;
};

size_t KeepHeader(char* data, size_t size, size_t n, void* out) {
  std::string_view line(data, size * n);
  auto* h = static_cast<Headers*>(out);
  auto value = [&](std::string_view name) -> std::optional<std::string> {
    if (line.size() <= name.size() + 1 || line[name.size()] != ':') return std::nullopt;
    for (size_t i = 0; i < name.size(); ++i) {
      if (std::tolower(static_cast<unsigned char>(line[i])) != name[i]) return std::nullopt;
    }
    std::string_view v = line.substr(name.size() + 1);
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == '\r' || v.back() == '\n' || v.back() == ' '))
      v.remove_suffix(1);
    return std::string(v);
  };
  if (auto v = value("content-type")) h->content_type = *v;
  if (auto v = value("retry-after")) h->retry_after = *v;
  return size * n;
}

}  // namespace

HttpResponse ForwardRequest(const std::string& base_url, const HttpRequest& req,
                            const std::string& node_id) {
  CURL* c = curl_easy_init();
  if (c == nullptr) return Error(Unavailable("forwarding: cannot create a transfer"));
  std::string url = base_url + req.target;
  std::string body;
  Headers kept;
  struct curl_slist* headers = nullptr;
  if (!req.authorization.empty()) {
    headers = curl_slist_append(headers, ("Authorization: " + req.authorization).c_str());
  }
  if (!req.content_type.empty()) {
    headers = curl_slist_append(headers, ("Content-Type: " + req.content_type).c_str());
  }
  headers = curl_slist_append(headers, fmt::format("{}: {}", kForwardedByHeader, node_id).c_str());
  headers = curl_slist_append(headers, "Expect:");  // no 100-continue round trip
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req.method.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  if (req.method != "GET" && req.method != "HEAD") {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, req.body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
  }
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Append);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, KeepHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &kept);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5'000L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 60'000L);
  CURLcode rc = curl_easy_perform(c);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(c);
  if (rc != CURLE_OK || status == 0) {
    return Error(
        Unavailable(fmt::format("forwarding to the node that processes this tenant ({}) failed: {}",
                                base_url, curl_easy_strerror(rc))));
  }
  HttpResponse r;
  r.status = static_cast<int>(status);
  if (!kept.content_type.empty()) r.content_type = kept.content_type;
  if (!kept.retry_after.empty()) r.headers.emplace_back("Retry-After", kept.retry_after);
  r.body = std::move(body);
  return r;
}

}  // namespace fairway::http
