#!/usr/bin/env bash
# The load engine's CPU per streamed LLM request against its CPU per plain request of
# the same size: the same OpenAI stream from `powertune provider-sim` (20 content
# chunks, TTFT and ITL 0, include_usage), read once by a step with `llm = "openai"`
# (decoded chunk by chunk, timed, tokens counted) and once by the same step without
# it (the body drained, as any HTTP step). Same server, same bytes on the wire: the
# difference is what reading the stream costs. Goal: streamed ≤ 2× plain.
#
# CPU is the `powertune load` process's user+sys time, read from /proc/PID/stat every
# 50 ms until it exits (the last reading, a few ms short at most). Loopback only;
# each run is bounded by its iteration count and a 30 s max_duration; the whole script
# takes well under 60 s.
#
# Environment (all optional):
#   ITERATIONS=20000   requests per run (1000..200000)
#   VUS=20             VUs (connections) per run
#   PROFILE=release    cargo profile of the powertune binary (release or debug)
#   SKIP_BUILD=1       reuse target/$PROFILE/powertune
#   POWERTUNE_BIN=PATH run this binary instead (implies SKIP_BUILD)
set -euo pipefail
cd "$(dirname "$0")/../.."

ITERATIONS=${ITERATIONS:-20000}
VUS=${VUS:-20}
PROFILE=${PROFILE:-release}
(( ITERATIONS >= 1000 && ITERATIONS <= 200000 )) || { echo "ITERATIONS: 1000..200000" >&2; exit 1; }
[[ $PROFILE == release || $PROFILE == debug ]] || { echo "PROFILE: release or debug" >&2; exit 1; }

PIN0=(); PIN1=(); PINNED="unpinned (no taskset)"
if command -v taskset >/dev/null && (( $(nproc) >= 2 )); then
  PIN0=(taskset -c 0); PIN1=(taskset -c 1); PINNED="simulator on core 0, load engine on core 1"
fi

if [[ -z "${SKIP_BUILD:-}" && -z "${POWERTUNE_BIN:-}" ]]; then
  if [[ $PROFILE == release ]]; then
    nice -n 10 cargo build --release -p powertune >/dev/null
  else
    nice -n 10 cargo build -p powertune >/dev/null
  fi
fi
BIN=${POWERTUNE_BIN:-target/$PROFILE/powertune}
TMP=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"${PIN0[@]}" "$BIN" provider-sim --listen "127.0.0.1:$PORT" --ttft 0ms --itl 0ms --output-tokens 20 \
  >"$TMP/sim.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break
  sleep 0.1
done

plan() { # $1 = extra step keys
  cat <<TOML
[scenarios.chat]
endpoint_type = "ai_llm"
executor = "shared-iterations"
vus = $VUS
iterations = $ITERATIONS
max_duration = "30s"
[[scenarios.chat.steps]]
name = "chat"
method = "POST"
url = "/v1/chat/completions"
$1
json = { model = "sim", stream = true, stream_options = { include_usage = true }, messages = [{ role = "user", content = "say something" }] }
TOML
}
plan 'llm = "openai"' >"$TMP/streamed.toml"
plan '' >"$TMP/plain.toml"

# CPU seconds (user+sys, clock ticks → s) of one `powertune load` run, and its requests.
run() { # $1 = plan file, $2 = json out
  "${PIN1[@]}" "$BIN" load "$1" --base-url "http://127.0.0.1:$PORT" --quiet --json "$2" >/dev/null 2>&1 &
  local pid=$! ticks=0 line
  while kill -0 "$pid" 2>/dev/null; do
    if line=$(cat "/proc/$pid/stat" 2>/dev/null); then
      # after the command name: utime and stime are fields 12 and 13 of the rest
      ticks=$(awk '{print $12 + $13}' <<<"${line##*) }")
    fi
    sleep 0.05
  done
  wait "$pid" || true
  local hz; hz=$(getconf CLK_TCK)
  python3 - "$2" "$ticks" "$hz" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["metrics"]
ticks, hz = int(sys.argv[2]), int(sys.argv[3])
reqs = r["http"]["reqs"]; failed = r["http"]["failed"]
llm = r.get("llm") or {}
print(f"{ticks/hz:.3f} {reqs} {failed} {r['duration_s']:.2f} {llm.get('output_tokens', 0)} {r['data_received']}")
PY
}

echo "powertune load: streamed LLM request vs plain request of the same size"
echo "  $(date -u +%FT%TZ), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $PINNED, $PROFILE build, $VUS VUs × $ITERATIONS requests"
printf '%-9s %9s %8s %7s %8s %14s %12s %14s\n' run cpu_s reqs failed wall_s "cpu/request" tokens bytes/request
declare -A PER
for kind in plain streamed; do
  read -r cpu reqs failed wall tokens bytes < <(run "$TMP/$kind.toml" "$TMP/$kind.json")
  per=$(python3 -c "print(f'{$cpu/$reqs*1e6:.1f}')")
  PER[$kind]=$per
  printf '%-9s %9s %8s %7s %8s %12s µs %12s %14s\n' "$kind" "$cpu" "$reqs" "$failed" "$wall" "$per" "$tokens" "$((bytes / reqs))"
done
python3 -c "r=${PER[streamed]}/${PER[plain]}; print(f'streamed / plain CPU per request: {r:.2f}x (goal <= 2x): ' + ('met' if r <= 2 else 'NOT met'))"
