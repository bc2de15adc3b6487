//! Example traces: an entry span's subtree as an indented list of spans.

use super::hash::IdMap;
use crate::model::{trace_hex, SpanClass, SpanRec};
use crate::snapshot::{Breakdown, SpanNode, TraceExample};

fn category(c: &SpanClass) -> (&'static str, String) {
    match c {
        SpanClass::Server { route, status } => (
            "server",
            match status {
                Some(s) => format!("{route} → {s}"),
                None => route.clone(),
            },
        ),
        SpanClass::Db {
            system,
            statement,
            cached,
            ..
        } => (
            "db",
            format!(
                "{system}{} {statement}",
                if *cached { " (cached)" } else { "" }
            ),
        ),
        SpanClass::Http { method, host } => ("http", format!("{method} {host}")),
        SpanClass::Provider {
            provider,
            model,
            gateway,
            ..
        } => (
            "provider",
            format!(
                "{provider}/{model}{}",
                if *gateway { " via gateway" } else { "" }
            ),
        ),
        SpanClass::Job { class, queue } => ("job", format!("{class} on {queue}")),
        SpanClass::Enqueue { class, queue } => ("enqueue", format!("{class} to {queue}")),
        // The key is not shown: keys can carry session or user ids.
        SpanClass::Cache { hit, .. } => ("cache", if *hit { "hit" } else { "miss" }.to_string()),
        SpanClass::Other => ("other", String::new()),
    }
}

pub(super) fn build_example(
    spans: &[SpanRec],
    entry: usize,
    bd: Breakdown,
    max: usize,
) -> TraceExample {
    let index: IdMap<u64, usize> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id, i))
        .collect();
    let mut children: IdMap<usize, Vec<usize>> = IdMap::default();
    for (i, s) in spans.iter().enumerate() {
        if let Some(&p) = index.get(&s.parent_id) {
            if p != i {
                children.entry(p).or_default().push(i);
            }
        }
    }
    for v in children.values_mut() {
        v.sort_by_key(|&k| spans[k].start_ns);
    }
    let root = &spans[entry];
    let mut out = Vec::new();
    let mut total = 0u64;
    let mut stack = vec![(entry, 0u32)];
    let mut seen = std::collections::HashSet::new();
    while let Some((i, depth)) = stack.pop() {
        if !seen.insert(i) || depth > 64 {
            continue;
        }
        total += 1;
        if out.len() < max {
            let s = &spans[i];
            let (cat, detail) = category(&s.class);
            out.push(SpanNode {
                depth,
                span_id: format!("{:016x}", s.span_id),
                parent_id: format!("{:016x}", s.parent_id),
                name: s.name.clone(),
                category: cat.to_string(),
                detail,
                offset_ms: s.start_ns.saturating_sub(root.start_ns) as f64 / 1e6,
                duration_ms: s.duration_ms(),
                error: s.error,
                sql_sample: s.sql_sample.clone(),
            });
        }
        if let Some(k) = children.get(&i) {
            for &c in k.iter().rev() {
                stack.push((c, depth + 1));
            }
        }
    }
    TraceExample {
        trace_id: trace_hex(root.trace_id),
        duration_ms: root.duration_ms(),
        breakdown: bd,
        truncated: total.saturating_sub(out.len() as u64),
        spans: out,
        linked: Vec::new(),
    }
}
