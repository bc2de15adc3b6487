#!/usr/bin/env bash
# Overhead benchmark of `powertune gateway` (issue 5 item 8), side by side with
# LiteLLM's proxy. Loopback only, bounded in time.
#
# Against a zero-delay fake provider (the test fake, OpenAI wire format), open-loop
# load at fixed rates (latency from each request's scheduled start): direct to the
# fake, then through the gateway; the difference of p50/p99 is the gateway's added
# latency. Then the same fake behind LiteLLM's proxy at lower rates, to find the rate
# it sustains (no errors, nothing skipped) and its p99 there.
#
#   scripts/bench/gateway-overhead.sh                          # 10 s per step
#   SECONDS_PER_STEP=30 RATES="1000 5000" LITELLM_RATES="50 100 200 400" scripts/bench/gateway-overhead.sh
#   SKIP_LITELLM=1 scripts/bench/gateway-overhead.sh
#   SOAK_SECONDS=600 scripts/bench/gateway-overhead.sh         # + gateway RSS every 30 s at the last rate
#   SKIP_BUILD=1 ...                                           # reuse target/release binaries
#
# Needs: cargo; python3 with venv/pip for LiteLLM (installed into
# ${LITELLM_VENV:-$HOME/.cache/powertune-bench/litellm-venv} on first run); curl;
# taskset (optional) to pin the gateway to core 0 and load + fake to core 1.
set -euo pipefail
cd "$(dirname "$0")/../.."

SECONDS_PER_STEP=${SECONDS_PER_STEP:-10}
RATES=${RATES:-"1000 5000"}
LITELLM_RATES=${LITELLM_RATES:-"50 100 200 400"}
SOAK_SECONDS=${SOAK_SECONDS:-0}
LITELLM_VENV=${LITELLM_VENV:-$HOME/.cache/powertune-bench/litellm-venv}
(( SECONDS_PER_STEP >= 1 && SECONDS_PER_STEP <= 600 )) || { echo "SECONDS_PER_STEP must be 1..600" >&2; exit 1; }
(( SOAK_SECONDS <= 3600 )) || { echo "SOAK_SECONDS at most 3600" >&2; exit 1; }
for r in $RATES $LITELLM_RATES; do (( r >= 1 && r <= 20000 )) || { echo "rates must be 1..20000" >&2; exit 1; }; done
command -v curl >/dev/null || { echo "curl is required (apt-get install curl)" >&2; exit 1; }

PIN_GW=(); PIN_LOAD=()
if command -v taskset >/dev/null && [ "$(nproc)" -gt 1 ]; then PIN_GW=(taskset -c 0); PIN_LOAD=(taskset -c 1); fi

echo "load before: $(uptime)"
if [ "${SKIP_BUILD:-0}" != 1 ]; then   # SKIP_BUILD=1 reuses the release binaries already built
  cargo build --release -q -p powertune --bins
  cargo build --release -q -p powertune-gateway --examples
fi
BIN=target/release/powertune
FAKE_BIN=target/release/examples/fake_provider
LOAD=target/release/examples/openloop

TMP=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

"${PIN_LOAD[@]}" "$FAKE_BIN" >"$TMP/fake.url" 2>/dev/null &
PIDS+=($!)
for _ in $(seq 1 50); do [ -s "$TMP/fake.url" ] && break; sleep 0.1; done
FAKE=$(head -1 "$TMP/fake.url")
case "$FAKE" in http://127.0.0.1:*) ;; *) echo "fake provider did not start" >&2; exit 1;; esac

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

run() { "${PIN_LOAD[@]}" "$LOAD" "$1" "$2" "$SECONDS_PER_STEP"; }
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

echo "== warm-up"
run "$FAKE/v1/chat/completions" 200 >/dev/null
run "$GW/v1/chat/completions" 200 >/dev/null
echo
printf '%-8s %-9s %10s %10s %10s %10s %8s\n' rate target achieved p50_ms p99_ms max_ms errors
for rate in $RATES; do
  d=$(run "$FAKE/v1/chat/completions" "$rate")
  g=$(run "$GW/v1/chat/completions" "$rate")
  for pair in "direct:$d" "gateway:$g"; do
    name=${pair%%:*}; j=${pair#*:}
    printf '%-8s %-9s %10s %10s %10s %10s %8s\n' "$rate" "$name" "$(field "$j" achieved_rps)" "$(field "$j" p50_ms)" \
      "$(field "$j" p99_ms)" "$(field "$j" max_ms)" "$(( $(field "$j" errors) + $(field "$j" skipped) ))"
  done
  python3 - "$d" "$g" <<'EOF'
import json, sys
d, g = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"         added    p50 {g['p50_ms'] - d['p50_ms']:+.3f} ms   p99 {g['p99_ms'] - d['p99_ms']:+.3f} ms")
EOF
done
echo "gateway's own overhead (x-powertune-overhead-ms, from /status):"
curl -fs "$GW/status" | python3 -c 'import json,sys; s=json.load(sys.stdin); o=s["overhead_ms"]; print("  calls %d  p50 %.3f ms  p99 %.3f ms" % (s["calls"], o["p50"], o["p99"]))'
echo "gateway RSS: $(rss_kb "$GW_PID") kB"

if [ "$SOAK_SECONDS" -gt 0 ]; then
  last=${RATES##* }
  echo "== soak: ${SOAK_SECONDS}s at ${last}/s, gateway RSS every 30 s"
  steps=$(( SOAK_SECONDS / 30 )); (( steps >= 1 )) || steps=1
  for i in $(seq 1 "$steps"); do
    "${PIN_LOAD[@]}" "$LOAD" "$GW/v1/chat/completions" "$last" 30 >/dev/null
    echo "  t=$(( i * 30 ))s rss=$(rss_kb "$GW_PID") kB"
  done
fi

if [ "${SKIP_LITELLM:-0}" = 1 ]; then exit 0; fi
echo
echo "== LiteLLM proxy (litellm[proxy] from PyPI, venv $LITELLM_VENV)"
if [ ! -x "$LITELLM_VENV/bin/litellm" ]; then
  python3 -m venv "$LITELLM_VENV"
  "$LITELLM_VENV/bin/pip" install -q 'litellm[proxy]'
fi
echo "litellm $("$LITELLM_VENV/bin/pip" show litellm 2>/dev/null | awk '/^Version/ {print $2}')"
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
export OPENLOOP_BEARER="$LL_KEY"
run "$LL/v1/chat/completions" 20 >/dev/null
printf '%-8s %-9s %10s %10s %10s %10s %8s\n' rate target achieved p50_ms p99_ms max_ms errors
for rate in $LITELLM_RATES; do
  j=$(run "$LL/v1/chat/completions" "$rate")
  printf '%-8s %-9s %10s %10s %10s %10s %8s\n' "$rate" litellm "$(field "$j" achieved_rps)" "$(field "$j" p50_ms)" \
    "$(field "$j" p99_ms)" "$(field "$j" max_ms)" "$(( $(field "$j" errors) + $(field "$j" skipped) ))"
done
echo "load after: $(uptime)"
