//! Vite's build manifest: where it is, and what it says.
//!
//! `build.manifest: true` writes `<outDir>/.vite/manifest.json` (Vite 5 and later);
//! Vite 4 wrote `<outDir>/manifest.json`. Both are looked for, in that order. The
//! manifest maps a key (the source path relative to Vite's root for entries and
//! dynamic entries, `_name-hash.js` for shared chunks) to the chunk built from it.

use crate::error::FrontendError;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the manifest is looked for inside the build output, newest layout first.
pub const LOCATIONS: [&str; 2] = [".vite/manifest.json", "manifest.json"];

/// One manifest entry (Vite's `ManifestChunk`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestChunk {
    /// The output file, relative to the build output directory.
    pub file: String,
    #[serde(default)]
    pub src: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub is_entry: bool,
    #[serde(default)]
    pub is_dynamic_entry: bool,
    /// Static imports: manifest keys.
    #[serde(default)]
    pub imports: Vec<String>,
    /// Dynamic imports: manifest keys.
    #[serde(default)]
    pub dynamic_imports: Vec<String>,
    /// CSS files this chunk imports, relative to the output directory.
    #[serde(default)]
    pub css: Vec<String>,
    /// Other assets (images, fonts) this chunk imports.
    #[serde(default)]
    pub assets: Vec<String>,
}

/// A manifest read from a build output directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The file it was read from.
    pub path: PathBuf,
    /// Which of [`LOCATIONS`] it was found at.
    pub location: &'static str,
    pub chunks: BTreeMap<String, ManifestChunk>,
}

impl Manifest {
    /// Finds and reads the manifest of the build in `dist`.
    pub fn find(dist: &Path) -> Result<Manifest, FrontendError> {
        if !dist.is_dir() {
            return Err(FrontendError::Input(format!(
                "{}: not a directory; give Vite's build output, e.g. frontend/dist",
                dist.display()
            )));
        }
        for location in LOCATIONS {
            let path = dist.join(location);
            if path.is_file() {
                let text = powertune_core::baseline::read_limited(&path)
                    .map_err(|e| FrontendError::Input(format!("{}: {e}", path.display())))?;
                let chunks = parse(&text)
                    .map_err(|e| FrontendError::Input(format!("{}: {e}", path.display())))?;
                return Ok(Manifest {
                    path,
                    location,
                    chunks,
                });
            }
        }
        Err(FrontendError::Input(format!(
            "{}: no Vite manifest (looked for {} and {}); enable it with `build: {{ manifest: true }}` in vite.config and build again",
            dist.display(),
            LOCATIONS[0],
            LOCATIONS[1]
        )))
    }

    /// The keys of the entry chunks, in key order.
    pub fn entries(&self) -> Vec<&str> {
        self.chunks
            .iter()
            .filter(|(_, c)| c.is_entry)
            .map(|(k, _)| k.as_str())
            .collect()
    }
}

/// Parses manifest JSON; every import must name a key of the same manifest.
pub fn parse(text: &str) -> Result<BTreeMap<String, ManifestChunk>, String> {
    let chunks: BTreeMap<String, ManifestChunk> = serde_json::from_str(text).map_err(|e| {
        format!("not a Vite manifest ({e}); expected an object of chunks with a \"file\" each")
    })?;
    for (key, c) in &chunks {
        for i in c.imports.iter().chain(&c.dynamic_imports) {
            if !chunks.contains_key(i) {
                return Err(format!(
                    "chunk \"{key}\" imports \"{i}\", which the manifest does not list"
                ));
            }
        }
        if c.file.is_empty() {
            return Err(format!("chunk \"{key}\" has an empty \"file\""));
        }
    }
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{
      "_shared-B7PI925R.js": { "file": "assets/shared-B7PI925R.js", "name": "shared", "css": ["assets/shared-ChJ_j-JJ.css"] },
      "baz.js": { "file": "assets/baz-B2H3sXNv.js", "name": "baz", "src": "baz.js", "isDynamicEntry": true },
      "views/bar.js": { "file": "assets/bar-gkvgaI9m.js", "name": "bar", "src": "views/bar.js", "isEntry": true,
                        "imports": ["_shared-B7PI925R.js"], "dynamicImports": ["baz.js"] },
      "views/foo.js": { "file": "assets/foo-BRBmoGS9.js", "name": "foo", "src": "views/foo.js", "isEntry": true,
                        "imports": ["_shared-B7PI925R.js"], "css": ["assets/foo-5UjPuW-k.css"] }
    }"#;

    #[test]
    fn the_documented_example_parses() {
        let m = parse(DOC).unwrap();
        assert_eq!(m.len(), 4);
        assert!(m["views/foo.js"].is_entry);
        assert_eq!(m["views/bar.js"].dynamic_imports, vec!["baz.js"]);
        assert!(m["baz.js"].is_dynamic_entry);
    }

    #[test]
    fn an_import_of_an_unknown_key_is_refused() {
        let e = parse(r#"{"a.js": {"file": "a.js", "imports": ["_b.js"]}}"#).unwrap_err();
        assert!(e.contains("\"_b.js\""), "{e}");
    }

    #[test]
    fn not_a_manifest_says_what_was_expected() {
        let e = parse("[1,2]").unwrap_err();
        assert!(e.contains("not a Vite manifest"), "{e}");
    }

    #[test]
    fn both_locations_are_found_and_a_missing_one_says_how_to_enable_it() {
        let dir = tempfile::tempdir().unwrap();
        let e = Manifest::find(dir.path()).unwrap_err().to_string();
        assert!(e.contains("manifest: true"), "{e}");
        std::fs::write(dir.path().join("manifest.json"), DOC).unwrap();
        assert_eq!(
            Manifest::find(dir.path()).unwrap().location,
            "manifest.json"
        );
        std::fs::create_dir(dir.path().join(".vite")).unwrap();
        std::fs::write(dir.path().join(".vite/manifest.json"), DOC).unwrap();
        let m = Manifest::find(dir.path()).unwrap();
        assert_eq!(m.location, ".vite/manifest.json");
        assert_eq!(m.entries(), vec!["views/bar.js", "views/foo.js"]);
    }
}
