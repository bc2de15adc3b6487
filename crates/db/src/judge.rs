//! Judges: pure functions from a [`DbSnapshot`] and the targets to findings. Each
//! check also says when it found nothing (a `PASS` line), so a report shows what
//! was looked at.

use crate::snapshot::*;
use crate::visibility::{self, visibility};
use powertune_core::report::truncate;
use powertune_core::units::{self, Quantity};
use powertune_core::{Finding, Targets, Value, Verdict};
use std::collections::HashMap;

const AREA: &str = "db";
/// Transaction-ID age above which wraparound is imminent enough to FAIL (about
/// 650 million XIDs before PostgreSQL stops accepting writes; PgHero's dashboard mark).
pub const XID_FAIL_AGE: i64 = 1_500_000_000;
/// An idle-in-transaction session younger than this is a normal gap between statements
/// (the default of [`Limits::idle_in_transaction_s`]).
pub const IDLE_IN_TX_MIN_S: f64 = 1.0;
/// Tables with fewer rows than this are not judged for vacuum, analyze or dead tuples.
pub const VACUUM_MIN_ROWS: i64 = 1000;
/// Indexes smaller than this are not reported as unused (PgHero's 10 MB).
pub const UNUSED_INDEX_MIN_BYTES: i64 = 10 * 1024 * 1024;
/// Cache hit ratios are judged only after this many block reads (hit + read).
pub const CACHE_MIN_BLOCKS: i64 = 1000;

/// The engine's own thresholds, which the runbook's targets do not name.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Seconds a session may sit idle in a transaction before it is flagged.
    pub idle_in_transaction_s: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            idle_in_transaction_s: IDLE_IN_TX_MIN_S,
        }
    }
}

/// Every check of `powertune db`.
pub fn judge(s: &DbSnapshot, t: &Targets, l: &Limits) -> Vec<Finding> {
    let mut out = Vec::new();
    out.extend(visibility(s));
    out.extend(slow_queries(s, t));
    out.extend(index_coverage(s, t));
    out.extend(fk_without_index(s));
    out.extend(index_hygiene(s));
    out.extend(vector_indexes(s));
    out.extend(vacuum(s, t));
    out.extend(wraparound(s));
    out.extend(crate::sequences::sequences(s));
    out.extend(crate::space::bloat(s, t.database.bloat_bytes));
    out.extend(crate::suggest::findings(s));
    out.extend(connections(s, t));
    out.extend(crate::sources::connections_by_source(s, t));
    out.extend(crate::replication::replication(s));
    out.extend(stuck_sessions(s, t, l));
    out.extend(pool_size(s, t));
    out.extend(cache_hit(s, t));
    out
}

/// A table's size from `relpages`, which is 0 until the first VACUUM / ANALYZE.
fn table_size(tb: &TableStats) -> String {
    if tb.size_bytes == 0 && tb.n_live_tup > 0 {
        "size not estimated yet (no VACUUM / ANALYZE so far)".to_string()
    } else {
        bytes(tb.size_bytes)
    }
}

/// A size from the catalog (negative sizes, which it never reports, read as 0).
fn bytes(b: i64) -> String {
    units::bytes(b.max(0) as u64)
}

fn secs(v: f64) -> String {
    units::seconds(v.max(0.0))
}

fn count(n: impl Into<f64>) -> Quantity {
    Quantity::count(n.into())
}

/// One line of a query, whitespace collapsed.
pub fn one_line(q: &str) -> String {
    q.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Slow statements from `pg_stat_statements`: mean above `max_query_ms` WARN, above
/// `slow_query_ms` FAIL.
pub fn slow_queries(s: &DbSnapshot, t: &Targets) -> Vec<Finding> {
    let d = &t.database;
    let (statements, total, slow) = match &s.statements {
        StatementsState::Available {
            statements,
            total_statements,
            slow_statements,
        } => (statements, *total_statements, *slow_statements),
        other => return vec![statements_missing(other)],
    };
    let (hidden, statements): (Vec<&Statement>, Vec<&Statement>) =
        statements.iter().partition(|st| visibility::is_hidden(st));
    let mut out: Vec<Finding> = statements
        .iter()
        .filter(|st| st.mean_ms >= d.max_query_ms)
        .map(|st| {
            Finding::new(
                AREA,
                "slow_query",
                truncate(&one_line(&st.query), 120),
                Verdict::lower_is_better(st.mean_ms, d.max_query_ms, Some(d.slow_query_ms)),
            )
            .observed(Value::of(Quantity::ms(st.mean_ms)).note("mean"))
            .target(Value::lt(Quantity::ms(d.max_query_ms)))
            .limit(Value::of(Quantity::ms(d.slow_query_ms)))
            .evidence(format!(
                "queryid {}, calls {}, total {}, max {}, rows {}, shared hit ratio {}, role {}",
                st.queryid,
                st.calls,
                units::ms(st.total_ms),
                units::ms(st.max_ms),
                st.rows,
                units::percent(st.hit_pct()),
                st.user
            ))
            .action("run EXPLAIN ANALYZE on it (powertune db explain \"...\" --param ...): look for seq scans, large sorts or missing indexes")
        })
        .collect();
    let hidden_slow = visibility::hidden_slow_statements(s, &hidden, t);
    let listed = out.len() + hidden_slow.as_ref().map_or(0, |(n, _)| *n);
    out.extend(hidden_slow.map(|(_, f)| f));
    if out.is_empty() {
        let worst = statements.iter().map(|x| x.mean_ms).fold(0.0, f64::max);
        out.push(
            Finding::new(
                AREA,
                "slow_queries",
                format!("{total} statements"),
                Verdict::Pass,
            )
            .observed(Value::of(Quantity::ms(worst)).note("slowest mean"))
            .target(Value::lt(Quantity::ms(d.max_query_ms))),
        );
    } else if slow as usize > listed {
        out.push(
            Finding::new(
                AREA,
                "slow_queries",
                format!("{total} statements"),
                Verdict::Warn,
            )
            .observed(
                Value::of(count(slow as f64)).note(format!("above {}", units::ms(d.max_query_ms))),
            )
            .target(Value::of(count(0)))
            .evidence(format!(
                "only the top ones are listed; raise --top to see all {slow}"
            )),
        );
    }
    out
}

fn statements_missing(state: &StatementsState) -> Finding {
    let (observed, evidence) = match state {
        StatementsState::NotInstalled => (
            "extension not created",
            "CREATE EXTENSION pg_stat_statements has not been run in this database".to_string(),
        ),
        StatementsState::NotPreloaded => (
            "not preloaded",
            "the extension exists but pg_stat_statements is not in shared_preload_libraries"
                .to_string(),
        ),
        StatementsState::Unavailable { reason } => ("unavailable", reason.clone()),
        StatementsState::Available { .. } => ("available", String::new()),
    };
    Finding::new(AREA, "pg_stat_statements", "slow query log", Verdict::Warn)
        .observed(observed)
        .target("installed")
        .evidence(format!("{evidence}; slow-query check skipped, every other check ran"))
        .action("add pg_stat_statements to shared_preload_libraries in postgresql.conf (or the provider's parameter group), restart PostgreSQL, then run CREATE EXTENSION pg_stat_statements; in this database")
}

/// Index coverage `idx_scan / (seq_scan + idx_scan)` on tables above `hot_table_rows`.
pub fn index_coverage(s: &DbSnapshot, t: &Targets) -> Vec<Finding> {
    let d = &t.database;
    let mut hot = 0;
    let mut lowest: Option<f64> = None;
    let mut out = Vec::new();
    for tb in &s.tables {
        let scans = tb.seq_scan + tb.idx_scan;
        if tb.n_live_tup < d.hot_table_rows as i64 || scans == 0 {
            continue;
        }
        hot += 1;
        let cov = tb.idx_scan as f64 * 100.0 / scans as f64;
        lowest = Some(lowest.map_or(cov, |l: f64| l.min(cov)));
        if cov > d.index_coverage_pct {
            continue;
        }
        out.push(
            Finding::new(AREA, "index_coverage", tb.qualified(), Verdict::Warn)
                .observed(Value::of(Quantity::percent(cov)))
                .target(Value::gt(Quantity::percent(d.index_coverage_pct)))
                .evidence(format!(
                    "{} seq scans, {} index scans, {} live rows, {}",
                    tb.seq_scan,
                    tb.idx_scan,
                    tb.n_live_tup,
                    table_size(tb)
                ))
                .action("seq scans on a hot table: add a covering index on the WHERE / JOIN column (find the query in pg_stat_statements and run powertune db explain on it)"),
        );
    }
    if out.is_empty() {
        out.push(
            Finding::new(
                AREA,
                "index_coverage",
                format!("{hot} hot tables"),
                Verdict::Pass,
            )
            .observed(match lowest {
                Some(l) => Value::of(Quantity::percent(l)).note("lowest"),
                None => Value::from("no hot tables"),
            })
            .target(Value::gt(Quantity::percent(d.index_coverage_pct))),
        );
    }
    out
}

/// Indexes grouped by (schema, table), so per-table checks stay linear in the schema size.
fn by_table(s: &DbSnapshot) -> HashMap<(&str, &str), Vec<&IndexStats>> {
    let mut m: HashMap<(&str, &str), Vec<&IndexStats>> = HashMap::new();
    for ix in &s.indexes {
        m.entry((ix.schema.as_str(), ix.table.as_str()))
            .or_default()
            .push(ix);
    }
    m
}

/// Whether some valid, non-partial index starts with exactly `cols` (in any order).
fn has_leading_index(indexes: Option<&Vec<&IndexStats>>, cols: &[String]) -> bool {
    indexes.is_some_and(|list| {
        list.iter().any(|ix| {
            ix.valid
                && ix.predicate.is_none()
                && ix.columns.len() >= cols.len()
                && cols.iter().all(|c| ix.columns[..cols.len()].contains(c))
        })
    })
}

/// Foreign keys whose columns lead no index (the runbook: every FK is indexed).
pub fn fk_without_index(s: &DbSnapshot) -> Vec<Finding> {
    let tables = by_table(s);
    let mut out: Vec<Finding> = s
        .foreign_keys
        .iter()
        .filter(|fk| {
            !fk.columns.is_empty()
                && !has_leading_index(
                    tables.get(&(fk.schema.as_str(), fk.table.as_str())),
                    &fk.columns,
                )
        })
        .map(|fk| {
            let table = qualify(&fk.schema, &fk.table);
            let cols = fk.columns.join(", ");
            Finding::new(AREA, "fk_without_index", format!("{table}({cols})"), Verdict::Warn)
                .observed("no index")
                .target("every FK indexed")
                .evidence(format!("constraint {} references {}", fk.name, fk.referenced_table))
                .action(format!(
                    "index the foreign key (t.references does it): CREATE INDEX CONCURRENTLY ON {table} ({cols});"
                ))
        })
        .collect();
    if out.is_empty() {
        out.push(
            Finding::new(
                AREA,
                "fk_without_index",
                format!("{} foreign keys", s.foreign_keys.len()),
                Verdict::Pass,
            )
            .observed(Value::of(count(0)).note("without an index"))
            .target("every FK indexed"),
        );
    }
    out
}

/// Unused, duplicate and invalid indexes.
pub fn index_hygiene(s: &DbSnapshot) -> Vec<Finding> {
    let tables = by_table(s);
    let mut out = Vec::new();
    for ix in &s.indexes {
        let name = qualify(&ix.schema, &ix.name);
        if !ix.valid {
            if !ix.being_built {
                out.push(
                    Finding::new(AREA, "invalid_index", &name, Verdict::Warn)
                        .observed("invalid")
                        .target("valid")
                        .evidence(format!("on {}, {} (a failed CREATE INDEX CONCURRENTLY leaves it behind; it costs writes and serves no reads)", ix.table, bytes(ix.size_bytes)))
                        .action(format!("DROP INDEX CONCURRENTLY {name}; then create it again")),
                );
            }
            continue;
        }
        if ix.idx_scan == 0
            && !ix.unique
            && !ix.primary
            && !ix.constraint
            && ix.size_bytes >= UNUSED_INDEX_MIN_BYTES
        {
            out.push(
                Finding::new(AREA, "unused_index", &name, Verdict::Warn)
                    .observed(Value::of(count(0)).note("index scans"))
                    .target(Value::gt(count(0)))
                    .evidence(format!(
                        "on {}, {}; scans counted since the last statistics reset",
                        ix.table,
                        bytes(ix.size_bytes)
                    ))
                    .action(format!(
                        "confirm on every replica, then DROP INDEX CONCURRENTLY {name};"
                    )),
            );
        }
        if ix.primary || ix.unique {
            continue;
        }
        let siblings = tables
            .get(&(ix.schema.as_str(), ix.table.as_str()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        if let Some(cover) = siblings.iter().find(|o| {
            o.name != ix.name
                && o.valid
                && o.method == ix.method
                && o.predicate == ix.predicate
                && o.expressions == ix.expressions
                && o.columns.len() >= ix.columns.len()
                && o.columns[..ix.columns.len()] == ix.columns[..]
                // identical twins: report only one of the pair
                && (o.columns.len() > ix.columns.len() || o.unique || o.primary || o.name < ix.name)
        }) {
            out.push(
                Finding::new(AREA, "duplicate_index", &name, Verdict::Warn)
                    .observed(format!("covered by {}", cover.name))
                    .target("no duplicates")
                    .evidence(format!(
                        "{} ({}) {} is a prefix of {} ({}) {}",
                        ix.name,
                        ix.columns.join(", "),
                        bytes(ix.size_bytes),
                        cover.name,
                        cover.columns.join(", "),
                        bytes(cover.size_bytes)
                    ))
                    .action(format!("DROP INDEX CONCURRENTLY {name};")),
            );
        }
    }
    if out.is_empty() {
        out.push(
            Finding::new(
                AREA,
                "index_hygiene",
                format!("{} indexes", s.indexes.len()),
                Verdict::Pass,
            )
            .observed(Value::of(count(0)).note("unused, duplicate or invalid"))
            .target(Value::of(count(0))),
        );
    }
    out
}

/// pgvector columns without an HNSW index.
pub fn vector_indexes(s: &DbSnapshot) -> Vec<Finding> {
    s.vector_columns
        .iter()
        .filter(|v| !v.index_methods.iter().any(|m| m == "hnsw"))
        .map(|v| {
            let table = qualify(&v.schema, &v.table);
            Finding::new(AREA, "vector_without_hnsw", format!("{table}.{}", v.column), Verdict::Warn)
                .observed(if v.index_methods.is_empty() {
                    "no index".to_string()
                } else {
                    v.index_methods.join(", ")
                })
                .target("hnsw")
                .evidence(format!("{} live rows", v.n_live_tup))
                .action(format!(
                    "CREATE INDEX CONCURRENTLY ON {table} USING hnsw ({} vector_cosine_ops); (pick the opclass of the distance you query with)",
                    v.column
                ))
        })
        .collect()
}

/// The runbook's quarterly query: dead tuples (top 25), never vacuumed / analyzed.
pub fn vacuum(s: &DbSnapshot, t: &Targets) -> Vec<Finding> {
    let mut by_dead: Vec<&TableStats> = s.tables.iter().collect();
    by_dead.sort_by_key(|t| std::cmp::Reverse(t.n_dead_tup));
    let mut out = Vec::new();
    for tb in by_dead.iter().take(25) {
        if tb.n_dead_tup < VACUUM_MIN_ROWS {
            continue;
        }
        let pct = tb.n_dead_tup as f64 * 100.0 / tb.n_live_tup.max(1) as f64;
        if pct <= t.database.dead_tuple_pct {
            continue;
        }
        let last = tb
            .last_autovacuum_age_s
            .map(|a| format!("last autovacuum {} ago", secs(a)))
            .unwrap_or_else(|| "never autovacuumed".into());
        // With no live tuple the ratio has no meaning: the count is the figure.
        let observed = if tb.n_live_tup <= 0 {
            Value::of(count(tb.n_dead_tup as f64)).note("dead, 0 live")
        } else {
            Value::of(Quantity::percent(pct)).note("dead")
        };
        out.push(
            Finding::new(AREA, "dead_tuples", tb.qualified(), Verdict::Warn)
                .observed(observed)
                .target(Value::le(Quantity::percent(t.database.dead_tuple_pct)))
                .evidence(format!(
                    "{} dead / {} live tuples, {last}{}",
                    tb.n_dead_tup,
                    tb.n_live_tup,
                    if tb.autovacuum_enabled {
                        ""
                    } else {
                        ", autovacuum disabled on this table"
                    }
                ))
                .action(format!(
                    "VACUUM ANALYZE {}; in a maintenance window{}",
                    tb.qualified(),
                    if tb.autovacuum_enabled {
                        ""
                    } else {
                        ", and ALTER TABLE ... RESET (autovacuum_enabled)"
                    }
                )),
        );
    }
    for tb in &s.tables {
        if tb.n_live_tup + tb.n_dead_tup < VACUUM_MIN_ROWS {
            continue;
        }
        if tb.last_vacuum_age_s.is_none() && tb.last_autovacuum_age_s.is_none() && tb.n_dead_tup > 0
        {
            out.push(
                Finding::new(AREA, "never_vacuumed", tb.qualified(), Verdict::Warn)
                    .observed("never")
                    .target("vacuumed")
                    .evidence(format!(
                        "{} live, {} dead tuples",
                        tb.n_live_tup, tb.n_dead_tup
                    ))
                    .action(format!(
                        "VACUUM ANALYZE {}; in a maintenance window",
                        tb.qualified()
                    )),
            );
        }
        if tb.last_analyze_age_s.is_none() && tb.last_autoanalyze_age_s.is_none() {
            out.push(
                Finding::new(AREA, "never_analyzed", tb.qualified(), Verdict::Warn)
                    .observed("never")
                    .target("analyzed")
                    .evidence(format!(
                        "{} live tuples; the planner estimates without statistics",
                        tb.n_live_tup
                    ))
                    .action(format!("ANALYZE {};", tb.qualified())),
            );
        }
    }
    if out.is_empty() {
        let dead: i64 = s.tables.iter().map(|x| x.n_dead_tup).sum();
        out.push(
            Finding::new(
                AREA,
                "vacuum",
                format!("{} tables", s.tables.len()),
                Verdict::Pass,
            )
            .observed(Value::of(count(dead as f64)).note("dead tuples"))
            .target(Value::le(Quantity::percent(t.database.dead_tuple_pct)).note("dead")),
        );
    }
    out
}

/// Transaction-ID wraparound danger per database.
pub fn wraparound(s: &DbSnapshot) -> Vec<Finding> {
    let warn_at = s.server.autovacuum_freeze_max_age.max(1) as i64;
    let mut out: Vec<Finding> = s
        .databases
        .iter()
        .filter(|d| d.xid_age > warn_at)
        .map(|d| {
            let v = if d.xid_age > XID_FAIL_AGE { Verdict::Fail } else { Verdict::Warn };
            Finding::new(AREA, "xid_wraparound", &d.name, v)
                .observed(Value::of(count(d.xid_age as f64)).note("transaction ID age"))
                .target(Value::lt(count(warn_at as f64)).note("autovacuum_freeze_max_age"))
                .limit(Value::of(count(XID_FAIL_AGE as f64)))
                .evidence(format!("{} transaction IDs left before PostgreSQL stops accepting writes", 2_147_483_647 - d.xid_age))
                .action("run VACUUM (FREEZE) on the oldest tables of this database (ORDER BY age(relfrozenxid) DESC) and check nothing holds back the xmin horizon (long transactions, replication slots)")
        })
        .collect();
    if out.is_empty() {
        let max = s.databases.iter().map(|d| d.xid_age).max().unwrap_or(0);
        out.push(
            Finding::new(
                AREA,
                "xid_wraparound",
                format!("{} databases", s.databases.len()),
                Verdict::Pass,
            )
            .observed(Value::of(count(max as f64)).note("oldest transaction ID age"))
            .target(Value::lt(count(warn_at as f64))),
        );
    }
    out
}

/// Counts sessions by state; `observer` adds the collector's own session.
pub fn count_connections(
    server: &ServerInfo,
    sessions: &[Session],
    observer: bool,
) -> ConnectionCounts {
    let mut c = ConnectionCounts {
        total: sessions.len() as u32 + u32::from(observer),
        active: u32::from(observer),
        ..Default::default()
    };
    for x in sessions {
        match x.state.as_deref() {
            Some("active") => c.active += 1,
            Some("idle") => c.idle += 1,
            Some(st) if st.starts_with("idle in transaction") => c.idle_in_transaction += 1,
            _ => c.other += 1,
        }
    }
    c.usable = server
        .max_connections
        .saturating_sub(server.superuser_reserved_connections);
    c.free = c.usable as i64 - c.total as i64;
    c
}

/// Usage against `max_connections`: FAIL when fewer than `pool_free_min` remain.
pub fn connections(s: &DbSnapshot, t: &Targets) -> Vec<Finding> {
    let c = count_connections(&s.server, &s.sessions, true);
    let min = t.database.pool_free_min as i64;
    let v = if c.free < min {
        Verdict::Fail
    } else {
        Verdict::Pass
    };
    vec![Finding::new(AREA, "connections", "max_connections", v)
        .observed(
            Value::of(count(c.free as f64))
                .note(format!("free of {}, {} used", c.usable, c.total)),
        )
        .target(Value::ge(count(min as f64)).note("free"))
        .evidence(format!(
            "active {}, idle {}, idle in transaction {}, other/hidden {}; max_connections {} ({} reserved for superusers)",
            c.active, c.idle, c.idle_in_transaction, c.other, s.server.max_connections, s.server.superuser_reserved_connections
        ))
        .action("the database is nearly out of connections: lower the pools' sizes or put PgBouncer in front, then find idle sessions holding connections")]
}

fn describe_session(x: &Session) -> String {
    format!(
        "pid {} {}@{} app '{}' state {} query: {}",
        x.pid,
        x.user.as_deref().unwrap_or("?"),
        x.database.as_deref().unwrap_or("?"),
        x.application,
        x.state.as_deref().unwrap_or("(hidden)"),
        truncate(&one_line(x.query.as_deref().unwrap_or("(hidden)")), 100)
    )
}

/// Stuck (long active), idle-in-transaction and blocked sessions: the Verification step.
pub fn stuck_sessions(s: &DbSnapshot, t: &Targets, l: &Limits) -> Vec<Finding> {
    let stuck = t.database.stuck_query_s;
    let idle_min = l.idle_in_transaction_s;
    let mut out = Vec::new();
    for x in &s.sessions {
        let state = x.state.as_deref().unwrap_or("");
        let qage = x.query_age_s.unwrap_or(0.0);
        if !x.blocked_by.is_empty() {
            let blockers: Vec<String> = x
                .blocked_by
                .iter()
                .map(|pid| match s.sessions.iter().find(|b| b.pid == *pid) {
                    Some(b) => format!(
                        "{} (in transaction for {})",
                        describe_session(b),
                        secs(b.xact_age_s.unwrap_or(0.0))
                    ),
                    None => format!("pid {pid}"),
                })
                .collect();
            let v = if qage >= stuck {
                Verdict::Fail
            } else {
                Verdict::Warn
            };
            out.push(
                Finding::new(AREA, "blocked_query", format!("pid {}", x.pid), v)
                    .observed(Value::of(Quantity::seconds(qage)).note("waiting"))
                    .target("not blocked")
                    .limit(Value::of(Quantity::seconds(stuck)))
                    .evidence(format!("{}; blocked by {}", describe_session(x), blockers.join("; ")))
                    .action(format!(
                        "end the blocker's transaction (commit it in the app, or SELECT pg_cancel_backend({}); / pg_terminate_backend if it is idle in transaction)",
                        x.blocked_by.first().copied().unwrap_or(0)
                    )),
            );
        } else if state == "active" && qage >= stuck {
            out.push(
                Finding::new(AREA, "stuck_query", format!("pid {}", x.pid), Verdict::Fail)
                    .observed(Value::of(Quantity::seconds(qage)).note("active"))
                    .target(Value::lt(Quantity::seconds(stuck)))
                    .evidence(describe_session(x))
                    .action(format!("find why it runs so long (powertune db explain on it); cancel it if it should not run: SELECT pg_cancel_backend({});", x.pid)),
            );
        }
        if state.starts_with("idle in transaction") {
            let age = x.state_age_s.unwrap_or(0.0);
            if age >= idle_min {
                let v = if age >= stuck {
                    Verdict::Fail
                } else {
                    Verdict::Warn
                };
                out.push(
                    Finding::new(AREA, "idle_in_transaction", format!("pid {}", x.pid), v)
                        .observed(
                            Value::of(Quantity::seconds(age)).note("idle in transaction"),
                        )
                        .target(Value::lt(Quantity::seconds(idle_min)))
                        .limit(Value::of(Quantity::seconds(stuck)))
                        .evidence(describe_session(x))
                        .action(format!("fix the code path that opens a transaction and waits (no I/O inside transactions); set idle_in_transaction_session_timeout; end it now with SELECT pg_terminate_backend({});", x.pid)),
                );
            }
        }
    }
    let hidden = visibility::hidden_sessions(s);
    if hidden > 0 {
        out.push(visibility::not_visible(
            s,
            "stuck_queries",
            format!("{hidden} session(s) of other roles"),
            "their state, query and start times in pg_stat_activity: stuck, idle-in-transaction and blocked sessions among them cannot be judged",
        ));
    } else if out.is_empty() {
        let active = s
            .sessions
            .iter()
            .filter(|x| x.state.as_deref() == Some("active"))
            .count();
        out.push(
            Finding::new(
                AREA,
                "stuck_queries",
                format!("{active} active sessions"),
                Verdict::Pass,
            )
            .observed(Value::of(count(0)).note("stuck or blocked"))
            .target(Value::lt(Quantity::seconds(stuck))),
        );
    }
    out
}

/// A band of pool sizes (`25-50`): a [`Value`] holds one bound, so the band is words.
fn pool_band(min: u32, max: u32) -> Value {
    Value::from(format!("{min}-{max}"))
}

/// The application's pool size against the runbook's 25-50.
pub fn pool_size(s: &DbSnapshot, t: &Targets) -> Vec<Finding> {
    let Some(p) = s.pool_size else { return vec![] };
    let d = &t.database;
    let usable = s
        .server
        .max_connections
        .saturating_sub(s.server.superuser_reserved_connections);
    if p > usable {
        return vec![
            Finding::new(AREA, "pool_size", "application pool", Verdict::Fail)
                .observed(Value::of(count(p)))
                .target(pool_band(d.pool_min, d.pool_max))
                .evidence(format!(
                    "the pool alone exceeds the {usable} usable connections (max_connections {})",
                    s.server.max_connections
                ))
                .action("lower the pool size or put PgBouncer in front of PostgreSQL"),
        ];
    }
    let v = if (d.pool_min..=d.pool_max).contains(&p) {
        Verdict::Pass
    } else {
        Verdict::Warn
    };
    vec![Finding::new(AREA, "pool_size", "application pool", v)
        .observed(Value::of(count(p)))
        .target(pool_band(d.pool_min, d.pool_max))
        .evidence(format!("max_connections {}, {usable} usable; every process multiplies the pool", s.server.max_connections))
        .action(if p < d.pool_min {
            "raise the pool (database.yml pool / RAILS_MAX_THREADS) toward 25-50 if requests wait for connections"
        } else {
            "lower the pool to 50 or less, or add PgBouncer"
        })]
}

/// Table and index cache hit ratios (shared buffers).
pub fn cache_hit(s: &DbSnapshot, t: &Targets) -> Vec<Finding> {
    let target = t.database.cache_hit_pct;
    let (th, tr) = s.tables.iter().fold((0i64, 0i64), |a, x| {
        (a.0 + x.heap_blks_hit, a.1 + x.heap_blks_read)
    });
    let (ih, ir) = s.indexes.iter().fold((0i64, 0i64), |a, x| {
        (a.0 + x.idx_blks_hit, a.1 + x.idx_blks_read)
    });
    [("table_cache_hit", "tables", th, tr), ("index_cache_hit", "indexes", ih, ir)]
        .into_iter()
        .map(|(check, subject, hit, read)| {
            let pct = ratio_pct(hit, read);
            let judged = hit + read >= CACHE_MIN_BLOCKS;
            let v = if judged && pct < target { Verdict::Warn } else { Verdict::Pass };
            Finding::new(AREA, check, subject, v)
                .observed(if judged {
                    Value::of(Quantity::percent(pct))
                } else {
                    Value::of(Quantity::percent(pct)).note("too few reads to judge")
                })
                .target(Value::ge(Quantity::percent(target)))
                .evidence(format!("{hit} blocks from shared buffers, {read} from disk or OS cache"))
                .action("the working set does not fit in shared_buffers: raise shared_buffers / the instance's memory, or find the statements with the most shared_blks_read")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> ServerInfo {
        ServerInfo {
            version_num: 150000,
            database: "app".into(),
            user: "postgres".into(),
            superuser: true,
            read_all_stats: true,
            max_connections: 100,
            superuser_reserved_connections: 3,
            autovacuum_freeze_max_age: 200_000_000,
            ..Default::default()
        }
    }

    fn snap() -> DbSnapshot {
        DbSnapshot {
            server: server(),
            statements: StatementsState::Available {
                statements: vec![],
                total_statements: 0,
                slow_statements: 0,
            },
            databases: vec![DatabaseAge {
                name: "app".into(),
                xid_age: 1000,
            }],
            ..Default::default()
        }
    }

    fn table(name: &str) -> TableStats {
        TableStats {
            schema: "public".into(),
            name: name.into(),
            n_live_tup: 50_000,
            autovacuum_enabled: true,
            last_autovacuum_age_s: Some(60.0),
            last_autoanalyze_age_s: Some(60.0),
            ..Default::default()
        }
    }

    fn index(table: &str, name: &str, cols: &[&str]) -> IndexStats {
        IndexStats {
            schema: "public".into(),
            table: table.into(),
            name: name.into(),
            columns: cols.iter().map(|c| c.to_string()).collect(),
            method: "btree".into(),
            valid: true,
            idx_scan: 10,
            ..Default::default()
        }
    }

    fn stmt(mean: f64) -> Statement {
        Statement {
            queryid: 1,
            user: "app".into(),
            query: "SELECT * FROM orders WHERE account_id = $1".into(),
            calls: 10,
            total_ms: mean * 10.0,
            mean_ms: mean,
            max_ms: mean * 2.0,
            rows: 10,
            shared_blks_hit: 90,
            shared_blks_read: 10,
        }
    }

    fn checks(f: &[Finding], v: Verdict) -> Vec<String> {
        f.iter()
            .filter(|x| x.verdict == v)
            .map(|x| x.check.clone())
            .collect()
    }

    #[test]
    fn a_clean_snapshot_only_passes() {
        let f = judge(&snap(), &Targets::default(), &Limits::default());
        assert!(f.iter().all(|x| x.verdict == Verdict::Pass), "{f:#?}");
    }

    #[test]
    fn slow_statements_warn_then_fail() {
        let t = Targets::default();
        let mut s = snap();
        s.statements = StatementsState::Available {
            statements: vec![stmt(50.0), stmt(150.0), stmt(600.0)],
            total_statements: 3,
            slow_statements: 2,
        };
        let f = slow_queries(&s, &t);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].verdict, Verdict::Warn);
        assert_eq!(f[1].verdict, Verdict::Fail);
        assert_eq!(f[0].observed, Value::of(Quantity::ms(150.0)).note("mean"));
        assert_eq!(f[0].target, Value::lt(Quantity::ms(100.0)));
        assert_eq!(f[1].limit, Some(Value::of(Quantity::ms(500.0))));
        assert!(
            f[1].evidence.contains("shared hit ratio 90%"),
            "{}",
            f[1].evidence
        );
        assert!(
            f[1].evidence.contains("total 6s, max 1.2s"),
            "{}",
            f[1].evidence
        );
        assert!(f[1].action.contains("EXPLAIN ANALYZE"));
        s.statements = StatementsState::Available {
            statements: vec![stmt(50.0)],
            total_statements: 1,
            slow_statements: 0,
        };
        assert_eq!(
            checks(&slow_queries(&s, &t), Verdict::Pass),
            vec!["slow_queries"]
        );
    }

    #[test]
    fn missing_extension_says_how_to_enable_it() {
        for st in [StatementsState::NotInstalled, StatementsState::NotPreloaded] {
            let mut s = snap();
            s.statements = st;
            let f = slow_queries(&s, &Targets::default());
            assert_eq!(f[0].check, "pg_stat_statements");
            assert!(f[0].action.contains("shared_preload_libraries"));
            assert!(f[0].action.contains("CREATE EXTENSION"));
            assert!(f[0].action.contains("restart"));
        }
    }

    #[test]
    fn hot_tables_read_by_seq_scans_are_flagged() {
        let mut s = snap();
        let mut hot = table("orders");
        hot.seq_scan = 90;
        hot.idx_scan = 10;
        let mut fine = table("accounts");
        fine.seq_scan = 1;
        fine.idx_scan = 99;
        let mut small = table("flags");
        small.n_live_tup = 10;
        small.seq_scan = 1000;
        s.tables = vec![hot, fine, small];
        let f = index_coverage(&s, &Targets::default());
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].subject, "orders");
        assert_eq!(f[0].observed, Value::of(Quantity::percent(10.0)));
        assert_eq!(f[0].target, Value::gt(Quantity::percent(95.0)));
    }

    #[test]
    fn fk_needs_an_index_led_by_its_columns() {
        let mut s = snap();
        s.foreign_keys = vec![
            ForeignKey {
                schema: "public".into(),
                table: "orders".into(),
                name: "fk_a".into(),
                columns: vec!["account_id".into()],
                referenced_table: "accounts".into(),
            },
            ForeignKey {
                schema: "public".into(),
                table: "items".into(),
                name: "fk_o".into(),
                columns: vec!["order_id".into()],
                referenced_table: "orders".into(),
            },
            ForeignKey {
                schema: "app".into(),
                table: "orders".into(),
                name: "fk_b".into(),
                columns: vec!["account_id".into(), "region".into()],
                referenced_table: "accounts".into(),
            },
        ];
        s.indexes = vec![
            index("orders", "ix_orders_acct", &["account_id", "created_at"]),
            index("items", "ix_items_x", &["sku", "order_id"]),
            IndexStats {
                schema: "app".into(),
                ..index("orders", "ix_app", &["region", "account_id"])
            },
        ];
        let f = fk_without_index(&s);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].subject, "items(order_id)");
        assert!(f[0]
            .action
            .contains("CREATE INDEX CONCURRENTLY ON items (order_id)"));
    }

    #[test]
    fn unused_duplicate_and_invalid_indexes() {
        let mut s = snap();
        let mut unused = index("orders", "ix_unused", &["status"]);
        unused.idx_scan = 0;
        unused.size_bytes = 20 * 1024 * 1024;
        let mut small_unused = index("orders", "ix_small", &["note"]);
        small_unused.idx_scan = 0;
        let mut invalid = index("orders", "ix_broken", &["total"]);
        invalid.valid = false;
        let mut building = index("orders", "ix_building", &["total"]);
        building.valid = false;
        building.being_built = true;
        s.indexes = vec![
            unused,
            small_unused,
            invalid,
            building,
            index("orders", "ix_a", &["account_id"]),
            index("orders", "ix_a_created", &["account_id", "created_at"]),
            index("orders", "ix_twin1", &["sku"]),
            index("orders", "ix_twin2", &["sku"]),
            // same columns on another table: not a duplicate
            index("items", "ix_items_account", &["account_id"]),
        ];
        let f = index_hygiene(&s);
        let got: Vec<(String, String)> = f
            .iter()
            .map(|x| (x.check.clone(), x.subject.clone()))
            .collect();
        assert!(
            got.contains(&("unused_index".into(), "ix_unused".into())),
            "{got:?}"
        );
        assert!(got.contains(&("invalid_index".into(), "ix_broken".into())));
        let unused = f.iter().find(|x| x.check == "unused_index").unwrap();
        assert_eq!(unused.observed.quantity(), Some(Quantity::count(0.0)));
        assert_eq!(unused.target, Value::gt(Quantity::count(0.0)));
        assert!(unused.evidence.contains("20.0 MiB"), "{}", unused.evidence);
        assert!(got.contains(&("duplicate_index".into(), "ix_a".into())));
        assert!(got.contains(&("duplicate_index".into(), "ix_twin2".into())));
        assert_eq!(f.len(), 4, "{got:?}");
    }

    #[test]
    fn vector_columns_need_hnsw() {
        let mut s = snap();
        s.vector_columns = vec![
            VectorColumn {
                schema: "public".into(),
                table: "docs".into(),
                column: "embedding".into(),
                n_live_tup: 5,
                index_methods: vec![],
            },
            VectorColumn {
                schema: "public".into(),
                table: "chunks".into(),
                column: "embedding".into(),
                n_live_tup: 5,
                index_methods: vec!["hnsw".into()],
            },
        ];
        let f = vector_indexes(&s);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].subject, "docs.embedding");
    }

    #[test]
    fn dead_tuples_and_never_vacuumed() {
        let mut s = snap();
        let mut bloated = table("events");
        bloated.n_live_tup = 10_000;
        bloated.n_dead_tup = 5_000;
        bloated.autovacuum_enabled = false;
        bloated.last_autovacuum_age_s = None;
        let mut fresh = table("imports");
        fresh.last_autoanalyze_age_s = None;
        s.tables = vec![bloated, fresh];
        let f = vacuum(&s, &Targets::default());
        let got: Vec<(&str, &str)> = f
            .iter()
            .map(|x| (x.check.as_str(), x.subject.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("dead_tuples", "events"),
                ("never_vacuumed", "events"),
                ("never_analyzed", "imports")
            ]
        );
        assert!(f[0].action.contains("VACUUM ANALYZE events"));
        assert_eq!(
            f[0].observed,
            Value::of(Quantity::percent(50.0)).note("dead")
        );
        assert_eq!(f[0].target, Value::le(Quantity::percent(20.0)));
        assert!(f[0].evidence.contains("autovacuum disabled"));

        // Every row deleted: the dead count is the figure, not a ratio to 0 live.
        let mut emptied = table("emptied");
        emptied.n_live_tup = 0;
        emptied.n_dead_tup = 90_000;
        s.tables = vec![emptied];
        let f = vacuum(&s, &Targets::default());
        assert_eq!(
            f[0].observed,
            Value::of(Quantity::count(90_000.0)).note("dead, 0 live")
        );
    }

    #[test]
    fn wraparound_warns_past_freeze_max_age_and_fails_near_the_end() {
        let mut s = snap();
        s.databases = vec![
            DatabaseAge {
                name: "a".into(),
                xid_age: 300_000_000,
            },
            DatabaseAge {
                name: "b".into(),
                xid_age: 1_600_000_000,
            },
        ];
        let f = wraparound(&s);
        assert_eq!(f[0].verdict, Verdict::Warn);
        assert_eq!(f[1].verdict, Verdict::Fail);
        assert_eq!(f[0].observed.quantity(), Some(Quantity::count(3e8)));
        assert_eq!(f[0].target.quantity(), Some(Quantity::count(2e8)));
        assert_eq!(f[1].limit, Some(Value::of(Quantity::count(1.5e9))));
    }

    fn session(pid: i32, state: &str, age: f64) -> Session {
        Session {
            pid,
            state: Some(state.into()),
            query: Some("UPDATE t SET x = 1".into()),
            query_age_s: Some(age),
            state_age_s: Some(age),
            xact_age_s: Some(age),
            ..Default::default()
        }
    }

    #[test]
    fn stuck_idle_in_transaction_and_blocked_sessions() {
        let t = Targets::default();
        let mut s = snap();
        let mut blocked = session(3, "active", 2.0);
        blocked.blocked_by = vec![2];
        s.sessions = vec![
            session(1, "active", 400.0),
            session(2, "idle in transaction", 5.0),
            blocked,
            session(4, "idle in transaction", 0.2),
            session(5, "active", 1.0),
        ];
        let f = stuck_sessions(&s, &t, &Limits::default());
        let got: Vec<(&str, &str, Verdict)> = f
            .iter()
            .map(|x| (x.check.as_str(), x.subject.as_str(), x.verdict))
            .collect();
        assert_eq!(
            f[0].observed,
            Value::of(Quantity::seconds(400.0)).note("active")
        );
        assert_eq!(f[0].target, Value::lt(Quantity::seconds(300.0)));
        assert_eq!(f[2].limit, Some(Value::of(Quantity::seconds(300.0))));
        assert_eq!(
            got,
            vec![
                ("stuck_query", "pid 1", Verdict::Fail),
                ("idle_in_transaction", "pid 2", Verdict::Warn),
                ("blocked_query", "pid 3", Verdict::Warn),
            ]
        );
        assert!(
            f[2].evidence.contains("blocked by pid 2"),
            "{}",
            f[2].evidence
        );
    }

    #[test]
    fn the_idle_in_transaction_threshold_is_a_limit() {
        let mut s = snap();
        s.sessions = vec![session(4, "idle in transaction", 0.2)];
        let t = Targets::default();
        let quick = Limits {
            idle_in_transaction_s: 0.1,
        };
        let f = stuck_sessions(&s, &t, &quick);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(
            (f[0].check.as_str(), f[0].verdict),
            ("idle_in_transaction", Verdict::Warn)
        );
        assert_eq!(f[0].target, Value::lt(Quantity::seconds(0.1)));
        assert_eq!(f[0].target, "< 100ms");
        assert_eq!(
            f[0].observed,
            Value::of(Quantity::seconds(0.2)).note("idle in transaction")
        );
        let f = stuck_sessions(&s, &t, &Limits::default());
        assert_eq!(f[0].check, "stuck_queries");
    }

    #[test]
    fn connections_fail_when_few_remain() {
        let t = Targets::default();
        let mut s = snap();
        s.server.max_connections = 12;
        s.sessions = (0..5).map(|i| session(i, "idle", 1.0)).collect();
        assert_eq!(connections(&s, &t)[0].verdict, Verdict::Pass);
        s.sessions.push(session(9, "idle", 1.0));
        let f = connections(&s, &t);
        assert_eq!(f[0].verdict, Verdict::Fail, "{f:?}");
        assert_eq!(f[0].observed.quantity(), Some(Quantity::count(2.0)));
        assert_eq!(f[0].observed, "2 (free of 9, 7 used)");
        assert_eq!(f[0].target, Value::ge(Quantity::count(3.0)).note("free"));
    }

    #[test]
    fn pool_size_against_the_band() {
        let t = Targets::default();
        let mut s = snap();
        assert!(pool_size(&s, &t).is_empty());
        s.pool_size = Some(30);
        assert_eq!(pool_size(&s, &t)[0].verdict, Verdict::Pass);
        s.pool_size = Some(5);
        assert_eq!(pool_size(&s, &t)[0].verdict, Verdict::Warn);
        s.pool_size = Some(500);
        let f = pool_size(&s, &t);
        assert_eq!(f[0].verdict, Verdict::Fail);
        assert_eq!(f[0].observed, Value::of(Quantity::count(500.0)));
        assert_eq!(f[0].target, "25-50");
    }

    #[test]
    fn cache_hit_ratio_needs_traffic_and_a_target() {
        let t = Targets::default();
        let mut s = snap();
        let mut tb = table("orders");
        tb.heap_blks_hit = 900;
        tb.heap_blks_read = 100;
        s.tables = vec![tb];
        let f = cache_hit(&s, &t);
        assert_eq!(f[0].verdict, Verdict::Warn);
        assert_eq!(f[0].observed, Value::of(Quantity::percent(90.0)));
        assert_eq!(f[0].target, Value::ge(Quantity::percent(99.0)));
        assert_eq!(f[1].verdict, Verdict::Pass);
        assert_eq!(f[1].observed.quantity(), Some(Quantity::percent(100.0)));
        assert!(f[1].observed.contains("too few reads"));
    }
}
