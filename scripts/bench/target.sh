#!/usr/bin/env bash
# Benchmarks the embedded target (`powertune target`) with wrk on loopback:
#   1. GET /health (no simulated work): the server's own overhead, requests/s and the
#      target's CPU time per request;
#   2. POST /api/v1/auth/login at CONNS and at 4×CONNS connections: the 25-slot pool
#      with ~8 ms queries caps throughput near pool/median, so quadrupling the
#      connections leaves requests/s flat and multiplies latency (queueing), the way a
#      real application saturates.
# Each run is bounded by DURATION. The target's count of answered requests is printed
# beside wrk's. Run it when the machine is quiet (uptime load < ~1.5).
#
#   scripts/bench/target.sh                   # DURATION=10s CONNS=50
#   DURATION=5s CONNS=20 scripts/bench/target.sh
#   POWERTUNE_BIN=target/release/powertune scripts/bench/target.sh   # no rebuild
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-10s}
CONNS=${CONNS:-50}
THREADS=${THREADS:-2}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v wrk >/dev/null 2>&1; then
  echo "==> installing wrk"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends wrk >/dev/null
fi

. scripts/bench/lib.sh
powertune_bin

work=$(mktemp -d)
pid=""
cleanup() {
  stop_pid "$pid"
  rm -rf "$work"
}
trap cleanup EXIT

"$bin" target --listen 127.0.0.1:0 >"$work/target.out" 2>&1 &
pid=$!
base=""
for _ in $(seq 1 100); do
  base=$(sed -n 's/^powertune target serving \(http:[^ ]*\).*/\1/p' "$work/target.out" | head -n 1)
  [ -n "$base" ] && curl -fsS "$base/health" >/dev/null 2>&1 && break
  sleep 0.1
done
[ -n "$base" ] || { echo "the target did not start:"; cat "$work/target.out"; exit 1; }
echo "==> target $base (pid $pid), wrk -t$THREADS, $DURATION per run, load: $(cut -d' ' -f1-3 /proc/loadavg)"

cat >"$work/login.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"email":"bench@example.com","password":"demo"}'
wrk.headers["Content-Type"] = "application/json"
LUA

tck=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
served() {
  curl -fsS "$base/metrics" | awk -v r="$1" '$0 ~ "^powertune_target_requests_total\\{route=\"" r "\"" {s += $2} END {print s + 0}'
}

run() { # name route conns [wrk args...]
  local name=$1 route=$2 conns=$3; shift 3
  local before_cpu before_n out reqs rps p50 p99 after_cpu after_n cpu_us
  before_cpu=$(cpu_ticks); before_n=$(served "$route")
  out=$(wrk -t"$THREADS" -c"$conns" -d"$DURATION" --latency "$@")
  after_cpu=$(cpu_ticks); after_n=$(served "$route")
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  cpu_us=$(awk -v t=$((after_cpu - before_cpu)) -v hz="$tck" -v n="$reqs" 'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "-" }')
  printf '%-22s conns=%-4s req/s=%-10s p50=%-9s p99=%-9s non2xx=%-6s target_cpu_us/req=%-6s wrk_reqs=%s target_counted=%s\n' \
    "$name" "$conns" "$rps" "$p50" "$p99" "${non2xx:-0}" "$cpu_us" "$reqs" "$((after_n - before_n))"
}

run "GET /health" "/health" "$CONNS" "$base/health"
run "POST login" "/api/v1/auth/login" "$CONNS" -s "$work/login.lua" "$base/api/v1/auth/login"
run "POST login (4x conns)" "/api/v1/auth/login" $((CONNS * 4)) -s "$work/login.lua" "$base/api/v1/auth/login"
echo "target peak RSS: $(awk '/VmHWM/ {print $2, $3}' "/proc/$pid/status")"
curl -fsS "$base/metrics" | grep -E '^powertune_target_db_pool_(waiting_max|timeouts_total|size) '
