#!/usr/bin/env bash
# Size and render time of the HTML report of the full-length runbook run:
# `powertune demo --time-scale 1` (about 14 minutes against the embedded target, all on
# loopback), then the page opened RUNS times in headless Chromium. The render time is
# what the page itself records once every chart is drawn (`data-rendered-ms`:
# milliseconds since navigation started, so HTML parsing, the inlined uPlot and the
# drawing of every chart are in it; Chromium's own start is not).
#
#   scripts/bench/report-page.sh                       # the 14-minute run, RUNS=5
#   TIME_SCALE=0.1 scripts/bench/report-page.sh        # a 1.4-minute run, for a try
#   PAGE=powertune-demo.html scripts/bench/report-page.sh   # time an existing page only
#   POWERTUNE_BIN=target/release/powertune scripts/bench/report-page.sh   # no rebuild
set -euo pipefail
cd "$(dirname "$0")/../.."
TIME_SCALE=${TIME_SCALE:-1}
RUNS=${RUNS:-5}
out=${OUT:-target/bench/report-page}
mkdir -p "$out"

chrome=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$chrome" ]; then
  echo "chromium not found: install Debian's chromium package (apt-get install chromium)" >&2
  exit 1
fi

page=${PAGE:-}
if [ -z "$page" ]; then
  if [ -n "${POWERTUNE_BIN:-}" ]; then
    bin=$POWERTUNE_BIN
  else
    cargo build --release -p powertune --quiet
    bin=target/release/powertune
  fi
  page="$out/demo.html"
  echo "==> powertune demo --time-scale $TIME_SCALE (the whole runbook plan; ~$(awk "BEGIN{printf \"%.1f\", 14*$TIME_SCALE}") minutes)"
  start=$(date +%s)
  code=0
  "$bin" demo --time-scale "$TIME_SCALE" --html "$page" --json "$out/demo.json" >"$out/demo.txt" 2>&1 || code=$?
  echo "    took $(( $(date +%s) - start )) s, exit $code (0 pass, 99 a target missed: both draw a page)"
  case $code in 0|99) ;; *) cat "$out/demo.txt" >&2; exit 1 ;; esac
fi

bytes=$(stat -c %s "$page")
points=$(grep -o '"x":\[[^]]*\]' "$page" | awk 'NR == 1 { n = gsub(/,/, ",") + 1 } END { print n + 0 }')
charts=$(grep -o '"id":"[^"]*","title"' "$page" | wc -l)
echo "==> page: $page"
echo "    size: $bytes bytes ($(awk "BEGIN{printf \"%.2f\", $bytes/1048576}") MiB; goal < 2 MB)"
echo "    charts: $charts, points per line: $points"

abs=$(readlink -f "$page")
times=()
for i in $(seq 1 "$RUNS"); do
  profile=$(mktemp -d)
  dom=$("$chrome" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --dump-dom "file://$abs" 2>/dev/null)
  rm -rf "$profile"
  ms=$(printf '%s' "$dom" | grep -o 'data-rendered-ms="[0-9.]*"' | head -n 1 | grep -o '[0-9.]*' || true)
  if [ -z "$ms" ]; then
    echo "run $i: the page did not finish drawing (no data-rendered-ms)" >&2
    exit 1
  fi
  echo "    render $i: ${ms} ms"
  times+=("$ms")
done
printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "==> render time: median %.1f ms, min %.1f, max %.1f over %d runs (goal < 1000 ms)\n", m, a[1], a[NR], NR}'
