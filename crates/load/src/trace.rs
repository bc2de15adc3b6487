//! W3C Trace Context for `--trace`: each HTTP request and WebSocket upgrade gets a
//! `traceparent` header of its own (version `00`, a random 16-byte trace id, a random
//! 8-byte parent span id, flags `01`: sampled), and the slowest requests of each
//! series keep their ids ([`Slowest`], at most [`SLOWEST_KEPT`]) so the report can
//! name the traces to look up in the APM.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The header's name (lower case, as the W3C recommendation writes it).
pub const HEADER: &str = "traceparent";

/// The slowest requests kept per series, and so per step, scenario, endpoint type
/// and run.
pub const SLOWEST_KEPT: usize = 5;

/// One request's trace context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
}

impl TraceContext {
    /// Fresh ids from the thread's cryptographically secure generator (rand's
    /// `ThreadRng`); all-zero ids, which the recommendation forbids, are drawn again.
    pub fn random() -> TraceContext {
        let mut rng = rand::rng();
        loop {
            let trace_id: [u8; 16] = rand::Rng::random(&mut rng);
            let span_id: [u8; 8] = rand::Rng::random(&mut rng);
            if trace_id != [0; 16] && span_id != [0; 8] {
                return TraceContext { trace_id, span_id };
            }
        }
    }

    /// The `traceparent` value: `00-<32 hex>-<16 hex>-01`, lower case.
    pub fn header(&self) -> String {
        format!(
            "00-{}-{}-01",
            hex::encode(self.trace_id),
            hex::encode(self.span_id)
        )
    }

    /// Reads a version-00 `traceparent` value as the recommendation defines it
    /// (lower-case hex, non-zero ids); `None` for anything else.
    pub fn parse(v: &str) -> Option<TraceContext> {
        let p: Vec<&str> = v.split('-').collect();
        let lower_hex = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        match p.as_slice() {
            ["00", t, s, f] if lower_hex(t, 32) && lower_hex(s, 16) && lower_hex(f, 2) => {
                let mut ctx = TraceContext {
                    trace_id: [0; 16],
                    span_id: [0; 8],
                };
                hex::decode_to_slice(t, &mut ctx.trace_id).ok()?;
                hex::decode_to_slice(s, &mut ctx.span_id).ok()?;
                (ctx.trace_id != [0; 16] && ctx.span_id != [0; 8]).then_some(ctx)
            }
            _ => None,
        }
    }
}

/// One slow request as the report names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("additionalProperties" = false))]
pub struct SlowRequest {
    /// Send to the response's last byte (`http_req_duration_raw`: what the server's
    /// own trace shows), milliseconds.
    pub duration_ms: f64,
    /// The `traceparent` trace id, 32 lower-case hex digits.
    #[schemars(regex(pattern = "^[0-9a-f]{32}$"))]
    pub trace_id: String,
    /// The `traceparent` parent id (the load generator's span), 16 hex digits.
    #[schemars(regex(pattern = "^[0-9a-f]{16}$"))]
    pub span_id: String,
    /// The request's status (absent for an error without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

/// The slowest traced requests of one series: at most [`SLOWEST_KEPT`], slowest
/// first. Recording is O(1) for a request faster than the kept ones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Slowest {
    kept: Vec<(u64, TraceContext, Option<u16>)>,
}

impl Slowest {
    /// Offers a request that took `us` microseconds.
    pub fn offer(&mut self, us: u64, ctx: TraceContext, status: Option<u16>) {
        if self.kept.len() == SLOWEST_KEPT && self.kept.last().is_some_and(|l| l.0 >= us) {
            return;
        }
        let at = self.kept.partition_point(|k| k.0 >= us);
        self.kept.insert(at, (us, ctx, status));
        self.kept.truncate(SLOWEST_KEPT);
    }

    /// Adds another series' slowest (the kept ones of both, slowest first).
    pub fn merge(&mut self, o: &Slowest) {
        for (us, ctx, st) in &o.kept {
            self.offer(*us, *ctx, *st);
        }
    }

    /// As the report writes them.
    pub fn report(&self) -> Vec<SlowRequest> {
        self.kept
            .iter()
            .map(|(us, ctx, status)| SlowRequest {
                duration_ms: *us as f64 / 1000.0,
                trace_id: hex::encode(ctx.trace_id),
                span_id: hex::encode(ctx.span_id),
                status: *status,
            })
            .collect()
    }
}

/// Merges two report lists (e.g. of two segments, or two steps) into the slowest
/// [`SLOWEST_KEPT`], slowest first.
pub fn merge_reported(a: &mut Vec<SlowRequest>, b: &[SlowRequest]) {
    a.extend_from_slice(b);
    a.sort_by(|x, y| y.duration_ms.total_cmp(&x.duration_ms));
    a.truncate(SLOWEST_KEPT);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_has_the_recommendations_shape_and_reads_back() {
        let c = TraceContext::random();
        let h = c.header();
        assert_eq!(h.len(), 55, "{h}");
        assert!(h.starts_with("00-") && h.ends_with("-01"), "{h}");
        assert_eq!(TraceContext::parse(&h), Some(c));
        let w3c = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let p = TraceContext::parse(w3c).unwrap();
        assert_eq!(p.header(), w3c);
        for bad in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn ids_differ_from_request_to_request() {
        let ids: std::collections::HashSet<[u8; 16]> =
            (0..1000).map(|_| TraceContext::random().trace_id).collect();
        assert_eq!(ids.len(), 1000);
    }

    #[test]
    fn the_slowest_are_kept_slowest_first_and_bounded() {
        let ctx = |n: u8| TraceContext {
            trace_id: [n; 16],
            span_id: [n; 8],
        };
        let mut a = Slowest::default();
        for (i, us) in [5, 90, 10, 70, 30, 80, 1, 60].into_iter().enumerate() {
            a.offer(us, ctx(i as u8 + 1), Some(200));
        }
        let kept: Vec<u64> = a.kept.iter().map(|k| k.0).collect();
        assert_eq!(kept, [90, 80, 70, 60, 30]);
        let mut b = Slowest::default();
        b.offer(75, ctx(9), None);
        a.merge(&b);
        let r = a.report();
        assert_eq!(r.len(), SLOWEST_KEPT);
        assert_eq!(r[2].duration_ms, 0.075);
        assert_eq!(r[2].trace_id, "09".repeat(16));
        assert_eq!(r[2].status, None);
        let mut x = r.clone();
        merge_reported(
            &mut x,
            &[SlowRequest {
                duration_ms: 1.0,
                ..r[0].clone()
            }],
        );
        assert_eq!(x.len(), SLOWEST_KEPT);
        assert_eq!(x[0].duration_ms, 1.0);
    }
}
