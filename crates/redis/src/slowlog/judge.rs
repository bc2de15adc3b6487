//! The SLOWLOG judge: a finding for each entry slower than the target.

use super::snapshot::{SlowEntry, SlowlogSnapshot};
use powertune_core::report::truncate;
use powertune_core::targets::RedisTargets;
use powertune_core::{Finding, Quantity, Value, Verdict};

/// Every SLOWLOG check of `powertune redis` (there is one).
pub fn judge(s: &SlowlogSnapshot, t: &RedisTargets) -> Vec<Finding> {
    slow_entries(s, t)
}

/// A finding per entry slower than `slowlog_ms`, or one PASS when none is.
pub fn slow_entries(s: &SlowlogSnapshot, t: &RedisTargets) -> Vec<Finding> {
    let limit_us = t.slowlog_ms * 1000.0;
    let target = Value::le(Quantity::ms(t.slowlog_ms));
    let slow: Vec<&SlowEntry> = s
        .entries
        .iter()
        .filter(|e| e.duration_us as f64 > limit_us)
        .collect();
    if slow.is_empty() {
        let observed = match s.entries.iter().map(|e| e.duration_us).max() {
            Some(us) => Value::of(Quantity::ms(us as f64 / 1000.0))
                .note(format!("slowest of {} entries", s.entries.len())),
            None => Value::of(Quantity::count(0.0)).note("entries"),
        };
        return vec![
            Finding::new("redis", "slowlog", "SLOWLOG GET", Verdict::Pass)
                .observed(observed)
                .target(target),
        ];
    }
    slow.iter()
        .map(|e| {
            Finding::new("redis", "slowlog", truncate(&e.command_line(), 80), Verdict::Warn)
                .observed(Quantity::ms(e.duration_us as f64 / 1000.0))
                .target(target.clone())
                .evidence(format!("slowlog id {} at {} from {}", e.id, e.at, e.client))
                .action("Replace the O(N) command (KEYS, big HGETALL/SMEMBERS/LRANGE) with a SCAN-family call or restructure the key it touches")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::note;

    fn entry(id: i64, duration_us: i64) -> SlowEntry {
        SlowEntry {
            id,
            at: 1_700_000_000,
            duration_us,
            args: vec!["KEYS".into(), "*".into()],
            client: "127.0.0.1:5000".into(),
            client_name: String::new(),
        }
    }

    #[test]
    fn one_warning_per_entry_over_the_target_and_a_pass_otherwise() {
        let t = RedisTargets::default();
        let mut s = SlowlogSnapshot {
            entries: vec![entry(1, 10_000), entry(2, 9_000)],
            ..Default::default()
        };
        let f = slow_entries(&s, &t);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].verdict, Verdict::Pass);
        assert_eq!(f[0].observed.quantity(), Some(Quantity::ms(10.0)));
        assert_eq!(note(&f[0].observed), "slowest of 2 entries");
        assert_eq!(f[0].target, Value::le(Quantity::ms(10.0)));
        let none = slow_entries(&SlowlogSnapshot::default(), &t);
        assert_eq!(none[0].observed.quantity(), Some(Quantity::count(0.0)));
        s.entries.push(entry(3, 12_500));
        s.entries.push(entry(4, 40_000));
        let f = slow_entries(&s, &t);
        assert_eq!(f.len(), 2);
        assert!(f
            .iter()
            .all(|x| x.verdict == Verdict::Warn && x.subject == "KEYS *"));
        assert_eq!(f[0].observed.quantity(), Some(Quantity::ms(12.5)));
        assert_eq!(f[0].observed.text(), "12.5ms");
        assert_eq!(
            f[1].evidence,
            "slowlog id 4 at 1700000000 from 127.0.0.1:5000"
        );
    }
}
