//! A scenario file whose text the caller has already read (and perhaps adjusted,
//! e.g. `powertune capacity` blanks its own `[capacity]` table), validated as if read
//! from its path: errors name the path, CSV data files are read relative to it.

use super::context::PlanError;
use super::model::Plan;
use powertune_core::config_file::Source;
use std::path::Path;

impl Plan {
    /// Validates `text` as the scenario file at `path` (nothing is read from `path`
    /// itself; its folder is where CSV data files are looked up).
    pub fn from_text_at(text: &str, path: &Path) -> Result<Plan, PlanError> {
        let source = Source::new(&path.display().to_string(), text);
        Plan::parse(&source, path.parent().map(Path::to_path_buf))
    }
}
