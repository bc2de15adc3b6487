//! Sequences (and so `serial` / identity primary keys) near their maximum: the
//! PgHero check users miss until inserts fail with "nextval: reached maximum value".
//! A sequence's room is the smaller of its own `max_value` and the largest value the
//! column it feeds can hold (`serial` on `integer` stops at 2,147,483,647 whatever
//! the sequence allows).

use crate::snapshot::{qualify, DbSnapshot};
use powertune_core::units::Quantity;
use powertune_core::{Finding, Value, Verdict};
use serde::{Deserialize, Serialize};

const AREA: &str = "db";
/// Share of a sequence's room used above which it is a WARN (time to plan the
/// change to `bigint`).
pub const SEQUENCE_WARN_PCT: f64 = 50.0;
/// Share used above which it is a FAIL (PgHero's mark).
pub const SEQUENCE_FAIL_PCT: f64 = 90.0;

/// One ascending sequence and the column it feeds (`pg_sequences` + `pg_depend`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SequenceStats {
    pub schema: String,
    pub name: String,
    /// `None`: never used, or this role may not read it (see `readable`).
    pub last_value: Option<i64>,
    pub max_value: i64,
    /// The role has SELECT or USAGE on it.
    pub readable: bool,
    /// The owning table and column (`serial`, identity, `OWNED BY`).
    pub table: Option<String>,
    pub column: Option<String>,
    /// `smallint`, `integer`, `bigint` or another type name of that column.
    pub column_type: Option<String>,
}

/// The largest value a column type holds, for the integer types.
pub fn type_max(t: &str) -> Option<i64> {
    match t {
        "smallint" => Some(i16::MAX as i64),
        "integer" => Some(i32::MAX as i64),
        "bigint" => Some(i64::MAX),
        _ => None,
    }
}

impl SequenceStats {
    /// The largest value it can hand out and still fit its column.
    pub fn room(&self) -> i64 {
        self.column_type
            .as_deref()
            .and_then(type_max)
            .map_or(self.max_value, |m| m.min(self.max_value))
    }

    /// Share of the room used, in percent, when the last value is known.
    pub fn used_pct(&self) -> Option<f64> {
        let last = self.last_value?;
        let room = self.room();
        (room > 0).then(|| last.max(0) as f64 * 100.0 / room as f64)
    }

    fn action(&self) -> String {
        let seq = qualify(&self.schema, &self.name);
        match (&self.table, &self.column, self.column_type.as_deref()) {
            (Some(t), Some(c), Some("smallint" | "integer")) => format!(
                "ALTER TABLE {t} ALTER COLUMN {c} TYPE bigint; ALTER SEQUENCE {seq} AS bigint; (rewrites the table under an ACCESS EXCLUSIVE lock: on a big table add a bigint column, backfill in batches and swap, and widen the foreign keys that reference it too)"
            ),
            _ => format!(
                "ALTER SEQUENCE {seq} AS bigint; (or raise its MAXVALUE), after checking every column it feeds holds bigint"
            ),
        }
    }
}

/// Every sequence at or above [`SEQUENCE_WARN_PCT`] of its room; one PASS line
/// otherwise; sequences the role may not read are one WARN, never a PASS.
pub fn sequences(s: &DbSnapshot) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut highest: Option<(f64, String)> = None;
    for q in &s.sequences {
        let Some(pct) = q.used_pct() else { continue };
        let name = qualify(&q.schema, &q.name);
        if highest.as_ref().is_none_or(|(p, _)| pct > *p) {
            highest = Some((pct, name.clone()));
        }
        if pct < SEQUENCE_WARN_PCT {
            continue;
        }
        let feeds = match (&q.table, &q.column, &q.column_type) {
            (Some(t), Some(c), Some(ty)) => format!("feeds {t}.{c} ({ty})"),
            _ => "owned by no column".to_string(),
        };
        out.push(
            Finding::new(
                AREA,
                "sequence_capacity",
                name,
                Verdict::lower_is_better(pct, SEQUENCE_WARN_PCT, Some(SEQUENCE_FAIL_PCT)),
            )
            .observed(Value::of(Quantity::percent(pct)).note("used"))
            .target(Value::lt(Quantity::percent(SEQUENCE_WARN_PCT)))
            .limit(Value::of(Quantity::percent(SEQUENCE_FAIL_PCT)))
            .evidence(format!(
                "last value {} of {}; {feeds}",
                q.last_value.unwrap_or(0),
                q.room()
            ))
            .action(q.action()),
        );
    }
    let hidden = s.sequences.iter().filter(|q| !q.readable).count();
    if hidden > 0 {
        out.push(
            crate::visibility::not_visible(
                s,
                "sequence_capacity",
                format!("{hidden} sequence(s)"),
                "their last value (no SELECT or USAGE on them): how near their maximum they are cannot be judged",
            )
            .target("visible (SELECT on the sequences, or pg_read_all_data)")
            .action(format!(
                "GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO {0}; (per schema; or GRANT pg_read_all_data TO {0}; on PostgreSQL 14+) then run powertune db again",
                s.server.user
            )),
        );
    }
    if out.is_empty() {
        let (pct, name) = highest.unwrap_or((0.0, String::new()));
        out.push(
            Finding::new(
                AREA,
                "sequence_capacity",
                format!("{} sequences", s.sequences.len()),
                Verdict::Pass,
            )
            .observed(Value::of(Quantity::percent(pct)).note(if name.is_empty() {
                "highest used".to_string()
            } else {
                format!("highest used, {name}")
            }))
            .target(Value::lt(Quantity::percent(SEQUENCE_WARN_PCT))),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(last: Option<i64>, col: &str) -> SequenceStats {
        SequenceStats {
            schema: "public".into(),
            name: "orders_id_seq".into(),
            last_value: last,
            max_value: i64::MAX,
            readable: true,
            table: Some("orders".into()),
            column: Some("id".into()),
            column_type: Some(col.into()),
        }
    }

    fn snap(seqs: Vec<SequenceStats>) -> DbSnapshot {
        let mut s = DbSnapshot {
            sequences: seqs,
            ..DbSnapshot::default()
        };
        s.server.user = "monitor".into();
        s
    }

    #[test]
    fn an_integer_column_caps_a_bigint_sequence() {
        let q = seq(Some(i32::MAX as i64 / 2), "integer");
        assert_eq!(q.room(), i32::MAX as i64);
        assert!((q.used_pct().unwrap() - 50.0).abs() < 0.001);
        assert_eq!(seq(None, "integer").used_pct(), None);
    }

    #[test]
    fn bands_pass_warn_fail() {
        let f = sequences(&snap(vec![seq(Some(1000), "integer")]));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].verdict, Verdict::Pass);
        assert!(f[0].observed.contains("orders_id_seq"));

        let f = sequences(&snap(vec![seq(Some(1_200_000_000), "integer")]));
        assert_eq!(f[0].verdict, Verdict::Warn);
        assert!(f[0]
            .action
            .starts_with("ALTER TABLE orders ALTER COLUMN id TYPE bigint"));
        assert!(f[0].evidence.contains("feeds orders.id (integer)"));

        let f = sequences(&snap(vec![seq(Some(2_000_000_000), "integer")]));
        assert_eq!(f[0].verdict, Verdict::Fail);
        assert_eq!(
            f[0].observed.quantity(),
            Some(Quantity::percent(2_000_000_000.0 * 100.0 / i32::MAX as f64))
        );
        let f = sequences(&snap(vec![seq(Some(2_000_000_000), "bigint")]));
        assert_eq!(f[0].verdict, Verdict::Pass);
    }

    #[test]
    fn unreadable_sequences_are_not_a_pass() {
        let mut q = seq(None, "integer");
        q.readable = false;
        let f = sequences(&snap(vec![q]));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].verdict, Verdict::Warn);
        assert!(f[0].observed.contains("not visible to role monitor"));
        assert!(f[0]
            .action
            .starts_with("GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO monitor"));
    }
}
