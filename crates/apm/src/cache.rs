//! Cache types: which entry of the targets' `[cache]` table (the runbook's
//! `CACHE_CONFIGS`) a looked-up key belongs to, by its Redis-glob `pattern`. The
//! first matching type wins, in name order with `default` tried last; a key no
//! pattern matches (or a lookup without a key) counts as `default`.

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use powertune_core::targets::CacheType;
use std::collections::BTreeMap;

/// The type of keys no pattern matches.
pub const DEFAULT_TYPE: &str = "default";

/// Lookups a cache type needs in the window before its hit rate is judged (fewer is
/// noise: one miss in three lookups is not a degraded cache).
pub const DEFAULT_MIN_LOOKUPS: u64 = 20;

/// The configured cache types, compiled.
#[derive(Debug, Clone)]
pub struct CacheTypes {
    /// (name, pattern) in matching order.
    types: Vec<(String, String)>,
    set: GlobSet,
    /// The type (index into `types`) of each glob in `set`.
    of_glob: Vec<usize>,
}

impl Default for CacheTypes {
    fn default() -> Self {
        CacheTypes::new(&BTreeMap::new())
    }
}

/// A Redis glob (`*`, `?`, `[a-z]`, `[^a]`, `\x`) as a glob matching whole keys, `*`
/// crossing every character. A pattern that does not compile (an unclosed `[`)
/// matches itself literally.
fn redis_glob(pattern: &str) -> Option<Glob> {
    GlobBuilder::new(pattern)
        .literal_separator(false)
        .backslash_escape(true)
        .build()
        .or_else(|_| Glob::new(&globset::escape(pattern)))
        .ok()
}

impl CacheTypes {
    pub fn new(types: &BTreeMap<String, CacheType>) -> CacheTypes {
        let mut v: Vec<(String, String)> = types
            .iter()
            .filter(|(n, _)| n.as_str() != DEFAULT_TYPE)
            .map(|(n, c)| (n.clone(), c.pattern.clone()))
            .collect();
        v.extend(
            types
                .iter()
                .filter(|(n, _)| n.as_str() == DEFAULT_TYPE)
                .map(|(n, c)| (n.clone(), c.pattern.clone())),
        );
        let mut b = GlobSetBuilder::new();
        let mut of_glob = Vec::with_capacity(v.len());
        for (i, (_, p)) in v.iter().enumerate() {
            if let Some(g) = redis_glob(p) {
                b.add(g);
                of_glob.push(i);
            }
        }
        let set = b.build().unwrap_or_else(|_| GlobSet::empty());
        CacheTypes {
            types: v,
            set,
            of_glob,
        }
    }

    /// The type of `key`: the first whose pattern matches, else `default`.
    pub fn of(&self, key: &str) -> &str {
        if key.is_empty() {
            return DEFAULT_TYPE;
        }
        self.set
            .matches(key)
            .into_iter()
            .filter_map(|g| self.of_glob.get(g).copied())
            .min()
            .and_then(|i| self.types.get(i))
            .map_or(DEFAULT_TYPE, |(n, _)| n.as_str())
    }

    /// The pattern of a type (`*` for an unconfigured `default`).
    pub fn pattern(&self, name: &str) -> &str {
        self.types
            .iter()
            .find(|(n, _)| n == name)
            .map_or("*", |(_, p)| p.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(rows: &[(&str, &str)]) -> CacheTypes {
        CacheTypes::new(
            &rows
                .iter()
                .map(|(n, p)| {
                    (
                        n.to_string(),
                        CacheType {
                            ttl_s: 60,
                            compress: false,
                            pattern: p.to_string(),
                        },
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn first_match_in_name_order_default_last() {
        let t = CacheTypes::new(&powertune_core::Targets::default().cache);
        assert_eq!(t.of("powernode:cache:user_profile:42"), "user_profile");
        assert_eq!(t.of("ai_pricing/v2/gpt-4o"), "ai_pricing");
        assert_eq!(t.of("views/home/index"), "default");
        assert_eq!(t.of(""), "default");
        let t = types(&[("a", "x*"), ("b", "*y"), ("default", "*")]);
        assert_eq!(t.of("xy"), "a");
        assert_eq!(t.of("zy"), "b");
        assert_eq!(t.of("zz"), "default");
        assert_eq!(t.pattern("b"), "*y");
    }

    #[test]
    fn redis_glob_syntax() {
        let t = types(&[
            ("q", "s?ss:*"),
            ("r", "user:[0-9]*"),
            ("n", "org:[^a]"),
            ("e", "lit\\*"),
            ("bad", "[oops"),
        ]);
        assert_eq!(t.of("sess:a/b:c"), "q");
        assert_eq!(t.of("user:7/x"), "r");
        assert_eq!(t.of("user:x"), "default");
        assert_eq!(t.of("org:b"), "n");
        assert_eq!(t.of("org:a"), "default");
        assert_eq!(t.of("lit*"), "e");
        assert_eq!(t.of("litx"), "default");
        assert_eq!(t.of("[oops"), "bad");
    }
}
