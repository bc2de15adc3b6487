//! `GET /metrics`: the target's state in the Prometheus text exposition format
//! (version 0.0.4), written by `powertune_core::prometheus`. Counters are named
//! without `_total` here; the writer appends it.

use crate::route::Route;
use crate::state::{Buckets, Shared, BUCKETS};
use powertune_core::prometheus::Exposition;

/// Content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = powertune_core::prometheus::CONTENT_TYPE;

/// Renders every metric.
pub fn render(s: &Shared) -> String {
    let mut e = Exposition::new();
    requests(s, &mut e);
    pool(s, &mut e);
    cpu(s, &mut e);
    crate::redis_cache::metrics(s.redis.as_ref(), &mut e);
    cable(s, &mut e);
    work(s, &mut e);
    e.gauge(
        "powertune_target_uptime_seconds",
        "Seconds since the target started.",
    )
    .sample(&[], s.started.elapsed().as_secs_f64());
    e.render()
}

/// The routes a scrape reports (the scrapes themselves are not counted).
fn routes() -> impl Iterator<Item = Route> {
    Route::ALL.into_iter().filter(|r| *r != Route::Metrics)
}

fn requests(s: &Shared, e: &mut Exposition) {
    let mut f = e.counter(
        "powertune_target_requests",
        "HTTP requests answered, by route and status (/metrics scrapes excluded).",
    );
    for r in routes() {
        for (status, n) in s.routes[r.index()].by_status() {
            f.sample(
                &[("route", r.label()), ("status", &status.to_string())],
                n as f64,
            );
        }
    }
    let mut f = e.histogram(
        "powertune_target_request_duration_seconds",
        "Time from request received to response headers, by route.",
    );
    for r in routes() {
        histogram(
            &mut f,
            &[("route", r.label())],
            &s.routes[r.index()].latency,
        );
    }
}

fn pool(s: &Shared, e: &mut Exposition) {
    let p = s.pool_stats();
    for (name, help, v) in [
        (
            "powertune_target_db_pool_size",
            "Slots in the simulated database pool.",
            p.size as f64,
        ),
        (
            "powertune_target_db_pool_in_use",
            "Pool slots held by requests now.",
            p.in_use as f64,
        ),
        (
            "powertune_target_db_pool_waiting",
            "Requests waiting for a pool slot now.",
            p.waiting as f64,
        ),
        (
            "powertune_target_db_pool_waiting_max",
            "Most requests ever waiting for a pool slot at once.",
            p.waiting_max as f64,
        ),
    ] {
        e.gauge(name, help).sample(&[], v);
    }
    e.counter(
        "powertune_target_db_pool_timeouts",
        "Requests that waited pool_timeout for a slot and were answered 503.",
    )
    .sample(&[], p.timeouts as f64);
    let mut f = e.histogram(
        "powertune_target_db_pool_wait_seconds",
        "Time requests waited for a pool slot.",
    );
    histogram(&mut f, &[], &s.pool_wait);
}

fn cpu(s: &Shared, e: &mut Exposition) {
    let c = s.cpu_stats();
    for (name, help, v) in [
        (
            "powertune_target_cpu_workers",
            "Threads that do the routes' CPU work (cpu_workers).",
            c.workers as f64,
        ),
        (
            "powertune_target_cpu_busy",
            "CPU worker threads busy now.",
            c.busy as f64,
        ),
        (
            "powertune_target_cpu_waiting",
            "Requests waiting for a CPU worker thread now.",
            c.waiting as f64,
        ),
    ] {
        e.gauge(name, help).sample(&[], v);
    }
    e.counter(
        "powertune_target_cpu_seconds",
        "CPU work done by the worker threads (routes.*.cpu), in seconds.",
    )
    .sample(&[], c.seconds);
}

fn cable(s: &Shared, e: &mut Exposition) {
    let c = s.cable_stats();
    e.gauge(
        "powertune_target_websocket_connections",
        "Open ActionCable WebSocket connections.",
    )
    .sample(&[], c.connections as f64);
    e.counter(
        "powertune_target_websocket_connections_opened",
        "ActionCable WebSocket connections ever opened.",
    )
    .sample(&[], c.connections_total as f64);
    e.gauge(
        "powertune_target_cable_subscriptions",
        "Confirmed channel subscriptions now.",
    )
    .sample(&[], c.subscriptions as f64);
    for (name, help, v) in [
        (
            "powertune_target_cable_broadcasts",
            "Monitoring broadcasts published.",
            c.broadcasts,
        ),
        (
            "powertune_target_cable_messages_sent",
            "ActionCable messages sent to clients (welcome, ping, confirmations, broadcasts).",
            c.messages_sent,
        ),
        (
            "powertune_target_cable_messages_received",
            "ActionCable messages received from clients.",
            c.messages_received,
        ),
    ] {
        e.counter(name, help).sample(&[], v as f64);
    }
}

fn work(s: &Shared, e: &mut Exposition) {
    let missions = s.missions.lock().total;
    let (executions, failed) = {
        let x = s.executions.lock();
        (x.total, x.failed)
    };
    for (name, help, v) in [
        (
            "powertune_target_missions_created",
            "Missions created.",
            missions,
        ),
        (
            "powertune_target_agent_executions",
            "Agent executions finished, failed ones included.",
            executions,
        ),
        (
            "powertune_target_agent_execution_failures",
            "Agent executions that failed (injected error or pool timeout).",
            failed,
        ),
    ] {
        e.counter(name, help).sample(&[], v as f64);
    }
}

fn histogram(
    f: &mut powertune_core::prometheus::FamilyWriter<'_>,
    labels: &[(&str, &str)],
    b: &Buckets,
) {
    let (cumulative, sum, count) = b.snapshot();
    let buckets = BUCKETS.iter().copied().zip(cumulative).collect();
    f.histogram(labels, sum, count, buckets);
}
