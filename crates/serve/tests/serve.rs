//! The accept loop against hostile and interrupted clients, on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::routing::get;
use axum::Router;
use powertune_serve::{Limits, Outcome, Server, Shutdown};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

fn app() -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/slow/{ms}",
            get(
                |axum::extract::Path(ms): axum::extract::Path<u64>| async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    "done"
                },
            ),
        )
}

struct Running {
    addr: SocketAddr,
    shutdown: Shutdown,
    server: JoinHandle<Outcome>,
    stats: std::sync::Arc<powertune_serve::ConnectionStats>,
}

async fn start(limits: Limits) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = Shutdown::default();
    let server = Server::new(limits);
    let stats = server.stats();
    let s = shutdown.clone();
    let server = tokio::spawn(async move { server.run(listener, app(), s).await });
    Running {
        addr,
        shutdown,
        server,
        stats,
    }
}

/// One GET on a fresh connection; the status line and body.
async fn get_raw(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// Reads until the peer closes; true when it closed within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_with_1100_connections_does_not_block_health() {
    let r = start(Limits::default()).await;
    let mut slow = Vec::new();
    for _ in 0..1100 {
        let mut s = TcpStream::connect(r.addr).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nx-a: ").await.unwrap();
        slow.push(s);
    }
    // Keep them trickling a byte at a time while /health is asked.
    let trickle = tokio::spawn(async move {
        for _ in 0..5 {
            for s in slow.iter_mut() {
                let _ = s.write_all(b"a").await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        slow
    });
    for _ in 0..3 {
        let t = Instant::now();
        let answer = get_raw(r.addr, "/health").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "/health took {:?}",
            t.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let slow = trickle.await.unwrap();
    assert!(r.stats.active() >= 1100, "{}", r.stats.active());
    drop(slow);
    r.shutdown.graceful.cancel();
    r.shutdown.hard.cancel();
    r.server.await.unwrap();
}

#[tokio::test]
async fn a_stalled_head_and_an_idle_keep_alive_are_closed_after_the_header_timeout() {
    let r = start(Limits {
        header_read_timeout: Duration::from_millis(300),
        ..Limits::default()
    })
    .await;
    // Sends nothing at all.
    let mut silent = TcpStream::connect(r.addr).await.unwrap();
    // Sends half a head.
    let mut half = TcpStream::connect(r.addr).await.unwrap();
    half.write_all(b"GET /health HTTP/1.1\r\nhost:")
        .await
        .unwrap();
    // Completes one request, then idles on the kept-alive connection.
    let mut idle = TcpStream::connect(r.addr).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));

    for (name, s) in [
        ("silent", &mut silent),
        ("half", &mut half),
        ("idle", &mut idle),
    ] {
        assert!(
            closed_within(s, Duration::from_secs(5)).await,
            "{name} connection was not closed"
        );
    }
    r.shutdown.graceful.cancel();
    r.server.await.unwrap();
}

#[tokio::test]
async fn a_head_over_the_limit_gets_431() {
    let r = start(Limits {
        max_header_bytes: 8 * 1024,
        ..Limits::default()
    })
    .await;
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    let big = "a".repeat(16 * 1024);
    let _ = s
        .write_all(format!("GET /health HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\n\r\n").as_bytes())
        .await;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");

    let many: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    let _ = s
        .write_all(format!("GET /health HTTP/1.1\r\nhost: x\r\n{many}\r\n").as_bytes())
        .await;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    r.shutdown.graceful.cancel();
    r.server.await.unwrap();
}

#[tokio::test]
async fn connections_over_the_cap_wait_until_one_closes() {
    let r = start(Limits {
        max_connections: 2,
        ..Limits::default()
    })
    .await;
    let a = TcpStream::connect(r.addr).await.unwrap();
    let b = TcpStream::connect(r.addr).await.unwrap();
    // Both are accepted and hold the two slots.
    let t = Instant::now();
    while r.stats.active() < 2 && t.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(r.stats.active(), 2);
    let addr = r.addr;
    let third = tokio::spawn(async move { get_raw(addr, "/health").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !third.is_finished(),
        "a third connection was served over the cap"
    );
    assert!(r.stats.waited_at_cap() >= 1);
    drop(a);
    let answer = tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .expect("the third connection was not served after a slot freed")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(b);
    r.shutdown.graceful.cancel();
    r.server.await.unwrap();
}

#[tokio::test]
async fn a_graceful_stop_lets_the_request_in_flight_finish_and_refuses_new_ones() {
    let r = start(Limits::default()).await;
    let addr = r.addr;
    let in_flight = tokio::spawn(async move { get_raw(addr, "/slow/600").await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    r.shutdown.graceful.cancel();
    let answer = in_flight.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("done"), "{answer}");
    let outcome = r.server.await.unwrap();
    assert_eq!(
        outcome,
        Outcome {
            drained: true,
            abandoned: 0
        }
    );
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn the_drain_deadline_and_a_second_signal_end_the_wait() {
    for hard in [false, true] {
        let r = start(Limits {
            drain_timeout: if hard {
                Duration::from_secs(60)
            } else {
                Duration::from_millis(200)
            },
            ..Limits::default()
        })
        .await;
        let addr = r.addr;
        let in_flight = tokio::spawn(async move { get_raw(addr, "/slow/30000").await });
        tokio::time::sleep(Duration::from_millis(150)).await;
        let t = Instant::now();
        r.shutdown.graceful.cancel();
        if hard {
            tokio::time::sleep(Duration::from_millis(100)).await;
            r.shutdown.hard.cancel();
        }
        let outcome = tokio::time::timeout(Duration::from_secs(10), r.server)
            .await
            .expect("the server did not stop")
            .unwrap();
        assert_eq!(
            outcome,
            Outcome {
                drained: false,
                abandoned: 1
            },
            "hard={hard}"
        );
        assert!(t.elapsed() < Duration::from_secs(10));
        // The client sees its connection closed, not an answer.
        let answer = in_flight.await.unwrap();
        assert!(!answer.contains("done"), "{answer}");
    }
}

#[test]
fn limits_out_of_range_are_refused_with_the_key_named() {
    let key = |k: &'static str| format!("server.{k}");
    assert!(Limits::default().validate(key).is_ok());
    let bad = [
        Limits {
            max_connections: 0,
            ..Limits::default()
        },
        Limits {
            header_read_timeout: Duration::ZERO,
            ..Limits::default()
        },
        Limits {
            max_header_bytes: 100,
            ..Limits::default()
        },
        Limits {
            max_headers: 0,
            ..Limits::default()
        },
        Limits {
            drain_timeout: Duration::from_secs(1 << 40),
            ..Limits::default()
        },
    ];
    let names = [
        "server.max_connections",
        "server.header_read_timeout",
        "server.max_header_bytes",
        "server.max_headers",
        "server.drain_timeout",
    ];
    for (limits, name) in bad.iter().zip(names) {
        let e = limits.validate(key).unwrap_err();
        assert!(e.starts_with(name), "{e}");
    }
}

#[test]
fn the_cap_fits_the_open_files_limit() {
    use powertune_serve::connection_budget;
    assert_eq!(connection_budget(4096, 20_000), 4096);
    assert_eq!(connection_budget(4096, 1024), 448);
    assert_eq!(connection_budget(4096, 10), 1);
    assert_eq!(connection_budget(10, u64::MAX), 10);
}

// nextest runs each test in its own process, so lowering this process's soft limit
// touches no other test.
#[tokio::test]
async fn starting_raises_the_open_files_soft_limit_to_the_hard_limit() {
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    let low = 256.min(hard);
    rlimit::setrlimit(rlimit::Resource::NOFILE, low, hard).unwrap();
    let r = start(Limits::default()).await;
    let t = Instant::now();
    while r.stats.max_connections() == 0 && t.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    assert_eq!(soft, hard);
    assert_eq!(
        r.stats.max_connections(),
        powertune_serve::connection_budget(4096, hard)
    );
    r.shutdown.graceful.cancel();
    r.server.await.unwrap();
}
