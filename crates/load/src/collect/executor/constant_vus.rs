//! constant-vus: a fixed number of VUs loop over their iterations for a duration.

use super::closed::{closed, Budget};
use crate::collect::state::Shared;
use std::sync::Arc;
use std::time::Duration;

pub(super) async fn run(
    shared: &Arc<Shared>,
    idx: usize,
    vus: u32,
    duration: Duration,
    grace: Duration,
) {
    closed(shared, idx, vus, Budget::Unlimited, Some(duration), grace).await
}
