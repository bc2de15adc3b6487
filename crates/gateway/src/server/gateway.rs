//! The running gateway: the live config generation, the upstream clients, the clock
//! and the metrics every call records into.

use super::fleet::{Report, REPORT_QUEUE};
use super::live::{build_live, Live};
use super::source::{ConfigSource, ReloadListener};
use crate::breaker::Clock;
use crate::breaker::StateName;
use crate::config::Config;
use crate::error::GatewayError;
use crate::events::{now_rfc3339, BreakerLine, EventLog};
use crate::metrics::{label, CredentialStatus, Metrics, StatusSnapshot};
use crate::shared::{Mode, Shared, SharedView};
use crate::snapshot::SharedStatus;
use crate::upstream::PlainClient;
use parking_lot::{Mutex, RwLock};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The running gateway: config, per-credential breakers, the upstream client, metrics.
pub struct Gateway {
    pub(super) live: RwLock<Arc<Live>>,
    pub(super) source: Mutex<Option<ConfigSource>>,
    pub(super) listener: Mutex<Option<ReloadListener>>,
    pub(super) http: reqwest::Client,
    pub(super) plain: PlainClient,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) metrics: Metrics,
    pub(super) started: Instant,
    /// The access log, when one is set.
    pub(super) log: OnceLock<Arc<EventLog>>,
    /// `--allow-unauthenticated`: serve beyond loopback without client keys.
    pub(super) allow_unauthenticated: AtomicBool,
    /// `[shared]`: the Redis client, the queue of outcomes to record there, and its
    /// receiving end until the background task takes it.
    pub(super) shared: Option<Arc<Shared>>,
    pub(super) reports: Option<mpsc::Sender<Report>>,
    pub(super) report_rx: Mutex<Option<mpsc::Receiver<Report>>>,
    /// Who hears the one-line notices (shared state lost or back): the CLI's stderr.
    pub(super) notices: OnceLock<Notice>,
    /// Each target's recent latency, for `routing = "latency"` (kept across reloads).
    pub(super) latency: crate::routing::LatencyTable,
    /// Cost per route class, alias, credential, client (`[pricing]`).
    pub(super) costs: crate::pricing::CostMeter,
    /// Budget spend (`[budgets]`), kept across reloads.
    pub(super) budgets: Arc<crate::budget::Ledger>,
    /// `[telemetry]`: the call and attempt spans (read at start).
    pub(super) telemetry: crate::telemetry::Telemetry,
}

/// A one-line notice for the operator.
pub type Notice = Arc<dyn Fn(&str) + Send + Sync>;

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("cfg", &self.live.read().cfg)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Builds the gateway (no socket opens here).
    pub fn new(cfg: Config, clock: Arc<dyn Clock>) -> Result<Arc<Gateway>, GatewayError> {
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.timeouts.connect)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(512)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| GatewayError::Client(e.to_string()))?;
        let plain = PlainClient::new(cfg.timeouts.connect);
        let now = clock.now();
        let shared = cfg.shared.clone().map(Shared::new);
        let (reports, report_rx) = match shared {
            Some(_) => {
                let (tx, rx) = mpsc::channel(REPORT_QUEUE);
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let budgets = Arc::new(crate::budget::Ledger::new(shared.clone()));
        let telemetry = crate::telemetry::Telemetry::new(cfg.telemetry.as_ref())
            .map_err(GatewayError::Telemetry)?;
        let live = build_live(cfg, 1, None, now)
            .map_err(GatewayError::Client)?
            .0;
        let gw = Arc::new(Gateway {
            live: RwLock::new(Arc::new(live)),
            source: Mutex::new(None),
            listener: Mutex::new(None),
            http,
            plain,
            clock,
            metrics: Metrics::default(),
            started: Instant::now(),
            log: OnceLock::new(),
            allow_unauthenticated: AtomicBool::new(false),
            shared,
            reports,
            report_rx: Mutex::new(report_rx),
            notices: OnceLock::new(),
            latency: Default::default(),
            costs: Default::default(),
            budgets,
            telemetry,
        });
        let weak = Arc::downgrade(&gw);
        gw.telemetry.set_listener(Box::new(move |failing, why| {
            if let Some(g) = weak.upgrade() {
                g.telemetry_changed(failing, why);
            }
        }));
        if let Some(s) = gw.shared.as_ref() {
            let weak = Arc::downgrade(&gw);
            s.set_listener(Box::new(move |c| {
                if let Some(g) = weak.upgrade() {
                    g.shared_changed(c);
                }
            }));
        }
        Ok(gw)
    }

    /// Whom one-line notices go to (set once): the shared state lost or back.
    pub fn set_notice_listener(&self, n: Notice) {
        let _ = self.notices.set(n);
    }

    /// Where `[shared]` stands, when it is configured.
    pub fn shared_view(&self) -> Option<SharedView> {
        self.shared.as_ref().map(|s| s.view())
    }

    /// Writes the access log (a line per call, per breaker transition, per
    /// credential disabled or enabled) to `log`; set once, before serving.
    pub fn set_event_log(&self, log: EventLog) {
        let _ = self.log.set(Arc::new(log));
    }

    /// Waits (up to `timeout`) until the access log's queued lines are written.
    pub fn flush_event_log(&self, timeout: Duration) -> bool {
        self.log.get().is_none_or(|l| l.flush(timeout))
    }

    /// Serve beyond loopback without client keys (`--allow-unauthenticated`); a
    /// reload that removes the last key from such a gateway is refused otherwise.
    pub fn set_allow_unauthenticated(&self, allow: bool) {
        self.allow_unauthenticated.store(allow, Ordering::Relaxed);
    }

    /// Sends the spans still queued (within `[telemetry] export_timeout`) and stops
    /// their export. Blocking: call it off the async runtime's workers, after serving.
    pub fn shutdown_telemetry(&self) {
        self.telemetry.shutdown();
    }

    pub(super) fn event_log(&self) -> Option<&Arc<EventLog>> {
        self.log.get()
    }

    /// Logs a breaker state change of (provider `pi`, credential `ci`), if any.
    pub(super) fn log_transition(
        &self,
        live: &Live,
        (pi, ci): (usize, usize),
        from: StateName,
        to: StateName,
        consecutive_failures: u32,
        cause: &'static str,
    ) {
        let Some(log) = self.log.get() else { return };
        if from == to {
            return;
        }
        let event = match (from, to) {
            (_, StateName::Disabled) => "credential_disabled",
            (StateName::Disabled, _) => "credential_enabled",
            _ => "breaker",
        };
        let p = &live.cfg.providers[pi];
        log.emit_json(&BreakerLine {
            time: now_rfc3339(),
            event,
            provider: &p.name,
            credential: &p.credentials[ci].name,
            from: from.as_str(),
            to: to.as_str(),
            consecutive_failures,
            cause,
        });
    }

    pub(super) fn live(&self) -> Arc<Live> {
        self.live.read().clone()
    }

    /// The config now in force.
    pub fn config(&self) -> Arc<Config> {
        self.live.read().cfg.clone()
    }

    /// Binds `addr`; a taken port is a [`GatewayError::Bind`] naming it.
    pub async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, GatewayError> {
        TcpListener::bind(addr)
            .await
            .map_err(|source| GatewayError::Bind {
                addr: addr.to_string(),
                source,
            })
    }

    /// The `/status` snapshot.
    pub fn status(&self) -> StatusSnapshot {
        let live = self.live();
        let creds = self.credentials(&live);
        let mut s = self
            .metrics
            .snapshot(self.started.elapsed().as_secs_f64(), creds);
        s.config_generation = live.generation;
        s.shared = self.shared_view().map(|v| SharedStatus {
            mode: v.mode.as_str().to_string(),
            redis: v.redis,
            since: humantime::format_rfc3339_seconds(v.since).to_string(),
            reason: v.reason,
            fallbacks: v.fallbacks,
            round_trips: v.round_trips,
            dropped: v.dropped,
        });
        s.cost = crate::budget::cost_status(&self.costs, &self.budgets, &live.cfg);
        s
    }

    /// The `/metrics` text (Prometheus exposition format 0.0.4).
    pub fn metrics_text(&self) -> String {
        let creds = self.credentials(&self.live());
        let mut e = self.metrics.exposition(&creds);
        crate::budget::expose(&self.costs, &self.budgets, &self.live().cfg, &mut e);
        // declared always; a sample only when there is an access log
        let mut w = e.counter(
            "powertune_gateway_log_lines_dropped",
            "Access-log lines dropped because the writer could not keep up.",
        );
        if let Some(log) = self.log.get() {
            w.sample(&[], log.dropped() as f64);
        }
        // [shared]: declared always, samples only when it is configured
        let view = self.shared_view();
        let mut w = e.gauge(
            "powertune_gateway_shared_state",
            "1 for the state this replica's breakers and rpm limits are in: shared (Redis), local or connecting.",
        );
        if let Some(v) = &view {
            for m in [Mode::Shared, Mode::Local, Mode::Connecting] {
                let on = if v.mode == m { 1.0 } else { 0.0 };
                w.sample(&[("state", m.as_str())], on);
            }
        }
        let mut w = e.counter(
            "powertune_gateway_shared_fallbacks",
            "Times this replica fell back from shared to local state (Redis failed or was slow).",
        );
        if let Some(v) = &view {
            w.sample(&[], v.fallbacks as f64);
        }
        let mut w = e.counter(
            "powertune_gateway_shared_round_trips",
            "Round trips to the shared Redis (admissions and outcome pipelines).",
        );
        if let Some(v) = &view {
            w.sample(&[], v.round_trips as f64);
        }
        crate::quota::gauges(&mut e, &creds);
        let mut w = e.counter(
            "powertune_gateway_spans_dropped",
            "Trace spans dropped because the export queue ([telemetry] max_queue) was full.",
        );
        if self.telemetry.exporting() {
            w.sample(&[], self.telemetry.dropped() as f64);
        }
        let mut w = e.counter(
            "powertune_gateway_spans_export_failed",
            "Trace spans lost because their export request failed (refused, an error answer, no answer within [telemetry] export_timeout).",
        );
        if self.telemetry.exporting() {
            w.sample(&[], self.telemetry.export_failed() as f64);
        }
        e.render()
    }

    /// The breaker state of every credential of `live`.
    fn credentials(&self, live: &Live) -> Vec<CredentialStatus> {
        let now = self.clock.now();
        let mut creds = Vec::new();
        for (pi, p) in live.cfg.providers.iter().enumerate() {
            for (ci, c) in p.credentials.iter().enumerate() {
                let st = live.selectors[pi].creds[ci].lock();
                let b = &st.breaker;
                let state = b.state(now);
                let open_for = b
                    .open_until()
                    .filter(|u| *u > now)
                    .map(|u| u.duration_since(now));
                let rate_limit = b.rate_limit(now);
                let tokens_remaining = st.tpm.as_ref().map(|t| t.remaining(now));
                let (told_requests, told_tokens) = st.told.remaining(now);
                creds.push(CredentialStatus {
                    provider: label(&p.name).into_owned(),
                    credential: label(&c.name).into_owned(),
                    state: state.as_str().to_string(),
                    open_for_s: open_for.map(|d| d.as_secs_f64()),
                    open_until: open_for.map(|d| {
                        humantime::format_rfc3339_seconds(std::time::SystemTime::now() + d)
                            .to_string()
                    }),
                    retry_after_s: rate_limit.map(|r| r.asked.as_secs_f64()),
                    retry_after_capped: rate_limit.map(|r| r.capped),
                    consecutive_failures: b.consecutive_failures(),
                    trips: b.trips,
                    transitions: b.transitions,
                    weight: c.weight,
                    rpm: c.rpm,
                    tpm: c.tpm,
                    tokens_remaining,
                    tokens_used: tokens_remaining
                        .zip(c.tpm)
                        .map(|(r, t)| t.saturating_sub(r)),
                    provider_remaining_requests: told_requests,
                    provider_remaining_tokens: told_tokens,
                });
            }
        }
        creds
    }
}
