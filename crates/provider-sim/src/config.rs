//! `sim.toml`: raw serde structs (unknown keys refused) → [`SimConfig`], validated
//! before any socket opens. Every error reads `FILE:LINE:COL: KEY: WHY, e.g. RIGHT`.

use crate::dist::Dist;
use powertune_core::config_file::{ConfigError, Source};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

/// The longest TTFT, inter-token latency, stall or flap period a value may name.
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// The most output tokens one answer may have.
pub const MAX_OUTPUT_TOKENS: u64 = 100_000;
/// The most models and API keys a configuration may name.
pub const MAX_NAMED: usize = 10_000;
/// The largest `time_scale`.
pub const MAX_TIME_SCALE: f64 = 1000.0;

/// Latency and length of one model's answers.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// Time to the first token.
    pub ttft: Dist,
    /// Time between two tokens.
    pub itl: Dist,
    /// Tokens in an answer (capped by the request's `max_tokens`).
    pub output_tokens: Dist,
}

impl Default for ModelSpec {
    fn default() -> Self {
        ModelSpec {
            ttft: Dist::Uniform {
                low: 0.4,
                high: 1.2,
            },
            itl: Dist::Uniform {
                low: 0.02,
                high: 0.045,
            },
            output_tokens: Dist::Uniform {
                low: 100.0,
                high: 400.0,
            },
        }
    }
}

/// Requests and tokens one API key may use per minute (`None`: unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
}

/// A key named in the configuration: its label in `/stats` and its own quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    pub name: String,
    pub quota: Quota,
}

/// Down for `down` at the start of every `every` since the simulator started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flap {
    pub down: Duration,
    pub every: Duration,
}

/// The fault script: per-request probabilities of each fault (they exclude each
/// other, so their sum is at most 1) and the flapping schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Answer `error_status` (a 5xx) in the API's error shape.
    pub error_rate: f64,
    pub error_status: u16,
    /// Answer overloaded: 529 `overloaded_error` on the Anthropic API, 503 on the others.
    pub overload_rate: f64,
    /// Hold the first token back for `stall_first` more.
    pub stall_first_rate: f64,
    pub stall_first: Duration,
    /// Halfway through the answer, send nothing for `stall_mid`, then go on.
    pub stall_mid_rate: f64,
    pub stall_mid: Duration,
    /// Halfway through the answer, close the connection.
    pub drop_rate: f64,
    /// Halfway through the answer, send one chunk that is not valid JSON.
    pub malformed_rate: f64,
    /// After `mid_stream_error_after` content chunks (or halfway through), send the
    /// API's own mid-stream error event and end the stream.
    pub mid_stream_error_rate: f64,
    pub mid_stream_error_after: Option<u64>,
    pub flap: Option<Flap>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            error_rate: 0.0,
            error_status: 500,
            overload_rate: 0.0,
            stall_first_rate: 0.0,
            stall_first: Duration::from_secs(30),
            stall_mid_rate: 0.0,
            stall_mid: Duration::from_secs(30),
            drop_rate: 0.0,
            malformed_rate: 0.0,
            mid_stream_error_rate: 0.0,
            mid_stream_error_after: None,
            flap: None,
        }
    }
}

impl Faults {
    /// The probabilities in the order a draw walks them.
    pub fn rates(&self) -> [f64; 7] {
        [
            self.error_rate,
            self.overload_rate,
            self.stall_first_rate,
            self.stall_mid_rate,
            self.drop_rate,
            self.malformed_rate,
            self.mid_stream_error_rate,
        ]
    }

    /// Checks the rates, status and flap schedule; `key` names a field for errors.
    pub fn check(&self, key: impl Fn(&str) -> String) -> Result<(), (String, String)> {
        let names = [
            "error_rate",
            "overload_rate",
            "stall_first_rate",
            "stall_mid_rate",
            "drop_rate",
            "malformed_rate",
            "mid_stream_error_rate",
        ];
        for (name, r) in names.iter().zip(self.rates()) {
            if !(0.0..=1.0).contains(&r) {
                return Err((
                    key(name),
                    format!("{r} is not a fraction from 0 to 1, e.g. 0.05"),
                ));
            }
        }
        let sum: f64 = self.rates().iter().sum();
        if sum > 1.0 + 1e-9 {
            return Err((
                key("error_rate"),
                format!("the fault rates add up to {sum}, more than 1 (each request gets at most one fault), e.g. error_rate = 0.05"),
            ));
        }
        if !(500..=599).contains(&self.error_status) {
            return Err((
                key("error_status"),
                format!("{} is not a 5xx status, e.g. 500", self.error_status),
            ));
        }
        for (name, d) in [
            ("stall_first", self.stall_first),
            ("stall_mid", self.stall_mid),
        ] {
            if d > MAX_DURATION {
                return Err((
                    key(name),
                    format!(
                        "longer than {}, e.g. \"30s\"",
                        powertune_core::duration::format(MAX_DURATION)
                    ),
                ));
            }
        }
        if let Some(f) = self.flap {
            if f.every.is_zero() || f.every > MAX_DURATION || f.down >= f.every {
                return Err((
                    key("flap_every"),
                    "flapping needs 0 < flap_down < flap_every <= 10m, e.g. flap_down = \"5s\", flap_every = \"30s\"".to_string(),
                ));
            }
        }
        Ok(())
    }
}

/// The simulator's whole configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Seed of every draw: the n-th request to a model gets the same latencies,
    /// length, text and fault in every run with the same seed.
    pub seed: u64,
    /// Multiplies every time: latencies, stalls, the flapping schedule and the
    /// quota window (0.1 runs ten times faster).
    pub time_scale: f64,
    /// Models not named in `models`.
    pub defaults: ModelSpec,
    pub models: BTreeMap<String, ModelSpec>,
    /// Every key's quota, unless the key is named in `keys`.
    pub quota: Quota,
    /// Keys by their secret value.
    pub keys: HashMap<String, KeySpec>,
    pub faults: Faults,
    /// Largest request body; larger gets 413.
    pub max_body_bytes: usize,
    /// What every request gets instead of the drawn answer (`[script]`), unless a
    /// script queued with `next` comes first.
    pub script: Option<crate::script::Script>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            time_scale: 1.0,
            defaults: ModelSpec::default(),
            models: BTreeMap::new(),
            quota: Quota::default(),
            keys: HashMap::new(),
            faults: Faults::default(),
            max_body_bytes: 4 << 20,
            script: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    seed: Option<u64>,
    time_scale: Option<f64>,
    max_body_bytes: Option<u64>,
    defaults: Option<RawModel>,
    #[serde(default)]
    models: BTreeMap<String, RawModel>,
    quota: Option<RawQuota>,
    #[serde(default)]
    keys: Vec<RawKey>,
    faults: Option<crate::control::FaultsChange>,
    script: Option<crate::script::Script>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    ttft: Option<String>,
    itl: Option<String>,
    output_tokens: Option<RawCount>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawCount {
    Number(u64),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuota {
    rpm: Option<u64>,
    tpm: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    key: String,
    name: Option<String>,
    rpm: Option<u64>,
    tpm: Option<u64>,
}

/// Checks a per-minute limit (1 to 10^12).
pub fn check_per_minute(v: u64) -> Result<u64, String> {
    if (1..=1_000_000_000_000).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "{v} is not a per-minute limit from 1 to 10^12, e.g. 600"
        ))
    }
}

/// A duration of at most [`MAX_DURATION`].
pub fn bounded_duration(text: &str) -> Result<Duration, String> {
    let d = powertune_core::duration::parse(text)?;
    if d > MAX_DURATION {
        return Err(format!(
            "{text} is longer than {}, e.g. \"30s\"",
            powertune_core::duration::format(MAX_DURATION)
        ));
    }
    Ok(d)
}

/// Checks `time_scale`.
pub fn check_time_scale(v: f64) -> Result<f64, String> {
    if v.is_finite() && v > 0.0 && v <= MAX_TIME_SCALE {
        Ok(v)
    } else {
        Err(format!(
            "{v} is not a time scale above 0 and at most {MAX_TIME_SCALE}, e.g. 0.1"
        ))
    }
}

impl SimConfig {
    /// Reads and validates a `sim.toml`.
    pub fn load(path: &Path) -> Result<SimConfig, ConfigError> {
        SimConfig::from_source(&Source::read(path)?)
    }

    /// Validates TOML text already read (`path` is how errors name it).
    pub fn from_toml(path: &str, text: &str) -> Result<SimConfig, ConfigError> {
        SimConfig::from_source(&Source::new(path, text))
    }

    fn from_source(src: &Source) -> Result<SimConfig, ConfigError> {
        let raw: RawConfig = src.deserialize()?;
        let mut c = SimConfig::default();
        if let Some(s) = raw.seed {
            c.seed = s;
        }
        if let Some(t) = raw.time_scale {
            c.time_scale = check_time_scale(t).map_err(|e| src.error("time_scale", e))?;
        }
        if let Some(b) = raw.max_body_bytes {
            if !(1024..=1 << 30).contains(&b) {
                return Err(src.error(
                    "max_body_bytes",
                    format!("{b} is not a size from 1024 to 1073741824 bytes, e.g. 4194304"),
                ));
            }
            c.max_body_bytes = b as usize;
        }
        if let Some(d) = &raw.defaults {
            c.defaults = model(src, "defaults", d, &ModelSpec::default())?;
        }
        if raw.models.len() > MAX_NAMED || raw.keys.len() > MAX_NAMED {
            return Err(src.error("models", format!("more than {MAX_NAMED} models or keys")));
        }
        for (name, m) in &raw.models {
            let spec = model(src, &format!("models.{name}"), m, &c.defaults)?;
            c.models.insert(name.clone(), spec);
        }
        if let Some(q) = &raw.quota {
            c.quota = quota(src, "quota", q.rpm, q.tpm)?;
        }
        for (i, k) in raw.keys.iter().enumerate() {
            let at = format!("keys[{i}]");
            if k.key.trim().is_empty() {
                return Err(src.error(&format!("{at}.key"), "empty key, e.g. key = \"sk-team-a\""));
            }
            let spec = KeySpec {
                name: k
                    .name
                    .clone()
                    .unwrap_or_else(|| crate::stats::mask_key(&k.key)),
                quota: quota(src, &at, k.rpm, k.tpm)?,
            };
            if c.keys.insert(k.key.clone(), spec).is_some() {
                return Err(src.error(
                    &format!("{at}.key"),
                    "this key is named twice; name each key once",
                ));
            }
        }
        if let Some(f) = &raw.faults {
            crate::control::apply_faults(&mut c.faults, f)
                .map_err(|(k, why)| src.error(&k, why))?;
        }
        if let Some(sc) = &raw.script {
            sc.check().map_err(|why| {
                let (field, rest) = why.split_once(": ").unwrap_or(("", &why));
                src.error(&format!("script.{field}"), rest)
            })?;
            c.script = Some(sc.clone());
        }
        Ok(c)
    }
}

fn model(src: &Source, at: &str, m: &RawModel, base: &ModelSpec) -> Result<ModelSpec, ConfigError> {
    let mut spec = base.clone();
    if let Some(t) = &m.ttft {
        spec.ttft =
            Dist::durations(t, MAX_DURATION).map_err(|e| src.error(&format!("{at}.ttft"), e))?;
    }
    if let Some(t) = &m.itl {
        spec.itl =
            Dist::durations(t, MAX_DURATION).map_err(|e| src.error(&format!("{at}.itl"), e))?;
    }
    if let Some(t) = &m.output_tokens {
        let text = match t {
            RawCount::Number(n) => n.to_string(),
            RawCount::Text(s) => s.clone(),
        };
        spec.output_tokens = Dist::tokens(&text, MAX_OUTPUT_TOKENS)
            .map_err(|e| src.error(&format!("{at}.output_tokens"), e))?;
    }
    Ok(spec)
}

fn quota(src: &Source, at: &str, rpm: Option<u64>, tpm: Option<u64>) -> Result<Quota, ConfigError> {
    let check = |name: &str, v: Option<u64>| -> Result<Option<u64>, ConfigError> {
        v.map(check_per_minute)
            .transpose()
            .map_err(|e| src.error(&format!("{at}.{name}"), e))
    };
    Ok(Quota {
        rpm: check("rpm", rpm)?,
        tpm: check("tpm", tpm)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_reads() {
        let c = SimConfig::from_toml(
            "sim.toml",
            r#"
seed = 7
time_scale = 0.5
[defaults]
ttft = "p50=500ms,p99=2s"
output_tokens = 20
[models."gpt-x"]
itl = "10ms"
[quota]
rpm = 600
tpm = 90000
[[keys]]
key = "sk-team-a-0123456789"
name = "team-a"
rpm = 5
[faults]
error_rate = 0.1
flap_down = "1s"
flap_every = "10s"
"#,
        )
        .unwrap();
        assert_eq!(c.seed, 7);
        assert_eq!(
            c.models["gpt-x"].ttft,
            Dist::LogNormal { p50: 0.5, p99: 2.0 }
        );
        assert_eq!(c.models["gpt-x"].itl, Dist::Fixed(0.01));
        assert_eq!(c.models["gpt-x"].output_tokens, Dist::Fixed(20.0));
        assert_eq!(
            c.keys["sk-team-a-0123456789"].quota,
            Quota {
                rpm: Some(5),
                tpm: None
            }
        );
        assert_eq!(c.quota.tpm, Some(90000));
        assert_eq!(
            c.faults.flap.map(|f| f.every),
            Some(Duration::from_secs(10))
        );
    }

    #[test]
    fn errors_are_one_line_at_their_key() {
        for (text, want) in [
            (
                "[defaults]\nttft = \"fast\"\n",
                "sim.toml:2:1: defaults.ttft: ",
            ),
            (
                "[faults]\nerror_rate = 0.7\ndrop_rate = 0.5\n",
                "faults.error_rate: the fault rates add up",
            ),
            ("[quota]\nrpm = 0\n", "sim.toml:2:1: quota.rpm: 0 is not"),
            ("colour = 1\n", "sim.toml:1:1"),
            (
                "[faults]\nflap_down = \"5s\"\n",
                "faults.flap_down: flapping needs both",
            ),
            ("time_scale = 0.0\n", "time_scale: 0 is not a time scale"),
        ] {
            let e = SimConfig::from_toml("sim.toml", text)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{text}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
