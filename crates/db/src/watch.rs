//! `db watch`: the runbook's pool monitor. One sample per interval: connections by
//! state against `max_connections`, and an alert when fewer than `pool_free_min`
//! remain. The loop runs on tokio's clock, so tests use paused time; the lines go to
//! a callback the caller gives.

use crate::collect::{connect, sample_connections};
use crate::config::{DbConfig, RawDbConfig};
use crate::error::DbError;
use crate::render::format_sample;
use crate::snapshot::ConnectionCounts;
use powertune_core::Targets;
use std::future::Future;
use std::time::Duration;

/// The shortest interval between samples.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// The longest interval between samples (an hour).
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);

/// What to watch and how often.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    pub connection: RawDbConfig,
    /// Time between samples (the first is taken at once).
    pub interval: Duration,
    /// Stop after this many samples (`None`: until stopped).
    pub count: Option<u64>,
}

impl WatchOptions {
    /// Checks the interval, the count and the connection settings. No I/O.
    pub fn validate(&self) -> Result<DbConfig, DbError> {
        if self.interval < MIN_INTERVAL {
            return Err(DbError::Config(format!(
                "--interval {} is too short (at least 100ms, e.g. 30s)",
                powertune_core::units::duration(self.interval)
            )));
        }
        if self.interval > MAX_INTERVAL {
            return Err(DbError::Config(format!(
                "--interval {} is too long (at most 1h, e.g. 30s)",
                powertune_core::units::duration(self.interval)
            )));
        }
        if self.count == Some(0) {
            return Err(DbError::Config(
                "--count must be at least 1 (e.g. --count 10)".into(),
            ));
        }
        self.connection.validate()
    }
}

/// `db watch`: connects once, then samples until `count` samples were taken or
/// `stop` resolves; `emit` gets each sample's line and its alert line, if any.
/// Returns how many samples raised an alert.
pub async fn watch<E, X>(
    options: &WatchOptions,
    targets: &Targets,
    emit: E,
    stop: X,
) -> Result<u64, DbError>
where
    E: FnMut(&str, Option<&str>),
    X: Future<Output = ()>,
{
    let cfg = options.validate()?;
    let session = tokio::sync::Mutex::new(connect(&cfg).await?);
    let session = &session;
    run(
        options.interval,
        options.count,
        targets.database.pool_free_min,
        || async move { sample_connections(&mut *session.lock().await).await },
        emit,
        stop,
    )
    .await
}

/// Samples `count` times (or until `stop` resolves) every `interval`, the first at
/// once; `emit` gets each sample. Returns how many samples raised an alert.
pub async fn run<S, SF, E, X>(
    interval: Duration,
    count: Option<u64>,
    free_min: u32,
    mut sample: S,
    mut emit: E,
    stop: X,
) -> Result<u64, DbError>
where
    S: FnMut() -> SF,
    SF: Future<Output = Result<ConnectionCounts, DbError>>,
    E: FnMut(&str, Option<&str>),
    X: Future<Output = ()>,
{
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    let mut alerts = 0;
    let mut done = 0u64;
    loop {
        if count.is_some_and(|c| done >= c) {
            break;
        }
        tokio::select! {
            _ = &mut stop => break,
            _ = ticker.tick() => {}
        }
        let c = sample().await?;
        let at = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let (line, alert) = format_sample(&at, &c, free_min);
        if alert.is_some() {
            alerts += 1;
        }
        emit(&line, alert.as_deref());
        done += 1;
    }
    Ok(alerts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::tests::counts;

    #[tokio::test(start_paused = true)]
    async fn samples_on_the_interval_and_stops_after_count() {
        let start = tokio::time::Instant::now();
        let mut n = 0u32;
        let mut lines = Vec::new();
        let alerts = run(
            Duration::from_secs(30),
            Some(3),
            3,
            || {
                n += 1;
                let c = counts(5 + n);
                async move { Ok(c) }
            },
            |l, a| lines.push((l.to_string(), a.map(str::to_string))),
            std::future::pending(),
        )
        .await
        .unwrap();
        assert_eq!(lines.len(), 3);
        assert_eq!(alerts, 1, "{lines:?}");
        // first sample at once, then two intervals
        assert_eq!(start.elapsed(), Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn stops_when_told() {
        let alerts = run(
            Duration::from_secs(30),
            None,
            3,
            || async { Ok(counts(2)) },
            |_, _| {},
            tokio::time::sleep(Duration::from_secs(95)),
        )
        .await
        .unwrap();
        assert_eq!(alerts, 0);
    }

    #[test]
    fn options_are_checked_before_connecting() {
        let mut o = WatchOptions {
            connection: RawDbConfig::new("postgres://app@db/app"),
            interval: Duration::from_millis(50),
            count: None,
        };
        let e = o.validate().unwrap_err().to_string();
        assert_eq!(e, "--interval 50ms is too short (at least 100ms, e.g. 30s)");
        o.interval = Duration::from_secs(1);
        o.count = Some(0);
        assert!(o.validate().unwrap_err().to_string().contains("--count"));
        o.count = Some(1);
        assert!(o.validate().is_ok());
    }
}
