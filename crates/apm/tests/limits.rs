//! The receiver's per-client limits over real sockets: body sizes (as sent and
//! decompressed), OTLP/HTTP error answers in OTLP's shape (`google.rpc.Status` in
//! the request's content type) for 404, 405, 413 and 415, and the gRPC listener's
//! connection cap and message size limit.
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
use prost::Message;
use std::time::Duration;

/// `google.rpc.Status` as OTLP/HTTP error bodies carry it.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

fn small_limits() -> powertune_apm::server::ServeConfig {
    let mut c = local();
    c.limits.max_body = 64 * 1024;
    c.limits.max_decompressed = 256 * 1024;
    c
}

async fn send(
    method: reqwest::Method,
    url: String,
    ct: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut r = reqwest::Client::new().request(method, url);
    if let Some(ct) = ct {
        r = r.header("content-type", ct);
    }
    r.body(body).send().await.unwrap()
}

#[tokio::test]
async fn otlp_http_errors_come_as_rpc_status_in_the_request_format() {
    let run = start(small_limits()).await;
    let addr = run.http_addr;
    let traces = format!("http://{addr}/v1/traces");
    let big = vec![b'x'; 100 * 1024];

    // 413, protobuf: a protobuf Status with RESOURCE_EXHAUSTED.
    let r = post(addr, "application/x-protobuf", false, big.clone()).await;
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers()["content-type"], "application/x-protobuf");
    let st = RpcStatus::decode(r.bytes().await.unwrap()).unwrap();
    assert_eq!(st.code, 8);
    assert!(
        st.message.contains("server.max_body_bytes"),
        "{}",
        st.message
    );
    // 413, JSON: the same Status as JSON.
    let r = post(addr, "application/json", false, big).await;
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], 8, "{v}");
    // 413 once decompressed: a small gzip body that inflates past the limit.
    let bomb = gzip(&vec![b' '; 1024 * 1024]);
    assert!(bomb.len() < 64 * 1024);
    let r = post(addr, "application/x-protobuf", true, bomb).await;
    assert_eq!(r.status(), 413);
    let st = RpcStatus::decode(r.bytes().await.unwrap()).unwrap();
    assert!(
        st.message.contains("server.max_decompressed_bytes"),
        "{}",
        st.message
    );

    // 404 on another path, in the request's format.
    let r = send(
        reqwest::Method::POST,
        format!("http://{addr}/v1/logs"),
        Some("application/x-protobuf"),
        vec![],
    )
    .await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/x-protobuf");
    assert_eq!(RpcStatus::decode(r.bytes().await.unwrap()).unwrap().code, 5);
    let r = send(
        reqwest::Method::GET,
        format!("http://{addr}/nope"),
        None,
        vec![],
    )
    .await;
    assert_eq!(r.status(), 404);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], 5, "{v}");

    // 405 on /v1/traces with another method, naming the one allowed.
    let r = send(reqwest::Method::GET, traces.clone(), None, vec![]).await;
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], 12, "{v}");
    let r = send(
        reqwest::Method::PUT,
        traces.clone(),
        Some("application/x-protobuf"),
        vec![],
    )
    .await;
    assert_eq!(r.status(), 405);
    assert_eq!(
        RpcStatus::decode(r.bytes().await.unwrap()).unwrap().code,
        12
    );

    // 415: not an OTLP content type; answered as JSON.
    let r = send(reqwest::Method::POST, traces, Some("text/plain"), vec![]).await;
    assert_eq!(r.status(), 415);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], 3, "{v}");

    // None of it reached the engine as spans; the receiver still takes traces.
    let pb = route_trace(7, "/ok").encode_to_vec();
    assert_eq!(
        post(addr, "application/x-protobuf", false, pb)
            .await
            .status(),
        200
    );
    assert_eq!(count_of(addr, "GET /ok").await, 1);
    run.stop();
}

#[tokio::test]
async fn grpc_has_a_connection_cap_and_a_message_size_limit() {
    let mut cfg = small_limits();
    cfg.limits.grpc_max_connections = 2;
    let run = start(cfg).await;
    let grpc = run.grpc_addr.unwrap();

    // A message over max_body_bytes is refused by the gRPC layer.
    let mut client = grpc_client(grpc).await;
    let mut big = route_trace(8, "/big");
    big.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(100 * 1024);
    let e = client.export(big).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::OutOfRange, "{e}");
    drop(client);

    // Two idle connections take the two places: a third client waits in the backlog.
    let hog1 = tokio::net::TcpStream::connect(grpc).await.unwrap();
    let hog2 = tokio::net::TcpStream::connect(grpc).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let waiting = tokio::spawn(async move {
        let mut c = grpc_client(grpc).await;
        c.export(route_trace(9, "/after")).await.unwrap();
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "the cap lets a third connection in");
    assert_eq!(count_of(run.http_addr, "GET /after").await, 0);
    // One place frees up: the waiting client is served.
    drop(hog1);
    tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(count_of(run.http_addr, "GET /after").await, 1);
    drop(hog2);
    run.stop();
}

#[tokio::test]
async fn a_silent_grpc_connection_gives_its_place_back_at_the_header_timeout() {
    let mut cfg = small_limits();
    cfg.limits.grpc_max_connections = 1;
    cfg.limits.connection.header_read_timeout = Duration::from_secs(1);
    let run = start(cfg).await;
    let grpc = run.grpc_addr.unwrap();
    // Connects, takes the only place, never sends a byte (and is never closed here).
    let silent = tokio::net::TcpStream::connect(grpc).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = std::time::Instant::now();
    let served = tokio::time::timeout(Duration::from_secs(10), async {
        let mut c = grpc_client(grpc).await;
        c.export(route_trace(10, "/next")).await.unwrap();
    })
    .await;
    assert!(served.is_ok(), "the silent connection kept the only place");
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(count_of(run.http_addr, "GET /next").await, 1);
    drop(silent);
    run.stop();
}
