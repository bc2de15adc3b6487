//! The export pipeline: a queue of finished calls' records that holds at most
//! `max_queue` spans, and one export thread that writes them as OTLP/HTTP protobuf
//! ([`Encoder`]) and posts them. A record that finds the queue full is dropped at
//! once and its spans counted: a slow or dead collector never makes a call wait.
//!
//! Why not the SDK's `BatchSpanProcessor`: it takes the SDK's `SpanData`, one per
//! span, each with its attribute vector, all built on the request thread and freed
//! on the export thread. A call here hands over one record, pushed onto a vector
//! under a lock; the export thread is woken only when a batch is full (or at
//! shutdown), otherwise it wakes every `flush_interval` (docs/performance.md).

use super::otlp::Encoder;
use super::record::CallRecord;
use crate::config::TelemetryConfig;
use opentelemetry_sdk::trace::Sampler;
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Records waiting for the export thread.
#[derive(Debug, Default)]
struct Queue {
    records: Vec<CallRecord>,
    /// Their spans.
    spans: usize,
    /// The export thread was woken for a full batch and has not taken it yet.
    woken: bool,
    stop: bool,
}

/// Told when exports start failing (`true`, with why) and when they succeed again.
pub(crate) type Listener = Box<dyn Fn(bool, &str) + Send + Sync>;

/// What the request threads and the export thread share.
#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    dropped: AtomicU64,
    /// Spans in requests that failed.
    failed: AtomicU64,
    listener: OnceLock<Listener>,
    max_queue: usize,
    max_batch: usize,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("dropped", &self.dropped)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Spans dropped because the queue was full.
    fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Notes how a request of `spans` spans went; tells the listener when exports
    /// start failing and when they work again.
    fn exported(&self, spans: usize, result: Result<(), String>, failing: &mut bool) {
        match result {
            Ok(()) if *failing => {
                *failing = false;
                if let Some(l) = self.listener.get() {
                    l(false, "");
                }
            }
            Ok(()) => {}
            Err(why) => {
                self.failed.fetch_add(spans as u64, Ordering::Relaxed);
                if !*failing {
                    *failing = true;
                    if let Some(l) = self.listener.get() {
                        l(true, &why);
                    }
                }
            }
        }
    }

    /// Queues `r`, or drops and counts it when its spans do not fit.
    fn push(&self, r: CallRecord) {
        let n = r.spans();
        let mut q = self.queue.lock();
        if q.stop || q.spans + n > self.max_queue {
            drop(q);
            self.dropped.fetch_add(n as u64, Ordering::Relaxed);
            return;
        }
        q.spans += n;
        q.records.push(r);
        if q.spans >= self.max_batch && !q.woken {
            q.woken = true;
            drop(q);
            self.wake.notify_one();
        }
    }

    /// Waits until a batch is full, `until` passes or the queue stops, then takes
    /// what is queued (leaving `spare` in its place). `true`: stopping.
    fn take(&self, until: Instant, spare: &mut Vec<CallRecord>) -> bool {
        let mut q = self.queue.lock();
        while !q.stop && q.spans < self.max_batch {
            if self.wake.wait_until(&mut q, until).timed_out() {
                break;
            }
        }
        q.spans = 0;
        q.woken = false;
        std::mem::swap(&mut q.records, spare);
        q.stop
    }

    fn stop(&self) {
        self.queue.lock().stop = true;
        self.wake.notify_one();
    }
}

/// Where finished calls go, with the sampler every call is decided by.
#[derive(Debug)]
pub(super) struct Export {
    shared: Arc<Shared>,
    pub(super) sampler: Sampler,
    /// Hears from the export thread when it has sent the last batch.
    done: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

impl Export {
    /// Spans dropped because the queue was full.
    pub(super) fn dropped(&self) -> u64 {
        self.shared.dropped()
    }

    /// Spans lost because their export request failed.
    pub(super) fn failed(&self) -> u64 {
        self.shared.failed.load(Ordering::Relaxed)
    }

    /// Sets (once) whom to tell when exports start failing and work again.
    pub(super) fn set_listener(&self, l: Listener) {
        let _ = self.shared.listener.set(l);
    }

    /// Queues a finished call's spans (never waits).
    pub(super) fn send(&self, r: CallRecord) {
        self.shared.push(r);
    }

    /// Sends what is queued and stops the export thread, waiting at most `wait`.
    pub(super) fn shutdown(&self, wait: Duration) {
        self.shared.stop();
        if let Some(done) = self.done.lock().take() {
            let _ = done.recv_timeout(wait);
        }
    }
}

impl Drop for Export {
    fn drop(&mut self) {
        self.shared.stop();
    }
}

/// The OTLP/HTTP client: each request is posted as `application/x-protobuf` with a
/// blocking client on the export thread (at most `export_timeout` per request).
struct Http {
    client: reqwest::blocking::Client,
    url: String,
    headers: reqwest::header::HeaderMap,
}

/// The most of a collector's answer read (then the connection is reused).
const MAX_ANSWER: u64 = 64 * 1024;

impl Http {
    /// Posts one request; a failed export costs its spans (counted, not retried).
    fn post(&self, body: Vec<u8>) -> Result<(), String> {
        let failed = |what: String| powertune_core::redact::text(&what);
        let mut r = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
            .body(body)
            .send()
            .map_err(|e| {
                // reqwest's own text names the URL again; its innermost cause says why
                let mut why: &dyn std::error::Error = &e;
                while let Some(inner) = why.source() {
                    why = inner;
                }
                failed(format!("OTLP export to {}: {why}", self.url))
            })?;
        let status = r.status();
        let _ = std::io::copy(
            &mut std::io::Read::take(&mut r, MAX_ANSWER),
            &mut std::io::sink(),
        );
        if status.is_success() {
            Ok(())
        } else {
            Err(failed(format!(
                "OTLP export to {}: the collector answered {status}",
                self.url
            )))
        }
    }
}

/// The export thread: a request per `max_batch` spans, a partial one every
/// `flush_interval`, the rest at stop.
fn run(shared: &Shared, http: &Http, mut encoder: Encoder, flush_interval: Duration) {
    let mut batch = Vec::new();
    let mut failing = false;
    let send = |encoder: &mut Encoder, failing: &mut bool| {
        let n = encoder.len();
        shared.exported(n, http.post(encoder.request()), failing);
    };
    loop {
        let stopping = shared.take(Instant::now() + flush_interval, &mut batch);
        for r in &batch {
            for i in 0..r.spans() {
                encoder.add(r, i);
                if encoder.len() >= shared.max_batch {
                    send(&mut encoder, &mut failing);
                }
            }
        }
        if encoder.len() > 0 {
            send(&mut encoder, &mut failing);
        }
        batch.clear();
        if stopping {
            return;
        }
    }
}

/// The export to `cfg.traces_url` (no connection is made until the first batch).
pub(super) fn build(cfg: &TelemetryConfig) -> Result<Export, String> {
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in &cfg.headers {
        let n = reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            format!("telemetry header name {name:?} is not a valid HTTP header name")
        })?;
        let mut v = reqwest::header::HeaderValue::from_str(value.expose()).map_err(|_| {
            format!("the value of telemetry header {name:?} is not a valid HTTP header value")
        })?;
        v.set_sensitive(true);
        headers.insert(n, v);
    }
    let shared = Arc::new(Shared {
        max_queue: cfg.max_queue,
        max_batch: cfg.max_batch,
        ..Shared::default()
    });
    let (timeout, flush) = (cfg.export_timeout, cfg.flush_interval);
    let (url, encoder) = (cfg.traces_url.clone(), Encoder::new(&cfg.service_name));
    let (built_tx, built) = std::sync::mpsc::channel();
    let (done_tx, done) = std::sync::mpsc::channel();
    let s = shared.clone();
    // reqwest's blocking client runs its own runtime: built off any async worker
    std::thread::Builder::new()
        .name("powertune-otlp".into())
        .spawn(move || {
            let client = match reqwest::blocking::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                .build()
            {
                Ok(c) => {
                    let _ = built_tx.send(Ok(()));
                    c
                }
                Err(e) => {
                    let _ = built_tx.send(Err(e.to_string()));
                    return;
                }
            };
            run(
                &s,
                &Http {
                    client,
                    url,
                    headers,
                },
                encoder,
                flush,
            );
            let _ = done_tx.send(());
        })
        .map_err(|e| format!("cannot start the OTLP export thread: {e}"))?;
    built
        .recv()
        .map_err(|_| "cannot build the OTLP exporter's HTTP client".to_string())?
        .map_err(|e| {
            format!(
                "cannot build the OTLP exporter's HTTP client: {}",
                powertune_core::redact::text(&e)
            )
        })?;
    Ok(Export {
        shared,
        sampler: Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(cfg.sample_ratio))),
        done: Mutex::new(Some(done)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(attempts: usize) -> CallRecord {
        let mut r = CallRecord::sample("fast");
        for _ in 0..attempts {
            r.attempt(Some(crate::metrics::Outcome::ServerError));
        }
        r
    }

    #[test]
    fn the_queue_drops_and_counts_whole_calls_past_its_size_and_frees_on_take() {
        let s = Shared {
            max_queue: 4,
            max_batch: 3,
            ..Shared::default()
        };
        s.push(record(1));
        assert!(!s.queue.lock().woken);
        s.push(record(0));
        assert!(s.queue.lock().woken, "a full batch wakes the export thread");
        // 3 spans queued: a call of 2 does not fit, one of 1 does
        s.push(record(1));
        assert_eq!(s.dropped(), 2);
        s.push(record(0));
        assert_eq!(s.queue.lock().spans, 4);
        let mut taken = Vec::new();
        assert!(!s.take(Instant::now(), &mut taken));
        assert_eq!(taken.len(), 3);
        assert_eq!(s.queue.lock().spans, 0);
        s.push(record(3));
        assert_eq!(s.dropped(), 2);
        // stopped: nothing more is queued, and a take returns at once
        s.stop();
        s.push(record(0));
        assert_eq!(s.dropped(), 3);
        assert!(s.take(Instant::now() + Duration::from_secs(60), &mut taken));
        assert_eq!(taken.len(), 1);
    }

    /// A collector on loopback: the number of spans in each request it receives.
    async fn collector() -> (String, Arc<Mutex<Vec<usize>>>) {
        collector_failing(0).await
    }

    /// The same, answering 503 to its first `fail` requests (not counted).
    async fn collector_failing(fail: usize) -> (String, Arc<Mutex<Vec<usize>>>) {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use prost::Message as _;
        let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| async move {
                if refused.fetch_add(1, Ordering::Relaxed) < fail {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                }
                let req = ExportTraceServiceRequest::decode(body).expect("a valid request");
                let n = req
                    .resource_spans
                    .iter()
                    .flat_map(|r| &r.scope_spans)
                    .map(|s| s.spans.len())
                    .sum();
                g.lock().push(n);
                axum::http::StatusCode::OK
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/traces", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await });
        (url, got)
    }

    fn config(url: &str, flush_interval: Duration) -> TelemetryConfig {
        TelemetryConfig {
            traces_url: url.into(),
            headers: Vec::new(),
            service_name: "gw".into(),
            sample_ratio: 1.0,
            max_queue: 16,
            max_batch: 2,
            flush_interval,
            export_timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_hold_at_most_max_batch_spans_and_a_stop_sends_the_rest() {
        let (url, got) = collector().await;
        // no flush for a minute: only a full batch or the stop sends
        let e = Arc::new(build(&config(&url, Duration::from_secs(60))).unwrap());
        // 3 spans: past max_batch, so sent at once, in two requests
        e.send(record(2));
        let t0 = Instant::now();
        while got.lock().len() < 2 && t0.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(*got.lock(), vec![2, 1]);
        // 1 span waits for the flush, or the stop
        e.send(record(0));
        let stopping = e.clone();
        tokio::task::spawn_blocking(move || stopping.shutdown(Duration::from_secs(10)))
            .await
            .unwrap();
        assert_eq!(*got.lock(), vec![2, 1, 1]);
        e.send(record(0));
        assert_eq!(e.dropped(), 1, "a stopped export takes nothing");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_partial_batch_goes_after_the_flush_interval() {
        let (url, got) = collector().await;
        let e = build(&config(&url, Duration::from_millis(20))).unwrap();
        e.send(record(0));
        let t0 = Instant::now();
        while got.lock().is_empty() && t0.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(*got.lock(), vec![1]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_export_is_counted_and_told_once_then_its_recovery() {
        let (url, got) = collector_failing(2).await;
        let e = Arc::new(build(&config(&url, Duration::from_secs(60))).unwrap());
        let told = Arc::new(Mutex::new(Vec::new()));
        let t = told.clone();
        e.set_listener(Box::new(move |failing, why| {
            t.lock().push((failing, why.to_string()));
        }));
        // until `n` spans were received or lost
        let wait_for = |n: usize| {
            let got = got.clone();
            let e = e.clone();
            async move {
                let t0 = Instant::now();
                while got.lock().iter().sum::<usize>() + (e.failed() as usize) < n
                    && t0.elapsed() < Duration::from_secs(10)
                {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        };
        // two full batches of 2 spans refused: 4 spans lost, told once
        e.send(record(1));
        wait_for(2).await;
        e.send(record(1));
        wait_for(4).await;
        assert_eq!(e.failed(), 4);
        {
            let told = told.lock();
            assert_eq!(told.len(), 1, "{told:?}");
            assert!(told[0].0 && told[0].1.contains("503"), "{told:?}");
            assert!(
                told[0].1.contains("OTLP export to http://127.0.0.1:"),
                "{told:?}"
            );
        }
        // the next one goes through: told that it works again
        e.send(record(1));
        wait_for(6).await;
        assert_eq!(*got.lock(), vec![2]);
        assert_eq!(e.failed(), 4);
        assert_eq!(told.lock().len(), 2);
        assert!(!told.lock()[1].0);
    }
}
