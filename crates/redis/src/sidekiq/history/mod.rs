//! Queue history: the [`Sample`] `queues record` appends and `queues plan` reads.

pub mod sample;

pub use sample::{counter_growth, read, ProcessSample, QueueSample, Sample};
