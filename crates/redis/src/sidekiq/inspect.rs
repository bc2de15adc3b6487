//! `powertune queues`: the one entry. Connects, optionally watches (`--watch`), reads
//! the full snapshot, judges and renders it.

use super::collect::{collect, Options};
use super::judge::{judge, judge_trend, watch_connection};
use super::render::render;
use super::snapshot::{SidekiqSnapshot, WatchDelta};
use super::watch::{run, sample, Reconnect};
use crate::conn::ConnOptions;
use crate::error::RedisError;
use powertune_core::{Finding, Inspection, Targets};
use serde::Serialize;
use std::future::Future;
use std::time::Duration;

/// The shortest `--watch` interval.
pub const MIN_WATCH: Duration = Duration::from_millis(100);
/// The longest `--watch` interval.
pub const MAX_WATCH: Duration = Duration::from_secs(3600);

/// `--watch`: how often to sample, and after how many intervals to stop.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    pub every: Duration,
    /// None: until the stop future resolves (Ctrl-C in the CLI).
    pub ticks: Option<u64>,
    /// How to get Redis back when it goes away during the watch.
    pub reconnect: Reconnect,
}

/// Everything `powertune queues` needs.
#[derive(Debug, Clone)]
pub struct QueuesOptions {
    pub conn: ConnOptions,
    /// How much of the retry and dead sets, daily stats and metrics to read.
    pub read: Options,
    pub watch: Option<WatchOptions>,
}

impl QueuesOptions {
    /// Checks the options before any connection opens.
    pub fn validate(&self) -> Result<(), RedisError> {
        let bad = |input: String, reason: &str, example: &str| {
            Err(RedisError::Input {
                input,
                reason: reason.to_string(),
                example: example.to_string(),
            })
        };
        let r = &self.read;
        if r.retry_sample == 0 || r.retry_sample > 100_000 {
            return bad(
                format!("--retry-sample {}", r.retry_sample),
                "must be 1..=100000",
                "--retry-sample 1000",
            );
        }
        if r.days == 0 || r.days > 366 {
            return bad(format!("--days {}", r.days), "must be 1..=366", "--days 7");
        }
        if let Some(w) = &self.watch {
            if w.ticks == Some(0) {
                return bad("--ticks 0".into(), "must be at least 1", "--ticks 6");
            }
            if w.every < MIN_WATCH || w.every > MAX_WATCH {
                return bad(
                    format!("--watch {}", powertune_core::duration::format(w.every)),
                    "must be at least 100ms and at most 1h",
                    "--watch 5s",
                );
            }
        }
        Ok(())
    }
}

/// The metrics payload of `powertune queues`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct QueuesMetrics {
    pub sidekiq: SidekiqSnapshot,
    /// The change over the whole `--watch` (None without it).
    pub watch: Option<WatchDelta>,
}

/// Inspects Sidekiq's queues. With `watch` set, watches until its `ticks` are done
/// (give them, or use [`inspect_watching`] with a stop future).
pub async fn inspect(
    options: &QueuesOptions,
    targets: &Targets,
) -> Result<Inspection<QueuesMetrics>, RedisError> {
    inspect_watching(options, targets, |_, _| {}, std::future::pending()).await
}

/// [`inspect`], yielding each `--watch` interval (seconds since the start, rates since
/// the previous sample) to `on_tick`, and ending the watch early when `stop` resolves.
pub async fn inspect_watching<T, X>(
    options: &QueuesOptions,
    targets: &Targets,
    on_tick: T,
    stop: X,
) -> Result<Inspection<QueuesMetrics>, RedisError>
where
    T: FnMut(f64, &WatchDelta),
    X: Future<Output = ()>,
{
    options.validate()?;
    let mut conn = options.conn.open().await?;
    let Some(w) = &options.watch else {
        let snap = collect(&mut conn, &options.read).await?;
        let findings = judge(&snap, &targets.worker);
        return Ok(finish(snap, findings, None, targets));
    };
    // The full snapshot at the start: the report falls back on it when Redis is gone
    // at the end of the watch.
    let at_start = collect(&mut conn, &options.read).await?;
    // The connection the sampler uses; emptied when a sample fails, so the next one
    // opens a new connection.
    let slot = std::sync::Arc::new(tokio::sync::Mutex::new(Some(conn)));
    let max_queues = options.read.max_queues;
    let sampler = || {
        let slot = slot.clone();
        let conn_options = options.conn.clone();
        async move {
            let mut guard = slot.lock().await;
            let mut c = match guard.take() {
                Some(c) => c,
                None => conn_options.open().await?,
            };
            let r = sample(&mut c, max_queues).await;
            if r.is_ok() {
                *guard = Some(c);
            }
            r
        }
    };
    let watched = run(w.every, w.ticks, w.reconnect, sampler, on_tick, stop).await?;
    let mut lost = watched.lost.as_ref().map(|(at_s, why)| {
        format!(
            "lost {} into the watch and not back after {} reconnect attempts ({}): {why}",
            crate::units::human_secs(*at_s),
            w.reconnect.attempts,
            powertune_core::duration::format(w.reconnect.total())
        )
    });
    let at_end = match lost {
        Some(_) => None,
        None => {
            let taken = slot.lock().await.take();
            let end = async {
                let mut c = match taken {
                    Some(c) => c,
                    None => options.conn.open().await?,
                };
                collect(&mut c, &options.read).await
            };
            match end.await {
                Ok(s) => Some(s),
                Err(e) => {
                    lost = Some(format!("lost when reading the final snapshot: {e}"));
                    None
                }
            }
        }
    };
    let snap = at_end.unwrap_or(at_start);
    let mut findings = judge(&snap, &targets.worker);
    findings.push(judge_trend(&watched.delta));
    findings.extend(watch_connection(
        &options.conn.url.redacted,
        watched.reconnects,
        lost.as_deref(),
    ));
    Ok(finish(snap, findings, Some(watched.delta), targets))
}

/// The inspection of one snapshot and its findings.
fn finish(
    snap: SidekiqSnapshot,
    findings: Vec<Finding>,
    trend: Option<WatchDelta>,
    targets: &Targets,
) -> Inspection<QueuesMetrics> {
    let text = render(&snap, &targets.worker);
    Inspection::new(
        "queues",
        findings,
        QueuesMetrics {
            sidekiq: snap,
            watch: trend,
        },
        text,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::RedisUrl;

    fn options() -> QueuesOptions {
        QueuesOptions {
            conn: ConnOptions {
                url: RedisUrl::parse("redis://127.0.0.1:1/0").unwrap(),
                timeout: Duration::from_secs(1),
            },
            read: Options::default(),
            watch: None,
        }
    }

    #[test]
    fn options_are_validated_with_an_example() {
        assert!(options().validate().is_ok());
        let mut o = options();
        o.read.retry_sample = 0;
        assert_eq!(
            o.validate().unwrap_err().to_string(),
            "--retry-sample 0: must be 1..=100000 (example: --retry-sample 1000)"
        );
        let mut o = options();
        o.read.days = 400;
        assert_eq!(
            o.validate().unwrap_err().to_string(),
            "--days 400: must be 1..=366 (example: --days 7)"
        );
        let mut o = options();
        o.watch = Some(WatchOptions {
            every: Duration::from_secs(1),
            ticks: Some(0),
            reconnect: Reconnect::default(),
        });
        assert_eq!(
            o.validate().unwrap_err().to_string(),
            "--ticks 0: must be at least 1 (example: --ticks 6)"
        );
    }
}
