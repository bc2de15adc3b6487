//! The open model shared by constant-arrival-rate and ramping-arrival-rate: iterations
//! are scheduled by the clock ([`Arrivals`]) whatever the server's speed, queued for
//! idle VUs (more are started up to `max_vus`), and dropped when the backlog is full.
//! Each iteration's lateness against its schedule is added to its request latencies
//! (coordinated-omission correction).

use crate::collect::state::{stopped, wind_down, Shared};
use crate::collect::vu::Vu;
use crate::plan::Stage;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Arrivals per second over time.
pub(crate) struct RatePlan {
    pub start: f64,
    pub stages: Vec<Stage>,
}

/// The scheduled start of each iteration of an open model, as offsets from the
/// scenario's start: arrival k comes when the integral of the (piecewise-linear) rate
/// reaches k, so slow ramps are as exact as constant rates.
pub(crate) struct Arrivals {
    plan: RatePlan,
    /// Next arrival's index.
    k: f64,
    stage: usize,
    /// Start time (s) and cumulative arrivals at the start of `stage`.
    stage_t: f64,
    stage_n: f64,
}

impl Arrivals {
    pub(crate) fn new(plan: RatePlan) -> Arrivals {
        Arrivals {
            plan,
            k: 0.0,
            stage: 0,
            stage_t: 0.0,
            stage_n: 0.0,
        }
    }
}

impl Iterator for Arrivals {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        loop {
            let st = self.plan.stages.get(self.stage)?;
            let r0 = if self.stage == 0 {
                self.plan.start
            } else {
                self.plan.stages[self.stage - 1].target
            };
            let r1 = st.target;
            let d = st.duration.as_secs_f64();
            let in_stage = (r0 + r1) / 2.0 * d;
            let need = self.k - self.stage_n;
            if d > 0.0 && need < in_stage {
                // N(x) = r0·x + (r1 − r0)/(2d)·x² = need, the stable root.
                let a = (r1 - r0) / (2.0 * d);
                let disc = (r0 * r0 + 4.0 * a * need).max(0.0);
                let denom = r0 + disc.sqrt();
                let x = if need <= 0.0 {
                    0.0
                } else if denom > 0.0 {
                    2.0 * need / denom
                } else {
                    d
                };
                if x < d {
                    self.k += 1.0;
                    return Duration::try_from_secs_f64(self.stage_t + x).ok();
                }
            }
            self.stage_n += in_stage;
            self.stage_t += d;
            self.stage += 1;
        }
    }
}

struct Pool {
    queue: Mutex<VecDeque<Instant>>,
    notify: Notify,
    idle: AtomicU64,
    starting: AtomicU64,
}

/// How many VUs an open-model scenario starts with and may grow to, and how many
/// iterations may wait for a VU before new ones are dropped.
pub(super) struct VuPool {
    pre_allocated: u32,
    max_vus: u32,
    max_backlog: u64,
}

impl VuPool {
    pub fn new(pre_allocated: u32, max_vus: u32, max_backlog: u64) -> VuPool {
        VuPool {
            pre_allocated,
            max_vus,
            max_backlog,
        }
    }
}

pub(super) async fn arrival(
    shared: &Arc<Shared>,
    idx: usize,
    plan: RatePlan,
    size: VuPool,
    grace: Duration,
) {
    let VuPool {
        pre_allocated: pre,
        max_vus,
        max_backlog: backlog,
    } = size;
    let pool = Arc::new(Pool {
        queue: Mutex::new(VecDeque::new()),
        notify: Notify::new(),
        idle: AtomicU64::new(0),
        starting: AtomicU64::new(0),
    });
    let (tx, rx) = watch::channel(false);
    let mut set = JoinSet::new();
    let mut spawned = 0u64;
    let spawn = |set: &mut JoinSet<()>, spawned: &mut u64| {
        pool.starting.fetch_add(1, Ordering::Relaxed);
        set.spawn(arrival_vu(
            shared.clone(),
            idx,
            shared.plan.segment.nth(*spawned),
            pool.clone(),
            rx.clone(),
        ));
        *spawned += 1;
    };
    for _ in 0..pre {
        spawn(&mut set, &mut spawned);
    }
    // A segment starts only the arrivals whose global index it owns, at their global
    // times: the segments' schedules add up to the whole one.
    let segment = &shared.plan.segment;
    let arrivals = Arrivals::new(plan)
        .enumerate()
        .filter(|(k, _)| segment.owns(*k as u64))
        .map(|(_, at)| at);
    let t0 = Instant::now();
    let mut abort = shared.stop_signal();
    for offset in arrivals {
        let Some(at) = t0.checked_add(offset) else {
            break;
        };
        tokio::select! {
            _ = tokio::time::sleep_until(at) => {}
            _ = stopped(&mut abort) => break,
        }
        let idle = pool.idle.load(Ordering::Relaxed);
        let starting = pool.starting.load(Ordering::Relaxed);
        let queued = pool.queue.lock().len() as u64;
        if idle + starting <= queued && spawned < max_vus as u64 {
            spawn(&mut set, &mut spawned);
        }
        let capacity = idle + pool.starting.load(Ordering::Relaxed) + backlog;
        let accepted = {
            let mut q = pool.queue.lock();
            if (q.len() as u64) < capacity {
                q.push_back(at);
                true
            } else {
                false
            }
        };
        if accepted {
            pool.notify.notify_one();
        } else {
            shared.reg.scenario(idx, |m| m.dropped += 1);
        }
        while set.try_join_next().is_some() {}
    }
    let _ = tx.send(true);
    pool.notify.notify_waiters();
    wind_down(shared, &mut set, grace).await;
    let left = pool.queue.lock().len() as u64;
    if left > 0 {
        shared.reg.scenario(idx, |m| m.dropped += left);
    }
}

async fn arrival_vu(
    shared: Arc<Shared>,
    idx: usize,
    id: u64,
    pool: Arc<Pool>,
    mut stop: watch::Receiver<bool>,
) {
    shared.vu_started(idx);
    let mut vu = Vu::new(shared.clone(), idx, id);
    vu.run_setup(&stop).await;
    pool.starting.fetch_sub(1, Ordering::Relaxed);
    loop {
        // Iterations already accepted run even after the schedule ends (within the
        // graceful stop); an empty queue and a stop signal end the VU.
        let item = pool.queue.lock().pop_front();
        match item {
            Some(intended) => {
                let lag = Instant::now().saturating_duration_since(intended);
                vu.iteration(lag, &stop).await;
            }
            None if *stop.borrow() => break,
            None => {
                pool.idle.fetch_add(1, Ordering::Relaxed);
                let stop_now = tokio::select! {
                    _ = pool.notify.notified() => false,
                    _ = stopped(&mut stop) => true,
                };
                pool.idle.fetch_sub(1, Ordering::Relaxed);
                if stop_now {
                    break;
                }
            }
        }
    }
    vu.client.close();
    shared.vu_stopped(idx);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_follow_the_rate() {
        let constant = RatePlan {
            start: 100.0,
            stages: vec![Stage {
                duration: Duration::from_secs(2),
                target: 100.0,
            }],
        };
        let v: Vec<Duration> = Arrivals::new(constant).collect();
        assert_eq!(v.len(), 200);
        assert_eq!(v[1], Duration::from_millis(10));
        // 0 → 100/s over 2 s: the area under the ramp is 100 arrivals.
        let ramp = RatePlan {
            start: 0.0,
            stages: vec![Stage {
                duration: Duration::from_secs(2),
                target: 100.0,
            }],
        };
        let n = Arrivals::new(ramp).count();
        assert!((95..=105).contains(&n), "{n}");
        // Up, hold, down: 50 + 100 + 50, in order.
        let hill = RatePlan {
            start: 0.0,
            stages: vec![
                Stage {
                    duration: Duration::from_secs(1),
                    target: 100.0,
                },
                Stage {
                    duration: Duration::from_secs(1),
                    target: 100.0,
                },
                Stage {
                    duration: Duration::from_secs(1),
                    target: 0.0,
                },
            ],
        };
        let v: Vec<Duration> = Arrivals::new(hill).collect();
        assert!((199..=201).contains(&v.len()), "{}", v.len());
        assert!(v.windows(2).all(|w| w[0] <= w[1]));
        assert!(v.last().unwrap() < &Duration::from_secs(3));
        // A stage at 0 produces nothing, and the iterator ends.
        let idle = RatePlan {
            start: 0.0,
            stages: vec![Stage {
                duration: Duration::from_secs(1),
                target: 0.0,
            }],
        };
        assert_eq!(Arrivals::new(idle).count(), 0);
    }
}
