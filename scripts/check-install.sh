#!/usr/bin/env bash
# Installs powertune the documented way, `cargo install --path crates/cli --locked`,
# into a temporary root and runs the installed binary (--version, a completion script,
# the man page). Run by scripts/test.sh after the suite: it reuses the build's target
# directory (CARGO_TARGET_DIR, default ./target) and the dev profile (--debug), so it
# costs a link, not a release build. docs/install.md has the release command.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '==> %s\n' "cargo install --path crates/cli --locked (into $tmp)"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$(pwd -P)/target}" \
  cargo install --path crates/cli --locked --debug --root "$tmp" --quiet
bin="$tmp/bin/powertune"
version=$("$bin" --version)
case "$version" in
  "powertune $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)") ;;
  *) echo "check-install: unexpected --version output: $version" >&2; exit 1 ;;
esac
# Whole outputs first: grep -q closing the pipe early would fail the pipeline.
completion=$("$bin" completions bash)
grep -q 'complete -F _powertune' <<<"$completion" \
  || { echo "check-install: no bash completion from the installed binary" >&2; exit 1; }
page=$("$bin" man)
grep -q '^\.TH powertune 1' <<<"$page" \
  || { echo "check-install: no man page from the installed binary" >&2; exit 1; }
echo "check-install: $version installed and ran"
