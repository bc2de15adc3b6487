//! The plan: per queue the threads Erlang C asks for; a shared pool of processes at
//! the runbook's 5–25 threads per instance, a dedicated instance for a heavy queue;
//! the fetch simulation run for the running, the recommended and a proposed
//! configuration; the database connection budget of each.

use crate::erlang::{self, SizingTarget};
use crate::estimate::Load;
use crate::sim::{self, SimOptions, SimOutcome, SimProcess, SimQueue};
use powertune_core::targets::WorkerTargets;
use powertune_core::units::{self, Quantity};
use powertune_core::{Finding, Value, Verdict};
use serde::Serialize;
use std::collections::BTreeMap;

/// PostgreSQL's connection limit as read with `--db`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, schemars::JsonSchema)]
pub struct DbLimit {
    pub max_connections: u64,
    /// superuser_reserved_connections + reserved_connections (PostgreSQL 16+).
    pub reserved: u64,
}

/// The web tier's share of connections: threads × workers × instances (e.g. Puma).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct WebTier {
    pub threads: u64,
    pub workers: u64,
    pub instances: u64,
}

/// What the plan needs besides the load.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Busy threads ÷ threads the sizing aims at (headroom for bursts).
    pub utilisation: f64,
    /// Share of jobs allowed to wait over the latency target.
    pub tail: f64,
    /// Squared coefficient of variation of run times for the simulation.
    pub service_scv: f64,
    pub sim: SimOptions,
    pub db: Option<DbLimit>,
    pub web: WebTier,
}

/// One queue's sizing on its own.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct QueueSizing {
    pub name: String,
    pub arrival_per_s: f64,
    pub service_s: f64,
    /// Offered load λ·S, erlangs (threads busy on average).
    pub erlangs: f64,
    /// Threads that would meet the targets for this queue alone.
    pub threads: Option<u32>,
    /// Run time over the runbook's 5 s average: a candidate for a dedicated instance.
    pub heavy: bool,
}

/// A group of identical processes serving the same queues.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Pool {
    pub role: String,
    pub queues: Vec<(String, u32)>,
    pub strict: bool,
    /// Threads Erlang C asks for (the pooled load as one M/M/c).
    pub threads_needed: u32,
    pub processes: u32,
    pub threads_per_process: u32,
}

/// The simulation of one configuration.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Prediction {
    /// `running`, `recommended` or `proposed`.
    pub config: String,
    pub processes: Vec<SimProcess>,
    pub threads: u64,
    pub outcome: SimOutcome,
    /// Why a queue starves or misses the target, one line per queue.
    pub explanations: Vec<String>,
    pub connections: Budget,
}

/// Connections a configuration can hold at once.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Budget {
    /// One per Sidekiq thread (a thread holds one while it runs a job that queries).
    pub sidekiq: u64,
    pub web: u64,
    pub total: u64,
    pub max_connections: Option<u64>,
    /// max_connections − reserved.
    pub available: Option<u64>,
}

/// `queues plan`'s metrics.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PlanMetrics {
    pub load: Load,
    pub utilisation_target: f64,
    /// Share of jobs allowed to wait over the latency target.
    pub tail: f64,
    pub latency_target_s: f64,
    pub sizing: Vec<QueueSizing>,
    pub recommended: Vec<Pool>,
    pub predictions: Vec<Prediction>,
    pub web: WebTier,
    pub db: Option<DbLimit>,
}

fn sim_queues(load: &Load) -> Vec<SimQueue> {
    load.queues
        .iter()
        .map(|q| SimQueue {
            name: q.name.clone(),
            arrival_per_s: q.arrival_per_s,
            service_s: q.service_s.unwrap_or(0.0),
        })
        .collect()
}

/// Threads per process within [min, max] and the processes they make for `threads`.
fn split(threads: u32, min: u32, max: u32) -> (u32, u32) {
    let max = max.max(1);
    let processes = threads.div_ceil(max).max(1);
    let per = threads.div_ceil(processes).max(min).min(max);
    (processes, per)
}

/// Per queue sizing and the recommended pools.
pub fn size(
    load: &Load,
    t: &WorkerTargets,
    o: &PlanOptions,
    weights: &BTreeMap<String, u32>,
) -> (Vec<QueueSizing>, Vec<Pool>) {
    let target = SizingTarget {
        latency_s: t.queue_latency_s,
        tail: o.tail,
        utilisation: o.utilisation,
    };
    let cap = 10_000;
    let sizing: Vec<QueueSizing> = load
        .queues
        .iter()
        .map(|q| {
            let s = q.service_s.unwrap_or(0.0);
            QueueSizing {
                name: q.name.clone(),
                arrival_per_s: q.arrival_per_s,
                service_s: s,
                erlangs: q.arrival_per_s * s,
                threads: erlang::threads_for(q.arrival_per_s, s, target, cap),
                heavy: s > t.job_avg_s && q.arrival_per_s > 0.0,
            }
        })
        .collect();
    let several = sizing.iter().filter(|q| q.arrival_per_s > 0.0).count() > 1;
    let mut pools = Vec::new();
    let pool = |role: String, members: Vec<&QueueSizing>| -> Pool {
        let lambda: f64 = members.iter().map(|q| q.arrival_per_s).sum();
        let a: f64 = members.iter().map(|q| q.erlangs).sum();
        let s = if lambda > 0.0 { a / lambda } else { 0.0 };
        let needed = erlang::threads_for(lambda, s, target, cap).unwrap_or(cap);
        let (processes, per) = split(needed, t.concurrency_min, t.concurrency_max);
        let queues: Vec<(String, u32)> = members
            .iter()
            .map(|q| (q.name.clone(), weights.get(&q.name).copied().unwrap_or(1)))
            .collect();
        Pool {
            role,
            strict: members.len() < 2,
            queues,
            threads_needed: needed,
            processes,
            threads_per_process: per,
        }
    };
    let heavy: Vec<&QueueSizing> = sizing.iter().filter(|q| several && q.heavy).collect();
    let shared: Vec<&QueueSizing> = sizing.iter().filter(|q| !(several && q.heavy)).collect();
    if !shared.is_empty() {
        pools.push(pool("shared".to_string(), shared));
    }
    for q in heavy {
        pools.push(pool(format!("dedicated: {}", q.name), vec![q]));
    }
    (sizing, pools)
}

/// The processes a set of pools makes.
pub fn processes_of(pools: &[Pool]) -> Vec<SimProcess> {
    pools
        .iter()
        .flat_map(|p| {
            (0..p.processes).map(move |_| SimProcess {
                threads: p.threads_per_process,
                queues: p.queues.clone(),
                strict: p.strict,
            })
        })
        .collect()
}

fn budget(processes: &[SimProcess], web: &WebTier, db: Option<DbLimit>) -> Budget {
    let sidekiq: u64 = processes.iter().map(|p| p.threads as u64).sum();
    let web = web.threads * web.workers * web.instances.max(1);
    Budget {
        sidekiq,
        web,
        total: sidekiq + web,
        max_connections: db.map(|d| d.max_connections),
        available: db.map(|d| d.max_connections.saturating_sub(d.reserved)),
    }
}

/// Why each queue of a simulated configuration starves or misses the target.
fn explain(processes: &[SimProcess], out: &SimOutcome, target_s: f64) -> Vec<String> {
    let mut lines = Vec::new();
    for q in &out.queues {
        if !q.starving && q.mean_latency_s <= target_s {
            continue;
        }
        let serving: Vec<usize> = processes
            .iter()
            .enumerate()
            .filter(|(_, p)| p.queues.iter().any(|(n, _)| *n == q.name))
            .map(|(i, _)| i)
            .collect();
        let wait = if q.starving {
            format!(
                "waits {} and more (the age of its oldest job when the simulation ends)",
                units::seconds(q.oldest_at_end_s)
            )
        } else {
            format!("waits {} on average", units::seconds(q.mean_latency_s))
        };
        if serving.is_empty() {
            lines.push(format!("`{}` {wait}: no process serves it", q.name));
            continue;
        }
        // The other queue taking most thread-time in the processes that serve it.
        let threads: u32 = serving.iter().map(|&i| processes[i].threads).sum();
        let mut others: BTreeMap<&str, f64> = BTreeMap::new();
        let mut busy = 0.0;
        for &i in &serving {
            let p = &out.processes[i];
            busy += p.busy * p.threads as f64;
            for (n, s) in &p.by_queue {
                if *n != q.name {
                    *others.entry(n.as_str()).or_insert(0.0) += s * p.threads as f64;
                }
            }
        }
        let busy = busy / threads.max(1) as f64;
        let strict = serving.iter().all(|&i| processes[i].strict);
        match others
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .filter(|(_, s)| **s > 0.0)
        {
            Some((other, share)) => {
                let share = share / threads.max(1) as f64;
                let how = if strict {
                    format!("strict order fetches `{}` only when the queues before it are empty", q.name)
                } else {
                    format!("weights let `{}` be fetched first only in proportion to its weight", q.name)
                };
                lines.push(format!(
                    "`{}` {wait} because `{other}` alone keeps all {threads} threads busy {} of the time ({how}; all queues together {})",
                    q.name,
                    units::fraction(share),
                    units::fraction(busy)
                ));
            }
            None => lines.push(format!(
                "`{}` {wait}: its own load needs more than the {threads} threads serving it (busy {})",
                q.name,
                units::fraction(busy)
            )),
        }
    }
    lines
}

/// Simulates one configuration.
pub fn predict(
    config: &str,
    load: &Load,
    processes: Vec<SimProcess>,
    o: &PlanOptions,
    latency_target_s: f64,
) -> Prediction {
    let so = SimOptions {
        service_scv: o.service_scv,
        latency_target_s,
        ..o.sim.clone()
    };
    let outcome = sim::simulate(&sim_queues(load), &processes, &so);
    Prediction {
        config: config.to_string(),
        threads: processes.iter().map(|p| p.threads as u64).sum(),
        explanations: explain(&processes, &outcome, latency_target_s),
        connections: budget(&processes, &o.web, o.db),
        processes,
        outcome,
    }
}

/// The whole plan: sizing, pools, predictions of `running` (and of `proposed`).
pub fn plan(
    load: Load,
    running: Vec<SimProcess>,
    proposed: Option<Vec<SimProcess>>,
    weights: &BTreeMap<String, u32>,
    t: &WorkerTargets,
    o: &PlanOptions,
) -> PlanMetrics {
    let (sizing, recommended) = size(&load, t, o, weights);
    let mut predictions = Vec::new();
    if !running.is_empty() {
        predictions.push(predict("running", &load, running, o, t.queue_latency_s));
    }
    predictions.push(predict(
        "recommended",
        &load,
        processes_of(&recommended),
        o,
        t.queue_latency_s,
    ));
    if let Some(p) = proposed {
        predictions.push(predict("proposed", &load, p, o, t.queue_latency_s));
    }
    PlanMetrics {
        load,
        utilisation_target: o.utilisation,
        tail: o.tail,
        latency_target_s: t.queue_latency_s,
        sizing,
        recommended,
        predictions,
        web: o.web,
        db: o.db,
    }
}

/// The findings: predicted latency per queue of the running and proposed
/// configurations, threads against the sizing, heavy queues sharing threads, and the
/// connection budget.
pub fn judge(m: &PlanMetrics, t: &WorkerTargets) -> Vec<Finding> {
    let mut f = Vec::new();
    let needed: u32 = m.recommended.iter().map(|p| p.threads_needed).sum();
    let erlangs: f64 = m.sizing.iter().map(|q| q.erlangs).sum();
    for p in m.predictions.iter().filter(|p| p.config != "recommended") {
        let check = format!("plan_{}_latency", p.config);
        for q in &p.outcome.queues {
            // Starving or over the target on average fails; more than 5% of jobs
            // waiting over the target warns.
            let v = if q.starving || q.mean_latency_s >= t.queue_latency_s {
                Verdict::Fail
            } else if q.over_target > 0.05 {
                Verdict::Warn
            } else {
                Verdict::Pass
            };
            let why = p
                .explanations
                .iter()
                .find(|l| l.starts_with(&format!("`{}`", q.name)))
                .cloned()
                .unwrap_or_default();
            f.push(
                Finding::new("queues", &check, q.name.clone(), v)
                    .observed(
                        Value::of(Quantity::seconds(q.mean_latency_s))
                            .note(if q.starving { "starving" } else { "predicted" }),
                    )
                    .target(Value::lt(Quantity::seconds(t.queue_latency_s)))
                    .evidence(format!(
                        "{} threads; predicted mean wait {}, p95 {}, {} of jobs over the target; {}",
                        p.threads,
                        units::seconds(q.mean_wait_s),
                        units::seconds(q.p95_wait_s),
                        units::fraction(q.over_target),
                        if why.is_empty() { "no starvation".to_string() } else { why }
                    ))
                    .action(if v == Verdict::Pass {
                        String::new()
                    } else {
                        format!(
                            "raise concurrency or add an instance to the {needed} threads the plan recommends; give a queue starved by another its own process or weights instead of strict order"
                        )
                    }),
            );
        }
        let util = erlangs / p.threads.max(1) as f64;
        let v = if util >= 1.0 {
            Verdict::Fail
        } else if (p.threads as u32) < needed {
            Verdict::Warn
        } else {
            Verdict::Pass
        };
        f.push(
            Finding::new("queues", &format!("plan_{}_threads", p.config), "all queues", v)
                .observed(Quantity::count(p.threads as f64))
                .target(Value::ge(Quantity::count(needed as f64)))
                .evidence(format!(
                    "{:.2} erlangs offered (threads busy on average) → {} busy at {} threads; Erlang C asks for {needed} to keep P(wait > {}) ≤ {} at ≤ {} busy",
                    erlangs,
                    units::fraction(util),
                    p.threads,
                    units::seconds(t.queue_latency_s),
                    units::fraction(m.tail),
                    units::fraction(m.utilisation_target)
                ))
                .action(if v == Verdict::Pass {
                    String::new()
                } else {
                    "bump WORKER_CONCURRENCY (10–25 for AI-heavy work) or add a worker instance; verify the queue returns to steady state within 15 minutes".to_string()
                }),
        );
        f.push(budget_finding(&p.config, &p.connections));
    }
    if let Some(r) = m.predictions.iter().find(|p| p.config == "recommended") {
        f.push(budget_finding("recommended", &r.connections));
    }
    let running = m.predictions.iter().find(|p| p.config == "running");
    for q in m.sizing.iter().filter(|q| q.heavy) {
        let Some(pool) = m
            .recommended
            .iter()
            .find(|p| p.role == format!("dedicated: {}", q.name))
        else {
            continue;
        };
        let shares = running.is_some_and(|r| {
            r.processes
                .iter()
                .any(|p| p.queues.iter().any(|(n, _)| *n == q.name) && p.queues.len() > 1)
        });
        f.push(
            Finding::new(
                "queues",
                "plan_dedicated_instance",
                q.name.clone(),
                if shares { Verdict::Warn } else { Verdict::Pass },
            )
            .observed(Value::of(Quantity::seconds(q.service_s)).note("mean run time"))
            .target(Value::lt(Quantity::seconds(t.job_avg_s)))
            .evidence(format!(
                "{:.2} erlangs of jobs averaging {}: give it {} process(es) of {} threads of its own so its long jobs do not hold the threads the short queues need",
                q.erlangs,
                units::seconds(q.service_s),
                pool.processes,
                pool.threads_per_process
            ))
            .action(if shares {
                format!("add a dedicated worker instance for `{}` (add-instance worker ai-heavy) and remove the queue from the shared workers", q.name)
            } else {
                String::new()
            }),
        );
    }
    f
}

fn budget_finding(config: &str, b: &Budget) -> Finding {
    let (v, target) = match b.available {
        Some(a) if b.total > a => (Verdict::Fail, Value::le(Quantity::count(a as f64))),
        Some(a) if b.total as f64 > 0.9 * a as f64 => {
            (Verdict::Warn, Value::le(Quantity::count(a as f64)))
        }
        Some(a) => (Verdict::Pass, Value::le(Quantity::count(a as f64))),
        None => (
            Verdict::Warn,
            Value::Text("max_connections unknown: pass --db".to_string()),
        ),
    };
    Finding::new("queues", &format!("plan_{config}_connections"), "PostgreSQL connections", v)
        .observed(Quantity::count(b.total as f64))
        .target(target)
        .evidence(format!(
            "{} Sidekiq threads + {} web threads can hold {} connections at once; max_connections {}, {} usable",
            b.sidekiq,
            b.web,
            b.total,
            b.max_connections.map(|m| m.to_string()).unwrap_or_else(|| "?".into()),
            b.available.map(|m| m.to_string()).unwrap_or_else(|| "?".into()),
        ))
        .action(if v == Verdict::Pass {
            String::new()
        } else {
            "bump the pool (25–50 per process, at least the threads) within max_connections, or put PgBouncer (transaction pooling) in front of PostgreSQL".to_string()
        })
}
