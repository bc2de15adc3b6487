//! The export pipeline: the OpenTelemetry SDK's batch processor on its own thread,
//! posting OTLP/HTTP protobuf with `opentelemetry-otlp` (as `powertune target`
//! does), behind a gate that holds at most `max_queue` finished spans. A span that
//! finds the gate full is dropped at once and counted: a slow or dead collector
//! never makes a call wait.

use crate::config::TelemetryConfig;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, Span, SpanData,
    SpanExporter, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use std::collections::HashMap;
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

/// The batch processor behind the [`Gate`]: its own queue (of the same size) is
/// never the one that drops.
#[derive(Debug)]
struct Gated {
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

/// The OTLP exporter, freeing the gate's places as a batch leaves the queue.
#[derive(Debug)]
struct Releasing<E> {
    inner: E,
    gate: Arc<Gate>,
}

impl<E: SpanExporter> SpanExporter for Releasing<E> {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        self.gate.release(batch.len());
        self.inner.export(batch)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The tracer provider exporting to `cfg.traces_url` (no connection is made until
/// the first batch), with its gate.
pub(super) fn build(
    cfg: &TelemetryConfig,
) -> Result<(SdkTracerProvider, SdkTracer, Arc<Gate>), String> {
    use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
    let headers: HashMap<String, String> = cfg
        .headers
        .iter()
        .map(|(n, v)| (n.clone(), v.expose().to_string()))
        .collect();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(cfg.traces_url.clone())
        .with_protocol(Protocol::HttpBinary)
        .with_timeout(cfg.export_timeout)
        .with_headers(headers)
        .build()
        .map_err(|e| {
            format!(
                "cannot build the OTLP exporter: {}",
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
    let inner = BatchSpanProcessor::builder(Releasing {
        inner: exporter,
        gate: gate.clone(),
    })
    .with_batch_config(batch)
    .build();
    let resource = Resource::builder_empty()
        .with_attribute(KeyValue::new("service.name", cfg.service_name.clone()))
        .build();
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(cfg.sample_ratio)));
    let provider = SdkTracerProvider::builder()
        .with_span_processor(Gated {
            inner,
            gate: gate.clone(),
        })
        .with_sampler(sampler)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("powertune-gateway");
    Ok((provider, tracer, gate))
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
