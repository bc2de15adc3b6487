//! Index suggestions for slow statements: the columns a statement filters on
//! (read from its parsed `WHERE`), turned into one candidate index per table when
//! no existing index leads with them. A candidate is a heuristic until the planner
//! confirms it: with the `hypopg` extension present, [`crate::hypo`] asks the planner
//! for the statement's cost without and with the index as a hypothetical one.

use crate::snapshot::{qualify, IndexStats, Statement};
use serde::{Deserialize, Serialize};
use sqlparser::ast::{
    BinaryOperator, Expr, FromTable, InTarget, ObjectNamePart, SetExpr, Statement as Sql,
    TableFactor, TableWithJoins,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// At most this many slow statements are looked at (the slowest by total time).
pub const MAX_STATEMENTS: usize = 5;
/// At most this many equality columns lead a candidate index (then one range column).
pub const MAX_EQUALITY_COLUMNS: usize = 3;

/// One suggested index and the statement it is for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct IndexSuggestion {
    /// `schema.table` as written in the statement (unqualified: as the server resolves it).
    pub table: String,
    /// Equality columns first (in the order the statement names them), then at most one
    /// range column.
    pub columns: Vec<String>,
    pub queryid: i64,
    /// The statement's first 120 characters.
    pub statement: String,
    pub mean_ms: f64,
    /// What the planner said, when it was asked.
    pub verification: Verification,
}

impl IndexSuggestion {
    /// The `CREATE INDEX` to run (concurrently, so writes continue).
    pub fn create_sql(&self) -> String {
        format!("CREATE INDEX CONCURRENTLY ON {}", self.target())
    }

    /// The statement hypopg is given (it does not accept CONCURRENTLY).
    pub fn hypothetical_sql(&self) -> String {
        format!("CREATE INDEX ON {}", self.target())
    }

    /// `table (col, ...)`, each name quoted when PostgreSQL needs it.
    fn target(&self) -> String {
        let table: Vec<String> = self.table.split('.').map(quote_ident).collect();
        let cols: Vec<String> = self.columns.iter().map(|c| quote_ident(c)).collect();
        format!("{} ({})", table.join("."), cols.join(", "))
    }
}

/// A name as PostgreSQL reads it: bare when lower-case letters, digits and `_`,
/// else double-quoted.
pub fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// Whether the planner confirmed a suggestion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verification {
    /// The planner's estimated cost of the statement's generic plan without and with
    /// the index as a hypothetical one (hypopg), and whether the plan used it.
    Hypopg {
        cost_before: f64,
        cost_after: f64,
        used: bool,
    },
    /// Not verified: why (hypopg not installed, or the statement could not be planned).
    Heuristic { reason: String },
}

/// A verified index must at least halve the statement's estimated cost to be suggested.
pub const MIN_COST_RATIO: f64 = 0.5;

/// `index_suggestion`: one WARN per candidate the planner confirmed (it uses the
/// index and the cost at least halves) or that could not be checked (marked as a
/// heuristic, with why); candidates the planner rejected are not findings (they
/// stay in the JSON with their costs).
pub fn findings(s: &crate::snapshot::DbSnapshot) -> Vec<powertune_core::Finding> {
    use powertune_core::{Finding, Verdict};
    let mut out = Vec::new();
    for c in &s.index_suggestions {
        let subject = format!("{} ({})", c.table, c.columns.join(", "));
        let about = format!(
            "for statement {} ({:.0} ms mean): {}",
            c.queryid, c.mean_ms, c.statement
        );
        let f = match &c.verification {
            Verification::Hypopg {
                cost_before,
                cost_after,
                used,
            } => {
                if !used || *cost_after > cost_before * MIN_COST_RATIO {
                    continue;
                }
                Finding::new("db", "index_suggestion", subject, Verdict::Warn)
                    .observed(format!("planner cost {cost_before:.1} → {cost_after:.1}"))
                    .evidence(format!(
                        "{about}; costed with the index as a hypothetical one (hypopg)"
                    ))
                    .action(c.create_sql())
            }
            Verification::Heuristic { reason } => {
                Finding::new("db", "index_suggestion", subject, Verdict::Warn)
                    .observed("heuristic")
                    .evidence(format!(
                        "{about}; from its WHERE columns, not verified: {reason}"
                    ))
                    .action(format!(
                        "{} (check first: EXPLAIN the statement with the index, e.g. with hypopg)",
                        c.create_sql()
                    ))
            }
        };
        out.push(f.target("no sequential scan for a selective filter"));
    }
    out
}

/// A slow statement's filter columns, per table.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filters {
    /// (table, equality columns, range columns), in the order first seen.
    pub tables: Vec<(String, Vec<String>, Vec<String>)>,
}

/// The candidates for the slowest statements at or above `slow_mean_ms` (by total
/// time, at most [`MAX_STATEMENTS`]); a table that already has an index leading with
/// the candidate's first column gets none. Unverified until [`crate::hypo`] runs.
pub fn candidates(
    statements: &[Statement],
    indexes: &[IndexStats],
    slow_mean_ms: f64,
) -> Vec<IndexSuggestion> {
    let mut slow: Vec<&Statement> = statements
        .iter()
        .filter(|s| s.mean_ms >= slow_mean_ms)
        .collect();
    slow.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for st in slow {
        if !seen.insert(st.queryid) || out.len() >= MAX_STATEMENTS {
            continue;
        }
        let Some(filters) = filters(&st.query) else {
            continue;
        };
        for (table, eq, range) in filters.tables {
            let mut columns: Vec<String> = eq.into_iter().take(MAX_EQUALITY_COLUMNS).collect();
            if let Some(r) = range.into_iter().find(|r| !columns.contains(r)) {
                columns.push(r);
            }
            let Some(first) = columns.first() else {
                continue;
            };
            if led_by(indexes, &table, first) {
                continue;
            }
            out.push(IndexSuggestion {
                table,
                columns,
                queryid: st.queryid,
                statement: st.query.chars().take(120).collect(),
                mean_ms: st.mean_ms,
                verification: Verification::Heuristic {
                    reason: "not verified".into(),
                },
            });
        }
    }
    out
}

/// A valid index of `table` whose first key column is `column`.
fn led_by(indexes: &[IndexStats], table: &str, column: &str) -> bool {
    indexes.iter().any(|i| {
        i.valid
            && (qualify(&i.schema, &i.table) == table || i.table == table)
            && i.columns.first().is_some_and(|c| c == column)
    })
}

/// The columns one statement filters on; `None` when it is not one SELECT, UPDATE or
/// DELETE that sqlparser reads (no candidate then, never a guess).
pub fn filters(sql: &str) -> Option<Filters> {
    let parsed = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    let [statement] = parsed.as_slice() else {
        return None;
    };
    let (from, selection): (Vec<&TableWithJoins>, Option<&Expr>) = match statement {
        Sql::Query(q) => match q.body.as_ref() {
            SetExpr::Select(s) => (s.from.iter().collect(), s.selection.as_ref()),
            _ => return None,
        },
        Sql::Update(u) => (vec![&u.table], u.selection.as_ref()),
        Sql::Delete(d) => match &d.from {
            FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => {
                (t.iter().collect(), d.selection.as_ref())
            }
        },
        _ => return None,
    };
    let tables = relations(&from);
    let mut out = Filters::default();
    if let Some(e) = selection {
        conjuncts(e, &tables, &mut out);
    }
    Some(out)
}

/// (alias or name, table name) of every plain table in FROM and its joins.
fn relations(from: &[&TableWithJoins]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut add = |f: &TableFactor| {
        if let TableFactor::Table { name, alias, .. } = f {
            let parts: Vec<String> = name
                .0
                .iter()
                .filter_map(|p| match p {
                    ObjectNamePart::Identifier(i) => Some(i.value.clone()),
                    _ => None,
                })
                .collect();
            if parts.len() != name.0.len() || parts.is_empty() {
                return;
            }
            let table = parts.join(".");
            let short = parts.last().cloned().unwrap_or_default();
            let key = alias.as_ref().map_or(short, |a| a.name.value.clone());
            out.push((key, table));
        }
    };
    for t in from {
        add(&t.relation);
        for j in &t.joins {
            add(&j.relation);
        }
    }
    out
}

/// Walks the AND-ed terms of a WHERE; an OR ends the walk of its branch (an index on
/// one side cannot serve it alone).
fn conjuncts(e: &Expr, tables: &[(String, String)], out: &mut Filters) {
    match e {
        Expr::Nested(inner) => conjuncts(inner, tables, out),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            conjuncts(left, tables, out);
            conjuncts(right, tables, out);
        }
        Expr::BinaryOp { left, op, right } => {
            let kind = match op {
                BinaryOperator::Eq => Kind::Equality,
                BinaryOperator::Lt
                | BinaryOperator::LtEq
                | BinaryOperator::Gt
                | BinaryOperator::GtEq => Kind::Range,
                _ => return,
            };
            match (column(left, tables), column(right, tables)) {
                (Some(c), None) if is_value(right) => add(out, c, kind),
                (None, Some(c)) if is_value(left) => add(out, c, kind),
                _ => {}
            }
        }
        Expr::AnyOp {
            left,
            compare_op: BinaryOperator::Eq,
            right,
            ..
        } if is_value(right) => {
            if let Some(c) = column(left, tables) {
                add(out, c, Kind::Equality);
            }
        }
        Expr::In {
            expr,
            target: InTarget::List(list),
            negated: false,
            ..
        } if list.iter().all(is_value) => {
            if let Some(c) = column(expr, tables) {
                add(out, c, Kind::Equality);
            }
        }
        Expr::IsNull(inner) => {
            if let Some(c) = column(inner, tables) {
                add(out, c, Kind::Equality);
            }
        }
        Expr::Between {
            expr,
            negated: false,
            low,
            high,
        } if is_value(low) && is_value(high) => {
            if let Some(c) = column(expr, tables) {
                add(out, c, Kind::Range);
            }
        }
        _ => {}
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Equality,
    Range,
}

fn add(out: &mut Filters, (table, col): (String, String), kind: Kind) {
    let at = match out.tables.iter().position(|(t, _, _)| *t == table) {
        Some(i) => i,
        None => {
            out.tables.push((table, Vec::new(), Vec::new()));
            out.tables.len() - 1
        }
    };
    let (_, eq, range) = &mut out.tables[at];
    let list = match kind {
        Kind::Equality => eq,
        Kind::Range => range,
    };
    if !list.contains(&col) {
        list.push(col);
    }
}

/// (table, column) of a column reference, when it names exactly one table of FROM.
fn column(e: &Expr, tables: &[(String, String)]) -> Option<(String, String)> {
    match e {
        Expr::Nested(inner) => column(inner, tables),
        Expr::Identifier(c) => match tables {
            [(_, table)] => Some((table.clone(), c.value.clone())),
            _ => None,
        },
        Expr::CompoundIdentifier(parts) => match parts.as_slice() {
            [q, c] => tables
                .iter()
                .find(|(key, _)| *key == q.value)
                .map(|(_, table)| (table.clone(), c.value.clone())),
            _ => None,
        },
        _ => None,
    }
}

/// A constant or a placeholder (`$1`, `'x'`, `$1::int`, `ARRAY[$1]`): what a
/// filter compares a column with for an index to serve it.
fn is_value(e: &Expr) -> bool {
    match e {
        Expr::Value(_) | Expr::TypedString { .. } => true,
        Expr::Cast { expr, .. } | Expr::Nested(expr) | Expr::UnaryOp { expr, .. } => is_value(expr),
        Expr::Array(a) => a.elem.iter().all(is_value),
        Expr::Function(f) => f.to_string().eq_ignore_ascii_case("now()"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(sql: &str) -> Vec<(String, Vec<String>, Vec<String>)> {
        filters(sql).map(|f| f.tables).unwrap_or_default()
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn equality_then_range_columns_per_table() {
        assert_eq!(
            f("SELECT * FROM orders WHERE account_id = $1 AND created_at > $2 AND status = $3"),
            vec![(
                "orders".into(),
                s(&["account_id", "status"]),
                s(&["created_at"])
            )]
        );
        assert_eq!(
            f("SELECT o.id FROM orders o JOIN accounts a ON a.id = o.account_id WHERE o.state IN ($1, $2) AND a.plan = $3"),
            vec![
                ("orders".into(), s(&["state"]), vec![]),
                ("accounts".into(), s(&["plan"]), vec![])
            ]
        );
        assert_eq!(
            f("UPDATE jobs SET done = $1 WHERE queue = $2 AND run_at BETWEEN $3 AND $4"),
            vec![("jobs".into(), s(&["queue"]), s(&["run_at"]))]
        );
        assert_eq!(
            f("DELETE FROM sessions WHERE user_id = ANY($1)"),
            vec![("sessions".into(), s(&["user_id"]), vec![])]
        );
    }

    #[test]
    fn what_an_index_cannot_serve_is_left_out() {
        // OR, column = column, functions of a column, unqualified columns of a join.
        assert!(f("SELECT * FROM t WHERE a = $1 OR b = $2").is_empty());
        assert!(f("SELECT * FROM t WHERE a = b").is_empty());
        assert!(f("SELECT * FROM t WHERE lower(a) = $1").is_empty());
        assert!(f("SELECT * FROM t JOIN u ON u.id = t.u_id WHERE a = $1").is_empty());
        assert!(filters("SELECT 1; SELECT 2").is_none());
        assert!(filters("not sql at all").is_none());
        assert!(filters("INSERT INTO t VALUES ($1)").is_none());
    }

    fn st(id: i64, q: &str, mean: f64, total: f64) -> Statement {
        Statement {
            queryid: id,
            user: "app".into(),
            query: q.into(),
            calls: 10,
            total_ms: total,
            mean_ms: mean,
            max_ms: mean,
            rows: 1,
            shared_blks_hit: 0,
            shared_blks_read: 0,
        }
    }

    #[test]
    fn candidates_leave_out_fast_statements_and_covered_tables() {
        let stmts = vec![
            st(
                1,
                "SELECT * FROM orders WHERE account_id = $1",
                250.0,
                2500.0,
            ),
            st(2, "SELECT * FROM users WHERE email = $1", 300.0, 3000.0),
            st(3, "SELECT * FROM fast WHERE k = $1", 2.0, 9000.0),
        ];
        let idx = IndexStats {
            schema: "public".into(),
            table: "users".into(),
            name: "users_email".into(),
            columns: s(&["email"]),
            valid: true,
            ..IndexStats::default()
        };
        let c = candidates(&stmts, &[idx], 100.0);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].table, "orders");
        assert_eq!(
            c[0].create_sql(),
            "CREATE INDEX CONCURRENTLY ON orders (account_id)"
        );
        assert_eq!(c[0].queryid, 1);
    }

    #[test]
    fn names_are_quoted_only_when_needed() {
        assert_eq!(quote_ident("account_id"), "account_id");
        assert_eq!(quote_ident("Account"), "\"Account\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        let mut c = candidates(
            &[st(
                1,
                "SELECT * FROM app.\"Orders\" WHERE \"AccountId\" = $1",
                300.0,
                1.0,
            )],
            &[],
            100.0,
        );
        assert_eq!(
            c.remove(0).hypothetical_sql(),
            "CREATE INDEX ON app.\"Orders\" (\"AccountId\")"
        );
    }
}
