//! The access log: one JSON line per client call, and one per breaker transition and
//! per credential disabled or enabled. Lines go through a bounded queue to a writer
//! thread, so a slow disk or terminal never holds a call; a line that finds the queue
//! full is dropped and counted (`powertune_gateway_log_lines_dropped_total`). No line
//! carries a key, a prompt or an answer.

use serde::Serialize;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, Sender, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Lines the queue holds before new ones are dropped.
pub const DEFAULT_LOG_QUEUE: usize = 8192;

enum Msg {
    Line(String),
    Flush(Sender<()>),
}

/// Where the gateway's log lines go (a file or stderr, chosen by the caller).
pub struct EventLog {
    tx: SyncSender<Msg>,
    dropped: AtomicU64,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog")
            .field("dropped", &self.dropped.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl EventLog {
    /// Starts the writer thread on `out`, with a queue of `capacity` lines.
    pub fn new(out: Box<dyn Write + Send>, capacity: usize) -> std::io::Result<EventLog> {
        let (tx, rx) = sync_channel(capacity.max(1));
        std::thread::Builder::new()
            .name("gateway-log".into())
            .spawn(move || write_lines(out, rx))?;
        Ok(EventLog {
            tx,
            dropped: AtomicU64::new(0),
        })
    }

    /// Queues one line (without its newline); never waits.
    pub fn emit(&self, line: String) {
        match self.tx.try_send(Msg::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Queues `value` as one JSON line.
    pub(crate) fn emit_json(&self, value: &impl Serialize) {
        if let Ok(line) = serde_json::to_string(value) {
            self.emit(line);
        }
    }

    /// Lines dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits (up to `timeout`) until every line queued so far is written and flushed;
    /// for shutdown. Returns whether it finished in time.
    pub fn flush(&self, timeout: Duration) -> bool {
        let (ack, done) = std::sync::mpsc::channel();
        if self.tx.send(Msg::Flush(ack)).is_err() {
            return false;
        }
        done.recv_timeout(timeout).is_ok()
    }
}

fn write_lines(mut out: Box<dyn Write + Send>, rx: Receiver<Msg>) {
    let mut buf = std::io::BufWriter::with_capacity(64 << 10, &mut out);
    while let Ok(msg) = rx.recv() {
        let mut next = Some(msg);
        // write what is queued, flush when the queue runs dry
        while let Some(m) = next.take() {
            match m {
                Msg::Line(l) => {
                    let _ = buf.write_all(l.as_bytes());
                    let _ = buf.write_all(b"\n");
                }
                Msg::Flush(ack) => {
                    let _ = buf.flush();
                    let _ = ack.send(());
                }
            }
            next = rx.try_recv().ok();
        }
        let _ = buf.flush();
    }
}

/// The time of a line: RFC 3339, UTC, milliseconds.
pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// `[shared]`: the replica left shared state for its own, or came back; and
/// `[telemetry]`: exports started failing, or work again.
#[derive(Debug, Serialize)]
pub(crate) struct SharedLine<'a> {
    pub(crate) time: String,
    pub(crate) event: &'static str,
    pub(crate) from: &'static str,
    pub(crate) to: &'static str,
    pub(crate) reason: &'a str,
}

/// One client call as its access-log line says it.
#[derive(Debug, Default, Serialize)]
pub(crate) struct CallLine {
    pub(crate) time: String,
    pub(crate) event: &'static str,
    /// The client key's name (`[[clients]] name`), never the key.
    pub(crate) client: Option<String>,
    /// `chat` or `embeddings`, and the API the client spoke.
    pub(crate) endpoint: &'static str,
    pub(crate) api: &'static str,
    /// The route class the call took, if any.
    pub(crate) route: Option<String>,
    /// The model the client asked for (an alias, a route class or `provider:model`).
    pub(crate) model: Option<String>,
    /// The provider and credential of the last attempt.
    pub(crate) provider: Option<String>,
    pub(crate) credential: Option<String>,
    pub(crate) attempts: u32,
    pub(crate) status: u16,
    /// The last attempt's outcome (`ok`, `server_error`, `client_closed`, ...).
    pub(crate) outcome: Option<&'static str>,
    pub(crate) latency_ms: f64,
    pub(crate) ttft_ms: Option<f64>,
    pub(crate) tokens_in: Option<u64>,
    pub(crate) tokens_out: Option<u64>,
    pub(crate) cost_usd: Option<f64>,
}

/// The access-log line of one call in progress: written when dropped (a call the
/// client abandoned is written too, with status 499). Without a log it holds nothing
/// and costs nothing.
pub(crate) struct CallLog {
    sink: Option<Arc<EventLog>>,
    line: Option<Box<CallLine>>,
    started: std::time::Instant,
}

impl CallLog {
    pub(crate) fn new(
        sink: Option<&Arc<EventLog>>,
        endpoint: &'static str,
        api: &'static str,
    ) -> CallLog {
        CallLog {
            sink: sink.cloned(),
            line: sink.map(|_| {
                Box::new(CallLine {
                    event: "call",
                    endpoint,
                    api,
                    status: 499,
                    ..Default::default()
                })
            }),
            started: std::time::Instant::now(),
        }
    }

    /// A log that writes nothing.
    pub(crate) fn none() -> CallLog {
        CallLog {
            sink: None,
            line: None,
            started: std::time::Instant::now(),
        }
    }

    /// Edits the line, when there is a log.
    pub(crate) fn with(&mut self, f: impl FnOnce(&mut CallLine)) {
        if let Some(l) = self.line.as_deref_mut() {
            f(l);
        }
    }

    /// Moves the line out (to whoever ends the call: a stream's relay), leaving
    /// this one empty.
    pub(crate) fn hand_off(&mut self) -> CallLog {
        CallLog {
            sink: self.sink.take(),
            line: self.line.take(),
            started: self.started,
        }
    }
}

impl Drop for CallLog {
    fn drop(&mut self) {
        if let (Some(sink), Some(mut line)) = (self.sink.take(), self.line.take()) {
            line.time = now_rfc3339();
            line.latency_ms = millis(self.started.elapsed());
            sink.emit_json(&line);
        }
    }
}

/// The access log's name of the API a client spoke.
pub(crate) fn api_name(front: powertune_dialect::Front) -> &'static str {
    match front {
        powertune_dialect::Front::OpenAi => "openai",
        powertune_dialect::Front::Anthropic => "anthropic",
        powertune_dialect::Front::Ollama => "ollama",
    }
}

/// `d` in milliseconds, rounded to microseconds.
pub(crate) fn millis(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

/// A breaker's state change, or a credential disabled (401/403) or enabled (reload).
#[derive(Debug, Serialize)]
pub(crate) struct BreakerLine<'a> {
    pub(crate) time: String,
    /// `breaker`, `credential_disabled` or `credential_enabled`.
    pub(crate) event: &'static str,
    pub(crate) provider: &'a str,
    pub(crate) credential: &'a str,
    pub(crate) from: &'static str,
    pub(crate) to: &'static str,
    pub(crate) consecutive_failures: u32,
    /// What caused it: the outcome of the call that changed it, `probe` or `reload`.
    pub(crate) cause: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_call_line_is_written_when_dropped_and_nothing_without_a_log() {
        let out = Shared::default();
        let log = Arc::new(EventLog::new(Box::new(out.clone()), 16).unwrap());
        {
            let mut c = CallLog::new(Some(&log), "chat", "openai");
            c.with(|l| {
                l.client = Some("web".into());
                l.status = 200;
            });
        }
        {
            let mut c = CallLog::new(None, "chat", "openai");
            c.with(|l| l.status = 200);
        }
        {
            // handed off: written once, by the new owner
            let mut c = CallLog::new(Some(&log), "chat", "anthropic");
            let moved = c.hand_off();
            drop(c);
            drop(moved);
        }
        assert!(log.flush(Duration::from_secs(5)));
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["client"], "web");
        assert_eq!(lines[0]["status"], 200);
        assert_eq!(lines[1]["status"], 499);
        assert_eq!(lines[1]["api"], "anthropic");
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        // a writer stuck until the test lets go
        struct Stuck(Mutex<std::sync::mpsc::Receiver<()>>);
        impl Write for Stuck {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                let _ = self.0.lock().unwrap().recv();
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let (release, stuck) = std::sync::mpsc::channel::<()>();
        let log = EventLog::new(Box::new(Stuck(Mutex::new(stuck))), 2).unwrap();
        let t = std::time::Instant::now();
        for i in 0..1000 {
            log.emit(format!("line {i}"));
        }
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(log.dropped() > 0, "{}", log.dropped());
        drop(release);
    }
}
