#pragma once
// PostgreSQL target: batches loaded with COPY FROM STDIN over libpq.

#include <libpq-fe.h>

#include <cstdint>
#include <string>

#include "batch_template.h"
#include "run_plan.h"

namespace fairway::bench {

// One thread with one blocking libpq connection. Each request is one
// `COPY activities (tenant, message_id, user_id, ts, body) FROM STDIN` of `batch` rows in text
// format, which PostgreSQL runs as its own transaction and commits (with
// synchronous_commit on, the commit waits for the WAL flush) before answering.
class PgWorker {
 public:
  PgWorker(std::string conninfo, const Workload& workload, uint16_t stream, uint64_t seed,
           RunPlan plan);

  WorkerResult Run();

 private:
  // Sends the filled template as one COPY; false with *error set when it did not commit.
  bool CopyBatch(PGconn* conn, std::string* error);

  std::string conninfo_;
  const Workload& workload_;
  RunPlan plan_;
  BatchTemplate rows_;
  FieldSource source_;
  TimestampClock timestamps_;
};

// Creates the table the PostgreSQL target loads into, if it does not exist.
bool EnsureActivitiesTable(const std::string& conninfo, std::string* error);

}  // namespace fairway::bench
