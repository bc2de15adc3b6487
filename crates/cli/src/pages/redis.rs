//! The HTML page of a `redis` report.

use powertune_core::html::Page;
use powertune_core::Report;

pub fn page(report: &Report) -> Page {
    super::generic(report)
}
