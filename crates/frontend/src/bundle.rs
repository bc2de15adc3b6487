//! `frontend bundle`: reads a Vite build (`dist/` and its manifest) into
//! [`BundleMetrics`]: the initial-load closure with its compressed sizes, every other
//! chunk apart, and where each route module ended up.

use crate::baseline::BundleBaseline;
use crate::closure::Closure;
use crate::error::FrontendError;
use crate::manifest::Manifest;
use crate::sizes::{Sizes, MAX_FILE_BYTES};
use crate::snapshot::{BundleMetrics, Chunk, Route};
use crate::sources::{self, Graph};
use powertune_core::{Inspection, Targets};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Route globs used when `--routes` is not given: a feature, page or route is a
/// directory or a file directly under one of these folders.
pub const DEFAULT_ROUTES: [&str; 3] = ["src/features/*", "src/pages/*", "src/routes/*"];

/// Source modules listed per chunk at most (the count is always given).
pub const MAX_MODULES_LISTED: usize = 100;

/// What to read.
#[derive(Debug, Clone)]
pub struct BundleOptions {
    /// Vite's build output directory.
    pub dist: PathBuf,
    /// The Vite project root (manifest keys are relative to it); default: the parent
    /// of `dist`.
    pub root: Option<PathBuf>,
    /// Route globs relative to the root; empty means [`DEFAULT_ROUTES`].
    pub routes: Vec<String>,
    /// A baseline to compare with, already read, and the file it came from.
    pub baseline: Option<(PathBuf, powertune_core::baseline::Baseline<BundleBaseline>)>,
}

impl BundleOptions {
    pub fn new(dist: impl Into<PathBuf>) -> BundleOptions {
        BundleOptions {
            dist: dist.into(),
            root: None,
            routes: Vec::new(),
            baseline: None,
        }
    }

    fn root(&self) -> PathBuf {
        match &self.root {
            Some(r) => r.clone(),
            None => {
                let abs = std::path::absolute(&self.dist).unwrap_or_else(|_| self.dist.clone());
                abs.parent().map(Path::to_path_buf).unwrap_or(abs)
            }
        }
    }

    fn globs(&self) -> Vec<String> {
        if self.routes.is_empty() {
            DEFAULT_ROUTES.iter().map(|s| s.to_string()).collect()
        } else {
            self.routes.clone()
        }
    }
}

/// Reads, measures, judges: the one entry of `frontend bundle`.
pub fn inspect(
    opts: &BundleOptions,
    targets: &Targets,
) -> Result<Inspection<BundleMetrics>, FrontendError> {
    let metrics = collect(opts, budget_bytes(targets))?;
    let findings = crate::judge::bundle(&metrics);
    let text = crate::render::bundle(&metrics);
    Ok(Inspection::new("frontend bundle", findings, metrics, text))
}

/// The bundle budget in bytes: `frontend.bundle_gzip_kb` KiB (1024 bytes), so the
/// target reads as written in every output.
pub fn budget_bytes(targets: &Targets) -> u64 {
    (targets.frontend.bundle_gzip_kb * 1024.0).round() as u64
}

/// Measures the build in `opts.dist`.
pub fn collect(opts: &BundleOptions, budget_gzip: u64) -> Result<BundleMetrics, FrontendError> {
    let manifest = Manifest::find(&opts.dist)?;
    let root = opts.root();
    if !root.is_dir() {
        return Err(FrontendError::Input(format!(
            "--root {}: not a directory; give the Vite project (where vite.config is)",
            root.display()
        )));
    }
    let closure = Closure::of(&manifest.chunks);
    if closure.chunks.is_empty() {
        return Err(FrontendError::Input(format!(
            "{}: no chunk is marked \"isEntry\"; is this a client build's manifest?",
            manifest.path.display()
        )));
    }
    let mut chunks = Vec::new();
    let mut css_seen: BTreeMap<String, usize> = BTreeMap::new();
    for (key, c) in &manifest.chunks {
        let is_js = [".js", ".mjs", ".cjs"].iter().any(|e| c.file.ends_with(e));
        let initial = closure.contains(key);
        if is_js {
            let (modules, modules_total) = modules(&opts.dist, &root, &c.file, c.src.as_deref());
            chunks.push(Chunk {
                id: chunk_id(key, &c.file),
                kind: "js".into(),
                key: key.clone(),
                file: c.file.clone(),
                initial,
                entry: c.is_entry,
                dynamic_entry: c.is_dynamic_entry,
                sizes: measure(&opts.dist, &c.file)?,
                modules,
                modules_total,
            });
        } else if c.file.ends_with(".css") && !css_seen.contains_key(&c.file) {
            // A CSS entry (`build.cssCodeSplit: false` or a CSS input).
            css_seen.insert(c.file.clone(), chunks.len());
            chunks.push(css_chunk(&opts.dist, key, &c.file, initial || c.is_entry)?);
        }
        for css in &c.css {
            let now_initial = closure.css.contains(css);
            match css_seen.get(css) {
                Some(&i) => chunks[i].initial |= now_initial,
                None => {
                    css_seen.insert(css.clone(), chunks.len());
                    chunks.push(css_chunk(&opts.dist, key, css, now_initial)?);
                }
            }
        }
    }
    chunks.sort_by(|a, b| {
        b.initial
            .cmp(&a.initial)
            .then(b.sizes.gzip.cmp(&a.sizes.gzip))
            .then(a.id.cmp(&b.id))
    });
    let sum = |f: &dyn Fn(&Chunk) -> bool| chunks.iter().filter(|c| f(c)).map(|c| c.sizes).sum();
    let globs = opts.globs();
    let routes = routes(&root, &globs, &manifest, &closure)?;
    let mut m = BundleMetrics {
        dist: opts.dist.display().to_string(),
        manifest: manifest.location.to_string(),
        root: root.display().to_string(),
        budget_gzip,
        initial: sum(&|c| c.initial),
        initial_js: sum(&|c| c.initial && c.kind == "js"),
        initial_css: sum(&|c| c.initial && c.kind == "css"),
        lazy: sum(&|c| !c.initial),
        chunks,
        route_globs: globs,
        routes,
        baseline: None,
    };
    if let Some((path, b)) = &opts.baseline {
        m.baseline = Some(crate::baseline::compare(path, b, &m));
    }
    Ok(m)
}

fn css_chunk(dist: &Path, key: &str, file: &str, initial: bool) -> Result<Chunk, FrontendError> {
    Ok(Chunk {
        id: dehash(file),
        kind: "css".into(),
        key: key.to_string(),
        file: file.to_string(),
        initial,
        entry: false,
        dynamic_entry: false,
        sizes: measure(dist, file)?,
        modules: Vec::new(),
        modules_total: 0,
    })
}

fn measure(dist: &Path, file: &str) -> Result<Sizes, FrontendError> {
    let path = dist.join(file);
    if !path.is_file() {
        return Err(FrontendError::Input(format!(
            "{}: named in the manifest but missing; is the manifest from this build?",
            path.display()
        )));
    }
    Sizes::of_file(&path)
}

/// The manifest key for chunks named after a source file; otherwise the output file
/// without its content hash, so the same chunk matches across builds.
pub fn chunk_id(key: &str, file: &str) -> String {
    if key.starts_with('_') {
        dehash(file)
    } else {
        key.to_string()
    }
}

/// `assets/shared-ChJ_j-JJ.css` → `assets/shared.css` (Vite's `[name]-[hash]` with an
/// 8-character hash); other names are kept.
pub fn dehash(file: &str) -> String {
    let (stem, ext) = match file.rfind('.') {
        Some(d) if !file[d..].contains('/') => (&file[..d], &file[d..]),
        _ => (file, ""),
    };
    let n = stem.len();
    if n > 9 && stem.is_char_boundary(n - 9) && stem.as_bytes()[n - 9] == b'-' {
        let hash = &stem[n - 8..];
        if hash
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
        {
            return format!("{}{ext}", &stem[..n - 9]);
        }
    }
    file.to_string()
}

/// The source modules of a chunk, from its sourcemap when the build wrote one.
fn modules(dist: &Path, root: &Path, file: &str, src: Option<&str>) -> (Vec<String>, usize) {
    let map = dist.join(format!("{file}.map"));
    let from_map = std::fs::metadata(&map)
        .ok()
        .filter(|m| m.is_file() && m.len() <= MAX_FILE_BYTES)
        .and_then(|_| std::fs::read(&map).ok())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("sources").and_then(|s| s.as_array()).cloned());
    let Some(list) = from_map else {
        let listed: Vec<String> = src.map(|s| vec![s.to_string()]).unwrap_or_default();
        let n = listed.len();
        return (listed, n);
    };
    let map_dir = std::path::absolute(map.parent().unwrap_or(dist)).unwrap_or_default();
    let root = std::path::absolute(root).unwrap_or_default();
    let names: Vec<String> = list
        .iter()
        .filter_map(|s| s.as_str())
        .map(|s| {
            let joined = lexical(&map_dir.join(s));
            // Outside the root (a hoisted or linked node_modules): from node_modules on.
            joined
                .strip_prefix(&root)
                .map(sources::slash)
                .unwrap_or_else(|_| match s.find("node_modules/") {
                    Some(i) => s[i..].to_string(),
                    None => s.to_string(),
                })
        })
        .collect();
    let total = names.len();
    (names.into_iter().take(MAX_MODULES_LISTED).collect(), total)
}

fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Where each route module ended up.
fn routes(
    root: &Path,
    globs: &[String],
    manifest: &Manifest,
    closure: &Closure,
) -> Result<Vec<Route>, FrontendError> {
    let found = sources::matching(root, globs).map_err(FrontendError::Input)?;
    let mut graph = Graph::new(root);
    let mut out = Vec::new();
    for route in found {
        let own: Vec<(&String, &crate::manifest::ManifestChunk)> = manifest
            .chunks
            .iter()
            .filter(|(k, _)| sources::within(k, &route))
            .collect();
        let chunk_of = |k: &str| manifest.chunks.get(k).map(|c| c.file.clone());
        // Its own chunk is in the first load: the manifest has the whole chain.
        if let Some((k, _)) = own.iter().find(|(k, _)| closure.contains(k)) {
            out.push(Route {
                route,
                status: "initial".into(),
                chunk: chunk_of(k),
                chain: closure.chain(k),
            });
            continue;
        }
        // Merged into a first-load chunk: follow the sources from that chunk's module.
        let mut merged = None;
        for key in &closure.chunks {
            let Some(src) = manifest.chunks.get(key).and_then(|c| c.src.clone()) else {
                continue;
            };
            if let Some(inner) = graph.chain_to(std::slice::from_ref(&src), &route) {
                let mut chain = closure.chain(key);
                chain.extend(inner.into_iter().skip(1));
                merged = Some(chain);
                break;
            }
        }
        if let Some(chain) = merged {
            out.push(Route {
                route,
                status: "initial".into(),
                chunk: None,
                chain,
            });
            continue;
        }
        // Its own lazy chunk, or merged into one.
        let mut chunk = own.first().map(|(_, c)| c.file.clone());
        if chunk.is_none() {
            for (key, c) in &manifest.chunks {
                let Some(src) = c.src.clone() else { continue };
                if !closure.contains(key)
                    && graph.chain_to(std::slice::from_ref(&src), &route).is_some()
                {
                    chunk = Some(c.file.clone());
                    break;
                }
            }
        }
        let status = if chunk.is_none() { "absent" } else { "lazy" };
        out.push(Route {
            chunk,
            route,
            status: status.into(),
            chain: Vec::new(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_dropped_only_where_vite_puts_them() {
        assert_eq!(dehash("assets/shared-ChJ_j-JJ.css"), "assets/shared.css");
        assert_eq!(dehash("assets/index-B7PI925R.js"), "assets/index.js");
        assert_eq!(dehash("assets/vendor.js"), "assets/vendor.js");
        assert_eq!(dehash("assets/my-lib.js"), "assets/my-lib.js");
        assert_eq!(
            chunk_id("src/main.tsx", "assets/main-B7PI925R.js"),
            "src/main.tsx"
        );
        assert_eq!(
            chunk_id("_vendor-B7PI925R.js", "assets/vendor-B7PI925R.js"),
            "assets/vendor.js"
        );
    }
}
