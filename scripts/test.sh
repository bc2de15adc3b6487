#!/usr/bin/env bash
# Installs what the tests need, starts PostgreSQL and Redis on loopback when they are
# not running, then checks formatting and lints and runs the whole suite once.
#
#   scripts/test.sh              # everything
#   scripts/test.sh -p powertune-db   # extra arguments go to the test runner
#
# Services (private instances, data under .test-services/, loopback only):
#   PostgreSQL  127.0.0.1:${POWERTUNE_TEST_PG_PORT:-55432}  (pg_stat_statements preloaded)
#   Redis       127.0.0.1:${POWERTUNE_TEST_REDIS_PORT:-56379}
# Set POWERTUNE_TEST_PG / POWERTUNE_TEST_REDIS to use servers of your own instead.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
services="$root/.test-services"
mkdir -p "$services"

log() { printf '==> %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# --- packages ---------------------------------------------------------------
need=()
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
[ -n "$pg_bin" ] && [ -x "$pg_bin/initdb" ] || need+=(postgresql postgresql-contrib)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v ruby >/dev/null 2>&1 && ruby -e 'require "sidekiq"' >/dev/null 2>&1 || need+=(ruby-sidekiq)
command -v chromium >/dev/null 2>&1 || need+=(chromium)   # HTML reports opened by the tests
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi
python3 -c 'import anthropic, ollama, openai' >/dev/null 2>&1 || python3 -m pip install --quiet anthropic ollama openai
if ! command -v cargo-nextest >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install --locked cargo-nextest >/dev/null
fi

# --- PostgreSQL -------------------------------------------------------------
pg_port=${POWERTUNE_TEST_PG_PORT:-55432}
if [ -z "${POWERTUNE_TEST_PG:-}" ]; then
  pgdata="$services/pg"
  run_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
  if ! "$pg_bin/pg_isready" -h 127.0.0.1 -p "$pg_port" -q 2>/dev/null; then
    if [ ! -f "$pgdata/PG_VERSION" ]; then
      log "initialising PostgreSQL in $pgdata"
      rm -rf "$pgdata"; mkdir -p "$pgdata"
      [ "$(id -u)" = 0 ] && chown postgres:postgres "$pgdata"
      run_pg "$pg_bin/initdb" -D "$pgdata" -U postgres --auth=trust -E UTF8 >/dev/null
      cat >> "$pgdata/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $pg_port
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
    log "starting PostgreSQL on 127.0.0.1:$pg_port"
    run_pg "$pg_bin/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w -t 60 start >/dev/null
  fi
  export POWERTUNE_TEST_PG="postgres://postgres@127.0.0.1:$pg_port/postgres"
fi

# --- Redis --------------------------------------------------------------------
redis_port=${POWERTUNE_TEST_REDIS_PORT:-56379}
if [ -z "${POWERTUNE_TEST_REDIS:-}" ]; then
  if ! redis-cli -h 127.0.0.1 -p "$redis_port" ping >/dev/null 2>&1; then
    log "starting Redis on 127.0.0.1:$redis_port"
    mkdir -p "$services/redis"
    redis-server --bind 127.0.0.1 --port "$redis_port" --daemonize yes \
      --dir "$services/redis" --save '' --appendonly no --databases 64 \
      --enable-debug-command local --logfile "$services/redis/server.log"
    for _ in $(seq 1 50); do redis-cli -h 127.0.0.1 -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  export POWERTUNE_TEST_REDIS="redis://127.0.0.1:$redis_port"
fi

# --- checks and the suite -----------------------------------------------------
log "cargo fmt --check"
cargo fmt --all --check
log "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
log "tests"
cargo nextest run --workspace --no-fail-fast "$@"
