//! Per-key requests-per-minute and tokens-per-minute quotas. Each key has a fixed
//! window of one minute (times `time_scale`) that starts at its first request; a
//! request is admitted when the window has a request left and its tokens (input
//! estimate + the output it will get) fit in what is left, and counts against the
//! window only when admitted.

use crate::config::Quota;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// The most keys whose windows are tracked; later keys share one window.
pub const MAX_KEYS: usize = 100_000;

/// The quota in force for one answer, for its rate-limit headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaState {
    pub quota: Quota,
    pub remaining_requests: u64,
    pub remaining_tokens: u64,
    /// Until the window starts over.
    pub reset_in: Duration,
}

/// What was over its quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    Requests,
    Tokens,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    requests: u64,
    tokens: u64,
}

#[derive(Debug, Default)]
pub struct Quotas {
    windows: Mutex<HashMap<String, Window>>,
}

const SHARED: &str = "";

impl Quotas {
    /// Admits (Ok) or refuses (Err) a request of `cost` tokens from `key`.
    pub fn admit(
        &self,
        key: &str,
        quota: Quota,
        cost: u64,
        window_len: Duration,
        now: Instant,
    ) -> Result<QuotaState, (Over, QuotaState)> {
        let mut m = self.windows.lock();
        let id = if m.contains_key(key) || m.len() < MAX_KEYS {
            key
        } else {
            SHARED
        };
        let w = m.entry(id.to_string()).or_insert(Window {
            start: now,
            requests: 0,
            tokens: 0,
        });
        if now.duration_since(w.start) >= window_len {
            *w = Window {
                start: now,
                requests: 0,
                tokens: 0,
            };
        }
        let reset_in = window_len.saturating_sub(now.duration_since(w.start));
        let state = |w: &Window| QuotaState {
            quota,
            remaining_requests: quota.rpm.map_or(u64::MAX, |l| l.saturating_sub(w.requests)),
            remaining_tokens: quota.tpm.map_or(u64::MAX, |l| l.saturating_sub(w.tokens)),
            reset_in,
        };
        if quota.rpm.is_some_and(|l| w.requests >= l) {
            return Err((Over::Requests, state(w)));
        }
        if quota.tpm.is_some_and(|l| w.tokens.saturating_add(cost) > l) {
            return Err((Over::Tokens, state(w)));
        }
        w.requests += 1;
        w.tokens = w.tokens.saturating_add(cost);
        Ok(state(w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_admits_its_quota_then_starts_over() {
        let q = Quotas::default();
        let quota = Quota {
            rpm: Some(3),
            tpm: Some(100),
        };
        let t0 = Instant::now();
        let min = Duration::from_secs(60);
        for i in 0..3 {
            let s = q.admit("k", quota, 10, min, t0).unwrap();
            assert_eq!(s.remaining_requests, 2 - i);
        }
        let (over, s) = q
            .admit("k", quota, 10, min, t0 + Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(over, Over::Requests);
        assert_eq!(s.reset_in, Duration::from_secs(50));
        // another key has its own window
        assert!(q.admit("j", quota, 10, min, t0).is_ok());
        // tokens: 30 used of 100; 80 more do not fit
        let later = t0 + min;
        assert!(q.admit("k", quota, 80, min, later).is_ok());
        assert_eq!(
            q.admit("k", quota, 30, min, later).unwrap_err().0,
            Over::Tokens
        );
    }
}
