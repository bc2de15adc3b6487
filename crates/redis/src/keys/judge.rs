//! Judges of the key scan: pure functions from a [`ScanSnapshot`] and the targets to
//! findings. Each check also says when it found nothing (a `PASS` line), so a report
//! shows what was looked at.

use super::classify::is_sidekiq_prefix;
use super::snapshot::{CacheTypeStats, KeyInfo, PrefixStats, ScanSnapshot};
use crate::units::{human_bytes, human_secs, zero};
use powertune_core::report::truncate;
use powertune_core::targets::{CacheType, RedisTargets};
use powertune_core::{Cmp, Finding, Quantity, Value, Verdict};

const AREA: &str = "redis";
/// Prefixes without TTL reported at most (the worst first).
const NO_TTL_PREFIXES_SHOWN: usize = 10;

/// Every check of the key scan: large keys, keys without TTL by prefix, and per cache
/// type its TTLs and its compression.
pub fn judge(s: &ScanSnapshot, t: &RedisTargets) -> Vec<Finding> {
    let mut out = Vec::new();
    out.extend(large_keys(s, t));
    out.extend(no_ttl(s));
    for (name, c) in &s.cache_types {
        if c.keys == 0 {
            continue;
        }
        let Some(cfg) = s.cache_config.get(name) else {
            continue;
        };
        out.push(cache_ttl(s, name, c, cfg));
        out.extend(cache_compression(name, c, cfg));
    }
    out
}

/// A count as measured, or `~N` scaled to the whole database when the scan sampled.
fn estimate(s: &ScanSnapshot, n: u64) -> String {
    if s.sampled {
        format!("~{}", (n as f64 * s.extrapolation()).round() as u64)
    } else {
        n.to_string()
    }
}

/// [`estimate`] as a figure with `note`, which says so when it is scaled from a sample.
fn estimate_value(s: &ScanSnapshot, n: u64, note: &str) -> Value {
    if s.sampled {
        Value::of(Quantity::count((n as f64 * s.extrapolation()).round()))
            .note(format!("{note}, estimated from a sample"))
    } else {
        Value::of(Quantity::count(n as f64)).note(note)
    }
}

/// A size in words: bytes, or element counts when MEMORY USAGE is unavailable.
fn size(s: &ScanSnapshot, n: u64) -> String {
    if s.memory_unavailable.is_some() {
        format!("{n} elements")
    } else {
        human_bytes(n)
    }
}

/// A size as a figure: bytes, or an element count (noted) when MEMORY USAGE is
/// unavailable; `note` is added in front.
fn size_value(s: &ScanSnapshot, n: u64, note: &str) -> Value {
    let (q, unit_note) = if s.memory_unavailable.is_some() {
        (Quantity::count(n as f64), "elements")
    } else {
        (Quantity::bytes(n), "")
    };
    let note = [note, unit_note]
        .into_iter()
        .filter(|x| !x.is_empty())
        .collect::<Vec<_>>()
        .join(", ");
    Value::of(q).note(note)
}

/// Keys over `large_key_bytes`: one WARN per listed key, one for those past the top-K.
pub fn large_keys(s: &ScanSnapshot, t: &RedisTargets) -> Vec<Finding> {
    let mut out = Vec::new();
    let target = Value::le(Quantity::bytes(t.large_key_bytes));
    let large: Vec<&KeyInfo> = s
        .top
        .iter()
        .filter(|k| k.size > t.large_key_bytes)
        .collect();
    for k in &large {
        out.push(
            Finding::new(AREA, "large_key", truncate(&k.key, 80), Verdict::Warn)
                .observed(size_value(s, k.size, ""))
                .target(target.clone())
                .evidence(format!("{} with {} elements", k.key_type, k.elements.map_or("?".into(), |e| e.to_string())))
                .action("Compress the value at the application layer or restructure it (split into smaller keys)"),
        );
    }
    if (s.large_keys as usize) > large.len() {
        out.push(
            Finding::new(
                AREA,
                "large_key",
                format!("{} more large keys", s.large_keys as usize - large.len()),
                Verdict::Warn,
            )
            .observed(
                Value::of(Quantity::count(s.large_keys as f64))
                    .note(format!("keys over {}", human_bytes(t.large_key_bytes))),
            )
            .target(zero())
            .action("Raise --top to list them; compress or restructure them"),
        );
    }
    if s.large_keys == 0 {
        out.push(
            Finding::new(
                AREA,
                "large_key",
                format!("{} keys scanned", s.scanned),
                Verdict::Pass,
            )
            .observed(match s.top.first() {
                Some(k) => size_value(s, k.size, "largest"),
                None => Value::of(Quantity::count(0.0)).note("keys"),
            })
            .target(target),
        );
    }
    out
}

/// Keys without TTL, grouped by prefix (Sidekiq's own keys are meant to persist): one
/// WARN per producing prefix, the worst first.
pub fn no_ttl(s: &ScanSnapshot) -> Vec<Finding> {
    let target = zero().note("every cache key has a TTL");
    let mut producers: Vec<(&String, &PrefixStats)> = s
        .prefixes
        .iter()
        .filter(|(p, ps)| ps.no_ttl_keys > 0 && !is_sidekiq_prefix(p))
        .collect();
    producers.sort_by_key(|b| std::cmp::Reverse(b.1.no_ttl_keys));
    if producers.is_empty() {
        return vec![
            Finding::new(AREA, "no_ttl", "keys without TTL", Verdict::Pass)
                .observed(Value::of(Quantity::count(0.0)).note("Sidekiq keys excluded"))
                .target(target)
                .evidence(format!(
                    "{} keys without TTL in all, Sidekiq's own (meant to persist) included",
                    s.no_ttl_keys
                )),
        ];
    }
    producers
        .iter()
        .take(NO_TTL_PREFIXES_SHOWN)
        .map(|(p, ps)| {
            Finding::new(AREA, "no_ttl", format!("prefix {p}"), Verdict::Warn)
                .observed(estimate_value(s, ps.no_ttl_keys, "keys without TTL"))
                .target(target.clone())
                .evidence(format!("{} of {} keys under the prefix, {} without TTL", ps.no_ttl_keys, ps.keys, size(s, ps.no_ttl_bytes)))
                .action("Audit the producers of these keys and add expires_in: to their Rails.cache.write calls")
        })
        .collect()
}

fn cache_subject(name: &str, cfg: &CacheType) -> String {
    format!("cache type {name} ({})", cfg.pattern)
}

/// One cache type's TTLs: WARN when keys have none or more than the type's `ttl_s` left.
pub fn cache_ttl(s: &ScanSnapshot, name: &str, c: &CacheTypeStats, cfg: &CacheType) -> Finding {
    let subject = cache_subject(name, cfg);
    let target = zero().note(format!(
        "keys without TTL or over {}",
        human_secs(cfg.ttl_s as f64)
    ));
    let observed = Value::of(Quantity::count((c.no_ttl + c.ttl_too_long) as f64))
        .note(format!("of {} keys scanned", c.keys));
    if c.no_ttl > 0 || c.ttl_too_long > 0 {
        let example = c
            .example_no_ttl
            .clone()
            .or_else(|| c.example_ttl_too_long.clone())
            .map(|k| format!("; e.g. {k}"))
            .unwrap_or_default();
        Finding::new(AREA, "cache_ttl", subject, Verdict::Warn)
            .observed(observed)
            .target(target)
            .evidence(format!("{} without TTL, {} with TTL over {} (max left {}){example}", c.no_ttl, c.ttl_too_long, human_secs(cfg.ttl_s as f64), human_secs((c.max_ttl_ms.max(0) / 1000) as f64)))
            .action("Write these keys with the cache type's expires_in (PerformanceCacheService CACHE_CONFIGS)")
    } else {
        Finding::new(AREA, "cache_ttl", subject, Verdict::Pass)
            .observed(observed)
            .target(target)
            .evidence(format!(
                "{} keys, {}",
                estimate(s, c.keys),
                size(s, c.bytes)
            ))
    }
}

/// One cache type's compression against its `compress` setting (None when no value
/// was read).
pub fn cache_compression(name: &str, c: &CacheTypeStats, cfg: &CacheType) -> Option<Finding> {
    if c.compression_checked == 0 {
        return None;
    }
    let wrong = if cfg.compress {
        c.compression_checked - c.compressed
    } else {
        c.compressed
    };
    let pct = c.compressed as f64 * 100.0 / c.compression_checked as f64;
    Some(
        Finding::new(
            AREA,
            "cache_compression",
            cache_subject(name, cfg),
            if wrong > 0 {
                Verdict::Warn
            } else {
                Verdict::Pass
            },
        )
        .observed(Value::of(Quantity::percent(pct)).note(format!(
            "compressed, {} values checked",
            c.compression_checked
        )))
        .target(if cfg.compress {
            Value::bound(Cmp::Eq, Quantity::percent(100.0)).note("compress: true")
        } else {
            Value::bound(Cmp::Eq, Quantity::percent(0.0)).note("compress: false")
        })
        .evidence(format!(
            "{} of {} values checked compressed{}",
            c.compressed,
            c.compression_checked,
            c.example_compression
                .as_deref()
                .map(|k| format!("; e.g. {k}"))
                .unwrap_or_default()
        ))
        .action(if cfg.compress {
            "Write this cache type with compress: true as CACHE_CONFIGS says"
        } else {
            "Drop compression for this small, hot cache type (compress: false)"
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::classify::SIDEKIQ_GROUP;
    use crate::test_util::note;

    fn snap() -> ScanSnapshot {
        let t = powertune_core::Targets::default();
        ScanSnapshot {
            scanned: 10,
            dbsize: 10,
            cache_config: t.cache.clone(),
            ..Default::default()
        }
    }

    fn big(key: &str, size: u64) -> KeyInfo {
        KeyInfo {
            size,
            key: key.into(),
            key_type: "string".into(),
            elements: Some(size),
            ttl_ms: None,
        }
    }

    fn cfg(compress: bool) -> CacheType {
        CacheType {
            pattern: "*x*".into(),
            ttl_s: 60,
            compress,
        }
    }

    #[test]
    fn judges_large_keys_ttl_and_cache_types() {
        let t = RedisTargets::default();
        let mut s = snap();
        let f = judge(&s, &t);
        assert!(f.iter().all(|x| x.verdict == Verdict::Pass), "{f:#?}");
        s.top.push(KeyInfo {
            size: 2 << 20,
            key: "blob".into(),
            key_type: "string".into(),
            elements: Some(2 << 20),
            ttl_ms: None,
        });
        s.large_keys = 1;
        s.prefixes.insert(
            "legacy:*".into(),
            PrefixStats {
                keys: 5,
                bytes: 500,
                no_ttl_keys: 5,
                no_ttl_bytes: 500,
            },
        );
        s.prefixes.insert(
            SIDEKIQ_GROUP.into(),
            PrefixStats {
                keys: 1,
                bytes: 50,
                no_ttl_keys: 1,
                no_ttl_bytes: 50,
            },
        );
        s.cache_types.insert(
            "user_profile".into(),
            CacheTypeStats {
                keys: 3,
                ttl_too_long: 1,
                compression_checked: 3,
                compressed: 1,
                ..Default::default()
            },
        );
        let f = judge(&s, &t);
        let by = |c: &str| {
            f.iter()
                .filter(|x| x.check == c)
                .map(|x| (x.subject.clone(), x.verdict))
                .collect::<Vec<_>>()
        };
        assert_eq!(by("large_key"), vec![("blob".to_string(), Verdict::Warn)]);
        assert_eq!(
            by("no_ttl"),
            vec![("prefix legacy:*".to_string(), Verdict::Warn)]
        );
        assert_eq!(by("cache_ttl")[0].1, Verdict::Warn);
        assert_eq!(by("cache_compression")[0].1, Verdict::Warn);
    }

    #[test]
    fn large_keys_planted_beyond_the_top_and_absent() {
        let t = RedisTargets::default();
        let mut s = snap();
        s.top = vec![big("small", 100)];
        let f = large_keys(&s, &t);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].verdict, Verdict::Pass);
        assert_eq!(f[0].observed.quantity(), Some(Quantity::bytes(100)));
        assert_eq!(note(&f[0].observed), "largest");
        assert_eq!(f[0].target, Value::le(Quantity::bytes(t.large_key_bytes)));
        s.top = vec![big("a", 3 << 20), big("small", 100)];
        s.large_keys = 4;
        let f = large_keys(&s, &t);
        assert_eq!(f.len(), 2, "{f:#?}");
        assert_eq!((f[0].subject.as_str(), f[0].verdict), ("a", Verdict::Warn));
        assert_eq!(f[0].observed.quantity(), Some(Quantity::bytes(3 << 20)));
        assert_eq!(f[0].observed.text(), "3.0 MiB");
        assert_eq!(f[1].subject, "3 more large keys");
        assert_eq!(f[1].observed.quantity(), Some(Quantity::count(4.0)));
        assert_eq!(f[1].target, zero());
        s.memory_unavailable = Some("MEMORY USAGE failed".into());
        let f = large_keys(&s, &t);
        assert_eq!(
            f[0].observed.quantity(),
            Some(Quantity::count((3 << 20) as f64))
        );
        assert_eq!(note(&f[0].observed), "elements");
    }

    #[test]
    fn no_ttl_lists_the_worst_ten_prefixes_and_extrapolates_a_sample() {
        let mut s = snap();
        s.no_ttl_keys = 7;
        s.prefixes.insert(
            SIDEKIQ_GROUP.into(),
            PrefixStats {
                keys: 7,
                no_ttl_keys: 7,
                ..Default::default()
            },
        );
        let f = no_ttl(&s);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].verdict, Verdict::Pass);
        assert_eq!(f[0].observed.quantity(), Some(Quantity::count(0.0)));
        assert_eq!(note(&f[0].observed), "Sidekiq keys excluded");
        assert!(
            f[0].evidence.starts_with("7 keys without TTL in all"),
            "{}",
            f[0].evidence
        );
        for i in 1..=12u64 {
            s.prefixes.insert(
                format!("p{i}:*"),
                PrefixStats {
                    keys: i,
                    bytes: i,
                    no_ttl_keys: i,
                    no_ttl_bytes: i,
                },
            );
        }
        s.sampled = true;
        s.dbsize = 20;
        let f = no_ttl(&s);
        assert_eq!(f.len(), 10);
        assert!(f.iter().all(|x| x.verdict == Verdict::Warn));
        assert_eq!(f[0].subject, "prefix p12:*");
        assert_eq!(f[0].observed.quantity(), Some(Quantity::count(24.0)));
        assert_eq!(
            note(&f[0].observed),
            "keys without TTL, estimated from a sample"
        );
        assert_eq!(
            f[0].evidence,
            "12 of 12 keys under the prefix, 12 B without TTL"
        );
    }

    #[test]
    fn cache_ttl_warns_on_missing_or_too_long_ttls() {
        let s = snap();
        let ok = CacheTypeStats {
            keys: 4,
            bytes: 40,
            ..Default::default()
        };
        let f = cache_ttl(&s, "x", &ok, &cfg(false));
        assert_eq!(f.verdict, Verdict::Pass);
        assert_eq!(f.subject, "cache type x (*x*)");
        assert_eq!(f.observed.quantity(), Some(Quantity::count(0.0)));
        assert_eq!(note(&f.observed), "of 4 keys scanned");
        assert_eq!(f.target.text(), "= 0 (keys without TTL or over 1m00s)");
        assert_eq!(f.evidence, "4 keys, 40 B");
        let bad = CacheTypeStats {
            keys: 4,
            no_ttl: 1,
            example_no_ttl: Some("a:x".into()),
            ..Default::default()
        };
        let f = cache_ttl(&s, "x", &bad, &cfg(false));
        assert_eq!(f.verdict, Verdict::Warn);
        assert_eq!(f.observed.quantity(), Some(Quantity::count(1.0)));
        assert!(f.evidence.ends_with("; e.g. a:x"), "{}", f.evidence);
    }

    #[test]
    fn cache_compression_follows_the_compress_setting() {
        let none = CacheTypeStats::default();
        assert!(cache_compression("x", &none, &cfg(true)).is_none());
        let all = CacheTypeStats {
            compression_checked: 3,
            compressed: 3,
            ..Default::default()
        };
        let v = |c: &CacheTypeStats, compress| {
            cache_compression("x", c, &cfg(compress)).unwrap().verdict
        };
        assert_eq!(v(&all, true), Verdict::Pass);
        let f = cache_compression("x", &all, &cfg(false)).unwrap();
        assert_eq!(f.observed.quantity(), Some(Quantity::percent(100.0)));
        assert_eq!(
            f.target,
            Value::bound(Cmp::Eq, Quantity::percent(0.0)).note("compress: false")
        );
        assert_eq!(f.evidence, "3 of 3 values checked compressed");
        assert_eq!(v(&all, false), Verdict::Warn);
        let plain = CacheTypeStats {
            compression_checked: 3,
            ..Default::default()
        };
        assert_eq!(v(&plain, false), Verdict::Pass);
        assert_eq!(v(&plain, true), Verdict::Warn);
    }
}
