//! A discrete-event simulation of Sidekiq's fetch (`Sidekiq::BasicFetch`).
//!
//! What is modelled, as Sidekiq 6–8 do it:
//! - every process runs `threads` processors; each loops fetch → run → fetch;
//! - a fetch is one `BRPOP` over the process's queue keys: it takes the oldest job
//!   (jobs are `LPUSH`ed, so the right end is the oldest) of the first non-empty queue
//!   in the order of that call;
//! - strict order (no weights): the order of the queue list, every time;
//! - weights: the list holds each queue `max(weight, 1)` times, is shuffled on every
//!   fetch and made unique, so the first non-empty queue is queue *i* with
//!   probability wᵢ / Σ w over the non-empty queues of the process;
//! - a processor that finds every queue empty blocks; a job pushed to a queue goes to
//!   the processor blocked longest among those listening on it (Redis serves blocked
//!   clients in the order they blocked).
//!
//! Not modelled: the 2 s `BRPOP` timeout (an idle processor re-blocks on the same
//! keys, which changes nothing here), scheduled and retried jobs (they enter a queue
//! as arrivals when they are due), fetch round-trip time and process restarts.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp, Gamma};
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// One queue's load.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct SimQueue {
    pub name: String,
    /// Poisson arrivals, jobs per second.
    pub arrival_per_s: f64,
    /// Mean job run time, seconds.
    pub service_s: f64,
}

/// One Sidekiq process: its threads and the queues it serves, in order, with weights.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct SimProcess {
    pub threads: u32,
    /// Queue name and weight, in the order of the process's `-q` options.
    pub queues: Vec<(String, u32)>,
    /// Strict order (Sidekiq's default when no queue has a weight).
    pub strict: bool,
}

/// How long and how to simulate.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Simulated seconds.
    pub horizon_s: f64,
    /// Jobs that arrive before this are not counted (the queues fill up from empty).
    pub warmup_s: f64,
    /// Squared coefficient of variation of run times: 1 exponential (M/M/c), 0 fixed.
    pub service_scv: f64,
    pub seed: u64,
    /// The simulation stops after this many arrivals (bounds time and memory).
    pub max_arrivals: u64,
    /// Waits above this are counted as over the target.
    pub latency_target_s: f64,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            horizon_s: 6.0 * 3600.0,
            warmup_s: 600.0,
            service_scv: 1.0,
            seed: 16,
            max_arrivals: 1_000_000,
            latency_target_s: 60.0,
        }
    }
}

/// What one queue saw.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct QueueOutcome {
    pub name: String,
    /// Jobs that arrived after the warm-up.
    pub arrived: u64,
    /// Of those, jobs a processor took before the end.
    pub started: u64,
    /// Mean wait (enqueue → start) of the started jobs, seconds.
    pub mean_wait_s: f64,
    pub p95_wait_s: f64,
    pub max_wait_s: f64,
    /// Share of counted jobs (started or still waiting) that waited over the target.
    pub over_target: f64,
    /// Time-average of Sidekiq's queue latency (age of the oldest waiting job).
    pub mean_latency_s: f64,
    /// Jobs still waiting at the end and the age of the oldest, seconds.
    pub waiting_at_end: u64,
    pub oldest_at_end_s: f64,
    /// The queue falls behind: its backlog grows through the run.
    pub starving: bool,
}

/// What one process's threads did.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ProcessOutcome {
    pub threads: u32,
    /// Busy thread-time ÷ thread-time after the warm-up.
    pub busy: f64,
    /// Share of thread-time spent on each queue's jobs.
    pub by_queue: Vec<(String, f64)>,
}

/// The simulation's result.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct SimOutcome {
    pub queues: Vec<QueueOutcome>,
    pub processes: Vec<ProcessOutcome>,
    /// Seconds simulated after the warm-up (shorter than asked when max_arrivals hit).
    pub measured_s: f64,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Arrival(usize),
    Done(usize),
}

struct Thread {
    process: usize,
    /// (queue, job start) while busy.
    running: Option<(usize, f64)>,
}

/// Simulates `processes` serving `queues` with Poisson arrivals at each queue's rate.
/// Queues a process names that are not in `queues` get no arrivals; queues no process
/// serves never start.
pub fn simulate(queues: &[SimQueue], processes: &[SimProcess], o: &SimOptions) -> SimOutcome {
    run(queues, processes, o, None)
}

/// Simulates a given arrival trace instead: (seconds from the start, queue index),
/// e.g. the very arrivals a test sent to a real Sidekiq. Arrival rates of `queues` are
/// ignored; the run lasts `horizon_s` (set it past the last arrival to let queues drain).
pub fn simulate_trace(
    queues: &[SimQueue],
    processes: &[SimProcess],
    o: &SimOptions,
    trace: &[(f64, usize)],
) -> SimOutcome {
    run(queues, processes, o, Some(trace))
}

fn run(
    queues: &[SimQueue],
    processes: &[SimProcess],
    o: &SimOptions,
    trace: Option<&[(f64, usize)]>,
) -> SimOutcome {
    let nq = queues.len();
    let mut rng = StdRng::seed_from_u64(o.seed);
    let index = |name: &str| queues.iter().position(|q| q.name == name);
    // Per process: (queue index, weight) in order.
    let serves: Vec<Vec<(usize, f64)>> = processes
        .iter()
        .map(|p| {
            let mut v: Vec<(usize, f64)> = Vec::new();
            for (name, w) in &p.queues {
                if let Some(i) = index(name) {
                    if !v.iter().any(|(j, _)| *j == i) {
                        v.push((i, (*w).max(1) as f64));
                    }
                }
            }
            v
        })
        .collect();
    let mut threads: Vec<Thread> = Vec::new();
    for (pi, p) in processes.iter().enumerate() {
        for _ in 0..p.threads {
            threads.push(Thread {
                process: pi,
                running: None,
            });
        }
    }
    // Idle threads in the order they blocked.
    let mut idle: VecDeque<usize> = (0..threads.len()).collect();
    let mut waiting: Vec<VecDeque<f64>> = vec![VecDeque::new(); nq];
    let mut heap: BinaryHeap<Reverse<(u64, u64, Event)>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut push = |heap: &mut BinaryHeap<Reverse<(u64, u64, Event)>>, t: f64, e: Event| {
        seq += 1;
        heap.push(Reverse((t.max(0.0).to_bits(), seq, e)));
    };
    let gaps: Vec<Option<Exp<f64>>> = queues
        .iter()
        .map(|q| {
            (trace.is_none() && q.arrival_per_s > 0.0)
                .then(|| Exp::new(q.arrival_per_s).ok())
                .flatten()
        })
        .collect();
    let scv = o.service_scv.max(0.0);
    let run_time = |rng: &mut StdRng, mean: f64| -> f64 {
        if scv == 0.0 || mean <= 0.0 {
            mean.max(0.0)
        } else {
            Gamma::new(1.0 / scv, mean * scv)
                .map(|g| g.sample(rng))
                .unwrap_or(mean)
        }
    };
    for (i, g) in gaps.iter().enumerate() {
        if let Some(g) = g {
            let t = g.sample(&mut rng);
            push(&mut heap, t, Event::Arrival(i));
        }
    }
    for &(t, q) in trace.unwrap_or(&[]) {
        if q < nq {
            push(&mut heap, t, Event::Arrival(q));
        }
    }
    let mut arrived = vec![0u64; nq];
    let mut waits: Vec<Vec<f32>> = vec![Vec::new(); nq];
    let mut latency_area = vec![0.0f64; nq];
    let mut busy_time = vec![vec![0.0f64; nq]; processes.len()];
    let mut arrivals = 0u64;
    let mut last_t = 0.0f64;
    let mut end = o.horizon_s;
    let warm = o.warmup_s.clamp(0.0, o.horizon_s);

    // Starts the oldest job of queue `q` on thread `th` at `now`.
    let start = |th: usize,
                 q: usize,
                 enq: f64,
                 now: f64,
                 threads: &mut Vec<Thread>,
                 waits: &mut Vec<Vec<f32>>,
                 rng: &mut StdRng|
     -> f64 {
        if enq >= warm {
            waits[q].push((now - enq) as f32);
        }
        threads[th].running = Some((q, now));
        now + run_time(rng, queues[q].service_s)
    };
    // The queue a fetch takes from, for a thread of process `p`.
    let pick = |p: usize, waiting: &Vec<VecDeque<f64>>, rng: &mut StdRng| -> Option<usize> {
        let s = &serves[p];
        if processes[p].strict {
            return s
                .iter()
                .find(|(q, _)| !waiting[*q].is_empty())
                .map(|(q, _)| *q);
        }
        let total: f64 = s
            .iter()
            .filter(|(q, _)| !waiting[*q].is_empty())
            .map(|(_, w)| w)
            .sum();
        if total <= 0.0 {
            return None;
        }
        let mut x = rng.random::<f64>() * total;
        let mut last = None;
        for (q, w) in s.iter().filter(|(q, _)| !waiting[*q].is_empty()) {
            last = Some(*q);
            if x < *w {
                return Some(*q);
            }
            x -= w;
        }
        last
    };

    while let Some(Reverse((bits, _, ev))) = heap.pop() {
        let now = f64::from_bits(bits);
        if now > o.horizon_s {
            break;
        }
        // Sidekiq's latency (age of the oldest job) integrated since the last event.
        let from = last_t.max(warm);
        if now > from {
            for (q, w) in waiting.iter().enumerate() {
                if let Some(&oldest) = w.front() {
                    let (a, b) = (from - oldest, now - oldest);
                    latency_area[q] += (b * b - a * a) / 2.0;
                }
            }
        }
        last_t = now;
        match ev {
            Event::Arrival(q) => {
                arrivals += 1;
                if now >= warm {
                    arrived[q] += 1;
                }
                if let Some(g) = &gaps[q] {
                    if arrivals < o.max_arrivals {
                        let t = now + g.sample(&mut rng);
                        push(&mut heap, t, Event::Arrival(q));
                    } else if end > now {
                        end = now;
                    }
                }
                // The processor blocked longest among those listening on `q`.
                let taker = idle
                    .iter()
                    .position(|&th| serves[threads[th].process].iter().any(|(j, _)| *j == q));
                match taker.and_then(|pos| idle.remove(pos)) {
                    Some(th) => {
                        let done = start(th, q, now, now, &mut threads, &mut waits, &mut rng);
                        push(&mut heap, done, Event::Done(th));
                    }
                    None => waiting[q].push_back(now),
                }
            }
            Event::Done(th) => {
                if let Some((q, began)) = threads[th].running.take() {
                    let from = began.max(warm);
                    if now > from {
                        busy_time[threads[th].process][q] += now - from;
                    }
                }
                let p = threads[th].process;
                match pick(p, &waiting, &mut rng) {
                    Some(q) => {
                        let enq = waiting[q].pop_front().unwrap_or(now);
                        let done = start(th, q, enq, now, &mut threads, &mut waits, &mut rng);
                        push(&mut heap, done, Event::Done(th));
                    }
                    None => idle.push_back(th),
                }
            }
        }
        if now >= end {
            break;
        }
    }
    let stop = end.min(o.horizon_s).max(last_t.min(o.horizon_s));
    // Close the books: latency to the end, running jobs' busy time.
    let from = last_t.max(warm);
    for (q, w) in waiting.iter().enumerate() {
        if let Some(&oldest) = w.front() {
            if stop > from {
                let (a, b) = (from - oldest, stop - oldest);
                latency_area[q] += (b * b - a * a) / 2.0;
            }
        }
    }
    for t in &threads {
        if let Some((q, began)) = t.running {
            let from = began.max(warm);
            if stop > from {
                busy_time[t.process][q] += stop - from;
            }
        }
    }
    let measured = (stop - warm).max(0.0);
    let qs = queues
        .iter()
        .enumerate()
        .map(|(q, sq)| {
            let w = &mut waits[q];
            let counted_waiting: Vec<f64> = waiting[q]
                .iter()
                .filter(|&&t| t >= warm)
                .map(|&t| stop - t)
                .collect();
            let over = w.iter().filter(|&&x| x as f64 > o.latency_target_s).count()
                + counted_waiting
                    .iter()
                    .filter(|&&x| x > o.latency_target_s)
                    .count();
            let counted = w.len() + counted_waiting.len();
            w.sort_by(|a, b| a.total_cmp(b));
            let mean = if w.is_empty() {
                0.0
            } else {
                w.iter().map(|&x| x as f64).sum::<f64>() / w.len() as f64
            };
            let p95 = w
                .get(((w.len() as f64 * 0.95).ceil() as usize).saturating_sub(1))
                .map(|&x| x as f64)
                .unwrap_or(0.0);
            let oldest = waiting[q].front().map(|&t| stop - t).unwrap_or(0.0);
            let left = waiting[q].len() as u64;
            let max_wait = w.last().map(|&x| x as f64).unwrap_or(0.0).max(oldest);
            let expected = match trace {
                Some(_) => arrived[q] as f64,
                None => sq.arrival_per_s * measured,
            };
            QueueOutcome {
                name: sq.name.clone(),
                arrived: arrived[q],
                started: w.len() as u64,
                mean_wait_s: mean,
                p95_wait_s: p95,
                max_wait_s: max_wait,
                over_target: if counted == 0 {
                    0.0
                } else {
                    over as f64 / counted as f64
                },
                mean_latency_s: if measured > 0.0 {
                    latency_area[q] / measured
                } else {
                    0.0
                },
                waiting_at_end: left,
                oldest_at_end_s: oldest,
                starving: expected > 0.0
                    && left as f64 > (0.1 * expected).max(10.0)
                    && oldest > (0.1 * measured).max(o.latency_target_s),
            }
        })
        .collect();
    let ps = processes
        .iter()
        .enumerate()
        .map(|(p, sp)| {
            let cap = sp.threads as f64 * measured;
            let by_queue: Vec<(String, f64)> = serves[p]
                .iter()
                .map(|(q, _)| {
                    (
                        queues[*q].name.clone(),
                        if cap > 0.0 {
                            busy_time[p][*q] / cap
                        } else {
                            0.0
                        },
                    )
                })
                .collect();
            ProcessOutcome {
                threads: sp.threads,
                busy: by_queue.iter().map(|(_, s)| s).sum(),
                by_queue,
            }
        })
        .collect();
    SimOutcome {
        queues: qs,
        processes: ps,
        measured_s: measured,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::erlang;

    fn one(name: &str, rate: f64, s: f64) -> SimQueue {
        SimQueue {
            name: name.into(),
            arrival_per_s: rate,
            service_s: s,
        }
    }

    fn proc_(threads: u32, qs: &[(&str, u32)], strict: bool) -> SimProcess {
        SimProcess {
            threads,
            queues: qs.iter().map(|(q, w)| (q.to_string(), *w)).collect(),
            strict,
        }
    }

    #[test]
    fn one_queue_matches_closed_form_m_m_c() {
        // (threads, λ, S): utilisation 0.8, 0.9 and 0.7.
        for (c, lambda, s) in [(5u32, 4.0, 1.0), (10, 1.8, 5.0), (2, 0.7, 2.0)] {
            let o = SimOptions {
                horizon_s: 400_000.0 / lambda,
                warmup_s: 2_000.0 / lambda,
                seed: 7,
                ..SimOptions::default()
            };
            let want = erlang::mean_wait(c, lambda, s);
            let o = SimOptions {
                latency_target_s: want,
                ..o
            };
            let r = simulate(&[one("q", lambda, s)], &[proc_(c, &[("q", 0)], true)], &o);
            let got = r.queues[0].mean_wait_s;
            assert!(
                (got - want).abs() / want < 0.06,
                "c={c} λ={lambda} S={s}: simulated {got}, Erlang C {want}"
            );
            let busy = r.processes[0].busy;
            assert!((busy - lambda * s / c as f64).abs() < 0.02, "busy {busy}");
            // P(wait > t) against C·e^{−(cμ−λ)t} at t = the mean wait.
            let p = erlang::p_wait_over(c, lambda, s, want);
            assert!(
                (r.queues[0].over_target - p).abs() < 0.03,
                "P(wait > {want}) simulated {}, Erlang C {p}",
                r.queues[0].over_target
            );
            assert!(!r.queues[0].starving);
        }
    }

    #[test]
    fn strict_order_starves_the_last_queue_and_weights_do_not() {
        // critical alone needs 0.98 of 4 threads; low gets the rest under strict order.
        let qs = [one("critical", 3.92, 1.0), one("low", 0.5, 1.0)];
        let o = SimOptions {
            horizon_s: 20_000.0,
            warmup_s: 1_000.0,
            ..SimOptions::default()
        };
        let strict = simulate(&qs, &[proc_(4, &[("critical", 0), ("low", 0)], true)], &o);
        assert!(strict.queues[1].starving, "{:?}", strict.queues[1]);
        assert!(!strict.queues[0].starving);
        assert!(strict.processes[0].by_queue[0].1 > 0.9);
        // Total load 4.42 erlangs on 5 threads: weighted fetch serves both.
        let weighted = simulate(&qs, &[proc_(5, &[("critical", 3), ("low", 1)], false)], &o);
        assert!(!weighted.queues[1].starving, "{:?}", weighted.queues[1]);
        assert!(weighted.queues[1].mean_wait_s < 60.0);
    }

    #[test]
    fn weighted_fetch_drains_in_proportion_to_weights_under_backlog() {
        // Both queues always full: threads split 3:1.
        let qs = [one("a", 10.0, 1.0), one("b", 10.0, 1.0)];
        let o = SimOptions {
            horizon_s: 5_000.0,
            warmup_s: 100.0,
            ..SimOptions::default()
        };
        let r = simulate(&qs, &[proc_(4, &[("a", 3), ("b", 1)], false)], &o);
        let (a, b) = (r.processes[0].by_queue[0].1, r.processes[0].by_queue[1].1);
        assert!((a / (a + b) - 0.75).abs() < 0.02, "{a} {b}");
    }

    #[test]
    fn a_dedicated_process_serves_only_its_queues_and_the_run_is_bounded() {
        let qs = [one("ai", 0.5, 10.0), one("default", 5.0, 0.2)];
        let o = SimOptions {
            horizon_s: 1e9,
            warmup_s: 0.0,
            max_arrivals: 20_000,
            ..SimOptions::default()
        };
        let r = simulate(
            &qs,
            &[
                proc_(8, &[("ai", 1)], true),
                proc_(2, &[("default", 1)], true),
            ],
            &o,
        );
        assert!(r.measured_s < 10_000.0 && r.measured_s > 1_000.0);
        assert_eq!(r.processes[0].by_queue.len(), 1);
        assert!(r.processes[1].by_queue[0].1 > 0.4);
        assert_eq!(r.queues[0].arrived + r.queues[1].arrived, 20_000);
    }
}
