//! Space: the largest relations, their estimated bloat, and their growth since a
//! saved baseline (PgHero's Space page and its index-bloat check).
//!
//! Sizes come from `pg_class.relpages` like every size the collector reads, so no
//! relation is opened. Bloat is an estimate from the planner's statistics (`pg_stats`
//! average widths and null fractions, `reltuples`, fillfactor): the pages the live
//! rows would need, packed, against the pages the relation has. It needs statistics
//! for every column (an ANALYZE) that this role may read; without them a relation
//! is "not estimated", never "not bloated".

use crate::snapshot::{qualify, DbSnapshot};
use powertune_core::units::{self, Quantity};
use powertune_core::{Finding, Value, Verdict};
use serde::{Deserialize, Serialize};

const AREA: &str = "db";
/// How many relations the Space section lists.
pub const LARGEST: usize = 10;
/// The baseline kind of `db --save-baseline`.
pub const BASELINE_KIND: &str = "db";

/// One relation's size, as the Space section and the baseline keep it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RelationSize {
    /// `schema.name` (`public.` left out).
    pub name: String,
    /// `table` (its heap and TOAST; its indexes are listed on their own) or `index`.
    pub kind: String,
    pub bytes: i64,
    /// Estimated bytes a packed copy would not need; `None` when not estimated.
    #[serde(default)]
    pub bloat_bytes: Option<i64>,
}

/// The Space section of the metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SpaceMetrics {
    /// Tables (heap + TOAST) and indexes of this database's user schemas.
    pub total_bytes: i64,
    /// The [`LARGEST`] largest relations, largest first.
    pub largest: Vec<RelationSize>,
    /// Relations whose bloat could not be estimated (no statistics visible).
    pub not_estimated: usize,
    /// Growth since the `--baseline` file, when one was given.
    pub growth: Option<Growth>,
}

/// Growth between a saved baseline and this run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Growth {
    /// When the baseline was saved (RFC 3339).
    pub since: String,
    pub elapsed_s: f64,
    pub total_before_bytes: i64,
    pub total_after_bytes: i64,
    /// `(after - before)` per day of elapsed time.
    pub per_day_bytes: f64,
    /// The relations that grew most (at most [`LARGEST`]), with their change in bytes.
    pub fastest: Vec<(String, i64)>,
    /// Relations in the baseline and gone now, and new ones.
    pub dropped: usize,
    pub added: usize,
}

/// What `--save-baseline` stores for `db`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SpaceBaseline {
    pub relations: Vec<RelationSize>,
}

/// Every user table and index with its size and bloat estimate.
pub fn relations(s: &DbSnapshot) -> Vec<RelationSize> {
    let tables = s.tables.iter().map(|t| RelationSize {
        name: t.qualified(),
        kind: "table".into(),
        bytes: t.size_bytes.max(0) + t.toast_bytes.max(0),
        bloat_bytes: t.bloat_bytes,
    });
    let indexes = s.indexes.iter().map(|i| RelationSize {
        name: qualify(&i.schema, &i.name),
        kind: "index".into(),
        bytes: i.size_bytes.max(0),
        bloat_bytes: i.bloat_bytes,
    });
    tables.chain(indexes).collect()
}

/// The Space metrics, with growth against `baseline` (saved at `since`) when given.
pub fn metrics(s: &DbSnapshot, baseline: Option<(&str, &SpaceBaseline)>) -> SpaceMetrics {
    let all = relations(s);
    let total_bytes = all.iter().map(|r| r.bytes).sum();
    let not_estimated = all
        .iter()
        .filter(|r| r.bloat_bytes.is_none() && eligible(r))
        .count();
    let mut largest = all.clone();
    largest.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.name.cmp(&b.name)));
    largest.truncate(LARGEST);
    SpaceMetrics {
        total_bytes,
        largest,
        not_estimated,
        growth: baseline.and_then(|(since, b)| growth(since, b, &all, chrono::Utc::now())),
    }
}

/// Tables and btree indexes get an estimate; other index methods never do.
fn eligible(r: &RelationSize) -> bool {
    r.kind == "table" || r.bloat_bytes.is_some()
}

/// Growth from `before` (saved at `since`) to `now`; `None` when `since` is not a
/// time (a baseline edited by hand) or not before `now`.
pub fn growth(
    since: &str,
    before: &SpaceBaseline,
    now_relations: &[RelationSize],
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Growth> {
    let then = chrono::DateTime::parse_from_rfc3339(since).ok()?;
    let elapsed_s = (now - then.with_timezone(&chrono::Utc)).num_milliseconds() as f64 / 1000.0;
    if elapsed_s <= 0.0 {
        return None;
    }
    let old: std::collections::HashMap<&str, i64> = before
        .relations
        .iter()
        .map(|r| (r.name.as_str(), r.bytes))
        .collect();
    let mut fastest: Vec<(String, i64)> = now_relations
        .iter()
        .map(|r| {
            (
                r.name.clone(),
                r.bytes - old.get(r.name.as_str()).copied().unwrap_or(0),
            )
        })
        .filter(|(_, d)| *d > 0)
        .collect();
    fastest.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    fastest.truncate(LARGEST);
    let now_names: std::collections::HashSet<&str> =
        now_relations.iter().map(|r| r.name.as_str()).collect();
    let total_before_bytes: i64 = before.relations.iter().map(|r| r.bytes).sum();
    let total_after_bytes: i64 = now_relations.iter().map(|r| r.bytes).sum();
    Some(Growth {
        since: since.to_string(),
        elapsed_s,
        total_before_bytes,
        total_after_bytes,
        per_day_bytes: (total_after_bytes - total_before_bytes) as f64 * 86_400.0 / elapsed_s,
        fastest,
        dropped: before
            .relations
            .iter()
            .filter(|r| !now_names.contains(r.name.as_str()))
            .count(),
        added: now_relations
            .iter()
            .filter(|r| !old.contains_key(r.name.as_str()))
            .count(),
    })
}

/// `table_bloat` and `index_bloat`: each relation whose estimated waste reaches
/// `database.bloat_bytes` (PgHero's 100 MB), one PASS per kind otherwise, and a WARN
/// when some could not be estimated (never a silent pass).
pub fn bloat(s: &DbSnapshot, limit_bytes: u64) -> Vec<Finding> {
    let limit = limit_bytes as i64;
    let all = relations(s);
    let mut out = Vec::new();
    for kind in ["table", "index"] {
        let rels: Vec<&RelationSize> = all.iter().filter(|r| r.kind == kind).collect();
        let check = format!("{kind}_bloat");
        let mut flagged = 0;
        for r in &rels {
            let Some(b) = r.bloat_bytes.filter(|b| *b >= limit) else {
                continue;
            };
            flagged += 1;
            let pct = if r.bytes > 0 {
                b as f64 * 100.0 / r.bytes as f64
            } else {
                0.0
            };
            let action = if kind == "index" {
                format!("REINDEX INDEX CONCURRENTLY {} (PostgreSQL 12+; builds a packed copy, then swaps)", r.name)
            } else {
                format!("pg_repack --table {} (online), or VACUUM FULL {} (locks the table for the whole rewrite); then check that autovacuum keeps up with its dead tuples", r.name, r.name)
            };
            out.push(
                Finding::new(AREA, &check, &r.name, Verdict::Warn)
                    .observed(Value::of(Quantity::bytes(b.max(0) as u64)).note("estimated waste"))
                    .target(Value::lt(Quantity::bytes(limit_bytes)))
                    .evidence(format!(
                        "about {} of {} ({pct:.0}%) would not be needed by a packed copy (estimate from pg_stats)",
                        units::bytes(b as u64),
                        units::bytes(r.bytes.max(0) as u64)
                    ))
                    .action(action),
            );
        }
        let unknown = rels
            .iter()
            .filter(|r| r.bloat_bytes.is_none() && (kind == "table"))
            .filter(|r| r.bytes > 0)
            .count();
        if unknown > 0 {
            out.push(
                Finding::new(AREA, &check, format!("{unknown} {kind}(s)"), Verdict::Warn)
                    .observed("not estimated")
                    .target(Value::lt(Quantity::bytes(limit_bytes)))
                    .evidence("no statistics for every column, or not visible to this role: bloat cannot be estimated without them")
                    .action("ANALYZE them (and grant SELECT on their columns to this role), then run again"),
            );
        }
        if flagged == 0 && unknown == 0 {
            out.push(
                Finding::new(
                    AREA,
                    &check,
                    format!("{} {kind}(s)", rels.len()),
                    Verdict::Pass,
                )
                .observed("none over the limit")
                .target(Value::lt(Quantity::bytes(limit_bytes)))
                .evidence(match kind {
                    "index" => "btree indexes estimated; other methods are not",
                    _ => "estimate from pg_stats",
                }),
            );
        }
    }
    out
}

/// `space_growth`: reported, not judged (the runbook sets no target for it): how
/// much the database grew since the baseline and which relations grew most.
pub fn growth_finding(s: &DbSnapshot, m: &SpaceMetrics) -> Option<Finding> {
    let g = m.growth.as_ref()?;
    let delta = g.total_after_bytes - g.total_before_bytes;
    let sign = if delta < 0 { "-" } else { "+" };
    let fastest: Vec<String> = g
        .fastest
        .iter()
        .take(3)
        .map(|(n, d)| format!("{n} +{}", units::bytes(*d as u64)))
        .collect();
    Some(
        Finding::new(AREA, "space_growth", &s.server.database, Verdict::Pass)
            .observed(format!(
                "{sign}{}/day",
                units::bytes(g.per_day_bytes.abs() as u64)
            ))
            .target("reported (no runbook target)")
            .evidence(format!(
                "{} → {} ({sign}{}) in {} since {}{}",
                units::bytes(g.total_before_bytes.max(0) as u64),
                units::bytes(g.total_after_bytes.max(0) as u64),
                units::bytes(delta.unsigned_abs()),
                units::seconds(g.elapsed_s),
                g.since,
                if fastest.is_empty() {
                    String::new()
                } else {
                    format!("; grew most: {}", fastest.join(", "))
                }
            )),
    )
}

/// The Space lines of the terminal section.
pub fn render(m: &SpaceMetrics) -> String {
    let mut out = format!(
        "space: {} in tables and indexes; largest:\n",
        units::bytes(m.total_bytes.max(0) as u64)
    );
    for r in &m.largest {
        let bloat = match r.bloat_bytes {
            Some(b) => format!("~{} bloat", units::bytes(b.max(0) as u64)),
            None => "bloat not estimated".into(),
        };
        out.push_str(&format!(
            "  {:>10}  {:<5} {}  ({bloat})\n",
            units::bytes(r.bytes.max(0) as u64),
            r.kind,
            r.name
        ));
    }
    if let Some(g) = &m.growth {
        out.push_str(&format!(
            "growth since {}: {} → {} ({}/day)\n",
            g.since,
            units::bytes(g.total_before_bytes.max(0) as u64),
            units::bytes(g.total_after_bytes.max(0) as u64),
            units::bytes(g.per_day_bytes.abs() as u64)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{IndexStats, TableStats};

    fn snap() -> DbSnapshot {
        DbSnapshot {
            tables: vec![TableStats {
                schema: "public".into(),
                name: "events".into(),
                size_bytes: 300 << 20,
                toast_bytes: 20 << 20,
                bloat_bytes: Some(150 << 20),
                ..TableStats::default()
            }],
            indexes: vec![
                IndexStats {
                    schema: "public".into(),
                    table: "events".into(),
                    name: "events_pkey".into(),
                    size_bytes: 50 << 20,
                    bloat_bytes: Some(10 << 20),
                    ..IndexStats::default()
                },
                IndexStats {
                    schema: "public".into(),
                    table: "events".into(),
                    name: "events_gin".into(),
                    size_bytes: 5 << 20,
                    bloat_bytes: None,
                    ..IndexStats::default()
                },
            ],
            ..DbSnapshot::default()
        }
    }

    #[test]
    fn bloat_over_the_limit_warns_with_the_action() {
        let f = bloat(&snap(), 100 << 20);
        let t = f.iter().find(|f| f.check == "table_bloat").unwrap();
        assert_eq!(t.verdict, Verdict::Warn);
        assert_eq!(t.subject, "events");
        assert!(
            t.evidence.contains("150.0 MiB of 320.0 MiB (47%)"),
            "{}",
            t.evidence
        );
        assert!(t.action.contains("pg_repack --table events"));
        let i = f.iter().find(|f| f.check == "index_bloat").unwrap();
        assert_eq!(i.verdict, Verdict::Pass);
        let f = bloat(&snap(), 5 << 20);
        assert!(f.iter().any(|f| f.check == "index_bloat"
            && f.action.contains("REINDEX INDEX CONCURRENTLY events_pkey")));
    }

    #[test]
    fn a_table_without_statistics_is_never_a_pass() {
        let mut s = snap();
        s.tables[0].bloat_bytes = None;
        let f = bloat(&s, 100 << 20);
        let t: Vec<_> = f.iter().filter(|f| f.check == "table_bloat").collect();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].verdict, Verdict::Warn);
        assert_eq!(t[0].subject, "1 table(s)");
    }

    #[test]
    fn growth_is_per_day_with_the_fastest_relations() {
        let before = SpaceBaseline {
            relations: vec![
                RelationSize {
                    name: "events".into(),
                    kind: "table".into(),
                    bytes: 220 << 20,
                    bloat_bytes: None,
                },
                RelationSize {
                    name: "gone".into(),
                    kind: "table".into(),
                    bytes: 1 << 20,
                    bloat_bytes: None,
                },
            ],
        };
        let now_rel = relations(&snap());
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-03T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let g = growth("2026-01-01T00:00:00Z", &before, &now_rel, now).unwrap();
        assert_eq!(g.elapsed_s, 172_800.0);
        assert_eq!(g.total_before_bytes, 221 << 20);
        assert_eq!(g.total_after_bytes, 375 << 20);
        assert_eq!(g.per_day_bytes, (154u64 << 20) as f64 / 2.0);
        assert_eq!(g.fastest[0], ("events".to_string(), 100 << 20));
        assert_eq!((g.dropped, g.added), (1, 2));
        assert!(growth("yesterday", &before, &now_rel, now).is_none());
        assert!(growth("2027-01-01T00:00:00Z", &before, &now_rel, now).is_none());
    }

    #[test]
    fn largest_first_in_metrics() {
        let m = metrics(&snap(), None);
        assert_eq!(m.largest[0].name, "events");
        assert_eq!(m.largest[0].bytes, 320 << 20);
        assert_eq!(m.total_bytes, (320 + 50 + 5) << 20);
        assert_eq!(m.not_estimated, 0);
        assert!(render(&m).contains("events_gin"));
    }
}
