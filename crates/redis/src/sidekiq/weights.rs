//! Queue weights: which weights are in force and how likely each queue is polled first.

use super::snapshot::SidekiqSnapshot;
use powertune_core::targets::WorkerTargets;
use std::collections::BTreeMap;

/// The probability that each queue is polled first, from weights (Sidekiq shuffles a
/// list holding each queue max(weight, 1) times; all-zero weights mean strict order).
pub fn poll_first(order: &[String], weights: &BTreeMap<String, u64>) -> Vec<(String, f64)> {
    if order.is_empty() {
        return Vec::new();
    }
    let ws: Vec<u64> = order
        .iter()
        .map(|q| weights.get(q).copied().unwrap_or(0))
        .collect();
    if ws.iter().all(|&w| w == 0) && !weights.is_empty() {
        return order
            .iter()
            .enumerate()
            .map(|(i, q)| (q.clone(), if i == 0 { 1.0 } else { 0.0 }))
            .collect();
    }
    let eff: Vec<f64> = ws.iter().map(|&w| w.max(1) as f64).collect();
    let total: f64 = eff.iter().sum();
    order
        .iter()
        .zip(eff)
        .map(|(q, w)| (q.clone(), w / total))
        .collect()
}

/// The weights in force: published by the processes (7.x+), else the targets'
/// `worker.weights` (what `sidekiq.yml` should say), else none.
pub fn weights_in_force(
    s: &SidekiqSnapshot,
    t: &WorkerTargets,
) -> (BTreeMap<String, u64>, &'static str) {
    let mut w = BTreeMap::new();
    for p in &s.processes {
        for (k, v) in &p.weights {
            w.entry(k.clone()).or_insert(*v);
        }
    }
    if !w.is_empty() {
        return (w, "published by the processes");
    }
    (
        t.weights
            .iter()
            .map(|(k, v)| (k.clone(), *v as u64))
            .collect(),
        "worker.weights of the targets (this Sidekiq does not publish weights)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_first_probabilities() {
        let order: Vec<String> = ["critical", "standard", "low"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let w: BTreeMap<String, u64> = [("critical", 3), ("standard", 2), ("low", 1)]
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        let p = poll_first(&order, &w);
        assert!((p[0].1 - 0.5).abs() < 1e-9 && (p[2].1 - 1.0 / 6.0).abs() < 1e-9);
        let zero: BTreeMap<String, u64> = order.iter().map(|k| (k.clone(), 0)).collect();
        assert_eq!(poll_first(&order, &zero)[0].1, 1.0);
    }
}
