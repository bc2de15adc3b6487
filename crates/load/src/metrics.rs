//! Metric state: one shard per worker thread, recorded into without any shared lock
//! (each thread locks only its own, uncontended shard), merged on demand (the live
//! progress line once a second, threshold aborts, the final summary). Latencies go
//! into HDR histograms; there are no per-sample vectors.

use parking_lot::Mutex;
use powertune_core::LatencyHistogram;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A latency trend, allocated on first use (an HDR histogram is tens of KiB).
#[derive(Debug, Clone, Default)]
pub struct Trend(Option<Box<LatencyHistogram>>);

impl Trend {
    #[inline]
    pub fn record(&mut self, d: Duration) {
        self.0
            .get_or_insert_with(|| Box::new(LatencyHistogram::new()))
            .record(d);
    }

    pub fn merge(&mut self, other: &Trend) {
        if let Some(o) = &other.0 {
            let h = self
                .0
                .get_or_insert_with(|| Box::new(LatencyHistogram::new()));
            // Same bounds on both sides: merging cannot fail.
            let _ = h.merge(o);
        }
    }

    /// Records a value that is not a duration (tokens, tokens/s) at a thousandth's
    /// resolution: the histogram's `_ms` figures then read as the value itself.
    #[inline]
    pub fn record_value(&mut self, v: f64) {
        let thousandths = (v * 1000.0)
            .round()
            .clamp(1.0, powertune_core::histogram::MAX_MICROS as f64);
        self.0
            .get_or_insert_with(|| Box::new(LatencyHistogram::new()))
            .record_micros(thousandths as u64);
    }

    pub fn histogram(&self) -> LatencyHistogram {
        self.0.as_deref().cloned().unwrap_or_default()
    }

    pub fn count(&self) -> u64 {
        self.0.as_ref().map_or(0, |h| h.count())
    }

    /// Empties the trend, keeping its allocation.
    pub fn clear(&mut self) {
        if let Some(h) = &mut self.0 {
            h.reset();
        }
    }
}

/// Errors by kind: counted, never stored one by one.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[schemars(extend("additionalProperties" = false))]
pub struct ErrorCounts {
    pub connect: u64,
    pub tls: u64,
    pub timeout: u64,
    /// Responses with a status of 400 or above.
    pub status: u64,
    /// Anything else: the connection closed mid-response, a malformed response.
    pub protocol: u64,
    /// Requests still in flight when their scenario's time and graceful stop ran out
    /// (or a second signal stopped the run): k6's interrupted iterations.
    #[serde(default)]
    pub interrupted: u64,
    /// Requests never sent because a templated header value or URL rendered to
    /// something unsafe to send (a CR, LF or other control character).
    #[serde(default)]
    pub invalid: u64,
}

impl ErrorCounts {
    pub fn add(&mut self, o: &ErrorCounts) {
        self.connect += o.connect;
        self.tls += o.tls;
        self.timeout += o.timeout;
        self.status += o.status;
        self.protocol += o.protocol;
        self.interrupted += o.interrupted;
        self.invalid += o.invalid;
    }

    pub fn total(&self) -> u64 {
        self.connect
            + self.tls
            + self.timeout
            + self.status
            + self.protocol
            + self.interrupted
            + self.invalid
    }
}

/// What went wrong with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Connect,
    Tls,
    Timeout,
    Protocol,
    /// Still in flight when the run stopped waiting for it.
    Interrupted,
    /// Not sent: a rendered header value or URL held a control character.
    Invalid,
}

/// Streamed answers that broke after a 2xx status, by kind.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[schemars(extend("additionalProperties" = false))]
pub struct StreamErrorCounts {
    /// The provider sent an error event or object inside the stream.
    pub provider: u64,
    /// A chunk (or a whole answer) that is not the dialect's format.
    pub malformed: u64,
    /// Nothing arrived for the step's `stall_timeout`.
    pub stall: u64,
    /// The connection closed, or the body ended, before the stream's end marker.
    pub dropped: u64,
}

impl StreamErrorCounts {
    pub fn add(&mut self, o: &StreamErrorCounts) {
        self.provider += o.provider;
        self.malformed += o.malformed;
        self.stall += o.stall;
        self.dropped += o.dropped;
    }

    pub fn total(&self) -> u64 {
        self.provider + self.malformed + self.stall + self.dropped
    }
}

/// The LLM figures of one step with `llm = "…"` (empty for other steps).
#[derive(Debug, Clone, Default)]
pub struct LlmMetrics {
    /// Answers with a 2xx status, streamed or whole.
    pub responses: u64,
    pub streamed: u64,
    /// Answers that finished without a stream error.
    pub completed: u64,
    pub output_tokens: u64,
    pub input_tokens: u64,
    /// Answers whose output tokens came from their usage, and from counting chunks.
    pub from_usage: u64,
    pub from_chunks: u64,
    pub faults: StreamErrorCounts,
    pub ttft: Trend,
    /// One sample per gap between consecutive content chunks, pooled.
    pub itl: Trend,
    pub tpot: Trend,
    pub e2e: Trend,
    /// Output tokens per second of end-to-end duration, one sample per answer
    /// (recorded with [`Trend::record_value`]).
    pub tokens_per_s: Trend,
}

impl LlmMetrics {
    pub fn merge(&mut self, o: &LlmMetrics) {
        self.responses += o.responses;
        self.streamed += o.streamed;
        self.completed += o.completed;
        self.output_tokens += o.output_tokens;
        self.input_tokens += o.input_tokens;
        self.from_usage += o.from_usage;
        self.from_chunks += o.from_chunks;
        self.faults.add(&o.faults);
        self.ttft.merge(&o.ttft);
        self.itl.merge(&o.itl);
        self.tpot.merge(&o.tpot);
        self.e2e.merge(&o.e2e);
        self.tokens_per_s.merge(&o.tokens_per_s);
    }

    fn record(&mut self, s: &crate::llm::LlmSample) {
        use crate::llm::StreamFault;
        self.responses += 1;
        self.streamed += u64::from(s.streamed);
        self.completed += u64::from(s.completed);
        self.output_tokens += s.output_tokens;
        self.input_tokens += s.input_tokens;
        if s.from_usage {
            self.from_usage += 1;
        } else {
            self.from_chunks += 1;
        }
        match s.fault {
            Some(StreamFault::Provider) => self.faults.provider += 1,
            Some(StreamFault::Malformed) => self.faults.malformed += 1,
            Some(StreamFault::Stall) => self.faults.stall += 1,
            Some(StreamFault::Dropped) => self.faults.dropped += 1,
            None => {}
        }
        if let Some(d) = s.ttft {
            self.ttft.record(d);
        }
        if let Some(d) = s.tpot {
            self.tpot.record(d);
        }
        if let Some(d) = s.e2e {
            self.e2e.record(d);
        }
        if let Some(v) = s.tokens_per_s {
            self.tokens_per_s.record_value(v);
        }
    }
}

/// The protocol a request went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Http1,
    Http2,
}

/// Per HTTP step (series).
#[derive(Debug, Clone, Default)]
pub struct SeriesMetrics {
    pub reqs: u64,
    pub failed: u64,
    pub errors: ErrorCounts,
    /// Status code → count (a handful of distinct codes per step).
    pub status: Vec<(u16, u64)>,
    /// Coordinated-omission corrected: raw plus the iteration's start lag.
    pub duration: Trend,
    /// Send → response end, as measured on the connection.
    pub raw: Trend,
    /// Requests carried over HTTP/1.1 and over HTTP/2.
    pub http1: u64,
    pub http2: u64,
    /// `duration` and `raw` since the monitor's last drain (the timeline's interval);
    /// not merged into snapshots.
    pub tick_duration: Trend,
    pub tick_raw: Trend,
    /// Steps with `llm = "…"`: what their answers measured.
    pub llm: LlmMetrics,
    /// With `--trace`: the slowest answered requests and their trace ids.
    pub slowest: crate::trace::Slowest,
}

impl SeriesMetrics {
    pub fn merge(&mut self, o: &SeriesMetrics) {
        self.reqs += o.reqs;
        self.failed += o.failed;
        self.errors.add(&o.errors);
        for (code, n) in &o.status {
            bump_status(&mut self.status, *code, *n);
        }
        self.duration.merge(&o.duration);
        self.raw.merge(&o.raw);
        self.http1 += o.http1;
        self.http2 += o.http2;
        self.llm.merge(&o.llm);
        self.slowest.merge(&o.slowest);
    }
}

fn bump_status(v: &mut Vec<(u16, u64)>, code: u16, n: u64) {
    match v.iter_mut().find(|(c, _)| *c == code) {
        Some(e) => e.1 += n,
        None => v.push((code, n)),
    }
}

/// Per scenario.
#[derive(Debug, Clone, Default)]
pub struct ScenarioMetrics {
    pub iterations: u64,
    pub dropped: u64,
    pub iteration_duration: Trend,
    pub blocked: Trend,
    pub connecting: Trend,
    pub tls: Trend,
    pub sending: Trend,
    pub waiting: Trend,
    pub receiving: Trend,
    pub data_sent: u64,
    pub data_received: u64,
    pub ws_sessions: u64,
    pub ws_errors: u64,
    pub ws_msgs_received: u64,
    pub ws_msgs_sent: u64,
    pub ws_broadcasts: u64,
    pub ws_connecting: Trend,
    pub ws_subscribe: Trend,
    pub ws_session: Trend,
}

impl ScenarioMetrics {
    pub fn merge(&mut self, o: &ScenarioMetrics) {
        self.iterations += o.iterations;
        self.dropped += o.dropped;
        self.iteration_duration.merge(&o.iteration_duration);
        self.blocked.merge(&o.blocked);
        self.connecting.merge(&o.connecting);
        self.tls.merge(&o.tls);
        self.sending.merge(&o.sending);
        self.waiting.merge(&o.waiting);
        self.receiving.merge(&o.receiving);
        self.data_sent += o.data_sent;
        self.data_received += o.data_received;
        self.ws_sessions += o.ws_sessions;
        self.ws_errors += o.ws_errors;
        self.ws_msgs_received += o.ws_msgs_received;
        self.ws_msgs_sent += o.ws_msgs_sent;
        self.ws_broadcasts += o.ws_broadcasts;
        self.ws_connecting.merge(&o.ws_connecting);
        self.ws_subscribe.merge(&o.ws_subscribe);
        self.ws_session.merge(&o.ws_session);
    }
}

/// One worker's metrics (or the merge of all of them).
#[derive(Debug, Clone)]
pub struct Shard {
    pub series: Vec<SeriesMetrics>,
    pub scenarios: Vec<ScenarioMetrics>,
    /// Check id → (passes, fails).
    pub checks: Vec<(u64, u64)>,
}

impl Shard {
    pub fn new(n_series: usize, n_scenarios: usize, n_checks: usize) -> Shard {
        Shard {
            series: vec![SeriesMetrics::default(); n_series],
            scenarios: vec![ScenarioMetrics::default(); n_scenarios],
            checks: vec![(0, 0); n_checks],
        }
    }

    pub fn merge(&mut self, o: &Shard) {
        for (a, b) in self.series.iter_mut().zip(&o.series) {
            a.merge(b);
        }
        for (a, b) in self.scenarios.iter_mut().zip(&o.scenarios) {
            a.merge(b);
        }
        for (a, b) in self.checks.iter_mut().zip(&o.checks) {
            a.0 += b.0;
            a.1 += b.1;
        }
    }
}

/// The timings of one HTTP request, k6's phases.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    pub blocked: Duration,
    pub connecting: Duration,
    pub tls: Duration,
    pub sending: Duration,
    pub waiting: Duration,
    pub receiving: Duration,
    /// sending + waiting + receiving.
    pub duration: Duration,
}

/// One finished request, as handed to [`Registry::record_request`].
#[derive(Debug, Clone, Copy)]
pub struct RequestSample {
    pub scenario: usize,
    pub series: usize,
    pub status: Option<u16>,
    pub error: Option<ErrorKind>,
    pub failed: bool,
    pub timings: Timings,
    /// How late the iteration started against its schedule (0 for closed models).
    pub lag: Duration,
    pub sent: u64,
    pub received: u64,
    /// The protocol the request went over (None: no connection was made).
    pub proto: Option<Proto>,
    /// The `traceparent` it carried (`--trace`).
    pub trace: Option<crate::trace::TraceContext>,
}

/// k6's `vus` gauge over time: one sample per tick, at most [`VusSeries::CAP`] points
/// (when full, neighbouring points are folded pairwise, keeping the larger, and the
/// interval doubles), so memory is bounded whatever the run's length.
#[derive(Debug, Clone, PartialEq)]
pub struct VusSeries {
    /// Seconds each point covers.
    pub interval_s: f64,
    pub points: Vec<u64>,
    /// Samples not yet folded into a point (when the interval has grown).
    pending: Option<(u64, u32)>,
    per_point: u32,
    pub min: Option<u64>,
    pub max: u64,
    pub current: u64,
}

impl VusSeries {
    pub const CAP: usize = 600;

    pub fn new(tick_s: f64) -> VusSeries {
        VusSeries {
            interval_s: tick_s,
            points: Vec::new(),
            pending: None,
            per_point: 1,
            min: None,
            max: 0,
            current: 0,
        }
    }

    /// Adds one sample (taken every `tick_s`).
    pub fn sample(&mut self, vus: u64) {
        self.current = vus;
        self.max = self.max.max(vus);
        self.min = Some(self.min.map_or(vus, |m| m.min(vus)));
        let (m, n) = self.pending.take().unwrap_or((0, 0));
        let (m, n) = (m.max(vus), n + 1);
        if n < self.per_point {
            self.pending = Some((m, n));
            return;
        }
        self.points.push(m);
        if self.points.len() >= Self::CAP {
            self.points = self
                .points
                .chunks(2)
                .map(|c| c.iter().copied().max().unwrap_or(0))
                .collect();
            self.per_point *= 2;
            self.interval_s *= 2.0;
        }
    }
}

static RUN_IDS: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static LOCAL: RefCell<Option<(u64, Arc<Mutex<Shard>>)>> = const { RefCell::new(None) };
}

/// All shards of one run.
#[derive(Debug)]
pub struct Registry {
    id: u64,
    dims: (usize, usize, usize),
    shards: Mutex<Vec<Arc<Mutex<Shard>>>>,
}

impl Registry {
    pub fn new(n_series: usize, n_scenarios: usize, n_checks: usize) -> Registry {
        Registry {
            id: RUN_IDS.fetch_add(1, Ordering::Relaxed),
            dims: (n_series, n_scenarios, n_checks),
            shards: Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` on this thread's shard for this run (created on first use).
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(&mut Shard) -> R) -> R {
        let shard = LOCAL.with(|l| {
            let mut l = l.borrow_mut();
            match &*l {
                Some((id, s)) if *id == self.id => s.clone(),
                _ => {
                    let s = Arc::new(Mutex::new(Shard::new(
                        self.dims.0,
                        self.dims.1,
                        self.dims.2,
                    )));
                    self.shards.lock().push(s.clone());
                    *l = Some((self.id, s.clone()));
                    s
                }
            }
        });
        let mut g = shard.lock();
        f(&mut g)
    }

    /// Records one request into the calling thread's shard.
    pub fn record_request(&self, s: &RequestSample) {
        self.with(|sh| {
            if let Some(m) = sh.series.get_mut(s.series) {
                m.reqs += 1;
                if s.failed {
                    m.failed += 1;
                }
                match s.error {
                    Some(ErrorKind::Connect) => m.errors.connect += 1,
                    Some(ErrorKind::Tls) => m.errors.tls += 1,
                    Some(ErrorKind::Timeout) => m.errors.timeout += 1,
                    Some(ErrorKind::Protocol) => m.errors.protocol += 1,
                    Some(ErrorKind::Interrupted) => m.errors.interrupted += 1,
                    Some(ErrorKind::Invalid) => m.errors.invalid += 1,
                    None => {}
                }
                if let Some(code) = s.status {
                    if code >= 400 {
                        m.errors.status += 1;
                    }
                    bump_status(&mut m.status, code, 1);
                }
                match s.proto {
                    Some(Proto::Http1) => m.http1 += 1,
                    Some(Proto::Http2) => m.http2 += 1,
                    None => {}
                }
                if s.error.is_none() {
                    let corrected = s.timings.duration + s.lag;
                    m.raw.record(s.timings.duration);
                    m.duration.record(corrected);
                    m.tick_raw.record(s.timings.duration);
                    m.tick_duration.record(corrected);
                    if let Some(ctx) = s.trace {
                        let us = u64::try_from(s.timings.duration.as_micros()).unwrap_or(u64::MAX);
                        m.slowest.offer(us, ctx, s.status);
                    }
                }
            }
            if let Some(m) = sh.scenarios.get_mut(s.scenario) {
                m.data_sent += s.sent;
                m.data_received += s.received;
                if s.error.is_none() {
                    let t = &s.timings;
                    m.blocked.record(t.blocked);
                    m.connecting.record(t.connecting);
                    m.tls.record(t.tls);
                    m.sending.record(t.sending);
                    m.waiting.record(t.waiting);
                    m.receiving.record(t.receiving);
                }
            }
        })
    }

    /// Records one LLM answer of step `series`.
    pub fn record_llm(&self, series: usize, s: &crate::llm::LlmSample) {
        self.with(|sh| {
            if let Some(m) = sh.series.get_mut(series) {
                m.llm.record(s);
            }
        })
    }

    /// Records gaps between content chunks (microseconds) of step `series`.
    pub fn record_itl(&self, series: usize, gaps_us: &[u32]) {
        self.with(|sh| {
            if let Some(m) = sh.series.get_mut(series) {
                for g in gaps_us {
                    m.llm.itl.record(Duration::from_micros(u64::from(*g)));
                }
            }
        })
    }

    pub fn record_check(&self, id: usize, ok: bool) {
        self.with(|sh| {
            if let Some(c) = sh.checks.get_mut(id) {
                if ok {
                    c.0 += 1
                } else {
                    c.1 += 1
                }
            }
        })
    }

    pub fn scenario(&self, idx: usize, f: impl FnOnce(&mut ScenarioMetrics)) {
        self.with(|sh| {
            if let Some(m) = sh.scenarios.get_mut(idx) {
                f(m)
            }
        })
    }

    /// One drain for the timeline: every shard's cumulative counters, summed, and
    /// the latencies recorded since the last drain (taken from each shard, which
    /// starts a new interval).
    pub fn drain_interval(&self) -> crate::timeline::Tick {
        use crate::timeline::{ScenarioTick, SeriesTick, Tick};
        let mut out = Tick {
            series: vec![SeriesTick::default(); self.dims.0],
            scenarios: vec![ScenarioTick::default(); self.dims.1],
        };
        let shards: Vec<Arc<Mutex<Shard>>> = self.shards.lock().clone();
        for s in shards {
            let mut g = s.lock();
            for (o, m) in out.series.iter_mut().zip(g.series.iter_mut()) {
                o.reqs += m.reqs;
                o.failed += m.failed;
                o.errors.add(&m.errors);
                o.duration.merge(&m.tick_duration);
                o.raw.merge(&m.tick_raw);
                m.tick_duration.clear();
                m.tick_raw.clear();
            }
            for (o, m) in out.scenarios.iter_mut().zip(g.scenarios.iter()) {
                o.iterations += m.iterations;
                o.dropped += m.dropped;
                o.data_sent += m.data_sent;
                o.data_received += m.data_received;
            }
        }
        out
    }

    /// The merge of every shard so far.
    pub fn snapshot(&self) -> Shard {
        let mut out = Shard::new(self.dims.0, self.dims.1, self.dims.2);
        let shards: Vec<Arc<Mutex<Shard>>> = self.shards.lock().clone();
        for s in shards {
            out.merge(&s.lock());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_from_many_threads_merge() {
        let reg = Arc::new(Registry::new(1, 1, 1));
        let mut handles = Vec::new();
        for t in 0..4u64 {
            let reg = reg.clone();
            handles.push(std::thread::spawn(move || {
                for i in 0..100u64 {
                    reg.record_request(&RequestSample {
                        scenario: 0,
                        series: 0,
                        status: Some(if i % 10 == 0 { 500 } else { 200 }),
                        error: None,
                        failed: i % 10 == 0,
                        timings: Timings {
                            duration: Duration::from_millis(t + 1),
                            ..Timings::default()
                        },
                        lag: Duration::from_millis(5),
                        sent: 10,
                        received: 20,
                        proto: Some(Proto::Http1),
                        trace: None,
                    });
                    reg.record_check(0, i % 2 == 0);
                }
            }));
        }
        for h in handles {
            h.join().unwrap();
        }
        let s = reg.snapshot();
        assert_eq!(s.series[0].reqs, 400);
        assert_eq!(s.series[0].failed, 40);
        assert_eq!(s.series[0].errors.status, 40);
        assert_eq!(s.series[0].raw.count(), 400);
        assert!(s.series[0].duration.histogram().min_ms() >= 5.9);
        assert_eq!(s.scenarios[0].data_sent, 4000);
        assert_eq!(s.checks[0], (200, 200));
        assert!(reg.shards.lock().len() >= 4);
        assert_eq!((s.series[0].http1, s.series[0].http2), (400, 0));
    }

    #[test]
    fn vus_series_stays_bounded_and_keeps_the_peaks() {
        let mut v = VusSeries::new(1.0);
        for i in 0..5000u64 {
            v.sample(if i == 2500 { 9999 } else { i % 100 });
        }
        assert!(v.points.len() < VusSeries::CAP, "{}", v.points.len());
        assert!(
            v.points.len() >= VusSeries::CAP / 2 - 1,
            "{}",
            v.points.len()
        );
        assert_eq!(v.interval_s, 16.0);
        assert_eq!(v.max, 9999);
        assert!(v.points.contains(&9999));
        assert_eq!((v.min, v.current), (Some(0), 99));
        let mut short = VusSeries::new(1.0);
        for x in [3, 5, 4] {
            short.sample(x);
        }
        assert_eq!(short.points, vec![3, 5, 4]);
    }
}
