#!/usr/bin/env bash
# Ingest benchmark of `powertune apm`: spans/s on one core with analysis on, and memory
# of the receiver at a steady rate. Loopback only, bounded in time.
#
#   scripts/bench/apm-ingest.sh                  # 20 s in-process + 20 s over HTTP
#   SECONDS_INPROC=60 SECONDS_HTTP=600 RATE=50000 scripts/bench/apm-ingest.sh
#
# Needs: cargo (builds the apm_ingest example of crates/apm in release mode) and, if
# present, taskset (util-linux) to pin the in-process run to one core.
set -euo pipefail
cd "$(dirname "$0")/../.."

SECONDS_INPROC=${SECONDS_INPROC:-20}
SECONDS_HTTP=${SECONDS_HTTP:-20}
CONNS=${CONNS:-4}
RATE=${RATE:-0}           # spans/s offered over HTTP; 0 = as fast as accepted
(( SECONDS_INPROC <= 3600 && SECONDS_HTTP <= 3600 )) || { echo "at most 3600 s each" >&2; exit 1; }

PIN=()
if command -v taskset >/dev/null; then PIN=(taskset -c 0); fi

echo "load before: $(uptime)"
# A separate target directory (BENCH_TARGET_DIR) keeps a release build from holding the
# shared target directory's lock while other work compiles.
TD=${BENCH_TARGET_DIR:-${CARGO_TARGET_DIR:-target}}
CARGO_TARGET_DIR="$TD" nice -n 10 cargo build --release -p powertune-apm --example apm_ingest >/dev/null
GEN=$TD/release/examples/apm_ingest

echo "== in-process: decode + analysis on one thread, ${SECONDS_INPROC}s"
"${PIN[@]}" "$GEN" inprocess "$SECONDS_INPROC"

echo "== HTTP: receiver on one thread (HTTP + decode + analysis), load from a second thread; ${SECONDS_HTTP}s, ${CONNS} connections, rate ${RATE}"
"$GEN" serve-load "$SECONDS_HTTP" "$CONNS" "$RATE"
echo "load after: $(uptime)"
