//! The runbook's "Cache Hit-Rate Monitoring": cache_hits / total_lookups per
//! cache type, alert when the overall rate is under `redis.hit_rate_pct_min` (70%)
//! or a type's under `redis.type_hit_rate_pct_min` (50%). Measured from cache spans;
//! the whole cache or a type with fewer than `min_lookups` lookups is not judged.

use super::AREA;
use crate::snapshot::{hit_rate_pct, CacheSummary, CacheTypeSummary};
use powertune_core::units::Quantity;
use powertune_core::{Finding, Targets, Value, Verdict};

/// `cache_hit_rate` (subject `overall`) and one `cache_type_hit_rate` per type with
/// enough lookups; nothing when the window holds no cache spans.
pub fn cache_hit_rates(c: &CacheSummary, t: &Targets) -> Vec<Finding> {
    let mut f = Vec::new();
    if c.lookups >= c.min_lookups.max(1) {
        f.push(overall(c, t));
    }
    f.extend(
        c.types
            .iter()
            .filter(|ty| ty.lookups >= c.min_lookups.max(1))
            .map(|ty| per_type(ty, t)),
    );
    f
}

/// The types (and the whole) seen with too few lookups to judge, as
/// `name (n lookups)`; empty when every one was judged.
pub fn not_judged(c: &CacheSummary) -> Vec<String> {
    let mut v = Vec::new();
    if c.lookups > 0 && c.lookups < c.min_lookups {
        v.push(format!("overall ({} lookups)", c.lookups));
    }
    v.extend(
        c.types
            .iter()
            .filter(|ty| ty.lookups < c.min_lookups)
            .map(|ty| format!("{} ({} lookups)", ty.cache_type, ty.lookups)),
    );
    v
}

fn overall(c: &CacheSummary, t: &Targets) -> Finding {
    let rate = hit_rate_pct(c.hits, c.lookups);
    let min = t.redis.hit_rate_pct_min;
    Finding::new(AREA, "cache_hit_rate", "overall", verdict(rate, min))
        .observed(Value::of(Quantity::percent(rate)))
        .target(Value::ge(Quantity::percent(min)))
        .evidence(format!(
            "{}/{} hits/lookups from cache spans over {} cache type(s)",
            c.hits,
            c.lookups,
            c.types.len()
        ))
        .action("Find the cache types below their target (cache_type_hit_rate); check Redis evicted_keys and used_memory against maxmemory")
}

fn per_type(ty: &CacheTypeSummary, t: &Targets) -> Finding {
    let rate = hit_rate_pct(ty.hits, ty.lookups);
    let min = t.redis.type_hit_rate_pct_min;
    Finding::new(AREA, "cache_type_hit_rate", &ty.cache_type, verdict(rate, min))
        .observed(Value::of(Quantity::percent(rate)))
        .target(Value::ge(Quantity::percent(min)))
        .evidence(format!(
            "{}/{} hits/lookups; keys {}",
            ty.hits, ty.lookups, ty.pattern
        ))
        .action("TTL too short or eviction pressure: raise this type's TTL, or maxmemory if Redis is evicting")
}

/// Under the minimum fails (the runbook's alert); at or above passes.
fn verdict(rate: f64, min: f64) -> Verdict {
    if rate < min {
        Verdict::Fail
    } else {
        Verdict::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(name: &str, hits: u64, lookups: u64) -> CacheTypeSummary {
        CacheTypeSummary {
            cache_type: name.into(),
            pattern: format!("*{name}*"),
            hits,
            lookups,
        }
    }

    #[test]
    fn overall_and_per_type_against_the_runbook() {
        let t = Targets::default();
        let types = vec![
            ty("user_profile", 90, 100),
            ty("ai_pricing", 40, 100),
            ty("default", 1, 5),
        ];
        let c = CacheSummary {
            hits: 131,
            lookups: 205,
            min_lookups: 20,
            types,
        };
        let f = cache_hit_rates(&c, &t);
        assert_eq!(f.len(), 3, "{f:#?}");
        assert_eq!(
            (f[0].check.as_str(), f[0].subject.as_str()),
            ("cache_hit_rate", "overall")
        );
        assert_eq!(f[0].verdict, Verdict::Fail); // 63.9% < 70%
        assert_eq!(
            f[0].evidence,
            "131/205 hits/lookups from cache spans over 3 cache type(s)"
        );
        assert_eq!(
            f[0].observed,
            Value::of(Quantity::percent(100.0 * 131.0 / 205.0))
        );
        assert_eq!(
            (f[1].subject.as_str(), f[1].verdict),
            ("user_profile", Verdict::Pass)
        );
        assert_eq!(
            (f[2].subject.as_str(), f[2].verdict),
            ("ai_pricing", Verdict::Fail)
        );
        assert!(f[2].evidence.starts_with("40/100 hits/lookups"));
        assert_eq!(not_judged(&c), vec!["default (5 lookups)".to_string()]);
        let none = CacheSummary {
            min_lookups: 20,
            ..CacheSummary::default()
        };
        assert!(cache_hit_rates(&none, &t).is_empty());
        assert!(not_judged(&none).is_empty());
    }
}
