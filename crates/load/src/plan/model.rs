//! The validated plan: what the engine runs.

use crate::catalogue::validate_threshold;
use crate::template::Template;
use powertune_core::threshold::Threshold;
use powertune_core::EndpointType;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

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
    /// W3C `traceparent` on every request and WebSocket upgrade (`--trace`).
    pub trace: bool,
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
            trace: false,
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
                stages
                    .iter()
                    .fold(Duration::ZERO, |a, s| a.saturating_add(s.duration))
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
        let s = |d: &mut Duration| *d = scaled(*d, f);
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
    /// `llm = "…"`: the answer is an LLM's, read as it streams (`crate::llm`).
    pub llm: Option<crate::llm::LlmStep>,
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
        self.start_time.saturating_add(self.executor.duration())
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
    /// The execution segment this process runs ([`Plan::split`]); the whole run by
    /// default.
    pub segment: crate::segment::Share,
}

impl Plan {
    /// Multiplies every executor duration, start time, graceful stop and cable hold by
    /// `factor` (think times and timeouts are kept: they model users, not the test's
    /// length). `factor` must be above 0.
    pub fn scale_time(&mut self, factor: f64) {
        if !(factor.is_finite() && factor > 0.0) {
            return;
        }
        for s in &mut self.scenarios {
            s.executor.scale(factor);
            s.start_time = scaled(s.start_time, factor);
            s.graceful_stop = scaled(s.graceful_stop, factor);
            for st in s.setup.iter_mut().chain(s.steps.iter_mut()) {
                if let Step::Cable(c) = st {
                    if let Hold::For(d) = &mut c.hold {
                        *d = scaled(*d, factor);
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

    /// `powertune load FILE --vus N --duration D [--rate R]`: like k6's CLI flags over
    /// a script's options, the flags replace every scenario's executor. Each scenario
    /// then starts at once and runs constant-vus with `vus` VUs (else the most its own
    /// executor ran) for `duration` (else its own executor's length) or, with `rate`,
    /// constant-arrival-rate at `rate` iterations per second with `vus` pre-allocated
    /// VUs (growing to twice the rate, at most 10,000). Steps, data, graceful stops and
    /// thresholds are kept.
    pub fn override_executors(
        &mut self,
        vus: Option<u32>,
        duration: Option<Duration>,
        rate: Option<f64>,
    ) {
        for sc in &mut self.scenarios {
            let vus = vus.unwrap_or_else(|| sc.executor.max_vus()).max(1);
            let duration = duration.unwrap_or_else(|| sc.executor.duration());
            sc.start_time = Duration::ZERO;
            sc.executor = match rate {
                Some(r) => Executor::ConstantArrivalRate {
                    rate: r,
                    time_unit: Duration::from_secs(1),
                    duration,
                    pre_allocated_vus: vus,
                    max_vus: vus.max(((r * 2.0).ceil().min(10_000.0)) as u32),
                    max_backlog: (r.ceil() as u64).clamp(1, 100_000),
                },
                None => Executor::ConstantVus { vus, duration },
            };
        }
    }

    /// Adds a threshold (e.g. from `--threshold`), validating its metric and tags.
    pub fn add_threshold(&mut self, t: Threshold) -> Result<(), String> {
        validate_threshold(&t)?;
        if let Some(why) = unmatched_tag(&self.scenarios, &t) {
            return Err(why);
        }
        self.thresholds.push(t);
        Ok(())
    }

    /// Every `{{name}}` the plan's templates use (URLs, headers, bodies, WebSocket
    /// messages). The caller looks up in its environment only these names.
    pub fn variables(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut add = |t: &Template| out.extend(t.vars().map(str::to_string));
        for sc in &self.scenarios {
            for st in sc.setup.iter().chain(sc.steps.iter()) {
                match st {
                    Step::Http(h) => {
                        add(&h.url);
                        h.headers.iter().for_each(|(_, t)| add(t));
                        match &h.body {
                            Body::None => {}
                            Body::Text(t) => add(t),
                            Body::Json(v) => json_templates(v, &mut add),
                        }
                    }
                    Step::Think(_) => {}
                    Step::Cable(c) => {
                        add(&c.url);
                        c.headers.iter().for_each(|(_, t)| add(t));
                    }
                    Step::Ws(w) => {
                        add(&w.url);
                        w.send.iter().for_each(&mut add);
                        w.headers.iter().for_each(|(_, t)| add(t));
                    }
                }
            }
        }
        out
    }
}

/// Calls `add` with every template among the strings of a JSON body.
fn json_templates(v: &serde_json::Value, add: &mut impl FnMut(&Template)) {
    match v {
        serde_json::Value::String(s) if s.contains("{{") => {
            if let Ok(t) = Template::parse(s) {
                add(&t);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| json_templates(x, add)),
        serde_json::Value::Object(o) => o.values().for_each(|x| json_templates(x, add)),
        _ => {}
    }
}

/// `d × f`, saturating instead of overflowing (`Duration::mul_f64` panics).
fn scaled(d: Duration, f: f64) -> Duration {
    Duration::try_from_secs_f64(d.as_secs_f64() * f).unwrap_or(Duration::MAX)
}

/// Why a threshold's tag selects nothing of these scenarios (`{scenario:nosuch}`), if
/// it does: such a threshold would judge an empty selection, so it is refused.
pub(crate) fn unmatched_tag(scenarios: &[Scenario], t: &Threshold) -> Option<String> {
    let steps = || scenarios.iter().flat_map(|sc| sc.http_steps());
    for (k, v) in &t.metric.tags {
        let (matched, known): (bool, Vec<String>) = match k.as_str() {
            "scenario" => (
                scenarios.iter().any(|sc| sc.name == *v),
                scenarios.iter().map(|sc| sc.name.clone()).collect(),
            ),
            "endpoint_type" => (
                scenarios
                    .iter()
                    .any(|sc| sc.endpoint_type.key() == v.as_str()),
                scenarios
                    .iter()
                    .map(|sc| sc.endpoint_type.key().to_string())
                    .collect(),
            ),
            "name" => (
                steps().any(|st| st.name == *v),
                steps().map(|st| st.name.clone()).collect(),
            ),
            "method" => (
                steps().any(|st| st.method.as_str().eq_ignore_ascii_case(v)),
                steps().map(|st| st.method.to_string()).collect(),
            ),
            "url" => (
                steps().any(|st| powertune_core::redact::text(&st.url_text) == *v),
                steps()
                    .map(|st| powertune_core::redact::text(&st.url_text))
                    .collect(),
            ),
            _ => continue,
        };
        if !matched {
            let mut known = known;
            known.dedup();
            let example = known.first().map_or("login", String::as_str);
            return Some(format!(
                "{k}:{v} matches nothing in {}; a threshold must select something, e.g. {}{{{k}:{example}}}",
                if k == "scenario" { "the scenarios" } else { "the steps" },
                t.metric.name
            ));
        }
    }
    None
}
