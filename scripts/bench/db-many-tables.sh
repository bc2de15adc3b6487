#!/usr/bin/env bash
# Benchmark for issue 3 item 9: the full `powertune db` run on a database with
# TABLES tables (default 2,000) and about 2.5 indexes per table (5,000), plus a small
# database, showing wall time and that the number of queries does not grow with the
# schema. Loopback only (the test PostgreSQL of scripts/test.sh by default); bounded
# by TABLES and RUNS; the databases it creates are dropped on exit.
#
#   scripts/bench/db-many-tables.sh                 # 2,000 tables, 5 runs, release build
#   PROFILE=debug TABLES=500 RUNS=3 scripts/bench/db-many-tables.sh
#
# The peer tool (PgHero) is a Rails engine and is not run here: its index, vacuum and
# connection pages issue one catalog query per page, like powertune's per-check queries.
set -euo pipefail
cd "$(dirname "$0")/../.."

TABLES=${TABLES:-2000}
RUNS=${RUNS:-5}
PROFILE=${PROFILE:-release}
admin=${POWERTUNE_TEST_PG:-postgres://postgres@127.0.0.1:55432/postgres}
[ "$TABLES" -ge 1 ] && [ "$TABLES" -le 20000 ] || { echo "TABLES must be 1..20000"; exit 1; }
[ "$RUNS" -ge 1 ] && [ "$RUNS" -le 50 ] || { echo "RUNS must be 1..50"; exit 1; }
case "$admin" in
  *@127.0.0.1:*|*@127.0.0.1/*|*@localhost:*|*@localhost/*) ;;
  *) echo "refusing a non-loopback server: $(echo "$admin" | sed -E 's#(://[^:/@]*):[^@]*@#\1:***@#')"; exit 1 ;;
esac

if ! command -v psql >/dev/null 2>&1; then
  echo "==> installing postgresql-client"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq postgresql-client >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq postgresql-client >/dev/null; fi
fi

if [ "$PROFILE" = release ]; then
  cargo build --release -q -p powertune
  bin=target/release/powertune
else
  cargo build -q -p powertune
  bin=target/debug/powertune
fi

base=${admin%/*}
big=pt_bench_big_$$
small=pt_bench_small_$$
cleanup() {
  psql -q "$admin" -c "DROP DATABASE IF EXISTS $big WITH (FORCE)" -c "DROP DATABASE IF EXISTS $small WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
psql -q "$admin" -c "CREATE DATABASE $big" -c "CREATE DATABASE $small"

# Every table: a primary key and an index on (a); every other table also (b, a);
# every fourth table a foreign key to t_1 without an index. Batches of 100 tables keep
# the lock table of one transaction small.
make_schema() {
  local db=$1 n=$2 from=1
  psql -q "$base/$db" -c "CREATE TABLE t_0 (id bigint PRIMARY KEY)"
  while [ "$from" -le "$n" ]; do
    local to=$((from + 99)); [ "$to" -gt "$n" ] && to=$n
    psql -q "$base/$db" -c "DO \$\$ BEGIN FOR i IN $from..$to LOOP
      EXECUTE format('CREATE TABLE t_%s (id bigint PRIMARY KEY, parent_id bigint %s, a int, b int, c text)', i,
                     CASE WHEN i % 4 = 0 THEN 'REFERENCES t_0(id)' ELSE '' END);
      EXECUTE format('CREATE INDEX ON t_%s (a)', i);
      IF i % 2 = 0 THEN EXECUTE format('CREATE INDEX ON t_%s (b, a)', i); END IF;
    END LOOP; END \$\$"
    from=$((to + 1))
  done
}
echo "==> creating $TABLES tables in $big (and 20 in $small)"
make_schema "$big" "$TABLES"
make_schema "$small" 20
tables=$(psql -XAt "$base/$big" -c "SELECT count(*) FROM pg_stat_user_tables")
indexes=$(psql -XAt "$base/$big" -c "SELECT count(*) FROM pg_stat_user_indexes")

run() {
  local db=$1 out=$2
  local t0 t1
  t0=$(date +%s%N)
  "$bin" db --url "$base/$db" --json "$out" >/dev/null || [ $? -eq 99 ]
  t1=$(date +%s%N)
  echo $(((t1 - t0) / 1000000))
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

json=$(mktemp)
times=$(for _ in $(seq "$RUNS"); do run "$big" "$json"; done | median)
rt_big=$(grep -o '"round_trips": [0-9]*' "$json" | grep -o '[0-9]*$')
small_times=$(for _ in $(seq "$RUNS"); do run "$small" "$json"; done | median)
rt_small=$(grep -o '"round_trips": [0-9]*' "$json" | grep -o '[0-9]*$')
rm -f "$json"

echo
echo "load (1, 5, 15 min) at the end: $(uptime | sed 's/.*load average: //')"
printf '%-28s %8s %8s %12s %8s\n' database tables indexes "median ms" queries
printf '%-28s %8s %8s %12s %8s\n' "$big" "$tables" "$indexes" "$times" "$rt_big"
printf '%-28s %8s %8s %12s %8s\n' "$small" 21 "" "$small_times" "$rt_small"
[ "$rt_big" = "$rt_small" ] && echo "queries independent of the schema: yes" || echo "queries independent of the schema: NO"
[ "$times" -lt 3000 ] && echo "target < 3000 ms: met" || echo "target < 3000 ms: NOT met"
