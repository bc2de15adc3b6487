//! Replication lag: on a primary, each standby of `pg_stat_replication` (how far its
//! replay is behind, in time and in WAL bytes); on a replica, how long ago the last
//! replayed transaction committed, counted as 0 when everything received is
//! replayed (an idle primary sends nothing to replay).

use crate::snapshot::DbSnapshot;
use powertune_core::units::{self, Quantity};
use powertune_core::{Finding, Value, Verdict};
use serde::{Deserialize, Serialize};

const AREA: &str = "db";
/// Replay lag (seconds) from which a standby or replica is a WARN.
pub const LAG_WARN_S: f64 = 10.0;
/// Replay lag (seconds) from which it is a FAIL: reads from it are a minute stale.
pub const LAG_FAIL_S: f64 = 60.0;

/// What the server says about replication (one catalog query).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Replication {
    /// `pg_is_in_recovery()`: this server is a replica.
    pub in_recovery: bool,
    /// On a replica: seconds since the last replayed transaction committed
    /// (`None`: nothing replayed yet).
    pub replay_delay_s: Option<f64>,
    /// On a replica: everything received has been replayed.
    pub caught_up: Option<bool>,
    /// On a primary: its standbys.
    pub standbys: Vec<Standby>,
}

/// One row of `pg_stat_replication`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Standby {
    pub name: String,
    pub client_addr: Option<String>,
    /// `streaming`, `catchup`, ...; `None` when this role may not see it.
    pub state: Option<String>,
    /// `replay_lag` in seconds (`None` when idle or not visible).
    pub replay_lag_s: Option<f64>,
    /// WAL bytes written on the primary and not yet replayed there.
    pub replay_lag_bytes: Option<i64>,
}

fn band(lag: f64) -> Verdict {
    Verdict::lower_is_better(lag, LAG_WARN_S, Some(LAG_FAIL_S))
}

const ACTION: &str = "find what holds replay back on the standby (long queries with hot_standby_feedback, I/O, network); send no latency-sensitive reads to it meanwhile";

/// A finding per standby (primary) or for this replica; none on a server without
/// replication.
pub fn replication(s: &DbSnapshot) -> Vec<Finding> {
    let r = &s.replication;
    let mut out = Vec::new();
    if r.in_recovery {
        let delay = if r.caught_up == Some(true) {
            Some(0.0)
        } else {
            r.replay_delay_s
        };
        let f = Finding::new(
            AREA,
            "replica_delay",
            "this replica",
            delay.map_or(Verdict::Warn, band),
        );
        out.push(match delay {
            Some(d) => f
                .observed(Value::of(Quantity::seconds(d.max(0.0))).note("replay delay"))
                .target(Value::lt(Quantity::seconds(LAG_WARN_S)))
                .limit(Value::of(Quantity::seconds(LAG_FAIL_S)))
                .evidence(if r.caught_up == Some(true) {
                    "everything received is replayed".to_string()
                } else {
                    format!("last replayed transaction committed {} ago, WAL still to replay", units::seconds(d.max(0.0)))
                })
                .action(ACTION),
            None => f
                .observed("nothing replayed yet")
                .target(Value::lt(Quantity::seconds(LAG_WARN_S)))
                .evidence("pg_last_xact_replay_timestamp() is empty: the replica has replayed no transaction since it started")
                .action("check the replica receives WAL (pg_stat_wal_receiver) and the primary lists it in pg_stat_replication"),
        });
    }
    for sb in &r.standbys {
        let subject = format!(
            "standby '{}' ({})",
            sb.name,
            sb.client_addr.as_deref().unwrap_or("local")
        );
        if sb.state.is_none() {
            out.push(crate::visibility::not_visible(
                s,
                "replication_lag",
                subject,
                "the state and lag of standbys in pg_stat_replication",
            ));
            continue;
        }
        let lag = sb.replay_lag_s.unwrap_or(0.0);
        out.push(
            Finding::new(AREA, "replication_lag", subject, band(lag))
                .observed(Value::of(Quantity::seconds(lag)).note("replay lag"))
                .target(Value::lt(Quantity::seconds(LAG_WARN_S)))
                .limit(Value::of(Quantity::seconds(LAG_FAIL_S)))
                .evidence(format!(
                    "state {}, {} of WAL not replayed{}",
                    sb.state.as_deref().unwrap_or("?"),
                    units::bytes(sb.replay_lag_bytes.unwrap_or(0).max(0) as u64),
                    if sb.replay_lag_s.is_none() {
                        " (no replay_lag: idle and caught up)"
                    } else {
                        ""
                    }
                ))
                .action(ACTION),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(r: Replication) -> DbSnapshot {
        let mut s = DbSnapshot {
            replication: r,
            ..DbSnapshot::default()
        };
        s.server.user = "monitor".into();
        s
    }

    fn standby(lag: Option<f64>, state: Option<&str>) -> Standby {
        Standby {
            name: "walreceiver".into(),
            client_addr: Some("10.0.0.7".into()),
            state: state.map(str::to_string),
            replay_lag_s: lag,
            replay_lag_bytes: Some(16_777_216),
        }
    }

    #[test]
    fn no_replication_no_finding() {
        assert!(replication(&snap(Replication::default())).is_empty());
    }

    #[test]
    fn standby_lag_bands() {
        let f = replication(&snap(Replication {
            standbys: vec![
                standby(Some(0.002), Some("streaming")),
                standby(Some(15.0), Some("streaming")),
                standby(Some(120.0), Some("catchup")),
                standby(None, Some("streaming")),
            ],
            ..Replication::default()
        }));
        let v: Vec<Verdict> = f.iter().map(|x| x.verdict).collect();
        assert_eq!(
            v,
            [Verdict::Pass, Verdict::Warn, Verdict::Fail, Verdict::Pass]
        );
        assert_eq!(f[0].subject, "standby 'walreceiver' (10.0.0.7)");
        assert!(
            f[1].evidence.contains("16.0 MiB") || f[1].evidence.contains("16 MiB"),
            "{}",
            f[1].evidence
        );
        assert!(f[3].evidence.contains("idle and caught up"));
    }

    #[test]
    fn hidden_standbys_are_not_a_pass() {
        let f = replication(&snap(Replication {
            standbys: vec![standby(None, None)],
            ..Replication::default()
        }));
        assert_eq!(f[0].verdict, Verdict::Warn);
        assert!(f[0].observed.contains("not visible to role monitor"));
    }

    #[test]
    fn replica_delay_counts_zero_when_caught_up() {
        let r = |delay: Option<f64>, caught_up| Replication {
            in_recovery: true,
            replay_delay_s: delay,
            caught_up: Some(caught_up),
            standbys: vec![],
        };
        let f = replication(&snap(r(Some(3600.0), true)));
        assert_eq!(f[0].verdict, Verdict::Pass);
        let f = replication(&snap(r(Some(30.0), false)));
        assert_eq!(f[0].verdict, Verdict::Warn);
        let f = replication(&snap(r(Some(300.0), false)));
        assert_eq!(f[0].verdict, Verdict::Fail);
        let f = replication(&snap(r(None, false)));
        assert_eq!(f[0].verdict, Verdict::Warn);
        assert!(f[0].observed.contains("nothing replayed"));
    }
}
