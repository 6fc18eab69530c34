#!/usr/bin/env bash
# Overload benchmark: one tenant floods a real fairway server with many connections while a
# well-behaved tenant sends at a modest rate. Reports the good tenant's success rate and p99
# under the flood against its baseline measured alone in the same run, how the flood was
# refused, and the server's peak RSS. See bench/README.md ("Overload").
#
# Environment overrides:
#   FLOOD_CONNECTIONS=1200  flooding connections (closed loop)   FLOOD_BATCH=100  its batch
#   GOOD_RATE=50            good tenant's requests/s (open loop)  GOOD_BATCH=10    its batch
#   GOOD_CONNECTIONS=8      good tenant's connections             DURATION=15      measured s
#   SKIP_BUILD=1            use the binaries already in build/release
set -euo pipefail

FLOOD_CONNECTIONS=${FLOOD_CONNECTIONS:-1200}
FLOOD_BATCH=${FLOOD_BATCH:-100}
GOOD_RATE=${GOOD_RATE:-50}
GOOD_BATCH=${GOOD_BATCH:-10}
GOOD_CONNECTIONS=${GOOD_CONNECTIONS:-8}
DURATION=${DURATION:-15}
WARMUP=2

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
FAIRWAY_BIN=${FAIRWAY_BIN:-build/release/src/app/fairway}
LOADGEN_BIN=build/release/bench/fairway_loadgen
RUN_LIMIT=$((WARMUP + DURATION + 60))

log() { echo "run_overload: $*" >&2; }
die() {
  log "$*"
  [[ -f "${TMP:-/nonexistent}/fairway.log" ]] && tail -n 20 "$TMP/fairway.log" >&2
  exit 1
}

scripts/bootstrap bench
if [[ -z ${SKIP_BUILD:-} ]]; then
  [[ -f build/release/build.ninja ]] || cmake --preset release
  nice -n 10 cmake --build --preset release --target fairway fairway_loadgen
fi
[[ -x $LOADGEN_BIN ]] || die "$LOADGEN_BIN was not built (is libpq-dev installed?)"
# The flood needs a descriptor per connection, in the load generator and in the server.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# shellcheck source=bench/lib.sh
source bench/lib.sh
TMP=$(mktemp -d)
PIDS=()
cleanup() {
  trap - EXIT INT TERM
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port=$(free_port)
token=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
log "starting fairway on 127.0.0.1:$port"
FAIRWAY_ADMIN_TOKEN=$token "$FAIRWAY_BIN" serve --data-dir "$TMP/fairway" \
  --listen "127.0.0.1:$port" >"$TMP/fairway.log" 2>&1 &
fairway_pid=$!
PIDS+=("$fairway_pid")
wait_until 150 fairway "$fairway_pid" curl -sf --max-time 2 -o /dev/null "http://127.0.0.1:$port/readyz"

# Two tenants with ingest quotas out of the way: what protects the good tenant here is the
# per-tenant share of the ingest queue, not the rate limit.
for t in flood good; do
  body='{"id":"'$t'","quotas":{"ingest_rate":100000000,"ingest_burst":100000000}}'
  key=$(curl -s --max-time 10 -H "Authorization: Bearer $token" -d "$body" \
    "http://127.0.0.1:$port/admin/v1/tenants" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["write_key"])') ||
    die "cannot create tenant $t"
  # The load generator names its single tenant t0001; the key decides the real tenant.
  echo "t0001 $key" >"$TMP/keys-$t.txt"
done

# run LABEL ARGS...: one load-generator run in the background; its output in $TMP/LABEL.out.
run() {
  local label=$1
  shift
  timeout --kill-after=10 "$RUN_LIMIT" "$LOADGEN_BIN" --target fairway --port "$port" \
    --admin-token "$token" --tenants 1 --warmup "$WARMUP" --timeout 30 "$@" >"$TMP/$label.out" 2>&1 &
  PIDS+=("$!")
}
good_args=(--connections "$GOOD_CONNECTIONS" --batch "$GOOD_BATCH" --rate "$GOOD_RATE"
  --duration "$DURATION" --keys-file "$TMP/keys-good.txt")

log "baseline: the good tenant alone, $GOOD_RATE requests/s of $GOOD_BATCH events"
run baseline "${good_args[@]}"
wait "${PIDS[-1]}" || true

log "overload: $FLOOD_CONNECTIONS flooding connections (batches of $FLOOD_BATCH) plus the good tenant"
run flood --connections "$FLOOD_CONNECTIONS" --batch "$FLOOD_BATCH" \
  --duration "$((DURATION + 4))" --keys-file "$TMP/keys-flood.txt"
flood_pid=${PIDS[-1]}
sleep 2  # the flood is at full strength before the good tenant's measured requests start
run overload "${good_args[@]}"
wait "${PIDS[-1]}" || true
wait "$flood_pid" || true
hwm_kb=$(awk '/^VmHWM/ {print $2}' "/proc/$fairway_pid/status")
accept_lines=$(grep -c "accept failed" "$TMP/fairway.log" || true)

python3 - "$TMP" "$hwm_kb" "$accept_lines" <<'PYEOF'
import json, sys
tmp, hwm_kb, accept_lines = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def result(label):
    lines = [l for l in open(f"{tmp}/{label}.out") if l.startswith("{")]
    if not lines:
        sys.exit(f"no result from the {label} run:\n" + open(f"{tmp}/{label}.out").read())
    return json.loads(lines[-1])
base, over, flood = result("baseline"), result("overload"), result("flood")
# "requests" counts the answered 200s, "errors" everything else (refusals, time-outs).
def ok_rate(r):
    return 100.0 * r["requests"] / max(1, r["requests"] + r["errors"])
print()
print("%-34s %9s %9s %9s %9s" % ("run", "requests", "success%", "p50 ms", "p99 ms"))
for name, r in (("good tenant alone (baseline)", base), ("good tenant under the flood", over),
                ("flooding tenant", flood)):
    print("%-34s %9d %9.2f %9.2f %9.2f" % (name, r["requests"] + r["errors"], ok_rate(r),
                                           r["p50_ms"], r["p99_ms"]))
ratio = over["p99_ms"] / base["p99_ms"] if base["p99_ms"] > 0 else float("nan")
print()
print("good tenant under the flood: success %.2f %%, p99 %.2f ms = %.2fx its baseline" %
      (ok_rate(over), over["p99_ms"], ratio))
print("flood: %.0f events/s stored, %d of %d requests refused" %
      (flood["events_per_s"], flood["errors"], flood["requests"] + flood["errors"]))
print("server peak RSS (VmHWM): %.1f MiB; 'accept failed' log lines: %d" % (hwm_kb / 1024, accept_lines))
print(json.dumps({"scenario": "overload", "good_success_pct": round(ok_rate(over), 2),
                  "good_p99_ms": over["p99_ms"], "baseline_p99_ms": base["p99_ms"],
                  "p99_ratio": round(ratio, 2), "flood_requests": flood["requests"] + flood["errors"],
                  "flood_refused": flood["errors"], "peak_rss_mib": round(hwm_kb / 1024, 1)}))
PYEOF
