//! Budgets (`[budgets]`): spend per route class or client key per UTC day or month,
//! checked before a call (spent ≥ limit: refuse, or go to the fallback) and added
//! after it, in integer nano-dollars.
//!
//! Without `[shared]` the spend lives in this process ([`Ledger`], kept across
//! reloads, lost on restart). With it the fleet's spend lives in Redis, one key per
//! budget and period (`PREFIX:budget:{NAME}:2026-12-05`, `...:2026-12`), grown with
//! `INCRBY` and expiring an hour after its period ends. The call's path costs no
//! round trip for it: each replica adds its spend to a local `pending` amount that a
//! background task sends (one pipeline for all budgets), and the `INCRBY` replies
//! bring back the fleet's total. A check reads that mirror (the fleet's total plus
//! this replica's pending spend); when it is older than `shared.cache`, the one call
//! that finds it so reads the totals again (one pipelined `GET` round trip, at most
//! once per `cache` per replica). On local state (Redis away) pending spend waits and
//! is sent when Redis is back.

use crate::config::{Budget, BudgetScope, Config, Fallback, Target};
use crate::pricing::{usd, Bill, BudgetStatus, Charge, CostMeter, CostStatus, NANO_PER_USD};
use crate::shared::Shared;
use chrono::{DateTime, Datelike, Months, NaiveDate, Utc};
use parking_lot::Mutex;
use powertune_core::prometheus::Exposition;
use powertune_dialect::{ApiError, ErrorKind};
use powertune_redis::conn::as_int;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

/// How long a budget key outlives its period in Redis.
const KEY_GRACE_S: i64 = 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PeriodKind {
    Day,
    Month,
}

impl PeriodKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PeriodKind::Day => "day",
            PeriodKind::Month => "month",
        }
    }
    fn adjective(self) -> &'static str {
        match self {
            PeriodKind::Day => "daily",
            PeriodKind::Month => "monthly",
        }
    }
}

/// One UTC day or calendar month: `[start, end)` in Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    pub kind: PeriodKind,
    pub start: i64,
    pub end: i64,
    /// `2026-12-05` (a day) or `2026-12` (a month).
    pub label: String,
}

/// The period of `kind` that Unix time `unix` (seconds, UTC) falls in.
pub fn period_at(kind: PeriodKind, unix: i64) -> Period {
    let day = DateTime::<Utc>::from_timestamp(unix, 0)
        .unwrap_or_default()
        .date_naive();
    let (start, end, label) = match kind {
        PeriodKind::Day => (
            day,
            day.succ_opt().unwrap_or(day),
            day.format("%Y-%m-%d").to_string(),
        ),
        PeriodKind::Month => {
            let first = NaiveDate::from_ymd_opt(day.year(), day.month(), 1).unwrap_or(day);
            (
                first,
                first.checked_add_months(Months::new(1)).unwrap_or(first),
                first.format("%Y-%m").to_string(),
            )
        }
    };
    let ts = |d: NaiveDate| {
        d.and_hms_opt(0, 0, 0)
            .map_or(0, |t| t.and_utc().timestamp())
    };
    Period {
        kind,
        start: ts(start),
        end: ts(end),
        label,
    }
}

/// Now, in Unix seconds.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn rfc3339(unix: i64) -> String {
    DateTime::<Utc>::from_timestamp(unix, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Nano-dollars as `$20`, `$0.75`, `$0.000525`: at least two decimals, no trailing zeros.
pub fn dollars(nano: u64) -> String {
    let (whole, frac) = (nano / NANO_PER_USD, nano % NANO_PER_USD);
    let mut f = format!("{frac:09}");
    while f.len() > 2 && f.ends_with('0') {
        f.pop();
    }
    if frac == 0 {
        format!("${whole}")
    } else {
        format!("${whole}.{f}")
    }
}

/// The limits of a budget: (period, nano-dollars).
fn limits(b: &Budget) -> impl Iterator<Item = (PeriodKind, u64)> {
    [
        b.daily_nano.map(|n| (PeriodKind::Day, n)),
        b.monthly_nano.map(|n| (PeriodKind::Month, n)),
    ]
    .into_iter()
    .flatten()
}

/// The budgets (indices into [`Config::budgets`]) a call on route class `class` by
/// client `client` counts against.
pub fn applicable(cfg: &Config, class: Option<&str>, client: Option<&str>) -> Vec<usize> {
    cfg.budgets
        .iter()
        .enumerate()
        .filter(|(_, b)| match &b.scope {
            BudgetScope::Route(r) => class == Some(r.as_str()),
            BudgetScope::Client(c) => client == Some(c.as_str()),
        })
        .map(|(i, _)| i)
        .collect()
}

/// A budget limit that is spent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Over {
    /// Index into [`Config::budgets`].
    pub budget: usize,
    pub period: Period,
    pub limit: u64,
    pub spent: u64,
}

impl Over {
    /// The client's 429: which budget, how much of what, when it resets.
    pub fn error(&self, cfg: &Config) -> ApiError {
        let b = &cfg.budgets[self.budget];
        ApiError::new(
            ErrorKind::RateLimited,
            format!(
                "budget {:?} is spent: {} of its {} {} limit (UTC {} {}); it resets at {}",
                b.name,
                dollars(self.spent),
                dollars(self.limit),
                self.period.kind.adjective(),
                self.period.kind.as_str(),
                self.period.label,
                rfc3339(self.period.end)
            ),
        )
    }

    /// The wait until the period ends (the 429's `Retry-After`).
    pub fn retry_after(&self, now: i64) -> Duration {
        Duration::from_secs(u64::try_from(self.period.end - now).unwrap_or(0).max(1))
    }
}

/// What the budgets say about a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Under every limit: the call goes; its cost is added to these budgets.
    Go(Vec<usize>),
    /// A budget is spent and has a fallback: the call goes there.
    Fallback { over: Over, to: Fallback },
    /// Spent, no fallback: answer 429.
    Refuse(Over),
}

/// One budget limit's spend in its current period.
#[derive(Debug)]
struct Counter {
    period: Period,
    /// Known spend: the fleet's (as Redis last said) with `[shared]`, else this
    /// process's.
    spent: u64,
    /// `[shared]`: this replica's spend not yet in Redis.
    pending: u64,
    /// When `spent` was last read from Redis.
    synced: Option<Instant>,
    refreshing: bool,
}

impl Counter {
    fn total(&self) -> u64 {
        self.spent.saturating_add(self.pending)
    }
}

type Slot = (String, PeriodKind);

/// The spend of every budget limit, kept across reloads (by budget name and period
/// kind), and with `[shared]` the task that sends it to Redis.
pub struct Ledger {
    shared: Option<Arc<Shared>>,
    counters: Mutex<HashMap<Slot, Counter>>,
    /// Spend of a period that ended before it reached Redis: (key, period end, nano).
    carry: Mutex<Vec<(String, i64, u64)>>,
    /// Per budget name: calls refused, calls sent to the fallback.
    decisions: Mutex<HashMap<String, (u64, u64)>>,
    wake: Arc<Notify>,
    flusher: OnceLock<()>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("counters", &self.counters.lock().len())
            .finish_non_exhaustive()
    }
}

impl Ledger {
    pub fn new(shared: Option<Arc<Shared>>) -> Ledger {
        Ledger {
            shared,
            counters: Mutex::new(HashMap::new()),
            carry: Mutex::new(Vec::new()),
            decisions: Mutex::new(HashMap::new()),
            wake: Arc::new(Notify::new()),
            flusher: OnceLock::new(),
        }
    }

    fn key(&self, name: &str, label: &str) -> String {
        let prefix = self
            .shared
            .as_ref()
            .map_or(crate::config::DEFAULT_KEY_PREFIX, |s| {
                s.config().key_prefix.as_str()
            });
        format!("{prefix}:budget:{{{name}}}:{label}")
    }

    /// The counter of `slot` in the period of `now`; a period that ended starts
    /// again from 0 (its unsent spend is carried to Redis).
    fn counter<'a>(
        &self,
        counters: &'a mut HashMap<Slot, Counter>,
        slot: &Slot,
        now: i64,
    ) -> &'a mut Counter {
        let period = period_at(slot.1, now);
        let c = counters.entry(slot.clone()).or_insert_with(|| Counter {
            period: period.clone(),
            spent: 0,
            pending: 0,
            synced: None,
            refreshing: false,
        });
        if c.period != period {
            if c.pending > 0 {
                let key = self.key(&slot.0, &c.period.label);
                self.carry.lock().push((key, c.period.end, c.pending));
            }
            *c = Counter {
                period,
                spent: 0,
                pending: 0,
                synced: None,
                refreshing: false,
            };
        }
        c
    }

    /// `[shared]`: reads the fleet's spend of the budgets `idx` whose mirror is older
    /// than `shared.cache` (one pipelined round trip; nothing when all are fresh or
    /// another call is reading them).
    async fn refresh(&self, cfg: &Config, idx: &[usize], now: i64) {
        let Some(shared) = self.shared.as_ref().filter(|s| s.is_shared()) else {
            return;
        };
        let cache = shared.config().cache;
        let mut stale: Vec<(Slot, String, String)> = Vec::new();
        {
            let mut g = self.counters.lock();
            for i in idx {
                let b = &cfg.budgets[*i];
                for (kind, _) in limits(b) {
                    let slot = (b.name.clone(), kind);
                    let c = self.counter(&mut g, &slot, now);
                    if c.refreshing || c.synced.is_some_and(|t| t.elapsed() < cache) {
                        continue;
                    }
                    c.refreshing = true;
                    let label = c.period.label.clone();
                    stale.push((slot, self.key(&b.name, &label), label));
                }
            }
        }
        if stale.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        for (_, key, _) in &stale {
            pipe.cmd("GET").arg(key);
        }
        let got = shared.query_pipe(&mut pipe, "GET budgets").await;
        let mut g = self.counters.lock();
        for (n, (slot, _, label)) in stale.iter().enumerate() {
            let Some(c) = g.get_mut(slot) else { continue };
            c.refreshing = false;
            let Some(values) = &got else { continue };
            if c.period.label != *label {
                continue;
            }
            // a missing key is no spend yet
            let v = values.get(n).and_then(as_int).unwrap_or(0);
            c.spent = c.spent.max(u64::try_from(v).unwrap_or(0));
            c.synced = Some(Instant::now());
        }
    }

    /// The first limit of the budgets `idx` that is spent, if any (`now`: Unix
    /// seconds, which decides the period).
    pub async fn over(&self, cfg: &Config, idx: &[usize], now: i64) -> Option<Over> {
        if idx.is_empty() {
            return None;
        }
        self.refresh(cfg, idx, now).await;
        let mut g = self.counters.lock();
        for i in idx {
            let b = &cfg.budgets[*i];
            for (kind, limit) in limits(b) {
                let c = self.counter(&mut g, &(b.name.clone(), kind), now);
                if c.total() >= limit {
                    return Some(Over {
                        budget: *i,
                        period: c.period.clone(),
                        limit,
                        spent: c.total(),
                    });
                }
            }
        }
        None
    }

    /// The verdict on a call by `client` on route class `class`. A spent budget with
    /// a fallback sends the call there; the fallback's own budgets (and the call's
    /// other ones) are checked then, the spent one is not, and no second fallback is
    /// followed.
    pub async fn verdict(
        &self,
        cfg: &Config,
        class: Option<&str>,
        client: Option<&str>,
        now: i64,
    ) -> Verdict {
        let idx = applicable(cfg, class, client);
        let Some(over) = self.over(cfg, &idx, now).await else {
            return Verdict::Go(idx);
        };
        let name = cfg.budgets[over.budget].name.clone();
        let Some(to) = cfg.budgets[over.budget].fallback.clone() else {
            self.note(&name, false);
            return Verdict::Refuse(over);
        };
        let class2 = match &to {
            Fallback::Route(r) => Some(r.as_str()),
            Fallback::Alias(_) => None,
        };
        let again: Vec<usize> = applicable(cfg, class2, client)
            .into_iter()
            .filter(|i| *i != over.budget)
            .collect();
        if let Some(over2) = self.over(cfg, &again, now).await {
            self.note(&cfg.budgets[over2.budget].name, false);
            return Verdict::Refuse(over2);
        }
        self.note(&name, true);
        Verdict::Fallback { over, to }
    }

    /// Counts a refusal (429) or a fallback because of budget `name`.
    fn note(&self, name: &str, fallback: bool) {
        let mut g = self.decisions.lock();
        let d = g.entry(name.to_string()).or_insert((0, 0));
        if fallback {
            d.1 += 1;
        } else {
            d.0 += 1;
        }
    }

    /// Adds `nano` to the budgets `idx` (after a call).
    pub fn charge(self: &Arc<Self>, cfg: &Config, idx: &[usize], nano: u64, now: i64) {
        if idx.is_empty() || nano == 0 {
            return;
        }
        {
            let mut g = self.counters.lock();
            for i in idx {
                let b = &cfg.budgets[*i];
                for (kind, _) in limits(b) {
                    let c = self.counter(&mut g, &(b.name.clone(), kind), now);
                    if self.shared.is_some() {
                        c.pending = c.pending.saturating_add(nano);
                    } else {
                        c.spent = c.spent.saturating_add(nano);
                    }
                }
            }
        }
        if let Some(shared) = &self.shared {
            self.start_flusher(shared);
            self.wake.notify_one();
        }
    }

    /// Starts (once) the task that sends pending spend to Redis; it ends when the
    /// ledger is dropped.
    fn start_flusher(self: &Arc<Self>, shared: &Arc<Shared>) {
        if self.flusher.get().is_some() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.flusher.set(()).is_err() {
            return;
        }
        let weak: Weak<Ledger> = Arc::downgrade(self);
        let wake = self.wake.clone();
        let every = shared.config().retry_interval;
        rt.spawn(async move {
            loop {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(every) => {}
                }
                let Some(ledger) = weak.upgrade() else { return };
                ledger.flush().await;
            }
        });
    }

    /// Sends every pending amount as `INCRBY` + `EXPIREAT` in one pipeline; the
    /// replies are the fleet's totals. Nothing while Redis is away (it waits).
    async fn flush(&self) {
        let Some(shared) = self.shared.as_ref().filter(|s| s.is_shared()) else {
            return;
        };
        let carried = std::mem::take(&mut *self.carry.lock());
        let mut items: Vec<(Option<Slot>, String, i64, u64)> = carried
            .iter()
            .map(|(k, end, n)| (None, k.clone(), *end, *n))
            .collect();
        {
            let g = self.counters.lock();
            for (slot, c) in g.iter() {
                if c.pending > 0 {
                    let key = self.key(&slot.0, &c.period.label);
                    items.push((Some(slot.clone()), key, c.period.end, c.pending));
                }
            }
        }
        if items.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        for (_, key, end, n) in &items {
            pipe.cmd("INCRBY").arg(key).arg(*n);
            pipe.cmd("EXPIREAT").arg(key).arg(end + KEY_GRACE_S);
        }
        let Some(replies) = shared.query_pipe(&mut pipe, "INCRBY budgets").await else {
            // kept for when Redis is back
            self.carry.lock().extend(carried);
            return;
        };
        let mut g = self.counters.lock();
        for (n, (slot, key, _, sent)) in items.iter().enumerate() {
            let Some(slot) = slot else { continue };
            let total = replies.get(2 * n).and_then(as_int);
            let Some(c) = g.get_mut(slot) else { continue };
            if self.key(&slot.0, &c.period.label) != *key {
                // the period ended meanwhile and carried this amount again: take it back
                let mut carry = self.carry.lock();
                if let Some(e) = carry.iter_mut().find(|(k, _, _)| k == key) {
                    e.2 = e.2.saturating_sub(*sent);
                }
                carry.retain(|e| e.2 > 0);
                continue;
            }
            c.pending = c.pending.saturating_sub(*sent);
            if let Some(t) = total {
                c.spent = c.spent.max(u64::try_from(t).unwrap_or(0));
                c.synced = Some(Instant::now());
            }
        }
    }

    /// Every budget limit as `/status` shows it.
    pub fn status(&self, cfg: &Config, now: i64) -> Vec<BudgetStatus> {
        let mut g = self.counters.lock();
        let d = self.decisions.lock();
        let mut out = Vec::new();
        for b in &cfg.budgets {
            let (refused, fallbacks) = d.get(&b.name).copied().unwrap_or((0, 0));
            for (kind, limit) in limits(b) {
                let c = self.counter(&mut g, &(b.name.clone(), kind), now);
                out.push(BudgetStatus {
                    budget: b.name.clone(),
                    period: kind.as_str().to_string(),
                    current: c.period.label.clone(),
                    limit_usd: usd(limit),
                    spent_usd: usd(c.total()),
                    resets_at: rfc3339(c.period.end),
                    exceeded: c.total() >= limit,
                    fallback: b.fallback.as_ref().map(|f| match f {
                        Fallback::Route(r) => format!("route:{r}"),
                        Fallback::Alias(a) => a.clone(),
                    }),
                    refused,
                    fallbacks,
                });
            }
        }
        out
    }
}

/// Settles one finished attempt of a call: its cost goes on the call's bill, the cost
/// counters and the call's budgets (an attempt that consumed tokens on a model
/// without a price is counted as such).
#[allow(clippy::too_many_arguments)]
pub fn settle(
    meter: &CostMeter,
    ledger: &Arc<Ledger>,
    cfg: &Config,
    bill: &Bill,
    target: &Target,
    credential: &str,
    model_label: &str,
    (tokens_in, tokens_out): (u64, u64),
) {
    match bill.add(cfg, target, tokens_in, tokens_out) {
        Some(nano) => {
            if tokens_in + tokens_out > 0 {
                meter.record(&Charge {
                    route: bill.route.as_deref().unwrap_or(""),
                    alias: bill.alias_for(cfg, target).unwrap_or(""),
                    provider: &cfg.providers[target.provider].name,
                    credential,
                    model: model_label,
                    client: bill.client.as_deref().unwrap_or(""),
                    nano,
                });
            }
            ledger.charge(cfg, &bill.budgets, nano, unix_now());
        }
        None if tokens_in + tokens_out > 0 => meter.record_unpriced(),
        None => {}
    }
}

/// `/status` `cost`, when a price table is configured.
pub fn cost_status(meter: &CostMeter, ledger: &Ledger, cfg: &Config) -> Option<CostStatus> {
    if !cfg.pricing.configured {
        return None;
    }
    let mut s = meter.status(cfg.pricing.unpriced(cfg));
    s.budgets = ledger.status(cfg, unix_now());
    Some(s)
}

/// The cost and budget families of `/metrics`: `powertune_gateway_cost_usd_total`,
/// `powertune_gateway_unpriced_attempts_total`, and per budget limit
/// `powertune_gateway_budget_spent_usd` / `_limit_usd` (gauges) and
/// `powertune_gateway_budget_decisions_total` (`refused`, `fallback`).
pub fn expose(meter: &CostMeter, ledger: &Ledger, cfg: &Config, e: &mut Exposition) {
    meter.expose(e, cfg.pricing.configured);
    let st = ledger.status(cfg, unix_now());
    let mut w = e.gauge(
        "powertune_gateway_budget_spent_usd",
        "USD spent in the budget's current UTC day or month (the fleet's with [shared]).",
    );
    for b in &st {
        w.sample(
            &[("budget", b.budget.as_str()), ("period", b.period.as_str())],
            b.spent_usd,
        );
    }
    let mut w = e.gauge(
        "powertune_gateway_budget_limit_usd",
        "The budget's limit per UTC day or month, in USD.",
    );
    for b in &st {
        w.sample(
            &[("budget", b.budget.as_str()), ("period", b.period.as_str())],
            b.limit_usd,
        );
    }
    let mut w = e.counter(
        "powertune_gateway_budget_decisions",
        "Calls refused (429) or sent to the fallback because a budget was spent.",
    );
    let mut seen = std::collections::BTreeSet::new();
    for b in &st {
        if !seen.insert(b.budget.as_str()) {
            continue;
        }
        for (decision, n) in [("refused", b.refused), ("fallback", b.fallbacks)] {
            if n > 0 {
                w.sample(
                    &[("budget", b.budget.as_str()), ("decision", decision)],
                    n as f64,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_utc_days_and_calendar_months() {
        // 2026-12-05T13:30:00Z
        let t = 1_796_477_400;
        let d = period_at(PeriodKind::Day, t);
        assert_eq!(d.label, "2026-12-05");
        assert_eq!(rfc3339(d.start), "2026-12-05T00:00:00Z");
        assert_eq!(rfc3339(d.end), "2026-12-06T00:00:00Z");
        let m = period_at(PeriodKind::Month, t);
        assert_eq!(m.label, "2026-12");
        assert_eq!(rfc3339(m.end), "2027-01-01T00:00:00Z");
        // the last second of a day is in it; the next one is the next day
        assert_eq!(period_at(PeriodKind::Day, d.end - 1).label, "2026-12-05");
        assert_eq!(period_at(PeriodKind::Day, d.end).label, "2026-12-06");
        // February of a leap year
        let feb = period_at(PeriodKind::Month, 1_709_251_199); // 2024-02-29T23:59:59Z
        assert_eq!(
            (feb.label.as_str(), rfc3339(feb.end).as_str()),
            ("2024-02", "2024-03-01T00:00:00Z")
        );
    }

    #[test]
    fn dollars_are_written_exactly() {
        assert_eq!(dollars(20 * NANO_PER_USD), "$20");
        assert_eq!(dollars(750_000_000), "$0.75");
        assert_eq!(dollars(525_300), "$0.0005253");
        assert_eq!(dollars(1), "$0.000000001");
        assert_eq!(dollars(100_500_000_000), "$100.50");
    }

    fn cfg() -> Config {
        let toml = r#"
[[providers]]
name = "openai"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
[models.fast]
targets = ["openai:gpt-4o"]
[models.cheap]
targets = ["openai:gpt-4o-mini"]
[routes]
latency = ["fast"]
batch = ["fast"]
cheap = ["cheap"]
[pricing]
"openai:gpt-4o" = { input_per_mtok = 2.5, output_per_mtok = 10 }
"openai:gpt-4o-mini" = { input_per_mtok = 0.15, output_per_mtok = 0.60 }
[budgets]
"route:batch" = { daily_usd = 0.00003, monthly_usd = 1, fallback = "route:cheap" }
"route:latency" = { daily_usd = 0.00001 }
"route:cheap" = { daily_usd = 0.00002 }
"#;
        Config::from_toml(toml, "g.toml", &|_| None).unwrap().config
    }

    #[tokio::test]
    async fn spend_is_checked_before_and_added_after_and_resets_with_the_day() {
        let cfg = cfg();
        let l = Arc::new(Ledger::new(None));
        let t = 1_796_477_400;
        let latency = applicable(&cfg, Some("latency"), None);
        assert_eq!(latency.len(), 1);
        assert_eq!(
            l.verdict(&cfg, Some("latency"), None, t).await,
            Verdict::Go(latency.clone())
        );
        // 10 µ$ limit: 9,999 n$ spent is under it, 10,000 is at it (refused)
        l.charge(&cfg, &latency, 9_999, t);
        assert!(matches!(
            l.verdict(&cfg, Some("latency"), None, t).await,
            Verdict::Go(_)
        ));
        l.charge(&cfg, &latency, 1, t);
        let Verdict::Refuse(over) = l.verdict(&cfg, Some("latency"), None, t).await else {
            panic!("not refused")
        };
        assert_eq!((over.spent, over.limit), (10_000, 10_000));
        let e = over.error(&cfg);
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert_eq!(
            e.message,
            "budget \"route:latency\" is spent: $0.00001 of its $0.00001 daily limit (UTC day 2026-12-05); it resets at 2026-12-06T00:00:00Z"
        );
        assert_eq!(over.retry_after(t), Duration::from_secs(37_800));
        // the next UTC day starts from 0
        let tomorrow = period_at(PeriodKind::Day, t).end;
        assert!(matches!(
            l.verdict(&cfg, Some("latency"), None, tomorrow).await,
            Verdict::Go(_)
        ));
        let st = l.status(&cfg, tomorrow);
        let lat = st.iter().find(|b| b.budget == "route:latency").unwrap();
        assert_eq!((lat.spent_usd, lat.exceeded, lat.refused), (0.0, false, 1));
    }

    #[tokio::test]
    async fn a_spent_budget_falls_back_once_and_the_fallbacks_own_budget_counts() {
        let cfg = cfg();
        let l = Arc::new(Ledger::new(None));
        let t = 1_796_477_400;
        let batch = applicable(&cfg, Some("batch"), None);
        l.charge(&cfg, &batch, 30_000, t);
        let v = l.verdict(&cfg, Some("batch"), None, t).await;
        let Verdict::Fallback { over, to } = v.clone() else {
            panic!("{v:?}")
        };
        assert_eq!(to, Fallback::Route("cheap".into()));
        assert_eq!(over.period.kind, PeriodKind::Day);
        // the monthly limit of the same budget is far from spent
        let st = l.status(&cfg, t);
        let month = st
            .iter()
            .find(|b| b.budget == "route:batch" && b.period == "month")
            .unwrap();
        assert_eq!(
            (month.spent_usd, month.exceeded, month.fallbacks),
            (0.00003, false, 1)
        );
        // the fallback's own budget spent too: refused, naming it
        let cheap = applicable(&cfg, Some("cheap"), None);
        l.charge(&cfg, &cheap, 20_000, t);
        let Verdict::Refuse(over) = l.verdict(&cfg, Some("batch"), None, t).await else {
            panic!("not refused")
        };
        assert_eq!(cfg.budgets[over.budget].name, "route:cheap");
    }
}
