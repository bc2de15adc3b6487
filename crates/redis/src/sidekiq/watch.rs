//! `queues --watch`: light samples on an interval, the rates between two samples, and
//! the loop that yields each interval to a callback. The loop runs on tokio's clock,
//! so tests use paused time.
//!
//! A sample that fails (Redis went away) does not end the watch: it is retried with
//! exponential backoff ([`Reconnect`]: by default 6 attempts, 250 ms doubling to at
//! most 5 s, about 13 s in all), the sampler opening a new connection each time. If
//! Redis comes back the watch goes on; if not, it ends with what it saw
//! ([`WatchRun::lost`]). A stop (Ctrl-C) during the backoff ends it at once.

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

/// How a watch that lost Redis tries to get it back: `attempts` samples, the first
/// after `first_delay`, each delay doubling up to `max_delay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconnect {
    pub attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for Reconnect {
    /// 6 attempts after 250 ms, 500 ms, 1 s, 2 s, 4 s, 5 s: about 13 s in all.
    fn default() -> Self {
        Reconnect {
            attempts: 6,
            first_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl Reconnect {
    /// The wait before attempt `n` (0-based).
    pub fn delay(&self, n: u32) -> Duration {
        self.first_delay
            .saturating_mul(2u32.saturating_pow(n.min(30)))
            .min(self.max_delay)
    }

    /// The longest a watch waits for Redis to come back.
    pub fn total(&self) -> Duration {
        (0..self.attempts).map(|n| self.delay(n)).sum()
    }
}

/// What a watch saw: the change from its first sample to its last good one, and how
/// its connection fared.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchRun {
    pub delta: WatchDelta,
    /// Intervals completed.
    pub ticks: u64,
    /// Times Redis went away and came back.
    pub reconnects: u32,
    /// Why the watch ended early, when Redis went away and did not come back within
    /// the [`Reconnect`] attempts: seconds into the watch, and the last error.
    pub lost: Option<(f64, String)>,
}

/// Samples once (the starting point), then every `every` until `ticks` intervals have
/// passed or `stop` resolves; `on_tick` gets the seconds since the start and the rates
/// since the previous sample. A failed sample is retried as `reconnect` says. Returns
/// the change from the first sample to the last good one; only a failing first sample
/// is an error.
pub async fn run<S, SF, T, X>(
    every: Duration,
    ticks: Option<u64>,
    reconnect: Reconnect,
    mut sample: S,
    mut on_tick: T,
    stop: X,
) -> Result<WatchRun, RedisError>
where
    S: FnMut() -> SF,
    SF: Future<Output = Result<WatchSample, RedisError>>,
    T: FnMut(f64, &WatchDelta),
    X: Future<Output = ()>,
{
    let first = sample().await?;
    let mut prev = first.clone();
    let mut n = 0u64;
    let mut reconnects = 0u32;
    let mut lost = None;
    let started = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    tokio::pin!(stop);
    'watch: loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = &mut stop => break,
        }
        let cur = match sample().await {
            Ok(cur) => cur,
            Err(e) => {
                let lost_at = started.elapsed().as_secs_f64();
                let mut last = e.to_string();
                let mut back = None;
                for attempt in 0..reconnect.attempts {
                    tokio::select! {
                        _ = tokio::time::sleep(reconnect.delay(attempt)) => {}
                        _ = &mut stop => break 'watch,
                    }
                    match sample().await {
                        Ok(s) => {
                            back = Some(s);
                            break;
                        }
                        Err(e) => last = e.to_string(),
                    }
                }
                match back {
                    Some(s) => {
                        reconnects += 1;
                        ticker.reset();
                        s
                    }
                    None => {
                        lost = Some((lost_at, last));
                        break;
                    }
                }
            }
        };
        on_tick(started.elapsed().as_secs_f64(), &delta(&prev, &cur));
        prev = cur;
        n += 1;
        if ticks.is_some_and(|t| n >= t) {
            break;
        }
    }
    Ok(WatchRun {
        delta: delta(&first, &prev),
        ticks: n,
        reconnects,
        lost,
    })
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
            Reconnect::default(),
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
        assert_eq!(whole.delta.retry_change, 3);
        assert_eq!(whole.delta.rows[0].net_per_s, -1.0);
        assert_eq!((whole.ticks, whole.reconnects, whole.lost), (3, 0, None));
        assert_eq!(start.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn stops_when_told() {
        let mut ticks = 0;
        let whole = run(
            Duration::from_secs(10),
            None,
            Reconnect::default(),
            || async { Ok(at(0.0, 5, 0)) },
            |_, _| ticks += 1,
            tokio::time::sleep(Duration::from_secs(25)),
        )
        .await
        .unwrap();
        assert_eq!(ticks, 2);
        assert_eq!(whole.delta.retry_change, 0);
    }

    fn gone() -> RedisError {
        RedisError::Connect {
            url: "redis://h/0".into(),
            reason: "gone".into(),
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let r = Reconnect::default();
        let delays: Vec<u64> = (0..7).map(|n| r.delay(n).as_millis() as u64).collect();
        assert_eq!(delays, vec![250, 500, 1000, 2000, 4000, 5000, 5000]);
        assert_eq!(r.total(), Duration::from_millis(12_750));
        assert_eq!(r.delay(u32::MAX), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_connection_that_comes_back_continues_the_watch() {
        let start = tokio::time::Instant::now();
        let mut n = 0u64;
        let mut seen = Vec::new();
        let whole = run(
            Duration::from_secs(1),
            Some(4),
            Reconnect::default(),
            || {
                n += 1;
                // Samples 3 to 5 fail (the tick at 2 s and two reconnect attempts).
                let r = if (3..=5).contains(&n) {
                    Err(gone())
                } else {
                    Ok(at(n as f64, 10, n))
                };
                async move { r }
            },
            |elapsed, _| seen.push(elapsed),
            std::future::pending(),
        )
        .await
        .unwrap();
        assert_eq!(whole.reconnects, 1);
        assert_eq!(whole.lost, None);
        assert_eq!(whole.ticks, 4);
        // 2 s + 250 ms + 500 ms + 1 s of backoff, then the watch goes on.
        assert_eq!(seen[1], 3.75);
        assert_eq!(start.elapsed(), Duration::from_millis(5750));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_connection_that_stays_lost_ends_the_watch_with_what_it_saw() {
        let start = tokio::time::Instant::now();
        let mut n = 0;
        let mut ticks = 0;
        let whole = run(
            Duration::from_secs(1),
            None,
            Reconnect::default(),
            || {
                n += 1;
                let ok = n < 3;
                async move {
                    if ok {
                        Ok(at(0.0, 1, 7))
                    } else {
                        Err(gone())
                    }
                }
            },
            |_, _| ticks += 1,
            std::future::pending(),
        )
        .await
        .unwrap();
        assert_eq!(ticks, 1);
        let (at_s, why) = whole.lost.unwrap();
        assert_eq!(at_s, 2.0);
        assert!(why.contains("gone"), "{why}");
        assert_eq!(whole.delta.retry_change, 0);
        assert_eq!(start.elapsed(), Duration::from_millis(2000 + 12_750));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_during_the_backoff_ends_the_watch_at_once() {
        let start = tokio::time::Instant::now();
        let mut n = 0;
        let whole = run(
            Duration::from_secs(1),
            None,
            Reconnect::default(),
            || {
                n += 1;
                let ok = n < 2;
                async move {
                    if ok {
                        Ok(at(0.0, 1, 0))
                    } else {
                        Err(gone())
                    }
                }
            },
            |_, _| {},
            tokio::time::sleep(Duration::from_millis(1500)),
        )
        .await
        .unwrap();
        assert_eq!(whole.lost, None);
        assert_eq!(start.elapsed(), Duration::from_millis(1500));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_first_sample_is_an_error() {
        let r = run(
            Duration::from_secs(1),
            Some(5),
            Reconnect::default(),
            || async { Err(gone()) },
            |_, _| {},
            std::future::pending(),
        )
        .await;
        assert!(r.unwrap_err().to_string().contains("gone"));
    }
}
