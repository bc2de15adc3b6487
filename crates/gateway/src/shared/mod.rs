//! `[shared]`: breaker state, rpm and tpm limits of every (provider, credential), and
//! the rpm and tpm of every client key that has them, kept in one Redis, so replicas
//! open a breaker after the same failures and hold a quota together. One Lua script
//! ([`SCRIPT`]) does each step atomically on the Redis server's clock: admit a call
//! (the client's rpm and tpm, breaker check, half-open probe slot, GCRA rpm limit,
//! tpm bucket reservation), or record an outcome (with the tokens the call did not
//! use, given back to the credential's and the client's buckets).
//!
//! The cost on a call's path is one round trip: the admission. Outcomes are recorded
//! off the call's path by [`Shared::run_batch`] (one pipeline for whatever queued up),
//! and a plain success on a clean breaker records nothing. Every round trip has
//! `shared.timeout`; the first one that fails or runs out puts the replica on local
//! state ([`Mode::Local`]), said once through the listener, and calls stop waiting on
//! Redis until a background reconnect (every `shared.retry_interval`) rejoins.

use crate::breaker::{OpenReason, SharedBreaker, SharedPhase};
use crate::config::{BreakerConfig, SharedConfig};
use parking_lot::Mutex;
use powertune_redis::conn::{as_array, as_int, server_error};
use powertune_redis::Conn;
use redis::Value;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

/// The script every replica runs (see its header for keys, arguments and reply).
pub const SCRIPT: &str = include_str!("breaker.lua");

/// What one script call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Admit,
    Success,
    Failure,
    /// A 429 that takes the credential out this long.
    RateLimited(Duration),
    /// Neither success nor failure: frees a half-open probe slot.
    Neutral,
}

impl Op {
    /// The script's name for it (also the cause of a breaker line it leads to).
    pub fn name(self) -> &'static str {
        match self {
            Op::Admit => "admit",
            Op::Success => "success",
            Op::Failure => "failure",
            Op::RateLimited(_) => "rate_limited",
            Op::Neutral => "neutral",
        }
    }
}

/// The two keys of one (provider, credential); a hash tag keeps both in one cluster slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredKeys {
    pub breaker: String,
    pub rpm: String,
    pub tpm: String,
}

impl CredKeys {
    pub fn new(prefix: &str, provider: &str, credential: &str) -> CredKeys {
        let base = format!("{prefix}:{{{provider}/{credential}}}");
        CredKeys {
            breaker: format!("{base}:breaker"),
            rpm: format!("{base}:rpm"),
            tpm: format!("{base}:tpm"),
        }
    }
}

/// The two keys of one client key's limits (`PREFIX:{client:NAME}:rpm` and `:tpm`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientKeys {
    pub rpm: String,
    pub tpm: String,
}

impl ClientKeys {
    pub fn new(prefix: &str, client: &str) -> ClientKeys {
        let base = format!("{prefix}:{{client:{client}}}");
        ClientKeys {
            rpm: format!("{base}:rpm"),
            tpm: format!("{base}:tpm"),
        }
    }
}

/// A client key's limits, sent with each script call that names the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// GCRA as in [`Limits`] (0: no rpm limit); a client may make `rpm` calls at once.
    pub interval_us: u64,
    pub tolerance_us: u64,
    /// Tokens per minute (0: no tpm limit).
    pub tpm: u64,
}

impl ClientLimits {
    /// `None` for a client with neither `rpm` nor `tpm`.
    pub fn new(rpm: Option<u32>, tpm: Option<u64>) -> Option<ClientLimits> {
        if rpm.is_none() && tpm.is_none() {
            return None;
        }
        let (interval_us, tolerance_us) = gcra(rpm.map(|r| (r, r)));
        Some(ClientLimits {
            interval_us,
            tolerance_us,
            tpm: tpm.unwrap_or(0),
        })
    }
}

/// The client part of one script call: whose limits, and the tokens (an admission:
/// reserved; an outcome: given back, negative: taken).
pub type ClientPart<'a> = (&'a ClientKeys, &'a ClientLimits, i64);

/// GCRA of `(rpm, burst)`: µs between calls and how many intervals early one may come.
fn gcra(rate: Option<(u32, u32)>) -> (u64, u64) {
    match rate {
        Some((rpm, burst)) => {
            let i = 60_000_000 / u64::from(rpm.max(1));
            (i, i * u64::from(burst.max(1) - 1))
        }
        None => (0, 0),
    }
}

/// The thresholds sent with each call (every replica has the same config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub failure_threshold: u32,
    pub recovery_ms: u64,
    pub half_open_probes: u32,
    /// GCRA: µs between calls (0: no rpm limit) and how many intervals early a call may come.
    pub interval_us: u64,
    pub tolerance_us: u64,
    /// Breaker keys expire this long after their last change.
    pub ttl_ms: u64,
    /// Tokens per minute (0: no tpm limit).
    pub tpm: u64,
}

impl Limits {
    pub fn new(b: &BreakerConfig, rate: Option<(u32, u32)>, tpm: Option<u64>) -> Limits {
        let (interval_us, tolerance_us) = gcra(rate);
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Limits {
            failure_threshold: b.failure_threshold,
            recovery_ms: ms(b.recovery),
            half_open_probes: b.half_open_probes,
            interval_us,
            tolerance_us,
            // outlives an open breaker; an idle credential is forgotten after 10 minutes
            ttl_ms: (2 * ms(b.recovery))
                .max(ms(b.retry_after_max).saturating_add(60_000))
                .max(600_000),
            tpm: tpm.unwrap_or(0),
        }
    }
}

/// What the shared state says to a call that wants to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Go,
    /// The breaker is open (or its probe slots taken) for this long.
    BreakerWait(Duration),
    /// The shared rpm limit lets the next call through after this long.
    RpmWait(Duration),
    /// The shared tpm bucket holds the call's tokens after this long.
    TpmWait(Duration),
    /// The calling client's shared rpm lets its next call through after this long.
    ClientRpmWait(Duration),
    /// The calling client's shared tpm bucket holds the call's tokens after this long.
    ClientTpmWait(Duration),
}

/// One script reply: the decision, the breaker as it now stands and the tokens left
/// in the shared tpm bucket (when the credential has a tpm).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub decision: Decision,
    pub breaker: SharedBreaker,
    pub tokens_left: Option<u64>,
}

impl Reply {
    fn parse(v: &Value) -> Result<Reply, String> {
        if let Some(e) = server_error(v) {
            return Err(e);
        }
        let items = as_array(v).ok_or("the script's reply is not an array")?;
        let n: Vec<i64> = items.iter().filter_map(as_int).collect();
        let [decision, wait, s, r, open_for, c, ..] = n[..] else {
            return Err(format!("the script's reply has {} numbers, not 7", n.len()));
        };
        let ms = |x: i64| Duration::from_millis(u64::try_from(x).unwrap_or(0));
        let decision = match decision {
            1 => Decision::Go,
            2 => Decision::RpmWait(ms(wait)),
            3 => Decision::TpmWait(ms(wait)),
            4 => Decision::ClientRpmWait(ms(wait)),
            5 => Decision::ClientTpmWait(ms(wait)),
            _ => Decision::BreakerWait(ms(wait)),
        };
        let phase = match s {
            1 => SharedPhase::Open {
                remaining: ms(open_for),
                reason: if r == 1 {
                    OpenReason::RateLimited
                } else {
                    OpenReason::Failures
                },
            },
            2 => SharedPhase::HalfOpen,
            _ => SharedPhase::Closed,
        };
        Ok(Reply {
            decision,
            breaker: SharedBreaker {
                phase,
                consecutive: u32::try_from(c).unwrap_or(0),
            },
            tokens_left: n.get(7).and_then(|t| u64::try_from(*t).ok()),
        })
    }
}

/// One outcome to record: the credential's keys and limits, the op, the tokens given
/// back to its bucket, and the calling client's share (its keys, limits and tokens).
#[derive(Debug, Clone)]
pub struct Record {
    pub keys: CredKeys,
    pub limits: Limits,
    pub op: Op,
    pub tokens: i64,
    pub client_tokens: Option<(ClientKeys, ClientLimits, i64)>,
}

impl Record {
    fn client(&self) -> Option<ClientPart<'_>> {
        self.client_tokens.as_ref().map(|(k, l, t)| (k, l, *t))
    }
}

/// Where this replica's breakers and limits live now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Not connected yet (local state meanwhile).
    Connecting = 0,
    Shared = 1,
    /// Redis failed or was slow: local state until it answers again.
    Local = 2,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Connecting => "connecting",
            Mode::Shared => "shared",
            Mode::Local => "local",
        }
    }
    fn from_u8(n: u8) -> Mode {
        match n {
            1 => Mode::Shared,
            2 => Mode::Local,
            _ => Mode::Connecting,
        }
    }
}

/// A change of [`Mode`], told once to the listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModeChange {
    pub from: Mode,
    pub to: Mode,
    /// Why it left shared state (the Redis error, password scrubbed), or that it is back.
    pub reason: String,
}

type Listener = Box<dyn Fn(&ModeChange) + Send + Sync>;

/// The shared state's client: one multiplexed connection, the mode, and counters.
pub struct Shared {
    cfg: SharedConfig,
    conn: Mutex<Option<Conn>>,
    mode: AtomicU8,
    /// When the mode last changed, and why it is local (if it is).
    since: Mutex<(SystemTime, Option<String>)>,
    fallbacks: AtomicU64,
    round_trips: AtomicU64,
    dropped: AtomicU64,
    sha: String,
    listener: OnceLock<Listener>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("redis", &self.cfg.url.redacted)
            .field("mode", &self.mode())
            .finish_non_exhaustive()
    }
}

/// `/status`'s view of the shared state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedView {
    pub mode: Mode,
    pub redis: String,
    pub since: SystemTime,
    pub reason: Option<String>,
    pub fallbacks: u64,
    pub round_trips: u64,
    /// Outcomes not recorded because their queue was full.
    pub dropped: u64,
}

impl Shared {
    /// The client for `cfg`; no socket opens here ([`Shared::connect`] does).
    pub fn new(cfg: SharedConfig) -> Arc<Shared> {
        let sha = redis::Script::new(SCRIPT).get_hash().to_string();
        Arc::new(Shared {
            cfg,
            conn: Mutex::new(None),
            mode: AtomicU8::new(Mode::Connecting as u8),
            since: Mutex::new((SystemTime::now(), None)),
            fallbacks: AtomicU64::new(0),
            round_trips: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            sha,
            listener: OnceLock::new(),
        })
    }

    pub fn config(&self) -> &SharedConfig {
        &self.cfg
    }

    /// Who hears of each mode change (set once).
    pub fn set_listener(&self, l: Listener) {
        let _ = self.listener.set(l);
    }

    pub fn mode(&self) -> Mode {
        Mode::from_u8(self.mode.load(Ordering::Acquire))
    }

    pub fn is_shared(&self) -> bool {
        self.mode() == Mode::Shared
    }

    pub fn view(&self) -> SharedView {
        let (since, reason) = self.since.lock().clone();
        SharedView {
            mode: self.mode(),
            redis: self.cfg.url.redacted.clone(),
            since,
            reason,
            fallbacks: self.fallbacks.load(Ordering::Relaxed),
            round_trips: self.round_trips.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    fn set_mode(&self, to: Mode, reason: Option<String>, said: String) {
        let from = Mode::from_u8(self.mode.swap(to as u8, Ordering::AcqRel));
        if from != to {
            self.changed(from, to, reason, said);
        }
    }

    fn changed(&self, from: Mode, to: Mode, reason: Option<String>, said: String) {
        *self.since.lock() = (SystemTime::now(), reason);
        if let Some(l) = self.listener.get() {
            l(&ModeChange {
                from,
                to,
                reason: said,
            });
        }
    }

    /// From `from` to local state, told once: whether this caller made the change.
    fn to_local(&self, from: Mode, why: String) -> bool {
        let was = self.mode.compare_exchange(
            from as u8,
            Mode::Local as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        if was.is_err() {
            return false;
        }
        let again = if from == Mode::Shared { " again" } else { "" };
        let said = format!(
            "{why}; breakers and rpm limits are this replica's own until it answers{again}"
        );
        self.changed(from, Mode::Local, Some(why), said);
        true
    }

    /// Leaves shared state (first caller only): drops the connection, counts it, tells.
    fn fall_back(&self, why: String) {
        if self.to_local(Mode::Shared, why) {
            *self.conn.lock() = None;
            self.fallbacks.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// An outcome was not recorded (its queue was full).
    pub fn count_dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// The first connection failed: local state until it succeeds (told once).
    pub fn not_reached(&self, why: String) {
        self.to_local(Mode::Connecting, why);
    }

    /// Opens the connection and loads the script; on success the replica is shared.
    pub async fn connect(&self) -> Result<(), String> {
        let wait = self.cfg.timeout.max(Duration::from_secs(2));
        let open = async {
            let mut conn = Conn::open(&self.cfg.url, wait)
                .await
                .map_err(|e| e.to_string())?;
            let mut load = redis::cmd("SCRIPT");
            load.arg("LOAD").arg(SCRIPT);
            let _: String = conn
                .query(load, "SCRIPT LOAD")
                .await
                .map_err(|e| e.to_string())?;
            Ok::<Conn, String>(conn)
        };
        let conn = tokio::time::timeout(wait, open)
            .await
            .map_err(|_| format!("{}: no answer in {wait:?}", self.cfg.url.redacted))??;
        *self.conn.lock() = Some(conn);
        let back = self.mode() == Mode::Local;
        let said = if back {
            format!(
                "{} answers again: breakers and rpm limits are shared again",
                self.cfg.url.redacted
            )
        } else {
            format!(
                "breakers and rpm limits are shared through {}",
                self.cfg.url.redacted
            )
        };
        self.set_mode(Mode::Shared, None, said);
        Ok(())
    }

    /// The script call of `op`; `tokens` is what an admission reserves, or what an
    /// outcome gives back to the tpm bucket (negative: takes); `client`, the calling
    /// client's limits and tokens, when the call takes or corrects them.
    fn eval(
        &self,
        (keys, limits): (&CredKeys, &Limits),
        op: Op,
        tokens: i64,
        client: Option<ClientPart<'_>>,
        sha: bool,
    ) -> redis::Cmd {
        let mut c = if sha {
            let mut c = redis::cmd("EVALSHA");
            c.arg(&self.sha);
            c
        } else {
            let mut c = redis::cmd("EVAL");
            c.arg(SCRIPT);
            c
        };
        let wait_ms = match op {
            Op::RateLimited(d) => u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            _ => 0,
        };
        c.arg(if client.is_some() { 5 } else { 3 })
            .arg(&keys.breaker)
            .arg(&keys.rpm)
            .arg(&keys.tpm);
        if let Some((k, _, _)) = client {
            c.arg(&k.rpm).arg(&k.tpm);
        }
        c.arg(op.name())
            .arg(limits.failure_threshold)
            .arg(limits.recovery_ms)
            .arg(limits.half_open_probes)
            .arg(limits.interval_us)
            .arg(limits.tolerance_us)
            .arg(limits.ttl_ms)
            .arg(wait_ms)
            .arg(limits.tpm)
            .arg(tokens);
        if let Some((_, l, t)) = client {
            c.arg(l.interval_us).arg(l.tolerance_us).arg(l.tpm).arg(t);
        }
        c
    }

    fn connection(&self) -> Option<Conn> {
        if !self.is_shared() {
            return None;
        }
        self.conn.lock().clone()
    }

    /// One script call within `shared.timeout`; `None` when not shared, or when it
    /// failed (then the replica is on local state from now on).
    pub async fn call(
        &self,
        cred: (&CredKeys, &Limits),
        op: Op,
        tokens: i64,
        client: Option<ClientPart<'_>>,
    ) -> Option<Reply> {
        let mut conn = self.connection()?;
        let run = async {
            let v: Value = match conn
                .query(self.eval(cred, op, tokens, client, true), "EVALSHA")
                .await
            {
                Err(e) if e.to_string().contains("NOSCRIPT") => conn
                    .query(self.eval(cred, op, tokens, client, false), "EVAL")
                    .await
                    .map_err(|e| e.to_string())?,
                other => other.map_err(|e| e.to_string())?,
            };
            // the Redis errors name the URL already; the script's do not
            Reply::parse(&v)
                .map_err(|e| format!("{}: the script answered {e}", self.cfg.url.redacted))
        };
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(self.cfg.timeout, run).await {
            Ok(Ok(r)) => Some(r),
            Ok(Err(e)) => {
                self.fall_back(e);
                None
            }
            Err(_) => {
                self.fall_back(format!(
                    "{}: no answer within shared.timeout ({})",
                    self.cfg.url.redacted,
                    powertune_core::duration::format(self.cfg.timeout)
                ));
                None
            }
        }
    }

    /// Records several outcomes in one pipeline; per item its reply (`None` for an
    /// item the server refused). `None` when not shared or the pipeline failed.
    pub async fn run_batch(&self, items: &[Record]) -> Option<Vec<Option<Reply>>> {
        let mut conn = self.connection()?;
        let mut pipe = redis::pipe();
        for o in items {
            pipe.add_command(self.eval((&o.keys, &o.limits), o.op, o.tokens, o.client(), true));
        }
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let wait = self.cfg.timeout * 4;
        let got = tokio::time::timeout(wait, conn.pipe(&mut pipe, "EVALSHA pipeline")).await;
        let values = match got {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                self.fall_back(e.to_string());
                return None;
            }
            Err(_) => {
                self.fall_back(format!(
                    "{}: a pipeline of {} outcomes had no answer in {}",
                    self.cfg.url.redacted,
                    items.len(),
                    powertune_core::duration::format(wait)
                ));
                return None;
            }
        };
        let mut out = Vec::with_capacity(items.len());
        for (v, o) in values.iter().zip(items) {
            out.push(match Reply::parse(v) {
                Ok(r) => Some(r),
                Err(e) if e.contains("NOSCRIPT") => {
                    self.call((&o.keys, &o.limits), o.op, o.tokens, o.client())
                        .await
                }
                Err(_) => None,
            });
        }
        Some(out)
    }

    /// Runs `pipe` (any commands: the budgets' `GET`, `INCRBY`, `EXPIREAT`) in one
    /// round trip within `shared.timeout`; `None` when not shared or when it failed
    /// (then the replica is on local state from now on).
    pub async fn query_pipe(&self, pipe: &mut redis::Pipeline, what: &str) -> Option<Vec<Value>> {
        let mut conn = self.connection()?;
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(self.cfg.timeout, conn.pipe(pipe, what)).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                self.fall_back(e.to_string());
                None
            }
            Err(_) => {
                self.fall_back(format!(
                    "{}: {what} had no answer within shared.timeout ({})",
                    self.cfg.url.redacted,
                    powertune_core::duration::format(self.cfg.timeout)
                ));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_from_config() {
        let l = Limits::new(&BreakerConfig::default(), Some((10, 10)), Some(90_000));
        assert_eq!(l.tpm, 90_000);
        assert_eq!(l.interval_us, 6_000_000);
        assert_eq!(l.tolerance_us, 54_000_000);
        assert_eq!(l.failure_threshold, 5);
        assert_eq!(l.recovery_ms, 120_000);
        // the default retry_after_max (1h) + a minute
        assert_eq!(l.ttl_ms, 3_660_000);
        let l = Limits::new(&BreakerConfig::default(), None, None);
        assert_eq!(l.tpm, 0);
        assert_eq!((l.interval_us, l.tolerance_us), (0, 0));
    }

    #[test]
    fn keys_share_a_hash_tag() {
        let k = CredKeys::new("powertune:gateway", "openai", "primary");
        assert_eq!(k.breaker, "powertune:gateway:{openai/primary}:breaker");
        assert_eq!(k.rpm, "powertune:gateway:{openai/primary}:rpm");
        assert_eq!(k.tpm, "powertune:gateway:{openai/primary}:tpm");
        let k = ClientKeys::new("powertune:gateway", "web");
        assert_eq!(k.rpm, "powertune:gateway:{client:web}:rpm");
        assert_eq!(k.tpm, "powertune:gateway:{client:web}:tpm");
    }

    #[test]
    fn client_limits_allow_rpm_at_once() {
        assert_eq!(ClientLimits::new(None, None), None);
        let l = ClientLimits::new(Some(10), None).unwrap();
        assert_eq!(
            (l.interval_us, l.tolerance_us, l.tpm),
            (6_000_000, 54_000_000, 0)
        );
        let l = ClientLimits::new(None, Some(500)).unwrap();
        assert_eq!((l.interval_us, l.tolerance_us, l.tpm), (0, 0, 500));
    }

    #[test]
    fn replies_parse() {
        let v = Value::Array(
            [2, 1500, 1, 1, 30_000, 0, 4]
                .into_iter()
                .map(Value::Int)
                .collect(),
        );
        let r = Reply::parse(&v).unwrap();
        assert_eq!(r.decision, Decision::RpmWait(Duration::from_millis(1500)));
        assert_eq!(
            r.breaker.phase,
            SharedPhase::Open {
                remaining: Duration::from_secs(30),
                reason: OpenReason::RateLimited
            }
        );
        assert!(Reply::parse(&Value::Int(1)).is_err());
        assert!(Reply::parse(&Value::Array(vec![Value::Int(1)])).is_err());
    }
}
