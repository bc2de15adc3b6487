#!/usr/bin/env bash
# Builds the container image from ./Dockerfile and runs it, when a docker daemon
# answers; otherwise says so and does nothing (the Dockerfile's static checks run in
# the suite: crates/cli/tests/packaging_cli.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! docker info >/dev/null 2>&1; then
  echo "check-image: no docker daemon here; image not built (static checks ran in packaging_cli.rs)"
  exit 0
fi
tag=powertune:check
printf '==> %s\n' "docker build -t $tag ."
docker build -q -t "$tag" . >/dev/null
out=$(docker run --rm "$tag" --version)
case "$out" in
  "powertune "*) ;;
  *) echo "check-image: unexpected --version output from the image: $out" >&2; exit 1 ;;
esac
size=$(docker image inspect -f '{{.Size}}' "$tag")
echo "check-image: $out; image $((size / 1024 / 1024)) MiB"
