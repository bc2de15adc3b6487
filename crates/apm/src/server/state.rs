//! The receiver's live state: the bounded queue into the one engine task that owns
//! the analysis, and the forwarder. Handlers share it through an `Arc`.

use super::forward::Forwarder;
use crate::engine::Engine;
use crate::model::{Reject, SpanRec};
use crate::snapshot::{EndpointDetail, Summary};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// What handlers ask of the engine task.
pub enum Cmd {
    Ingest(Vec<SpanRec>, u64),
    Malformed,
    Summary(Option<u64>, oneshot::Sender<Summary>),
    Endpoint(String, Option<u64>, oneshot::Sender<Option<EndpointDetail>>),
}

/// What every handler holds.
pub struct Shared {
    pub(super) tx: mpsc::Sender<Cmd>,
    /// Largest body as sent.
    pub(super) max_body: usize,
    /// Largest body once decompressed.
    pub(super) max_decompressed: usize,
    pub(super) forward: Option<Forwarder>,
}

/// The engine task: owns the engine, ticks once a second on tokio's clock (paused
/// time works in tests).
pub fn spawn_engine(mut engine: Engine, mut rx: mpsc::Receiver<Cmd>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        let now = move || start.elapsed().as_nanos() as u64;
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    None => break,
                    Some(Cmd::Ingest(spans, rejected)) => {
                        engine.note_rejected(rejected);
                        engine.ingest(spans, now());
                    }
                    Some(Cmd::Malformed) => engine.note_malformed(),
                    Some(Cmd::Summary(w, reply)) => {
                        let t = now();
                        engine.flush_rooted(t);
                        let _ = reply.send(engine.summary(t, w));
                    }
                    Some(Cmd::Endpoint(route, w, reply)) => {
                        let t = now();
                        engine.flush_rooted(t);
                        let _ = reply.send(engine.endpoint(&route, t, w));
                    }
                },
                _ = tick.tick() => engine.tick(now()),
            }
        }
    })
}

/// Accepts decoded spans: `Err` with an over-capacity answer when the queue is full.
pub(super) fn submit(
    shared: &Shared,
    spans: Vec<SpanRec>,
    bad: Vec<Reject>,
) -> Result<ExportTraceServiceResponse, ()> {
    let rejected = bad.len() as u64;
    shared
        .tx
        .try_send(Cmd::Ingest(spans, rejected))
        .map_err(|_| ())?;
    let partial_success = if rejected > 0 {
        let mut msg = format!("{rejected} span(s) rejected: {}", bad[0]);
        if bad.len() > 1 {
            msg.push_str(" (and others)");
        }
        Some(ExportTracePartialSuccess {
            rejected_spans: rejected as i64,
            error_message: msg,
        })
    } else {
        None
    };
    Ok(ExportTraceServiceResponse { partial_success })
}
