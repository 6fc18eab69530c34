#!/usr/bin/env bash
# Ingest benchmark in one command: Fairway against Redis (AOF, appendfsync always) and
# PostgreSQL (COPY, synchronous_commit on), all on this machine, each durable before it answers.
# See bench/README.md.
#
# Environment overrides:
#   DURATION=20      measured seconds per run        CONNECTIONS=32   concurrent connections
#   TENANTS=1000     tenants the requests cycle over  BATCH=100        events per request
#   WARMUP=2         unmeasured seconds before each  THREADS=1        loadgen event-loop threads
#   SUSTAIN_SECONDS=30  length of each run that looks for the rate processing keeps up with
#   SUSTAIN_RUNS=3      how many such runs (a bisection; 0 skips it)
#   TARGETS="fairway fairway-kafka redis postgres"   which targets to run
#   SKIP_BUILD=1     use the binaries already in build/release
#   FAIRWAY_BIN=...  server binary to benchmark (default build/release/src/app/fairway)
set -euo pipefail

DURATION=${DURATION:-20}
TENANTS=${TENANTS:-1000}
CONNECTIONS=${CONNECTIONS:-32}
BATCH=${BATCH:-100}
WARMUP=${WARMUP:-2}
THREADS=${THREADS:-1}
SUSTAIN_SECONDS=${SUSTAIN_SECONDS:-30}
SUSTAIN_RUNS=${SUSTAIN_RUNS:-3}
TARGETS=${TARGETS:-"fairway fairway-kafka redis postgres"}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
FAIRWAY_BIN=${FAIRWAY_BIN:-build/release/src/app/fairway}
KAFKA_MOCK_BIN=${KAFKA_MOCK_BIN:-build/release/src/testing/fairway_kafka_mock}
LOADGEN_BIN=build/release/bench/fairway_loadgen
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
# Bound on any single loadgen run: warm-up, measurement, drain allowance, tenant setup.
RUN_LIMIT=$((WARMUP + DURATION + 120))

log() { echo "run_ingest: $*" >&2; }
die() {  # message, then the end of every server log (the scratch dir is removed on exit)
  log "$*"
  local f
  for f in "${TMP:-/nonexistent}"/*.log; do
    [[ -f $f ]] || continue
    log "--- last lines of $(basename "$f")"
    tail -n 20 "$f" >&2
  done
  exit 1
}
wants() { [[ " $TARGETS " == *" $1 "* ]]; }

# --- dependencies and build -------------------------------------------------------------
scripts/bootstrap bench
if [[ -z ${SKIP_BUILD:-} ]]; then
  [[ -f build/release/build.ninja ]] || cmake --preset release
  build_targets=(fairway_loadgen)
  if wants fairway || wants fairway-kafka; then build_targets+=(fairway); fi
  if wants fairway-kafka; then build_targets+=(fairway_kafka_mock); fi
  nice -n 10 cmake --build --preset release --target "${build_targets[@]}"
fi
[[ -x $LOADGEN_BIN ]] || die "$LOADGEN_BIN was not built (is libpq-dev installed?)"

# --- scratch space and cleanup ----------------------------------------------------------
# shellcheck source=bench/lib.sh
source bench/lib.sh
TMP=$(mktemp -d)
PIDS=()
stop_postgres() {  # fast shutdown of the postmaster, then of the process that started it
  if [[ -f "$TMP/pg/data/postmaster.pid" ]]; then
    stop_pid "$(head -1 "$TMP/pg/data/postmaster.pid")" INT
  fi
}
cleanup() {  # newest first: load generators before the servers they load
  trap - EXIT INT TERM
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    if [[ ${PIDS[i]} == "${PG_PID:-}" ]]; then stop_postgres; fi
    stop_pid "${PIDS[i]}"
  done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

RESULTS=$TMP/results.jsonl
: >"$RESULTS"
# loadgen LABEL ARGS...: one run; its JSON line goes to the results with the label added.
loadgen() {
  local label=$1
  shift
  local out=$TMP/loadgen-$label.out rc=0
  # In the background so that an interrupt reaches the trap (and kills it) at once.
  timeout --kill-after=10 "$RUN_LIMIT" "$LOADGEN_BIN" --duration "$DURATION" --warmup "$WARMUP" \
    --connections "$CONNECTIONS" --tenants "$TENANTS" --batch "$BATCH" --threads "$THREADS" \
    "$@" >"$out" &
  local pid=$!
  PIDS+=("$pid")
  wait "$pid" || rc=$?
  cat "$out"
  if [[ $rc -ne 0 && $rc -ne 1 ]]; then die "loadgen for $label failed (exit $rc)"; fi
  python3 - "$label" "$out" >>"$RESULTS" <<'EOF'
import json, sys
label, path = sys.argv[1], sys.argv[2]
lines = [l for l in open(path) if l.startswith("{")]
row = json.loads(lines[-1])
row["label"] = label
print(json.dumps(row))
EOF
}

# ready: the Fairway server on $port answers /readyz with 200.
ready() {
  [[ $(curl -s --max-time 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz") == 200 ]]
}

# --- Fairway ----------------------------------------------------------------------------
if wants fairway; then
  [[ -x $FAIRWAY_BIN ]] || die "$FAIRWAY_BIN was not built"
  port=$(free_port)
  token=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
  log "starting fairway on 127.0.0.1:$port"
  FAIRWAY_ADMIN_TOKEN=$token "$FAIRWAY_BIN" serve --data-dir "$TMP/fairway" \
    --listen "127.0.0.1:$port" >"$TMP/fairway.log" 2>&1 &
  fairway_pid=$!
  PIDS+=("$fairway_pid")
  wait_until 150 fairway "$fairway_pid" ready
  # engine_lag: the total lag of every tenant's processors and the largest lag in seconds,
  # "<events> events, <seconds> s" (exit status 1 when /metrics does not answer in 30 s).
  engine_lag() {
    local body
    body=$(curl -sf --max-time 30 "http://127.0.0.1:$port/metrics") || return 1
    python3 -c '
import sys
events = seconds = 0.0
for line in sys.stdin:
    if line.startswith("fairway_engine_lag_events{"):
        events += float(line.rsplit(" ", 1)[1])
    elif line.startswith("fairway_engine_lag_seconds{"):
        seconds = max(seconds, float(line.rsplit(" ", 1)[1]))
print("%d events, %.2f s" % (events, seconds))' <<<"$body"
  }
  # lag_below N events|seconds [LAG]: true when LAG (default: read now) is below N events in
  # total, or N seconds at most; N = 0 means none at all.
  lag_below() {
    local lag=${3:-}
    if [[ -z $lag ]]; then lag=$(engine_lag) || return 1; fi
    python3 -c '
import sys
events, seconds = float(sys.argv[1].split()[0]), float(sys.argv[1].split()[2])
n, unit = float(sys.argv[2]), sys.argv[3]
v = events if unit == "events" else seconds
sys.exit(0 if (v == 0 if n == 0 else v < n) else 1)' "$lag" "$1" "$2"
  }

  log "fairway: closed loop, full speed"
  loadgen fairway --target fairway --port "$port" --admin-token "$token" \
    --keys-file "$TMP/keys.txt"
  half=$(python3 -c 'import json, sys; r = [json.loads(l) for l in open(sys.argv[1])]; print("%.2f" % (r[-1]["requests_per_s"] / 2))' "$RESULTS")
  if python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) > 0 else 1)' "$half"; then
    log "fairway: open loop at $half requests/s (half the full-speed throughput)"
    loadgen fairway-half --target fairway --port "$port" --admin-token "$token" \
      --keys-file "$TMP/keys.txt" --rate "$half"
  else
    log "fairway: no throughput at full speed, skipping the half-load run"
  fi

  # The rate at which processing keeps up: open-loop runs of SUSTAIN_SECONDS, each starting
  # with nothing to process, that end with every processor less than a second behind. A
  # bisection between 0 and the acknowledgement-only rate, SUSTAIN_RUNS runs.
  full=$(python3 -c 'import json, sys; r = [json.loads(l) for l in open(sys.argv[1]) if json.loads(l)["label"] == "fairway"]; print("%.2f" % r[-1]["requests_per_s"])' "$RESULTS")
  lo=0 hi=$full rate=$(python3 -c "print('%.2f' % ($full / 2))")
  for ((run = 1; run <= SUSTAIN_RUNS; run++)); do
    wait_until 1500 "fairway processing to catch up" "$fairway_pid" lag_below 0 events
    log "fairway: processing keeps up at $rate requests/s? (run $run of $SUSTAIN_RUNS)"
    DURATION=$SUSTAIN_SECONDS loadgen "sustain-$run" --target fairway --port "$port" \
      --admin-token "$token" --keys-file "$TMP/keys.txt" --rate "$rate"
    # One reading decides (and is reported); no answer from /metrics counts as behind.
    lag=$(engine_lag) || lag="no answer from /metrics"
    if [[ $lag != no* ]] && lag_below 1 seconds "$lag"; then
      lo=$rate keeps=yes
    else
      hi=$rate keeps=no
    fi
    log "fairway: at $rate requests/s processing $( [[ $keeps == yes ]] && echo kept up || echo fell behind) ($lag)"
    python3 - "$RESULTS" "sustain-$run" "$keeps" "$lag" <<'EOF2'
import json, sys
path, label, keeps, lag = sys.argv[1:]
rows = [json.loads(l) for l in open(path) if l.strip()]
for r in rows:
    if r["label"] == label:
        r["kept_up"] = keeps == "yes"
        r["lag_at_end"] = lag
open(path, "w").write("".join(json.dumps(r) + "\n" for r in rows))
EOF2
    rate=$(python3 -c "print('%.2f' % (($lo + $hi) / 2))")
  done
  stop_pid "$fairway_pid"
fi

# --- Fairway on the Kafka backend -------------------------------------------------------
# Against librdkafka's mock cluster (3 brokers in one process, records kept in memory, no
# fsync): what the Kafka client path costs the server, not what a real cluster can take.
if wants fairway-kafka; then
  [[ -x $FAIRWAY_BIN ]] || die "$FAIRWAY_BIN was not built"
  [[ -x $KAFKA_MOCK_BIN ]] || die "$KAFKA_MOCK_BIN was not built"
  mkdir -p "$TMP/kafka"
  mkfifo "$TMP/kafka/in"
  "$KAFKA_MOCK_BIN" 3 <"$TMP/kafka/in" >"$TMP/kafka/out" 2>"$TMP/kafka-mock.log" &
  mock_pid=$!
  PIDS+=("$mock_pid")
  exec {mock_in}>"$TMP/kafka/in"
  has_bootstrap() { [[ -s $TMP/kafka/out ]]; }
  wait_until 100 "the mock Kafka cluster" "$mock_pid" has_bootstrap
  bootstrap=$(head -1 "$TMP/kafka/out")
  # The mock has no CreateTopics: the tenants' topics are created as an operator would.
  width=$(( ${#TENANTS} > 4 ? ${#TENANTS} : 4 ))
  for ((i = 1; i <= TENANTS; i++)); do
    printf 'create fairway.t%0*d 4 3\n' "$width" "$i" >&"$mock_in"
  done
  topics_created() { [[ $(grep -c '^ok' "$TMP/kafka/out") -ge $TENANTS ]]; }
  wait_until 1500 "the tenants' topics" "$mock_pid" topics_created  # about 60 ms a topic
  grep -q '^error' "$TMP/kafka/out" && die "creating topics: $(grep -m1 '^error' "$TMP/kafka/out")"
  port=$(free_port)
  token=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
  log "starting fairway on the Kafka backend ($bootstrap) on 127.0.0.1:$port"
  FAIRWAY_ADMIN_TOKEN=$token FAIRWAY_LOG_BACKEND=kafka FAIRWAY_KAFKA_BROKERS=$bootstrap \
    FAIRWAY_KAFKA_CREATE_TOPICS=false "$FAIRWAY_BIN" serve --data-dir "$TMP/fairway-kafka" \
    --listen "127.0.0.1:$port" >"$TMP/fairway-kafka.log" 2>&1 &
  fairway_kafka_pid=$!
  PIDS+=("$fairway_kafka_pid")
  wait_until 150 fairway "$fairway_kafka_pid" ready
  log "fairway-kafka: closed loop, full speed"
  loadgen fairway-kafka --target fairway --port "$port" --admin-token "$token" \
    --keys-file "$TMP/keys-kafka.txt"
  stop_pid "$fairway_kafka_pid"
  exec {mock_in}>&-
  stop_pid "$mock_pid"
fi

# --- Redis ------------------------------------------------------------------------------
if wants redis; then
  port=$(free_port)
  mkdir -p "$TMP/redis"
  log "starting redis-server on 127.0.0.1:$port (appendonly yes, appendfsync always)"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$TMP/redis" --appendonly yes \
    --appendfsync always --save '' --logfile "$TMP/redis.log" &
  redis_pid=$!
  PIDS+=("$redis_pid")
  wait_until 100 redis-server "$redis_pid" timeout 2 redis-cli -p "$port" ping
  loadgen redis --target redis --port "$port"
  stop_pid "$redis_pid"
fi

# --- PostgreSQL -------------------------------------------------------------------------
if wants postgres; then
  port=$(free_port)
  mkdir -p "$TMP/pg"
  as_pg=()
  if [[ $(id -u) -eq 0 ]]; then
    # PostgreSQL refuses to run as root: hand it the directory and run it as postgres.
    chmod o+x "$TMP"
    chown postgres "$TMP/pg"
    as_pg=(runuser -u postgres --)
  fi
  log "initialising PostgreSQL in $TMP/pg"
  "${as_pg[@]}" "$PG_BIN/initdb" -D "$TMP/pg/data" -U postgres --auth=trust -E UTF8 \
    --no-locale --no-sync >"$TMP/initdb.log" 2>&1 || die "initdb failed"
  log "starting PostgreSQL on 127.0.0.1:$port (fsync on, synchronous_commit on)"
  "${as_pg[@]}" "$PG_BIN/postgres" -D "$TMP/pg/data" -k "$TMP/pg" -p "$port" \
    -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on \
    -c max_connections=$((CONNECTIONS + 20)) >"$TMP/postgres.log" 2>&1 &
  PG_PID=$!
  PIDS+=("$PG_PID")
  wait_until 150 PostgreSQL "$PG_PID" "$PG_BIN/pg_isready" -h 127.0.0.1 -p "$port"
  timeout 30 psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres -c \
    "CREATE TABLE activities (tenant text, message_id text, user_id text, ts timestamptz, body jsonb)"
  loadgen postgres --target postgres \
    --pg-conninfo "host=127.0.0.1 port=$port user=postgres dbname=postgres"
  stop_postgres
fi

# --- Summary ----------------------------------------------------------------------------
echo
python3 - "$RESULTS" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
names = {"fairway": "Fairway (ack only)", "fairway-half": "Fairway (half load)",
         "fairway-kafka": "Fairway on Kafka (ack only)",
         "redis": "Redis AOF fsync always", "postgres": "PostgreSQL COPY"}
print("%-30s %12s %10s %10s %8s  %s" % ("target", "events/s", "p50 ms", "p99 ms", "errors", "processing"))
for r in rows:
    label = names.get(r["label"], r["label"])
    if r["label"].startswith("sustain-"):
        label = "Fairway (open loop, run %s)" % r["label"][8:]
    kept = ""
    if "kept_up" in r:
        kept = ("kept up" if r["kept_up"] else "fell behind") + " (" + r["lag_at_end"] + ")"
    print("%-30s %12.0f %10.2f %10.2f %8d  %s" % (label, r["events_per_s"], r["p50_ms"],
          r["p99_ms"], r["errors"], kept))
by = {r["label"]: r for r in rows}
fw = by.get("fairway")
kept = [r for r in rows if r.get("kept_up")]
sustained = max(kept, key=lambda r: r["events_per_s"]) if kept else None
for peer, name in (("redis", "Redis"), ("postgres", "PostgreSQL")):
    if peer in by and by[peer]["events_per_s"] > 0:
        if fw:
            print("Fairway ack-only / %s: %.2fx" % (name, fw["events_per_s"] / by[peer]["events_per_s"]))
        if sustained:
            print("Fairway with processing keeping up / %s: %.2fx" %
                  (name, sustained["events_per_s"] / by[peer]["events_per_s"]))
if fw and "fairway-kafka" in by and fw["events_per_s"] > 0:
    print("Fairway ack-only, Kafka backend (mock cluster) / embedded: %.2fx" %
          (by["fairway-kafka"]["events_per_s"] / fw["events_per_s"]))
if fw and any("kept_up" in r for r in rows) and not sustained:
    print("Processing kept up in none of the open-loop runs")
print()
print("JSON lines:")
for r in rows:
    print(json.dumps(r))
EOF
