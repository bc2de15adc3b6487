//! `queues record` and `queues history` against real Redis: the recorder restarting
//! on its own file (gap recorded), a cut-off last write, a Redis server that goes
//! away and comes back on the same port, the size bound with downsampling (no
//! reading lost), the size of a day of samples, and the history's JSON against
//! `docs/schema/queues-history.v1.json`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use powertune_core::targets::WorkerTargets;
use powertune_core::{Inspection, Verdict};
use powertune_queues_plan::history::{analyse, judge, HistoryMetrics};
use powertune_redis::conn::{ConnOptions, RedisUrl};
use powertune_redis::sidekiq::history::file::{self, encode_all, encode_member, Header, Writer};
use powertune_redis::sidekiq::history::{
    record, Event, ProcessSample, QueueSample, Record, RecordOptions, Sample,
};
use powertune_test_support::redis_db::TestRedis;
use std::path::Path;
use std::time::Duration;

fn opts(url: &str, samples: Option<u64>) -> RecordOptions {
    RecordOptions {
        conn: ConnOptions {
            url: RedisUrl::parse(url).unwrap(),
            timeout: Duration::from_secs(2),
        },
        every: Duration::from_millis(100),
        max_bytes: file::DEFAULT_MAX_BYTES,
        samples,
    }
}

/// Sidekiq's keys for one queue with `depth` jobs enqueued `age_s` ago and the
/// processed/failed counters.
async fn sidekiq_state(
    con: &mut redis::aio::MultiplexedConnection,
    depth: u64,
    age_s: f64,
    processed: u64,
    failed: u64,
) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let _: () = redis::cmd("DEL")
        .arg("queue:default")
        .query_async(con)
        .await
        .unwrap();
    let _: () = redis::cmd("SADD")
        .arg("queues")
        .arg("default")
        .query_async(con)
        .await
        .unwrap();
    for i in 0..depth {
        let job = format!(
            r#"{{"class":"HardJob","queue":"default","jid":"j{i}","args":[],"enqueued_at":{}}}"#,
            now - age_s
        );
        let _: () = redis::cmd("LPUSH")
            .arg("queue:default")
            .arg(job)
            .query_async(con)
            .await
            .unwrap();
    }
    let _: () = redis::cmd("MSET")
        .arg("stat:processed")
        .arg(processed)
        .arg("stat:failed")
        .arg(failed)
        .query_async(con)
        .await
        .unwrap();
}

async fn record_n(path: &Path, url: &str, n: u64) -> Vec<Event> {
    let mut events = Vec::new();
    record(
        path,
        &opts(url, Some(n)),
        |e| events.push(e.clone()),
        std::future::pending(),
    )
    .await
    .unwrap();
    events
}

#[tokio::test]
async fn a_restarted_recorder_appends_after_a_gap_and_cuts_a_torn_write() {
    let db = TestRedis::reserve().await;
    let mut con = db.connection().await;
    sidekiq_state(&mut con, 3, 90.0, 100, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queues.history");
    let ev = record_n(&path, &db.url, 3).await;
    assert!(matches!(&ev[0], Event::Opened(o) if o.created));
    // A write cut short (the recorder killed mid-write): half a member at the end.
    let torn = encode_member(&["{\"kind\":\"gap\",\"from\":1,\"to\":2,\"reason\":\"x\"}".into()]);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut f, &torn[..torn.len() - 5]).unwrap();
    drop(f);
    assert_eq!(
        file::read(&path).unwrap().dropped_tail,
        (torn.len() - 5) as u64
    );
    sidekiq_state(&mut con, 1, 10.0, 130, 2).await;
    let ev = record_n(&path, &db.url, 2).await;
    match &ev[0] {
        Event::Opened(o) => {
            assert!(!o.created);
            assert_eq!(o.records, 3);
            assert_eq!(o.dropped_tail, (torn.len() - 5) as u64);
        }
        e => panic!("{e:?}"),
    }
    let h = file::read(&path).unwrap();
    assert_eq!(h.dropped_tail, 0);
    assert_eq!(h.header.source, format!("{}", db.url));
    let kinds: Vec<&str> = h
        .records
        .iter()
        .map(|r| match r {
            Record::Sample(_) => "s",
            Record::Gap(_) => "gap",
        })
        .collect();
    assert_eq!(kinds, ["s", "s", "s", "gap", "s", "s"]);
    let Record::Gap(g) = &h.records[3] else {
        panic!()
    };
    assert_eq!(g.reason, "the recorder was not running");
    assert!(g.to > g.from);
    let s: Vec<&Sample> = h.samples().collect();
    assert_eq!(s[0].queues[0].depth, 3);
    assert!(s[0].queues[0].latency_s >= 89.0, "{:?}", s[0].queues[0]);
    assert_eq!((s[0].processed, s[4].processed), (100, 130));
    // A file recorded from another URL is refused.
    let other = db.url.replace("127.0.0.1", "localhost");
    let e = record(
        &path,
        &opts(&other, Some(1)),
        |_| {},
        std::future::pending(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("record each Redis into its own file"), "{e}");
    db.release().await;
}

/// A redis-server on `port` with nothing persisted.
fn redis_server(port: u16, dir: &Path) -> std::process::Child {
    std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
        ])
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

struct Killed(std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn seed_private(url: &str, processed: u64) {
    let mut con = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    sidekiq_state(&mut con, 2, 1.0, processed, 0).await;
}

async fn until_up(url: &str) {
    for _ in 0..200 {
        if let Ok(c) = redis::Client::open(url) {
            if let Ok(mut con) = c.get_multiplexed_async_connection().await {
                if redis::cmd("PING")
                    .query_async::<String>(&mut con)
                    .await
                    .is_ok()
                {
                    return;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("redis-server at {url} did not start within 10 s");
}

#[tokio::test]
async fn redis_going_away_and_coming_back_is_recorded_as_a_gap() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("redis://127.0.0.1:{port}/0");
    let mut server = Killed(redis_server(port, dir.path()));
    until_up(&url).await;
    seed_private(&url, 5).await;
    let path = dir.path().join("h");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let o = opts(&url, None);
    let recording = record(
        &path,
        &o,
        move |e| {
            let _ = tx.send(e.clone());
        },
        async move {
            let _ = stop_rx.await;
        },
    );
    let driver = async {
        let mut sampled = 0;
        while sampled < 2 {
            if let Some(Event::Sampled { .. }) = rx.recv().await {
                sampled += 1;
            }
        }
        // The server goes away.
        let _ = server.0.kill();
        let _ = server.0.wait();
        loop {
            if let Some(Event::Unreachable { .. }) = rx.recv().await {
                break;
            }
        }
        // …and comes back empty on the same port.
        server = Killed(redis_server(port, dir.path()));
        until_up(&url).await;
        seed_private(&url, 1).await;
        loop {
            if let Some(Event::Resumed(_)) = rx.recv().await {
                break;
            }
        }
        let mut sampled = 0;
        while sampled < 1 {
            if let Some(Event::Sampled { .. }) = rx.recv().await {
                sampled += 1;
            }
        }
        let _ = stop_tx.send(());
    };
    let (done, ()) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(recording, driver)
    })
    .await
    .unwrap();
    let done = done.unwrap();
    assert_eq!(done.gaps, 1);
    assert!(done.samples >= 3);
    let h = file::read(&path).unwrap();
    let gaps: Vec<_> = h
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Gap(g) => Some(g.clone()),
            Record::Sample(_) => None,
        })
        .collect();
    assert_eq!(gaps.len(), 1);
    assert!(gaps[0].to > gaps[0].from);
    assert!(
        gaps[0].reason.contains(&format!("127.0.0.1:{port}")),
        "{}",
        gaps[0].reason
    );
    drop(server);
}

/// A realistic reading: five queues, three processes of 10 threads.
fn day_sample(i: u64) -> Sample {
    let names = ["critical", "default", "low", "mailers", "ai_heavy"];
    Sample {
        at: 1_764_892_800.0 + i as f64 * 10.0 + (i % 7) as f64 * 0.013,
        n: 1,
        queues: names
            .iter()
            .enumerate()
            .map(|(k, n)| QueueSample {
                name: n.to_string(),
                depth: (i * (k as u64 + 3)) % 40,
                latency_s: ((i * 37 + k as u64 * 11) % 9000) as f64 / 1000.0,
                busy: ((i + k as u64) % 6) as f64,
                depth_max: None,
                latency_max_s: None,
                classes: [(
                    format!("{}Job", n.to_uppercase()),
                    ((i + k as u64) % 6) as f64,
                )]
                .into_iter()
                .filter(|(_, b)| *b > 0.0)
                .collect(),
            })
            .collect(),
        processes: (0..3)
            .map(|p| ProcessSample {
                identity: format!("worker-{p}.internal:{}:0a1b2c3d4e5f", 4100 + p),
                concurrency: 10,
                busy: ((i + p) % 11) as f64,
                queues: names.iter().map(|n| n.to_string()).collect(),
                weights: names
                    .iter()
                    .zip([3, 2, 1, 1, 1])
                    .map(|(n, w)| (n.to_string(), w))
                    .collect(),
            })
            .collect(),
        processed: 1_000_000 + i * 37,
        failed: 2_000 + i / 50,
        retry: 40 + i % 13,
        dead: 7,
    }
}

#[test]
fn a_day_of_samples_at_10s_and_its_size() {
    let header = Header {
        format: file::FORMAT.into(),
        version: file::VERSION,
        source: "redis://127.0.0.1:6379/0".into(),
        interval_s: 10.0,
        created: 1_764_892_800.0,
    };
    let records: Vec<Record> = (0..8640)
        .map(|i| Record::Sample(file::trimmed(day_sample(i))))
        .collect();
    // As the recorder appends: one member per record.
    let appended: usize = encode_all(&header, &[]).len()
        + records
            .iter()
            .map(|r| encode_member(&[serde_json::to_string(r).unwrap()]).len())
            .sum::<usize>();
    // After a rewrite: blocks of lines per member.
    let blocked = encode_all(&header, &records).len();
    eprintln!("a day at 10 s (5 queues, 3 processes): appended {appended} bytes, rewritten {blocked} bytes");
    assert!(blocked < appended / 3, "{blocked} vs {appended}");
    assert!(appended < 16 << 20);
}

#[test]
fn the_bound_holds_and_downsampling_keeps_every_reading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h");
    let max = file::MIN_MAX_BYTES;
    let (mut w, _) = Writer::open(&path, "redis://x/0", 10.0, max, 0.0).unwrap();
    let n = 6000u64;
    let mut compactions = 0;
    let mut merged = 0;
    for i in 0..n {
        if i == 3000 {
            let gap = Record::Gap(file::Gap {
                from: day_sample(i - 1).at,
                to: day_sample(i).at,
                reason: "Redis went away".into(),
            });
            w.append(&gap).unwrap();
        }
        if let Some(c) = w
            .append(&Record::Sample(file::trimmed(day_sample(i))))
            .unwrap()
        {
            compactions += 1;
            merged += c.merged;
            assert!(c.after_bytes <= max / 2, "{c:?}");
        }
        assert!(w.bytes() <= max);
    }
    assert!(std::fs::metadata(&path).unwrap().len() <= max);
    assert!(
        compactions > 1 && merged > 0,
        "{compactions} rewrites, {merged} merges"
    );
    let h = file::read(&path).unwrap();
    let readings: u64 = h.samples().map(|s| s.n as u64).sum();
    assert_eq!(readings, n, "no reading dropped");
    assert!(h.samples().count() < n as usize);
    // The newest samples keep their full resolution; the oldest are coarser.
    let s: Vec<&Sample> = h.samples().collect();
    assert_eq!(s.last().unwrap().n, 1);
    assert!(s[0].n > 1);
    assert!(h
        .records
        .iter()
        .any(|r| matches!(r, Record::Gap(g) if g.reason == "Redis went away")));
    // The peaks survive the merges.
    let peak = s
        .iter()
        .map(|x| x.queues[4].latency_peak_s())
        .fold(0.0, f64::max);
    assert!(peak > 8.9, "{peak}");
    eprintln!(
        "{n} samples in {} bytes after {compactions} rewrites: {} samples kept",
        w.bytes(),
        s.len()
    );
}

#[tokio::test]
async fn a_recorded_history_is_judged_and_matches_its_schema() {
    let db = TestRedis::reserve().await;
    let mut con = db.connection().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h");
    // A backlog 120 s old, then drained.
    sidekiq_state(&mut con, 50, 120.0, 1000, 10).await;
    record_n(&path, &db.url, 3).await;
    sidekiq_state(&mut con, 0, 0.0, 1100, 12).await;
    record_n(&path, &db.url, 3).await;
    let h = file::read(&path).unwrap();
    let t = WorkerTargets::default();
    let m: HistoryMetrics = analyse(&h, "h", &t, 50);
    let q = &m.queues[0];
    assert_eq!(q.name, "default");
    assert!(q.latency_peak_s >= 119.0, "{q:?}");
    assert_eq!(q.violations_total, 1);
    assert_eq!(q.depth_peak, 50);
    assert_eq!(q.depth_last, 0);
    assert_eq!(m.totals.processed, 100);
    assert_eq!(m.totals.failed, 2);
    assert_eq!(m.gaps_total, 1);
    let f = judge(&m, &t);
    let lat = f.iter().find(|f| f.check == "history_latency").unwrap();
    assert_eq!(lat.verdict, Verdict::Warn, "{lat:?}");
    let failed = f.iter().find(|f| f.check == "history_failed_rate").unwrap();
    assert_eq!(failed.verdict, Verdict::Fail, "2% failed: {failed:?}");
    let i = Inspection::new("queues history", f, m, String::new());
    let report = i.report().unwrap();
    powertune_test_support::schema::check::<HistoryMetrics>("queues-history.v1", &report.metrics);
    db.release().await;
}
