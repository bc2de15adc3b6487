//! The export pipeline: the OpenTelemetry SDK's batch processor on its own thread,
//! posting OTLP/HTTP protobuf written by [`Encoder`], behind a gate that holds at
//! most `max_queue` finished spans. A span that finds the gate full is dropped at
//! once and counted: a slow or dead collector never makes a call wait.

use super::otlp::Encoder;
use crate::config::TelemetryConfig;
use opentelemetry::{Context, InstrumentationScope, KeyValue};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, Span, SpanData, SpanExporter, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Finished spans between `on_end` and the start of their export, and those dropped.
#[derive(Debug, Default)]
pub(super) struct Gate {
    queued: AtomicUsize,
    dropped: AtomicU64,
    max: usize,
}

impl Gate {
    pub(super) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Takes a place for one span; `false` (and counted) when all are taken.
    fn admit(&self) -> bool {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn release(&self, n: usize) {
        let _ = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                Some(q.saturating_sub(n))
            });
    }
}

/// Where finished spans go: the batch processor behind its gate, with the sampler
/// and the instrumentation scope every span is recorded with.
#[derive(Debug)]
pub(super) struct Export {
    pub(super) processor: Gated,
    pub(super) sampler: Sampler,
    pub(super) scope: InstrumentationScope,
}

/// The batch processor behind the [`Gate`]: its own queue (of the same size) is
/// never the one that drops.
#[derive(Debug)]
pub(super) struct Gated {
    inner: BatchSpanProcessor,
    gate: Arc<Gate>,
}

impl SpanProcessor for Gated {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.gate.admit() {
            self.inner.on_end(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The OTLP/HTTP exporter: each batch is encoded by [`Encoder`] and posted as
/// `application/x-protobuf` with a blocking client on the SDK's export thread (at
/// most `export_timeout` per request). The gate's places are freed as the batch
/// leaves the queue.
#[derive(Debug)]
struct Http {
    client: reqwest::blocking::Client,
    url: String,
    headers: reqwest::header::HeaderMap,
    encoder: Encoder,
    gate: Arc<Gate>,
}

/// The most of a collector's answer read (then the connection is reused).
const MAX_ANSWER: u64 = 64 * 1024;

impl Http {
    fn post(&self, body: Vec<u8>) -> OTelSdkResult {
        let failed =
            |what: String| OTelSdkError::InternalFailure(powertune_core::redact::text(&what));
        let mut r = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
            .body(body)
            .send()
            .map_err(|e| failed(format!("OTLP export to {}: {e}", self.url)))?;
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

impl SpanExporter for Http {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        self.gate.release(batch.len());
        let body = self.encoder.request(&batch);
        drop(batch);
        std::future::ready(self.post(body))
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.encoder.set_resource(resource);
    }
}

/// The export to `cfg.traces_url` (no connection is made until the first batch),
/// with its gate.
pub(super) fn build(cfg: &TelemetryConfig) -> Result<(Export, Arc<Gate>), String> {
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
    // reqwest's blocking client runs its own runtime: built off any async worker
    let timeout = cfg.export_timeout;
    let client = std::thread::spawn(move || {
        reqwest::blocking::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
    })
    .join()
    .map_err(|_| "cannot build the OTLP exporter's HTTP client".to_string())?
    .map_err(|e| {
        format!(
            "cannot build the OTLP exporter's HTTP client: {}",
            powertune_core::redact::text(&e.to_string())
        )
    })?;
    let gate = Arc::new(Gate {
        max: cfg.max_queue,
        ..Gate::default()
    });
    let batch = BatchConfigBuilder::default()
        .with_max_queue_size(cfg.max_queue)
        .with_max_export_batch_size(cfg.max_batch)
        .with_scheduled_delay(cfg.flush_interval)
        .build();
    let resource = Resource::builder_empty()
        .with_attribute(KeyValue::new("service.name", cfg.service_name.clone()))
        .build();
    let mut encoder = Encoder::default();
    encoder.set_resource(&resource);
    let inner = BatchSpanProcessor::builder(Http {
        client,
        url: cfg.traces_url.clone(),
        headers,
        encoder,
        gate: gate.clone(),
    })
    .with_batch_config(batch)
    .build();
    let export = Export {
        processor: Gated {
            inner,
            gate: gate.clone(),
        },
        sampler: Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(cfg.sample_ratio))),
        scope: InstrumentationScope::builder("powertune-gateway").build(),
    };
    Ok((export, gate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_drops_and_counts_past_its_size_and_frees_on_export() {
        let g = Gate {
            max: 2,
            ..Gate::default()
        };
        assert!(g.admit() && g.admit());
        assert!(!g.admit());
        assert_eq!(g.dropped(), 1);
        g.release(2);
        assert!(g.admit());
        g.release(5);
        assert_eq!(g.queued.load(Ordering::Relaxed), 0);
    }
}
