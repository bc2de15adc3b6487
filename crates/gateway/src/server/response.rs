//! What every answer carries: the gateway's own headers, and errors in the client's
//! shape.

use super::live::Live;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use powertune_dialect::{ApiError, ErrorKind, Front};
use std::time::Duration;

/// Response header with the gateway's own time for the call, in milliseconds.
pub const OVERHEAD_HEADER: &str = "x-powertune-overhead-ms";

pub(crate) fn decorate(
    live: &Live,
    r: &mut Response,
    provider: usize,
    cred: usize,
    retries: u32,
    overhead: Duration,
) {
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_bytes(millis_text(overhead, &mut [0u8; 24])) {
        h.insert(OVERHEAD_HEADER, v);
    }
    h.insert("x-powertune-provider", live.provider_hv[provider].clone());
    h.insert(
        "x-powertune-credential",
        live.cred_hv[provider][cred].clone(),
    );
    h.insert("x-powertune-retries", HeaderValue::from(retries));
}

/// `d` in milliseconds with three decimals ("0.042"), written without float formatting.
pub(super) fn millis_text(d: Duration, buf: &mut [u8; 24]) -> &[u8] {
    let us = d.as_micros().min(u64::MAX as u128) as u64;
    let (mut ms, frac) = (us / 1000, us % 1000);
    let mut i = buf.len();
    for k in 0..3 {
        i -= 1;
        buf[i] = b'0' + ((frac / 10u64.pow(k)) % 10) as u8;
    }
    i -= 1;
    buf[i] = b'.';
    loop {
        i -= 1;
        buf[i] = b'0' + (ms % 10) as u8;
        ms /= 10;
        if ms == 0 || i == 0 {
            break;
        }
    }
    &buf[i..]
}

pub(super) fn internal_error(front: Front) -> Response {
    error_response(
        front,
        &ApiError::new(
            ErrorKind::Upstream,
            "the gateway lost the parsed request (a bug; please report it)",
        ),
        None,
    )
}

pub(super) fn overhead(t0: std::time::Instant, waited: Duration) -> Duration {
    t0.elapsed().saturating_sub(waited)
}

pub(super) fn error_response(
    front: Front,
    e: &ApiError,
    retry_after: Option<Duration>,
) -> Response {
    let status = StatusCode::from_u16(e.kind.status()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut r = (status, axum::Json(e.body(front))).into_response();
    if let Some(ra) = retry_after {
        let secs = ra.as_secs_f64().ceil().max(1.0) as u64;
        r.headers_mut()
            .insert("retry-after", HeaderValue::from(secs));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overhead_header_text() {
        for (us, want) in [
            (0, "0.000"),
            (42, "0.042"),
            (1_234, "1.234"),
            (987_654_321, "987654.321"),
        ] {
            let mut buf = [0u8; 24];
            let got = millis_text(Duration::from_micros(us), &mut buf);
            assert_eq!(std::str::from_utf8(got).unwrap(), want);
        }
    }
}
