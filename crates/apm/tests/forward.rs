//! Forwarding everything received to another OTLP receiver over HTTP or gRPC,
//! and ingestion that a slow or dead forward target never blocks.
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

#[tokio::test]
async fn forwarding_over_http_and_grpc_whichever_way_spans_came_in() {
    use powertune_apm::server::forward::{Protocol, Target};
    let downstream = start(local()).await;
    for (k, protocol) in [Protocol::HttpProtobuf, Protocol::Grpc]
        .into_iter()
        .enumerate()
    {
        let to = match protocol {
            Protocol::HttpProtobuf => format!("http://{}", downstream.http_addr),
            // The collector's `otlp` exporter style: host:port.
            Protocol::Grpc => downstream.grpc_addr.unwrap().to_string(),
        };
        let mut cfg = local();
        cfg.forward = Some(Target::parse(&to, protocol).unwrap());
        let front = start(cfg).await;
        let route = format!("/front/{}", protocol.name().replace('/', "-"));
        let key = format!("GET {route}");
        let base = 600 + 10 * k as u128;
        // In over gRPC, OTLP/HTTP protobuf (gzip) and OTLP/HTTP JSON.
        let resp = grpc_client(front.grpc_addr.unwrap())
            .await
            .export(route_trace(base, &route))
            .await
            .unwrap();
        assert!(resp.into_inner().partial_success.is_none());
        let pb = gzip(&route_trace(base + 1, &route).encode_to_vec());
        let r = post(front.http_addr, "application/x-protobuf", true, pb).await;
        assert_eq!(r.status(), 200);
        let json = serde_json::to_vec(&route_trace(base + 2, &route)).unwrap();
        let r = post(front.http_addr, "application/json", false, json).await;
        assert_eq!(r.status(), 200);
        assert_eq!(count_of(front.http_addr, &key).await, 3);
        let mut got = 0;
        for _ in 0..200 {
            got = count_of(downstream.http_addr, &key).await;
            if got == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(got, 3, "{protocol:?}: all three batches reached the target");
        let st = summary_of(front.http_addr).await.ingest;
        assert_eq!(
            (st.forwarded, st.forward_failed, st.forward_dropped),
            (3, 0, 0),
            "{protocol:?}"
        );
        front.stop();
    }
    assert!(Target::parse("ftp://x", Protocol::HttpProtobuf).is_err());
    assert!(
        Target::parse("collector", Protocol::Grpc).is_err(),
        "no port"
    );
    assert!(Target::parse("ftp://collector:4317", Protocol::Grpc).is_err());
    let e = Target::parse("http://user:hunter2@collector:4318", Protocol::HttpProtobuf)
        .unwrap_err()
        .to_string();
    assert!(!e.contains("hunter2") && e.contains("credentials"), "{e}");
    assert_eq!(
        Target::parse("http://c:4318", Protocol::HttpProtobuf)
            .unwrap()
            .url
            .path(),
        "/v1/traces"
    );
    assert!("http/json".parse::<Protocol>().is_err());
}

#[tokio::test]
async fn a_slow_or_dead_forward_target_never_blocks_or_loses_ingestion() {
    use powertune_apm::server::forward::{Protocol, Target, IN_FLIGHT};
    // A black hole: accepts connections and never answers.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole_addr = hole.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((c, _)) = hole.accept().await {
            held.push(c);
        }
    });
    let mut cfg = local();
    cfg.forward =
        Some(Target::parse(&format!("http://{hole_addr}"), Protocol::HttpProtobuf).unwrap());
    cfg.forward_queue = 2;
    let front = start(cfg).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for k in 0..30u128 {
        let r = client
            .post(format!("http://{}/v1/traces", front.http_addr))
            .header("content-type", "application/x-protobuf")
            .body(route_trace(700 + k, "/slow-target").encode_to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "batch {k} accepted at once");
    }
    let s = summary_of(front.http_addr).await;
    assert_eq!(s.routes[0].latency.count, 30, "every batch analysed");
    let st = s.ingest;
    assert_eq!(st.forwarded, 0);
    assert!(
        st.forward_dropped >= (30 - 2 - IN_FLIGHT) as u64,
        "the bounded queue dropped the rest: {st:?}"
    );
    assert!(st.forward_queued <= (2 + IN_FLIGHT) as u64, "{st:?}");
    assert_eq!(st.forward_dropped + st.forward_queued, 30, "{st:?}");
    front.stop();
    holder.abort();

    // A target that is down (connection refused), over gRPC.
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone_addr = gone.local_addr().unwrap();
    drop(gone);
    let mut cfg = local();
    cfg.forward = Some(Target::parse(&gone_addr.to_string(), Protocol::Grpc).unwrap());
    let front = start(cfg).await;
    let mut c = grpc_client(front.grpc_addr.unwrap()).await;
    for k in 0..5u128 {
        c.export(route_trace(800 + k, "/dead-target"))
            .await
            .unwrap();
    }
    let mut st = summary_of(front.http_addr).await.ingest;
    for _ in 0..200 {
        if st.forward_failed == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        st = summary_of(front.http_addr).await.ingest;
    }
    assert_eq!((st.forward_failed, st.forwarded), (5, 0), "{st:?}");
    assert_eq!(count_of(front.http_addr, "GET /dead-target").await, 5);
    front.stop();
}

#[tokio::test]
async fn forwarding_over_tls_trusts_the_given_ca_and_nothing_else() {
    use powertune_apm::server::forward::{Protocol, Target};
    use powertune_test_support::tls::{Pki, TlsProxy};
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path(), &["localhost"], "unused");
    let downstream = start(local()).await;
    let http_tls = TlsProxy::start(&pki, downstream.http_addr).await;
    let grpc_tls = TlsProxy::start(&pki, downstream.grpc_addr.unwrap()).await;
    for (k, (protocol, port)) in [
        (Protocol::HttpProtobuf, http_tls.addr.port()),
        (Protocol::Grpc, grpc_tls.addr.port()),
    ]
    .into_iter()
    .enumerate()
    {
        let url = format!("https://localhost:{port}");
        for (ca, expect_forwarded) in [(&pki.ca, true), (&pki.other_ca, false)] {
            let mut cfg = local();
            cfg.forward = Some(Target::parse(&url, protocol).unwrap().with_ca(ca).unwrap());
            let front = start(cfg).await;
            let route = format!("/tls/{k}/{expect_forwarded}");
            let body = route_trace(900 + k as u128, &route).encode_to_vec();
            let r = post(front.http_addr, "application/x-protobuf", false, body).await;
            assert_eq!(r.status(), 200);
            let mut st = summary_of(front.http_addr).await.ingest;
            for _ in 0..400 {
                if st.forwarded + st.forward_failed == 1 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
                st = summary_of(front.http_addr).await.ingest;
            }
            let key = format!("GET {route}");
            if expect_forwarded {
                assert_eq!(
                    (st.forwarded, st.forward_failed),
                    (1, 0),
                    "{protocol:?}: {st:?}"
                );
                assert_eq!(count_of(downstream.http_addr, &key).await, 1);
            } else {
                assert_eq!(
                    (st.forwarded, st.forward_failed),
                    (0, 1),
                    "{protocol:?}: a certificate from another CA is refused: {st:?}"
                );
                assert_eq!(count_of(downstream.http_addr, &key).await, 0);
            }
            front.stop();
        }
    }
    // --forward-ca is for TLS targets and PEM files only.
    let plain = Target::parse("http://localhost:4318", Protocol::HttpProtobuf).unwrap();
    let e = plain.with_ca(&pki.ca).unwrap_err().to_string();
    assert!(
        e.starts_with("--forward-ca ") && e.contains("plaintext"),
        "{e}"
    );
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let e = Target::parse("https://localhost:4318", Protocol::HttpProtobuf)
        .unwrap()
        .with_ca(&junk)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("junk.pem") && e.contains("no certificate"),
        "{e}"
    );
}
