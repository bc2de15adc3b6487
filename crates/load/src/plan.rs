//! Scenario files: TOML read with `deny_unknown_fields`, validated into a [`Plan`]
//! before any socket opens. Errors carry `file:line:column`.

use crate::template::Template;
use powertune_core::threshold::Threshold;
use powertune_core::EndpointType;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// Errors reading or validating a scenario file.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot read scenario file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}:{line}:{column}: {message}")]
    At {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

// ---------------------------------------------------------------------------
// The file as written.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    #[serde(default)]
    options: OptionsFile,
    #[serde(default)]
    thresholds: BTreeMap<String, Spanned<ThresholdList>>,
    #[serde(default)]
    scenarios: BTreeMap<String, Spanned<ScenarioFile>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct OptionsFile {
    base_url: Option<String>,
    http: Option<String>,
    connect_timeout: Option<String>,
    request_timeout: Option<String>,
    #[serde(default)]
    no_vu_connection_reuse: bool,
    ca_cert: Option<String>,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ThresholdList {
    One(ThresholdItem),
    Many(Vec<ThresholdItem>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ThresholdItem {
    Text(String),
    Full(ThresholdFull),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ThresholdFull {
    threshold: String,
    #[serde(default)]
    abort_on_fail: bool,
    delay_abort_eval: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    endpoint_type: String,
    description: Option<String>,
    executor: Option<String>,
    users: Option<u32>,
    duration: Option<String>,
    ramp_up: Option<String>,
    ramp_down: Option<String>,
    vus: Option<u32>,
    start_vus: Option<u32>,
    stages: Option<Vec<StageFile>>,
    iterations: Option<u64>,
    max_duration: Option<String>,
    rate: Option<f64>,
    start_rate: Option<f64>,
    time_unit: Option<String>,
    pre_allocated_vus: Option<u32>,
    max_vus: Option<u32>,
    max_backlog: Option<u64>,
    start_time: Option<String>,
    graceful_stop: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    data: Option<DataFile>,
    #[serde(default)]
    setup: Vec<Spanned<StepFile>>,
    #[serde(default)]
    steps: Vec<Spanned<StepFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StageFile {
    duration: String,
    target: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DataFile {
    file: String,
    mode: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    name: Option<String>,
    method: Option<String>,
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    json: Option<toml::Value>,
    body: Option<String>,
    #[serde(default)]
    extract: BTreeMap<String, String>,
    checks: Option<ChecksFile>,
    endpoint_type: Option<String>,
    sleep: Option<String>,
    cable: Option<CableFile>,
    ws: Option<WsFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChecksFile {
    status: Option<StatusList>,
    body_contains: Option<String>,
    #[serde(default)]
    json: BTreeMap<String, toml::Value>,
    duration_below: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StatusList {
    One(u16),
    Many(Vec<u16>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CableFile {
    url: Option<String>,
    channel: Option<String>,
    hold: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WsFile {
    url: String,
    subprotocol: Option<String>,
    #[serde(default)]
    send: Vec<String>,
    expect: Option<String>,
    timeout: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

// ---------------------------------------------------------------------------
// The validated plan.

/// HTTP version the engine speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVersion {
    /// HTTP/1.1, or HTTP/2 when TLS ALPN picks `h2`.
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 over TLS (ALPN `h2`) or cleartext with prior knowledge (h2c).
    Http2,
}

/// Run-wide options.
#[derive(Debug, Clone)]
pub struct Options {
    pub base_url: Option<String>,
    pub http: HttpVersion,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// k6's `noVUConnectionReuse`: a VU closes its connection at the end of every
    /// iteration, so a sleeping VU holds no socket.
    pub no_vu_connection_reuse: bool,
    /// Extra PEM certificate authorities to trust (beside the webpki roots).
    pub ca_cert: Option<PathBuf>,
    /// k6's `insecureSkipTLSVerify`: accept any server certificate.
    pub insecure_skip_tls_verify: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            base_url: None,
            http: HttpVersion::Auto,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            no_vu_connection_reuse: false,
            ca_cert: None,
            insecure_skip_tls_verify: false,
        }
    }
}

/// One `{duration, target}` stage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    pub duration: Duration,
    pub target: f64,
}

/// How a scenario schedules iterations.
#[derive(Debug, Clone, PartialEq)]
pub enum Executor {
    ConstantVus {
        vus: u32,
        duration: Duration,
    },
    RampingVus {
        start_vus: u32,
        stages: Vec<Stage>,
    },
    ConstantArrivalRate {
        rate: f64,
        time_unit: Duration,
        duration: Duration,
        pre_allocated_vus: u32,
        max_vus: u32,
        max_backlog: u64,
    },
    RampingArrivalRate {
        start_rate: f64,
        time_unit: Duration,
        stages: Vec<Stage>,
        pre_allocated_vus: u32,
        max_vus: u32,
        max_backlog: u64,
    },
    PerVuIterations {
        vus: u32,
        iterations: u64,
        max_duration: Duration,
    },
    SharedIterations {
        vus: u32,
        iterations: u64,
        max_duration: Duration,
    },
}

impl Executor {
    pub fn name(&self) -> &'static str {
        match self {
            Executor::ConstantVus { .. } => "constant-vus",
            Executor::RampingVus { .. } => "ramping-vus",
            Executor::ConstantArrivalRate { .. } => "constant-arrival-rate",
            Executor::RampingArrivalRate { .. } => "ramping-arrival-rate",
            Executor::PerVuIterations { .. } => "per-vu-iterations",
            Executor::SharedIterations { .. } => "shared-iterations",
        }
    }

    /// The longest the executor runs (before graceful stop).
    pub fn duration(&self) -> Duration {
        match self {
            Executor::ConstantVus { duration, .. }
            | Executor::ConstantArrivalRate { duration, .. } => *duration,
            Executor::RampingVus { stages, .. } | Executor::RampingArrivalRate { stages, .. } => {
                stages.iter().map(|s| s.duration).sum()
            }
            Executor::PerVuIterations { max_duration, .. }
            | Executor::SharedIterations { max_duration, .. } => *max_duration,
        }
    }

    /// The most VUs it may run at once.
    pub fn max_vus(&self) -> u32 {
        match self {
            Executor::ConstantVus { vus, .. }
            | Executor::PerVuIterations { vus, .. }
            | Executor::SharedIterations { vus, .. } => *vus,
            Executor::RampingVus { start_vus, stages } => stages
                .iter()
                .map(|s| s.target.ceil() as u32)
                .max()
                .unwrap_or(0)
                .max(*start_vus),
            Executor::ConstantArrivalRate { max_vus, .. }
            | Executor::RampingArrivalRate { max_vus, .. } => *max_vus,
        }
    }

    fn scale(&mut self, f: f64) {
        let s = |d: &mut Duration| *d = d.mul_f64(f);
        match self {
            Executor::ConstantVus { duration, .. }
            | Executor::ConstantArrivalRate { duration, .. } => s(duration),
            Executor::RampingVus { stages, .. } | Executor::RampingArrivalRate { stages, .. } => {
                stages.iter_mut().for_each(|st| s(&mut st.duration))
            }
            Executor::PerVuIterations { max_duration, .. }
            | Executor::SharedIterations { max_duration, .. } => s(max_duration),
        }
    }
}

/// CSV rows handed to VUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataMode {
    /// Row `vu_index % rows` for the VU's whole life.
    PerVu,
    /// The next row (shared counter) for each iteration.
    PerIteration,
}

#[derive(Debug, Clone)]
pub struct DataSet {
    pub path: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub mode: DataMode,
}

/// Request body.
#[derive(Debug, Clone)]
pub enum Body {
    None,
    Json(serde_json::Value),
    Text(Template),
}

/// One check on a response.
#[derive(Debug, Clone)]
pub enum CheckKind {
    Status(Vec<u16>),
    BodyContains(String),
    JsonEquals(String, serde_json::Value),
    DurationBelow(Duration),
}

#[derive(Debug, Clone)]
pub struct Check {
    /// Index into the run's check counters.
    pub id: usize,
    pub label: String,
    pub kind: CheckKind,
}

#[derive(Debug, Clone)]
pub struct HttpStep {
    /// Index into the run's per-request series.
    pub series: usize,
    pub name: String,
    pub method: hyper::Method,
    pub url: Template,
    /// The URL as written in the file.
    pub url_text: String,
    /// The runbook row this request is judged against (default: the scenario's).
    pub endpoint_type: EndpointType,
    pub headers: Vec<(hyper::header::HeaderName, Template)>,
    pub body: Body,
    /// Variable name → JSON pointer into the response body.
    pub extract: Vec<(String, String)>,
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Think {
    Fixed(Duration),
    Range(Duration, Duration),
}

/// How long a cable connection stays subscribed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Hold {
    /// Until the executor stops the VU (the stage ramps down or the scenario ends).
    Stage,
    For(Duration),
}

#[derive(Debug, Clone)]
pub struct CableStep {
    pub url: Template,
    pub channel: String,
    pub hold: Hold,
    pub headers: Vec<(String, Template)>,
}

#[derive(Debug, Clone)]
pub struct WsStep {
    pub name: String,
    pub url: Template,
    pub subprotocol: Option<String>,
    pub send: Vec<Template>,
    pub expect: Option<String>,
    pub timeout: Duration,
    pub headers: Vec<(String, Template)>,
    /// Check counter for `expect`.
    pub check: Option<Check>,
}

#[derive(Debug, Clone)]
pub enum Step {
    Http(HttpStep),
    Think(Think),
    Cable(CableStep),
    Ws(WsStep),
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub endpoint_type: EndpointType,
    pub executor: Executor,
    pub start_time: Duration,
    pub graceful_stop: Duration,
    pub tags: BTreeMap<String, String>,
    pub data: Option<DataSet>,
    pub setup: Vec<Step>,
    pub steps: Vec<Step>,
}

impl Scenario {
    /// Every HTTP step, setup first.
    pub fn http_steps(&self) -> impl Iterator<Item = &HttpStep> {
        self.setup
            .iter()
            .chain(self.steps.iter())
            .filter_map(|s| match s {
                Step::Http(h) => Some(h),
                _ => None,
            })
    }

    /// Every check, setup first.
    pub fn checks(&self) -> Vec<&Check> {
        let mut out = Vec::new();
        for s in self.setup.iter().chain(self.steps.iter()) {
            match s {
                Step::Http(h) => out.extend(h.checks.iter()),
                Step::Ws(w) => out.extend(w.check.iter()),
                _ => {}
            }
        }
        out
    }

    pub fn has_cable(&self) -> bool {
        self.setup
            .iter()
            .chain(self.steps.iter())
            .any(|s| matches!(s, Step::Cable(_) | Step::Ws(_)))
    }

    /// When the scenario's last iteration may still be running.
    pub fn end(&self) -> Duration {
        self.start_time + self.executor.duration()
    }
}

/// A validated scenario file.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Where it came from (a path, or `<inline>`).
    pub source: String,
    pub options: Options,
    pub scenarios: Vec<Scenario>,
    pub thresholds: Vec<Threshold>,
    /// Number of HTTP series (steps) and checks, for the metric shards.
    pub n_series: usize,
    pub n_checks: usize,
}

/// Metrics a threshold may name, and whether step tags (name/method/url) apply.
pub const THRESHOLD_METRICS: &[(&str, bool)] = &[
    ("http_req_duration", true),
    ("http_req_duration_raw", true),
    ("http_reqs", true),
    ("http_req_failed", true),
    ("http_req_blocked", false),
    ("http_req_connecting", false),
    ("http_req_tls_handshaking", false),
    ("http_req_sending", false),
    ("http_req_waiting", false),
    ("http_req_receiving", false),
    ("iterations", false),
    ("iteration_duration", false),
    ("dropped_iterations", false),
    ("checks", false),
    ("data_sent", false),
    ("data_received", false),
    ("vus_max", false),
    ("ws_connecting", false),
    ("ws_subscribe_duration", false),
    ("ws_session_duration", false),
    ("ws_sessions", false),
    ("ws_msgs_received", false),
];

/// Tag keys a threshold selector may use.
pub const THRESHOLD_TAGS: &[&str] = &["scenario", "endpoint_type", "name", "method", "url"];

/// Checks a threshold's metric and tags against what the engine records.
pub fn validate_threshold(t: &Threshold) -> Result<(), String> {
    let Some((_, step_tags)) = THRESHOLD_METRICS.iter().find(|(n, _)| *n == t.metric.name) else {
        let names: Vec<&str> = THRESHOLD_METRICS.iter().map(|(n, _)| *n).collect();
        return Err(format!(
            "unknown metric `{}` (expected one of: {})",
            t.metric.name,
            names.join(", ")
        ));
    };
    if !crate::summary::aggregation_applies(&t.metric.name, t.expr.agg) {
        return Err(format!(
            "`{}` does not apply to `{}` (trends take avg/min/med/max/p(N), counters count/rate, http_req_failed and checks rate, e.g. http_req_failed: rate<0.01)",
            t.expr.agg, t.metric.name
        ));
    }
    for (k, _) in &t.metric.tags {
        if !THRESHOLD_TAGS.contains(&k.as_str()) {
            return Err(format!(
                "unknown tag `{k}` in `{}` (expected scenario, endpoint_type, name, method or url, e.g. http_req_duration{{scenario:login}})",
                t.metric
            ));
        }
        if !step_tags && matches!(k.as_str(), "name" | "method" | "url") {
            return Err(format!(
                "`{}` is recorded per scenario; tag it with scenario or endpoint_type, not `{k}`",
                t.metric
            ));
        }
    }
    Ok(())
}

struct Ctx<'a> {
    text: &'a str,
    path: &'a str,
    dir: Option<PathBuf>,
    n_series: usize,
    n_checks: usize,
}

impl Ctx<'_> {
    fn at(&self, offset: usize, message: impl Into<String>) -> PlanError {
        let (line, column) = powertune_core::targets::line_col(self.text, offset);
        PlanError::At {
            path: self.path.to_string(),
            line,
            column,
            message: message.into(),
        }
    }
}

fn dur(text: &str, what: &str) -> Result<Duration, String> {
    powertune_core::duration::parse(text).map_err(|e| format!("`{what}`: {e}"))
}

fn opt_dur(v: &Option<String>, what: &str, default: Duration) -> Result<Duration, String> {
    match v {
        Some(t) => dur(t, what),
        None => Ok(default),
    }
}

impl Plan {
    /// Reads and validates a scenario file. CSV data files are read relative to it.
    pub fn from_path(path: &Path) -> Result<Plan, PlanError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PlanError::Read {
            path: shown.clone(),
            reason: format!("{e} (expected a TOML scenario file, e.g. examples/runbook.toml)"),
        })?;
        Plan::parse(&text, &shown, path.parent().map(Path::to_path_buf))
    }

    /// Validates a scenario file held in memory; CSV paths are relative to the
    /// working directory.
    pub fn from_toml_str(text: &str, source: &str) -> Result<Plan, PlanError> {
        Plan::parse(text, source, None)
    }

    fn parse(text: &str, path: &str, dir: Option<PathBuf>) -> Result<Plan, PlanError> {
        let mut cx = Ctx {
            text,
            path,
            dir,
            n_series: 0,
            n_checks: 0,
        };
        let file: PlanFile = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            cx.at(offset, e.message().trim().to_string())
        })?;
        let options = Options {
            base_url: file.options.base_url.clone(),
            http: match file.options.http.as_deref() {
                None | Some("auto") => HttpVersion::Auto,
                Some("1.1") | Some("http1") => HttpVersion::Http1,
                Some("2") | Some("h2") | Some("h2c") | Some("http2") => HttpVersion::Http2,
                Some(other) => {
                    return Err(PlanError::Invalid {
                        path: path.to_string(),
                        message: format!(
                            "options.http = `{other}` (expected \"auto\", \"1.1\" or \"2\")"
                        ),
                    })
                }
            },
            connect_timeout: opt_dur(
                &file.options.connect_timeout,
                "options.connect_timeout",
                Duration::from_secs(10),
            )
            .map_err(|m| PlanError::Invalid {
                path: path.to_string(),
                message: m,
            })?,
            request_timeout: opt_dur(
                &file.options.request_timeout,
                "options.request_timeout",
                Duration::from_secs(60),
            )
            .map_err(|m| PlanError::Invalid {
                path: path.to_string(),
                message: m,
            })?,
            no_vu_connection_reuse: file.options.no_vu_connection_reuse,
            ca_cert: file.options.ca_cert.as_ref().map(|c| match &cx.dir {
                Some(dir) if Path::new(c).is_relative() => dir.join(c),
                _ => PathBuf::from(c),
            }),
            insecure_skip_tls_verify: file.options.insecure_skip_tls_verify,
        };
        if file.scenarios.is_empty() {
            return Err(PlanError::Invalid {
                path: path.to_string(),
                message: "no scenarios (expected at least one [scenarios.NAME] table)".into(),
            });
        }
        let mut scenarios = Vec::new();
        for (name, sc) in &file.scenarios {
            let offset = sc.span().start;
            let s = scenario(&mut cx, name, sc.get_ref())
                .map_err(|m| cx.at(offset, format!("scenario `{name}`: {m}")))?;
            scenarios.push(s);
        }
        // Scenarios run in file order of their start time; keep names stable.
        scenarios.sort_by(|a, b| {
            let oa = file.scenarios.get(&a.name).map_or(0, |s| s.span().start);
            let ob = file.scenarios.get(&b.name).map_or(0, |s| s.span().start);
            oa.cmp(&ob)
        });
        let mut thresholds = Vec::new();
        for (metric, list) in &file.thresholds {
            let offset = list.span().start;
            let items: Vec<&ThresholdItem> = match list.get_ref() {
                ThresholdList::One(i) => vec![i],
                ThresholdList::Many(v) => v.iter().collect(),
            };
            for item in items {
                let (expr, abort, delay) = match item {
                    ThresholdItem::Text(t) => (t.as_str(), false, None),
                    ThresholdItem::Full(f) => (
                        f.threshold.as_str(),
                        f.abort_on_fail,
                        f.delay_abort_eval.as_ref(),
                    ),
                };
                let mut t = Threshold::parse(metric, expr)
                    .map_err(|e| cx.at(offset, format!("threshold on `{metric}`: {e}")))?;
                t.abort_on_fail = abort;
                if let Some(d) = delay {
                    t.delay_abort_eval =
                        Some(dur(d, "delay_abort_eval").map_err(|m| cx.at(offset, m))?);
                }
                validate_threshold(&t).map_err(|m| cx.at(offset, m))?;
                if let Some((k, v)) = t
                    .metric
                    .tags
                    .iter()
                    .find(|(k, v)| k == "scenario" && !file.scenarios.contains_key(v))
                {
                    return Err(cx.at(
                        offset,
                        format!(
                            "threshold `{}` names {k}:{v}, which is not a scenario here",
                            t.metric
                        ),
                    ));
                }
                thresholds.push(t);
            }
        }
        Ok(Plan {
            source: path.to_string(),
            options,
            scenarios,
            thresholds,
            n_series: cx.n_series,
            n_checks: cx.n_checks,
        })
    }

    /// Multiplies every executor duration, start time, graceful stop and cable hold by
    /// `factor` (think times and timeouts are kept: they model users, not the test's
    /// length). `factor` must be above 0.
    pub fn scale_time(&mut self, factor: f64) {
        if !(factor.is_finite() && factor > 0.0) {
            return;
        }
        for s in &mut self.scenarios {
            s.executor.scale(factor);
            s.start_time = s.start_time.mul_f64(factor);
            s.graceful_stop = s.graceful_stop.mul_f64(factor);
            for st in s.setup.iter_mut().chain(s.steps.iter_mut()) {
                if let Step::Cable(c) = st {
                    if let Hold::For(d) = &mut c.hold {
                        *d = d.mul_f64(factor);
                    }
                }
            }
        }
    }

    /// When the last scenario ends (without graceful stops).
    pub fn total_duration(&self) -> Duration {
        self.scenarios
            .iter()
            .map(Scenario::end)
            .max()
            .unwrap_or_default()
    }

    /// Adds a threshold (e.g. from `--threshold`), validating its metric and tags.
    pub fn add_threshold(&mut self, t: Threshold) -> Result<(), String> {
        validate_threshold(&t)?;
        self.thresholds.push(t);
        Ok(())
    }
}

/// What `powertune load --url` builds instead of a file.
#[derive(Debug, Clone)]
pub struct OneOff {
    pub url: String,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    pub vus: u32,
    pub duration: Duration,
    /// Requests per second: an open-model (constant-arrival-rate) run when set.
    pub rate: Option<f64>,
    pub endpoint_type: EndpointType,
}

impl Plan {
    /// A one-scenario plan for a single URL (the `ab`/`hey`/`oha` habit).
    pub fn one_off(o: &OneOff) -> Result<Plan, PlanError> {
        let mut toml_text = String::new();
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        toml_text.push_str("[scenarios.oneoff]\n");
        toml_text.push_str(&format!("endpoint_type = {}\n", q(o.endpoint_type.key())));
        match o.rate {
            Some(r) => {
                let vus = o.vus.max(1);
                toml_text.push_str(&format!(
                    "executor = \"constant-arrival-rate\"\nrate = {r}\nduration = {}\npre_allocated_vus = {vus}\nmax_vus = {}\n",
                    q(&powertune_core::duration::format(o.duration)),
                    vus.max(((r * 2.0).ceil() as u32).min(10_000)).max(vus)
                ));
            }
            None => toml_text.push_str(&format!(
                "executor = \"constant-vus\"\nvus = {}\nduration = {}\n",
                o.vus,
                q(&powertune_core::duration::format(o.duration))
            )),
        }
        toml_text
            .push_str("graceful_stop = \"5s\"\n[[scenarios.oneoff.steps]]\nname = \"request\"\n");
        toml_text.push_str(&format!("method = {}\nurl = {}\n", q(&o.method), q(&o.url)));
        if let Some(b) = &o.body {
            toml_text.push_str(&format!("body = {}\n", q(b)));
        }
        if !o.headers.is_empty() {
            toml_text.push_str("[scenarios.oneoff.steps.headers]\n");
            for (k, v) in &o.headers {
                toml_text.push_str(&format!("{} = {}\n", q(k), q(v)));
            }
        }
        let mut plan = Plan::from_toml_str(&toml_text, "--url")?;
        // Duration formatting rounds sub-second parts; keep the exact value.
        if let Some(s) = plan.scenarios.first_mut() {
            match &mut s.executor {
                Executor::ConstantVus { duration, .. }
                | Executor::ConstantArrivalRate { duration, .. } => *duration = o.duration,
                _ => {}
            }
        }
        Ok(plan)
    }
}

fn stages(v: &[StageFile]) -> Result<Vec<Stage>, String> {
    if v.is_empty() {
        return Err(
            "`stages` is empty (expected e.g. [{ duration = \"1m\", target = 50 }])".into(),
        );
    }
    v.iter()
        .map(|s| {
            if !(s.target.is_finite() && s.target >= 0.0) {
                return Err(format!("stage target {} must be 0 or more", s.target));
            }
            Ok(Stage {
                duration: dur(&s.duration, "stages.duration")?,
                target: s.target,
            })
        })
        .collect()
}

fn scenario(cx: &mut Ctx<'_>, name: &str, f: &ScenarioFile) -> Result<Scenario, String> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err("scenario names use letters, digits, `_` and `-` (e.g. auth_burst)".into());
    }
    let endpoint_type: EndpointType = f.endpoint_type.parse()?;
    let shorthand = f.users.is_some();
    let executor_name = match (&f.executor, shorthand) {
        (Some(e), _) => e.as_str(),
        (None, true) => "ramping-vus",
        (None, false) => {
            return Err("no `executor` (expected e.g. executor = \"constant-vus\", or the runbook shorthand users/duration/ramp_up)".into())
        }
    };
    // Which optional fields each executor takes; anything else set is an error.
    let set: Vec<(&str, bool)> = vec![
        ("users", f.users.is_some()),
        ("duration", f.duration.is_some()),
        ("ramp_up", f.ramp_up.is_some()),
        ("ramp_down", f.ramp_down.is_some()),
        ("vus", f.vus.is_some()),
        ("start_vus", f.start_vus.is_some()),
        ("stages", f.stages.is_some()),
        ("iterations", f.iterations.is_some()),
        ("max_duration", f.max_duration.is_some()),
        ("rate", f.rate.is_some()),
        ("start_rate", f.start_rate.is_some()),
        ("time_unit", f.time_unit.is_some()),
        ("pre_allocated_vus", f.pre_allocated_vus.is_some()),
        ("max_vus", f.max_vus.is_some()),
        ("max_backlog", f.max_backlog.is_some()),
    ];
    let allowed: &[&str] = match executor_name {
        "ramping-vus" if shorthand => &["users", "duration", "ramp_up", "ramp_down"],
        "constant-vus" => &["vus", "duration"],
        "ramping-vus" => &["start_vus", "stages"],
        "constant-arrival-rate" => &[
            "rate",
            "time_unit",
            "duration",
            "pre_allocated_vus",
            "max_vus",
            "max_backlog",
        ],
        "ramping-arrival-rate" => &[
            "start_rate",
            "time_unit",
            "stages",
            "pre_allocated_vus",
            "max_vus",
            "max_backlog",
        ],
        "per-vu-iterations" | "shared-iterations" => &["vus", "iterations", "max_duration"],
        other => {
            return Err(format!(
                "unknown executor `{other}` (expected constant-vus, ramping-vus, constant-arrival-rate, ramping-arrival-rate, per-vu-iterations or shared-iterations)"
            ))
        }
    };
    if let Some((bad, _)) = set.iter().find(|(k, on)| *on && !allowed.contains(k)) {
        return Err(format!(
            "`{bad}` does not apply to executor {executor_name}{} (it takes: {})",
            if shorthand { " (users shorthand)" } else { "" },
            allowed.join(", ")
        ));
    }
    let need_dur = |v: &Option<String>, what: &str| -> Result<Duration, String> {
        match v {
            Some(t) => dur(t, what),
            None => Err(format!("`{what}` is required for {executor_name}")),
        }
    };
    let time_unit = opt_dur(&f.time_unit, "time_unit", Duration::from_secs(1))?;
    if time_unit.is_zero() {
        return Err("`time_unit` must be above 0 (e.g. \"1s\")".into());
    }
    let executor = match executor_name {
        "ramping-vus" if shorthand => {
            let users = f.users.unwrap_or(0);
            let hold = need_dur(&f.duration, "duration")?;
            let up = opt_dur(&f.ramp_up, "ramp_up", Duration::ZERO)?;
            let down = opt_dur(&f.ramp_down, "ramp_down", up)?;
            let mut st = Vec::new();
            if !up.is_zero() {
                st.push(Stage {
                    duration: up,
                    target: users as f64,
                });
            }
            st.push(Stage {
                duration: hold,
                target: users as f64,
            });
            if !down.is_zero() {
                st.push(Stage {
                    duration: down,
                    target: 0.0,
                });
            }
            Executor::RampingVus {
                start_vus: if up.is_zero() { users } else { 0 },
                stages: st,
            }
        }
        "constant-vus" => Executor::ConstantVus {
            vus: f.vus.unwrap_or(1),
            duration: need_dur(&f.duration, "duration")?,
        },
        "ramping-vus" => Executor::RampingVus {
            start_vus: f.start_vus.unwrap_or(0),
            stages: stages(f.stages.as_deref().unwrap_or(&[]))?,
        },
        "constant-arrival-rate" => {
            let rate = f
                .rate
                .ok_or("`rate` is required for constant-arrival-rate (e.g. rate = 100)")?;
            if !(rate.is_finite() && rate > 0.0) {
                return Err(format!("`rate` = {rate} must be above 0"));
            }
            let pre = f.pre_allocated_vus.unwrap_or(1).max(1);
            let max = f.max_vus.unwrap_or(pre);
            if max < pre {
                return Err(format!(
                    "`max_vus` = {max} is below pre_allocated_vus = {pre}"
                ));
            }
            Executor::ConstantArrivalRate {
                rate,
                time_unit,
                duration: need_dur(&f.duration, "duration")?,
                pre_allocated_vus: pre,
                max_vus: max,
                max_backlog: f
                    .max_backlog
                    .unwrap_or_else(|| backlog_default(rate, time_unit)),
            }
        }
        "ramping-arrival-rate" => {
            let pre = f.pre_allocated_vus.unwrap_or(1).max(1);
            let max = f.max_vus.unwrap_or(pre);
            if max < pre {
                return Err(format!(
                    "`max_vus` = {max} is below pre_allocated_vus = {pre}"
                ));
            }
            let st = stages(f.stages.as_deref().unwrap_or(&[]))?;
            let peak = st
                .iter()
                .map(|s| s.target)
                .fold(f.start_rate.unwrap_or(0.0), f64::max);
            Executor::RampingArrivalRate {
                start_rate: f.start_rate.unwrap_or(0.0),
                time_unit,
                stages: st,
                pre_allocated_vus: pre,
                max_vus: max,
                max_backlog: f
                    .max_backlog
                    .unwrap_or_else(|| backlog_default(peak, time_unit)),
            }
        }
        "per-vu-iterations" | "shared-iterations" => {
            let vus = f.vus.unwrap_or(1);
            let iterations = f.iterations.unwrap_or(1);
            let max_duration = opt_dur(&f.max_duration, "max_duration", Duration::from_secs(600))?;
            if executor_name == "per-vu-iterations" {
                Executor::PerVuIterations {
                    vus,
                    iterations,
                    max_duration,
                }
            } else {
                Executor::SharedIterations {
                    vus,
                    iterations,
                    max_duration,
                }
            }
        }
        _ => return Err(format!("unknown executor `{executor_name}`")),
    };
    if executor.max_vus() == 0 {
        return Err(format!(
            "{} runs no VUs (expected vus/users above 0)",
            executor.name()
        ));
    }
    if executor.max_vus() > 1_000_000 {
        return Err(format!(
            "{} VUs is more than this engine allows (1,000,000)",
            executor.max_vus()
        ));
    }
    let data = match &f.data {
        None => None,
        Some(d) => Some(load_data(cx, d)?),
    };
    let mut setup = Vec::new();
    for s in &f.setup {
        setup.push(step(cx, s, endpoint_type).map_err(|m| format!("setup step: {m}"))?);
    }
    let mut steps = Vec::new();
    for s in &f.steps {
        steps.push(step(cx, s, endpoint_type)?);
    }
    if steps.is_empty() {
        return Err("no `steps` (expected at least one [[scenarios.NAME.steps]])".into());
    }
    if steps.iter().all(|s| matches!(s, Step::Think(_))) {
        return Err("its steps only sleep (expected an HTTP, cable or ws step)".into());
    }
    Ok(Scenario {
        name: name.to_string(),
        description: f.description.clone().unwrap_or_default(),
        endpoint_type,
        executor,
        start_time: opt_dur(&f.start_time, "start_time", Duration::ZERO)?,
        graceful_stop: opt_dur(&f.graceful_stop, "graceful_stop", Duration::from_secs(30))?,
        tags: f.tags.clone(),
        data,
        setup,
        steps,
    })
}

fn backlog_default(rate: f64, time_unit: Duration) -> u64 {
    // One second of arrivals, at least 1.
    let per_sec = rate / time_unit.as_secs_f64().max(1e-9);
    (per_sec.ceil() as u64).clamp(1, 100_000)
}

fn load_data(cx: &Ctx<'_>, d: &DataFile) -> Result<DataSet, String> {
    let mode = match d.mode.as_deref() {
        None | Some("per_vu") | Some("per-vu") => DataMode::PerVu,
        Some("per_iteration") | Some("per-iteration") => DataMode::PerIteration,
        Some(o) => {
            return Err(format!(
                "data.mode = `{o}` (expected \"per_vu\" or \"per_iteration\")"
            ))
        }
    };
    let p = match &cx.dir {
        Some(dir) if Path::new(&d.file).is_relative() => dir.join(&d.file),
        _ => PathBuf::from(&d.file),
    };
    let mut rdr = csv::Reader::from_path(&p).map_err(|e| {
        format!(
            "cannot read data file {}: {e} (expected a CSV file with a header row)",
            p.display()
        )
    })?;
    let columns: Vec<String> = rdr
        .headers()
        .map_err(|e| format!("data file {}: {e}", p.display()))?
        .iter()
        .map(str::to_string)
        .collect();
    let mut rows = Vec::new();
    for r in rdr.records() {
        let r = r.map_err(|e| format!("data file {}: {e}", p.display()))?;
        rows.push(r.iter().map(str::to_string).collect());
        if rows.len() > 1_000_000 {
            return Err(format!("data file {} has over 1,000,000 rows", p.display()));
        }
    }
    if rows.is_empty() {
        return Err(format!(
            "data file {} has no rows under its header",
            p.display()
        ));
    }
    Ok(DataSet {
        path: p.display().to_string(),
        columns,
        rows,
        mode,
    })
}

fn parse_think(t: &str) -> Result<Think, String> {
    if let Some((a, b)) = t.split_once("..") {
        let (a, b) = (dur(a, "sleep")?, dur(b, "sleep")?);
        if b < a {
            return Err(format!(
                "sleep range `{t}` goes backwards (expected e.g. \"1s..3s\")"
            ));
        }
        Ok(Think::Range(a, b))
    } else {
        Ok(Think::Fixed(dur(t, "sleep")?))
    }
}

fn headers_tpl(h: &BTreeMap<String, String>) -> Result<Vec<(String, Template)>, String> {
    h.iter()
        .map(|(k, v)| Ok((k.clone(), Template::parse(v)?)))
        .collect()
}

fn step(cx: &mut Ctx<'_>, s: &Spanned<StepFile>, scen_type: EndpointType) -> Result<Step, String> {
    let f = s.get_ref();
    let kinds = [
        f.url.is_some(),
        f.sleep.is_some(),
        f.cable.is_some(),
        f.ws.is_some(),
    ];
    let n = kinds.iter().filter(|k| **k).count();
    if n != 1 {
        return Err(format!(
            "step at line {} must have exactly one of `url` (HTTP), `sleep`, `cable` or `ws`",
            powertune_core::targets::line_col(cx.text, s.span().start).0
        ));
    }
    let http_only = f.method.is_some()
        || f.endpoint_type.is_some()
        || !f.headers.is_empty()
        || f.json.is_some()
        || f.body.is_some()
        || !f.extract.is_empty();
    if let Some(t) = &f.sleep {
        if http_only || f.checks.is_some() || f.name.is_some() {
            return Err("a `sleep` step takes nothing else".into());
        }
        return parse_think(t).map(Step::Think);
    }
    if let Some(c) = &f.cable {
        if http_only || f.checks.is_some() {
            return Err(
                "a `cable` step takes url, channel, hold and headers inside `cable`".into(),
            );
        }
        let hold = match c.hold.as_deref() {
            None | Some("stage") => Hold::Stage,
            Some(d) => Hold::For(dur(d, "cable.hold")?),
        };
        return Ok(Step::Cable(CableStep {
            url: Template::parse(c.url.as_deref().unwrap_or("/cable"))?,
            channel: c
                .channel
                .clone()
                .unwrap_or_else(|| "MonitoringChannel".into()),
            hold,
            headers: headers_tpl(&c.headers)?,
        }));
    }
    if let Some(w) = &f.ws {
        if http_only || f.checks.is_some() {
            return Err(
                "a `ws` step takes url, subprotocol, send, expect, timeout and headers inside `ws`"
                    .into(),
            );
        }
        let name = f.name.clone().unwrap_or_else(|| w.url.clone());
        let check = w.expect.as_ref().map(|e| {
            let c = Check {
                id: cx.n_checks,
                label: format!("{name}: receives `{e}`"),
                kind: CheckKind::BodyContains(e.clone()),
            };
            cx.n_checks += 1;
            c
        });
        return Ok(Step::Ws(WsStep {
            name,
            url: Template::parse(&w.url)?,
            subprotocol: w.subprotocol.clone(),
            send: w
                .send
                .iter()
                .map(|t| Template::parse(t))
                .collect::<Result<_, _>>()?,
            expect: w.expect.clone(),
            timeout: opt_dur(&w.timeout, "ws.timeout", Duration::from_secs(10))?,
            headers: headers_tpl(&w.headers)?,
            check,
        }));
    }
    // HTTP
    let url = f.url.clone().unwrap_or_default();
    let method_text = f
        .method
        .clone()
        .unwrap_or_else(|| "GET".into())
        .to_ascii_uppercase();
    let method = hyper::Method::from_bytes(method_text.as_bytes())
        .map_err(|_| format!("bad method `{method_text}` (expected e.g. GET or POST)"))?;
    let name = f.name.clone().unwrap_or_else(|| format!("{method} {url}"));
    let mut headers = Vec::new();
    for (k, v) in &f.headers {
        let hn = hyper::header::HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| format!("bad header name `{k}` (expected e.g. Authorization)"))?;
        headers.push((hn, Template::parse(v)?));
    }
    let body = match (&f.json, &f.body) {
        (Some(_), Some(_)) => return Err("a step takes `json` or `body`, not both".into()),
        (Some(j), None) => Body::Json(serde_json::to_value(j).map_err(|e| format!("`json`: {e}"))?),
        (None, Some(b)) => Body::Text(Template::parse(b)?),
        (None, None) => Body::None,
    };
    let mut extract = Vec::new();
    for (var, ptr) in &f.extract {
        if !(ptr.is_empty() || ptr.starts_with('/')) {
            return Err(format!(
                "extract `{var}` = `{ptr}` is not a JSON pointer (expected e.g. \"/token\" or \"/data/0/id\")"
            ));
        }
        extract.push((var.clone(), ptr.clone()));
    }
    let mut checks = Vec::new();
    let mut add = |cx: &mut Ctx<'_>, label: String, kind: CheckKind| {
        checks.push(Check {
            id: cx.n_checks,
            label,
            kind,
        });
        cx.n_checks += 1;
    };
    if let Some(c) = &f.checks {
        if let Some(st) = &c.status {
            let v = match st {
                StatusList::One(s) => vec![*s],
                StatusList::Many(v) => v.clone(),
            };
            let shown: Vec<String> = v.iter().map(u16::to_string).collect();
            add(
                cx,
                format!("{name}: status {}", shown.join("|")),
                CheckKind::Status(v),
            );
        }
        if let Some(b) = &c.body_contains {
            add(
                cx,
                format!("{name}: body contains `{b}`"),
                CheckKind::BodyContains(b.clone()),
            );
        }
        for (ptr, val) in &c.json {
            if !(ptr.is_empty() || ptr.starts_with('/')) {
                return Err(format!(
                    "checks.json key `{ptr}` is not a JSON pointer (expected e.g. \"/status\")"
                ));
            }
            let jv = serde_json::to_value(val).map_err(|e| format!("checks.json: {e}"))?;
            add(
                cx,
                format!("{name}: {ptr} == {jv}"),
                CheckKind::JsonEquals(ptr.clone(), jv),
            );
        }
        if let Some(d) = &c.duration_below {
            let d = dur(d, "checks.duration_below")?;
            add(
                cx,
                format!("{name}: duration < {}", powertune_core::duration::format(d)),
                CheckKind::DurationBelow(d),
            );
        }
    }
    let series = cx.n_series;
    cx.n_series += 1;
    Ok(Step::Http(HttpStep {
        series,
        name,
        method,
        url: Template::parse(&url)?,
        url_text: url.clone(),
        endpoint_type: match &f.endpoint_type {
            Some(t) => t.parse()?,
            None => scen_type,
        },
        headers,
        body,
        extract,
        checks,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[thresholds]
http_req_duration = ["p(95)<2000", "p(99)<5000"]
http_req_failed = { threshold = "rate<0.01", abort_on_fail = true, delay_abort_eval = "10s" }

[scenarios.auth_burst]
endpoint_type = "Authentication"
users = 50
duration = "5m"
ramp_up = "1m"

[[scenarios.auth_burst.steps]]
name = "login"
method = "POST"
url = "/api/v1/auth/login"
json = { email = "u{{n}}@example.com", password = "demo" }
extract = { token = "/token" }
checks = { status = 200, json = { "/ok" = true }, duration_below = "500ms" }

[[scenarios.auth_burst.steps]]
sleep = "1s..2s"

[scenarios.rate]
endpoint_type = "read_crud"
executor = "constant-arrival-rate"
rate = 100
duration = "10s"
pre_allocated_vus = 5
max_vus = 20
start_time = "1s"

[[scenarios.rate.steps]]
url = "/x"
"#;

    #[test]
    fn reads_the_runbook_shorthand_as_stages() {
        let p = Plan::from_toml_str(GOOD, "good.toml").unwrap();
        assert_eq!(p.scenarios.len(), 2);
        let s = &p.scenarios[0];
        assert_eq!(s.name, "auth_burst");
        assert_eq!(
            s.executor,
            Executor::RampingVus {
                start_vus: 0,
                stages: vec![
                    Stage {
                        duration: Duration::from_secs(60),
                        target: 50.0
                    },
                    Stage {
                        duration: Duration::from_secs(300),
                        target: 50.0
                    },
                    Stage {
                        duration: Duration::from_secs(60),
                        target: 0.0
                    },
                ]
            }
        );
        assert_eq!(s.checks().len(), 3);
        assert_eq!(p.thresholds.len(), 3);
        assert!(p.thresholds.iter().any(|t| t.abort_on_fail));
        assert_eq!(p.n_series, 2);
        assert_eq!(p.total_duration(), Duration::from_secs(420));
    }

    #[test]
    fn scales_time() {
        let mut p = Plan::from_toml_str(GOOD, "good.toml").unwrap();
        p.scale_time(0.1);
        assert_eq!(p.scenarios[0].executor.duration(), Duration::from_secs(42));
        assert_eq!(p.scenarios[1].start_time, Duration::from_millis(100));
    }

    fn err(text: &str) -> String {
        Plan::from_toml_str(text, "f.toml").unwrap_err().to_string()
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let e = err("[scenarios.a]\nendpoint_type = \"auth\"\nuserz = 3\n");
        assert!(e.starts_with("f.toml:3:1:"), "{e}");
        assert!(e.contains("userz"), "{e}");
        let e = err("[scenarios.a]\nendpoint_type = \"graphql\"\nusers = 1\nduration = \"1s\"\n[[scenarios.a.steps]]\nurl = \"/\"\n");
        assert!(e.contains("f.toml:1:") && e.contains("graphql"), "{e}");
        let e = err("[scenarios.a]\nendpoint_type = \"auth\"\nexecutor = \"constant-vus\"\nvus = 1\nduration = \"1s\"\nrate = 5\n[[scenarios.a.steps]]\nurl = \"/\"\n");
        assert!(e.contains("`rate` does not apply"), "{e}");
        let e = err("[thresholds]\nhttp_req_duration = \"p(95)<abc\"\n[scenarios.a]\nendpoint_type = \"auth\"\nusers = 1\nduration = \"1s\"\n[[scenarios.a.steps]]\nurl = \"/\"\n");
        assert!(e.contains("f.toml:2:") && e.contains("column 7"), "{e}");
        let e = err("[scenarios.a]\nendpoint_type = \"auth\"\nusers = 1\nduration = \"5\"\n[[scenarios.a.steps]]\nurl = \"/\"\n");
        assert!(e.contains("no unit"), "{e}");
        let e = err("[scenarios.a]\nendpoint_type = \"auth\"\nusers = 1\nduration = \"1s\"\n[[scenarios.a.steps]]\nurl = \"/\"\nsleep = \"1s\"\n");
        assert!(e.contains("exactly one"), "{e}");
        assert!(err("").contains("no scenarios"));
        let e = err("[thresholds]\nhttp_req_waiting = \"p(95)<1\"\n\"http_req_waiting{name:x}\" = \"p(95)<1\"\n[scenarios.a]\nendpoint_type = \"auth\"\nusers = 1\nduration = \"1s\"\n[[scenarios.a.steps]]\nurl = \"/\"\n");
        assert!(e.contains("per scenario"), "{e}");
    }

    #[test]
    fn connection_and_tls_options() {
        let body = "[scenarios.a]\nendpoint_type = \"auth\"\nusers = 1\nduration = \"1s\"\n[[scenarios.a.steps]]\nurl = \"/\"\n";
        let p = Plan::from_toml_str(body, "f.toml").unwrap();
        assert!(!p.options.no_vu_connection_reuse && !p.options.insecure_skip_tls_verify);
        assert_eq!(p.options.ca_cert, None);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("plan.toml");
        std::fs::write(
            &f,
            format!("[options]\nno_vu_connection_reuse = true\nca_cert = \"ca.pem\"\ninsecure_skip_tls_verify = true\n{body}"),
        )
        .unwrap();
        let p = Plan::from_path(&f).unwrap();
        assert!(p.options.no_vu_connection_reuse && p.options.insecure_skip_tls_verify);
        // Relative to the scenario file, like CSV data files.
        assert_eq!(p.options.ca_cert, Some(dir.path().join("ca.pem")));
        let e = err(&format!(
            "[options]\nno_vu_connection_reuse = \"yes\"\n{body}"
        ));
        assert!(e.starts_with("f.toml:2:"), "{e}");
    }

    #[test]
    fn one_off_builds_open_and_closed_plans() {
        let mut o = OneOff {
            url: "/health".into(),
            method: "GET".into(),
            headers: vec![("X-A".into(), "b \"q\"".into())],
            body: None,
            vus: 3,
            duration: Duration::from_millis(1500),
            rate: None,
            endpoint_type: EndpointType::ReadCrud,
        };
        let p = Plan::one_off(&o).unwrap();
        assert_eq!(
            p.scenarios[0].executor,
            Executor::ConstantVus {
                vus: 3,
                duration: Duration::from_millis(1500)
            }
        );
        o.rate = Some(50.0);
        let p = Plan::one_off(&o).unwrap();
        assert_eq!(p.scenarios[0].executor.name(), "constant-arrival-rate");
    }
}
