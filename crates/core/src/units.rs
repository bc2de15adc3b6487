//! One way to write numbers with units, used by every renderer.
//!
//! Conventions:
//! - time: below 1 ms in whole microseconds (`82µs`); below 1 s in milliseconds with at
//!   most two decimals, trailing zeros dropped (`5.05ms`, `61.4ms`, `100ms`); below a
//!   minute in seconds (`1.25s`); then minutes and seconds (`2m05s`, `1h02m`);
//! - bytes: binary (IEC) units, always labelled as such (`512 B`, `1.5 KiB`, `2.0 MiB`,
//!   `1.2 GiB`): 1 KiB = 1,024 bytes. Decimal kB/MB are never used;
//! - percentages: at most two decimals, trailing zeros dropped (`2.5%`, `0.01%`, `0%`);
//! - rates: per second with one decimal (`100.3/s`);
//! - ratios: two decimals and a multiplication sign (`1.85×`).
//!
//! Findings carry [`Quantity`] values (a number and its [`Unit`]); only renderers turn
//! them into text, through these functions.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// The unit a figure is measured in. Time is always stored in milliseconds or seconds
/// as measured, bytes as a count of bytes, percentages as 0–100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Milliseconds.
    Ms,
    /// Seconds.
    Seconds,
    /// Bytes.
    Bytes,
    /// A percentage, 0–100.
    Percent,
    /// A multiple of something (`2.1×` a baseline).
    Ratio,
    /// A plain count of things.
    Count,
    /// Events per second.
    PerSecond,
}

/// A number with its unit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Quantity {
    pub value: f64,
    pub unit: Unit,
}

impl Quantity {
    pub fn new(value: f64, unit: Unit) -> Quantity {
        Quantity { value, unit }
    }
    pub fn ms(value: f64) -> Quantity {
        Quantity::new(value, Unit::Ms)
    }
    pub fn seconds(value: f64) -> Quantity {
        Quantity::new(value, Unit::Seconds)
    }
    pub fn bytes(value: u64) -> Quantity {
        Quantity::new(value as f64, Unit::Bytes)
    }
    pub fn percent(value: f64) -> Quantity {
        Quantity::new(value, Unit::Percent)
    }
    pub fn ratio(value: f64) -> Quantity {
        Quantity::new(value, Unit::Ratio)
    }
    pub fn count(value: f64) -> Quantity {
        Quantity::new(value, Unit::Count)
    }
    pub fn per_second(value: f64) -> Quantity {
        Quantity::new(value, Unit::PerSecond)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.value;
        let s = match self.unit {
            Unit::Ms => ms(v),
            Unit::Seconds => seconds(v),
            Unit::Bytes => bytes(v.max(0.0) as u64),
            Unit::Percent => percent(v),
            Unit::Ratio => ratio(v),
            Unit::Count => count(v),
            Unit::PerSecond => rate(v),
        };
        f.write_str(&s)
    }
}

/// `v` with at most `decimals` decimals and trailing zeros dropped.
pub fn trim(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        let t = s.trim_end_matches('0').trim_end_matches('.');
        if t == "-0" {
            "0".to_string()
        } else {
            t.to_string()
        }
    } else {
        s
    }
}

/// Milliseconds: `82µs`, `5.05ms`, `61.4ms`, `100ms`, `1.25s`, `2m05s`.
pub fn ms(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}ms");
    }
    let a = v.abs();
    if a > 0.0 && a < 1.0 {
        format!("{}µs", (v * 1000.0).round())
    } else if a < 1000.0 {
        format!("{}ms", trim(v, 2))
    } else {
        seconds(v / 1000.0)
    }
}

/// Seconds: `1.25s`, `45s`, `2m05s`, `1h02m`; below a second in milliseconds.
pub fn seconds(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}s");
    }
    let a = v.abs();
    if a < 1.0 {
        return ms(v * 1000.0);
    }
    if a < 60.0 {
        return format!("{}s", trim(v, 2));
    }
    let sign = if v < 0.0 { "-" } else { "" };
    let total = a.round() as u64;
    let (h, m, s) = (total / 3600, (total / 60) % 60, total % 60);
    if h > 0 {
        format!("{sign}{h}h{m:02}m")
    } else {
        format!("{sign}{m}m{s:02}s")
    }
}

/// A duration: as [`seconds`].
pub fn duration(d: Duration) -> String {
    seconds(d.as_secs_f64())
}

/// Bytes in binary units: `512 B`, `1.5 KiB`, `2.0 MiB`, `1.2 GiB`, `3.0 TiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", UNITS[i])
}

/// A percentage given as 0–100: `2.5%`, `0.01%`, `100%`.
pub fn percent(v: f64) -> String {
    format!("{}%", trim(v, 2))
}

/// A fraction given as 0–1, shown as a percentage.
pub fn fraction(v: f64) -> String {
    percent(v * 100.0)
}

/// Events per second: `100.3/s`.
pub fn rate(v: f64) -> String {
    format!("{v:.1}/s")
}

/// A multiple: `1.85×`.
pub fn ratio(v: f64) -> String {
    format!("{v:.2}×")
}

/// A count: whole numbers without decimals, others with up to two.
pub fn count(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        trim(v, 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_follows_one_convention() {
        assert_eq!(ms(0.082), "82µs");
        assert_eq!(ms(5.049), "5.05ms");
        assert_eq!(ms(61.4), "61.4ms");
        assert_eq!(ms(100.0), "100ms");
        assert_eq!(ms(0.0), "0ms");
        assert_eq!(ms(1250.0), "1.25s");
        assert_eq!(ms(125_000.0), "2m05s");
        assert_eq!(seconds(3720.0), "1h02m");
        assert_eq!(seconds(0.5), "500ms");
        assert_eq!(duration(Duration::from_secs(90)), "1m30s");
    }

    #[test]
    fn bytes_are_binary_and_labelled_so() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(2 * 1024 * 1024), "2.0 MiB");
        assert_eq!(bytes(2_000_000), "1.9 MiB");
        assert_eq!(bytes(1 << 40), "1.0 TiB");
    }

    #[test]
    fn percentages_rates_ratios_counts() {
        assert_eq!(percent(2.5), "2.5%");
        assert_eq!(percent(0.0), "0%");
        assert_eq!(percent(0.012), "0.01%");
        assert_eq!(fraction(0.25), "25%");
        assert_eq!(rate(100.26), "100.3/s");
        assert_eq!(ratio(1.849), "1.85×");
        assert_eq!(count(1500.0), "1500");
        assert_eq!(count(2.5), "2.5");
    }

    #[test]
    fn quantities_render_through_the_same_functions() {
        assert_eq!(Quantity::ms(212.0).to_string(), "212ms");
        assert_eq!(Quantity::bytes(1536).to_string(), "1.5 KiB");
        assert_eq!(Quantity::percent(1.0).to_string(), "1%");
        let j = serde_json::to_string(&Quantity::ms(1.5)).unwrap();
        assert_eq!(j, r#"{"value":1.5,"unit":"ms"}"#);
    }
}
