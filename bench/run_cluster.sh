#!/usr/bin/env bash
# Processing throughput of a cluster of 1, 2 and 3 `fairway serve` nodes on librdkafka's mock
# Kafka cluster, and the time a killed node's slots take to be processed elsewhere
# (bench/README.md, "Cluster benchmark").
#
#   bench/run_cluster.sh                 NODES="1 2 3" TENANTS=8 EVENTS=20000 (per tenant)
#
# The nodes inherit FAIRWAY_* settings from the environment (e.g. FAIRWAY_CLUSTER_SNAPSHOT_KB=1024
# to have slots' restores start from snapshots).
#
# For each node count: fresh mock cluster and data directories; tenants are created throttled
# (processing_rate 1/s), EVENTS activities per tenant are ingested through the nodes in turn,
# then every tenant's throttle is lifted at once and the time until every tenant's `leads` and
# `campaigns` processors have nothing left is measured. With the most nodes, one node is then
# killed (SIGKILL) and the time until the others process all its slots is measured, with the
# state they restored from the changelog and how fast. Everything runs on this machine: the nodes share its
# cores, so per-node efficiency is reported, not scaling.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
die() { echo "run_cluster: $*" >&2; exit 1; }

NODES=${NODES:-"1 2 3"}
TENANTS=${TENANTS:-8}
EVENTS=${EVENTS:-20000}
SLOTS=${SLOTS:-16}
BUILD_DIR=${BUILD_DIR:-build/release}
FAIRWAY_BIN=${FAIRWAY_BIN:-$BUILD_DIR/src/app/fairway}
MOCK_BIN=${MOCK_BIN:-$BUILD_DIR/src/testing/fairway_kafka_mock}
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  cmake --build "$BUILD_DIR" --target fairway fairway_kafka_mock
fi
[[ -x "$FAIRWAY_BIN" && -x "$MOCK_BIN" ]] || die "build fairway and fairway_kafka_mock first"

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do stop_pid "$pid" KILL; done
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
TOKEN=bench-admin-token

# The driver: HTTP through Python's standard library, one JSON line per measurement.
cat > "$WORK/drive.py" <<'PY'
import json, sys, time, urllib.request, urllib.error

TOKEN = "bench-admin-token"

def call(url, method="GET", body=None, auth=None, bearer=TOKEN):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if auth:
        import base64
        req.add_header("Authorization", "Basic " + base64.b64encode((auth + ":").encode()).decode())
    elif bearer:
        req.add_header("Authorization", "Bearer " + bearer)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
        return 0, str(e)

def until(what, fn, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    sys.exit(f"timed out waiting for {what}")

def slots(url):
    s, j = call(url + "/admin/v1/cluster?limit=1")
    return set(j["nodes"][0].get("slots", [])) if s == 200 else set()

def covered(urls, total):
    seen = [slots(u) for u in urls]
    return all(seen) and len(set().union(*seen)) == total

def owner(urls, tenant):
    for u in urls:
        s, j = call(f"{u}/admin/v1/tenants/{tenant}/processing")
        if s == 200:
            return u, j
    return None

def lag(urls, tenants):
    total = 0
    for t in tenants:
        o = owner(urls, t)
        if o is None:
            return None
        total += sum(p["lag_events"] + p["in_flight"] for p in o[1]["processors"])
    return total

def metric(url, name):
    req = urllib.request.Request(url + "/metrics")
    req.add_header("Authorization", "Bearer " + TOKEN)
    total = 0.0
    with urllib.request.urlopen(req, timeout=30) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
    return total

def ingest(urls, keys, events):
    batch = 500
    n = 0
    for start in range(0, events, batch):
        for i, (tenant, key) in enumerate(keys.items()):
            url = urls[(n + i) % len(urls)]
            body = {"batch": [{"type": "track", "userId": f"u{(start + j) % 2000}",
                               "event": "Page Viewed", "messageId": f"{tenant}-{start + j}",
                               "properties": {"path": f"/p/{j % 50}"}}
                              for j in range(min(batch, events - start))]}
            until("an acknowledgement", lambda: call(url + "/v1/batch", "POST", body, auth=key)[0] == 200)
        n += 1

def main():
    cmd, urls = sys.argv[1], sys.argv[2].split(",")
    tenants = [f"t{i}" for i in range(int(sys.argv[3]))]
    if cmd == "setup":
        slots_total, events = int(sys.argv[4]), int(sys.argv[5])
        until("ready nodes", lambda: all(call(u + "/readyz", bearer=None)[0] == 200 for u in urls))
        until("slots spread", lambda: covered(urls, slots_total))
        keys = {}
        for t in tenants:
            s, j = call(urls[0] + "/admin/v1/tenants", "POST",
                        {"id": t, "partitions": 4,
                         "quotas": {"ingest_rate": 1e9, "ingest_burst": 1e9, "processing_rate": 1}})
            assert s == 201, j
            keys[t] = j["write_key"]
        for u in urls:
            for t in tenants:
                until("tenants on every node", lambda: call(f"{u}/admin/v1/tenants/{t}")[0] == 200)
        ingest(urls, keys, events)
        until("every tenant owned", lambda: lag(urls, tenants) is not None)
        json.dump(keys, open(sys.argv[6], "w"))
    elif cmd == "process":
        events = int(sys.argv[4])
        start = time.time()
        for t in tenants:
            s, j = call(f"{urls[0]}/admin/v1/tenants/{t}", "PATCH", {"quotas": {"processing_rate": 0}})
            assert s == 200, j
        until("processing", lambda: lag(urls, tenants) == 0, timeout=1800)
        secs = time.time() - start
        print(json.dumps({"nodes": len(urls), "tenants": len(tenants),
                          "activities": events * len(tenants), "seconds": round(secs, 2),
                          "activities_per_s": round(events * len(tenants) / secs)}))
    elif cmd == "failover":
        # urls[0] is killed by the caller once this prints "kill"; the rest must cover every slot.
        slots_total = int(sys.argv[4])
        survivors = urls[1:]
        print("kill", flush=True)
        sys.stdin.readline()
        start = time.time()
        until("slots moved", lambda: covered(survivors, slots_total), timeout=120)
        secs = time.time() - start
        restored = sum(metric(u, "fairway_cluster_restored_bytes_total") for u in survivors)
        restore_s = sum(metric(u, "fairway_cluster_restore_seconds_sum") for u in survivors)
        from_snapshot = sum(metric(u, 'fairway_cluster_restores_total{from="snapshot"}')
                            for u in survivors)
        written = sum(metric(u, 'fairway_cluster_snapshots_total{outcome="written"}') for u in survivors)
        print(json.dumps({"failover_seconds": round(secs, 2), "restored_bytes": int(restored),
                          "restore_seconds": round(restore_s, 3),
                          "restored_bytes_per_s": round(restored / restore_s) if restore_s else 0,
                          "restores_from_snapshot": int(from_snapshot),
                          "snapshots_by_survivors": int(written)}))

main()
PY

start_cluster() {  # N: starts the mock and N nodes; sets URLS (comma-separated)
  local n=$1
  mkfifo "$WORK/mock.in"
  "$MOCK_BIN" 3 < "$WORK/mock.in" > "$WORK/mock.out" 2> "$WORK/mock.err" &
  PIDS+=($!)
  exec 7> "$WORK/mock.in"
  wait_until 50 "fairway_kafka_mock" "${PIDS[-1]}" test -s "$WORK/mock.out"
  BROKERS=$(head -1 "$WORK/mock.out")
  for topic in "__slots $SLOTS" "__changelog $SLOTS" "__config 1"; do
    echo "create fairway.$topic 3" >&7
  done
  for t in $(seq 0 $((TENANTS - 1))); do echo "create fairway.t$t 4 3" >&7; done
  URLS=""
  for i in $(seq 1 "$n"); do
    local port
    port=$(free_port)
    FAIRWAY_ADMIN_TOKEN=$TOKEN FAIRWAY_LOG_BACKEND=kafka FAIRWAY_KAFKA_BROKERS=$BROKERS \
      FAIRWAY_KAFKA_CREATE_TOPICS=false FAIRWAY_CLUSTER_ENABLED=true FAIRWAY_CLUSTER_SLOTS=$SLOTS \
      FAIRWAY_NODE_ID=n$i FAIRWAY_KAFKA_PROGRESS_INTERVAL_MS=0 FAIRWAY_METRICS_TOKEN=$TOKEN \
      "$FAIRWAY_BIN" serve --data-dir "$WORK/n$i" --listen "127.0.0.1:$port" \
      > "$WORK/n$i.out" 2> "$WORK/n$i.log" &
    PIDS+=($!)
    NODE_PIDS[$i]=$!
    URLS+="${URLS:+,}http://127.0.0.1:$port"
  done
}

stop_cluster() {
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  PIDS=()
  exec 7>&-
  rm -rf "$WORK"/n* "$WORK/mock."*
}

declare -A NODE_PIDS
RESULTS=()
MAX=0
for n in $NODES; do
  start_cluster "$n"
  python3 "$WORK/drive.py" setup "$URLS" "$TENANTS" "$SLOTS" "$EVENTS" "$WORK/keys.json"
  line=$(python3 "$WORK/drive.py" process "$URLS" "$TENANTS" "$EVENTS")
  echo "$line"
  RESULTS+=("$line")
  MAX=$n
  if [[ "$n" == "${NODES##* }" && "$n" -gt 1 ]]; then
    # Failover: node 1 dies; the others restore its slots' state.
    coproc DRIVE { python3 "$WORK/drive.py" failover "$URLS" "$TENANTS" "$SLOTS"; }
    read -r _ <&"${DRIVE[0]}"
    stop_pid "${NODE_PIDS[1]}" KILL
    echo go >&"${DRIVE[1]}"
    read -r failover <&"${DRIVE[0]}"
    echo "$failover"
  fi
  stop_cluster
done

echo
echo "| nodes | activities | seconds | activities/s | per node, vs 1 node |"
echo "|---|---|---|---|---|"
base=""
for line in "${RESULTS[@]}"; do
  python3 - "$line" "$base" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
base = float(sys.argv[2]) if sys.argv[2] else r["activities_per_s"]
eff = r["activities_per_s"] / r["nodes"] / base
print(f"| {r['nodes']} | {r['activities']} | {r['seconds']} | {r['activities_per_s']} | {eff:.2f} |")
PY
  [[ -z "$base" ]] && base=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['activities_per_s'])" "$line")
done
[[ -n "${failover:-}" ]] && echo "failover with $MAX nodes: $failover"
