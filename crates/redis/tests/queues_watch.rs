//! `queues --watch` when Redis goes away: a private redis-server (port 0, never the
//! shared test Redis) is shut down mid-watch. Restarted, the watch reconnects and goes
//! on; left down, the watch ends after its bounded reconnect attempts and the report
//! still holds what it saw, with a finding saying the watch lost Redis.
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

use common::{conn_options, find, write_fixture};
use powertune_core::{Targets, Verdict};
use powertune_redis::sidekiq::{self, Reconnect};
use powertune_test_support::redis_db::PrivateRedis;
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

/// Polls `f` every 20 ms until it holds, at most 15 s.
async fn until(what: &str, f: impl Fn() -> bool) {
    for _ in 0..750 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Whether something answers PING on the port.
async fn answers(port: u16) -> bool {
    let Ok(c) = redis::Client::open(format!("redis://127.0.0.1:{port}/0")) else {
        return false;
    };
    let Ok(mut con) = c.get_multiplexed_async_connection().await else {
        return false;
    };
    redis::cmd("PING")
        .query_async::<String>(&mut con)
        .await
        .is_ok()
}

/// Shuts the server down (SHUTDOWN NOSAVE) and waits until the port refuses.
async fn shut_down(server: &PrivateRedis) {
    let mut con = server.connection(0).await;
    let _: Result<(), _> = redis::cmd("SHUTDOWN")
        .arg("NOSAVE")
        .query_async(&mut con)
        .await;
    for _ in 0..500 {
        if !answers(server.port).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("redis-server on port {} did not stop", server.port);
}

/// A redis-server started again on `port` (as `PrivateRedis` starts it); killed when
/// dropped.
struct Restarted(std::process::Child, std::path::PathBuf);

impl Restarted {
    async fn on(port: u16) -> Restarted {
        let dir = std::env::temp_dir().join(powertune_test_support::unique_name("pt_redis_again"));
        std::fs::create_dir_all(&dir).unwrap();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let me = Restarted(child, dir);
        for _ in 0..500 {
            if answers(port).await {
                return me;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("redis-server did not restart on port {port}");
    }
}

impl Drop for Restarted {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn options(url: &str, reconnect: Reconnect) -> sidekiq::QueuesOptions {
    sidekiq::QueuesOptions {
        conn: conn_options(url),
        read: sidekiq::Options::default(),
        watch: Some(sidekiq::WatchOptions {
            every: Duration::from_millis(100),
            ticks: None,
            reconnect,
        }),
    }
}

#[tokio::test]
async fn the_watch_reconnects_when_redis_comes_back() {
    let server = PrivateRedis::start(&[]).await;
    let url = format!("{}/0", server.url);
    write_fixture(&mut server.connection(0).await, "7.3.10", false).await;
    let ticks = Rc::new(Cell::new(0u64));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let opts = options(&url, Reconnect::default());
    let t = Targets::default();
    let seen = ticks.clone();
    let watch = sidekiq::inspect_watching(&opts, &t, move |_, _| seen.set(seen.get() + 1), async {
        let _ = stop_rx.await;
    });
    let control = async {
        until("two ticks", || ticks.get() >= 2).await;
        shut_down(&server).await;
        let before = ticks.get();
        let again = Restarted::on(server.port).await;
        write_fixture(&mut server.connection(0).await, "7.3.10", false).await;
        until("two ticks after the restart", || ticks.get() >= before + 2).await;
        stop_tx.send(()).unwrap();
        again
    };
    let (inspection, again) = tokio::join!(watch, control);
    let i = inspection.unwrap();
    let conn = find(&i.findings, "watch_connection");
    assert_eq!(conn.len(), 1, "{:#?}", i.findings);
    assert_eq!(conn[0].verdict, Verdict::Warn);
    assert!(conn[0].observed.contains("1"), "{}", conn[0].observed);
    assert!(!i
        .findings
        .iter()
        .any(|f| f.check == "watch_connection" && f.verdict == Verdict::Fail));
    assert_eq!(i.metrics.sidekiq.processed, 1000);
    drop(again);
}

#[tokio::test]
async fn a_watch_that_loses_redis_for_good_still_reports_what_it_saw() {
    let server = PrivateRedis::start(&[]).await;
    let url = format!("{}/0", server.url);
    write_fixture(&mut server.connection(0).await, "7.3.10", false).await;
    let ticks = Rc::new(Cell::new(0u64));
    let reconnect = Reconnect {
        attempts: 3,
        first_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(100),
    };
    let opts = options(&url, reconnect);
    let t = Targets::default();
    let seen = ticks.clone();
    // No stop: the watch must end by itself once its reconnect attempts are spent.
    let watch = sidekiq::inspect_watching(
        &opts,
        &t,
        move |_, _| seen.set(seen.get() + 1),
        std::future::pending(),
    );
    let control = async {
        until("two ticks", || ticks.get() >= 2).await;
        shut_down(&server).await;
    };
    let (inspection, ()) = tokio::join!(watch, control);
    let i = inspection.unwrap();
    let lost = find(&i.findings, "watch_connection");
    assert_eq!(lost.len(), 1, "{:#?}", i.findings);
    assert_eq!(lost[0].verdict, Verdict::Fail);
    assert!(
        lost[0].evidence.contains("the watch lost Redis")
            && lost[0].evidence.contains("3 reconnect attempts"),
        "{}",
        lost[0].evidence
    );
    // What it saw: the snapshot from the start of the watch and the watch's trend.
    assert_eq!(i.metrics.sidekiq.processed, 1000);
    assert!(i.metrics.watch.is_some());
    assert_eq!(find(&i.findings, "retry_trend").len(), 1);
    let report = i.report().unwrap();
    assert_eq!(report.verdict, Verdict::Fail);
    powertune_test_support::schema::check::<sidekiq::QueuesMetrics>("queues.v1", &report.metrics);
}
