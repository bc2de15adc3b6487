//! `GET /metrics`: the target's state in the Prometheus text exposition format
//! (version 0.0.4).

use crate::route::Route;
use crate::state::{Buckets, Shared, BUCKETS};
use std::fmt::Write;

/// Content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders every metric.
pub fn render(s: &Shared) -> String {
    let mut out = String::with_capacity(16 * 1024);
    header(
        &mut out,
        "powertune_target_requests_total",
        "counter",
        "HTTP requests answered, by route and status (/metrics scrapes excluded).",
    );
    for r in Route::ALL {
        if r == Route::Metrics {
            continue;
        }
        for (status, n) in s.routes[r.index()].by_status() {
            let _ = writeln!(
                out,
                "powertune_target_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                r.label()
            );
        }
    }
    header(
        &mut out,
        "powertune_target_request_duration_seconds",
        "histogram",
        "Time from request received to response headers, by route.",
    );
    for r in Route::ALL {
        if r == Route::Metrics {
            continue;
        }
        let b = &s.routes[r.index()].latency;
        histogram(
            &mut out,
            "powertune_target_request_duration_seconds",
            &format!("route=\"{}\",", r.label()),
            b,
        );
    }

    let p = s.pool_stats();
    gauge(
        &mut out,
        "powertune_target_db_pool_size",
        "Slots in the simulated database pool.",
        p.size as f64,
    );
    gauge(
        &mut out,
        "powertune_target_db_pool_in_use",
        "Pool slots held by requests now.",
        p.in_use as f64,
    );
    gauge(
        &mut out,
        "powertune_target_db_pool_waiting",
        "Requests waiting for a pool slot now.",
        p.waiting as f64,
    );
    gauge(
        &mut out,
        "powertune_target_db_pool_waiting_max",
        "Most requests ever waiting for a pool slot at once.",
        p.waiting_max as f64,
    );
    counter(
        &mut out,
        "powertune_target_db_pool_timeouts_total",
        "Requests that waited pool_timeout for a slot and were answered 503.",
        p.timeouts,
    );
    header(
        &mut out,
        "powertune_target_db_pool_wait_seconds",
        "histogram",
        "Time requests waited for a pool slot.",
    );
    histogram(
        &mut out,
        "powertune_target_db_pool_wait_seconds",
        "",
        &s.pool_wait,
    );

    let c = s.cable_stats();
    gauge(
        &mut out,
        "powertune_target_websocket_connections",
        "Open ActionCable WebSocket connections.",
        c.connections as f64,
    );
    counter(
        &mut out,
        "powertune_target_websocket_connections_total",
        "ActionCable WebSocket connections ever opened.",
        c.connections_total,
    );
    gauge(
        &mut out,
        "powertune_target_cable_subscriptions",
        "Confirmed channel subscriptions now.",
        c.subscriptions as f64,
    );
    counter(
        &mut out,
        "powertune_target_cable_broadcasts_total",
        "Monitoring broadcasts published.",
        c.broadcasts,
    );
    counter(
        &mut out,
        "powertune_target_cable_messages_sent_total",
        "ActionCable messages sent to clients (welcome, ping, confirmations, broadcasts).",
        c.messages_sent,
    );
    counter(
        &mut out,
        "powertune_target_cable_messages_received_total",
        "ActionCable messages received from clients.",
        c.messages_received,
    );

    let missions = s.missions.lock().total;
    let (executions, failed) = {
        let e = s.executions.lock();
        (e.total, e.failed)
    };
    counter(
        &mut out,
        "powertune_target_missions_created_total",
        "Missions created.",
        missions,
    );
    counter(
        &mut out,
        "powertune_target_agent_executions_total",
        "Agent executions finished, failed ones included.",
        executions,
    );
    counter(
        &mut out,
        "powertune_target_agent_execution_failures_total",
        "Agent executions that failed (injected error or pool timeout).",
        failed,
    );
    gauge(
        &mut out,
        "powertune_target_uptime_seconds",
        "Seconds since the target started.",
        s.started.elapsed().as_secs_f64(),
    );
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn gauge(out: &mut String, name: &str, help: &str, v: f64) {
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {v}");
}

fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    header(out, name, "counter", help);
    let _ = writeln!(out, "{name} {v}");
}

/// `labels` is empty or ends with a comma.
fn histogram(out: &mut String, name: &str, labels: &str, b: &Buckets) {
    let (cumulative, sum, count) = b.snapshot();
    for (le, n) in BUCKETS.iter().zip(&cumulative) {
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{le}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {count}");
    let plain = labels.trim_end_matches(',');
    if plain.is_empty() {
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
    } else {
        let _ = writeln!(out, "{name}_sum{{{plain}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{plain}}} {count}");
    }
}
