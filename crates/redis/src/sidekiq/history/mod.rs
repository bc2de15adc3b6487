//! Queue history: the [`Sample`] of Sidekiq that `queues plan` reads over its window.

pub mod sample;

pub use sample::{counter_growth, read, ProcessSample, QueueSample, Sample};
