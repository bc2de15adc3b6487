//! The gateway's side of `[shared]` ([`crate::shared`]): the admission on a call's
//! path, outcomes queued to a background task that records them in one pipeline, and
//! each credential's local breaker kept as a mirror of the shared one (the state
//! `pick` reads, so it costs nothing to consult).

use super::gateway::Gateway;
use super::live::Live;
use crate::events::{now_rfc3339, SharedLine};
use crate::metrics::Outcome;
use crate::shared::{Decision, ModeChange, Op, Record, Reply, Shared};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::mpsc;

/// Outcomes waiting to be recorded; past this, new ones are dropped (the local mirror
/// already has them) and counted.
pub(super) const REPORT_QUEUE: usize = 4096;
/// Most outcomes in one pipeline.
const BATCH: usize = 256;

/// One outcome on its way to Redis.
pub(super) struct Report {
    live: Arc<Live>,
    provider: usize,
    cred: usize,
    op: Op,
    /// Tokens given back to the shared tpm bucket (negative: taken).
    tokens: i64,
    /// The calling client (with a shared tpm) and the tokens given back to its bucket.
    client: Option<(usize, i64)>,
}

/// What the shared admission said.
pub(super) enum Admit {
    /// Send (or: not shared now, local state decided); `client`: the client's rpm and
    /// tpm were taken by this admission.
    Go { client: bool },
    /// Not this credential now; its mirror says until when. Pick again.
    Refused,
    /// The client is over its shared tpm (`tokens`) or rpm for `wait`: its 429.
    Client { tokens: bool, wait: Duration },
}

impl Gateway {
    /// Asks the shared state whether (provider, cred), just picked on the mirror, may
    /// take a call of `tokens` (reserved on the shared tpm bucket when it goes), and
    /// with `client` whether that client may make it (its rpm taken and the tokens
    /// reserved on its tpm, in the same script call); refreshes the mirror.
    pub(super) async fn shared_admit(
        &self,
        live: &Live,
        (provider, cred): (usize, usize),
        tokens: u64,
        client: Option<usize>,
    ) -> Admit {
        let go = Admit::Go { client: false };
        let Some(shared) = self.shared.as_ref() else {
            return go;
        };
        let Some((keys, limits)) = live.shared.get(provider).and_then(|p| p.get(cred)) else {
            return go;
        };
        let tokens = i64::try_from(tokens).unwrap_or(i64::MAX);
        let client = client
            .and_then(|c| live.client_shared.get(c)?.as_ref())
            .map(|(k, l)| (k, l, tokens));
        let Some(reply) = shared.call((keys, limits), Op::Admit, tokens, client).await else {
            return go;
        };
        self.adopt(live, (provider, cred), &reply, "shared");
        match reply.decision {
            Decision::Go => Admit::Go {
                client: client.is_some(),
            },
            Decision::ClientRpmWait(wait) => Admit::Client {
                tokens: false,
                wait,
            },
            Decision::ClientTpmWait(wait) => Admit::Client { tokens: true, wait },
            // the mirror may read usable (a half-open breaker whose probe slots
            // other replicas hold): the wait keeps pick off it either way
            Decision::BreakerWait(w) | Decision::RpmWait(w) | Decision::TpmWait(w) => {
                let now = self.clock.now();
                live.selectors[provider].creds[cred].lock().shared_wait = Some(now + w);
                Admit::Refused
            }
        }
    }

    /// Queues an attempt's outcome for the shared state, when it changes anything
    /// there (a success on a clean closed breaker does not). Never waits.
    pub(super) fn shared_report(
        &self,
        live: &Arc<Live>,
        (provider, cred): (usize, usize),
        outcome: Outcome,
        retry_after: Duration,
        clean_before: bool,
        (tokens, client): (i64, Option<(usize, i64)>),
    ) {
        let Some(tx) = self.reports.as_ref() else {
            return;
        };
        if !self.shared.as_ref().is_some_and(|s| s.is_shared()) {
            return;
        }
        // the client's tokens go to its bucket when it has a shared tpm
        let client = client.filter(|(c, t)| {
            *t != 0
                && live
                    .client_shared
                    .get(*c)
                    .and_then(Option::as_ref)
                    .is_some_and(|(_, l)| l.tpm > 0)
        });
        let no_tokens = (tokens == 0 || limits_tpm(live, provider, cred) == 0) && client.is_none();
        let op = match outcome {
            Outcome::Ok if clean_before && no_tokens => return,
            Outcome::Ok => Op::Success,
            Outcome::ServerError
            | Outcome::ConnectError
            | Outcome::Timeout
            | Outcome::StreamError => Op::Failure,
            Outcome::RateLimited => Op::RateLimited(retry_after),
            // a 401/403 disables the credential on this replica only (its tokens go back)
            Outcome::AuthFailed if no_tokens => return,
            Outcome::AuthFailed => Op::Neutral,
            Outcome::ClientError | Outcome::ClientClosed => Op::Neutral,
        };
        let r = Report {
            live: live.clone(),
            provider,
            cred,
            op,
            tokens,
            client,
        };
        if tx.try_send(r).is_err() {
            if let Some(s) = self.shared.as_ref() {
                s.count_dropped();
            }
        }
    }

    /// The mirror of (provider, cred) takes the shared state.
    fn adopt(&self, live: &Live, (pi, ci): (usize, usize), reply: &Reply, cause: &'static str) {
        let now = self.clock.now();
        let (from, to, consecutive) = {
            let mut st = live.selectors[pi].creds[ci].lock();
            let from = st.breaker.phase();
            st.breaker.adopt(&reply.breaker, now);
            st.synced = Some(now);
            if let (Some(b), Some(left)) = (st.tpm.as_mut(), reply.tokens_left) {
                b.adopt(now, left);
            }
            (from, st.breaker.phase(), st.breaker.consecutive_failures())
        };
        self.log_transition(live, (pi, ci), from, to, consecutive, cause);
    }

    /// Tells of a change between shared and local state: the access log, the notice
    /// listener (the CLI's standard error).
    pub(super) fn shared_changed(&self, c: &ModeChange) {
        self.tell_change("shared", c.from.as_str(), c.to.as_str(), &c.reason);
    }

    /// Tells of exports starting to fail (`failing`, with why) or working again, as
    /// [`Gateway::shared_changed`] does (`"event": "telemetry"`).
    pub(super) fn telemetry_changed(&self, failing: bool, why: &str) {
        if failing {
            let said = format!("{why}; spans are lost until the collector answers");
            self.tell_change("telemetry", "exporting", "failing", &said);
        } else {
            let said = "the OTLP collector answers again: spans are exported";
            self.tell_change("telemetry", "failing", "exporting", said);
        }
    }

    /// One state change: a line in the access log and one to the notice listener.
    fn tell_change(&self, event: &'static str, from: &'static str, to: &'static str, said: &str) {
        if let Some(log) = self.event_log() {
            log.emit_json(&SharedLine {
                time: now_rfc3339(),
                event,
                from,
                to,
                reason: said,
            });
        }
        if let Some(n) = self.notices.get() {
            n(said);
        }
    }

    /// Starts the background task of `[shared]` (once): connects, records queued
    /// outcomes, and while on local state tries to reconnect every
    /// `shared.retry_interval`. It ends when the gateway is dropped.
    pub(super) fn start_shared(self: &Arc<Self>) {
        let (Some(shared), Some(rx)) = (self.shared.clone(), self.report_rx.lock().take()) else {
            return;
        };
        let weak = Arc::downgrade(self);
        tokio::spawn(run(weak, shared, rx));
    }
}

async fn run(gw: Weak<Gateway>, shared: Arc<Shared>, mut rx: mpsc::Receiver<Report>) {
    let interval = shared.config().retry_interval;
    let mut buf = Vec::with_capacity(BATCH);
    loop {
        if !shared.is_shared() {
            if let Err(e) = shared.connect().await {
                shared.not_reached(e);
            }
        }
        let got = tokio::select! {
            n = rx.recv_many(&mut buf, BATCH) => n,
            _ = tokio::time::sleep(interval) => 0,
        };
        let Some(g) = gw.upgrade() else { return };
        if got == 0 {
            continue;
        }
        let items: Vec<_> = buf
            .iter()
            .map(|r| {
                let (k, l) = &r.live.shared[r.provider][r.cred];
                let client = r.client.and_then(|(c, t)| {
                    let (ck, cl) = r.live.client_shared.get(c)?.as_ref()?;
                    Some((ck.clone(), *cl, t))
                });
                Record {
                    keys: k.clone(),
                    limits: *l,
                    op: r.op,
                    tokens: r.tokens,
                    client_tokens: client,
                }
            })
            .collect();
        if let Some(replies) = shared.run_batch(&items).await {
            for (r, reply) in buf.iter().zip(replies) {
                if let Some(reply) = reply {
                    g.adopt(&r.live, (r.provider, r.cred), &reply, r.op.name());
                }
            }
        }
        buf.clear();
    }
}

/// The shared tpm of (provider, cred) in `live` (0: none).
fn limits_tpm(live: &Live, provider: usize, cred: usize) -> u64 {
    live.shared
        .get(provider)
        .and_then(|p| p.get(cred))
        .map_or(0, |(_, l)| l.tpm)
}
