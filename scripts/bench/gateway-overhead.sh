#!/usr/bin/env bash
# Overhead benchmark of `powertune gateway` (issue 5 item 8), side by side with
# LiteLLM's proxy. Loopback only; every step is bounded in time. Prints Markdown.
#
# Against a zero-delay fake provider (`powertune provider-sim --ttft 0s`, OpenAI wire format), open-loop
# load at fixed rates (latency from each request's *scheduled* start, so no
# coordinated omission): direct to the fake, then through the gateway, for
# non-streaming and streaming requests; "added" = gateway minus direct at p50/p99.
# Then LiteLLM's proxy in front of the same fake: its sustainable rate (the highest of
# LITELLM_RATES with no errors and p99 under P99_BOUND_MS) and its p99 there; then the
# highest of GW_SEARCH_RATES the gateway serves with no errors at that same p99; the
# ratio of the two rates. Optionally a soak at a steady rate sampling the gateway's
# RSS every RSS_EVERY seconds (is memory flat?).
#
# Sizes (environment; defaults are the small development run):
#   SECONDS_PER_STEP   seconds per rate step (default 5; 1..600)
#   RATES              fixed rates for the overhead table (default "1000 5000")
#   MODES              "plain stream" (default both), or one of them
#   LITELLM_RATES      LiteLLM rates to step through (default "25 50 100 200")
#   P99_BOUND_MS       a LiteLLM rate is sustainable while its p99 stays under this (default 1000)
#   GW_SEARCH_RATES    gateway rates searched at LiteLLM's p99 (default "1000 2000 3000 5000 7000")
#   SOAK_SECS          0 = no soak (default); 600 = the 10-minute soak (max 3600)
#   SOAK_RATE          rate of the soak (default 1000)
#   RSS_EVERY          seconds between RSS samples in the soak (default 10)
#   CHUNK_DELAY_MS     ms between a stream's content chunks at the fake (default 0: the
#                      chunks leave as fast as the simulator writes them; N > 0: every event
#                      reaches the gateway in a read of its own, like real tokens)
#   WORDS              content chunks per answer (default 5)
#   SHARED_RATE        0 = skip (default); N = a second gateway with [shared] (breakers and
#                      rpm in a redis-server started here on loopback) against the local one
#                      at N req/s, non-streaming: "shared added p99" = shared minus local
#   TELEMETRY_RATE     0 = skip (default); N = a second gateway with [telemetry] exporting every
#                      span to `powertune apm serve` started here, against the local one at N
#                      req/s, non-streaming: gateway CPU per call with telemetry on vs off
#   TELEMETRY_SAMPLE   the telemetry gateway's [telemetry] sample_ratio (default 1: every call)
#   TELEMETRY_ROUNDS   rounds (default 3); in each, both gateways are loaded at the same
#                      time; the figure is the median of the rounds' differences
#   SKIP_LITELLM=1     skip LiteLLM;  SKIP_BUILD=1  reuse target/release binaries
#   LITELLM_VENV       where LiteLLM is pip-installed (default ~/.cache/powertune-bench/litellm-venv)
#
#   scripts/bench/gateway-overhead.sh
#   SECONDS_PER_STEP=30 SOAK_SECS=600 scripts/bench/gateway-overhead.sh     # the full run
#
# Needs: cargo, curl, python3 (venv + pip for LiteLLM); taskset (optional) pins the
# gateway (and LiteLLM) to core 0, the load generator and the fake to core 1.
set -euo pipefail
cd "$(dirname "$0")/../.."

SECONDS_PER_STEP=${SECONDS_PER_STEP:-5}
RATES=${RATES:-"1000 5000"}
MODES=${MODES:-"plain stream"}
LITELLM_RATES=${LITELLM_RATES:-"25 50 100 200"}
P99_BOUND_MS=${P99_BOUND_MS:-1000}
GW_SEARCH_RATES=${GW_SEARCH_RATES:-"1000 2000 3000 5000 7000"}
SOAK_SECS=${SOAK_SECS:-0}
CHUNK_DELAY_MS=${CHUNK_DELAY_MS:-0}
WORDS=${WORDS:-5}
SOAK_RATE=${SOAK_RATE:-1000}
SHARED_RATE=${SHARED_RATE:-0}
RSS_EVERY=${RSS_EVERY:-10}
LITELLM_VENV=${LITELLM_VENV:-$HOME/.cache/powertune-bench/litellm-venv}
(( SECONDS_PER_STEP >= 1 && SECONDS_PER_STEP <= 600 )) || { echo "SECONDS_PER_STEP must be 1..600" >&2; exit 1; }
(( SOAK_SECS >= 0 && SOAK_SECS <= 3600 )) || { echo "SOAK_SECS must be 0..3600" >&2; exit 1; }
(( RSS_EVERY >= 1 && RSS_EVERY <= 600 )) || { echo "RSS_EVERY must be 1..600" >&2; exit 1; }
(( CHUNK_DELAY_MS >= 0 && CHUNK_DELAY_MS <= 1000 )) || { echo "CHUNK_DELAY_MS must be 0..1000" >&2; exit 1; }
(( WORDS >= 1 && WORDS <= 1000 )) || { echo "WORDS must be 1..1000" >&2; exit 1; }
(( SHARED_RATE >= 0 && SHARED_RATE <= 20000 )) || { echo "SHARED_RATE must be 0..20000" >&2; exit 1; }
TELEMETRY_RATE=${TELEMETRY_RATE:-0}
TELEMETRY_SAMPLE=${TELEMETRY_SAMPLE:-1}
TELEMETRY_ROUNDS=${TELEMETRY_ROUNDS:-3}
(( TELEMETRY_ROUNDS >= 1 && TELEMETRY_ROUNDS <= 20 )) || { echo "TELEMETRY_ROUNDS must be 1..20" >&2; exit 1; }
(( TELEMETRY_RATE >= 0 && TELEMETRY_RATE <= 20000 )) || { echo "TELEMETRY_RATE must be 0..20000" >&2; exit 1; }
for r in $RATES $LITELLM_RATES $GW_SEARCH_RATES $SOAK_RATE; do
  (( r >= 1 && r <= 20000 )) || { echo "rates must be 1..20000 (got $r)" >&2; exit 1; }
done
command -v curl >/dev/null || { echo "curl is required (apt-get install curl)" >&2; exit 1; }

PIN_GW=(); PIN_LOAD=()
if command -v taskset >/dev/null && [ "$(nproc)" -gt 1 ]; then PIN_GW=(taskset -c 0); PIN_LOAD=(taskset -c 1); fi

echo "load before: $(uptime)"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release -q -p powertune --bins
  cargo build --release -q -p powertune-gateway --examples
fi
BIN=target/release/powertune
LOAD=target/release/examples/openloop

TMP=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# a process's CPU time in ns, all its threads (schedstat's time on CPU)
cpu_ns() { local t=0 n; for f in /proc/"$1"/task/*/schedstat; do read -r n _ <"$f" && t=$((t + n)); done; echo "$t"; }
# run URL RATE [SECONDS] -> one JSON line; OPENLOOP_STREAM from the caller
run() { "${PIN_LOAD[@]}" "$LOAD" "$1" "$2" "${3:-$SECONDS_PER_STEP}"; }
errs() { echo $(( $(field "$1" errors) + $(field "$1" skipped) )); }
row() { # label target json
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$2" "$(field "$3" achieved_rps)" "$(field "$3" p50_ms)" \
    "$(field "$3" p99_ms)" "$(field "$3" max_ms)" "$(errs "$3")"
}

SIM_PORT=$(free_port)
"${PIN_LOAD[@]}" "$BIN" provider-sim --listen "127.0.0.1:$SIM_PORT" --ttft 0s --itl "${CHUNK_DELAY_MS}ms" \
  --output-tokens "$WORDS" >"$TMP/sim.log" 2>&1 &
PIDS+=($!)
FAKE=http://127.0.0.1:$SIM_PORT
for _ in $(seq 1 50); do curl -sf "$FAKE/health" >/dev/null && break; sleep 0.1; done
curl -sf "$FAKE/health" >/dev/null || { echo "provider-sim did not start: $(cat "$TMP/sim.log")" >&2; exit 1; }

GW_PORT=$(free_port)
cat >"$TMP/gateway.toml" <<EOF
listen = "127.0.0.1:${GW_PORT}"
[[providers]]
name = "fake"
kind = "openai"
base_url = "${FAKE}/v1"
  [[providers.credentials]]
  name = "k1"
  api_key_env = "BENCH_FAKE_KEY"
[models.fast]
targets = ["fake:gpt-bench"]
EOF
BENCH_FAKE_KEY=sk-bench "${PIN_GW[@]}" "$BIN" gateway --config "$TMP/gateway.toml" 2>"$TMP/gw.log" &
GW_PID=$!
PIDS+=($GW_PID)
for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:${GW_PORT}/health" >/dev/null && break; sleep 0.1; done
GW="http://127.0.0.1:${GW_PORT}"
curl -fs "$GW/health" >/dev/null || { echo "gateway did not start:" >&2; cat "$TMP/gw.log" >&2; exit 1; }

run "$FAKE/v1/chat/completions" 200 1 >/dev/null
run "$GW/v1/chat/completions" 200 1 >/dev/null

echo
echo "## Added latency (open loop, ${SECONDS_PER_STEP}s per step; gateway on core 0, load + fake on core 1)"
echo
echo "Streams carry $WORDS content chunks, ${CHUNK_DELAY_MS} ms apart at the fake."
echo
echo "| rate/s, mode | target | achieved/s | p50 ms | p99 ms | max ms | errors |"
echo "|---|---|---|---|---|---|---|"
ADDED=()
for mode in $MODES; do
  if [ "$mode" = stream ]; then export OPENLOOP_STREAM=1; else export OPENLOOP_STREAM=0; fi
  for rate in $RATES; do
    d=$(run "$FAKE/v1/chat/completions" "$rate")
    t0=$(cpu_ticks "$GW_PID")
    g=$(run "$GW/v1/chat/completions" "$rate")
    t1=$(cpu_ticks "$GW_PID")
    row "$rate $mode" "direct" "$d"
    row "$rate $mode" "gateway" "$g"
    ADDED+=("$(python3 - "$d" "$g" "$rate" "$mode" "$((t1 - t0))" "$(getconf CLK_TCK)" "$WORDS" <<'EOF'
import json, sys
d, g = json.loads(sys.argv[1]), json.loads(sys.argv[2])
rate, mode, ticks, hz, words = sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
n = max(1, g["ok"] + g["errors"])
per = ticks / hz * 1e6 / n
chunk = f"{per / words:.1f}" if mode == "stream" else "-"
print(f"| {rate} {mode} | {g['p50_ms'] - d['p50_ms']:+.3f} | {g['p99_ms'] - d['p99_ms']:+.3f} | "
      f"{per:.0f} | {chunk} | {g['errors'] + g['skipped']} |")
EOF
)")
  done
done
unset OPENLOOP_STREAM
echo
echo "| rate/s, mode | added p50 ms | added p99 ms | gateway CPU µs/request | µs per content chunk | errors |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${ADDED[@]}"
echo
curl -fs "$GW/status" | python3 -c 'import json,sys; s=json.load(sys.stdin); o=s["overhead_ms"]; print("Gateway own time (x-powertune-overhead-ms) over %d calls: p50 %.3f ms, p99 %.3f ms." % (s["calls"], o["p50"], o["p99"]))'
echo "Gateway RSS after the steps: $(rss_kb "$GW_PID") kB."

if [ "$SHARED_RATE" -gt 0 ]; then
  command -v redis-server >/dev/null || { echo "SHARED_RATE needs redis-server" >&2; exit 1; }
  R_PORT=$(free_port)
  redis-server --port "$R_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$TMP/redis.log" 2>&1 &
  PIDS+=($!)
  SH_PORT=$(free_port)
  sed "s/^listen = .*/listen = \"127.0.0.1:${SH_PORT}\"/" "$TMP/gateway.toml" >"$TMP/shared.toml"
  printf '[shared]\nredis_url = "redis://127.0.0.1:%s/0"\n' "$R_PORT" >>"$TMP/shared.toml"
  BENCH_FAKE_KEY=sk-bench "${PIN_GW[@]}" "$BIN" gateway --config "$TMP/shared.toml" 2>"$TMP/gw-shared.log" &
  SH_PID=$!
  PIDS+=($SH_PID)
  SH="http://127.0.0.1:${SH_PORT}"
  mode() { curl -fs "$SH/status" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["shared"]["mode"])' 2>/dev/null || true; }
  for _ in $(seq 1 50); do [ "$(mode)" = shared ] && break; sleep 0.1; done
  [ "$(mode)" = shared ] || { echo "the shared gateway did not join Redis:" >&2; cat "$TMP/gw-shared.log" >&2; exit 1; }
  export OPENLOOP_STREAM=0
  run "$SH/v1/chat/completions" 200 1 >/dev/null
  echo
  echo "## Shared mode ([shared] Redis on loopback) vs local, ${SHARED_RATE} req/s non-streaming, ${SECONDS_PER_STEP}s per step"
  echo
  echo "| gateway | achieved/s | p50 ms | p99 ms | max ms | errors | gateway CPU µs/request |"
  echo "|---|---|---|---|---|---|---|"
  for which in local shared; do
    if [ "$which" = local ]; then url=$GW; pid=$GW_PID; else url=$SH; pid=$SH_PID; fi
    t0=$(cpu_ticks "$pid")
    j=$(run "$url/v1/chat/completions" "$SHARED_RATE")
    t1=$(cpu_ticks "$pid")
    per=$(python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print("%.0f" % (int(sys.argv[2]) / int(sys.argv[3]) * 1e6 / max(1, j["ok"] + j["errors"])))' "$j" "$((t1 - t0))" "$(getconf CLK_TCK)")
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$which" "$(field "$j" achieved_rps)" "$(field "$j" p50_ms)" \
      "$(field "$j" p99_ms)" "$(field "$j" max_ms)" "$(errs "$j")" "$per"
    if [ "$which" = local ]; then LOCAL_J=$j; else SHARED_J=$j; fi
  done
  echo
  python3 -c 'import json,sys; l,s=json.loads(sys.argv[1]),json.loads(sys.argv[2]); print("Shared mode added p99: %+.3f ms, p50: %+.3f ms (goal: at most +0.5 ms p99)." % (s["p99_ms"] - l["p99_ms"], s["p50_ms"] - l["p50_ms"]))' "$LOCAL_J" "$SHARED_J"
  curl -fs "$SH/status" | python3 -c 'import json,sys; s=json.load(sys.stdin)["shared"]; print("Shared gateway: mode %s, %d round trips to Redis, %d fallbacks." % (s["mode"], s["round_trips"], s["fallbacks"]))'
  unset OPENLOOP_STREAM
fi

if [ "$TELEMETRY_RATE" -gt 0 ]; then
  APM_PORT=$(free_port)
  "${PIN_LOAD[@]}" "$BIN" apm serve --listen "127.0.0.1:$APM_PORT" >"$TMP/apm.log" 2>&1 &
  PIDS+=($!)
  TE_PORT=$(free_port)
  sed "s/^listen = .*/listen = \"127.0.0.1:${TE_PORT}\"/" "$TMP/gateway.toml" >"$TMP/telemetry.toml"
  printf '[telemetry]\notlp_endpoint = "http://127.0.0.1:%s"\nsample_ratio = %s\n' "$APM_PORT" "$TELEMETRY_SAMPLE" >>"$TMP/telemetry.toml"
  BENCH_FAKE_KEY=sk-bench "${PIN_GW[@]}" "$BIN" gateway --config "$TMP/telemetry.toml" 2>"$TMP/gw-telemetry.log" &
  TE_PID=$!
  PIDS+=($TE_PID)
  TE="http://127.0.0.1:${TE_PORT}"
  for _ in $(seq 1 50); do curl -fs "$TE/health" >/dev/null && break; sleep 0.1; done
  curl -fs "$TE/health" >/dev/null || { echo "the telemetry gateway did not start:" >&2; cat "$TMP/gw-telemetry.log" >&2; exit 1; }
  export OPENLOOP_STREAM=0
  run "$TE/v1/chat/completions" 200 1 >/dev/null
  echo
  echo "## Telemetry on ([telemetry] to powertune apm serve, sample_ratio ${TELEMETRY_SAMPLE}) vs off, ${TELEMETRY_RATE} req/s each at the same time, non-streaming, ${SECONDS_PER_STEP}s per round"
  echo
  echo "Both gateways run side by side on core 0, each under its own load, so the machine's"
  echo "drift from one step to the next falls on both alike."
  echo
  echo "| round | gateway | achieved/s | p50 ms | p99 ms | max ms | errors | gateway CPU µs/request |"
  echo "|---|---|---|---|---|---|---|---|"
  per_call() { python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print("%.1f" % ((int(sys.argv[3]) - int(sys.argv[2])) / 1e3 / max(1, j["ok"] + j["errors"])))' "$@"; }
  OFF_CPU=(); ON_CPU=()
  for round in $(seq 1 "$TELEMETRY_ROUNDS"); do
    a0=$(cpu_ns "$TE_PID"); b0=$(cpu_ns "$GW_PID")
    run "$TE/v1/chat/completions" "$TELEMETRY_RATE" >"$TMP/on.json" &
    on_load=$!
    joff=$(run "$GW/v1/chat/completions" "$TELEMETRY_RATE")
    wait "$on_load"
    jon=$(cat "$TMP/on.json")
    a1=$(cpu_ns "$TE_PID"); b1=$(cpu_ns "$GW_PID")
    OFF_CPU+=("$(per_call "$joff" "$b0" "$b1")"); ON_CPU+=("$(per_call "$jon" "$a0" "$a1")")
    for which in off on; do
      if [ "$which" = off ]; then j=$joff; per=${OFF_CPU[-1]}; else j=$jon; per=${ON_CPU[-1]}; fi
      printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$round" "$which" "$(field "$j" achieved_rps)" "$(field "$j" p50_ms)" \
        "$(field "$j" p99_ms)" "$(field "$j" max_ms)" "$(errs "$j")" "$per"
    done
  done
  echo
  python3 -c 'import statistics,sys; off,on=[list(map(float,a.split())) for a in sys.argv[1:3]]; d=[100*(b-a)/max(a,0.1) for a,b in zip(off,on)]; print("Telemetry on: %+.1f%% gateway CPU per call (median of %d rounds, from %+.1f%% to %+.1f%%; %.1f → %.1f µs per call); goal: at most +10%%." % (statistics.median(d), len(d), min(d), max(d), statistics.median(off), statistics.median(on)))' "${OFF_CPU[*]}" "${ON_CPU[*]}"
  echo "Spans dropped: $(curl -fs "$TE/metrics" | awk '/^powertune_gateway_spans_dropped_total / {print $2}'); apm received: $(curl -fs "http://127.0.0.1:$APM_PORT/api/summary" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ingest"]["spans_received"])')."
  unset OPENLOOP_STREAM
fi

if [ "$SOAK_SECS" -gt 0 ]; then
  echo
  echo "## Soak: ${SOAK_SECS}s at ${SOAK_RATE}/s through the gateway, RSS every ${RSS_EVERY}s"
  echo
  echo "| t s | RSS kB |"
  echo "|---|---|"
  echo "| 0 | $(rss_kb "$GW_PID") |"
  "${PIN_LOAD[@]}" "$LOAD" "$GW/v1/chat/completions" "$SOAK_RATE" "$SOAK_SECS" 20000 >"$TMP/soak.json" &
  SOAK_PID=$!
  PIDS+=($SOAK_PID)
  t=0
  while kill -0 "$SOAK_PID" 2>/dev/null && (( t < SOAK_SECS + 30 )); do
    sleep "$RSS_EVERY"; t=$(( t + RSS_EVERY ))
    echo "| $t | $(rss_kb "$GW_PID") |"
  done
  wait "$SOAK_PID" || true
  s=$(cat "$TMP/soak.json")
  echo
  echo "Soak result: $(field "$s" ok) ok, $(errs "$s") errors or not sent, p50 $(field "$s" p50_ms) ms, p99 $(field "$s" p99_ms) ms."
fi

if [ "${SKIP_LITELLM:-0}" = 1 ]; then echo; echo "load after: $(uptime)"; exit 0; fi
echo
if [ ! -x "$LITELLM_VENV/bin/litellm" ]; then
  python3 -m venv "$LITELLM_VENV"
  "$LITELLM_VENV/bin/pip" install -q 'litellm[proxy]'
fi
LL_VERSION=$("$LITELLM_VENV/bin/pip" show litellm 2>/dev/null | awk '/^Version/ {print $2}')
LL_PORT=$(free_port)
LL_KEY="sk-bench-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
cat >"$TMP/litellm.yaml" <<EOF
model_list:
  - model_name: fast
    litellm_params:
      model: openai/gpt-bench
      api_base: ${FAKE}/v1
      api_key: sk-bench
general_settings:
  master_key: ${LL_KEY}
litellm_settings:
  num_retries: 0
  set_verbose: false
EOF
"${PIN_GW[@]}" "$LITELLM_VENV/bin/litellm" --config "$TMP/litellm.yaml" --host 127.0.0.1 --port "$LL_PORT" --num_workers 1 >"$TMP/litellm.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 300); do curl -fs "http://127.0.0.1:${LL_PORT}/health/liveliness" >/dev/null && break; sleep 0.2; done
curl -fs "http://127.0.0.1:${LL_PORT}/health/liveliness" >/dev/null || { echo "LiteLLM did not start; log:" >&2; tail -20 "$TMP/litellm.log" >&2; exit 1; }
LL="http://127.0.0.1:${LL_PORT}"
echo "## LiteLLM ${LL_VERSION} (1 worker, core 0) vs powertune gateway at equal p99 (non-streaming)"
echo
echo "| rate/s | target | achieved/s | p50 ms | p99 ms | max ms | errors |"
echo "|---|---|---|---|---|---|---|"
OPENLOOP_BEARER="$LL_KEY" run "$LL/v1/chat/completions" 10 2 >/dev/null
LL_RATE=0; LL_P99=0
for rate in $LITELLM_RATES; do
  j=$(OPENLOOP_BEARER="$LL_KEY" run "$LL/v1/chat/completions" "$rate")
  row "$rate" "LiteLLM" "$j"
  if [ "$(errs "$j")" = 0 ] && python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) <= float(sys.argv[2]) else 1)" "$(field "$j" p99_ms)" "$P99_BOUND_MS"; then
    LL_RATE=$rate; LL_P99=$(field "$j" p99_ms)
  else
    break   # past its sustainable rate: higher rates only queue more
  fi
done
GW_RATE=0; GW_P99=0
if [ "$LL_RATE" != 0 ]; then
  for rate in $GW_SEARCH_RATES; do
    j=$(run "$GW/v1/chat/completions" "$rate")
    row "$rate" "powertune gateway" "$j"
    if [ "$(errs "$j")" = 0 ] && python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) <= float(sys.argv[2]) else 1)" "$(field "$j" p99_ms)" "$LL_P99"; then
      GW_RATE=$rate; GW_P99=$(field "$j" p99_ms)
    else
      break
    fi
  done
fi
echo
if [ "$LL_RATE" = 0 ]; then
  echo "LiteLLM sustained none of the rates ${LITELLM_RATES}/s with p99 under ${P99_BOUND_MS} ms."
else
  echo "LiteLLM's sustainable rate: ${LL_RATE}/s (p99 ${LL_P99} ms, bound ${P99_BOUND_MS} ms)."
  echo "powertune gateway at p99 ≤ ${LL_P99} ms: ${GW_RATE}/s (p99 ${GW_P99} ms; highest of ${GW_SEARCH_RATES} searched)."
  python3 -c "import sys; print(f'Ratio at equal p99: {int(sys.argv[1]) / int(sys.argv[2]):.0f}x (goal >= 20x; a lower bound when the highest searched rate passed).')" "$GW_RATE" "$LL_RATE"
fi
echo
echo "load after: $(uptime)"
