//! Asks the planner whether a suggested index would serve its statement, with the
//! `hypopg` extension: the statement's generic plan (placeholders left unbound, as
//! `plan_cache_mode = force_generic_plan` plans them) is costed, the index is created
//! as a hypothetical one (no disk, no lock, visible to this session only), and the
//! plan is costed again. Everything runs in one rolled-back transaction; the prepared
//! statements and the hypothetical index are dropped before it ends. Nothing is
//! executed: `EXPLAIN` without `ANALYZE`.

use crate::collect::{Session, MARKER};
use crate::explain::sql::{max_placeholder, quote_literal};
use crate::suggest::{IndexSuggestion, Verification};
use tokio_postgres::SimpleQueryMessage;

/// Costs every suggestion's statement without and with its index. `statements` maps
/// a query id to the statement's whole text (the suggestion keeps only its start).
pub async fn verify(
    s: &mut Session,
    suggestions: &mut [IndexSuggestion],
    text_of: impl Fn(i64) -> Option<String>,
) {
    for sug in suggestions.iter_mut() {
        let Some(sql) = text_of(sug.queryid) else {
            continue;
        };
        sug.verification = match cost_pair(s, sug, &sql).await {
            Ok(v) => v,
            Err(reason) => Verification::Heuristic {
                reason: format!("the planner could not cost it: {reason}"),
            },
        };
    }
}

/// One round trip: both plans and the hypothetical index in one transaction.
async fn cost_pair(
    s: &mut Session,
    sug: &IndexSuggestion,
    sql: &str,
) -> Result<Verification, String> {
    let body = sql.trim().trim_end_matches(';');
    // Exactly one statement, by PostgreSQL's own lexical rules (quotes, comments,
    // dollar quoting), or nothing is sent.
    match crate::explain::sql::split_statements(body) {
        Ok(parts) if parts.len() == 1 => {}
        _ => return Err("its text is not exactly one statement".into()),
    }
    let nulls = vec!["NULL"; max_placeholder(body)].join(", ");
    let exec = |name: &str| {
        if nulls.is_empty() {
            format!("EXPLAIN (FORMAT JSON) EXECUTE {name}")
        } else {
            format!("EXPLAIN (FORMAT JSON) EXECUTE {name}({nulls})")
        }
    };
    let create = quote_literal(&sug.hypothetical_sql())?;
    // Each statement carries the marker, so pg_stat_statements rows of these are
    // left out of the slow-query check like the collector's own.
    let script = [
        "BEGIN".to_string(),
        "SET LOCAL plan_cache_mode = force_generic_plan".to_string(),
        format!("PREPARE powertune_before AS {body}"),
        exec("powertune_before"),
        format!("SELECT indexname FROM hypopg_create_index({create})"),
        format!("PREPARE powertune_after AS {body}"),
        exec("powertune_after"),
        "DEALLOCATE powertune_before".to_string(),
        "DEALLOCATE powertune_after".to_string(),
        "SELECT hypopg_reset()".to_string(),
        "ROLLBACK".to_string(),
    ]
    .map(|st| format!("{MARKER} {st}"))
    .join("; ");
    s.round_trips += 1;
    let answer = s.client.simple_query(&script).await;
    let messages = match answer {
        Ok(m) => m,
        Err(e) => {
            let reason = s.cfg.describe(&e);
            // Leave the session as it was: no open transaction, no prepared statement,
            // no hypothetical index.
            s.round_trips += 1;
            let _ = s
                .client
                .batch_execute("ROLLBACK; DEALLOCATE ALL; SELECT hypopg_reset()")
                .await;
            return Err(reason);
        }
    };
    let mut plans = Vec::new();
    let mut index_name = None;
    for m in &messages {
        if let SimpleQueryMessage::Row(r) = m {
            match r.columns().first().map(|c| c.name()) {
                Some("QUERY PLAN") => plans.push(r.get(0).unwrap_or_default().to_string()),
                Some("indexname") => index_name = r.get(0).map(str::to_string),
                _ => {}
            }
        }
    }
    let [before, after] = plans.as_slice() else {
        return Err(format!("expected two plans, got {}", plans.len()));
    };
    Ok(Verification::Hypopg {
        cost_before: total_cost(before)?,
        cost_after: total_cost(after)?,
        used: index_name.is_some_and(|n| after.contains(&n)),
    })
}

/// `Total Cost` of the top node of an `EXPLAIN (FORMAT JSON)` answer.
fn total_cost(plan: &str) -> Result<f64, String> {
    let v: serde_json::Value =
        serde_json::from_str(plan).map_err(|e| format!("unreadable plan: {e}"))?;
    v.get(0)
        .and_then(|d| d.get("Plan"))
        .and_then(|p| p.get("Total Cost"))
        .and_then(serde_json::Value::as_f64)
        .ok_or_else(|| "the plan has no Total Cost".to_string())
}

#[cfg(test)]
mod tests {
    use super::total_cost;

    #[test]
    fn total_cost_reads_the_top_node() {
        let plan = r#"[{"Plan": {"Node Type": "Seq Scan", "Total Cost": 1693.0, "Plans": [{"Total Cost": 3.5}]}}]"#;
        assert_eq!(total_cost(plan), Ok(1693.0));
        assert!(total_cost("[]").is_err());
        assert!(total_cost("not json").is_err());
    }
}
