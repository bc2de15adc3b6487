//! `apm analyze`'s collector: export files as one pretty document, one request
//! per line, gzip-compressed; a bad line named by its number.
// Test code: helpers outside #[test] functions may unwrap, panic and print (clippy.toml
// allows it only inside them).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use common::*;
use powertune_apm::collect::file::analyze_file;
use powertune_apm::snapshot::DetectionKind;

#[test]
fn offline_files_pretty_lines_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let one =
        serde_json::to_string_pretty(&n_plus_one_trace(501, Gen::Old, 6, false).request_proto())
            .unwrap();
    let lines = format!(
        "{}\n\n{}\n",
        serde_json::to_string(&n_plus_one_trace(502, Gen::New, 6, false).request_proto()).unwrap(),
        serde_json::to_string(&n_plus_one_trace(503, Gen::Old, 6, false).request_proto()).unwrap()
    );
    let cases = [
        ("one.json", one.into_bytes(), 1),
        ("lines.jsonl", lines.clone().into_bytes(), 2),
        ("lines.jsonl.gz", gzip(lines.as_bytes()), 2),
    ];
    for (name, bytes, count) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let mut e = engine();
        let s = analyze_file(&p, &mut e).unwrap();
        assert_eq!(s.routes[0].latency.count, count, "{name}");
        assert_eq!(
            detections(&s, DetectionKind::NPlusOne)[0].occurrences,
            count,
            "{name}"
        );
    }
    let p = dir.path().join("bad.jsonl");
    std::fs::write(
        &p,
        format!(
            "{}\n{{\"resourceSpans\": 5}}\n",
            lines.lines().next().unwrap()
        ),
    )
    .unwrap();
    let mut e = engine();
    let err = analyze_file(&p, &mut e).unwrap_err().to_string();
    assert!(err.contains("bad.jsonl line 2"), "{err}");
}
