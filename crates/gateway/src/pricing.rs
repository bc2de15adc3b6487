//! Prices per provider model and the cost of calls, in integers throughout.
//!
//! A price is kept as pico-dollars (1e-12 USD) per token, which is the same number as
//! micro-dollars per million tokens: `input_per_mtok = 0.15` is 150,000. The cost of
//! an attempt is `tokens_in × input + tokens_out × output` pico-dollars, exact, then
//! rounded half up to nano-dollars (1e-9 USD) once; every counter, budget and Redis
//! total is a sum of those integers, and USD appear only when shown
//! (`nano / 1e9`). A model without a price has no cost (`None`), never 0.

use crate::config::{Config, Target};
use parking_lot::Mutex;
use powertune_core::prometheus::Exposition;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// USD per nano-dollar count.
pub const NANO_PER_USD: u64 = 1_000_000_000;

/// A model's price: pico-dollars per token (= micro-dollars per million tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    pub input: u64,
    pub output: u64,
}

impl Price {
    /// The exact cost of the tokens, in pico-dollars.
    pub fn cost_pico(&self, tokens_in: u64, tokens_out: u64) -> u128 {
        u128::from(tokens_in) * u128::from(self.input)
            + u128::from(tokens_out) * u128::from(self.output)
    }

    /// The cost in nano-dollars, rounded half up (at most half a nano-dollar off).
    pub fn cost_nano(&self, tokens_in: u64, tokens_out: u64) -> u64 {
        let n = (self.cost_pico(tokens_in, tokens_out) + 500) / 1000;
        u64::try_from(n).unwrap_or(u64::MAX)
    }
}

/// Nano-dollars as USD, for display.
pub fn usd(nano: u64) -> f64 {
    nano as f64 / NANO_PER_USD as f64
}

/// The prices of `[pricing]` / `pricing_file`, per provider (index into
/// [`Config::providers`]) and provider model.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    /// A price table was given (even an empty one): cost is reported.
    pub configured: bool,
    by_provider: Vec<HashMap<String, Price>>,
}

impl PriceTable {
    pub fn new(providers: usize) -> PriceTable {
        PriceTable {
            configured: false,
            by_provider: vec![HashMap::new(); providers],
        }
    }

    pub fn insert(&mut self, provider: usize, model: &str, price: Price) {
        if let Some(m) = self.by_provider.get_mut(provider) {
            m.insert(model.to_string(), price);
        }
    }

    /// The price of `model` at `provider`, when it has one.
    pub fn price(&self, provider: usize, model: &str) -> Option<Price> {
        self.by_provider.get(provider)?.get(model).copied()
    }

    /// The `provider:model` targets some alias sends calls to that have no price.
    pub fn unpriced(&self, cfg: &Config) -> Vec<String> {
        let mut out = BTreeSet::new();
        for t in cfg.models.values().flatten() {
            if self.price(t.provider, &t.model).is_none() {
                out.insert(format!("{}:{}", cfg.providers[t.provider].name, t.model));
            }
        }
        out.into_iter().collect()
    }
}

/// What a call's attempts cost so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub nano: u64,
    /// An attempt was on a priced model.
    pub priced: bool,
    /// An attempt that consumed tokens was on a model without a price.
    pub unpriced_tokens: bool,
}

impl Tally {
    /// Adds one attempt: its price (if any) and the tokens it consumed.
    pub fn add(&mut self, price: Option<Price>, tokens_in: u64, tokens_out: u64) -> Option<u64> {
        match price {
            Some(p) => {
                let n = p.cost_nano(tokens_in, tokens_out);
                self.nano = self.nano.saturating_add(n);
                self.priced = true;
                Some(n)
            }
            None => {
                if tokens_in + tokens_out > 0 {
                    self.unpriced_tokens = true;
                }
                None
            }
        }
    }

    /// The call's cost: the sum over its attempts; `None` when an attempt that
    /// consumed tokens, or every attempt, had no price.
    pub fn cost_nano(&self) -> Option<u64> {
        (self.priced && !self.unpriced_tokens).then_some(self.nano)
    }
}

/// Who pays for one client call: the labels of its cost and the budgets it counts
/// against. Shared by the call's attempts; each adds what it cost.
#[derive(Debug)]
pub struct Bill {
    /// The route class taken (after a budget fallback, the fallback's).
    pub route: Option<String>,
    /// The model alias the client named (a route class's alias is found per target).
    pub alias: Option<String>,
    /// The client key's name.
    pub client: Option<String>,
    /// Indices into [`Config::budgets`] this call's cost is added to.
    pub budgets: Vec<usize>,
    tally: Mutex<Tally>,
}

impl Bill {
    pub fn new(
        route: Option<String>,
        alias: Option<String>,
        client: Option<String>,
        budgets: Vec<usize>,
    ) -> Bill {
        Bill {
            route,
            alias,
            client,
            budgets,
            tally: Mutex::new(Tally::default()),
        }
    }

    /// The call's cost so far (see [`Tally::cost_nano`]).
    pub fn cost_nano(&self) -> Option<u64> {
        self.tally.lock().cost_nano()
    }

    /// The call's cost in USD for the access log.
    pub fn cost_usd(&self) -> Option<f64> {
        self.cost_nano().map(usd)
    }

    /// Adds one finished attempt on `target`; its cost, when priced.
    pub fn add(
        &self,
        cfg: &Config,
        target: &Target,
        tokens_in: u64,
        tokens_out: u64,
    ) -> Option<u64> {
        let price = cfg.pricing.price(target.provider, &target.model);
        self.tally.lock().add(price, tokens_in, tokens_out)
    }

    /// The alias that sent the call to `target`: the one the client named, else the
    /// first alias of the route class that has this target.
    pub fn alias_for<'a>(&'a self, cfg: &'a Config, target: &Target) -> Option<&'a str> {
        if let Some(a) = &self.alias {
            return Some(a.as_str());
        }
        let class = self.route.as_deref()?;
        cfg.routes
            .get(class)?
            .iter()
            .find(|a| cfg.models.get(*a).is_some_and(|ts| ts.contains(target)))
            .map(String::as_str)
    }
}

type Totals = BTreeMap<String, u64>;

/// Cost series beyond this count fold into one with every label `_other`.
pub const MAX_COST_SERIES: usize = 1000;

/// The labels of one cost series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct CostKey {
    route: String,
    alias: String,
    provider: String,
    credential: String,
    model: String,
    client: String,
}

/// One attempt's priced cost with its labels (empty: none).
#[derive(Debug, Clone, Copy)]
pub struct Charge<'a> {
    pub route: &'a str,
    pub alias: &'a str,
    pub provider: &'a str,
    pub credential: &'a str,
    pub model: &'a str,
    pub client: &'a str,
    pub nano: u64,
}

/// The gateway's cost counters: per (route class, alias, provider, credential,
/// model, client) in nano-dollars, and attempts that consumed tokens on unpriced
/// models. Bounded by the config (and [`MAX_COST_SERIES`]).
#[derive(Debug, Default)]
pub struct CostMeter {
    inner: Mutex<MeterInner>,
}

#[derive(Debug, Default)]
struct MeterInner {
    series: BTreeMap<CostKey, u64>,
    unpriced_attempts: u64,
}

/// `/status` `cost`: spend so far (this process, since it started), by label, and
/// the budgets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CostStatus {
    /// USD spent through this gateway since it started.
    pub total_usd: f64,
    /// The same, exact, in nano-dollars (1e-9 USD).
    pub total_nano_usd: u64,
    /// `provider:model` targets of the configured aliases that have no price (their
    /// calls have no cost).
    pub unpriced: Vec<String>,
    /// Attempts that consumed tokens on a model without a price.
    pub unpriced_attempts: u64,
    /// USD per route class, model alias, `provider/credential` and client key name
    /// (calls without a route class, alias or client key are in the total only).
    pub by_route: BTreeMap<String, f64>,
    pub by_alias: BTreeMap<String, f64>,
    pub by_credential: BTreeMap<String, f64>,
    pub by_client: BTreeMap<String, f64>,
    /// Every `[budgets]` limit and where it stands.
    pub budgets: Vec<BudgetStatus>,
}

/// One budget limit (a budget with a daily and a monthly limit has two).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BudgetStatus {
    /// `route:CLASS` or `client:NAME`.
    pub budget: String,
    /// `day` or `month` (UTC).
    pub period: String,
    /// The period: `2026-12-05` or `2026-12`.
    pub current: String,
    pub limit_usd: f64,
    /// Spent in this period: the fleet's total with `[shared]` (as last read from
    /// Redis, plus this replica's spend not yet sent), else this process's.
    pub spent_usd: f64,
    /// When the period ends and the spend starts again from 0 (RFC 3339, UTC).
    pub resets_at: String,
    /// Spent reached the limit: new calls are refused or go to the fallback.
    pub exceeded: bool,
    /// Where an over-budget call goes (`route:CLASS` or an alias), if anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// Calls refused (429) and calls sent to the fallback because of this budget.
    pub refused: u64,
    pub fallbacks: u64,
}

impl CostMeter {
    /// Counts one priced attempt.
    pub fn record(&self, c: &Charge<'_>) {
        let l = |s: &str| crate::metrics::label(s).into_owned();
        let key = CostKey {
            route: l(c.route),
            alias: l(c.alias),
            provider: l(c.provider),
            credential: l(c.credential),
            model: l(c.model),
            client: l(c.client),
        };
        let mut g = self.inner.lock();
        let key = if g.series.contains_key(&key) || g.series.len() < MAX_COST_SERIES {
            key
        } else {
            let o = || "_other".to_string();
            CostKey {
                route: o(),
                alias: o(),
                provider: o(),
                credential: o(),
                model: o(),
                client: o(),
            }
        };
        let n = g.series.entry(key).or_insert(0);
        *n = n.saturating_add(c.nano);
    }

    /// Counts an attempt that consumed tokens on a model without a price.
    pub fn record_unpriced(&self) {
        self.inner.lock().unpriced_attempts += 1;
    }

    /// The `/status` totals (budgets are added by the caller).
    pub fn status(&self, unpriced: Vec<String>) -> CostStatus {
        let g = self.inner.lock();
        let mut s = CostStatus {
            unpriced,
            unpriced_attempts: g.unpriced_attempts,
            ..Default::default()
        };
        let add = |m: &mut BTreeMap<String, u64>, k: &str, n: u64| {
            if !k.is_empty() {
                *m.entry(k.to_string()).or_insert(0) += n;
            }
        };
        let (mut r, mut a, mut c, mut k): (Totals, Totals, Totals, Totals) = Default::default();
        for (key, n) in &g.series {
            s.total_nano_usd = s.total_nano_usd.saturating_add(*n);
            add(&mut r, &key.route, *n);
            add(&mut a, &key.alias, *n);
            add(&mut c, &format!("{}/{}", key.provider, key.credential), *n);
            add(&mut k, &key.client, *n);
        }
        s.total_usd = usd(s.total_nano_usd);
        let to_usd = |m: BTreeMap<String, u64>| -> BTreeMap<String, f64> {
            m.into_iter().map(|(k, n)| (k, usd(n))).collect()
        };
        s.by_route = to_usd(r);
        s.by_alias = to_usd(a);
        s.by_credential = to_usd(c);
        s.by_client = to_usd(k);
        s
    }

    /// `powertune_gateway_cost_usd_total` (a sample per series that has counted)
    /// and `powertune_gateway_unpriced_attempts_total` (with a price table only).
    pub fn expose(&self, e: &mut Exposition, priced: bool) {
        let g = self.inner.lock();
        let mut w = e.counter(
            "powertune_gateway_cost_usd",
            "USD spent on provider calls, from the price table, per route class, model alias, provider, credential, model and client key name.",
        );
        for (k, n) in &g.series {
            w.sample(
                &[
                    ("route", k.route.as_str()),
                    ("alias", k.alias.as_str()),
                    ("provider", k.provider.as_str()),
                    ("credential", k.credential.as_str()),
                    ("model", k.model.as_str()),
                    ("client", k.client.as_str()),
                ],
                usd(*n),
            );
        }
        let mut w = e.counter(
            "powertune_gateway_unpriced_attempts",
            "Upstream attempts that consumed tokens on a model without a price (no cost counted).",
        );
        if priced {
            w.sample(&[], g.unpriced_attempts as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(input_per_mtok: u64, output_per_mtok: u64) -> Price {
        Price {
            input: input_per_mtok,
            output: output_per_mtok,
        }
    }

    #[test]
    fn cost_arithmetic_is_exact() {
        // gpt-4o-mini: $0.15 / $0.60 per million tokens
        let mini = p(150_000, 600_000);
        // a million each way: $0.15 + $0.60
        assert_eq!(mini.cost_nano(1_000_000, 1_000_000), 750_000_000);
        assert_eq!(usd(mini.cost_nano(1_000_000, 1_000_000)), 0.75);
        // 1234 in, 567 out: 185.1 µ$ + 340.2 µ$ = 525.3 µ$ exactly
        assert_eq!(mini.cost_pico(1234, 567), 525_300_000);
        assert_eq!(mini.cost_nano(1234, 567), 525_300);
        // one token: 0.15 µ$ = 150 n$; no tokens: 0
        assert_eq!(mini.cost_nano(1, 0), 150);
        assert_eq!(mini.cost_nano(0, 0), 0);
        // rounded once per attempt, half up: $0.0375/Mtok × 13 tokens = 487.5 n$;
        // $0.000037/Mtok × 13 = 481 p$ → 0 n$, × 14 = 518 p$ → 1 n$
        let cached = p(37_500, 0);
        assert_eq!(cached.cost_pico(13, 0), 487_500);
        assert_eq!(cached.cost_nano(13, 0), 488);
        assert_eq!(p(37, 0).cost_nano(13, 0), 0);
        assert_eq!(p(37, 0).cost_nano(14, 0), 1);
        // ten thousand calls of 10 + 20 tokens sum to exactly the cost of one big call
        let mut t = Tally::default();
        for _ in 0..10_000 {
            t.add(Some(mini), 10, 20);
        }
        assert_eq!(t.cost_nano(), Some(mini.cost_nano(100_000, 200_000)));
        assert_eq!(t.cost_nano(), Some(135_000_000));
        // huge counts do not overflow
        assert_eq!(p(u64::MAX, 0).cost_nano(u64::MAX, 0), u64::MAX);
    }

    #[test]
    fn a_call_without_a_price_has_no_cost_never_zero() {
        let mini = p(150_000, 600_000);
        let mut t = Tally::default();
        assert_eq!(t.cost_nano(), None, "no attempt");
        t.add(None, 0, 0);
        assert_eq!(t.cost_nano(), None, "only unpriced attempts");
        // a failed priced attempt consumed nothing: 0, a real zero
        t.add(Some(mini), 0, 0);
        assert_eq!(t.cost_nano(), Some(0));
        // then a priced retry: its cost
        t.add(Some(mini), 100, 10);
        assert_eq!(t.cost_nano(), Some(21_000));
        // an unpriced attempt that consumed tokens makes the sum unknown
        t.add(None, 5, 5);
        assert_eq!(t.cost_nano(), None);
    }

    #[test]
    fn the_meter_sums_by_label_and_exposes_counters() {
        let m = CostMeter::default();
        let c = Charge {
            route: "batch",
            alias: "cheap",
            provider: "openai",
            credential: "a",
            model: "gpt-4o-mini",
            client: "web",
            nano: 1_500,
        };
        m.record(&c);
        m.record(&c);
        m.record(&Charge {
            route: "",
            client: "",
            alias: "",
            credential: "b",
            nano: 1,
            ..c
        });
        m.record_unpriced();
        let s = m.status(vec!["local:llama".into()]);
        assert_eq!(s.total_nano_usd, 3_001);
        assert_eq!(s.by_route["batch"], 0.000003);
        assert_eq!(s.by_credential["openai/b"], 0.000000001);
        assert_eq!(s.by_client.len(), 1);
        assert_eq!(s.unpriced_attempts, 1);
        let mut e = Exposition::new();
        m.expose(&mut e, true);
        let text = e.render();
        let v: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("powertune_gateway_cost_usd_total{route=\"batch\",alias=\"cheap\",provider=\"openai\",credential=\"a\",model=\"gpt-4o-mini\",client=\"web\"} "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(v, 0.000003, "{text}");
        assert!(
            text.contains("powertune_gateway_unpriced_attempts_total 1"),
            "{text}"
        );
    }
}
