//! How the steps are laid out: the `[capacity]` table of a scenario file and the
//! command's flags (flags win), validated into a [`Schedule`] before any socket opens.

use crate::error::CapacityError;
use powertune_core::config_file::{ConfigError, Source};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// The highest start or maximum rate accepted (arrivals per second).
pub const MAX_RATE: f64 = 1_000_000.0;
/// The most steps one run may take.
pub const MAX_STEPS: u32 = 200;
/// The longest step or warm-up.
pub const MAX_STEP: Duration = Duration::from_secs(3600);

/// The `[capacity]` table (every key optional) or the equivalent flags.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCapacity {
    /// Arrivals per second of the first step (all scenarios together).
    pub start: Option<f64>,
    /// Each step's rate is the previous one's × factor.
    pub factor: Option<f64>,
    /// Each step's rate is the previous one's + increment (instead of `factor`).
    pub increment: Option<f64>,
    /// How long each step is measured (after its warm-up).
    pub step: Option<String>,
    /// How long each step runs before it is measured.
    pub warmup: Option<String>,
    /// No step above this rate.
    pub max_rate: Option<f64>,
    /// Stop starting steps after this long.
    pub max_time: Option<String>,
    /// Stop after this many steps (refinements included).
    pub max_steps: Option<u32>,
    /// Times a step whose latency still trends is measured again before it is
    /// marked unsteady.
    pub extend: Option<u32>,
    /// Steps run between the last good rate and the knee to narrow it down.
    pub refine: Option<u32>,
    /// Expected traffic growth (baseline × growth = the projected load).
    pub growth: Option<f64>,
    /// Today's traffic in arrivals per second (default: the start rate).
    pub baseline_rate: Option<f64>,
}

impl RawCapacity {
    /// `self` with every key `over` sets replaced (flags over the file). Giving
    /// `increment` drops the file's `factor` and the other way round.
    pub fn overlay(mut self, over: &RawCapacity) -> RawCapacity {
        macro_rules! take {
            ($($f:ident),*) => { $( if over.$f.is_some() { self.$f = over.$f.clone(); } )* };
        }
        if over.factor.is_some() {
            self.increment = None;
        }
        if over.increment.is_some() {
            self.factor = None;
        }
        take!(
            start,
            factor,
            increment,
            step,
            warmup,
            max_rate,
            max_time,
            max_steps,
            extend,
            refine,
            growth,
            baseline_rate
        );
        self
    }

    /// Checks every value and fills in the defaults.
    pub fn validate(&self) -> Result<Schedule, CapacityError> {
        let d = Schedule::default();
        let rate = |key: &str, v: Option<f64>, default: f64| -> Result<f64, CapacityError> {
            match v {
                None => Ok(default),
                Some(x) if x.is_finite() && x > 0.0 && x <= MAX_RATE => Ok(x),
                Some(x) => Err(invalid(
                    key,
                    x,
                    &format!("must be above 0 and at most {MAX_RATE}"),
                    "10",
                )),
            }
        };
        let dur = |key: &str, v: &Option<String>, default: Duration, min: Duration| {
            let Some(text) = v else { return Ok(default) };
            let parsed = powertune_core::duration::parse(text).map_err(|why| {
                CapacityError::Config(format!("capacity {key} `{text}`: {why} (e.g. \"30s\")"))
            })?;
            if parsed < min || parsed > MAX_STEP {
                return Err(CapacityError::Config(format!(
                    "capacity {key} `{text}` must be between {} and {} (e.g. \"30s\")",
                    powertune_core::duration::format(min),
                    powertune_core::duration::format(MAX_STEP)
                )));
            }
            Ok(parsed)
        };
        let growth = match (self.factor, self.increment) {
            (Some(_), Some(_)) => {
                return Err(CapacityError::Config(
                    "capacity: give factor or increment, not both (e.g. factor = 1.5)".into(),
                ))
            }
            (Some(f), None) if f.is_finite() && f > 1.0 && f <= 10.0 => Growth::Factor(f),
            (Some(f), None) => {
                return Err(invalid(
                    "factor",
                    f,
                    "must be above 1 and at most 10",
                    "1.5",
                ))
            }
            (None, Some(i)) if i.is_finite() && i > 0.0 && i <= MAX_RATE => Growth::Increment(i),
            (None, Some(i)) => return Err(invalid("increment", i, "must be above 0", "25")),
            (None, None) => d.growth,
        };
        let start = rate("start", self.start, d.start)?;
        let max_rate = match self.max_rate {
            None => None,
            Some(_) => Some(rate("max_rate", self.max_rate, MAX_RATE)?),
        };
        if let Some(m) = max_rate {
            if m < start {
                return Err(invalid("max_rate", m, "must not be below start", "1000"));
            }
        }
        let max_steps = self.max_steps.unwrap_or(d.max_steps);
        if max_steps == 0 || max_steps > MAX_STEPS {
            return Err(invalid(
                "max_steps",
                max_steps as f64,
                &format!("must be 1..={MAX_STEPS}"),
                "30",
            ));
        }
        let factor = match self.growth {
            None => d.growth_factor,
            Some(g) if (1.0..=1000.0).contains(&g) => g,
            Some(g) => {
                return Err(invalid(
                    "growth",
                    g,
                    "must be at least 1 (and at most 1000)",
                    "2.5",
                ))
            }
        };
        let extend = self.extend.unwrap_or(d.extend);
        let refine = self.refine.unwrap_or(d.refine);
        if extend > 5 || refine > 8 {
            return Err(CapacityError::Config(format!(
                "capacity: extend {extend} must be 0..=5 and refine {refine} 0..=8 (e.g. extend = 1, refine = 2)"
            )));
        }
        Ok(Schedule {
            start,
            growth,
            step: dur("step", &self.step, d.step, Duration::from_secs(1))?,
            warmup: dur("warmup", &self.warmup, d.warmup, Duration::ZERO)?,
            max_rate,
            max_time: dur(
                "max_time",
                &self.max_time,
                d.max_time,
                Duration::from_secs(1),
            )?,
            max_steps,
            extend,
            refine,
            growth_factor: factor,
            baseline_rate: match self.baseline_rate {
                None => None,
                Some(b) => Some(rate("baseline_rate", Some(b), b)?),
            },
        })
    }
}

fn invalid(key: &str, value: f64, why: &str, example: &str) -> CapacityError {
    CapacityError::Config(format!(
        "capacity {key} {value}: {why} (e.g. {key} = {example})"
    ))
}

/// How the rate grows from one step to the next.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Growth {
    Factor(f64),
    Increment(f64),
}

/// The validated step layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// Arrivals per second of the first step, every scenario together.
    pub start: f64,
    pub growth: Growth,
    /// Measured length of a step.
    pub step: Duration,
    /// Unmeasured run before each step's measurement.
    pub warmup: Duration,
    pub max_rate: Option<f64>,
    /// No step starts after this long.
    pub max_time: Duration,
    pub max_steps: u32,
    pub extend: u32,
    pub refine: u32,
    /// `--growth`: baseline × this = the projected load.
    pub growth_factor: f64,
    /// Today's traffic (arrivals per second); the start rate when not given.
    pub baseline_rate: Option<f64>,
}

impl Default for Schedule {
    /// Start at 10/s, × 1.5 per step, 30 s measured after 10 s of warm-up, at most
    /// 30 steps or 30 minutes, one extension, two refinements, growth 2.
    fn default() -> Self {
        Schedule {
            start: 10.0,
            growth: Growth::Factor(1.5),
            step: Duration::from_secs(30),
            warmup: Duration::from_secs(10),
            max_rate: None,
            max_time: Duration::from_secs(30 * 60),
            max_steps: 30,
            extend: 1,
            refine: 2,
            growth_factor: 2.0,
            baseline_rate: None,
        }
    }
}

impl Schedule {
    /// The rate after `rate`.
    pub fn next(&self, rate: f64) -> f64 {
        match self.growth {
            Growth::Factor(f) => rate * f,
            Growth::Increment(i) => rate + i,
        }
    }

    /// The baseline rate the growth applies to.
    pub fn baseline(&self) -> f64 {
        self.baseline_rate.unwrap_or(self.start)
    }

    /// Multiplies the step, warm-up and time limit by `factor` (`--time-scale`).
    pub fn scale_time(&mut self, factor: f64) {
        if !(factor.is_finite() && factor > 0.0) {
            return;
        }
        let s = |d: Duration| Duration::from_secs_f64((d.as_secs_f64() * factor).max(0.001));
        self.step = s(self.step).max(Duration::from_secs(1));
        self.warmup = if self.warmup.is_zero() {
            Duration::ZERO
        } else {
            s(self.warmup)
        };
        self.max_time = s(self.max_time);
    }
}

/// A scenario file split in two: its `[capacity]` table and the rest, as a load plan
/// reads it (the table's lines blanked, so errors keep their line numbers).
#[derive(Debug)]
pub struct SplitFile {
    pub capacity: RawCapacity,
    /// The file's text with the `[capacity]` table's lines emptied.
    pub plan_text: String,
}

#[derive(Deserialize)]
struct WithCapacity {
    #[serde(default)]
    capacity: Option<RawCapacity>,
    #[serde(flatten)]
    _rest: BTreeMap<String, toml::Value>,
}

/// Reads the `[capacity]` table of a scenario file (errors `FILE:LINE:COL: KEY: WHY`).
pub fn split(path: &Path) -> Result<SplitFile, ConfigError> {
    let src = Source::read(path)?;
    split_source(&src)
}

/// As [`split`], over text already read.
pub fn split_source(src: &Source) -> Result<SplitFile, ConfigError> {
    let parsed: WithCapacity = src.deserialize()?;
    Ok(SplitFile {
        capacity: parsed.capacity.unwrap_or_default(),
        plan_text: blank_table(&src.text, "capacity"),
    })
}

/// `text` with the lines of the top-level table `[name]` (and its sub-tables
/// `[name.x]`) replaced by empty lines.
fn blank_table(text: &str, name: &str) -> String {
    let mut inside = false;
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        if t.starts_with('[') {
            let header = t
                .trim_start_matches('[')
                .split([']', '#'])
                .next()
                .unwrap_or("")
                .trim();
            inside = header == name || header.starts_with(&format!("{name}."));
        }
        if inside {
            if line.ends_with('\n') {
                out.push('\n');
            }
        } else {
            out.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_read_and_blanked_keeping_line_numbers() {
        let text = "[capacity]\nstart = 20\nfactor = 2.0\n\n[scenarios.a]\nendpoint_type = \"Authentication\"\n";
        let s = split_source(&Source::new("plan.toml", text)).unwrap();
        assert_eq!(s.capacity.start, Some(20.0));
        assert_eq!(s.capacity.factor, Some(2.0));
        assert_eq!(s.plan_text.lines().count(), text.lines().count());
        assert!(!s.plan_text.contains("capacity"));
        assert!(s.plan_text.contains("[scenarios.a]"));
    }

    #[test]
    fn unknown_keys_in_the_table_are_refused_at_their_place() {
        let text = "[capacity]\nstart = 20\nfactr = 2.0\n";
        let e = split_source(&Source::new("plan.toml", text)).unwrap_err();
        assert_eq!(e.line, 3, "{e}");
    }

    #[test]
    fn flags_win_and_factor_and_increment_exclude_each_other() {
        let file = RawCapacity {
            start: Some(5.0),
            factor: Some(2.0),
            ..Default::default()
        };
        let flags = RawCapacity {
            increment: Some(10.0),
            ..Default::default()
        };
        let s = file.overlay(&flags).validate().unwrap();
        assert_eq!(s.start, 5.0);
        assert_eq!(s.growth, Growth::Increment(10.0));
        assert_eq!(s.next(5.0), 15.0);
        let both = RawCapacity {
            factor: Some(2.0),
            increment: Some(1.0),
            ..Default::default()
        };
        assert!(both.validate().is_err());
    }

    #[test]
    fn bad_values_name_the_key() {
        for (raw, key) in [
            (
                RawCapacity {
                    start: Some(-1.0),
                    ..Default::default()
                },
                "start",
            ),
            (
                RawCapacity {
                    factor: Some(1.0),
                    ..Default::default()
                },
                "factor",
            ),
            (
                RawCapacity {
                    step: Some("soon".into()),
                    ..Default::default()
                },
                "step",
            ),
            (
                RawCapacity {
                    start: Some(100.0),
                    max_rate: Some(50.0),
                    ..Default::default()
                },
                "max_rate",
            ),
        ] {
            let e = raw.validate().unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
    }
}
