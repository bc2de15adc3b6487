//! `[pricing]` (or `pricing_file`) and `[budgets]`: the raw entries, their checks, and
//! the typed price table and budgets. Prices are USD per million tokens and become
//! integers at load ([`crate::pricing::Price`]: pico-dollars per token), budgets USD
//! per UTC day or month (integer nano-dollars), so no cost is ever a float sum.

use super::{ConfigError, Provider, Source};
use crate::pricing::{Price, PriceTable};
use powertune_core::config_file::line_col;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// One price entry: `"openai:gpt-4o-mini" = { input_per_mtok = 0.15, output_per_mtok = 0.60 }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    /// USD per million input (prompt) tokens.
    pub input_per_mtok: f64,
    /// USD per million output (completion) tokens.
    pub output_per_mtok: f64,
}

/// One budget: `"route:batch" = { daily_usd = 20, fallback = "route:cheap" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudget {
    pub daily_usd: Option<f64>,
    pub monthly_usd: Option<f64>,
    /// Where calls go once the budget is spent: `"route:CLASS"` or a model alias.
    pub fallback: Option<String>,
}

/// What a budget counts: the calls of a route class, or of a client key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BudgetScope {
    Route(String),
    Client(String),
}

/// Where an over-budget call goes instead of being refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    Route(String),
    Alias(String),
}

/// A validated budget. Limits are nano-dollars (1e-9 USD).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// As written: `route:batch`, `client:web` (the name in `/status`, `/metrics`,
    /// errors and the Redis key).
    pub name: String,
    pub scope: BudgetScope,
    pub daily_nano: Option<u64>,
    pub monthly_nano: Option<u64>,
    pub fallback: Option<Fallback>,
}

/// The largest price (USD per million tokens) and budget (USD) accepted.
const MAX_USD: f64 = 1e9;

/// `x` USD as an integer count of `1/scale` USD, refusing what that unit cannot hold
/// exactly (more decimals than it has) or what is negative, not finite or huge.
pub(crate) fn usd_to_units(x: f64, scale: u64, decimals: u32) -> Result<u64, String> {
    if !x.is_finite() || !(0.0..=MAX_USD).contains(&x) {
        return Err(format!(
            "must be a number of USD from 0 to {MAX_USD:e} (got {x})"
        ));
    }
    let v = x * scale as f64;
    let r = v.round();
    if (v - r).abs() > 1e-6 + r * 1e-12 {
        return Err(format!(
            "has more than {decimals} decimals (got {x}); the smallest step is {}",
            1.0 / scale as f64
        ));
    }
    Ok(r as u64)
}

/// The place of `entry` (a literal key, dots and colons allowed) in table `table` of
/// `src`, and optionally of its `field`: an error there. The key is shown quoted,
/// as TOML writes it: `pricing."openai:gpt-4.1".input_per_mtok`.
fn entry_error(
    src: &Source,
    table: Option<&str>,
    entry: &str,
    field: Option<&str>,
    message: String,
) -> ConfigError {
    let offset = (|| {
        let doc = toml::de::DeTable::parse(&src.text).ok()?;
        let mut t = doc.get_ref();
        if let Some(name) = table {
            let (_, v) = t.iter().find(|(k, _)| k.get_ref().as_ref() == name)?;
            match v.get_ref() {
                toml::de::DeValue::Table(inner) => t = inner,
                _ => return None,
            }
        }
        let (k, v) = t.iter().find(|(k, _)| k.get_ref().as_ref() == entry)?;
        let mut at = k.span().start;
        if let (Some(f), toml::de::DeValue::Table(inner)) = (field, v.get_ref()) {
            if let Some((fk, _)) = inner.iter().find(|(k, _)| k.get_ref().as_ref() == f) {
                at = fk.span().start;
            }
        }
        Some(at)
    })();
    let (line, column) = offset.map_or((0, 0), |o| line_col(&src.text, o));
    let mut key = String::new();
    if let Some(t) = table {
        key.push_str(t);
        key.push('.');
    }
    key.push_str(&format!("{entry:?}"));
    if let Some(f) = field {
        key.push('.');
        key.push_str(f);
    }
    ConfigError {
        path: src.path.clone(),
        line,
        column,
        key,
        message,
    }
}

/// The price table from `[pricing]` or the file `pricing_file` names (relative to the
/// config file). Inline entries must name a declared provider; a price file may list
/// providers this gateway does not have (they are left out).
pub(super) fn validate_pricing(
    inline: BTreeMap<String, RawPrice>,
    file: Option<String>,
    src: &Source,
    providers: &[Provider],
) -> Result<PriceTable, ConfigError> {
    let mut table = PriceTable::new(providers.len());
    let (entries, fsrc, in_table) = match file {
        None if inline.is_empty() => return Ok(table),
        None => (inline, None, Some("pricing")),
        Some(_) if !inline.is_empty() => {
            return Err(src.error("pricing_file", "give [pricing] or pricing_file, not both"))
        }
        Some(f) => {
            let p = Path::new(&f);
            let p = match Path::new(&src.path).parent() {
                Some(d) if p.is_relative() => d.join(p),
                _ => p.to_path_buf(),
            };
            let fsrc = Source::read(&p).map_err(|e| {
                src.error(
                    "pricing_file",
                    format!(
                        "{}: {}, e.g. pricing_file = \"prices.toml\"",
                        e.path, e.message
                    ),
                )
            })?;
            let entries: BTreeMap<String, RawPrice> = fsrc.deserialize()?;
            (entries, Some(fsrc), None)
        }
    };
    let esrc = fsrc.as_ref().unwrap_or(src);
    table.configured = true;
    for (name, raw) in entries {
        let err = |field: Option<&str>, m: String| entry_error(esrc, in_table, &name, field, m);
        let Some((provider, model)) = name
            .split_once(':')
            .filter(|(p, m)| !p.is_empty() && !m.is_empty())
        else {
            return Err(err(
                None,
                "is not \"provider:model\", e.g. \"openai:gpt-4o-mini\" = { input_per_mtok = 0.15, output_per_mtok = 0.60 }".into(),
            ));
        };
        let Some(pi) = providers.iter().position(|p| p.name == provider) else {
            if fsrc.is_some() {
                continue;
            }
            let names: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
            return Err(err(
                None,
                format!(
                    "unknown provider {provider:?}; the providers are [{}]",
                    names.join(", ")
                ),
            ));
        };
        let per_tok = |field: &str, x: f64| {
            usd_to_units(x, 1_000_000, 6).map_err(|m| {
                err(
                    Some(field),
                    format!("{m}, e.g. {field} = 0.15 (USD per million tokens)"),
                )
            })
        };
        let price = Price {
            input: per_tok("input_per_mtok", raw.input_per_mtok)?,
            output: per_tok("output_per_mtok", raw.output_per_mtok)?,
        };
        table.insert(pi, model, price);
    }
    Ok(table)
}

/// `[budgets]`: each names a route class or a client key that exists, has a daily
/// and/or monthly limit, and a fallback that exists; budgets need prices.
pub(super) fn validate_budgets(
    raw: BTreeMap<String, RawBudget>,
    src: &Source,
    priced: bool,
    routes: &BTreeSet<&str>,
    aliases: &BTreeSet<&str>,
    clients: &BTreeSet<&str>,
) -> Result<Vec<Budget>, ConfigError> {
    let mut out = Vec::new();
    for (name, b) in raw {
        let err =
            |field: Option<&str>, m: String| entry_error(src, Some("budgets"), &name, field, m);
        if !priced {
            return Err(err(
                None,
                "a budget counts the cost of calls, which needs prices: add [pricing] or pricing_file".into(),
            ));
        }
        let scope = match name.split_once(':') {
            Some(("route", r)) if routes.contains(r) => BudgetScope::Route(r.to_string()),
            Some(("route", r)) => {
                return Err(err(
                    None,
                    format!("unknown route class {r:?}; declare it under [routes]"),
                ))
            }
            Some(("client", c)) if clients.contains(c) => BudgetScope::Client(c.to_string()),
            Some(("client", c)) => {
                return Err(err(
                    None,
                    format!("unknown client {c:?}; name a [[clients]] name"),
                ))
            }
            _ => {
                return Err(err(
                    None,
                    "must be \"route:CLASS\" or \"client:NAME\", e.g. \"route:batch\" = { daily_usd = 20 }".into(),
                ))
            }
        };
        let limit = |field: &str, x: Option<f64>| -> Result<Option<u64>, ConfigError> {
            let Some(x) = x else { return Ok(None) };
            match usd_to_units(x, 1_000_000_000, 9) {
                Ok(0) => Err(err(
                    Some(field),
                    format!("must be above 0 (got {x}), e.g. {field} = 20"),
                )),
                Ok(n) => Ok(Some(n)),
                Err(m) => Err(err(Some(field), format!("{m}, e.g. {field} = 20"))),
            }
        };
        let daily_nano = limit("daily_usd", b.daily_usd)?;
        let monthly_nano = limit("monthly_usd", b.monthly_usd)?;
        if daily_nano.is_none() && monthly_nano.is_none() {
            return Err(err(
                None,
                "needs daily_usd or monthly_usd (or both), e.g. { daily_usd = 20 }".into(),
            ));
        }
        let fallback = match b.fallback.as_deref() {
            None => None,
            Some(f) => {
                let fb = match f.strip_prefix("route:") {
                    Some(r) if routes.contains(r) => Fallback::Route(r.to_string()),
                    None if aliases.contains(f) => Fallback::Alias(f.to_string()),
                    _ => {
                        return Err(err(
                            Some("fallback"),
                            format!("{f:?} is neither \"route:CLASS\" with a declared route class nor a [models] alias, e.g. fallback = \"route:cheap\""),
                        ))
                    }
                };
                if let (Fallback::Route(r), BudgetScope::Route(own)) = (&fb, &scope) {
                    if r == own {
                        return Err(err(
                            Some("fallback"),
                            format!("falls back to its own route class {r:?}; name a cheaper one"),
                        ));
                    }
                }
                Some(fb)
            }
        };
        out.push(Budget {
            name,
            scope,
            daily_nano,
            monthly_nano,
            fallback,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::pricing::Price;

    const BASE: &str = r#"
[[providers]]
name = "openai"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
[[providers]]
name = "local"
kind = "ollama"
base_url = "http://127.0.0.1:9"
[models.fast]
targets = ["openai:gpt-4o-mini"]
[models.cheap]
targets = ["local:llama3.1"]
[routes]
latency = ["fast"]
batch = ["cheap"]
[[clients]]
name = "web"
key_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
"#;

    fn load(extra: &str) -> Result<Config, String> {
        Config::from_toml(&format!("{BASE}{extra}"), "g.toml", &|_| None)
            .map(|l| l.config)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn inline_prices_become_exact_integers() {
        let c = load(
            "[pricing]\n\"openai:gpt-4o-mini\" = { input_per_mtok = 0.15, output_per_mtok = 0.60 }\n\"openai:gpt-4.1\" = { input_per_mtok = 2, output_per_mtok = 8 }\n",
        )
        .unwrap();
        assert!(c.pricing.configured);
        assert_eq!(
            c.pricing.price(0, "gpt-4o-mini"),
            Some(Price {
                input: 150_000,
                output: 600_000
            })
        );
        assert_eq!(
            c.pricing.price(0, "gpt-4.1"),
            Some(Price {
                input: 2_000_000,
                output: 8_000_000
            })
        );
        assert_eq!(c.pricing.price(1, "llama3.1"), None);
        assert_eq!(c.pricing.unpriced(&c), vec!["local:llama3.1".to_string()]);
        assert!(!load("").unwrap().pricing.configured);
    }

    #[test]
    fn bad_prices_name_their_place() {
        let e =
            load("[pricing]\n\"openai:gpt-4.1\" = { input_per_mtok = -1, output_per_mtok = 8 }\n")
                .unwrap_err();
        assert!(
            e.starts_with(
                "g.toml:21:22: pricing.\"openai:gpt-4.1\".input_per_mtok: must be a number of USD"
            ),
            "{e}"
        );
        let e =
            load("[pricing]\n\"openai:x\" = { input_per_mtok = 0.0000001, output_per_mtok = 8 }\n")
                .unwrap_err();
        assert!(e.contains("more than 6 decimals"), "{e}");
        let e = load("[pricing]\n\"azure:x\" = { input_per_mtok = 1, output_per_mtok = 8 }\n")
            .unwrap_err();
        assert!(
            e.contains("pricing.\"azure:x\": unknown provider \"azure\"; the providers are [openai, local]"),
            "{e}"
        );
        let e = load("[pricing]\n\"gpt-4o\" = { input_per_mtok = 1, output_per_mtok = 8 }\n")
            .unwrap_err();
        assert!(e.contains("is not \"provider:model\""), "{e}");
        let e = load("[pricing]\n\"openai:x\" = { input_per_mtok = 1 }\n").unwrap_err();
        assert!(e.contains("output_per_mtok"), "{e}");
    }

    #[test]
    fn a_price_file_is_read_relative_to_the_config_and_may_list_other_providers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("prices.toml"),
            "\"openai:gpt-4o-mini\" = { input_per_mtok = 0.15, output_per_mtok = 0.6 }\n\"vertex:gemini\" = { input_per_mtok = 1, output_per_mtok = 2 }\n",
        )
        .unwrap();
        let cfg = dir.path().join("gateway.toml");
        std::fs::write(&cfg, format!("pricing_file = \"prices.toml\"\n{BASE}")).unwrap();
        let c = Config::load_with(&cfg, &|_| None).unwrap().config;
        assert_eq!(
            c.pricing.price(0, "gpt-4o-mini").map(|p| p.output),
            Some(600_000)
        );
        // a bad entry in the file is placed in the file
        std::fs::write(
            dir.path().join("prices.toml"),
            "\"openai:gpt-4o-mini\" = { input_per_mtok = 0.15, output_per_mtok = \"cheap\" }\n",
        )
        .unwrap();
        let e = Config::load_with(&cfg, &|_| None).unwrap_err().to_string();
        assert!(e.contains("prices.toml:1:"), "{e}");
        std::fs::remove_file(dir.path().join("prices.toml")).unwrap();
        let e = Config::load_with(&cfg, &|_| None).unwrap_err().to_string();
        assert!(
            e.contains("pricing_file: ") && e.contains("cannot read"),
            "{e}"
        );
        let e = Config::from_toml(
            &format!("pricing_file = \"p.toml\"\n{BASE}{PRICED}"),
            "g.toml",
            &|_| None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not both"), "{e}");
    }

    const PRICED: &str =
        "[pricing]\n\"openai:gpt-4o-mini\" = { input_per_mtok = 0.15, output_per_mtok = 0.60 }\n";

    #[test]
    fn budgets_name_a_route_or_client_and_limits_in_nano_dollars() {
        let c = load(&format!(
            "{PRICED}[budgets]\n\"route:latency\" = {{ daily_usd = 20, fallback = \"route:batch\" }}\n\"client:web\" = {{ monthly_usd = 100.5, daily_usd = 0.000000001, fallback = \"cheap\" }}\n"
        ))
        .unwrap();
        let b = &c.budgets;
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].name, "client:web");
        assert_eq!(b[0].monthly_nano, Some(100_500_000_000));
        assert_eq!(b[0].daily_nano, Some(1));
        assert_eq!(b[0].fallback, Some(super::Fallback::Alias("cheap".into())));
        assert_eq!(b[1].scope, super::BudgetScope::Route("latency".into()));
        assert_eq!(b[1].daily_nano, Some(20_000_000_000));
        assert_eq!(b[1].fallback, Some(super::Fallback::Route("batch".into())));
        for (extra, want) in [
            (
                "\"route:nope\" = { daily_usd = 1 }",
                "unknown route class \"nope\"",
            ),
            (
                "\"client:app\" = { daily_usd = 1 }",
                "unknown client \"app\"",
            ),
            (
                "\"batch\" = { daily_usd = 1 }",
                "must be \"route:CLASS\" or \"client:NAME\"",
            ),
            ("\"route:batch\" = { }", "needs daily_usd or monthly_usd"),
            (
                "\"route:batch\" = { daily_usd = 0 }",
                "budgets.\"route:batch\".daily_usd: must be above 0",
            ),
            (
                "\"route:batch\" = { daily_usd = 1, fallback = \"route:batch\" }",
                "its own route class",
            ),
            (
                "\"route:batch\" = { daily_usd = 1, fallback = \"slow\" }",
                "fallback: \"slow\" is neither",
            ),
            (
                "\"route:batch\" = { weekly_usd = 1 }",
                "unknown field `weekly_usd`",
            ),
        ] {
            let e = load(&format!("{PRICED}[budgets]\n{extra}\n")).unwrap_err();
            assert!(e.contains(want), "{extra}: {e}");
        }
        let e = load("[budgets]\n\"route:batch\" = { daily_usd = 1 }\n").unwrap_err();
        assert!(e.contains("needs prices"), "{e}");
    }
}
