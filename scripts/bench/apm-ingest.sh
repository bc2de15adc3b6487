#!/usr/bin/env bash
# Ingest benchmark of `powertune apm`: spans/s on one core through OTLP/HTTP protobuf with
# analysis on, and the receiver's memory over a steady-rate run. Loopback only; every
# phase is bounded in time (at most 3600 s each). Prints a Markdown table at the end.
#
# Environment (all optional):
#   SECONDS_INPROC=10   in-process run: decode + analysis on one thread, pinned to core 0 (0 = skip)
#   SECONDS_HTTP=20     receiver PROCESS alone on core 0 (taskset; one thread: HTTP + decode +
#                       analysis), sender process on core 1, as fast as accepted (0 = skip).
#                       Reports spans per receiver CPU-second (user+sys from /proc/PID/stat):
#                       the "spans/s on one core" figure, whatever else runs on the machine.
#   CONNS=4             sender connections
#   SOAK_SECS=0         steady-rate soak (the 10-minute run: SOAK_SECS=600); the
#                       receiver samples its spans, CPU and RSS (VmRSS) every SAMPLE_SECS
#   SOAK_RATE=50000     spans/s offered during the soak
#   SOAK_RETAIN=3m      the receiver's statistics window during the soak (apm.toml
#                       window.retain; production default 15m). Memory grows while the
#                       window fills (one bucket per retain/15) and must be flat after it:
#                       judge flatness on the samples after SOAK_RETAIN.
#   SAMPLE_SECS=10
#   PRODUCT=0           1: also measure the real `powertune apm serve` (release build of the
#                       whole CLI; multi-thread runtime, pinned to core 0 like the receiver
#                       above) for SECONDS_HTTP seconds; POWERTUNE=PATH uses a built binary
#   CALLGRIND=""        e.g. "20 60": receiver instructions per span under valgrind callgrind,
#                       from the difference of two runs of that many 500-span batches
#                       (deterministic; needs valgrind)
#   BIN=PATH            a built apm_ingest to use instead of building one
#   BENCH_TARGET_DIR    cargo target directory of the release build (default: target)
#
#   scripts/bench/apm-ingest.sh                                  # 10 s in-process + 20 s HTTP
#   SECONDS_INPROC=0 SECONDS_HTTP=0 SOAK_SECS=600 scripts/bench/apm-ingest.sh   # soak only
#
# Needs cargo (builds the apm_ingest example of crates/apm in release mode) unless BIN is
# given; taskset (util-linux) to pin (without it the runs are unpinned and say so).
set -euo pipefail
cd "$(dirname "$0")/../.."

SECONDS_INPROC=${SECONDS_INPROC:-10}
SECONDS_HTTP=${SECONDS_HTTP:-20}
CONNS=${CONNS:-4}
SOAK_SECS=${SOAK_SECS:-0}
SOAK_RATE=${SOAK_RATE:-50000}
SOAK_RETAIN=${SOAK_RETAIN:-3m}
SAMPLE_SECS=${SAMPLE_SECS:-10}
CALLGRIND=${CALLGRIND:-}
PRODUCT=${PRODUCT:-0}
for v in SECONDS_INPROC SECONDS_HTTP SOAK_SECS; do
  (( ${!v} <= 3600 )) || { echo "$v: at most 3600 s" >&2; exit 1; }
done

PIN0=(); PIN1=(); PINNED="unpinned (no taskset)"
if command -v taskset >/dev/null && (( $(nproc) >= 2 )); then
  PIN0=(taskset -c 0); PIN1=(taskset -c 1); PINNED="receiver on core 0, sender on core 1"
fi

TD=${BENCH_TARGET_DIR:-${CARGO_TARGET_DIR:-target}}
if [[ -z "${BIN:-}" ]]; then
  # A separate target directory (BENCH_TARGET_DIR) keeps a release build from holding the
  # shared target directory's lock while other work compiles.
  CARGO_TARGET_DIR="$TD" nice -n 10 cargo build --release -p powertune-apm --example apm_ingest >/dev/null
  BIN=$TD/release/examples/apm_ingest
fi
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [[ -n "$p" ]] && kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
ROWS=()

# Starts the receiver (SECONDS limit, sample period) with an optional prefix command;
# sets RPID and RURL.
start_receiver() {
  local limit=$1 sample=$2 log=$3; shift 3
  "$@" "$BIN" serve 127.0.0.1:0 "$limit" "$sample" >"$log" 2>&1 &
  RPID=$!; PIDS+=("$RPID")
  RURL=""
  for _ in $(seq 1 300); do
    RURL=$(sed -n 's/^listening //p' "$log" | head -1)
    [[ -n "$RURL" ]] && return 0
    kill -0 "$RPID" 2>/dev/null || break
    sleep 0.1
  done
  echo "receiver did not start:" >&2; cat "$log" >&2; exit 1
}

stop_receiver() {
  kill -TERM "$RPID" 2>/dev/null || true
  wait "$RPID" 2>/dev/null || true
}

field() { sed -n "s/.*\b$1=\([0-9.]*\).*/\1/p" <<<"$2" | head -1; }

if (( SECONDS_INPROC > 0 )); then
  echo "== in-process: decode + analysis on one thread, ${SECONDS_INPROC}s"
  "${PIN0[@]}" "$BIN" inprocess "$SECONDS_INPROC" | tee "$WORK/inproc.log"
  r=$(grep '^inprocess:' "$WORK/inproc.log")
  ROWS+=("| in-process, one thread: protobuf decode + analysis, ${SECONDS_INPROC} s | $(sed -n 's/.*= \([0-9]*\) spans\/s.*/\1/p' <<<"$r") spans/s |")
fi

if (( SECONDS_HTTP > 0 )); then
  echo "== OTLP/HTTP protobuf: receiver process on one thread ($PINNED); ${SECONDS_HTTP}s, ${CONNS} connections, as fast as accepted"
  start_receiver $((SECONDS_HTTP + 60)) 3600 "$WORK/recv.log" "${PIN0[@]}"
  "${PIN1[@]}" "$BIN" send "$RURL" "$SECONDS_HTTP" "$CONNS" 0 | tee "$WORK/send.log"
  stop_receiver
  r=$(grep '^receiver ' "$WORK/recv.log"); echo "$r"
  s=$(grep '^http:' "$WORK/send.log")
  ROWS+=("| receiver process, one thread ($PINNED), ${CONNS} connections, ${SECONDS_HTTP} s: spans per receiver CPU-second | **$(field spans_per_cpu_s "$r") spans/s** |")
  ROWS+=("| same run: accepted (wall clock) / receiver CPU / RSS at end | $(sed -n 's/.*= \([0-9]*\) spans\/s.*/\1/p' <<<"$s") spans/s / $(field cpu_s "$r") s CPU of $(field wall_s "$r") s / $(field rss_kib "$r") KiB |")
fi

# User + system CPU seconds of a process, from /proc/PID/stat (fields 14 and 15).
proc_cpu() {
  local ticks
  ticks=$(sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}')
  awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", t / hz}'
}

if (( PRODUCT == 1 && SECONDS_HTTP > 0 )); then
  if [[ -z "${POWERTUNE:-}" ]]; then
    CARGO_TARGET_DIR="$TD" nice -n 10 cargo build --release -p powertune >/dev/null
    POWERTUNE=$TD/release/powertune
  fi
  echo "== powertune apm serve (release, pinned to core 0), ${SECONDS_HTTP}s, ${CONNS} connections"
  "${PIN0[@]}" "$POWERTUNE" apm serve --listen 127.0.0.1:0 2>"$WORK/product.err" &
  PPID_=$!; PIDS+=("$PPID_")
  PURL=""
  for _ in $(seq 1 300); do
    PURL=$(sed -n 's|.*OTLP/HTTP on \(http://[0-9.:]*\)/v1/traces.*|\1|p' "$WORK/product.err" | head -1)
    [[ -n "$PURL" ]] && break
    sleep 0.1
  done
  [[ -n "$PURL" ]] || { echo "powertune apm serve did not start:" >&2; cat "$WORK/product.err" >&2; exit 1; }
  c0=$(proc_cpu "$PPID_")
  "${PIN1[@]}" "$BIN" send "$PURL" "$SECONDS_HTTP" "$CONNS" 0 | tee "$WORK/psend.log"
  c1=$(proc_cpu "$PPID_")
  kill "$PPID_" 2>/dev/null || true; wait "$PPID_" 2>/dev/null || true
  spans=$(field receiver_spans "$(grep '^receiver_spans=' "$WORK/psend.log")")
  cpu=$(awk -v a="$c0" -v b="$c1" 'BEGIN {printf "%.2f", b - a}')
  per=$(awk -v s="$spans" -v c="$cpu" 'BEGIN {printf "%.0f", s / (c > 0.01 ? c : 0.01)}')
  ROWS+=("| \`powertune apm serve\` (release, multi-thread runtime pinned to core 0), ${SECONDS_HTTP} s: spans per CPU-second | **$per spans/s** ($spans spans, $cpu s CPU; accepted $(sed -n 's/.*= \([0-9]*\) spans\/s.*/\1/p' "$WORK/psend.log") spans/s wall clock) |")
fi

if [[ -n "$CALLGRIND" ]]; then
  command -v valgrind >/dev/null || { echo "CALLGRIND needs valgrind (apt-get install valgrind)" >&2; exit 1; }
  read -r N1 N2 <<<"$CALLGRIND"
  declare -A IR
  for n in "$N1" "$N2"; do
    echo "== callgrind: receiver for $n batches"
    start_receiver 600 3600 "$WORK/cg$n.log" "${PIN0[@]}" valgrind --tool=callgrind --callgrind-out-file="$WORK/cg$n.out"
    "${PIN1[@]}" "$BIN" send "$RURL" 300 4 0 "$n" >"$WORK/cgsend$n.log"
    stop_receiver
    IR[$n]=$(callgrind_annotate "$WORK/cg$n.out" 2>/dev/null | sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,)
    echo "   ${IR[$n]} instructions"
  done
  per=$(( (IR[$N2] - IR[$N1]) / ((N2 - N1) * 500) ))
  ROWS+=("| receiver instructions per span (callgrind, $N1 vs $N2 batches of 500 spans) | $per Ir/span |")
fi

if (( SOAK_SECS > 0 )); then
  echo "== soak: ${SOAK_RATE} spans/s for ${SOAK_SECS}s, window ${SOAK_RETAIN}, receiver sampled every ${SAMPLE_SECS}s ($PINNED)"
  start_receiver $((SOAK_SECS + 60)) "$SAMPLE_SECS" "$WORK/soak.log" env APM_RETAIN="$SOAK_RETAIN" "${PIN0[@]}"
  "${PIN1[@]}" "$BIN" send "$RURL" "$SOAK_SECS" "$CONNS" "$SOAK_RATE" | tee "$WORK/soaksend.log"
  stop_receiver
  echo
  echo "| t (s) | spans received | receiver CPU (s) | receiver RSS (KiB) |"
  echo "|---|---|---|---|"
  grep '^sample ' "$WORK/soak.log" | while read -r line; do
    echo "| $(field t "$line") | $(field spans "$line") | $(field cpu_s "$line") | $(field rss_kib "$line") |"
  done
  # Steady state: the samples after the window has filled once.
  win=$(grep '^window ' "$WORK/soak.log" | awk '{print $2}')
  steady=$(grep '^sample ' "$WORK/soak.log" | awk -v w="${win:-0}" '{t=$2; sub("t=","",t); r=$5; sub("rss_kib=","",r); if (t+0 > w+0) print r}')
  if [[ -n "$steady" ]]; then
    first=$(head -1 <<<"$steady"); last=$(tail -1 <<<"$steady")
    min=$(sort -n <<<"$steady" | head -1); max=$(sort -n <<<"$steady" | tail -1)
    ROWS+=("| soak: ${SOAK_RATE} spans/s for ${SOAK_SECS} s, window ${SOAK_RETAIN}; receiver RSS once the window is full (t > ${win} s): first / min / max / last | $first / $min / $max / $last KiB ($(( (max - min) * 100 / max ))% spread) |")
  else
    ROWS+=("| soak: ${SOAK_RATE} spans/s for ${SOAK_SECS} s, window ${SOAK_RETAIN} | no sample after the window filled: run longer than SOAK_RETAIN |")
  fi
  r=$(grep '^receiver ' "$WORK/soak.log"); echo "$r"
  ROWS+=("| soak: spans received / receiver CPU | $(field spans "$r") / $(field cpu_s "$r") s |")
fi

echo
echo "load before: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"
echo
echo "| run | figure |"
echo "|---|---|"
for r in "${ROWS[@]}"; do echo "$r"; done
