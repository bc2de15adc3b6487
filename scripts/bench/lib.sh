# Shared by the benchmark scripts (sourced, not run).

# Sets `bin`: $POWERTUNE_BIN when given (an already built binary), else a fresh
# release build.
powertune_bin() {
  if [ -n "${POWERTUNE_BIN:-}" ]; then
    bin=$POWERTUNE_BIN
  else
    echo "==> building powertune (release)"
    cargo build --release -q -p powertune
    bin=target/release/powertune
  fi
}

# Stops process $1 the way a user would (SIGINT), waiting up to 5 s before SIGKILL.
stop_pid() {
  local p=$1
  if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
    kill -INT "$p" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  fi
}
