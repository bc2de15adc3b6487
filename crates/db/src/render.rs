//! What `powertune db` shows besides the findings: the typed metrics payload of its
//! report ([`DbMetrics`]), the terminal section above the findings table
//! ([`details`]) and the line `db watch` prints per sample ([`format_sample`]).
//! Formatting only: everything here is computed from a snapshot.

use crate::judge::{count_connections, one_line};
use crate::snapshot::{ConnectionCounts, DbSnapshot, ServerInfo, StatementsState};
use powertune_core::report::{table, truncate};
use powertune_core::units;
use serde::Serialize;

/// The metrics payload of a `db` report (the report's `metrics`).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DbMetrics {
    /// The server and what the connected role may see.
    pub server: ServerInfo,
    /// Queries the collector sent.
    pub round_trips: u32,
    /// User tables read.
    pub tables: usize,
    /// Indexes of those tables read.
    pub indexes: usize,
    /// Foreign keys read.
    pub foreign_keys: usize,
    /// Connections by state, the collector's own session included.
    pub connections: ConnectionCounts,
    pub pg_stat_statements: StatementsState,
    /// The largest relations, bloat estimates and growth since `--baseline`.
    #[serde(default)]
    pub space: crate::space::SpaceMetrics,
    /// Indexes suggested for the slow statements, with the planner's costs when hypopg
    /// checked them.
    #[serde(default)]
    pub index_suggestions: Vec<crate::suggest::IndexSuggestion>,
}

impl DbMetrics {
    pub fn new(s: &DbSnapshot, space: crate::space::SpaceMetrics) -> DbMetrics {
        DbMetrics {
            server: s.server.clone(),
            round_trips: s.round_trips,
            tables: s.tables.len(),
            indexes: s.indexes.len(),
            foreign_keys: s.foreign_keys.len(),
            connections: count_connections(&s.server, &s.sessions, true),
            pg_stat_statements: s.statements.clone(),
            space,
            index_suggestions: s.index_suggestions.clone(),
        }
    }
}

/// The section above the findings: server, connections, and the `top` statements by
/// total and by mean time when `pg_stat_statements` was read.
pub fn details(s: &DbSnapshot, top: usize) -> String {
    let c = count_connections(&s.server, &s.sessions, true);
    let mut out = format!(
        "{} · database {} · role {}{} · {} queries\nconnections: {} used, {} free of {} (active {}, idle {}, idle in transaction {})\n",
        s.server.version.split(" on ").next().unwrap_or(&s.server.version),
        s.server.database,
        s.server.user,
        if s.server.read_all_stats { " (sees all stats)" } else { " (no pg_read_all_stats)" },
        s.round_trips,
        c.total,
        c.free,
        c.usable,
        c.active,
        c.idle,
        c.idle_in_transaction
    );
    if let StatementsState::Available {
        statements,
        total_statements,
        ..
    } = &s.statements
    {
        let mut sorted = statements.clone();
        for (title, by_mean) in [("total", false), ("mean", true)] {
            if by_mean {
                sorted.sort_by(|a, b| b.mean_ms.total_cmp(&a.mean_ms));
            } else {
                sorted.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
            }
            let mut rows = vec![["total", "calls", "mean", "rows", "hit", "query"]
                .map(String::from)
                .to_vec()];
            for st in sorted.iter().take(top) {
                rows.push(vec![
                    units::ms(st.total_ms),
                    st.calls.to_string(),
                    units::ms(st.mean_ms),
                    st.rows.to_string(),
                    units::percent(st.hit_pct()),
                    truncate(&one_line(&st.query), 70),
                ]);
            }
            out.push_str(&format!(
                "\ntop statements by {title} time ({total_statements} in pg_stat_statements)\n"
            ));
            out.push_str(&table(&rows));
        }
    }
    out
}

/// The line `db watch` prints for a sample taken at `at`, and the alert line when
/// fewer than `free_min` connections remain free.
pub fn format_sample(at: &str, c: &ConnectionCounts, free_min: u32) -> (String, Option<String>) {
    let line = format!(
        "{at}  total {}/{}  active {}  idle {}  idle-in-tx {}  other {}  free {}",
        c.total, c.usable, c.active, c.idle, c.idle_in_transaction, c.other, c.free
    );
    let alert = (c.free < free_min as i64).then(|| {
        format!(
            "{at}  ALERT: only {} connection(s) free (< {free_min}); lower the pools or add PgBouncer",
            c.free
        )
    });
    (line, alert)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::snapshot::{Session, Statement};

    /// Counts with `total` used of 10, one of them active.
    pub(crate) fn counts(total: u32) -> ConnectionCounts {
        ConnectionCounts {
            total,
            active: 1,
            idle: total - 1,
            usable: 10,
            free: 10 - total as i64,
            ..Default::default()
        }
    }

    #[test]
    fn alert_below_the_free_minimum() {
        let (line, alert) = format_sample("t", &counts(7), 3);
        assert_eq!(
            line,
            "t  total 7/10  active 1  idle 6  idle-in-tx 0  other 0  free 3"
        );
        assert!(alert.is_none());
        let (_, alert) = format_sample("t", &counts(8), 3);
        assert!(alert.unwrap().contains("only 2 connection(s) free (< 3)"));
    }

    fn snapshot() -> DbSnapshot {
        let stmt = |query: &str, total_ms: f64, calls: i64| Statement {
            queryid: 1,
            user: "app".into(),
            query: query.into(),
            calls,
            total_ms,
            mean_ms: total_ms / calls as f64,
            max_ms: total_ms,
            rows: calls,
            shared_blks_hit: 99,
            shared_blks_read: 1,
        };
        DbSnapshot {
            server: ServerInfo {
                version: "PostgreSQL 16.4 on x86_64-pc-linux-gnu".into(),
                database: "app".into(),
                user: "ops".into(),
                max_connections: 100,
                superuser_reserved_connections: 3,
                ..Default::default()
            },
            statements: StatementsState::Available {
                statements: vec![
                    stmt("SELECT many\n FROM t", 900.0, 900),
                    stmt("SELECT slow", 600.0, 1),
                ],
                total_statements: 7,
                slow_statements: 1,
            },
            sessions: vec![Session {
                pid: 9,
                state: Some("idle in transaction".into()),
                ..Default::default()
            }],
            round_trips: 8,
            ..Default::default()
        }
    }

    #[test]
    fn metrics_carry_the_counts_and_the_statements_state() {
        let m = serde_json::to_value(DbMetrics::new(&snapshot(), Default::default())).unwrap();
        assert_eq!(m["round_trips"], 8);
        assert_eq!(m["tables"], 0);
        assert_eq!(m["connections"]["total"], 2);
        assert_eq!(m["connections"]["idle_in_transaction"], 1);
        assert_eq!(m["connections"]["free"], 95);
        assert_eq!(m["pg_stat_statements"]["state"], "available");
        assert_eq!(m["server"]["database"], "app");
    }

    #[test]
    fn details_list_the_top_statements_by_total_and_by_mean() {
        let d = details(&snapshot(), 1);
        assert!(
            d.starts_with(
                "PostgreSQL 16.4 · database app · role ops (no pg_read_all_stats) · 8 queries\n"
            ),
            "{d}"
        );
        assert!(
            d.contains(
                "connections: 2 used, 95 free of 97 (active 1, idle 0, idle in transaction 1)"
            ),
            "{d}"
        );
        let by_total = d
            .find("top statements by total time (7 in pg_stat_statements)")
            .unwrap();
        let by_mean = d.find("top statements by mean time").unwrap();
        assert!(by_total < by_mean);
        assert!(d[by_total..by_mean].contains("SELECT many FROM t"), "{d}");
        assert!(!d[by_total..by_mean].contains("SELECT slow"), "{d}");
        assert!(d[by_mean..].contains("SELECT slow"), "{d}");
    }
}
