//! The state every task of one run shares: the plan, the client settings, the metric
//! shards, the VU counters and the abort signal.

use crate::http::{ClientShared, Origin};
use crate::metrics::{Registry, VusSeries};
use crate::plan::Plan;
use crate::timeline::Timeline;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub(crate) struct Shared {
    pub plan: Plan,
    pub origin: Origin,
    pub base: url::Url,
    pub base_path: String,
    /// `Authorization: Basic` from the base URL's user info, for relative steps.
    pub base_auth: Option<String>,
    pub env: HashMap<String, String>,
    pub client: Arc<ClientShared>,
    pub reg: Registry,
    pub vus: AtomicU64,
    pub vus_max: AtomicU64,
    pub scen_vus_max: Vec<AtomicU64>,
    scen_vus: Vec<AtomicU64>,
    /// The `vus` gauge sampled by the monitor.
    pub vus_series: Mutex<VusSeries>,
    /// The run over time, filled by the monitor once a second.
    pub timeline: Mutex<Timeline>,
    /// Per scenario: seconds since the run started when its executor started and
    /// ended.
    pub spans: Mutex<Vec<(Option<f64>, Option<f64>)>>,
    /// True once every VU must stop at once (an abort, or a second signal).
    abort: watch::Sender<bool>,
    /// True once every executor must end its schedule (an abort, or a first signal);
    /// VUs then get their scenario's graceful stop.
    stop: watch::Sender<bool>,
    abort_reason: Mutex<Option<String>>,
    interrupted: std::sync::atomic::AtomicBool,
}

impl Shared {
    pub fn new(
        plan: Plan,
        origin: Origin,
        base: url::Url,
        env: HashMap<String, String>,
        client: ClientShared,
    ) -> Shared {
        let n = plan.scenarios.len();
        let (abort, _) = watch::channel(false);
        let (stop, _) = watch::channel(false);
        Shared {
            reg: Registry::new(plan.n_series, n, plan.n_checks),
            timeline: Mutex::new(Timeline::new(&plan, 1.0)),
            spans: Mutex::new(vec![(None, None); n]),
            plan,
            origin,
            base_path: base.path().trim_end_matches('/').to_string(),
            base_auth: crate::http::basic_auth(&base),
            base,
            env,
            client: Arc::new(client),
            vus: AtomicU64::new(0),
            vus_max: AtomicU64::new(0),
            scen_vus_max: (0..n).map(|_| AtomicU64::new(0)).collect(),
            scen_vus: (0..n).map(|_| AtomicU64::new(0)).collect(),
            vus_series: Mutex::new(VusSeries::new(1.0)),
            abort,
            stop,
            abort_reason: Mutex::new(None),
            interrupted: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn vu_started(&self, scen: usize) {
        let n = self.vus.fetch_add(1, Ordering::Relaxed) + 1;
        self.vus_max.fetch_max(n, Ordering::Relaxed);
        if let (Some(c), Some(m)) = (self.scen_vus.get(scen), self.scen_vus_max.get(scen)) {
            let n = c.fetch_add(1, Ordering::Relaxed) + 1;
            m.fetch_max(n, Ordering::Relaxed);
        }
    }

    /// The `vus` gauge of each scenario now.
    pub fn scenario_vus(&self) -> Vec<u64> {
        self.scen_vus
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .collect()
    }

    /// Notes when scenario `idx`'s executor started (`end` false) or ended.
    pub fn scenario_span(&self, idx: usize, at_s: f64, end: bool) {
        if let Some(s) = self.spans.lock().get_mut(idx) {
            if end {
                s.1 = Some(at_s);
            } else {
                s.0 = Some(at_s);
            }
        }
    }

    pub fn vu_stopped(&self, scen: usize) {
        self.vus.fetch_sub(1, Ordering::Relaxed);
        if let Some(c) = self.scen_vus.get(scen) {
            c.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Stops the whole run; the first reason given is kept.
    pub fn abort(&self, reason: String) {
        let mut r = self.abort_reason.lock();
        if r.is_none() {
            *r = Some(reason);
        }
        let _ = self.stop.send(true);
        let _ = self.abort.send(true);
    }

    /// A first signal: every executor ends its schedule now and its VUs get the
    /// scenario's graceful stop to finish their iteration.
    pub fn interrupt(&self) {
        self.interrupted.store(true, Ordering::Relaxed);
        let _ = self.stop.send(true);
    }

    /// A second signal: every VU stops at once (requests in flight are counted as
    /// interrupted).
    pub fn halt(&self) {
        self.interrupted.store(true, Ordering::Relaxed);
        let _ = self.stop.send(true);
        let _ = self.abort.send(true);
    }

    /// Whether a signal cut the run short.
    pub fn was_interrupted(&self) -> bool {
        self.interrupted.load(Ordering::Relaxed)
    }

    /// A receiver that turns true when executors must end their schedule.
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Why the run was aborted, if it was.
    pub fn abort_reason(&self) -> Option<String> {
        self.abort_reason.lock().clone()
    }

    /// A receiver that turns true when the run is aborted.
    pub fn abort_signal(&self) -> watch::Receiver<bool> {
        self.abort.subscribe()
    }
}

/// Completes when `rx` turns true (or its sender is gone).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await.map(|_| ());
}

/// Waits for `set` up to `grace`, then aborts whatever still runs; an abort of the
/// whole run ends the wait at once.
pub(crate) async fn wind_down(shared: &Shared, set: &mut JoinSet<()>, grace: Duration) {
    let mut abort = shared.abort_signal();
    let all = async { while set.join_next().await.is_some() {} };
    tokio::select! {
        _ = all => {}
        _ = tokio::time::sleep(grace) => {}
        _ = stopped(&mut abort) => {}
    }
    set.abort_all();
    while set.join_next().await.is_some() {}
}
