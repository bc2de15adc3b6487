//! Live metric outputs (`--out prometheus-rw=URL`, `--out otlp=URL`): while a run
//! goes on, every `interval` the figures so far (a summary of the merged metric
//! shards) are taken as a [`Batch`] and handed to a bounded queue per output, from
//! which a sender task encodes and pushes them. When a queue is full (the receiver is
//! slower than the pushes), the batch is dropped and counted: a slow or dead receiver
//! never slows the load. A last batch is pushed when the run ends.
//!
//! Series (k6's names where k6 has the metric; latencies in seconds, as k6's remote
//! write output sends its trends): see [`samples`], [`otlp`] and docs/scale-out.md.

pub mod otlp;
mod prometheus_rw;

use crate::collect::state::Shared;
use crate::snapshot::{HttpSummary, ScenarioSummary, Summary};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Batches a queue holds before new ones are dropped.
pub const QUEUE_BATCHES: usize = 4;
/// The default push interval (k6's remote write default).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// Where live metrics go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    /// Prometheus remote write 1.0 (protobuf + snappy) to this URL.
    PrometheusRw(url::Url),
    /// OTLP/HTTP metrics (protobuf) to this URL (`/v1/metrics` added to a bare host).
    Otlp(url::Url),
}

impl Sink {
    /// Reads `prometheus-rw=URL` or `otlp=URL`. An OTLP URL without a path gets
    /// OTLP/HTTP's default `/v1/metrics`; one with a path is used as given.
    pub fn parse(text: &str) -> Result<Sink, String> {
        let example = "e.g. prometheus-rw=http://127.0.0.1:9090/api/v1/write or otlp=http://127.0.0.1:4318/v1/metrics";
        let Some((kind, url)) = text.split_once('=') else {
            return Err(format!("--out `{text}` is not KIND=TARGET ({example})"));
        };
        let parsed = || {
            let u = url::Url::parse(url).map_err(|e| {
                format!(
                    "--out {kind}: `{}` is not a URL: {e} ({example})",
                    powertune_core::redact::url(url)
                )
            })?;
            match u.scheme() {
                "http" | "https" => Ok(u),
                s => Err(format!(
                    "--out {kind}: scheme {s} is not http or https ({example})"
                )),
            }
        };
        match kind {
            "prometheus-rw" => Ok(Sink::PrometheusRw(parsed()?)),
            "otlp" => {
                let mut u = parsed()?;
                if u.path() == "/" || u.path().is_empty() {
                    u.set_path(otlp::DEFAULT_PATH);
                }
                Ok(Sink::Otlp(u))
            }
            _ => Err(format!(
                "--out `{kind}` is not supported (json=FILE, prometheus-rw=URL or otlp=URL)"
            )),
        }
    }

    /// The output's name as shown (`prometheus-rw`).
    pub fn kind(&self) -> &'static str {
        match self {
            Sink::PrometheusRw(_) => "prometheus-rw",
            Sink::Otlp(_) => "otlp",
        }
    }
}

/// What one output did.
#[derive(Debug, Default)]
pub struct Stats {
    /// Batches the receiver accepted.
    pub pushed: AtomicU64,
    /// Batches dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Batches the receiver refused or that could not be sent.
    pub failed: AtomicU64,
    /// The last failure, secrets masked.
    pub last_error: Mutex<Option<String>>,
}

/// The outputs of one run and what each did (read them after the run).
#[derive(Debug)]
pub struct Outputs {
    pub sinks: Vec<(Sink, Stats)>,
    pub interval: Duration,
}

impl Outputs {
    pub fn new(sinks: Vec<Sink>, interval: Duration) -> Outputs {
        Outputs {
            sinks: sinks.into_iter().map(|s| (s, Stats::default())).collect(),
            interval,
        }
    }
}

/// One sample: a metric name, its labels (sorted by name, as remote write wants) and
/// its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// The figures of one moment of the run, shared by every output's queue; each sender
/// encodes them in its own format, off the engine's tasks.
#[derive(Debug)]
pub struct Live {
    /// The run so far.
    pub summary: Summary,
    /// VUs running per scenario, in plan order.
    pub scenario_vus: Vec<u64>,
    /// VUs running in this process.
    pub vus: u64,
    /// The segment, k6's `from:to` (`0:1` for a whole run).
    pub segment: String,
}

/// A batch: the figures of one moment (`at_ms`) of the run that started at
/// `start_ms` (milliseconds since the Unix epoch).
#[derive(Debug, Clone)]
pub struct Batch {
    pub at_ms: i64,
    pub start_ms: i64,
    pub live: Arc<Live>,
}

impl Batch {
    /// The samples of remote write and of every output sent as flat series.
    pub fn samples(&self) -> Vec<Sample> {
        let l = &self.live;
        samples(&l.summary, &l.scenario_vus, l.vus, &l.segment)
    }
}

/// A scenario's HTTP figures per endpoint type (its steps' summaries merged), keyed
/// by the type's key (`read_crud`), in key order.
pub fn by_endpoint_type(sc: &ScenarioSummary) -> BTreeMap<&'static str, HttpSummary> {
    let mut by_type: BTreeMap<&'static str, HttpSummary> = BTreeMap::new();
    for st in &sc.steps {
        by_type
            .entry(st.endpoint_type.key())
            .or_default()
            .merge(&st.http);
    }
    by_type
}

/// The samples of `s` (the run so far): per scenario and endpoint type, requests
/// (`k6_http_reqs_total`), failures (`k6_http_req_failed_rate` as k6 has it, and the
/// count `powertune_http_req_failures_total`), latency as summary gauges since the
/// start (`k6_http_req_duration_{med,p90,p95,p99,avg,max}`, seconds), iterations
/// (`k6_iterations_total`, `k6_dropped_iterations_total`, per scenario) and VUs
/// (`k6_vus` per scenario and for the run); every series labelled with the segment.
pub fn samples(s: &Summary, scenario_vus: &[u64], vus: u64, segment: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    let seg = || ("segment", segment.to_string());
    for (i, sc) in s.scenarios.iter().enumerate() {
        for (t, h) in &by_endpoint_type(sc) {
            let labels = vec![
                ("endpoint_type", (*t).to_string()),
                ("scenario", sc.name.clone()),
                seg(),
            ];
            let mut add = |name: &'static str, value: f64| {
                out.push(Sample {
                    name,
                    labels: labels.clone(),
                    value,
                })
            };
            add("k6_http_reqs_total", h.reqs as f64);
            add("powertune_http_req_failures_total", h.failed as f64);
            add("k6_http_req_failed_rate", h.failed_rate());
            if h.reqs > 0 {
                let d = &h.duration.stats;
                add("k6_http_req_duration_med", d.med / 1000.0);
                add("k6_http_req_duration_p90", d.p90 / 1000.0);
                add("k6_http_req_duration_p95", d.p95 / 1000.0);
                add("k6_http_req_duration_p99", d.p99 / 1000.0);
                add("k6_http_req_duration_avg", d.avg / 1000.0);
                add("k6_http_req_duration_max", d.max / 1000.0);
            }
        }
        let labels = vec![("scenario", sc.name.clone()), seg()];
        for (name, value) in [
            ("k6_iterations_total", sc.iterations as f64),
            ("k6_dropped_iterations_total", sc.dropped_iterations as f64),
            ("k6_vus", scenario_vus.get(i).copied().unwrap_or(0) as f64),
        ] {
            out.push(Sample {
                name,
                labels: labels.clone(),
                value,
            });
        }
    }
    out.push(Sample {
        name: "k6_vus",
        labels: vec![("scenario", String::new()), seg()],
        value: vus as f64,
    });
    // Remote write wants empty label values left out.
    for smp in &mut out {
        smp.labels.retain(|(_, v)| !v.is_empty());
    }
    out
}

fn batch(shared: &Shared, t0: Instant, start_ms: i64) -> Batch {
    let snap = shared.reg.snapshot();
    Batch {
        at_ms: chrono::Utc::now().timestamp_millis(),
        start_ms,
        live: Arc::new(Live {
            summary: Summary::live(&shared.plan, &snap, t0.elapsed()),
            scenario_vus: shared.scenario_vus(),
            vus: shared.vus.load(Ordering::Relaxed),
            segment: shared.plan.segment.segment_text(),
        }),
    }
}

/// Samples the run every `outputs.interval` until `done`, then once more, and waits
/// (at most `2 × interval`, at most 10 s) for the senders to push what is queued.
pub(crate) async fn run(
    outputs: Arc<Outputs>,
    shared: Arc<Shared>,
    mut done: watch::Receiver<bool>,
    t0: Instant,
) {
    let start_ms = chrono::Utc::now().timestamp_millis()
        - i64::try_from(t0.elapsed().as_millis()).unwrap_or(0);
    let mut queues = Vec::new();
    let mut senders = tokio::task::JoinSet::new();
    for i in 0..outputs.sinks.len() {
        let (tx, rx) = mpsc::channel::<Batch>(QUEUE_BATCHES);
        queues.push(tx);
        senders.spawn(send_all(outputs.clone(), i, rx));
    }
    let offer = |b: Batch| {
        for (i, q) in queues.iter().enumerate() {
            if q.try_send(b.clone()).is_err() {
                if let Some((_, st)) = outputs.sinks.get(i) {
                    st.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    };
    let mut every = tokio::time::interval_at(t0 + outputs.interval, outputs.interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => offer(batch(&shared, t0, start_ms)),
            r = done.wait_for(|v| *v) => { let _ = r.map(|_| ()); break; }
        }
    }
    offer(batch(&shared, t0, start_ms));
    drop(queues);
    let wait = (outputs.interval * 2).min(Duration::from_secs(10));
    let _ =
        tokio::time::timeout(wait, async { while senders.join_next().await.is_some() {} }).await;
    senders.abort_all();
}

async fn send_all(outputs: Arc<Outputs>, i: usize, mut rx: mpsc::Receiver<Batch>) {
    let Some((sink, stats)) = outputs.sinks.get(i) else {
        return;
    };
    let client = match reqwest::Client::builder()
        .timeout(outputs.interval.max(Duration::from_secs(2)))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            *stats.last_error.lock() = Some(format!("cannot set up the HTTP client: {e}"));
            return;
        }
    };
    while let Some(b) = rx.recv().await {
        let r = match sink {
            Sink::PrometheusRw(url) => prometheus_rw::push(&client, url, &b).await,
            Sink::Otlp(url) => otlp::push(&client, url, &b).await,
        };
        match r {
            Ok(()) => {
                stats.pushed.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                *stats.last_error.lock() = Some(e);
            }
        }
    }
}

/// The most of a receiver's answer that is read (an OTLP partial success is a few
/// hundred bytes).
pub const ANSWER_LIMIT: usize = 64 * 1024;

/// POSTs `body` to `url` with `headers`, retrying once after 200 ms when the answer's
/// status is one `retry` accepts; returns the body of a 2xx answer (at most
/// [`ANSWER_LIMIT`] bytes). Errors name the URL with its secrets masked.
async fn post(
    client: &reqwest::Client,
    url: &url::Url,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    retry: fn(reqwest::StatusCode) -> bool,
) -> Result<Vec<u8>, String> {
    let shown = powertune_core::redact::url(url.as_str());
    let mut last = None;
    for attempt in 0..2 {
        let mut req = client.post(url.clone()).header(
            "User-Agent",
            concat!("powertune/", env!("CARGO_PKG_VERSION")),
        );
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        match req.body(body.clone()).send().await {
            Ok(mut resp) if resp.status().is_success() => {
                // At most ANSWER_LIMIT bytes of the answer are read; the rest is left.
                let mut got = Vec::new();
                while got.len() < ANSWER_LIMIT {
                    match resp.chunk().await {
                        Ok(Some(c)) => got.extend_from_slice(&c),
                        Ok(None) => break,
                        Err(e) => return Err(format!("cannot read the answer of {shown}: {e}")),
                    }
                }
                got.truncate(ANSWER_LIMIT);
                return Ok(got);
            }
            Ok(resp) if retry(resp.status()) && attempt == 0 => {
                last = Some(resp.status());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(resp) => return Err(format!("{shown} answered {}", resp.status())),
            Err(e) => {
                return Err(format!(
                    "cannot push to {shown}: {}",
                    powertune_core::redact::text(&e.to_string())
                ))
            }
        }
    }
    Err(format!(
        "{shown} answered {} twice",
        last.map_or_else(|| "an error".to_string(), |s| s.to_string())
    ))
}

#[cfg(test)]
mod tests;
