//! The receiver over real HTTP on loopback: protobuf, JSON, gzip, malformed
//! bodies, partial success, the endpoint API, and 503 when over capacity.
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
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use powertune_apm::collect::receiver as client;
use powertune_apm::server::{self, ServeConfig};
use powertune_apm::snapshot::DetectionKind;
use prost::Message;
use std::time::Duration;

#[tokio::test]
async fn http_receiver_takes_protobuf_json_and_gzip_and_survives_garbage() {
    let run = start(local()).await;
    let addr = run.http_addr;
    let pb = n_plus_one_trace(101, Gen::New, 6, false)
        .request_proto()
        .encode_to_vec();
    let r = post(addr, "application/x-protobuf", false, pb).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-protobuf");
    let resp = ExportTraceServiceResponse::decode(r.bytes().await.unwrap()).unwrap();
    assert!(resp.partial_success.is_none());
    let json =
        serde_json::to_vec(&n_plus_one_trace(102, Gen::Old, 6, false).request_proto()).unwrap();
    let text = String::from_utf8(json.clone()).unwrap();
    assert!(
        text.contains("\"traceId\":\"00000000000000000000000000000066\""),
        "hex ids: {text:.300}"
    );
    assert_eq!(
        post(addr, "application/json", false, json.clone())
            .await
            .status(),
        200
    );
    let gz_pb = gzip(
        &n_plus_one_trace(103, Gen::New, 6, false)
            .request_proto()
            .encode_to_vec(),
    );
    assert_eq!(
        post(addr, "application/x-protobuf", true, gz_pb)
            .await
            .status(),
        200
    );
    let gz_json = gzip(
        &serde_json::to_vec(&n_plus_one_trace(104, Gen::Old, 6, false).request_proto()).unwrap(),
    );
    assert_eq!(
        post(addr, "application/json", true, gz_json).await.status(),
        200
    );
    let before = summary_of(addr).await;
    assert_eq!(before.routes[0].latency.count, 4);
    assert_eq!(
        detections(&before, DetectionKind::NPlusOne)[0].occurrences,
        4
    );
    // Garbage: 400 in the request's own format, nothing lost.
    let r = post(
        addr,
        "application/x-protobuf",
        false,
        b"\xff\xff\xff\xff garbage".to_vec(),
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = post(
        addr,
        "application/json",
        false,
        b"{\"resourceSpans\": [".to_vec(),
    )
    .await;
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("OTLP/JSON"),
        "{body}"
    );
    assert_eq!(
        post(addr, "application/json", true, b"not gzip".to_vec())
            .await
            .status(),
        400
    );
    assert_eq!(
        post(addr, "text/plain", false, b"x".to_vec())
            .await
            .status(),
        415
    );
    let after = summary_of(addr).await;
    assert_eq!(after.routes, before.routes);
    assert_eq!(after.ingest.bodies_malformed, 3);
    // Partial success: one span with a bad id is rejected, the rest kept.
    let mut req = n_plus_one_trace(105, Gen::New, 6, false).request_proto();
    req.resource_spans[0].scope_spans[0].spans[1].span_id = vec![1, 2, 3];
    let r = post(addr, "application/x-protobuf", false, req.encode_to_vec()).await;
    assert_eq!(r.status(), 200);
    let resp = ExportTraceServiceResponse::decode(r.bytes().await.unwrap()).unwrap();
    let ps = resp.partial_success.unwrap();
    assert_eq!(ps.rejected_spans, 1);
    assert!(
        ps.error_message.contains("span id of 3 bytes"),
        "{}",
        ps.error_message
    );
    let s = summary_of(addr).await;
    assert_eq!(s.routes[0].latency.count, 5);
    assert_eq!(s.ingest.spans_rejected, 1);
    // The endpoint view: slowest traces as span trees.
    let d = client::fetch_endpoint(
        &client::base_url(&format!("http://{addr}")).unwrap(),
        "GET /api/v1/posts",
        Some(Duration::from_secs(900)),
    )
    .await
    .unwrap();
    assert!(!d.slowest.is_empty());
    assert_eq!(d.slowest[0].spans[0].depth, 0);
    assert!(d.slowest[0].spans[1..].iter().all(|n| n.depth == 1));
    let text = powertune_apm::render::endpoint(&d);
    assert!(text.contains("n_plus_one"), "{text}");
    let e = client::fetch_endpoint(
        &client::base_url(&format!("http://{addr}")).unwrap(),
        "GET /nope",
        None,
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("404"), "{e}");
    run.stop();
}

#[tokio::test]
async fn over_capacity_answers_503_with_retry_after() {
    let mut cfg = ServeConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.queue_batches = 1;
    // The engine task is not started, so the queue stays full after one batch.
    let (router, _shared, _rx) = server::router_parts(&cfg).unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move { axum::serve(l, router).await });
    let body = n_plus_one_trace(201, Gen::New, 1, false)
        .request_proto()
        .encode_to_vec();
    assert_eq!(
        post(addr, "application/x-protobuf", false, body.clone())
            .await
            .status(),
        200
    );
    let r = post(addr, "application/x-protobuf", false, body).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    task.abort();
}
