//! The scan as tables: biggest keys, prefixes, cache types.

use super::snapshot::{CacheTypeStats, PrefixStats, ScanSnapshot};
use crate::units::{human_bytes, human_secs};
use powertune_core::report::{table, truncate};

/// The scan as tables: biggest keys, prefixes, cache types.
pub fn render(s: &ScanSnapshot) -> String {
    let unit = if s.memory_unavailable.is_some() {
        "size (elements)"
    } else {
        "memory"
    };
    let sz = |b: u64| {
        if s.memory_unavailable.is_some() {
            b.to_string()
        } else {
            human_bytes(b)
        }
    };
    let mut out = format!(
        "Scanned {} of {} keys in db{} in {}{}{}\n",
        s.scanned,
        s.dbsize,
        s.db,
        human_secs(s.elapsed_s),
        if s.sampled {
            format!(
                " (sample: figures marked ~ are extrapolated ×{:.1})",
                s.extrapolation()
            )
        } else {
            String::new()
        },
        s.pattern
            .as_ref()
            .map(|p| format!(" matching {p}"))
            .unwrap_or_default()
    );
    if let Some(r) = &s.memory_unavailable {
        out.push_str(&format!(
            "MEMORY USAGE unavailable ({r}): sizes are element counts (bytes for strings)\n"
        ));
    }
    out.push_str(&format!(
        "{}: {}, without TTL: {} keys ({})\n\n",
        unit,
        sz(s.total_bytes),
        s.no_ttl_keys,
        sz(s.no_ttl_bytes)
    ));
    let mut rows = vec![vec![
        "key".to_string(),
        "type".into(),
        unit.into(),
        "elements".into(),
        "ttl".into(),
    ]];
    for k in &s.top {
        rows.push(vec![
            truncate(&k.key, 60),
            k.key_type.clone(),
            sz(k.size),
            k.elements.map_or("-".into(), |e| e.to_string()),
            k.ttl_ms
                .map_or("none".into(), |t| human_secs(t as f64 / 1000.0)),
        ]);
    }
    out.push_str(&format!(
        "Biggest keys (top {})\n{}\n",
        s.top.len(),
        table(&rows)
    ));
    let mut prefixes: Vec<(&String, &PrefixStats)> = s.prefixes.iter().collect();
    prefixes.sort_by(|a, b| b.1.bytes.cmp(&a.1.bytes).then(b.1.keys.cmp(&a.1.keys)));
    let mut rows = vec![vec![
        "prefix".to_string(),
        "keys".into(),
        unit.into(),
        "no TTL keys".into(),
        "no TTL".into(),
    ]];
    for (p, ps) in prefixes.iter().take(25) {
        rows.push(vec![
            truncate(p, 50),
            ps.keys.to_string(),
            sz(ps.bytes),
            ps.no_ttl_keys.to_string(),
            sz(ps.no_ttl_bytes),
        ]);
    }
    out.push_str(&format!(
        "Prefixes ({} groups, by {unit})\n{}",
        s.prefixes.len(),
        table(&rows)
    ));
    let used: Vec<(&String, &CacheTypeStats)> =
        s.cache_types.iter().filter(|(_, c)| c.keys > 0).collect();
    if !used.is_empty() {
        let mut rows = vec![vec![
            "cache type".to_string(),
            "keys".into(),
            unit.into(),
            "no TTL".into(),
            "TTL too long".into(),
            "compressed".into(),
        ]];
        for (n, c) in used {
            rows.push(vec![
                n.clone(),
                c.keys.to_string(),
                sz(c.bytes),
                c.no_ttl.to_string(),
                c.ttl_too_long.to_string(),
                format!("{}/{}", c.compressed, c.compression_checked),
            ]);
        }
        out.push_str(&format!("\nCache types\n{}", table(&rows)));
    }
    out
}
