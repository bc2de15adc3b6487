//! per-vu-iterations: each VU runs the same number of iterations, within a maximum
//! duration.

use super::closed::{closed, Budget};
use crate::collect::state::Shared;
use std::sync::Arc;
use std::time::Duration;

pub(super) async fn run(
    shared: &Arc<Shared>,
    idx: usize,
    vus: u32,
    iterations: u64,
    max_duration: Duration,
    grace: Duration,
) {
    let budget = Budget::PerVu(iterations);
    closed(shared, idx, vus, budget, Some(max_duration), grace).await
}
