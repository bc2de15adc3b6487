//! `db watch`: the runbook's pool monitor. One sample per interval: connections by
//! state against `max_connections`, and an alert when fewer than `pool_free_min`
//! remain. The loop runs on tokio's clock, so tests use paused time.

use crate::collect::{get, Session};
use crate::error::DbError;
use crate::judge::ConnectionCounts;
use std::future::Future;
use std::time::Duration;

const SAMPLE_SQL: &str = "SELECT count(*)::int8, count(*) FILTER (WHERE state = 'active')::int8, \
 count(*) FILTER (WHERE state = 'idle')::int8, \
 count(*) FILTER (WHERE state LIKE 'idle in transaction%')::int8, \
 current_setting('max_connections')::int4, current_setting('superuser_reserved_connections')::int4 \
 FROM pg_stat_activity WHERE backend_type = 'client backend'";

/// One sample (one round trip); the sampling session itself is counted.
pub async fn sample(s: &mut Session) -> Result<ConnectionCounts, DbError> {
    let w = "pg_stat_activity (watch)";
    let rows = s.rows(w, SAMPLE_SQL).await?;
    let r = rows
        .first()
        .ok_or_else(|| DbError::Parse(format!("{w}: no row returned")))?;
    let n = |i: usize| -> Result<u32, DbError> { Ok(get::<i64>(r, i, w)?.max(0) as u32) };
    let total = n(0)?;
    let (active, idle, iit) = (n(1)?, n(2)?, n(3)?);
    let max: i32 = get(r, 4, w)?;
    let reserved: i32 = get(r, 5, w)?;
    let usable = (max - reserved).max(0) as u32;
    Ok(ConnectionCounts {
        total,
        active,
        idle,
        idle_in_transaction: iit,
        other: total.saturating_sub(active + idle + iit),
        usable,
        free: usable as i64 - total as i64,
    })
}

/// The line printed for a sample, and the alert line when too few remain free.
pub fn format_sample(at: &str, c: &ConnectionCounts, free_min: u32) -> (String, Option<String>) {
    let line = format!(
        "{at}  total {}/{}  active {}  idle {}  idle-in-tx {}  other {}  free {}",
        c.total, c.usable, c.active, c.idle, c.idle_in_transaction, c.other, c.free
    );
    let alert = (c.free < free_min as i64).then(|| {
        format!(
            "{at}  ALERT: only {} connection(s) free (< {free_min}); lower the pools or add PgBouncer",
            c.free
        )
    });
    (line, alert)
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

    fn counts(total: u32) -> ConnectionCounts {
        ConnectionCounts {
            total,
            active: 1,
            idle: total - 1,
            usable: 10,
            free: 10 - total as i64,
            ..Default::default()
        }
    }

    #[test]
    fn alert_below_the_free_minimum() {
        let (line, alert) = format_sample("t", &counts(7), 3);
        assert_eq!(
            line,
            "t  total 7/10  active 1  idle 6  idle-in-tx 0  other 0  free 3"
        );
        assert!(alert.is_none());
        let (_, alert) = format_sample("t", &counts(8), 3);
        assert!(alert.unwrap().contains("only 2 connection(s) free (< 3)"));
    }

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
}
