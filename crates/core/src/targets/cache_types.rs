//! The targets' `[cache]` table (the runbook's `CACHE_CONFIGS`) compiled for
//! classifying keys: which cache type a key belongs to, by its Redis-glob `pattern`
//! (`*`, `?`, `[a-z]`, `[^a]`, `\x`; `*` crosses every character). Types are tried in
//! name order with `default` last and the first match wins. One classifier for every
//! engine that names cache types: `redis keys` (scanned keys) and `apm` (looked-up
//! keys in cache spans).

use super::CacheType;
use globset::{Glob, GlobBuilder, GlobMatcher};
use std::collections::BTreeMap;

/// The type of keys no pattern matches, where an engine counts every key.
pub const DEFAULT_TYPE: &str = "default";

/// The configured cache types, compiled, in matching order.
#[derive(Debug, Clone)]
pub struct CacheTypes {
    types: Vec<(String, CacheType)>,
    /// One per type; `None` for a pattern that compiles to nothing.
    matchers: Vec<Option<GlobMatcher>>,
}

impl Default for CacheTypes {
    fn default() -> Self {
        CacheTypes::new(&BTreeMap::new())
    }
}

/// A Redis glob as a glob matching whole keys. A pattern that does not compile (an
/// unclosed `[`) matches itself literally.
fn redis_glob(pattern: &str) -> Option<GlobMatcher> {
    GlobBuilder::new(pattern)
        .literal_separator(false)
        .backslash_escape(true)
        .build()
        .or_else(|_| Glob::new(&globset::escape(pattern)))
        .ok()
        .map(|g| g.compile_matcher())
}

impl CacheTypes {
    pub fn new(types: &BTreeMap<String, CacheType>) -> CacheTypes {
        let is_default = |n: &String| n.as_str() == DEFAULT_TYPE;
        let types: Vec<(String, CacheType)> = types
            .iter()
            .filter(|(n, _)| !is_default(n))
            .chain(types.iter().filter(|(n, _)| is_default(n)))
            .map(|(n, c)| (n.clone(), c.clone()))
            .collect();
        let matchers = types.iter().map(|(_, c)| redis_glob(&c.pattern)).collect();
        CacheTypes { types, matchers }
    }

    /// The first type (an index into [`CacheTypes::get`]) whose pattern matches `key`.
    pub fn index_of(&self, key: &str) -> Option<usize> {
        self.matchers
            .iter()
            .position(|m| m.as_ref().is_some_and(|m| m.is_match(key)))
    }

    /// The type of `key` counting every key: the first match, else `default`.
    pub fn of(&self, key: &str) -> &str {
        self.index_of(key)
            .and_then(|i| self.types.get(i))
            .map_or(DEFAULT_TYPE, |(n, _)| n.as_str())
    }

    /// Type `i`: its name and configuration.
    pub fn get(&self, i: usize) -> Option<(&str, &CacheType)> {
        self.types.get(i).map(|(n, c)| (n.as_str(), c))
    }

    /// How many types are configured.
    pub fn len(&self) -> usize {
        self.types.len()
    }

    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    /// The pattern of a type (`*` for an unconfigured `default`).
    pub fn pattern(&self, name: &str) -> &str {
        self.types
            .iter()
            .find(|(n, _)| n == name)
            .map_or("*", |(_, c)| c.pattern.as_str())
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
        let t = CacheTypes::new(&crate::Targets::default().cache);
        assert_eq!(t.of("powernode:cache:user_profile:42"), "user_profile");
        assert_eq!(t.of("ai_pricing/v2/gpt-4o"), "ai_pricing");
        assert_eq!(t.of("views/home/index"), "default");
        assert_eq!(t.index_of("views/home/index"), None);
        assert_eq!(t.of(""), "default");
        assert_eq!(t.get(t.len() - 1).map(|(n, _)| n), Some("default"));
        let t = types(&[("a", "x*"), ("b", "*y"), ("default", "*")]);
        assert_eq!(t.of("xy"), "a");
        assert_eq!(t.of("zy"), "b");
        assert_eq!(t.of("zz"), "default");
        assert_eq!(t.index_of("zz"), Some(2));
        assert_eq!(t.pattern("b"), "*y");
        assert_eq!(t.pattern("nothing"), "*");
    }

    #[test]
    fn redis_glob_syntax() {
        let t = types(&[
            ("q", "s?ss:*"),
            ("r", "user:[0-9]*"),
            ("n", "org:[^a]"),
            ("e", "lit\\*"),
            ("bad", "[oops"),
            ("x", "*x[yz]*"),
            ("z", "**"),
        ]);
        assert_eq!(t.of("sess:a/b:c"), "q");
        assert_eq!(t.of("user:7/x"), "r");
        assert_eq!(t.of("org:b"), "n");
        assert_eq!(t.of("org:a"), "z");
        assert_eq!(t.of("lit*"), "e");
        assert_eq!(t.of("[oops"), "bad");
        assert_eq!(t.of("axyz"), "x");
        assert_eq!(t.of("axa"), "z");
        let t = types(&[("r", "user:[0-9]*"), ("e", "exact")]);
        assert_eq!(t.index_of("user:x"), None);
        assert_eq!(t.index_of("exact"), Some(0));
        assert_eq!(t.index_of("exactly"), None);
    }
}
