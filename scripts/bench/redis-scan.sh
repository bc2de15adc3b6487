#!/usr/bin/env bash
# Benchmark: `powertune redis keys` vs `redis-cli --memkeys` on the same private Redis,
# and `powertune queues` on many queues / many jobs (round trips must not grow with jobs).
#
#   scripts/bench/redis-scan.sh                 # 1,000,000 keys; 100 queues × 10,000 jobs
#   KEYS=200000 QUEUES=100 JOBS=2000 scripts/bench/redis-scan.sh   # a modest size
#
# Everything runs on loopback: a private redis-server on a free port, deleted afterwards.
# Peer tool: redis-cli (Debian package redis-tools / redis-server; installed if missing).
# POWERTUNE=path/to/powertune to use an existing binary (default: cargo build --release).
# Prints wall time and the server CPU (used_cpu_sys + used_cpu_user from INFO) each run
# cost, and the machine's load average.
set -euo pipefail
cd "$(dirname "$0")/../.."
KEYS=${KEYS:-1000000}
QUEUES=${QUEUES:-100}
JOBS=${JOBS:-10000}   # per queue

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends redis-server >/dev/null
fi
if [ -z "${POWERTUNE:-}" ]; then
  cargo build --release -q -p powertune
  POWERTUNE=target/release/powertune
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
  --enable-debug-command local >/dev/null 2>&1 &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
for _ in $(seq 1 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
cli() { redis-cli -p "$port" "$@"; }

cpu() { cli info cpu | awk -F: '/^used_cpu_(sys|user):/ {s+=$2} END {printf "%.2f", s}'; }
timed() { # label, command...
  local label=$1; shift
  local c0 t0 t1 c1
  c0=$(cpu); t0=$(date +%s.%N)
  "$@" >/dev/null 2>&1 || true
  t1=$(date +%s.%N); c1=$(cpu)
  printf '%-34s wall %7.2f s   server CPU %6.2f s\n' "$label" "$(echo "$t1 - $t0" | bc)" "$(echo "$c1 - $c0" | bc)"
}

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== key scan: $KEYS keys (db0)"
# Five prefixes; a fifth of the keys carry a TTL.
per=$((KEYS / 5))
for p in cache:user_session cache:user_profile legacy:item views:page stats:counter; do
  cli debug populate "$per" "$p" 64 >/dev/null
done
cli --scan --pattern 'cache:user_session:*' | head -n "$per" | awk '{print "EXPIRE " $1 " 3600"}' | cli --pipe >/dev/null
echo "dbsize: $(cli dbsize)"
timed "redis-cli --memkeys" cli --memkeys
timed "powertune redis keys" "$POWERTUNE" redis keys --url "redis://127.0.0.1:$port/0" --count 1000
timed "powertune redis keys --sample 100000" "$POWERTUNE" redis keys --url "redis://127.0.0.1:$port/0" --sample 100000
/usr/bin/time -f "powertune redis keys max RSS %M KB" "$POWERTUNE" redis keys --url "redis://127.0.0.1:$port/0" >/dev/null 2>"$dir/time" || true
tail -n 1 "$dir/time"

echo "== queues: $QUEUES queues × $JOBS jobs (db1)"
cli -n 1 eval "
local now = redis.call('TIME')[1]
for q = 1, $QUEUES do
  local name = 'q' .. q
  redis.call('SADD', 'queues', name)
  local batch = {}
  for j = 1, $JOBS do
    batch[#batch + 1] = '{\"class\":\"BenchJob\",\"queue\":\"' .. name .. '\",\"jid\":\"' .. q .. '-' .. j .. '\",\"enqueued_at\":' .. (now - j) .. '.5}'
    if #batch == 1000 then redis.call('LPUSH', 'queue:' .. name, unpack(batch)); batch = {} end
  end
  if #batch > 0 then redis.call('LPUSH', 'queue:' .. name, unpack(batch)) end
end
redis.call('SET', 'stat:processed', 1000000)
return 0" 0 >/dev/null
echo "jobs: $(cli -n 1 eval "local n=0 for _,q in ipairs(redis.call('SMEMBERS','queues')) do n=n+redis.call('LLEN','queue:'..q) end return n" 0)"
c0=$(cli info stats | awk -F: '/^total_commands_processed:/ {print $2+0}')
timed "powertune queues" "$POWERTUNE" queues --url "redis://127.0.0.1:$port/1"
c1=$(cli info stats | awk -F: '/^total_commands_processed:/ {print $2+0}')
echo "commands the server processed during 'powertune queues': $((c1 - c0 - 2)) (INFO calls excluded)"
"$POWERTUNE" queues --url "redis://127.0.0.1:$port/1" --json - 2>/dev/null \
  | python3 -c 'import json,sys; r=json.load(sys.stdin); print("round trips:", r["metrics"]["sidekiq"]["round_trips"])'
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
