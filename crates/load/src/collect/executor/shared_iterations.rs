//! shared-iterations: the VUs share one pool of iterations (a fast VU runs more),
//! within a maximum duration.

use super::closed::{closed, Budget};
use crate::collect::state::Shared;
use std::sync::atomic::AtomicU64;
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
    let budget = Budget::Shared(Arc::new(AtomicU64::new(0)), iterations);
    closed(shared, idx, vus, budget, Some(max_duration), grace).await
}
