#!/usr/bin/env bash
# Stops the PostgreSQL and Redis that scripts/test.sh started for this checkout (found
# by their pid files under .test-services/; nothing else is touched).
#
#   scripts/test-services.sh stop
set -euo pipefail
cd "$(dirname "$0")/.."
services="$(pwd -P)/.test-services"
case "${1:-}" in
  stop)
    if [ -f "$services/pg/postmaster.pid" ]; then
      pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
      if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$pg_bin/pg_ctl" -D "$services/pg" -m fast stop
      else
        "$pg_bin/pg_ctl" -D "$services/pg" -m fast stop
      fi
    fi
    if [ -f "$services/redis/redis.pid" ]; then
      pid=$(cat "$services/redis/redis.pid")
      kill -0 "$pid" 2>/dev/null && kill "$pid"
      rm -f "$services/redis/redis.pid"
    fi
    ;;
  *) echo "usage: scripts/test-services.sh stop" >&2; exit 1 ;;
esac
