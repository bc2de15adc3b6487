//! `queues --watch`: light samples on an interval, the rates between two samples, and
//! the loop that yields each interval to a callback. The loop runs on tokio's clock,
//! so tests use paused time.

use super::collect::{collect, Options};
use super::snapshot::{WatchDelta, WatchRow, WatchSample};
use crate::conn::Conn;
use crate::error::RedisError;
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

/// Reads a [`WatchSample`] in two round trips.
pub async fn sample(conn: &mut Conn, max_queues: usize) -> Result<WatchSample, RedisError> {
    let opts = Options {
        retry_sample: 1,
        dead_newest: 1,
        days: 1,
        metrics_minutes: 0,
        max_queues,
    };
    let s = collect(conn, &opts).await?;
    Ok(WatchSample {
        at: s.now,
        queues: s.queues,
        processed: s.processed,
        failed: s.failed,
        retry_size: s.retry.size,
    })
}

/// Compares two samples (pure).
pub fn delta(prev: &WatchSample, cur: &WatchSample) -> WatchDelta {
    let dt = (cur.at - prev.at).max(1e-3);
    let before: HashMap<&str, u64> = prev
        .queues
        .iter()
        .map(|q| (q.name.as_str(), q.size))
        .collect();
    let rows: Vec<WatchRow> = cur
        .queues
        .iter()
        .map(|q| {
            let net =
                (q.size as f64 - before.get(q.name.as_str()).copied().unwrap_or(0) as f64) / dt;
            WatchRow {
                queue: q.name.clone(),
                size: q.size,
                latency_s: q.latency_s,
                net_per_s: net,
                eta_s: (net < 0.0).then(|| q.size as f64 / -net),
            }
        })
        .collect();
    let depth_before: u64 = prev.queues.iter().map(|q| q.size).sum();
    let depth_now: u64 = cur.queues.iter().map(|q| q.size).sum();
    let processed_per_s = cur.processed.saturating_sub(prev.processed) as f64 / dt;
    WatchDelta {
        rows,
        processed_per_s,
        failed_per_s: cur.failed.saturating_sub(prev.failed) as f64 / dt,
        enqueued_per_s: (processed_per_s + (depth_now as f64 - depth_before as f64) / dt).max(0.0),
        retry_change: cur.retry_size as i64 - prev.retry_size as i64,
    }
}

/// Samples once (the starting point), then every `every` until `ticks` intervals have
/// passed or `stop` resolves; `on_tick` gets the seconds since the start and the rates
/// since the previous sample. Returns the change from the first sample to the last.
pub async fn run<S, SF, T, X>(
    every: Duration,
    ticks: Option<u64>,
    mut sample: S,
    mut on_tick: T,
    stop: X,
) -> Result<WatchDelta, RedisError>
where
    S: FnMut() -> SF,
    SF: Future<Output = Result<WatchSample, RedisError>>,
    T: FnMut(f64, &WatchDelta),
    X: Future<Output = ()>,
{
    let first = sample().await?;
    let mut prev = first.clone();
    let mut n = 0u64;
    let started = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = &mut stop => break,
        }
        let cur = sample().await?;
        on_tick(started.elapsed().as_secs_f64(), &delta(&prev, &cur));
        prev = cur;
        n += 1;
        if ticks.is_some_and(|t| n >= t) {
            break;
        }
    }
    Ok(delta(&first, &prev))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sidekiq::snapshot::QueueInfo;

    #[test]
    fn watch_delta_rates() {
        let mk = |at: f64, size: u64, processed: u64| WatchSample {
            at,
            queues: vec![QueueInfo {
                name: "q".into(),
                size,
                latency_s: 0.0,
                oldest_class: None,
            }],
            processed,
            failed: 0,
            retry_size: 0,
        };
        let d = delta(&mk(0.0, 100, 0), &mk(10.0, 50, 60));
        assert_eq!(d.rows[0].net_per_s, -5.0);
        assert_eq!(d.rows[0].eta_s, Some(10.0));
        assert_eq!(d.processed_per_s, 6.0);
        assert!((d.enqueued_per_s - 1.0).abs() < 1e-9);
    }

    fn at(t: f64, size: u64, retry_size: u64) -> WatchSample {
        WatchSample {
            at: t,
            queues: vec![QueueInfo {
                name: "q".into(),
                size,
                latency_s: 0.0,
                oldest_class: None,
            }],
            processed: 0,
            failed: 0,
            retry_size,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn yields_each_interval_and_returns_the_whole_change() {
        let start = tokio::time::Instant::now();
        let mut n = 0u64;
        let mut seen = Vec::new();
        let whole = run(
            Duration::from_secs(10),
            Some(3),
            || {
                n += 1;
                let s = at(n as f64 * 10.0, 100 - n * 10, n);
                async move { Ok(s) }
            },
            |elapsed, d| seen.push((elapsed, d.rows[0].size)),
            std::future::pending(),
        )
        .await
        .unwrap();
        assert_eq!(seen, vec![(10.0, 80), (20.0, 70), (30.0, 60)]);
        assert_eq!(whole.retry_change, 3);
        assert_eq!(whole.rows[0].net_per_s, -1.0);
        assert_eq!(start.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn stops_when_told() {
        let mut ticks = 0;
        let whole = run(
            Duration::from_secs(10),
            None,
            || async { Ok(at(0.0, 5, 0)) },
            |_, _| ticks += 1,
            tokio::time::sleep(Duration::from_secs(25)),
        )
        .await
        .unwrap();
        assert_eq!(ticks, 2);
        assert_eq!(whole.retry_change, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_sample_ends_the_watch_with_its_error() {
        let mut n = 0;
        let r = run(
            Duration::from_secs(1),
            Some(5),
            || {
                n += 1;
                let ok = n < 3;
                async move {
                    if ok {
                        Ok(at(0.0, 1, 0))
                    } else {
                        Err(RedisError::Connect {
                            url: "redis://h/0".into(),
                            reason: "gone".into(),
                        })
                    }
                }
            },
            |_, _| {},
            std::future::pending(),
        )
        .await;
        assert!(r.unwrap_err().to_string().contains("gone"));
    }
}
