//! Connections grouped by where they come from (application, user, client address),
//! against the pool target: one process group holding more connections than a pool
//! allows is a pool set too large, too many processes, or connections leaking.

use crate::snapshot::{DbSnapshot, Session};
use powertune_core::units::Quantity;
use powertune_core::{Finding, Targets, Value, Verdict};
use std::collections::BTreeMap;

const AREA: &str = "db";
/// Groups listed in the summary's evidence.
pub const SOURCES_LISTED: usize = 5;

/// `app 'X', user Y, from Z` for a session; parts the role may not see say so.
fn source(x: &Session) -> String {
    let app = if x.application.is_empty() {
        "(none)"
    } else {
        x.application.as_str()
    };
    format!(
        "app '{app}', user {}, from {}",
        x.user.as_deref().unwrap_or("(not visible)"),
        x.client_addr.as_deref().unwrap_or("(local or not visible)")
    )
}

/// Sessions per source, largest first (ties by name).
pub fn by_source(s: &DbSnapshot) -> Vec<(String, u32)> {
    let mut groups: BTreeMap<String, u32> = BTreeMap::new();
    for x in &s.sessions {
        *groups.entry(source(x)).or_default() += 1;
    }
    let mut v: Vec<(String, u32)> = groups.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// A WARN per source above the pool target (`--pool-size`, else the runbook's
/// `database.pool_max`), and one PASS summary listing the largest sources.
pub fn connections_by_source(s: &DbSnapshot, t: &Targets) -> Vec<Finding> {
    let (target, named) = match s.pool_size {
        Some(p) => (p, "--pool-size"),
        None => (t.database.pool_max, "database.pool_max"),
    };
    let groups = by_source(s);
    let mut out: Vec<Finding> = groups
        .iter()
        .filter(|(_, n)| *n > target)
        .map(|(src, n)| {
            Finding::new(AREA, "connections_by_source", src.clone(), Verdict::Warn)
                .observed(Value::of(Quantity::count(*n as f64)).note("connections"))
                .target(Value::le(Quantity::count(target as f64)).note(named))
                .evidence(format!(
                    "one source holds more connections than one pool allows ({named} {target}): several processes share it, or connections leak"
                ))
                .action("count the processes behind this source times their pool size; lower the pool or put PgBouncer in front, and close idle connections the code leaks")
        })
        .collect();
    if out.is_empty() {
        let listed: Vec<String> = groups
            .iter()
            .take(SOURCES_LISTED)
            .map(|(src, n)| format!("{n} × {src}"))
            .collect();
        let largest = groups.first().map_or(0, |g| g.1);
        out.push(
            Finding::new(
                AREA,
                "connections_by_source",
                format!("{} source(s)", groups.len()),
                Verdict::Pass,
            )
            .observed(Value::of(Quantity::count(largest as f64)).note("largest source"))
            .target(Value::le(Quantity::count(target as f64)).note(named))
            .evidence(if listed.is_empty() {
                "no other session".to_string()
            } else {
                listed.join("; ")
            }),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(app: &str, user: &str, addr: Option<&str>) -> Session {
        Session {
            application: app.into(),
            user: Some(user.into()),
            client_addr: addr.map(str::to_string),
            ..Session::default()
        }
    }

    #[test]
    fn sources_above_the_pool_target_warn() {
        let mut s = DbSnapshot::default();
        for _ in 0..3 {
            s.sessions.push(session("puma", "app", Some("10.0.0.5")));
        }
        s.sessions.push(session("sidekiq", "app", Some("10.0.0.6")));
        s.sessions.push(Session::default());
        let g = by_source(&s);
        assert_eq!(g[0], ("app 'puma', user app, from 10.0.0.5".to_string(), 3));
        assert_eq!(g.len(), 3);
        assert!(g.iter().any(|x| x.0.contains("user (not visible)")));

        let f = connections_by_source(&s, &Targets::default());
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].verdict, Verdict::Pass);
        assert!(
            f[0].evidence.starts_with("3 × app 'puma'"),
            "{}",
            f[0].evidence
        );

        s.pool_size = Some(2);
        let f = connections_by_source(&s, &Targets::default());
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].verdict, Verdict::Warn);
        assert_eq!(f[0].subject, "app 'puma', user app, from 10.0.0.5");
        assert_eq!(f[0].observed.quantity(), Some(Quantity::count(3.0)));
    }
}
