//! How the Redis engine writes bytes and seconds: through `powertune_core::units`, the
//! one convention of every report (binary units, `2.0 MiB`; `45s`, `3m12s`, `2h05m`);
//! and the figures its judges share.

use powertune_core::{units, Cmp, Quantity, Value};

/// A byte count in binary units (`512 B`, `2.0 MiB`).
pub fn human_bytes(b: u64) -> String {
    units::bytes(b)
}

/// Seconds of an age, a wait or a remaining time (`42s`, `3m12s`, `2h05m`); a negative
/// age (clock skew) reads as 0, a non-finite one as `-`.
pub fn human_secs(s: f64) -> String {
    if !s.is_finite() {
        return "-".to_string();
    }
    units::seconds(s.max(0.0))
}

/// The target of a counter that should stay at 0 (`= 0`).
pub fn zero() -> Value {
    Value::bound(Cmp::Eq, Quantity::count(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanizes() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(2 * 1024 * 1024), "2.0 MiB");
        assert_eq!(human_secs(42.0), "42s");
        assert_eq!(human_secs(192.0), "3m12s");
        assert_eq!(human_secs(7500.0), "2h05m");
        assert_eq!(human_secs(-3.0), "0ms");
        assert_eq!(human_secs(f64::INFINITY), "-");
    }
}
