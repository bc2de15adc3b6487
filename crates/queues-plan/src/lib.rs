//! `powertune queues plan`'s model: arrival rate and run time per queue from samples
//! ([`estimate`]), Erlang C sizing ([`erlang`]), a discrete-event simulation of
//! Sidekiq's fetch ([`sim`]), the plan with its findings ([`plan`]), run times from APM
//! data ([`apm`]) and the judgement of a recorded history ([`history`]). Pure
//! functions: no I/O.

pub mod apm;
pub mod erlang;
pub mod estimate;
pub mod history;
pub mod history_render;
pub mod plan;
pub mod render;
pub mod sim;
