#!/usr/bin/env bash
# Installs what the tests need, starts this checkout's own PostgreSQL and Redis on
# loopback, then checks formatting and lints, runs the whole suite once, installs the
# binary with `cargo install` into a temporary root and checks the packaging (the
# container image when docker works, the systemd units when systemd-analyze exists).
#
#   scripts/test.sh                     # everything
#   scripts/test.sh -p powertune-db     # extra arguments go to the test runner
#
# Services (private instances, data, pid files and logs under .test-services/):
#   PostgreSQL  127.0.0.1:PORT, pg_stat_statements preloaded
#   Redis       127.0.0.1:PORT, 64 databases
# PORT is POWERTUNE_TEST_PG_PORT / POWERTUNE_TEST_REDIS_PORT (defaults 55432 / 56379)
# when that port is free, else a free port the script picks. A server already
# answering there is reused only when it is this checkout's own (its pid file under
# .test-services/ names a live process serving that data directory); someone else's
# server is never used. Set POWERTUNE_TEST_PG / POWERTUNE_TEST_REDIS to use servers of
# your own instead. Python test dependencies live in .test-services/venv, first on PATH.
# Stop the services with scripts/test-services.sh stop.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd -P)
services="$root/.test-services"
mkdir -p "$services"
started=$(date +%s)

log() { printf '==> %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# --- packages ---------------------------------------------------------------
need=()
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
[ -n "$pg_bin" ] && [ -x "$pg_bin/initdb" ] || need+=(postgresql postgresql-contrib)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v ruby >/dev/null 2>&1 && ruby -e 'require "sidekiq"' >/dev/null 2>&1 || need+=(ruby-sidekiq)
command -v chromium >/dev/null 2>&1 || need+=(chromium)   # HTML reports opened by the tests
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
[ -x /usr/bin/prometheus ] || need+=(prometheus)   # load's remote write is read back from it
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi
# hypopg (index suggestions checked by the planner) for the PostgreSQL found above.
pg_major=$(basename "$(dirname "$pg_bin")")
if [ ! -f "/usr/share/postgresql/$pg_major/extension/hypopg.control" ]; then
  log "installing postgresql-$pg_major-hypopg"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "postgresql-$pg_major-hypopg" >/dev/null
fi

# Python: a virtual environment of our own (the system Python refuses pip installs
# under PEP 668), first on PATH, so the tests' `python3` has the SDKs.
venv="$services/venv"
if [ ! -x "$venv/bin/python3" ]; then
  log "creating the Python virtual environment $venv"
  python3 -m venv "$venv"
fi
export PATH="$venv/bin:$PATH"
python3 -c 'import anthropic, ollama, openai, opentelemetry.proto' >/dev/null 2>&1 || {
  log "installing the Python SDKs into $venv"
  python3 -m pip install --quiet --disable-pip-version-check anthropic ollama openai opentelemetry-proto
}
if ! command -v cargo-nextest >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install --locked cargo-nextest >/dev/null
fi

# A free loopback TCP port: $1 when nothing listens there, else one the kernel picks.
free_port() {
  python3 - "$1" <<'PY'
import socket, sys
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); return s.getsockname()[1]
    except OSError:
        return None
    finally:
        s.close()
print(free(int(sys.argv[1])) or free(0))
PY
}
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

# --- PostgreSQL -------------------------------------------------------------
if [ -z "${POWERTUNE_TEST_PG:-}" ]; then
  pgdata="$services/pg"
  run_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
  pg_port=
  # Ours when postmaster.pid names a live postmaster serving this data directory.
  if [ -f "$pgdata/postmaster.pid" ]; then
    pid=$(sed -n 1p "$pgdata/postmaster.pid"); dir=$(sed -n 2p "$pgdata/postmaster.pid")
    port=$(sed -n 4p "$pgdata/postmaster.pid")
    if alive "$pid" && [ "$dir" = "$pgdata" ] \
       && "$pg_bin/pg_isready" -h 127.0.0.1 -p "$port" -q 2>/dev/null; then
      pg_port=$port
    fi
  fi
  if [ -z "$pg_port" ]; then
    if [ ! -f "$pgdata/PG_VERSION" ]; then
      log "initialising PostgreSQL in $pgdata"
      rm -rf "$pgdata"; mkdir -p "$pgdata"
      [ "$(id -u)" = 0 ] && chown postgres:postgres "$pgdata"
      run_pg "$pg_bin/initdb" -D "$pgdata" -U postgres --auth=trust -E UTF8 >/dev/null
      cat >> "$pgdata/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$pgdata'
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = all
track_io_timing = on
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
    fi
    pg_port=$(free_port "${POWERTUNE_TEST_PG_PORT:-55432}")
    log "starting PostgreSQL on 127.0.0.1:$pg_port"
    run_pg "$pg_bin/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -o "-p $pg_port" -w -t 60 start >/dev/null
  fi
  export POWERTUNE_TEST_PG="postgres://postgres@127.0.0.1:$pg_port/postgres"
fi

# --- Redis --------------------------------------------------------------------
if [ -z "${POWERTUNE_TEST_REDIS:-}" ]; then
  rdir="$services/redis"
  mkdir -p "$rdir"
  redis_port=
  # Ours when our pid file names a live server whose working directory is ours.
  if [ -f "$rdir/redis.pid" ] && [ -f "$rdir/port" ]; then
    pid=$(cat "$rdir/redis.pid"); port=$(cat "$rdir/port")
    if alive "$pid" \
       && [ "$(redis-cli -h 127.0.0.1 -p "$port" config get dir 2>/dev/null | sed -n 2p)" = "$rdir" ]; then
      redis_port=$port
    fi
  fi
  if [ -z "$redis_port" ]; then
    redis_port=$(free_port "${POWERTUNE_TEST_REDIS_PORT:-56379}")
    log "starting Redis on 127.0.0.1:$redis_port"
    echo "$redis_port" > "$rdir/port"
    redis-server --bind 127.0.0.1 --port "$redis_port" --daemonize yes \
      --dir "$rdir" --pidfile "$rdir/redis.pid" --save '' --appendonly no --databases 64 \
      --enable-debug-command local --logfile "$rdir/server.log"
    for _ in $(seq 1 50); do redis-cli -h 127.0.0.1 -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  export POWERTUNE_TEST_REDIS="redis://127.0.0.1:$redis_port"
fi
log "PostgreSQL $POWERTUNE_TEST_PG, Redis $POWERTUNE_TEST_REDIS"

# --- checks and the suite -----------------------------------------------------
log "cargo fmt --check"
cargo fmt --all --check
log "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
log "tests"
cargo nextest run --workspace --no-fail-fast "$@"

# --- packaging ------------------------------------------------------------------
scripts/check-install.sh
scripts/check-image.sh
log "done in $(( $(date +%s) - started ))s"
