# Shell helpers shared by the benchmark scripts (sourced, not run). The caller defines
# die MESSAGE (report and exit).

# stop_pid PID [SIGNAL]: signal (TERM by default), wait up to 10 s, then SIGKILL.
stop_pid() {
  local pid=$1 sig=${2:-TERM}
  kill -0 "$pid" 2>/dev/null || return 0
  kill -"$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# free_port: prints a free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_until TRIES DESCRIPTION PID COMMAND...: poll COMMAND every 0.2 s while PID lives.
wait_until() {
  local tries=$1 what=$2 pid=$3
  shift 3
  for _ in $(seq "$tries"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    kill -0 "$pid" 2>/dev/null || die "$what exited during start-up"
    sleep 0.2
  done
  die "$what did not come up"
}
