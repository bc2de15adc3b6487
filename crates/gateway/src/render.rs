//! The terminal section of `powertune gateway status`, shown above the findings.

use crate::snapshot::StatusSnapshot;
use powertune_core::report::{table, Style};
use powertune_core::units;

/// The terminal section of `powertune gateway status`: calls, overhead and retries,
/// then a table of credentials and one of series; `style` bolds the headers.
pub fn render(s: &StatusSnapshot, style: Style) -> String {
    let mut out = format!(
        "{} calls in {}; gateway overhead p50 {} p99 {}; retries by depth {:?}; {} answered 503 (all open)\n\n",
        s.calls,
        units::seconds(s.uptime_s.round()),
        units::ms(s.overhead_ms.p50),
        units::ms(s.overhead_ms.p99),
        s.retries_by_depth,
        s.rejected_all_open
    );
    let mut rows = vec![[
        "provider",
        "credential",
        "state",
        "weight",
        "rpm",
        "fails",
        "trips",
    ]
    .iter()
    .map(|x| style.bold(x))
    .collect::<Vec<_>>()];
    for c in &s.credentials {
        let mut state = match c.open_for_s {
            Some(secs) => format!("{} ({})", c.state, units::seconds(secs.round())),
            None => c.state.clone(),
        };
        if let (Some(asked), Some(true)) = (c.retry_after_s, c.retry_after_capped) {
            // the provider asked for longer than breaker.retry_after_max
            state.push_str(&format!(
                ", asked {} (capped)",
                units::seconds(asked.round())
            ));
        }
        rows.push(vec![
            c.provider.clone(),
            c.credential.clone(),
            state,
            c.weight.to_string(),
            c.rpm.map_or("-".into(), |r| r.to_string()),
            c.consecutive_failures.to_string(),
            c.trips.to_string(),
        ]);
    }
    out.push_str(&table(&rows));
    if !s.series.is_empty() {
        out.push('\n');
        let mut rows = vec![[
            "provider/credential",
            "model",
            "ok",
            "failed",
            "p50",
            "p95",
            "ttft p95",
            "tokens in/out",
        ]
        .iter()
        .map(|x| style.bold(x))
        .collect::<Vec<_>>()];
        for r in &s.series {
            let ok = r.requests.get("ok").copied().unwrap_or(0);
            let failed: u64 = r
                .requests
                .iter()
                .filter(|(k, _)| k.as_str() != "ok")
                .map(|(_, v)| v)
                .sum();
            rows.push(vec![
                format!("{}/{}", r.provider, r.credential),
                r.model.clone(),
                ok.to_string(),
                failed.to_string(),
                units::ms(r.latency_ms.p50),
                units::ms(r.latency_ms.p95),
                units::ms(r.ttft_ms.p95),
                format!("{}/{}", r.tokens_in, r.tokens_out),
            ]);
        }
        out.push_str(&table(&rows));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{CredentialStatus, Percentiles, SeriesStatus};

    #[test]
    fn times_are_written_the_core_way() {
        let pct = |p50: f64, p95: f64, p99: f64| Percentiles {
            count: 3,
            p50,
            p95,
            p99,
        };
        let s = StatusSnapshot {
            version: 1,
            uptime_s: 3.4,
            config_generation: 1,
            calls: 3,
            retries_by_depth: vec![3, 0, 0],
            rejected_all_open: 0,
            overhead_ms: pct(0.075, 0.9, 1.088),
            credentials: vec![CredentialStatus {
                provider: "openai".into(),
                credential: "primary".into(),
                state: "open".into(),
                open_for_s: Some(118.4),
                open_until: None,
                retry_after_s: None,
                retry_after_capped: None,
                consecutive_failures: 5,
                trips: 1,
                transitions: 1,
                weight: 3,
                rpm: None,
                ..Default::default()
            }],
            providers: vec![],
            series: vec![SeriesStatus {
                provider: "openai".into(),
                credential: "primary".into(),
                model: "gpt-4o-mini".into(),
                requests: [("ok".to_string(), 3)].into(),
                latency_ms: pct(0.6, 15.0, 15.0),
                ttft_ms: pct(14.3, 14.3, 14.3),
                per_token_ms: Percentiles::default(),
                tokens_in: 3,
                tokens_out: 15,
            }],
            shared: None,
            cost: None,
        };
        let text = render(&s, Style::plain());
        assert!(
            text.starts_with("3 calls in 3s; gateway overhead p50 75µs p99 1.09ms;"),
            "{text}"
        );
        assert!(text.contains("open (1m58s)"), "{text}");
        // a rate limit whose Retry-After was cut to breaker.retry_after_max says so
        let mut capped = s.clone();
        capped.credentials[0].state = "rate_limited".into();
        capped.credentials[0].open_for_s = Some(3600.0);
        capped.credentials[0].retry_after_s = Some(86_400.0);
        capped.credentials[0].retry_after_capped = Some(true);
        let text = render(&capped, Style::plain());
        assert!(
            text.contains("rate_limited (1h00m), asked 24h00m (capped)"),
            "{text}"
        );
        let row = text.lines().find(|l| l.contains("gpt-4o-mini")).unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[4..7], ["600µs", "15ms", "14.3ms"], "{row}");
    }
}
