//! `powertune queues plan`'s model: arrival rate and run time per queue from samples
//! ([`estimate`]), Erlang C sizing ([`erlang`]), a discrete-event simulation of
//! Sidekiq's fetch ([`sim`]), and the plan with its findings ([`plan`]). Pure
//! functions: no I/O.

pub mod erlang;
pub mod estimate;
pub mod plan;
pub mod render;
pub mod sim;
