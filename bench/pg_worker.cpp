#include "pg_worker.h"

#include <time.h>

#include <algorithm>
#include <cerrno>

namespace fairway::bench {
namespace {

constexpr char kCopySql[] = "COPY activities (tenant, message_id, user_id, ts, body) FROM STDIN";
constexpr char kCreateTableSql[] =
    "CREATE TABLE IF NOT EXISTS activities ("
    "tenant text, message_id text, user_id text, ts timestamptz, body jsonb)";

void SleepUntil(int64_t deadline_ns) {
  timespec ts{};
  ts.tv_sec = deadline_ns / kNanosPerSecond;
  ts.tv_nsec = deadline_ns % kNanosPerSecond;
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
  }
}

std::string TrimmedError(const char* message) {
  std::string text = message == nullptr ? "" : message;
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

}  // namespace

PgWorker::PgWorker(std::string conninfo, const Workload& workload, uint16_t stream, uint64_t seed,
                   RunPlan plan)
    : conninfo_(std::move(conninfo)),
      workload_(workload),
      plan_(plan),
      rows_(workload.tenant_names.empty() ? 0 : workload.tenant_names[0].size()),
      source_(workload.run_id, stream, workload.users, seed) {
  // One text-format row per event: tenant, message_id, user_id, ts, body.
  for (uint32_t i = 0; i < workload.batch; ++i) {
    rows_.AppendSlot(Field::kTenant, i);
    rows_.Append("\t");
    rows_.AppendSlot(Field::kMessageId, i);
    rows_.Append("\t");
    rows_.AppendSlot(Field::kUserId, i);
    rows_.Append("\t");
    rows_.AppendSlot(Field::kTimestamp, i);
    rows_.Append("\t");
    rows_.SetCopyEscaping(true);
    EventShape(EventVariant(stream, i)).AppendTo(&rows_, i);
    rows_.SetCopyEscaping(false);
    rows_.Append("\n");
  }
}

WorkerResult PgWorker::Run() {
  WorkerResult result;
  PGconn* conn = PQconnectdb(conninfo_.c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    result.fatal = "connecting to PostgreSQL: " + TrimmedError(PQerrorMessage(conn));
    PQfinish(conn);
    return result;
  }

  IntentSchedule schedule(plan_.first_send_ns, plan_.rate);
  uint64_t planned_measured = 0;
  size_t tenant = plan_.first_tenant % workload_.tenant_names.size();
  auto limit_reached = [&] { return planned_measured >= plan_.max_requests; };
  for (;;) {
    int64_t now = NowNs();
    int64_t intended = now;
    if (plan_.rate <= 0) {
      if (now >= plan_.stop_ns || limit_reached()) break;
    } else {
      intended = schedule.next_ns();
      if (intended >= plan_.stop_ns || limit_reached()) break;
      if (intended > now) {
        SleepUntil(intended);
        now = NowNs();
      }
    }
    if (now >= plan_.drain_deadline_ns) {
      // Open loop fell behind by more than the drain allowance: the rest fail.
      uint64_t abandoned = 0;
      for (; schedule.next_ns() < plan_.stop_ns && !limit_reached(); schedule.Advance()) {
        if (schedule.next_ns() >= plan_.measure_start_ns) {
          ++abandoned;
          ++planned_measured;
        }
      }
      result.failed_requests += abandoned;
      result.AddErrorSample(std::to_string(abandoned) + " requests unsent at the drain deadline");
      break;
    }
    if (plan_.rate > 0) schedule.Advance();
    bool measured = intended >= plan_.measure_start_ns;
    if (measured) ++planned_measured;

    rows_.Fill(workload_.tenant_names[tenant], timestamps_.Now(), source_);
    tenant = (tenant + plan_.tenant_step) % workload_.tenant_names.size();
    std::string error;
    bool ok = CopyBatch(conn, &error);
    int64_t done = NowNs();
    if (!ok) result.AddErrorSample(error);
    if (measured) {
      if (ok) {
        ++result.ok_requests;
        result.events += workload_.batch;
        result.latencies.Record(done - intended);
      } else {
        ++result.failed_requests;
      }
      result.last_completion_ns = std::max(result.last_completion_ns, done);
    }
    if (PQstatus(conn) != CONNECTION_OK) PQreset(conn);
  }
  PQfinish(conn);
  return result;
}

bool PgWorker::CopyBatch(PGconn* conn, std::string* error) {
  PGresult* res = PQexec(conn, kCopySql);
  if (PQresultStatus(res) != PGRES_COPY_IN) {
    *error = TrimmedError(res != nullptr ? PQresultErrorMessage(res) : PQerrorMessage(conn));
    PQclear(res);
    return false;
  }
  PQclear(res);
  std::string_view data = rows_.bytes();
  bool ok = true;
  if (PQputCopyData(conn, data.data(), static_cast<int>(data.size())) != 1 ||
      PQputCopyEnd(conn, nullptr) != 1) {
    *error = TrimmedError(PQerrorMessage(conn));
    ok = false;
  }
  while ((res = PQgetResult(conn)) != nullptr) {
    if (PQresultStatus(res) != PGRES_COMMAND_OK && ok) {
      *error = TrimmedError(PQresultErrorMessage(res));
      ok = false;
    }
    PQclear(res);
  }
  return ok;
}

bool EnsureActivitiesTable(const std::string& conninfo, std::string* error) {
  PGconn* conn = PQconnectdb(conninfo.c_str());
  bool ok = PQstatus(conn) == CONNECTION_OK;
  if (!ok) {
    *error = TrimmedError(PQerrorMessage(conn));
  } else {
    PQsetNoticeProcessor(
        conn, [](void*, const char*) {}, nullptr);  // "already exists" notice
    PGresult* res = PQexec(conn, kCreateTableSql);
    ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok) *error = TrimmedError(PQresultErrorMessage(res));
    PQclear(res);
  }
  PQfinish(conn);
  return ok;
}

}  // namespace fairway::bench
