//! SLOWLOG check of `powertune redis`: the newest entries as a table, with a finding for
//! each entry slower than the target.
//!
//! [`collect`](collect::collect) is the only code that talks to Redis; [`judge`] and
//! [`render`] are pure functions over the [`SlowlogSnapshot`] it returns.

pub mod collect;
pub mod judge;
pub mod render;
pub mod snapshot;

pub use collect::{collect, parse};
pub use judge::judge;
pub use render::render;
pub use snapshot::{SlowEntry, SlowlogSnapshot};

#[cfg(test)]
mod tests {
    use super::*;
    use powertune_core::targets::RedisTargets;
    use powertune_core::Verdict;
    use redis::Value;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn parses_and_judges() {
        let v = Value::Array(vec![Value::Array(vec![
            Value::Int(7),
            Value::Int(1_700_000_000),
            Value::Int(25_000),
            Value::Array(vec![bulk("DEBUG"), bulk("SLEEP"), bulk("0.025")]),
            bulk("127.0.0.1:5000"),
            bulk(""),
        ])]);
        let entries = parse(&v).unwrap();
        assert_eq!(entries[0].command_line(), "DEBUG SLEEP 0.025");
        let s = SlowlogSnapshot {
            entries,
            ..Default::default()
        };
        let f = judge(&s, &RedisTargets::default());
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].verdict, Verdict::Warn);
        assert!(render(&s).contains("25ms"), "{}", render(&s));
        let quiet = SlowlogSnapshot {
            log_slower_than_us: Some(10_000),
            ..Default::default()
        };
        assert_eq!(
            render(&quiet),
            "SLOWLOG: empty (logs commands slower than 10ms)\n"
        );
        let f = judge(&SlowlogSnapshot::default(), &RedisTargets::default());
        assert_eq!(f[0].verdict, Verdict::Pass);
        assert!(parse(&Value::Int(1)).is_err());
    }
}
