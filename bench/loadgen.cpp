// fairway_loadgen: ingest load generator for Fairway and the durable stores it is compared with.
//
//   fairway_loadgen --target fairway --port 8080 --admin-token T [--tenants 1000] [--batch 100]
//   fairway_loadgen --target redis --port 6379
//   fairway_loadgen --target postgres --pg-conninfo "host=127.0.0.1 port=5432 user=postgres"
//
// Every target receives the same events (Segment "track" calls of about 400 bytes) in requests
// of --batch events: one POST /v1/batch, one pipeline of XADDs, or one COPY. The run prints a
// human line and, last, a JSON line with throughput and latency percentiles.

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/crypto.h"
#include "epoll_worker.h"
#include "pg_worker.h"
#include "request_codec.h"
#include "run_plan.h"
#include "tenant_setup.h"

namespace fairway::bench {
namespace {

// The system under load.
enum class Target { kFairway, kRedis, kPostgres };

// Command-line settings of one run.
struct Options {
  Target target = Target::kFairway;
  std::string target_name = "fairway";
  std::string host = "127.0.0.1";
  int port = 0;  // 0: the target's usual port
  size_t connections = 32;
  size_t threads = 1;
  double duration = 20;
  bool duration_given = false;
  uint64_t requests = 0;
  double warmup = 2;
  double rate = 0;
  uint32_t batch = 100;
  size_t tenants = 1000;
  uint32_t users = 5000;
  std::string admin_token;
  std::string keys_file;
  std::string pg_conninfo;
  double timeout = 30;
};

constexpr char kUsage[] = R"(usage: fairway_loadgen [options]
  --target fairway|redis|postgres   what to load (default fairway)
  --host H --port N                 server address (default 127.0.0.1, port 8080/6379/5432)
  --connections C                   concurrent connections (default 32)
  --threads T                       event-loop threads for fairway/redis (default 1);
                                    postgres uses one thread per connection
  --duration S                      measured seconds (default 20, unless --requests is given)
  --requests N                      stop after N measured requests
  --warmup S                        unmeasured seconds before measuring (default 2)
  --rate R                          open loop at R requests/s, latency from the intended send
                                    time; 0 = closed loop as fast as possible (default 0)
  --batch B                         events per request (default 100)
  --tenants N                       tenants the requests cycle through (default 1000)
  --users N                         distinct users per tenant (default 5000)
  --admin-token T                   fairway admin token (default $FAIRWAY_ADMIN_TOKEN)
  --keys-file PATH                  fairway: "tenant write_key" lines to reuse; rewritten
                                    with the keys of newly created tenants
  --pg-conninfo S                   libpq connection string
                                    (default "host=H port=N user=postgres dbname=postgres")
  --timeout S                       per-request timeout, also the drain allowance (default 30)
)";

template <typename T>
bool ParseNumber(std::string_view text, T* out) {
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && ptr == text.data() + text.size();
}

bool ParseOptions(int argc, char** argv, Options* o) {
  auto positive = [](auto value) { return value > 0; };
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (arg.substr(0, 2) != "--") {
      std::fprintf(stderr, "loadgen: unexpected argument %s\n%s", argv[i], kUsage);
      return false;
    }
    std::string_view name = arg.substr(2);
    std::string_view value;
    size_t equals = name.find('=');
    if (equals != std::string_view::npos) {
      value = name.substr(equals + 1);
      name = name.substr(0, equals);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      std::fprintf(stderr, "loadgen: --%.*s needs a value\n", static_cast<int>(name.size()),
                   name.data());
      return false;
    }

    bool ok = true;
    if (name == "target") {
      o->target_name = value;
      if (value == "fairway") {
        o->target = Target::kFairway;
      } else if (value == "redis") {
        o->target = Target::kRedis;
      } else if (value == "postgres") {
        o->target = Target::kPostgres;
      } else {
        ok = false;
      }
    } else if (name == "host") {
      o->host = value;
    } else if (name == "port") {
      ok = ParseNumber(value, &o->port) && o->port > 0 && o->port < 65536;
    } else if (name == "connections") {
      ok = ParseNumber(value, &o->connections) && positive(o->connections) &&
           o->connections <= 60000;
    } else if (name == "threads") {
      ok = ParseNumber(value, &o->threads) && positive(o->threads);
    } else if (name == "duration") {
      ok = ParseNumber(value, &o->duration) && o->duration >= 0;
      o->duration_given = true;
    } else if (name == "requests") {
      ok = ParseNumber(value, &o->requests);
    } else if (name == "warmup") {
      ok = ParseNumber(value, &o->warmup) && o->warmup >= 0;
    } else if (name == "rate") {
      ok = ParseNumber(value, &o->rate) && o->rate >= 0;
    } else if (name == "batch") {
      ok = ParseNumber(value, &o->batch) && positive(o->batch);
    } else if (name == "tenants") {
      ok = ParseNumber(value, &o->tenants) && positive(o->tenants) && o->tenants < 100'000'000;
    } else if (name == "users") {
      ok = ParseNumber(value, &o->users) && positive(o->users) && o->users <= kMaxUsers;
    } else if (name == "admin-token") {
      o->admin_token = value;
    } else if (name == "keys-file") {
      o->keys_file = value;
    } else if (name == "pg-conninfo") {
      o->pg_conninfo = value;
    } else if (name == "timeout") {
      ok = ParseNumber(value, &o->timeout) && o->timeout > 0;
    } else {
      std::fprintf(stderr, "loadgen: unknown option --%.*s\n%s", static_cast<int>(name.size()),
                   name.data(), kUsage);
      return false;
    }
    if (!ok) {
      std::fprintf(stderr, "loadgen: bad value for --%.*s: %.*s\n", static_cast<int>(name.size()),
                   name.data(), static_cast<int>(value.size()), value.data());
      return false;
    }
  }
  if (!o->duration_given && o->requests > 0) o->duration = 0;
  if (o->duration == 0 && o->requests == 0) {
    std::fprintf(stderr, "loadgen: give a --duration or a number of --requests\n");
    return false;
  }
  if (o->port == 0) {
    o->port = o->target == Target::kFairway ? 8080 : o->target == Target::kRedis ? 6379 : 5432;
  }
  if (o->admin_token.empty()) {
    if (const char* env = std::getenv("FAIRWAY_ADMIN_TOKEN")) o->admin_token = env;
  }
  if (o->pg_conninfo.empty()) {
    o->pg_conninfo =
        "host=" + o->host + " port=" + std::to_string(o->port) + " user=postgres dbname=postgres";
  }
  return true;
}

std::optional<sockaddr_in> Resolve(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0 || !found) {
    return std::nullopt;
  }
  sockaddr_in address{};
  std::memcpy(&address, found->ai_addr, sizeof address);
  freeaddrinfo(found);
  return address;
}

// True when a TCP connection to `address` succeeds: fail fast when the server is not up.
bool Reachable(const sockaddr_in& address) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  bool ok = connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0;
  close(fd);
  return ok;
}

std::vector<std::string> TenantNames(size_t count) {
  size_t width = std::max<size_t>(4, std::to_string(count).size());
  std::vector<std::string> names;
  names.reserve(count);
  for (size_t i = 1; i <= count; ++i) {
    std::string digits = std::to_string(i);
    names.push_back("t" + std::string(width - digits.size(), '0') + digits);
  }
  return names;
}

// The totals of a run, merged over workers: the same fields as one worker's.
using Summary = WorkerResult;

void MergeInto(Summary* summary, WorkerResult&& result) {
  summary->latencies.Merge(result.latencies);
  summary->ok_requests += result.ok_requests;
  summary->failed_requests += result.failed_requests;
  summary->events += result.events;
  summary->connect_failures += result.connect_failures;
  summary->last_completion_ns = std::max(summary->last_completion_ns, result.last_completion_ns);
  for (std::string& sample : result.error_samples) {
    if (summary->error_samples.size() < kMaxErrorSamples) {
      summary->error_samples.push_back(std::move(sample));
    }
  }
  if (summary->fatal.empty()) summary->fatal = std::move(result.fatal);
}

// The share of `total` that worker `index` of `workers` gets.
uint64_t Share(uint64_t total, size_t workers, size_t index) {
  return total / workers + (index < total % workers ? 1 : 0);
}

int Main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  Options o;
  if (!ParseOptions(argc, argv, &o)) return 2;

  std::random_device entropy;
  uint64_t seed = (static_cast<uint64_t>(entropy()) << 32) | entropy();
  Workload workload;
  workload.tenant_names = TenantNames(o.tenants);
  workload.batch = o.batch;
  workload.users = o.users;
  workload.run_id = static_cast<uint32_t>(seed >> 32) ^ static_cast<uint32_t>(seed);

  std::optional<sockaddr_in> address;
  if (o.target != Target::kPostgres) {
    address = Resolve(o.host, o.port);
    if (!address) {
      std::fprintf(stderr, "loadgen: cannot resolve %s\n", o.host.c_str());
      return 2;
    }
    if (!Reachable(*address)) {
      std::fprintf(stderr, "loadgen: nothing answers on %s:%d\n", o.host.c_str(), o.port);
      return 2;
    }
  }

  std::string host_header = o.host + ":" + std::to_string(o.port);
  if (o.target == Target::kFairway) {
    AdminSettings admin;
    admin.address = *address;
    admin.host_header = host_header;
    admin.admin_token = o.admin_token;
    admin.keys_file = o.keys_file;
    std::string error;
    std::optional<std::vector<std::string>> keys =
        ObtainWriteKeys(admin, workload.tenant_names, &error);
    if (!keys) {
      std::fprintf(stderr, "loadgen: %s\n", error.c_str());
      return 2;
    }
    for (const std::string& key : *keys) {
      workload.http_heads.push_back("POST /v1/batch HTTP/1.1\r\nHost: " + host_header +
                                    "\r\nAuthorization: Basic " + Base64Encode(key + ":") +
                                    "\r\nContent-Type: application/json\r\n");
    }
  } else if (o.target == Target::kPostgres) {
    std::string error;
    if (!EnsureActivitiesTable(o.pg_conninfo, &error)) {
      std::fprintf(stderr, "loadgen: PostgreSQL: %s\n", error.c_str());
      return 2;
    }
  }

  size_t workers =
      o.target == Target::kPostgres ? o.connections : std::min(o.threads, o.connections);
  char pacing[64];
  if (o.rate > 0) {
    std::snprintf(pacing, sizeof pacing, "open loop at %.1f requests/s", o.rate);
  } else {
    std::snprintf(pacing, sizeof pacing, "closed loop");
  }
  char length[64];
  if (o.duration > 0) {
    std::snprintf(length, sizeof length, "%.1f s measured", o.duration);
  } else {
    std::snprintf(length, sizeof length, "%llu requests measured",
                  static_cast<unsigned long long>(o.requests));
  }
  const std::string& where = o.target == Target::kPostgres ? o.pg_conninfo : host_header;
  std::fprintf(stderr,
               "loadgen: %s at %s, %zu connections, %zu threads, batch %u, %zu tenants, %s, "
               "%.1f s warm-up, %s\n",
               o.target_name.c_str(), where.c_str(), o.connections, workers, o.batch, o.tenants,
               pacing, o.warmup, length);

  // All workers share one time line; their open-loop schedules interleave.
  int64_t start = NowNs() + 20'000'000;
  RunPlan base;
  base.measure_start_ns = start + static_cast<int64_t>(o.warmup * 1e9);
  base.stop_ns =
      o.duration > 0 ? base.measure_start_ns + static_cast<int64_t>(o.duration * 1e9) : kNever;
  base.request_timeout_ns = static_cast<int64_t>(o.timeout * 1e9);
  base.drain_deadline_ns = base.stop_ns == kNever ? kNever : base.stop_ns + base.request_timeout_ns;
  base.tenant_step = workers;

  std::vector<WorkerResult> results(workers);
  std::vector<std::thread> threads;
  std::vector<std::unique_ptr<EpollWorker>> epoll_workers;
  std::vector<std::unique_ptr<PgWorker>> pg_workers;
  size_t first_connection = 0;
  for (size_t i = 0; i < workers; ++i) {
    size_t connections = Share(o.connections, workers, i);
    RunPlan plan = base;
    plan.first_tenant = i;
    if (o.requests > 0) plan.max_requests = Share(o.requests, workers, i);
    if (o.rate > 0) {
      plan.rate = o.rate * static_cast<double>(connections) / static_cast<double>(o.connections);
      plan.first_send_ns = start + static_cast<int64_t>(static_cast<double>(i) * 1e9 / o.rate);
    }
    auto stream = static_cast<uint16_t>(first_connection);
    if (o.target == Target::kPostgres) {
      pg_workers.push_back(
          std::make_unique<PgWorker>(o.pg_conninfo, workload, stream, seed + i, plan));
    } else {
      EpollWorker::CodecFactory factory;
      if (o.target == Target::kFairway) {
        factory = [&workload, seed](uint16_t s) -> std::unique_ptr<RequestCodec> {
          return std::make_unique<HttpBatchCodec>(workload, s, seed + s);
        };
      } else {
        factory = [&workload, seed](uint16_t s) -> std::unique_ptr<RequestCodec> {
          return std::make_unique<RespPipelineCodec>(workload, s, seed + s);
        };
      }
      epoll_workers.push_back(std::make_unique<EpollWorker>(
          *address, connections, stream, std::move(factory), plan, o.batch, o.tenants));
    }
    first_connection += connections;
  }
  for (size_t i = 0; i < workers; ++i) {
    threads.emplace_back([&, i] {
      results[i] = o.target == Target::kPostgres ? pg_workers[i]->Run() : epoll_workers[i]->Run();
    });
  }
  for (std::thread& t : threads) t.join();

  Summary summary;
  for (WorkerResult& result : results) MergeInto(&summary, std::move(result));
  if (!summary.fatal.empty()) {
    std::fprintf(stderr, "loadgen: %s\n", summary.fatal.c_str());
    return 2;
  }
  summary.latencies.Finish();

  double seconds =
      summary.last_completion_ns > base.measure_start_ns
          ? static_cast<double>(summary.last_completion_ns - base.measure_start_ns) / 1e9
          : o.duration;
  if (seconds <= 0) seconds = 1e-9;
  auto ms = [&](double q) { return static_cast<double>(summary.latencies.Percentile(q)) / 1e6; };
  double events_per_s = static_cast<double>(summary.events) / seconds;
  double requests_per_s = static_cast<double>(summary.ok_requests) / seconds;

  if (!summary.error_samples.empty()) {
    std::fprintf(stderr, "loadgen: first errors:\n");
    for (const std::string& sample : summary.error_samples) {
      std::fprintf(stderr, "  %s\n", sample.c_str());
    }
  }
  if (summary.connect_failures > 0) {
    std::fprintf(stderr, "loadgen: %llu failed connection attempts\n",
                 static_cast<unsigned long long>(summary.connect_failures));
  }
  std::printf(
      "%s: %.0f events/s, %.1f requests/s, p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms, "
      "max %.3f ms, %llu requests of %u events, %llu errors, %.2f s, %zu connections, %s\n",
      o.target_name.c_str(), events_per_s, requests_per_s, ms(0.5), ms(0.99), ms(0.999), ms(1.0),
      static_cast<unsigned long long>(summary.ok_requests), o.batch,
      static_cast<unsigned long long>(summary.failed_requests), seconds, o.connections,
      o.rate > 0 ? "open loop" : "closed loop");
  std::printf(
      "{\"target\":\"%s\",\"events_per_s\":%.1f,\"requests_per_s\":%.2f,\"p50_ms\":%.3f,"
      "\"p99_ms\":%.3f,\"errors\":%llu,\"events\":%llu,\"seconds\":%.3f,\"p999_ms\":%.3f,"
      "\"max_ms\":%.3f,\"requests\":%llu,\"batch\":%u,\"connections\":%zu,\"threads\":%zu,"
      "\"tenants\":%zu,\"rate\":%.2f}\n",
      o.target_name.c_str(), events_per_s, requests_per_s, ms(0.5), ms(0.99),
      static_cast<unsigned long long>(summary.failed_requests),
      static_cast<unsigned long long>(summary.events), seconds, ms(0.999), ms(1.0),
      static_cast<unsigned long long>(summary.ok_requests), o.batch, o.connections, workers,
      o.tenants, o.rate);
  std::fflush(stdout);
  return summary.failed_requests == 0 && summary.ok_requests > 0 ? 0 : 1;
}

}  // namespace
}  // namespace fairway::bench

int main(int argc, char** argv) { return fairway::bench::Main(argc, argv); }
