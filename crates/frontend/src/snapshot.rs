//! What `frontend bundle` measured: the typed metrics payload of its report
//! (schema `docs/schema/frontend-bundle.json`).

use crate::sizes::Sizes;
use serde::{Deserialize, Serialize};

/// A JS chunk or a CSS file of the build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Chunk {
    /// Stable across builds: the manifest key for chunks built from a source file,
    /// otherwise the output file without its content hash (`assets/vendor.js`).
    pub id: String,
    /// `js` or `css`.
    pub kind: String,
    /// The manifest key (JS chunks) or the key of the first chunk naming it (CSS).
    pub key: String,
    /// The output file, relative to the build directory.
    pub file: String,
    /// Whether the first load fetches it.
    pub initial: bool,
    pub entry: bool,
    pub dynamic_entry: bool,
    pub sizes: Sizes,
    /// Source modules in it: the sourcemap's `sources` when the build wrote one
    /// (`build.sourcemap`), else the manifest's `src`.
    pub modules: Vec<String>,
    /// How many source modules the sourcemap names (more than `modules` lists when
    /// past the listing cap).
    pub modules_total: usize,
}

/// How one route module was found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// The route file or directory, relative to the project root.
    pub route: String,
    /// `lazy` (only reached through dynamic imports), `initial` (in the first load)
    /// or `absent` (in no chunk of the build).
    pub status: String,
    /// Its own chunk's output file, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<String>,
    /// For `initial`: the static import chain from an entry (manifest keys, then
    /// source modules inside a chunk), ending at the route's module.
    pub chain: Vec<String>,
}

/// One chunk's change against the baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChunkDelta {
    pub id: String,
    /// `added`, `removed`, `changed` or `same`.
    pub change: String,
    /// Whether it is in the first load now (or was, for a removed one).
    pub initial: bool,
    pub before_gzip: u64,
    pub after_gzip: u64,
    pub delta_gzip: i64,
}

/// This build against a saved baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Comparison {
    pub baseline_file: String,
    pub saved_at: String,
    pub initial_before: Sizes,
    pub initial_after: Sizes,
    pub delta_gzip: i64,
    pub delta_brotli: i64,
    pub delta_raw: i64,
    /// Chunks that changed, were added or removed, largest gzip change first.
    pub chunks: Vec<ChunkDelta>,
}

/// The whole payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BundleMetrics {
    /// The build directory as given.
    pub dist: String,
    /// The manifest read, relative to `dist`.
    pub manifest: String,
    /// The project root the manifest's keys and the route glob are relative to.
    pub root: String,
    /// The budget the initial load is judged against (bytes, gzip).
    pub budget_gzip: u64,
    /// The first load: JS and CSS of the entries' static closure.
    pub initial: Sizes,
    pub initial_js: Sizes,
    pub initial_css: Sizes,
    /// Everything else (lazy chunks and their CSS).
    pub lazy: Sizes,
    /// Every chunk and CSS file, first-load ones first, each group largest gzip first.
    pub chunks: Vec<Chunk>,
    /// The route globs used.
    pub route_globs: Vec<String>,
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Comparison>,
}

impl BundleMetrics {
    pub fn initial_chunks(&self) -> impl Iterator<Item = &Chunk> {
        self.chunks.iter().filter(|c| c.initial)
    }
    pub fn lazy_chunks(&self) -> impl Iterator<Item = &Chunk> {
        self.chunks.iter().filter(|c| !c.initial)
    }
}
