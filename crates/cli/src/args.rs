//! Argument types and flag groups shared by every command, so a flag that means the
//! same thing has the same name, help and error message everywhere.
//!
//! Value types are clap value parsers: a bad value is refused by clap before the
//! command runs, as `powertune: invalid value 'x' for '--interval <DURATION>': …`.

use clap::Args;
use powertune_core::duration;
use std::path::PathBuf;
use std::time::Duration;

/// A duration with a unit: `30s`, `5m`, `1m30s`, `250ms`.
pub fn duration(s: &str) -> Result<Duration, String> {
    duration::parse(s)
}

/// A duration that must be above zero.
pub fn positive_duration(s: &str) -> Result<Duration, String> {
    let d = duration(s)?;
    if d.is_zero() {
        return Err("must be above zero, e.g. 30s".into());
    }
    Ok(d)
}

/// A duration of at least `min`, e.g. `--interval` (at least 100ms).
pub fn duration_at_least(
    min: Duration,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |s: &str| {
        let d = duration(s)?;
        if d < min {
            return Err(format!("must be at least {}", duration::format(min)));
        }
        Ok(d)
    }
}

/// A duration of at most `max`, e.g. `--delay` (at most 10m).
pub fn duration_at_most(
    max: Duration,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |s: &str| at_most(duration(s)?, max)
}

/// A duration above zero and at most `max`, e.g. `--pool-timeout` (at most 10m).
pub fn positive_duration_at_most(
    max: Duration,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |s: &str| at_most(positive_duration(s)?, max)
}

fn at_most(d: Duration, max: Duration) -> Result<Duration, String> {
    if d > max {
        return Err(format!("must be at most {}", duration::format(max)));
    }
    Ok(d)
}

/// A time-scale factor: a finite number above 0 and at most 1000 (`0.1` is ten
/// times shorter, `1` real time).
pub fn factor(s: &str) -> Result<f64, String> {
    let t = s.trim();
    match t.parse::<f64>() {
        Ok(f) if f.is_finite() && f > 0.0 && f <= 1000.0 => Ok(f),
        _ => Err(format!(
            "`{t}` is not a factor above 0 and at most 1000, e.g. 0.1"
        )),
    }
}

/// A rate per second: `200`, `200/s`, `12000/m`, `3/h`; above zero and finite.
pub fn rate(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, per) = match t.split_once('/') {
        Some((n, u)) => (n.trim(), u.trim()),
        None => (t, "s"),
    };
    let secs = match per {
        "s" | "sec" | "second" => 1.0,
        "m" | "min" | "minute" => 60.0,
        "h" | "hour" => 3600.0,
        _ => return Err(format!("unknown unit `/{per}`, e.g. 200/s, 12000/m")),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{t}` is not a rate, e.g. 200/s"))?;
    let r = n / secs;
    if !r.is_finite() || r <= 0.0 || r > 10_000_000.0 {
        return Err(format!("`{t}` must be above 0 and at most 10,000,000/s"));
    }
    Ok(r)
}

/// A size in bytes: `512`, `64KiB`, `16MiB`, `1GiB` (binary units; `KB`/`MB` are read as
/// the same binary units, as most tools do).
// No flag takes a size yet; this is the parser the first one uses.
#[allow(dead_code)]
pub fn size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{t}` is not a size, e.g. 16MiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit `{other}`, e.g. 64KiB, 16MiB")),
    };
    let v = n * mult as f64;
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 / 2.0 {
        return Err(format!("`{t}` is out of range"));
    }
    Ok(v as u64)
}

/// The report files every reporting command can write (docs/reports.md).
#[derive(Args, Debug, Clone, Default)]
pub struct Output {
    /// Also write the report as JSON to FILE (`-` for standard output instead of the table).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Also write a self-contained HTML report (findings, charts, tables) to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Also write JUnit XML to FILE: one testcase per finding, for CI test reporters.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Also write a Markdown summary to FILE; with no FILE, append it to the file
    /// named by $GITHUB_STEP_SUMMARY.
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = crate::outputs::STEP_SUMMARY_ARG)]
    pub markdown: Option<PathBuf>,
}

/// `--baseline FILE` / `--save-baseline FILE`.
#[derive(Args, Debug, Clone, Default)]
pub struct Baseline {
    /// Compare against a baseline saved earlier with --save-baseline.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Save this run's figures as a baseline for later --baseline runs.
    #[arg(long, value_name = "FILE")]
    pub save_baseline: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_rates_and_sizes_parse_with_one_message_shape() {
        assert_eq!(duration("1m30s").unwrap(), Duration::from_secs(90));
        assert!(duration("5").unwrap_err().contains("no unit"));
        assert!(positive_duration("0s").is_err());
        let interval = duration_at_least(Duration::from_millis(100));
        assert!(interval("50ms").unwrap_err().contains("at least 100ms"));
        assert_eq!(interval("1s").unwrap(), Duration::from_secs(1));
        let timeout = positive_duration_at_most(Duration::from_secs(600));
        assert!(timeout("0s").unwrap_err().contains("above zero"));
        assert!(timeout("11m").unwrap_err().contains("at most 10m"));
        assert!(duration_at_most(Duration::from_secs(600))("0s").is_ok());
        assert_eq!(rate("200/s").unwrap(), 200.0);
        assert_eq!(rate("120/m").unwrap(), 2.0);
        assert_eq!(rate("50").unwrap(), 50.0);
        for bad in ["fast", "0/s", "-5", "1e300", "5/d", "NaN"] {
            assert!(rate(bad).is_err(), "{bad}");
        }
        assert_eq!(size("16MiB").unwrap(), 16 << 20);
        assert_eq!(size("512").unwrap(), 512);
        assert_eq!(size("1.5KiB").unwrap(), 1536);
        assert!(size("12 parsecs").is_err());
    }
}
