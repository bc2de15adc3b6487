//! The HTML page of a `load` report.

use powertune_core::html::Page;
use powertune_core::Report;

pub fn page(report: &Report) -> Page {
    super::generic(report)
}
