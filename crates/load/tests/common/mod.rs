//! Helpers shared by the live-output tests.

pub mod prometheus;
