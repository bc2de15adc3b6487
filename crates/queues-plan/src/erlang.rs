//! M/M/c (Erlang C): the probability that a job waits, the mean wait, the tail of the
//! wait, and the smallest number of threads that meets a latency and a utilisation
//! target. Poisson arrivals and exponential service times are assumed; see
//! `docs/queues.md` for what that means for Sidekiq jobs.

/// Erlang B (blocking probability) for `c` servers offered `a` erlangs, by the stable
/// recursion B₀ = 1, B_k = a·B_{k−1} / (k + a·B_{k−1}).
pub fn erlang_b(c: u32, a: f64) -> f64 {
    let mut b = 1.0;
    for k in 1..=c {
        b = a * b / (k as f64 + a * b);
    }
    b
}

/// Erlang C: the probability that an arrival waits, for `c` servers offered `a`
/// erlangs. 1 when the system is unstable (a ≥ c).
pub fn erlang_c(c: u32, a: f64) -> f64 {
    if a <= 0.0 {
        return 0.0;
    }
    if c == 0 || a >= c as f64 {
        return 1.0;
    }
    let b = erlang_b(c, a);
    let c = c as f64;
    c * b / (c - a * (1.0 - b))
}

/// Mean wait in the queue W_q = C(c, A) / (cμ − λ), seconds; infinite when unstable.
pub fn mean_wait(c: u32, arrival_per_s: f64, service_s: f64) -> f64 {
    if arrival_per_s <= 0.0 || service_s <= 0.0 {
        return 0.0;
    }
    let a = arrival_per_s * service_s;
    if a >= c as f64 {
        return f64::INFINITY;
    }
    let mu = 1.0 / service_s;
    erlang_c(c, a) / (c as f64 * mu - arrival_per_s)
}

/// P(wait > t) = C(c, A) · e^{−(cμ − λ)t}; 1 when unstable.
pub fn p_wait_over(c: u32, arrival_per_s: f64, service_s: f64, t: f64) -> f64 {
    if arrival_per_s <= 0.0 || service_s <= 0.0 {
        return 0.0;
    }
    let a = arrival_per_s * service_s;
    if a >= c as f64 {
        return 1.0;
    }
    let mu = 1.0 / service_s;
    erlang_c(c, a) * (-(c as f64 * mu - arrival_per_s) * t).exp()
}

/// What a sizing must meet.
#[derive(Debug, Clone, Copy)]
pub struct SizingTarget {
    /// The wait a job may see (the runbook's queue latency, 60 s).
    pub latency_s: f64,
    /// At most this share of jobs may wait longer than `latency_s`.
    pub tail: f64,
    /// Busy threads ÷ threads at most this (headroom for bursts).
    pub utilisation: f64,
}

/// The smallest number of threads (at least 1, at most `cap`) for which the
/// utilisation stays at or under the target and P(wait > latency) ≤ tail. None when
/// even `cap` threads are not enough.
pub fn threads_for(arrival_per_s: f64, service_s: f64, t: SizingTarget, cap: u32) -> Option<u32> {
    let a = (arrival_per_s * service_s).max(0.0);
    let start = ((a / t.utilisation.clamp(0.01, 1.0)).ceil() as u32).max(1);
    (start..=cap.max(start)).find(|&c| {
        c <= cap
            && a / c as f64 <= t.utilisation + 1e-12
            && p_wait_over(c, arrival_per_s, service_s, t.latency_s) <= t.tail
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erlang_b_matches_the_published_table() {
        // Erlang B tables: 10 trunks offered 5 erlangs block 1.84% of calls; 5 trunks
        // offered 2 erlangs block 3.67%.
        assert!((erlang_b(10, 5.0) - 0.01838).abs() < 5e-5);
        assert!((erlang_b(5, 2.0) - 0.03670).abs() < 5e-5);
    }

    #[test]
    fn erlang_c_matches_published_values() {
        // 3 servers, 2 erlangs: C = 4/9 exactly.
        assert!((erlang_c(3, 2.0) - 4.0 / 9.0).abs() < 1e-12);
        // 2 servers, 1 erlang: C = 1/3.
        assert!((erlang_c(2, 1.0) - 1.0 / 3.0).abs() < 1e-12);
        // One server is M/M/1: C = ρ.
        assert!((erlang_c(1, 0.7) - 0.7).abs() < 1e-12);
        // 10 erlangs (2 jobs/s × 5 s): 11 threads wait 68% of the time, 3.4 s on
        // average; 12 threads 1.1 s; 15 threads 0.10 s.
        assert!((erlang_c(11, 10.0) - 0.6821).abs() < 1e-3);
        assert!((mean_wait(11, 2.0, 5.0) - 3.41).abs() < 0.01);
        assert!((mean_wait(12, 2.0, 5.0) - 1.12).abs() < 0.01);
        assert!((mean_wait(15, 2.0, 5.0) - 0.10).abs() < 0.01);
        assert_eq!(erlang_c(10, 10.0), 1.0);
        assert!(mean_wait(10, 2.0, 5.0).is_infinite());
    }

    #[test]
    fn sizing_meets_both_targets() {
        let t = SizingTarget {
            latency_s: 60.0,
            tail: 0.01,
            utilisation: 0.75,
        };
        // 10 erlangs at 75% utilisation: 14 threads.
        assert_eq!(threads_for(2.0, 5.0, t, 1000), Some(14));
        // A latency target tighter than the service time drives it up.
        let tight = SizingTarget {
            latency_s: 0.5,
            tail: 0.01,
            utilisation: 1.0,
        };
        let c = threads_for(2.0, 5.0, tight, 1000).unwrap();
        assert!(p_wait_over(c, 2.0, 5.0, 0.5) <= 0.01);
        assert!(p_wait_over(c - 1, 2.0, 5.0, 0.5) > 0.01);
        assert_eq!(threads_for(2.0, 5.0, t, 10), None);
        assert_eq!(threads_for(0.0, 5.0, t, 10), Some(1));
    }
}
