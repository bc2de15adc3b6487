//! `--save-baseline` / `--baseline` for `frontend bundle`: the sizes of every chunk,
//! stored in powertune's one baseline format (kind `frontend-bundle`), and the
//! per-chunk and total deltas of a later build against it.

use crate::sizes::Sizes;
use crate::snapshot::{BundleMetrics, ChunkDelta, Comparison};
use powertune_core::baseline::{self, Baseline, BaselineError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The baseline file's `kind`.
pub const KIND: &str = "frontend-bundle";

/// What a baseline keeps of a build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BundleBaseline {
    pub initial: Sizes,
    pub chunks: Vec<BaselineChunk>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BaselineChunk {
    pub id: String,
    pub initial: bool,
    pub sizes: Sizes,
}

impl BundleBaseline {
    pub fn of(m: &BundleMetrics) -> BundleBaseline {
        BundleBaseline {
            initial: m.initial,
            chunks: m
                .chunks
                .iter()
                .map(|c| BaselineChunk {
                    id: c.id.clone(),
                    initial: c.initial,
                    sizes: c.sizes,
                })
                .collect(),
        }
    }

    pub fn save(m: &BundleMetrics, path: &Path) -> Result<(), BaselineError> {
        baseline::save(path, KIND, &m.dist, &BundleBaseline::of(m))
    }

    pub fn load(path: &Path) -> Result<Baseline<BundleBaseline>, BaselineError> {
        baseline::load(path, KIND)
    }
}

/// One side of a chunk's comparison: its gzip bytes and whether it is first-load.
type Side = Option<(u64, bool)>;

fn delta(after: u64, before: u64) -> i64 {
    after as i64 - before as i64
}

/// This build against `before`; chunks of the same id (hashes dropped) are summed
/// on each side, so two CSS files of one name compare as one.
pub fn compare(path: &Path, before: &Baseline<BundleBaseline>, now: &BundleMetrics) -> Comparison {
    let mut sides: BTreeMap<&str, (Side, Side)> = BTreeMap::new();
    for c in &before.data.chunks {
        let e = sides.entry(&c.id).or_default();
        let (g, i) = e.0.unwrap_or((0, false));
        e.0 = Some((g + c.sizes.gzip, i || c.initial));
    }
    for c in &now.chunks {
        let e = sides.entry(&c.id).or_default();
        let (g, i) = e.1.unwrap_or((0, false));
        e.1 = Some((g + c.sizes.gzip, i || c.initial));
    }
    let mut chunks: Vec<ChunkDelta> = sides
        .into_iter()
        .map(|(id, (b, a))| {
            let (before_gzip, was) = b.unwrap_or((0, false));
            let (after_gzip, is) = a.unwrap_or((0, false));
            let change = match (b, a) {
                (None, _) => "added",
                (_, None) => "removed",
                _ if before_gzip != after_gzip || was != is => "changed",
                _ => "same",
            };
            ChunkDelta {
                id: id.to_string(),
                change: change.into(),
                initial: if a.is_some() { is } else { was },
                before_gzip,
                after_gzip,
                delta_gzip: delta(after_gzip, before_gzip),
            }
        })
        .filter(|d| d.change != "same")
        .collect();
    chunks.sort_by(|a, b| {
        b.delta_gzip
            .abs()
            .cmp(&a.delta_gzip.abs())
            .then(a.id.cmp(&b.id))
    });
    let (b, a) = (before.data.initial, now.initial);
    Comparison {
        baseline_file: path.display().to_string(),
        saved_at: before.saved_at.clone(),
        initial_before: b,
        initial_after: a,
        delta_gzip: delta(a.gzip, b.gzip),
        delta_brotli: delta(a.brotli, b.brotli),
        delta_raw: delta(a.raw, b.raw),
        chunks,
    }
}
