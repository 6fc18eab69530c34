#include "tenant_setup.h"

#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include "run_plan.h"

namespace fairway::bench {
namespace {

constexpr int kIoTimeoutSeconds = 30;
constexpr size_t kReadChunk = 16 * 1024;

std::string ErrnoText(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

std::string CreateTenantRequest(const AdminSettings& settings, const std::string& tenant) {
  std::string body = R"({"id":")" + tenant + R"(","name":"Bench )" + tenant +
                     R"(","quotas":{"ingest_rate":100000000,"ingest_burst":100000000}})";
  std::string request =
      "POST /admin/v1/tenants HTTP/1.1\r\nHost: " + settings.host_header +
      "\r\nAuthorization: Bearer " + settings.admin_token +
      "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
      "\r\n\r\n";
  return request + body;
}

std::map<std::string, std::string> ReadKeysFile(const std::string& path) {
  std::map<std::string, std::string> keys;
  std::ifstream in(path);
  std::string tenant;
  std::string key;
  while (in >> tenant >> key) keys[tenant] = key;
  return keys;
}

bool WriteKeysFile(const std::string& path, const std::vector<std::string>& tenant_names,
                   const std::vector<std::string>& keys) {
  std::ofstream out(path, std::ios::trunc);
  for (size_t i = 0; i < tenant_names.size(); ++i) out << tenant_names[i] << ' ' << keys[i] << '\n';
  return static_cast<bool>(out);
}

}  // namespace

BlockingHttpClient::~BlockingHttpClient() { Disconnect(); }

void BlockingHttpClient::Disconnect() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  in_.clear();
}

bool BlockingHttpClient::Connect(std::string* error) {
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    *error = ErrnoText("socket");
    return false;
  }
  timeval timeout{kIoTimeoutSeconds, 0};
  setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd_, reinterpret_cast<const sockaddr*>(&address_), sizeof address_) != 0) {
    *error = ErrnoText("connect");
    Disconnect();
    return false;
  }
  return true;
}

bool BlockingHttpClient::Exchange(std::string_view request, HttpResponse* response,
                                  std::string* error) {
  bool reused = fd_ >= 0;
  if (!reused && !Connect(error)) return false;
  bool retryable = false;
  if (TryExchange(request, response, error, &retryable)) return true;
  if (!reused || !retryable) return false;
  if (!Connect(error)) return false;
  return TryExchange(request, response, error, &retryable);
}

bool BlockingHttpClient::TryExchange(std::string_view request, HttpResponse* response,
                                     std::string* error, bool* retryable) {
  *retryable = false;
  size_t sent = 0;
  while (sent < request.size()) {
    ssize_t n = send(fd_, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      *error = ErrnoText("send");
      *retryable = sent == 0;
      Disconnect();
      return false;
    }
    sent += static_cast<size_t>(n);
  }
  char buffer[kReadChunk];
  bool got_bytes = false;
  for (;;) {
    ptrdiff_t used = ParseHttpResponse(in_, false, response);
    if (used < 0) {
      *error = "malformed HTTP answer";
      Disconnect();
      return false;
    }
    if (used > 0) {
      in_.erase(0, static_cast<size_t>(used));
      if (response->close) Disconnect();
      return true;
    }
    ssize_t n = recv(fd_, buffer, sizeof buffer, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      *error = ErrnoText("recv");
      Disconnect();
      return false;
    }
    if (n == 0) {
      if (ParseHttpResponse(in_, true, response) > 0) {
        Disconnect();
        return true;
      }
      *error = "connection closed before a full answer";
      *retryable = !got_bytes;
      Disconnect();
      return false;
    }
    got_bytes = true;
    in_.append(buffer, static_cast<size_t>(n));
  }
}

std::optional<std::string> FindJsonString(std::string_view json, std::string_view name) {
  std::string quoted = "\"" + std::string(name) + "\"";
  size_t pos = json.find(quoted);
  if (pos == std::string_view::npos) return std::nullopt;
  pos += quoted.size();
  while (pos < json.size() && (json[pos] == ' ' || json[pos] == ':')) ++pos;
  if (pos >= json.size() || json[pos] != '"') return std::nullopt;
  size_t end = json.find('"', pos + 1);
  if (end == std::string_view::npos) return std::nullopt;
  return std::string(json.substr(pos + 1, end - pos - 1));
}

std::optional<std::vector<std::string>> ObtainWriteKeys(
    const AdminSettings& settings, const std::vector<std::string>& tenant_names,
    std::string* error) {
  std::vector<std::string> keys(tenant_names.size());
  std::vector<size_t> missing;
  std::map<std::string, std::string> known;
  if (!settings.keys_file.empty()) known = ReadKeysFile(settings.keys_file);
  for (size_t i = 0; i < tenant_names.size(); ++i) {
    auto it = known.find(tenant_names[i]);
    if (it != known.end()) {
      keys[i] = it->second;
    } else {
      missing.push_back(i);
    }
  }

  if (!missing.empty()) {
    if (settings.admin_token.empty()) {
      *error = "creating tenants needs --admin-token (or FAIRWAY_ADMIN_TOKEN)";
      return std::nullopt;
    }
    int64_t started = NowNs();
    std::atomic<size_t> next{0};
    std::atomic<bool> failed{false};
    std::mutex error_mutex;
    auto create = [&] {
      BlockingHttpClient client(settings.address);
      for (size_t k = next++; k < missing.size() && !failed; k = next++) {
        const std::string& tenant = tenant_names[missing[k]];
        HttpResponse response;
        std::string problem;
        if (client.Exchange(CreateTenantRequest(settings, tenant), &response, &problem)) {
          std::optional<std::string> key = FindJsonString(response.body, "write_key");
          if ((response.status == 201 || response.status == 200) && key) {
            keys[missing[k]] = *key;
            continue;
          }
          if (response.status == 409) {
            problem = "tenant " + tenant +
                      " already exists and the keys file has no write key for it (start the "
                      "server on a fresh data dir, or pass the --keys-file written last time)";
          } else {
            problem = "creating tenant " + tenant + ": HTTP " + std::to_string(response.status) +
                      ": " + response.body.substr(0, 300);
          }
        } else {
          problem = "creating tenant " + tenant + ": " + problem;
        }
        std::lock_guard lock(error_mutex);
        if (!failed.exchange(true)) *error = problem;
      }
    };
    std::vector<std::thread> threads;
    size_t parallel = std::max<size_t>(1, std::min(settings.parallel, missing.size()));
    for (size_t i = 0; i < parallel; ++i) threads.emplace_back(create);
    for (std::thread& t : threads) t.join();
    if (failed) return std::nullopt;
    std::fprintf(stderr, "loadgen: created %zu tenants in %.2f s\n", missing.size(),
                 static_cast<double>(NowNs() - started) / 1e9);
  }

  if (!settings.keys_file.empty() && !missing.empty() &&
      !WriteKeysFile(settings.keys_file, tenant_names, keys)) {
    *error = "cannot write " + settings.keys_file;
    return std::nullopt;
  }
  return keys;
}

}  // namespace fairway::bench
