//! The monitoring view of the live state: what the dashboard answers and what the
//! cable broadcasts carry.

use crate::state::{unix_now, Shared};
use serde_json::{json, Value};

/// The monitoring snapshot shared by the dashboard and the cable broadcasts.
pub fn monitoring_snapshot(s: &Shared, recent: usize) -> Value {
    let stats = s.stats();
    let (missions_total, recent_missions) = {
        let ms = s.missions.lock();
        let list: Vec<Value> = ms
            .recent
            .iter()
            .rev()
            .take(recent)
            .map(|m| json!(m))
            .collect();
        (ms.total, list)
    };
    let agents = {
        let e = s.executions.lock();
        let avg = if e.total > 0 {
            e.duration_ms_sum / e.total as f64
        } else {
            0.0
        };
        let list: Vec<Value> = e
            .recent
            .iter()
            .rev()
            .take(recent)
            .map(|x| json!(x))
            .collect();
        json!({
            "executions_total": e.total,
            "executions_failed": e.failed,
            "avg_duration_ms": (avg * 1000.0).round() / 1000.0,
            "recent_executions": list,
        })
    };
    let errors: u64 = stats
        .routes
        .values()
        .flat_map(|r| r.by_status.iter())
        .filter(|(status, _)| **status >= 500)
        .map(|(_, n)| n)
        .sum();
    let by_route: serde_json::Map<String, Value> = stats
        .routes
        .iter()
        .map(|(label, r)| (label.to_string(), json!(r.total)))
        .collect();
    json!({
        "generated_at": unix_now(),
        "uptime_seconds": s.started.elapsed().as_secs(),
        "missions": {"total": missions_total, "recent": recent_missions},
        "agents": agents,
        "requests": {"total": stats.total, "server_errors": errors, "by_route": by_route},
        "db_pool": stats.pool,
        "cable": stats.cable,
    })
}
