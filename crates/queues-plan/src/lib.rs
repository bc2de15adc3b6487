//! `powertune queues plan`'s model: Erlang C sizing ([`erlang`]), a discrete-event
//! simulation of Sidekiq's fetch ([`sim`]). Pure functions: no I/O.

pub mod erlang;
pub mod sim;
