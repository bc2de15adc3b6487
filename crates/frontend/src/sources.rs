//! The project's sources, for what the manifest cannot say: which files the route
//! glob names, and which static `import` chain pulls a module into a chunk when the
//! bundler merged it there (a route imported statically has no chunk of its own).
//!
//! The import scan reads ES module syntax: `import … from 'x'`, `import 'x'`,
//! `export … from 'x'` are static, `import('x')` is dynamic, `import type` and
//! `export type` are skipped (they vanish at build), comments and string contents
//! are ignored. Relative and root-absolute (`/src/…`) specifiers are resolved with
//! the extensions Vite tries and `index.*`; package and alias specifiers are leaves.
//! HTML entries contribute their `<script src>` files.

use globset::{Glob, GlobSetBuilder};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Component, Path, PathBuf};

/// Directory entries walked under the project root at most.
pub const MAX_ENTRIES: usize = 100_000;
/// Source files larger than this are not scanned for imports (1 MiB).
pub const MAX_SOURCE_BYTES: u64 = 1024 * 1024;
/// Extensions tried, in Vite's `resolve.extensions` order, then `index.*`.
pub const EXTENSIONS: [&str; 7] = [".mjs", ".js", ".mts", ".ts", ".jsx", ".tsx", ".json"];
/// Directories that hold no project sources (installed packages, build output): the
/// route glob and the import scan never look inside them.
const NOT_SOURCES: [&str; 3] = ["node_modules", "dist", "build"];

/// Files and directories under `root` matching any of `globs` (relative paths with
/// `/`), outermost only: a match inside a matched directory is part of it.
pub fn matching(root: &Path, globs: &[String]) -> Result<Vec<String>, String> {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        b.add(Glob::new(g).map_err(|e| format!("--routes '{g}': {e}"))?);
    }
    let set = b.build().map_err(|e| format!("--routes: {e}"))?;
    let mut found: Vec<String> = Vec::new();
    let mut queue = VecDeque::from([PathBuf::new()]);
    let mut seen = 0usize;
    while let Some(rel) = queue.pop_front() {
        let dir = root.join(&rel);
        let Ok(read) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut names: Vec<_> = read.flatten().collect();
        names.sort_by_key(|e| e.file_name());
        for e in names {
            seen += 1;
            if seen > MAX_ENTRIES {
                return Err(format!(
                    "{}: more than {MAX_ENTRIES} files and directories; give --root the frontend project",
                    root.display()
                ));
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let path = rel.join(&name);
            let shown = slash(&path);
            let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if set.is_match(&shown) {
                found.push(shown);
                continue;
            }
            if is_dir && !name.starts_with('.') && !NOT_SOURCES.contains(&name.as_str()) {
                queue.push_back(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// A path with `/` separators.
pub fn slash(p: &Path) -> String {
    p.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether module `m` is `route` or lies under it.
pub fn within(m: &str, route: &str) -> bool {
    m == route
        || m.strip_prefix(route)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The static and dynamic import specifiers of one module's text.
#[derive(Debug, Default, PartialEq)]
pub struct Imports {
    pub static_: Vec<String>,
    pub dynamic: Vec<String>,
}

/// Scans JS/TS source for import specifiers.
pub fn scan(text: &str) -> Imports {
    let b = text.as_bytes();
    let mut out = Imports::default();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => i = skip_until(b, i + 2, b"\n"),
            b'/' if b.get(i + 1) == Some(&b'*') => i = skip_until(b, i + 2, b"*/"),
            b'\'' | b'"' | b'`' => i = string_at(b, i).1,
            c if is_ident(c) => {
                let start = i;
                while i < b.len() && is_ident(b[i]) {
                    i += 1;
                }
                let prev = start.checked_sub(1).map(|p| b[p]);
                if prev == Some(b'.') {
                    continue;
                }
                match &b[start..i] {
                    b"import" => i = import_at(b, i, &mut out),
                    b"export" => i = export_at(b, i, &mut out),
                    _ => {}
                }
            }
            _ => i += 1,
        }
    }
    out
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$'
}

fn skip_until(b: &[u8], from: usize, end: &[u8]) -> usize {
    let mut i = from;
    while i < b.len() {
        if b[i..].starts_with(end) {
            return i + end.len();
        }
        i += 1;
    }
    b.len()
}

fn skip_space(b: &[u8], mut i: usize) -> usize {
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if b[i..].starts_with(b"//") {
            i = skip_until(b, i + 2, b"\n");
        } else if b[i..].starts_with(b"/*") {
            i = skip_until(b, i + 2, b"*/");
        } else {
            return i;
        }
    }
}

/// The string literal starting at `i` (its contents) and the index after it.
fn string_at(b: &[u8], i: usize) -> (String, usize) {
    let q = b[i];
    let mut j = i + 1;
    while j < b.len() && b[j] != q {
        if b[j] == b'\\' {
            j += 1;
        }
        if q != b'`' && b[j] == b'\n' {
            break;
        }
        j += 1;
    }
    let end = j.min(b.len());
    (
        String::from_utf8_lossy(&b[i + 1..end]).into_owned(),
        (end + 1).min(b.len()),
    )
}

fn word_at(b: &[u8], i: usize) -> &[u8] {
    let mut j = i;
    while j < b.len() && is_ident(b[j]) {
        j += 1;
    }
    &b[i..j]
}

/// After the keyword `import` at `i`.
fn import_at(b: &[u8], i: usize, out: &mut Imports) -> usize {
    let j = skip_space(b, i);
    match b.get(j) {
        Some(b'(') => {
            let k = skip_space(b, j + 1);
            if matches!(b.get(k), Some(b'\'' | b'"' | b'`')) {
                let (s, end) = string_at(b, k);
                if !s.contains("${") {
                    out.dynamic.push(s);
                }
                return end;
            }
            j + 1
        }
        Some(b'.') => j + 1,
        Some(b'\'' | b'"') => {
            let (s, end) = string_at(b, j);
            out.static_.push(s);
            end
        }
        Some(_) => {
            let w = word_at(b, j);
            if w == b"type" {
                let k = skip_space(b, j + 4);
                // `import type X from` / `import type {…}` vs a default import named `type`.
                if matches!(b.get(k), Some(b'{' | b'*'))
                    || (b.get(k).is_some_and(|c| is_ident(*c)) && word_at(b, k) != b"from")
                {
                    return k;
                }
            }
            from_clause(b, j, out)
        }
        None => j,
    }
}

/// After the keyword `export` at `i`: only re-exports (`export … from 'x'`) import.
fn export_at(b: &[u8], i: usize, out: &mut Imports) -> usize {
    let j = skip_space(b, i);
    match b.get(j) {
        Some(b'{' | b'*') => from_clause(b, j, out),
        _ => j,
    }
}

/// Reads up to the clause's `from 'x'` (or gives up at `;` or a keyword line) and
/// records `x` as static.
fn from_clause(b: &[u8], mut i: usize, out: &mut Imports) -> usize {
    let mut depth = 0i32;
    while i < b.len() {
        match b[i] {
            b'{' => depth += 1,
            b'}' => depth -= 1,
            b';' if depth <= 0 => return i + 1,
            b'\'' | b'"' if depth <= 0 => {
                let (s, end) = string_at(b, i);
                out.static_.push(s);
                return end;
            }
            b'\'' | b'"' => i = string_at(b, i).1 - 1,
            _ => {}
        }
        i += 1;
    }
    i
}

/// The `src` of every `<script>` tag of an HTML page.
pub fn html_scripts(text: &str) -> Vec<String> {
    let lower = text.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(p) = lower[from..].find("<script") {
        let start = from + p;
        let end = lower[start..].find('>').map_or(lower.len(), |e| start + e);
        let tag = &text[start..end];
        let tl = &lower[start..end];
        if let Some(s) = tl.find("src=") {
            let rest = &tag[s + 4..];
            let q = rest.chars().next().unwrap_or(' ');
            let v: String = if q == '"' || q == '\'' {
                rest[1..].chars().take_while(|c| *c != q).collect()
            } else {
                rest.chars().take_while(|c| !c.is_whitespace()).collect()
            };
            out.push(v);
        }
        from = end;
    }
    out
}

/// The static import graph of a project, read lazily from the modules reached.
pub struct Graph<'a> {
    root: &'a Path,
    edges: BTreeMap<String, Vec<String>>,
}

impl<'a> Graph<'a> {
    pub fn new(root: &'a Path) -> Graph<'a> {
        Graph {
            root,
            edges: BTreeMap::new(),
        }
    }

    /// The resolved static imports of module `m` (a path relative to the root).
    fn imports(&mut self, m: &str) -> Vec<String> {
        if let Some(e) = self.edges.get(m) {
            return e.clone();
        }
        let path = self.root.join(m);
        let text = match std::fs::metadata(&path) {
            Ok(md) if md.is_file() && md.len() <= MAX_SOURCE_BYTES => {
                std::fs::read_to_string(&path).unwrap_or_default()
            }
            _ => String::new(),
        };
        let specs = if m.ends_with(".html") {
            html_scripts(&text)
        } else {
            scan(&text).static_
        };
        let dir = Path::new(m).parent().unwrap_or(Path::new("")).to_path_buf();
        let resolved: Vec<String> = specs
            .iter()
            .filter_map(|s| resolve(self.root, &dir, s))
            .collect();
        self.edges.insert(m.to_string(), resolved.clone());
        resolved
    }

    /// The shortest static chain from any of `starts` to a module under `route`
    /// (start first), if there is one.
    pub fn chain_to(&mut self, starts: &[String], route: &str) -> Option<Vec<String>> {
        let mut parent: BTreeMap<String, String> = BTreeMap::new();
        let mut seen: BTreeSet<String> = starts.iter().cloned().collect();
        let mut queue: VecDeque<String> = starts.iter().cloned().collect();
        while let Some(m) = queue.pop_front() {
            if within(&m, route) {
                let mut chain = vec![m.clone()];
                let mut at = m;
                while let Some(p) = parent.get(&at) {
                    chain.push(p.clone());
                    at = p.clone();
                }
                chain.reverse();
                return Some(chain);
            }
            if seen.len() > MAX_ENTRIES {
                break;
            }
            for next in self.imports(&m) {
                if seen.insert(next.clone()) {
                    parent.insert(next.clone(), m.clone());
                    queue.push_back(next);
                }
            }
        }
        None
    }
}

/// Resolves an import specifier from a module in `dir` to a file relative to `root`.
fn resolve(root: &Path, dir: &Path, spec: &str) -> Option<String> {
    let spec = spec.split(['?', '#']).next().unwrap_or(spec);
    let base = if let Some(abs) = spec.strip_prefix('/') {
        PathBuf::from(abs)
    } else if spec.starts_with("./") || spec.starts_with("../") {
        dir.join(spec)
    } else {
        return None;
    };
    let base = normalize(&base)?;
    let file = |p: &Path| root.join(p).is_file();
    if file(&base) {
        return Some(slash(&base));
    }
    let s = slash(&base);
    for ext in EXTENSIONS {
        let p = PathBuf::from(format!("{s}{ext}"));
        if file(&p) {
            return Some(slash(&p));
        }
    }
    for ext in EXTENSIONS {
        let p = base.join(format!("index{ext}"));
        if file(&p) {
            return Some(slash(&p));
        }
    }
    None
}

/// Folds `.` and `..`; a path that climbs above the root is not the project's.
fn normalize(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(n) => out.push(n),
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_dynamic_and_type_imports_are_told_apart() {
        let src = r#"
            import React, { lazy } from 'react';
            import './app.css';
            import type { Props } from './types';
            import type Foo from "./foo-type";
            export { a, b } from "./reexport";
            export * from './star';
            export type { T } from './t';
            export const x = 1;
            // import nope from './commented';
            /* import('./commented-dynamic') */
            const s = "import fake from './in-string'";
            const Orders = lazy(() => import('./features/orders'));
            const meta = import.meta.env;
            import {
              one,
              two,
            } from '../multi/line';
        "#;
        let i = scan(src);
        assert_eq!(
            i.static_,
            vec![
                "react",
                "./app.css",
                "./reexport",
                "./star",
                "../multi/line"
            ]
        );
        assert_eq!(i.dynamic, vec!["./features/orders"]);
    }

    #[test]
    fn html_script_sources_are_read() {
        let html = r#"<head><SCRIPT type="module" src="/src/main.tsx"></script>
            <script>inline()</script><script src='/a.js' defer></script></head>"#;
        assert_eq!(html_scripts(html), vec!["/src/main.tsx", "/a.js"]);
    }

    #[test]
    fn chains_resolve_extensions_and_index_files() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for (p, text) in [
            (
                "index.html",
                r#"<script type="module" src="/src/main.tsx"></script>"#,
            ),
            (
                "src/main.tsx",
                "import { H } from './shell/header';\nconst L = import('./features/lazy');",
            ),
            (
                "src/shell/header.tsx",
                "import { S } from '../features/reports';",
            ),
            ("src/features/reports/index.tsx", "export const S = 1;"),
            ("src/features/lazy/index.tsx", "export default 1;"),
        ] {
            std::fs::create_dir_all(r.join(p).parent().unwrap()).unwrap();
            std::fs::write(r.join(p), text).unwrap();
        }
        let routes = matching(r, &["src/features/*".to_string()]).unwrap();
        assert_eq!(routes, vec!["src/features/lazy", "src/features/reports"]);
        let mut g = Graph::new(r);
        let starts = vec!["index.html".to_string()];
        assert_eq!(
            g.chain_to(&starts, "src/features/reports").unwrap(),
            vec![
                "index.html",
                "src/main.tsx",
                "src/shell/header.tsx",
                "src/features/reports/index.tsx"
            ]
        );
        assert!(g.chain_to(&starts, "src/features/lazy").is_none());
        assert!(within("src/features/a/b.ts", "src/features/a"));
        assert!(!within("src/features/ab.ts", "src/features/a"));
    }

    #[test]
    fn a_bad_glob_names_the_flag() {
        let e = matching(Path::new("."), &["src/[".to_string()]).unwrap_err();
        assert!(e.contains("--routes 'src/['"), "{e}");
    }
}
