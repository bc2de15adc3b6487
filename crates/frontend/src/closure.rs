//! The initial-load closure: every entry chunk plus its static imports, transitively,
//! and their CSS. Dynamic imports are not followed (they load on navigation).

use crate::manifest::ManifestChunk;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// What the first load fetches, and how each chunk got there.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Closure {
    /// Manifest keys of the JS chunks in the first load, entries first, then in the
    /// order a breadth-first walk over `imports` reaches them.
    pub chunks: Vec<String>,
    /// CSS files (output paths) of those chunks.
    pub css: BTreeSet<String>,
    /// For each chunk reached through an import, the chunk that imports it on the
    /// shortest path from an entry (entries have none).
    parent: BTreeMap<String, String>,
}

impl Closure {
    /// Walks the static imports of every entry.
    pub fn of(chunks: &BTreeMap<String, ManifestChunk>) -> Closure {
        let mut c = Closure::default();
        let mut seen = BTreeSet::new();
        let mut queue: VecDeque<&str> = chunks
            .iter()
            .filter(|(_, ch)| ch.is_entry)
            .map(|(k, _)| k.as_str())
            .collect();
        for k in &queue {
            seen.insert(k.to_string());
        }
        while let Some(key) = queue.pop_front() {
            c.chunks.push(key.to_string());
            let Some(chunk) = chunks.get(key) else {
                continue;
            };
            c.css.extend(chunk.css.iter().cloned());
            for i in &chunk.imports {
                if seen.insert(i.clone()) {
                    c.parent.insert(i.clone(), key.to_string());
                    queue.push_back(i);
                }
            }
        }
        c
    }

    pub fn contains(&self, key: &str) -> bool {
        self.chunks.iter().any(|k| k == key)
    }

    /// The static import chain from an entry to `key` (entry first), or nothing when
    /// `key` is not in the closure.
    pub fn chain(&self, key: &str) -> Vec<String> {
        if !self.contains(key) {
            return Vec::new();
        }
        let mut chain = vec![key.to_string()];
        let mut at = key;
        // The parent map is a tree (each key gets one parent, once), so this ends.
        while let Some(p) = self.parent.get(at) {
            chain.push(p.clone());
            at = p;
        }
        chain.reverse();
        chain
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::parse;

    #[test]
    fn the_closure_follows_static_imports_only_and_collects_css() {
        let m = parse(
            r#"{
          "_shared.js": { "file": "assets/shared.js", "css": ["assets/shared.css"], "imports": ["_deep.js"] },
          "_deep.js": { "file": "assets/deep.js" },
          "baz.js": { "file": "assets/baz.js", "src": "baz.js", "isDynamicEntry": true, "css": ["assets/baz.css"] },
          "views/bar.js": { "file": "assets/bar.js", "src": "views/bar.js", "isEntry": true,
                            "imports": ["_shared.js"], "dynamicImports": ["baz.js"] },
          "views/foo.js": { "file": "assets/foo.js", "src": "views/foo.js", "isEntry": true,
                            "imports": ["_shared.js"], "css": ["assets/foo.css"] }
        }"#,
        )
        .unwrap();
        let c = Closure::of(&m);
        assert_eq!(
            c.chunks,
            vec!["views/bar.js", "views/foo.js", "_shared.js", "_deep.js"]
        );
        assert!(!c.contains("baz.js"));
        assert_eq!(
            c.css.iter().collect::<Vec<_>>(),
            vec!["assets/foo.css", "assets/shared.css"]
        );
        assert_eq!(
            c.chain("_deep.js"),
            vec!["views/bar.js", "_shared.js", "_deep.js"]
        );
        assert!(c.chain("baz.js").is_empty());
    }

    #[test]
    fn import_cycles_end() {
        let m = parse(
            r#"{
          "a.js": { "file": "a.js", "isEntry": true, "imports": ["_b.js"] },
          "_b.js": { "file": "b.js", "imports": ["a.js", "_b.js"] }
        }"#,
        )
        .unwrap();
        let c = Closure::of(&m);
        assert_eq!(c.chunks, vec!["a.js", "_b.js"]);
        assert_eq!(c.chain("_b.js"), vec!["a.js", "_b.js"]);
    }
}
