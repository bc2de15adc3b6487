//! The engine: VUs, the six executors, the live monitor. The only module (with
//! `http` and `ws`) that does I/O.

use crate::http::{ClientShared, Origin, Request, VuClient};
use crate::metrics::{Registry, RequestSample};
use crate::plan::{Body, CheckKind, DataMode, Executor, Hold, HttpStep, Plan, Stage, Step, Think};
use crate::summary::Summary;
use crate::template::{render_json, Template};
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How to run a plan.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Joined with every relative step URL (`http://127.0.0.1:8080`).
    pub base_url: String,
    /// `--env K=V` values; they win over the process environment in `{{name}}`.
    pub env: HashMap<String, String>,
    /// Show live progress on standard error (a bar on a terminal, a line every ~5 s
    /// otherwise).
    pub progress: bool,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("bad base URL `{url}`: {reason} (expected e.g. http://127.0.0.1:8080)")]
    BadUrl { url: String, reason: String },
    #[error("target unreachable at start ({url}): {reason}; no VU was started")]
    Unreachable { url: String, reason: String },
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
}

/// `scheme://host:port/path` without user name or password.
pub fn redact_url(u: &url::Url) -> String {
    let mut c = u.clone();
    let _ = c.set_username("");
    let _ = c.set_password(None);
    c.to_string()
}

pub(crate) struct Shared {
    pub plan: Plan,
    pub origin: Origin,
    pub base: url::Url,
    pub base_path: String,
    pub env: HashMap<String, String>,
    pub client: Arc<ClientShared>,
    pub reg: Registry,
    pub vus: AtomicU64,
    pub vus_max: AtomicU64,
    pub scen_vus_max: Vec<AtomicU64>,
    scen_vus: Vec<AtomicU64>,
    /// The `vus` gauge sampled by the monitor.
    pub vus_series: Mutex<crate::metrics::VusSeries>,
    abort: watch::Sender<bool>,
    abort_reason: Mutex<Option<String>>,
}

impl Shared {
    fn vu_started(&self, scen: usize) {
        let n = self.vus.fetch_add(1, Ordering::Relaxed) + 1;
        self.vus_max.fetch_max(n, Ordering::Relaxed);
        if let (Some(c), Some(m)) = (self.scen_vus.get(scen), self.scen_vus_max.get(scen)) {
            let n = c.fetch_add(1, Ordering::Relaxed) + 1;
            m.fetch_max(n, Ordering::Relaxed);
        }
    }

    fn vu_stopped(&self, scen: usize) {
        self.vus.fetch_sub(1, Ordering::Relaxed);
        if let Some(c) = self.scen_vus.get(scen) {
            c.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn abort(&self, reason: String) {
        let mut r = self.abort_reason.lock();
        if r.is_none() {
            *r = Some(reason);
        }
        let _ = self.abort.send(true);
    }
}

/// Completes when `rx` turns true (or its sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await.map(|_| ());
}

/// Runs `plan` against `opts.base_url` and returns the summary. The base URL is
/// checked and its host must accept a TCP connection before any VU starts.
pub async fn run(plan: &Plan, opts: RunOptions) -> Result<Summary, RunError> {
    let base = url::Url::parse(&opts.base_url).map_err(|e| RunError::BadUrl {
        url: opts.base_url.clone(),
        reason: e.to_string(),
    })?;
    let shown = redact_url(&base);
    let origin = Origin::from_url(&base).map_err(|reason| RunError::BadUrl {
        url: shown.clone(),
        reason,
    })?;
    let client = ClientShared::new(
        plan.options.http,
        plan.options.connect_timeout,
        plan.options.request_timeout,
        &crate::http::TlsTrust {
            ca_cert: plan.options.ca_cert.clone(),
            insecure: plan.options.insecure_skip_tls_verify,
        },
    )
    .map_err(RunError::Setup)?;
    crate::http::reachable(&origin, plan.options.connect_timeout)
        .await
        .map_err(|reason| RunError::Unreachable {
            url: shown.clone(),
            reason,
        })?;
    let mut env: HashMap<String, String> = std::env::vars().collect();
    env.extend(opts.env.clone());
    let n = plan.scenarios.len();
    let (abort_tx, _) = watch::channel(false);
    let shared = Arc::new(Shared {
        plan: plan.clone(),
        origin,
        base_path: base.path().trim_end_matches('/').to_string(),
        base: base.clone(),
        env,
        client: Arc::new(client),
        reg: Registry::new(plan.n_series, n, plan.n_checks),
        vus: AtomicU64::new(0),
        vus_max: AtomicU64::new(0),
        scen_vus_max: (0..n).map(|_| AtomicU64::new(0)).collect(),
        scen_vus: (0..n).map(|_| AtomicU64::new(0)).collect(),
        vus_series: Mutex::new(crate::metrics::VusSeries::new(1.0)),
        abort: abort_tx,
        abort_reason: Mutex::new(None),
    });
    let started_at = chrono::Utc::now();
    let t0 = Instant::now();
    let mut scenarios = JoinSet::new();
    for i in 0..n {
        scenarios.spawn(run_scenario(shared.clone(), i));
    }
    let (done_tx, done_rx) = watch::channel(false);
    let monitor = tokio::spawn(crate::progress::monitor(
        shared.clone(),
        opts.progress,
        done_rx,
        t0,
    ));
    while scenarios.join_next().await.is_some() {}
    let _ = done_tx.send(true);
    let _ = monitor.await;
    let elapsed = t0.elapsed();
    let snap = shared.reg.snapshot();
    let aborted = shared.abort_reason.lock().clone();
    let scen_vus: Vec<u64> = shared
        .scen_vus_max
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .collect();
    let mut summary = Summary::build(
        plan,
        &snap,
        elapsed,
        &started_at,
        &shown,
        shared.vus_max.load(Ordering::Relaxed),
        &scen_vus,
        aborted,
    );
    summary.vus = Some(crate::summary::VusSummary::from_series(
        &shared.vus_series.lock(),
    ));
    Ok(summary)
}

async fn run_scenario(shared: Arc<Shared>, idx: usize) {
    let Some(sc) = shared.plan.scenarios.get(idx).cloned() else {
        return;
    };
    let mut abort = shared.abort.subscribe();
    if !sc.start_time.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(sc.start_time) => {}
            _ = stopped(&mut abort) => return,
        }
    }
    match &sc.executor {
        Executor::ConstantVus { vus, duration } => {
            closed(
                &shared,
                idx,
                *vus,
                Budget::Unlimited,
                Some(*duration),
                sc.graceful_stop,
            )
            .await
        }
        Executor::PerVuIterations {
            vus,
            iterations,
            max_duration,
        } => {
            closed(
                &shared,
                idx,
                *vus,
                Budget::PerVu(*iterations),
                Some(*max_duration),
                sc.graceful_stop,
            )
            .await
        }
        Executor::SharedIterations {
            vus,
            iterations,
            max_duration,
        } => {
            let counter = Arc::new(AtomicU64::new(0));
            closed(
                &shared,
                idx,
                *vus,
                Budget::Shared(counter, *iterations),
                Some(*max_duration),
                sc.graceful_stop,
            )
            .await
        }
        Executor::RampingVus { start_vus, stages } => {
            ramping(&shared, idx, *start_vus, stages, sc.graceful_stop).await
        }
        Executor::ConstantArrivalRate {
            rate,
            time_unit,
            duration,
            pre_allocated_vus,
            max_vus,
            max_backlog,
        } => {
            let per_sec = rate / time_unit.as_secs_f64();
            let plan = RatePlan {
                start: per_sec,
                stages: vec![Stage {
                    duration: *duration,
                    target: per_sec,
                }],
            };
            arrival(
                &shared,
                idx,
                plan,
                *pre_allocated_vus,
                *max_vus,
                *max_backlog,
                sc.graceful_stop,
            )
            .await
        }
        Executor::RampingArrivalRate {
            start_rate,
            time_unit,
            stages,
            pre_allocated_vus,
            max_vus,
            max_backlog,
        } => {
            let unit = time_unit.as_secs_f64();
            let plan = RatePlan {
                start: start_rate / unit,
                stages: stages
                    .iter()
                    .map(|s| Stage {
                        duration: s.duration,
                        target: s.target / unit,
                    })
                    .collect(),
            };
            arrival(
                &shared,
                idx,
                plan,
                *pre_allocated_vus,
                *max_vus,
                *max_backlog,
                sc.graceful_stop,
            )
            .await
        }
    }
}

#[derive(Clone)]
enum Budget {
    Unlimited,
    PerVu(u64),
    Shared(Arc<AtomicU64>, u64),
}

/// Waits for `set` up to `grace`, then aborts whatever still runs; an abort of the
/// whole run ends the wait at once.
async fn wind_down(shared: &Shared, set: &mut JoinSet<()>, grace: Duration) {
    let mut abort = shared.abort.subscribe();
    let all = async { while set.join_next().await.is_some() {} };
    tokio::select! {
        _ = all => {}
        _ = tokio::time::sleep(grace) => {}
        _ = stopped(&mut abort) => {}
    }
    set.abort_all();
    while set.join_next().await.is_some() {}
}

async fn closed(
    shared: &Arc<Shared>,
    idx: usize,
    vus: u32,
    budget: Budget,
    limit: Option<Duration>,
    grace: Duration,
) {
    let (tx, rx) = watch::channel(false);
    let mut set = JoinSet::new();
    for id in 0..vus {
        set.spawn(closed_vu(
            shared.clone(),
            idx,
            id as u64,
            rx.clone(),
            budget.clone(),
        ));
    }
    let mut abort = shared.abort.subscribe();
    {
        let all = async { while set.join_next().await.is_some() {} };
        let limit = limit.unwrap_or(Duration::from_secs(365 * 24 * 3600));
        tokio::select! {
            _ = all => {}
            _ = tokio::time::sleep(limit) => {}
            _ = stopped(&mut abort) => {}
        }
    }
    let _ = tx.send(true);
    wind_down(shared, &mut set, grace).await;
}

async fn closed_vu(
    shared: Arc<Shared>,
    idx: usize,
    id: u64,
    stop: watch::Receiver<bool>,
    budget: Budget,
) {
    shared.vu_started(idx);
    let mut vu = Vu::new(shared.clone(), idx, id);
    vu.run_setup(&stop).await;
    let mut done = 0u64;
    loop {
        if *stop.borrow() {
            break;
        }
        match &budget {
            Budget::Unlimited => {}
            Budget::PerVu(n) => {
                if done >= *n {
                    break;
                }
            }
            Budget::Shared(c, n) => {
                if c.fetch_add(1, Ordering::Relaxed) >= *n {
                    break;
                }
            }
        }
        vu.iteration(Duration::ZERO, &stop).await;
        done += 1;
        // Yield now and then so a VU whose requests all fail fast cannot starve the
        // runtime.
        if done % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
    vu.client.close();
    shared.vu_stopped(idx);
}

/// The value of a piecewise-linear stage plan at `t`.
pub(crate) fn stage_value(start: f64, stages: &[Stage], t: Duration) -> f64 {
    let mut from = start;
    let mut at = Duration::ZERO;
    for s in stages {
        if t < at + s.duration {
            let frac = (t - at).as_secs_f64() / s.duration.as_secs_f64().max(1e-9);
            return from + (s.target - from) * frac;
        }
        at += s.duration;
        from = s.target;
    }
    from
}

async fn ramping(
    shared: &Arc<Shared>,
    idx: usize,
    start_vus: u32,
    stages: &[Stage],
    grace: Duration,
) {
    let total: Duration = stages.iter().map(|s| s.duration).sum();
    let t0 = Instant::now();
    let mut set = JoinSet::new();
    let mut active: Vec<watch::Sender<bool>> = Vec::new();
    let mut next_id = 0u64;
    let mut abort = shared.abort.subscribe();
    loop {
        let el = t0.elapsed();
        if el >= total || *abort.borrow() {
            break;
        }
        let target = stage_value(start_vus as f64, stages, el).round().max(0.0) as usize;
        while active.len() < target {
            let (tx, rx) = watch::channel(false);
            set.spawn(closed_vu(
                shared.clone(),
                idx,
                next_id,
                rx,
                Budget::Unlimited,
            ));
            next_id += 1;
            active.push(tx);
        }
        while active.len() > target {
            if let Some(tx) = active.pop() {
                let _ = tx.send(true);
            }
        }
        while set.try_join_next().is_some() {}
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = stopped(&mut abort) => break,
        }
    }
    for tx in &active {
        let _ = tx.send(true);
    }
    wind_down(shared, &mut set, grace).await;
    drop(active);
}

/// Arrivals per second over time.
struct RatePlan {
    start: f64,
    stages: Vec<Stage>,
}

/// The scheduled start of each iteration of an open model, as offsets from the
/// scenario's start: arrival k comes when the integral of the (piecewise-linear) rate
/// reaches k, so slow ramps are as exact as constant rates.
struct Arrivals {
    plan: RatePlan,
    /// Next arrival's index.
    k: f64,
    stage: usize,
    /// Start time (s) and cumulative arrivals at the start of `stage`.
    stage_t: f64,
    stage_n: f64,
}

impl Arrivals {
    fn new(plan: RatePlan) -> Arrivals {
        Arrivals {
            plan,
            k: 0.0,
            stage: 0,
            stage_t: 0.0,
            stage_n: 0.0,
        }
    }
}

impl Iterator for Arrivals {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        loop {
            let st = self.plan.stages.get(self.stage)?;
            let r0 = if self.stage == 0 {
                self.plan.start
            } else {
                self.plan.stages[self.stage - 1].target
            };
            let r1 = st.target;
            let d = st.duration.as_secs_f64();
            let in_stage = (r0 + r1) / 2.0 * d;
            let need = self.k - self.stage_n;
            if d > 0.0 && need < in_stage {
                // N(x) = r0·x + (r1 − r0)/(2d)·x² = need, the stable root.
                let a = (r1 - r0) / (2.0 * d);
                let disc = (r0 * r0 + 4.0 * a * need).max(0.0);
                let denom = r0 + disc.sqrt();
                let x = if need <= 0.0 {
                    0.0
                } else if denom > 0.0 {
                    2.0 * need / denom
                } else {
                    d
                };
                if x < d {
                    self.k += 1.0;
                    return Some(Duration::from_secs_f64(self.stage_t + x));
                }
            }
            self.stage_n += in_stage;
            self.stage_t += d;
            self.stage += 1;
        }
    }
}

struct Pool {
    queue: Mutex<VecDeque<Instant>>,
    notify: Notify,
    idle: AtomicU64,
    starting: AtomicU64,
}

async fn arrival(
    shared: &Arc<Shared>,
    idx: usize,
    plan: RatePlan,
    pre: u32,
    max_vus: u32,
    backlog: u64,
    grace: Duration,
) {
    let pool = Arc::new(Pool {
        queue: Mutex::new(VecDeque::new()),
        notify: Notify::new(),
        idle: AtomicU64::new(0),
        starting: AtomicU64::new(0),
    });
    let (tx, rx) = watch::channel(false);
    let mut set = JoinSet::new();
    let mut spawned = 0u64;
    let spawn = |set: &mut JoinSet<()>, spawned: &mut u64| {
        pool.starting.fetch_add(1, Ordering::Relaxed);
        set.spawn(arrival_vu(
            shared.clone(),
            idx,
            *spawned,
            pool.clone(),
            rx.clone(),
        ));
        *spawned += 1;
    };
    for _ in 0..pre {
        spawn(&mut set, &mut spawned);
    }
    let arrivals = Arrivals::new(plan);
    let t0 = Instant::now();
    let mut abort = shared.abort.subscribe();
    for offset in arrivals {
        let at = t0 + offset;
        tokio::select! {
            _ = tokio::time::sleep_until(at) => {}
            _ = stopped(&mut abort) => break,
        }
        let idle = pool.idle.load(Ordering::Relaxed);
        let starting = pool.starting.load(Ordering::Relaxed);
        let queued = pool.queue.lock().len() as u64;
        if idle + starting <= queued && spawned < max_vus as u64 {
            spawn(&mut set, &mut spawned);
        }
        let capacity = idle + pool.starting.load(Ordering::Relaxed) + backlog;
        let accepted = {
            let mut q = pool.queue.lock();
            if (q.len() as u64) < capacity {
                q.push_back(at);
                true
            } else {
                false
            }
        };
        if accepted {
            pool.notify.notify_one();
        } else {
            shared.reg.scenario(idx, |m| m.dropped += 1);
        }
        while set.try_join_next().is_some() {}
    }
    let _ = tx.send(true);
    pool.notify.notify_waiters();
    wind_down(shared, &mut set, grace).await;
    let left = pool.queue.lock().len() as u64;
    if left > 0 {
        shared.reg.scenario(idx, |m| m.dropped += left);
    }
}

async fn arrival_vu(
    shared: Arc<Shared>,
    idx: usize,
    id: u64,
    pool: Arc<Pool>,
    mut stop: watch::Receiver<bool>,
) {
    shared.vu_started(idx);
    let mut vu = Vu::new(shared.clone(), idx, id);
    vu.run_setup(&stop).await;
    pool.starting.fetch_sub(1, Ordering::Relaxed);
    loop {
        // Iterations already accepted run even after the schedule ends (within the
        // graceful stop); an empty queue and a stop signal end the VU.
        let item = pool.queue.lock().pop_front();
        match item {
            Some(intended) => {
                let lag = Instant::now().saturating_duration_since(intended);
                vu.iteration(lag, &stop).await;
            }
            None if *stop.borrow() => break,
            None => {
                pool.idle.fetch_add(1, Ordering::Relaxed);
                let stop_now = tokio::select! {
                    _ = pool.notify.notified() => false,
                    _ = stopped(&mut stop) => true,
                };
                pool.idle.fetch_sub(1, Ordering::Relaxed);
                if stop_now {
                    break;
                }
            }
        }
    }
    vu.client.close();
    shared.vu_stopped(idx);
}

/// One virtual user: its connection and variables.
struct Vu {
    shared: Arc<Shared>,
    scen: usize,
    id: u64,
    client: VuClient,
    vars: HashMap<String, String>,
    iter: u64,
}

impl Vu {
    fn new(shared: Arc<Shared>, scen: usize, id: u64) -> Vu {
        let client = VuClient::new(shared.client.clone());
        let mut vars = HashMap::new();
        vars.insert("__VU".to_string(), (id + 1).to_string());
        if let Some(d) = shared
            .plan
            .scenarios
            .get(scen)
            .and_then(|s| s.data.as_ref())
        {
            if d.mode == DataMode::PerVu {
                let row = &d.rows[(id as usize) % d.rows.len()];
                for (c, v) in d.columns.iter().zip(row) {
                    vars.insert(c.clone(), v.clone());
                }
            }
        }
        Vu {
            shared,
            scen,
            id,
            client,
            vars,
            iter: 0,
        }
    }

    async fn run_setup(&mut self, stop: &watch::Receiver<bool>) {
        let shared = self.shared.clone();
        let Some(sc) = shared.plan.scenarios.get(self.scen) else {
            return;
        };
        for step in &sc.setup {
            self.step(step, Duration::ZERO, stop).await;
        }
    }

    async fn iteration(&mut self, lag: Duration, stop: &watch::Receiver<bool>) {
        let shared = self.shared.clone();
        let Some(sc) = shared.plan.scenarios.get(self.scen) else {
            return;
        };
        self.vars
            .insert("__ITER".to_string(), self.iter.to_string());
        if let Some(d) = &sc.data {
            if d.mode == DataMode::PerIteration {
                let n = (self.id.wrapping_mul(7919).wrapping_add(self.iter)) as usize;
                let row = &d.rows[n % d.rows.len()];
                for (c, v) in d.columns.iter().zip(row) {
                    self.vars.insert(c.clone(), v.clone());
                }
            }
        }
        self.iter += 1;
        let t0 = Instant::now();
        for step in &sc.steps {
            self.step(step, lag, stop).await;
        }
        let el = t0.elapsed();
        if shared.plan.options.no_vu_connection_reuse {
            self.client.close();
        }
        shared.reg.scenario(self.scen, |m| {
            m.iterations += 1;
            m.iteration_duration.record(el);
        });
    }

    async fn step(&mut self, step: &Step, lag: Duration, stop: &watch::Receiver<bool>) {
        match step {
            // Boxed: a sleeping VU then holds a small future, not the request's.
            Step::Http(h) => Box::pin(self.http(h, lag)).await,
            Step::Think(t) => {
                let d = match *t {
                    Think::Fixed(d) => d,
                    Think::Range(a, b) => {
                        let span = (b - a).as_micros() as u64;
                        a + Duration::from_micros(if span == 0 {
                            0
                        } else {
                            rand::random::<u64>() % span
                        })
                    }
                };
                if self.shared.plan.options.no_vu_connection_reuse {
                    // No connection is held while the VU sleeps.
                    self.client.close();
                } else {
                    self.client.idle();
                }
                tokio::time::sleep(d).await;
            }
            Step::Cable(c) => {
                let Some(url) = self.ws_url(&c.url) else {
                    self.shared.reg.scenario(self.scen, |m| {
                        m.ws_sessions += 1;
                        m.ws_errors += 1;
                    });
                    return;
                };
                let headers = self.render_headers(&c.headers);
                let mut stop_rx = stop.clone();
                let hold = async move {
                    match c.hold {
                        Hold::Stage => stopped(&mut stop_rx).await,
                        Hold::For(d) => {
                            tokio::select! {
                                _ = tokio::time::sleep(d) => {}
                                _ = stopped(&mut stop_rx) => {}
                            }
                        }
                    }
                };
                let out = Box::pin(crate::ws::cable_session(
                    &self.shared.client,
                    &url,
                    &headers,
                    &c.channel,
                    hold,
                ))
                .await;
                self.record_ws(&out);
            }
            Step::Ws(w) => {
                let Some(url) = self.ws_url(&w.url) else {
                    self.shared.reg.scenario(self.scen, |m| {
                        m.ws_sessions += 1;
                        m.ws_errors += 1;
                    });
                    return;
                };
                let headers = self.render_headers(&w.headers);
                let env = &self.shared.env;
                let send: Vec<String> = w.send.iter().map(|t| t.render(&self.vars, env)).collect();
                let out = Box::pin(crate::ws::raw_session(
                    &self.shared.client,
                    &url,
                    w.subprotocol.as_deref(),
                    &headers,
                    &send,
                    w.expect.as_deref(),
                    w.timeout,
                ))
                .await;
                if let Some(c) = &w.check {
                    self.shared.reg.record_check(c.id, out.expected_seen);
                }
                self.record_ws(&out);
            }
        }
    }

    fn render_headers(&self, h: &[(String, Template)]) -> Vec<(String, String)> {
        h.iter()
            .map(|(k, t)| (k.clone(), t.render(&self.vars, &self.shared.env)))
            .collect()
    }

    fn ws_url(&self, t: &Template) -> Option<url::Url> {
        let text = t.render(&self.vars, &self.shared.env);
        if text.contains("://") {
            return url::Url::parse(&text).ok();
        }
        let mut u = self.shared.base.clone();
        let scheme = if u.scheme() == "https" { "wss" } else { "ws" };
        u.set_scheme(scheme).ok()?;
        let (path, query) = match text.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (text.clone(), None),
        };
        u.set_path(&format!("{}{}", self.shared.base_path, path));
        u.set_query(query.as_deref());
        Some(u)
    }

    fn record_ws(&self, out: &crate::ws::WsOutcome) {
        self.shared.reg.scenario(self.scen, |m| {
            m.ws_sessions += 1;
            if out.error.is_some() {
                m.ws_errors += 1;
            }
            if let Some(c) = out.connecting {
                m.ws_connecting.record(c);
            }
            if let Some(s) = out.subscribe {
                m.ws_subscribe.record(s);
            }
            if out.connecting.is_some() {
                m.ws_session.record(out.session);
            }
            m.ws_msgs_received += out.msgs_received;
            m.ws_msgs_sent += out.msgs_sent;
            m.ws_broadcasts += out.broadcasts;
        });
    }

    async fn http(&mut self, h: &HttpStep, lag: Duration) {
        let shared: &Shared = &self.shared;
        let env = &shared.env;
        let text = h.url.render(&self.vars, env);
        let parsed;
        let (origin, path): (&Origin, String) =
            if text.starts_with("http://") || text.starts_with("https://") {
                match url::Url::parse(&text)
                    .map_err(|e| e.to_string())
                    .and_then(|u| Origin::from_url(&u).map(|o| (o, u)))
                {
                    Ok((o, u)) => {
                        parsed = o;
                        let mut p = u.path().to_string();
                        if let Some(q) = u.query() {
                            p.push('?');
                            p.push_str(q);
                        }
                        (&parsed, p)
                    }
                    Err(_) => {
                        shared.reg.record_request(&RequestSample {
                            scenario: self.scen,
                            series: h.series,
                            status: None,
                            error: Some(crate::metrics::ErrorKind::Protocol),
                            failed: true,
                            timings: Default::default(),
                            lag,
                            sent: 0,
                            received: 0,
                            proto: None,
                        });
                        return;
                    }
                }
            } else if text.starts_with('/') {
                (&shared.origin, format!("{}{}", shared.base_path, text))
            } else {
                (&shared.origin, format!("{}/{}", shared.base_path, text))
            };
        let headers: Vec<(hyper::header::HeaderName, String)> = h
            .headers
            .iter()
            .map(|(k, t)| (k.clone(), t.render(&self.vars, env)))
            .collect();
        let (body, ct) = match &h.body {
            Body::None => (Bytes::new(), None),
            Body::Json(v) => (
                Bytes::from(
                    serde_json::to_vec(&render_json(v, &self.vars, env)).unwrap_or_default(),
                ),
                Some("application/json"),
            ),
            Body::Text(t) => (Bytes::from(t.render(&self.vars, env)), None),
        };
        let keep_body = !h.extract.is_empty()
            || h.checks.iter().any(|c| {
                matches!(
                    c.kind,
                    CheckKind::BodyContains(_) | CheckKind::JsonEquals(..)
                )
            });
        let resp = self
            .client
            .send(Request {
                method: h.method.clone(),
                origin,
                path: &path,
                headers: &headers,
                body,
                content_type: ct,
                keep_body,
            })
            .await;
        let failed = resp.error.is_some() || !matches!(resp.status, Some(200..=399));
        shared.reg.record_request(&RequestSample {
            scenario: self.scen,
            series: h.series,
            status: resp.status,
            error: resp.error.as_ref().map(|e| e.0),
            failed,
            timings: resp.timings,
            lag,
            sent: resp.sent,
            received: resp.received,
            proto: resp.proto,
        });
        let json = if keep_body && resp.status.is_some() {
            serde_json::from_slice::<serde_json::Value>(&resp.body).ok()
        } else {
            None
        };
        for c in &h.checks {
            let ok = match &c.kind {
                CheckKind::Status(list) => resp.status.is_some_and(|s| list.contains(&s)),
                CheckKind::BodyContains(t) => {
                    resp.status.is_some() && memfind(&resp.body, t.as_bytes())
                }
                CheckKind::JsonEquals(ptr, want) => json
                    .as_ref()
                    .and_then(|j| j.pointer(ptr))
                    .is_some_and(|v| v == want),
                CheckKind::DurationBelow(d) => resp.status.is_some() && resp.timings.duration < *d,
            };
            shared.reg.record_check(c.id, ok);
        }
        if let Some(j) = &json {
            for (var, ptr) in &h.extract {
                if let Some(v) = j.pointer(ptr) {
                    let s = match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    self.vars.insert(var.clone(), s);
                }
            }
        }
    }
}

fn memfind(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_interpolate_like_k6() {
        let st = [
            Stage {
                duration: Duration::from_secs(60),
                target: 50.0,
            },
            Stage {
                duration: Duration::from_secs(300),
                target: 50.0,
            },
            Stage {
                duration: Duration::from_secs(60),
                target: 0.0,
            },
        ];
        assert_eq!(stage_value(0.0, &st, Duration::ZERO), 0.0);
        assert_eq!(stage_value(0.0, &st, Duration::from_secs(30)), 25.0);
        assert_eq!(stage_value(0.0, &st, Duration::from_secs(200)), 50.0);
        assert_eq!(stage_value(0.0, &st, Duration::from_secs(390)), 25.0);
        assert_eq!(stage_value(0.0, &st, Duration::from_secs(999)), 0.0);
    }

    #[test]
    fn arrivals_follow_the_rate() {
        let constant = RatePlan {
            start: 100.0,
            stages: vec![Stage {
                duration: Duration::from_secs(2),
                target: 100.0,
            }],
        };
        let v: Vec<Duration> = Arrivals::new(constant).collect();
        assert_eq!(v.len(), 200);
        assert_eq!(v[1], Duration::from_millis(10));
        // 0 → 100/s over 2 s: the area under the ramp is 100 arrivals.
        let ramp = RatePlan {
            start: 0.0,
            stages: vec![Stage {
                duration: Duration::from_secs(2),
                target: 100.0,
            }],
        };
        let n = Arrivals::new(ramp).count();
        assert!((95..=105).contains(&n), "{n}");
        // Up, hold, down: 50 + 100 + 50, in order.
        let hill = RatePlan {
            start: 0.0,
            stages: vec![
                Stage {
                    duration: Duration::from_secs(1),
                    target: 100.0,
                },
                Stage {
                    duration: Duration::from_secs(1),
                    target: 100.0,
                },
                Stage {
                    duration: Duration::from_secs(1),
                    target: 0.0,
                },
            ],
        };
        let v: Vec<Duration> = Arrivals::new(hill).collect();
        assert!((199..=201).contains(&v.len()), "{}", v.len());
        assert!(v.windows(2).all(|w| w[0] <= w[1]));
        assert!(v.last().unwrap() < &Duration::from_secs(3));
        // A stage at 0 produces nothing, and the iterator ends.
        let idle = RatePlan {
            start: 0.0,
            stages: vec![Stage {
                duration: Duration::from_secs(1),
                target: 0.0,
            }],
        };
        assert_eq!(Arrivals::new(idle).count(), 0);
    }

    #[test]
    fn redacts_passwords() {
        let u = url::Url::parse("https://bob:secret@example.com/x").unwrap();
        let r = redact_url(&u);
        assert!(!r.contains("secret") && !r.contains("bob"), "{r}");
    }
}
