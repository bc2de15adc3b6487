#!/usr/bin/env bash
# Benchmarks `powertune capacity --demo`:
#   1. its wall time (goal: under 3 minutes) and the rate it reports (the maximum
#      sustainable rate, and the knee), with the limiting resource it names;
#   2. accuracy on one mix both models run alike: the runbook's dashboard scenario
#      alone (a login per VU, then dashboard reads, no think time). `capacity FILE
#      --demo` reports its maximum sustainable rate; the target's true capacity for
#      that mix is measured independently on a separate `powertune target` (same
#      defaults: 25-slot pool), closed-model at doubling VUs until the throughput
#      stops rising (two runs in a row within 3% of the best so far): the best
#      requests/s, the plateau.
#      (The four-scenario demo mix cannot be compared this way: closed VUs do not keep
#      the open model's proportions; the fast login-only scenario takes over.)
#   3. the ratio of (2)'s reported rate to the true capacity (goal: within 10%).
# Each closed run lasts DURATION; the whole script about 4 minutes. Run it when the
# machine is quiet (uptime load < ~1.5): the target and the generator share the cores.
#
#   scripts/bench/capacity.sh                     # DURATION=10s VUS_START=10 VUS_MAX=640
#   POWERTUNE_BIN=target/debug/powertune scripts/bench/capacity.sh   # no release build
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-10s}
VUS_START=${VUS_START:-10}
VUS_MAX=${VUS_MAX:-640}

. scripts/bench/lib.sh
powertune_bin

work=$(mktemp -d)
pid=""
cleanup() {
  stop_pid "$pid"
  rm -rf "$work"
}
trap cleanup EXIT

echo "==> capacity --demo (load: $(cut -d' ' -f1-3 /proc/loadavg))"
start=$(date +%s.%N)
"$bin" capacity --demo -q --json "$work/cap.json" >"$work/cap.txt" || true
cp "$work/cap.txt" "${CAP_TEXT:-/dev/null}"
end=$(date +%s.%N)
wall=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
python3 - "$work/cap.json" "$wall" <<'PY' | tee "$work/cap.summary"
import json, sys
m = json.load(open(sys.argv[1]))["metrics"]
print(f"wall {sys.argv[2]} s, {len(m['steps'])} steps, stop: {m['stop']}")
print(f"knee {m.get('knee_rate')} /s, max sustainable {m['headroom']['max_sustainable']} /s")
l = m.get("limiter") or {}
print(f"limiting resource: {l.get('resource')}: {l.get('evidence')}")
PY

"$bin" target --listen 127.0.0.1:0 >"$work/target.out" 2>&1 &
pid=$!
base=""
for _ in $(seq 1 100); do
  base=$(sed -n 's/^powertune target serving \(http:[^ ]*\).*/\1/p' "$work/target.out" | head -n 1)
  [ -n "$base" ] && curl -fsS "$base/health" >/dev/null 2>&1 && break
  sleep 0.1
done
[ -n "$base" ] || { echo "the target did not start:"; cat "$work/target.out"; exit 1; }

# The runbook's dashboard scenario alone, without its think time.
python3 - examples/runbook.toml "$work/closed.toml" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
text = re.sub(r'\n\[\[scenarios\.[a-z_]+\.steps\]\]\nsleep = "[^"]*"\n', "\n", text)
head = text.split("[scenarios.")[0]
dash = "[scenarios.dashboard_load]" + text.split("[scenarios.dashboard_load]")[1].split("[scenarios.websocket_subscribe]")[0]
open(sys.argv[2], "w").write(head + dash)
PY
echo "==> capacity FILE --demo on the dashboard mix"
"$bin" capacity "$work/closed.toml" --demo -q --json "$work/dash.json" >/dev/null || true
sustained=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["metrics"]["headroom"]["max_sustainable"] or 0)' "$work/dash.json")
knee=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["metrics"].get("knee_rate") or 0)' "$work/dash.json")
python3 -c 'import json,sys; m=json.load(open(sys.argv[1]))["metrics"]; print("dashboard mix: knee", m.get("knee_rate"), "/s, max sustainable", m["headroom"]["max_sustainable"], "/s, limited by", (m.get("limiter") or {}).get("resource"), "; USL peak", m["usl"].get("peak_throughput"))' "$work/dash.json"

echo "==> closed model against $base, $DURATION per run, doubling VUs until the throughput plateaus"
best=0
flat=0
v=$VUS_START
while [ "$v" -le "$VUS_MAX" ]; do
  "$bin" load "$work/closed.toml" --base-url "$base" --vus "$v" --duration "$DURATION" -q \
    --json "$work/closed-$v.json" >/dev/null || true
  rps=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1]))["metrics"]; print(round(m["http"]["reqs"]/m["duration_s"],1))' "$work/closed-$v.json")
  p95=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["metrics"]["http"]["duration"]["p95"],1))' "$work/closed-$v.json")
  echo "vus/scenario=$v req/s=$rps p95_ms=$p95 (load $(cut -d' ' -f1 /proc/loadavg))"
  if awk -v a="$best" -v b="$rps" 'BEGIN { exit !(b > a * 1.03) }'; then
    flat=0
  else
    flat=$((flat + 1))
  fi
  best=$(awk -v a="$best" -v b="$rps" 'BEGIN { print (b > a) ? b : a }')
  [ "$flat" -ge 2 ] && { echo "plateau: two runs within 3% of the best"; break; }
  v=$((v * 2))
done
[ "$flat" -ge 2 ] || echo "NOTE: no plateau by $VUS_MAX VUs; the true capacity is at least $best req/s"
echo "==> true capacity (best closed-model req/s): $best"
awk -v s="$sustained" -v k="$knee" -v b="$best" 'BEGIN {
  printf "dashboard mix: capacity max sustainable %.1f/s = %.3f x true capacity (%+.1f%%); knee %.1f/s = %.3f x\n", s, s / b, (s / b - 1) * 100, k, k / b
}'
