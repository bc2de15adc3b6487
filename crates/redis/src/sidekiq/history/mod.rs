//! Queue history: the [`Sample`] of Sidekiq that `queues plan` reads over its window
//! and `queues record` appends to a history file ([`file`]), downsampled
//! ([`downsample`]) to stay within its bound.

pub mod downsample;
pub mod file;
pub mod recorder;
pub mod sample;

pub use file::{Gap, History, HistoryError, Record};
pub use recorder::{record, Event, RecordError, RecordOptions, Recorded};
pub use sample::{counter_growth, read, ProcessSample, QueueSample, Sample};
