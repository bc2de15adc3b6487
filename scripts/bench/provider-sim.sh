#!/usr/bin/env bash
# Throughput benchmark of `powertune provider-sim`: streamed OpenAI chat completions of
# 20 content chunks (TTFT and ITL 0, include_usage) per second on ONE core, and the CPU
# per streamed completion, side by side with a minimal Python aiohttp fake provider
# answering the same stream. Loopback only; each run is bounded (at most 30 s).
#
# The simulator runs as the bench_serve example of crates/provider-sim (the library on
# a current-thread tokio runtime: one thread), pinned to core 0; the aiohttp fake is one
# Python process pinned to core 0; wrk (one thread, a Lua body) on core 1. CPU is the
# server process's user+sys time from /proc/PID/stat over the run.
#
# Environment (all optional):
#   SECONDS_PER_RUN=10   seconds of each wrk run (1..30)
#   CONNS=64             wrk connections
#   SKIP_PYTHON=1        skip the aiohttp fake
#   SKIP_BUILD=1         reuse target/release/examples/bench_serve
#
# Needs cargo, wrk, python3 (a venv under target/bench-venv gets aiohttp), taskset (optional).
set -euo pipefail
cd "$(dirname "$0")/../.."

SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
CONNS=${CONNS:-64}
(( SECONDS_PER_RUN >= 1 && SECONDS_PER_RUN <= 30 )) || { echo "SECONDS_PER_RUN: 1..30" >&2; exit 1; }
command -v wrk >/dev/null || { echo "needs wrk" >&2; exit 1; }

PIN0=(); PIN1=(); PINNED="unpinned (no taskset)"
if command -v taskset >/dev/null && (( $(nproc) >= 2 )); then
  PIN0=(taskset -c 0); PIN1=(taskset -c 1); PINNED="server on core 0, wrk on core 1"
fi

if [[ -z "${SKIP_BUILD:-}" ]]; then
  nice -n 10 cargo build --release -p powertune-provider-sim --example bench_serve >/dev/null
fi
BIN=target/release/examples/bench_serve
TMP=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT

cat >"$TMP/sim.toml" <<'TOML'
[defaults]
ttft = "0ms"
itl = "0ms"
output_tokens = 20
TOML

cat >"$TMP/body.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench"
wrk.body = '{"model":"sim","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"say something"}]}'
LUA

cat >"$TMP/fake.py" <<'PY'
# A minimal OpenAI-style streaming fake: 20 content chunks, a usage chunk, [DONE].
import json, sys, time
from aiohttp import web

WORDS = ["the", "load", "test", "shows", "a", "steady", "rate", "of", "calls", "and"] * 2

async def chat(request):
    body = await request.json()
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": body.get("model", "m")}
    for i, w in enumerate(WORDS):
        c = dict(base, choices=[{"index": 0, "delta": {"content": (" " if i else "") + w},
                                 "finish_reason": None}])
        await resp.write(b"data: " + json.dumps(c).encode() + b"\n\n")
    end = dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}])
    await resp.write(b"data: " + json.dumps(end).encode() + b"\n\n")
    usage = dict(base, choices=[], usage={"prompt_tokens": 4, "completion_tokens": 20, "total_tokens": 24})
    await resp.write(b"data: " + json.dumps(usage).encode() + b"\n\n")
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp

app = web.Application()
app.router.add_post("/v1/chat/completions", chat)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=lambda *a: print("listening", flush=True))
PY

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run NAME PID URL: prints "NAME|completions/s|CPU µs per completion|non-2xx"
run() {
  local name=$1 pid=$2 url=$3
  # a short warm-up, then the measured run
  "${PIN1[@]}" wrk -t1 -c"$CONNS" -d1s -s "$TMP/body.lua" "$url/v1/chat/completions" >/dev/null
  local t0; t0=$(cpu_ticks "$pid")
  "${PIN1[@]}" wrk -t1 -c"$CONNS" -d"${SECONDS_PER_RUN}s" -s "$TMP/body.lua" "$url/v1/chat/completions" >"$TMP/$name.wrk"
  local t1; t1=$(cpu_ticks "$pid")
  local total rps bad
  total=$(awk '/requests in/ {print $1}' "$TMP/$name.wrk")
  rps=$(awk '/Requests\/sec/ {print $2}' "$TMP/$name.wrk")
  bad=$(awk '/Non-2xx/ {print $5}' "$TMP/$name.wrk"); bad=${bad:-0}
  local hz; hz=$(getconf CLK_TCK)
  local us; us=$(awk -v a="$t0" -v b="$t1" -v n="$total" -v hz="$hz" 'BEGIN { printf "%.1f", (b - a) / hz * 1e6 / n }')
  local per_core; per_core=$(awk -v a="$t0" -v b="$t1" -v n="$total" -v hz="$hz" 'BEGIN { printf "%.0f", n / ((b - a) / hz) }')
  echo "$name|$rps|$per_core|$us|$bad"
}

wait_line() { # FILE PATTERN
  for _ in $(seq 1 200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "server did not start: $(cat "$1")" >&2; exit 1
}

ROWS=()
"${PIN0[@]}" "$BIN" "$TMP/sim.toml" >"$TMP/sim.out" &
PIDS+=($!); SIM_PID=$!
wait_line "$TMP/sim.out" listening
SIM_URL=$(awk '/listening/ {print $2}' "$TMP/sim.out")
ROWS+=("$(run "powertune provider-sim (Rust, 1 thread)" "$SIM_PID" "$SIM_URL")")
kill "$SIM_PID"

if [[ -z "${SKIP_PYTHON:-}" ]]; then
  VENV=target/bench-venv
  [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
  "$VENV/bin/python" -c "import aiohttp" 2>/dev/null || "$VENV/bin/pip" install -q aiohttp
  PORT=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "${PIN0[@]}" "$VENV/bin/python" "$TMP/fake.py" "$PORT" >"$TMP/py.out" 2>&1 &
  PIDS+=($!); PY_PID=$!
  wait_line "$TMP/py.out" listening
  ROWS+=("$(run "aiohttp fake (Python $("$VENV/bin/python" -c 'import sys, aiohttp; print(sys.version.split()[0] + ", aiohttp " + aiohttp.__version__)'))" "$PY_PID" "http://127.0.0.1:$PORT")")
  kill "$PY_PID"
fi

echo
echo "Streamed completions of 20 chunks (+ usage + [DONE]), ${SECONDS_PER_RUN}s each, $CONNS connections, $PINNED; $(nproc) cores, $(date -u +%Y-%m-%d)"
echo
echo "| server | completions/s | completions per CPU-second | CPU per completion | non-2xx |"
echo "|---|---:|---:|---:|---:|"
for r in "${ROWS[@]}"; do
  IFS='|' read -r name rps per_core us bad <<<"$r"
  echo "| $name | $rps | $per_core | ${us} µs | $bad |"
done
if (( ${#ROWS[@]} == 2 )); then
  IFS='|' read -r _ _ _ a _ <<<"${ROWS[0]}"; IFS='|' read -r _ _ _ b _ <<<"${ROWS[1]}"
  echo
  awk -v a="$a" -v b="$b" 'BEGIN { printf "The aiohttp fake spends %.1f× the simulator'"'"'s CPU per streamed completion.\n", b / a }'
fi
