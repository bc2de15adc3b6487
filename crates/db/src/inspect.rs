//! The entry of `powertune db`: options checked before any connection, then
//! collect → judge → render, returned as one [`Inspection`].

use crate::collect::{collect, CollectOptions};
use crate::config::{DbConfig, RawDbConfig};
use crate::error::DbError;
use crate::judge::{judge, Limits, IDLE_IN_TX_MIN_S};
use crate::render::{details, DbMetrics};
use crate::space::{self, SpaceBaseline};
use powertune_core::{baseline, Inspection, Targets};
use std::time::Duration;

/// The most statements `--top` may list.
pub const MAX_TOP: usize = 1000;
/// The longest `--stuck-after` and `--idle-in-transaction-after` (a day): a session
/// older than that is stuck by any measure.
pub const MAX_AGE: Duration = Duration::from_secs(86_400);
/// The largest `--pool-size` (PostgreSQL's own max_connections limit).
pub const MAX_POOL_SIZE: u32 = 262_143;

/// What `powertune db` is asked to look at.
#[derive(Debug, Clone)]
pub struct DbOptions {
    pub connection: RawDbConfig,
    /// How many statements to list by total and by mean time (1 to [`MAX_TOP`]).
    pub top: usize,
    /// The application's connection pool size, judged against the runbook's band.
    pub pool_size: Option<u32>,
    /// Queries active longer than this are stuck (default: `database.stuck_query_s`).
    pub stuck_after: Option<Duration>,
    /// Sessions idle in a transaction longer than this are flagged (default 1 s: a
    /// shorter gap is the normal pause between a transaction's statements).
    pub idle_in_transaction_after: Duration,
    /// A `db` baseline saved earlier: the Space section shows growth since then.
    pub baseline: Option<std::path::PathBuf>,
    /// Where to save this run's relation sizes as a baseline.
    pub save_baseline: Option<std::path::PathBuf>,
}

impl DbOptions {
    /// The defaults for a connection: top 10, no pool size, the targets' stuck
    /// threshold, 1 s idle in transaction.
    pub fn new(connection: RawDbConfig) -> DbOptions {
        DbOptions {
            connection,
            top: 10,
            pool_size: None,
            stuck_after: None,
            idle_in_transaction_after: Duration::from_secs_f64(IDLE_IN_TX_MIN_S),
            baseline: None,
            save_baseline: None,
        }
    }

    /// Checks every option, then the connection settings. No I/O.
    pub fn validate(&self) -> Result<DbConfig, DbError> {
        if self.top == 0 || self.top > MAX_TOP {
            return Err(DbError::Config(format!(
                "--top {} must be between 1 and {MAX_TOP} (e.g. --top 20)",
                self.top
            )));
        }
        for (flag, d) in [
            ("--stuck-after", self.stuck_after),
            (
                "--idle-in-transaction-after",
                Some(self.idle_in_transaction_after),
            ),
        ] {
            if let Some(d) = d {
                if d.is_zero() || d > MAX_AGE {
                    return Err(DbError::Config(format!(
                        "{flag} {} must be above 0 and at most 1 day (e.g. {flag} 5m)",
                        powertune_core::duration::format(d)
                    )));
                }
            }
        }
        if let Some(n) = self.pool_size {
            if n == 0 || n > MAX_POOL_SIZE {
                return Err(DbError::Config(format!(
                    "--pool-size {n} must be between 1 and {MAX_POOL_SIZE} (e.g. --pool-size 25)"
                )));
            }
        }
        self.connection.validate()
    }

    /// The targets with `stuck_after` applied.
    pub fn targets(&self, targets: &Targets) -> Targets {
        let mut t = targets.clone();
        if let Some(d) = self.stuck_after {
            t.database.stuck_query_s = d.as_secs_f64();
        }
        t
    }

    /// The engine's own thresholds these options ask for.
    pub fn limits(&self) -> Limits {
        Limits {
            idle_in_transaction_s: self.idle_in_transaction_after.as_secs_f64(),
        }
    }
}

/// `powertune db`: reads the catalog, judges it against `targets`, and returns the
/// findings, the typed metrics and the terminal section (server, connections, top
/// statements).
pub async fn inspect(
    options: &DbOptions,
    targets: &Targets,
) -> Result<Inspection<DbMetrics>, DbError> {
    let cfg = options.validate()?;
    // A bad baseline is an error before any connection.
    let base = options
        .baseline
        .as_deref()
        .map(|p| baseline::load::<SpaceBaseline>(p, space::BASELINE_KIND))
        .transpose()
        .map_err(|e| DbError::Config(e.to_string()))?;
    let targets = options.targets(targets);
    let collect_options = CollectOptions {
        top: options.top,
        slow_mean_ms: targets.database.max_query_ms,
        pool_size: options.pool_size,
    };
    let snapshot = collect(&cfg, &collect_options).await?;
    let mut findings = judge(&snapshot, &targets, &options.limits());
    let space_metrics = space::metrics(
        &snapshot,
        base.as_ref().map(|b| (b.saved_at.as_str(), &b.data)),
    );
    findings.extend(space::growth_finding(&snapshot, &space_metrics));
    if let Some(path) = &options.save_baseline {
        let data = SpaceBaseline {
            relations: space::relations(&snapshot),
        };
        baseline::save(path, space::BASELINE_KIND, &cfg.redacted_url, &data)
            .map_err(|e| DbError::Config(e.to_string()))?;
    }
    let text = format!(
        "{}\n{}",
        details(&snapshot, options.top),
        space::render(&space_metrics)
    );
    Ok(Inspection::new(
        "db",
        findings,
        DbMetrics::new(&snapshot, space_metrics),
        text,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked_before_connecting() {
        let mut o = DbOptions::new(RawDbConfig::new("postgres://app:pw@db/app"));
        assert!(o.validate().is_ok());
        o.top = 0;
        assert_eq!(
            o.validate().unwrap_err().to_string(),
            "--top 0 must be between 1 and 1000 (e.g. --top 20)"
        );
        o.top = 1001;
        assert!(o.validate().is_err());
        o.top = 10;
        o.connection.url = "mysql://db/app".into();
        assert!(o.validate().unwrap_err().to_string().contains("--url"));
    }

    #[test]
    fn stuck_after_and_idle_threshold_reach_the_judge() {
        let mut o = DbOptions::new(RawDbConfig::new("postgres://db/app"));
        let t = Targets::default();
        assert_eq!(
            o.targets(&t).database.stuck_query_s,
            t.database.stuck_query_s
        );
        assert_eq!(o.limits(), Limits::default());
        o.stuck_after = Some(Duration::from_secs(2));
        o.idle_in_transaction_after = Duration::from_millis(5);
        assert_eq!(o.targets(&t).database.stuck_query_s, 2.0);
        assert_eq!(o.limits().idle_in_transaction_s, 0.005);
    }

    #[test]
    fn ages_and_pool_size_are_bounded() {
        let mut o = DbOptions::new(RawDbConfig::new("postgres://db/app"));
        for d in [Duration::ZERO, Duration::from_secs(86_401), Duration::MAX] {
            o.stuck_after = Some(d);
            let e = o.validate().unwrap_err().to_string();
            assert!(e.starts_with("--stuck-after"), "{e}");
        }
        o.stuck_after = Some(Duration::from_secs(300));
        o.idle_in_transaction_after = Duration::ZERO;
        let e = o.validate().unwrap_err().to_string();
        assert!(e.starts_with("--idle-in-transaction-after 0ms"), "{e}");
        o.idle_in_transaction_after = Duration::from_secs(1);
        o.pool_size = Some(0);
        let e = o.validate().unwrap_err().to_string();
        assert!(e.starts_with("--pool-size 0"), "{e}");
        o.pool_size = Some(25);
        assert!(o.validate().is_ok());
    }
}
