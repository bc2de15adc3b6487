//! What a role without `pg_read_all_stats` cannot see, said as such: other roles'
//! sessions in `pg_stat_activity` show no state or query, and their statements in
//! `pg_stat_statements` show `<insufficient privilege>` instead of the text. A check
//! that depends on what is hidden reports "not visible to role X" (a WARN naming the
//! grant), never a PASS.

use crate::snapshot::*;
use powertune_core::units::{self, Quantity};
use powertune_core::{Finding, Targets, Value, Verdict};

const AREA: &str = "db";

/// The grant that lets a role see everything `powertune db` reads.
pub fn grant(role: &str) -> String {
    format!("GRANT pg_read_all_stats TO {role}; (or pg_monitor; run as a superuser) then run powertune db again")
}

/// Sessions whose state or query the role cannot see.
pub fn hidden_sessions(s: &DbSnapshot) -> usize {
    if s.server.read_all_stats {
        return 0;
    }
    s.sessions
        .iter()
        .filter(|x| x.query.is_none() || x.state.is_none())
        .count()
}

/// A `pg_stat_statements` row whose text the role may not read.
pub fn is_hidden(st: &Statement) -> bool {
    st.query.contains("<insufficient privilege>")
}

/// The WARN a check reports instead of a PASS when what it judges is hidden.
pub fn not_visible(s: &DbSnapshot, check: &str, subject: String, what: &str) -> Finding {
    let role = &s.server.user;
    Finding::new(AREA, check, subject, Verdict::Warn)
        .observed(format!("not visible to role {role}"))
        .target("visible (grant pg_read_all_stats / pg_monitor)")
        .evidence(format!("role {role} cannot see {what}"))
        .action(grant(role))
}

/// The statements of other roles whose text is hidden, folded into one finding when
/// any of them is slow (their timings are visible, their text is not):
/// `(how many, the finding)`.
pub fn hidden_slow_statements(
    s: &DbSnapshot,
    hidden: &[&Statement],
    t: &Targets,
) -> Option<(usize, Finding)> {
    let d = &t.database;
    let slow: Vec<&&Statement> = hidden
        .iter()
        .filter(|st| st.mean_ms >= d.max_query_ms)
        .collect();
    let worst = slow.iter().map(|x| x.mean_ms).fold(0.0, f64::max);
    if slow.is_empty() {
        return None;
    }
    let calls: i64 = slow.iter().map(|x| x.calls).sum();
    let total: f64 = slow.iter().map(|x| x.total_ms).sum();
    let mut roles: Vec<&str> = slow.iter().map(|x| x.user.as_str()).collect();
    roles.sort_unstable();
    roles.dedup();
    let role = &s.server.user;
    let f = Finding::new(
        AREA,
        "slow_query",
        format!("{} statement(s) not visible to role {role}", slow.len()),
        Verdict::lower_is_better(worst, d.max_query_ms, Some(d.slow_query_ms)),
    )
    .observed(Value::of(Quantity::ms(worst)).note("slowest mean"))
    .target(Value::lt(Quantity::ms(d.max_query_ms)))
    .limit(Value::of(Quantity::ms(d.slow_query_ms)))
    .evidence(format!(
        "pg_stat_statements shows <insufficient privilege> for their text: {} slow statement(s) of role(s) {}, {calls} calls, {} in all",
        slow.len(),
        roles.join(", "),
        units::ms(total)
    ))
    .action(grant(role));
    Some((slow.len(), f))
}

/// What the role could not see without `pg_read_all_stats`.
pub fn visibility(s: &DbSnapshot) -> Vec<Finding> {
    if s.server.read_all_stats {
        return vec![];
    }
    let hidden = hidden_sessions(s);
    let hidden_stmts = match &s.statements {
        StatementsState::Available { statements, .. } => {
            statements.iter().filter(|x| is_hidden(x)).count()
        }
        _ => 0,
    };
    vec![Finding::new(AREA, "limited_visibility", &s.server.user, Verdict::Warn)
        .observed("no pg_read_all_stats")
        .target("superuser or pg_read_all_stats")
        .evidence(format!(
            "role {} cannot see other roles' query text and state in pg_stat_activity ({hidden} session(s) hidden: stuck, idle-in-transaction and blocked checks may miss them) nor their statement text in pg_stat_statements ({hidden_stmts} of the top statements hidden)",
            s.server.user
        ))
        .action(grant(&s.server.user))]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::{slow_queries, stuck_sessions, Limits};

    fn limited() -> DbSnapshot {
        let mut s = DbSnapshot::default();
        s.server.read_all_stats = false;
        s.server.user = "monitor".into();
        s.sessions = vec![Session {
            pid: 1,
            ..Default::default()
        }];
        s
    }

    fn stmt(query: &str, mean: f64) -> Statement {
        Statement {
            queryid: 0,
            user: "app".into(),
            query: query.into(),
            calls: 10,
            total_ms: mean * 10.0,
            mean_ms: mean,
            max_ms: mean,
            rows: 1,
            shared_blks_hit: 1,
            shared_blks_read: 0,
        }
    }

    #[test]
    fn limited_visibility_is_reported() {
        let s = limited();
        let f = visibility(&s);
        assert!(f[0].evidence.contains("1 session(s) hidden"));
        assert!(f[0].action.contains("GRANT pg_read_all_stats TO monitor"));
        let mut all = s.clone();
        all.server.read_all_stats = true;
        assert!(visibility(&all).is_empty());
    }

    #[test]
    fn hidden_sessions_are_never_a_pass() {
        let s = limited();
        let f = stuck_sessions(&s, &Targets::default(), &Limits::default());
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].check, "stuck_queries");
        assert_eq!(f[0].verdict, Verdict::Warn);
        assert!(f[0].observed.contains("not visible to role monitor"));
        assert!(f[0].action.contains("pg_read_all_stats") && f[0].action.contains("pg_monitor"));
        let mut all = s.clone();
        all.server.read_all_stats = true;
        let f = stuck_sessions(&all, &Targets::default(), &Limits::default());
        assert_eq!(f[0].verdict, Verdict::Pass);
    }

    #[test]
    fn hidden_statements_are_one_finding_naming_the_grant() {
        let mut s = limited();
        let hidden = "<insufficient privilege>";
        s.statements = StatementsState::Available {
            statements: vec![
                stmt(hidden, 900.0),
                stmt(hidden, 700.0),
                stmt(hidden, 600.0),
                stmt(hidden, 1.0),
                stmt("SELECT 1", 2.0),
            ],
            total_statements: 5,
            slow_statements: 3,
        };
        let f = slow_queries(&s, &Targets::default());
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].verdict, Verdict::Fail);
        assert_eq!(f[0].subject, "3 statement(s) not visible to role monitor");
        assert!(f[0].evidence.contains("<insufficient privilege>"));
        assert!(f[0].action.contains("GRANT pg_read_all_stats TO monitor"));
        assert_eq!(f[0].observed.quantity(), Some(Quantity::ms(900.0)));
    }
}
