//! The key scan: SCAN with COUNT, then per batch one pipeline of PTTL and MEMORY USAGE
//! (and element counts for big keys, or for all keys when MEMORY is disabled),
//! throttled to `rate` keys/s, optionally stopped after `sample` keys and
//! extrapolated. Memory is bounded by the options: a top-K heap of the biggest keys,
//! at most `max_prefixes` per-prefix aggregates (the rest fold into "(other)"), and
//! per-cache-type counters; never a list of keys.

use super::classify::{looks_compressed, prefix_into, CacheSel};
use super::options::ScanOptions;
use super::snapshot::{CacheTypeStats, KeyInfo, ScanSnapshot};
use crate::conn::{as_array, as_bytes, as_int, as_string, server_error, Conn};
use crate::error::RedisError;
use redis::Value;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn size_cmd(t: &str) -> Option<&'static str> {
    match t {
        "string" => Some("STRLEN"),
        "list" => Some("LLEN"),
        "hash" => Some("HLEN"),
        "set" => Some("SCARD"),
        "zset" => Some("ZCARD"),
        "stream" => Some("XLEN"),
        _ => None,
    }
}

/// Called after each batch with (keys scanned, keys in the database).
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Send + Sync);

/// Batches fetched concurrently: while one batch's replies are folded, the next ones
/// are on the wire or being computed by the server.
const IN_FLIGHT: usize = 3;

/// One batch's replies, already decoded (done on a worker task).
struct Fetched {
    keys: Vec<String>,
    types: Vec<String>,
    ttls: Vec<i64>,
    sizes: Vec<Option<u64>>,
    cache: Vec<Option<usize>>,
    heads: HashMap<usize, Vec<u8>>,
    memory_error: Option<String>,
    round_trips: u64,
}

/// What the SCAN producer sends: a batch of keys, or the end (cursor reached 0 or the
/// sample was reached), or an error.
enum ScanMsg {
    Batch(Vec<Vec<u8>>),
    Done { sampled: bool, round_trips: u64 },
}

/// Scans the selected database.
pub async fn collect(
    conn: &mut Conn,
    opts: &ScanOptions,
    progress: Progress<'_>,
) -> Result<ScanSnapshot, RedisError> {
    opts.validate()?;
    let started = tokio::time::Instant::now();
    let dbsize: u64 = conn.query(redis::cmd("DBSIZE"), "DBSIZE").await?;
    let mut snap = ScanSnapshot {
        db: conn.url.db,
        dbsize,
        pattern: opts.pattern.clone(),
        large_key_bytes: opts.large_key_bytes,
        cache_config: opts.cache_types.clone(),
        cache_types: opts
            .cache_types
            .keys()
            .map(|k| (k.clone(), CacheTypeStats::default()))
            .collect(),
        ..Default::default()
    };
    let sel = Arc::new(CacheSel::new(&opts.cache_types, opts.compression_sample));
    let memory_ok = Arc::new(AtomicBool::new(true));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<ScanMsg, RedisError>>(IN_FLIGHT + 1);
    let producer = tokio::spawn(scan_keys(conn.clone(), opts.clone(), tx));
    let mut heap: BinaryHeap<Reverse<KeyInfo>> = BinaryHeap::new();
    let mut inflight: VecDeque<tokio::task::JoinHandle<Result<Fetched, RedisError>>> =
        VecDeque::new();
    let mut prefix_buf = String::new();
    let join_err = |e: tokio::task::JoinError| RedisError::Query {
        url: conn.url.redacted.clone(),
        command: "the key scan".into(),
        reason: format!("a worker task failed: {e}"),
    };
    let result: Result<(), RedisError> = async {
        loop {
            let msg = rx.recv().await;
            match msg {
                Some(Ok(ScanMsg::Batch(keys))) => {
                    inflight.push_back(tokio::spawn(fetch(
                        conn.clone(),
                        keys,
                        memory_ok.clone(),
                        sel.clone(),
                    )));
                    while inflight.len() >= IN_FLIGHT {
                        if let Some(h) = inflight.pop_front() {
                            let f = h.await.map_err(join_err)??;
                            fold(f, opts, &sel, &mut snap, &mut heap, &mut prefix_buf);
                            progress(snap.scanned, dbsize);
                        }
                    }
                }
                Some(Ok(ScanMsg::Done {
                    sampled,
                    round_trips,
                })) => {
                    snap.sampled = sampled;
                    snap.round_trips += round_trips;
                    break;
                }
                Some(Err(e)) => return Err(e),
                None => break,
            }
        }
        while let Some(h) = inflight.pop_front() {
            let f = h.await.map_err(join_err)??;
            fold(f, opts, &sel, &mut snap, &mut heap, &mut prefix_buf);
            progress(snap.scanned, dbsize);
        }
        Ok(())
    }
    .await;
    if result.is_err() {
        producer.abort();
        for h in &inflight {
            h.abort();
        }
    }
    result?;
    let memory_ok = memory_ok.load(Ordering::Relaxed);
    let mut top: Vec<KeyInfo> = heap.into_iter().map(|Reverse(k)| k).collect();
    top.sort_by(|a, b| b.cmp(a));
    // Types of the top keys (asked only for them), then their element counts.
    let unknown: Vec<usize> = (0..top.len())
        .filter(|&i| top[i].key_type.is_empty())
        .collect();
    if !unknown.is_empty() {
        let mut p = redis::pipe();
        for &i in &unknown {
            p.cmd("TYPE").arg(top[i].key.as_bytes());
        }
        let r = conn.pipe(&mut p, "TYPE").await?;
        snap.round_trips += 1;
        for (i, v) in unknown.into_iter().zip(r) {
            top[i].key_type = as_string(&v).unwrap_or_else(|| "none".into());
        }
    }
    let mut p = redis::pipe();
    let mut idx = Vec::new();
    for (i, k) in top.iter().enumerate() {
        if k.elements.is_none() {
            if let Some(cmd) = size_cmd(&k.key_type) {
                p.cmd(cmd).arg(k.key.as_bytes());
                idx.push(i);
            }
        }
    }
    if !idx.is_empty() {
        let r = conn
            .pipe(&mut p, "STRLEN/LLEN/HLEN/SCARD/ZCARD/XLEN")
            .await?;
        snap.round_trips += 1;
        for (i, v) in idx.into_iter().zip(r) {
            top[i].elements = as_int(&v).map(|n| n.max(0) as u64);
        }
    }
    if !memory_ok && snap.memory_unavailable.is_none() {
        snap.memory_unavailable = Some("MEMORY USAGE failed".into());
    }
    snap.top = top;
    snap.elapsed_s = started.elapsed().as_secs_f64();
    Ok(snap)
}

/// The SCAN loop: sends key batches, honours `--sample` and `--rate`.
async fn scan_keys(
    mut conn: Conn,
    opts: ScanOptions,
    tx: tokio::sync::mpsc::Sender<Result<ScanMsg, RedisError>>,
) {
    let started = tokio::time::Instant::now();
    let mut cursor: u64 = 0;
    let mut sent: u64 = 0;
    let mut round_trips = 0;
    loop {
        let mut c = redis::cmd("SCAN");
        c.arg(cursor);
        if let Some(p) = &opts.pattern {
            c.arg("MATCH").arg(p);
        }
        c.arg("COUNT").arg(opts.count);
        let reply: Value = match conn.query(c, "SCAN").await {
            Ok(v) => v,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        round_trips += 1;
        let Some(parts) = as_array(&reply).filter(|a| a.len() == 2) else {
            let _ = tx
                .send(Err(RedisError::Parse {
                    url: conn.url.redacted.clone(),
                    what: "the reply to SCAN".into(),
                    reason: "expected [cursor, keys]".into(),
                }))
                .await;
            return;
        };
        cursor = as_string(&parts[0])
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut keys: Vec<Vec<u8>> = as_array(&parts[1])
            .unwrap_or(&[])
            .iter()
            .filter_map(|k| as_bytes(k).map(<[u8]>::to_vec))
            .collect();
        if let Some(limit) = opts.sample {
            keys.truncate(limit.saturating_sub(sent) as usize);
        }
        sent += keys.len() as u64;
        if !keys.is_empty() && tx.send(Ok(ScanMsg::Batch(keys))).await.is_err() {
            return;
        }
        let sample_reached = opts.sample.is_some_and(|limit| sent >= limit);
        if cursor == 0 || sample_reached {
            let _ = tx
                .send(Ok(ScanMsg::Done {
                    sampled: sample_reached && cursor != 0,
                    round_trips,
                }))
                .await;
            return;
        }
        if let Some(rate) = opts.rate {
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            let spent = started.elapsed();
            if due > spent {
                tokio::time::sleep(due - spent).await;
            }
        }
    }
}

/// Sends one batch's pipelines and decodes the replies.
async fn fetch(
    mut conn: Conn,
    raw: Vec<Vec<u8>>,
    memory_ok: Arc<AtomicBool>,
    sel: Arc<CacheSel>,
) -> Result<Fetched, RedisError> {
    let use_memory = memory_ok.load(Ordering::Relaxed);
    let mut f = Fetched {
        keys: Vec::with_capacity(raw.len()),
        types: Vec::with_capacity(raw.len()),
        ttls: Vec::with_capacity(raw.len()),
        sizes: Vec::with_capacity(raw.len()),
        cache: Vec::with_capacity(raw.len()),
        heads: HashMap::new(),
        memory_error: None,
        round_trips: 1,
    };
    // Two commands per key: PTTL and MEMORY USAGE (nil = the key expired meanwhile).
    // The type is asked only for the keys that end in the top-K (or when MEMORY is
    // unavailable and element counts need it).
    let mut p = redis::pipe();
    for k in &raw {
        p.cmd("PTTL").arg(k.as_slice());
        if use_memory {
            p.cmd("MEMORY").arg("USAGE").arg(k.as_slice());
        }
    }
    let per_key = if use_memory { 2 } else { 1 };
    let r = conn.pipe(&mut p, "PTTL/MEMORY USAGE").await?;
    let mut memory_failed = !use_memory;
    for (i, k) in raw.iter().enumerate() {
        let key = String::from_utf8_lossy(k).into_owned();
        f.cache.push(sel.of(&key));
        f.keys.push(key);
        let ttl = r.get(i * per_key).and_then(as_int).unwrap_or(-2);
        f.ttls.push(ttl);
        let (t, mem) = if use_memory {
            let v = r.get(i * per_key + 1).cloned().unwrap_or(Value::Nil);
            match server_error(&v) {
                Some(e) => {
                    memory_failed = true;
                    f.memory_error.get_or_insert(e);
                    (String::new(), None)
                }
                None if v == Value::Nil => ("none".to_string(), None),
                None => (String::new(), as_int(&v).map(|n| n.max(0) as u64)),
            }
        } else {
            (String::new(), None)
        };
        f.types.push(if ttl == -2 { "none".to_string() } else { t });
        f.sizes.push(mem);
    }
    if memory_failed {
        memory_ok.store(false, Ordering::Relaxed);
        // Element counts instead: TYPE, then the size command of each type.
        let mut p = redis::pipe();
        for k in &raw {
            p.cmd("TYPE").arg(k.as_slice());
        }
        let r = conn.pipe(&mut p, "TYPE").await?;
        f.round_trips += 1;
        for (i, v) in r.iter().enumerate() {
            f.types[i] = as_string(v).unwrap_or_else(|| "none".into());
        }
        let mut p = redis::pipe();
        let mut idx = Vec::new();
        for (i, t) in f.types.iter().enumerate() {
            if let Some(cmd) = size_cmd(t) {
                p.cmd(cmd).arg(raw[i].as_slice());
                idx.push(i);
            }
        }
        if !idx.is_empty() {
            let r = conn
                .pipe(&mut p, "STRLEN/LLEN/HLEN/SCARD/ZCARD/XLEN")
                .await?;
            f.round_trips += 1;
            for (i, v) in idx.into_iter().zip(r) {
                f.sizes[i] = as_int(&v).map(|n| n.max(0) as u64);
            }
        }
    }
    // Compression check: the first bytes of cache-type strings, up to the sample per type.
    let mut p = redis::pipe();
    let mut idx = Vec::new();
    for (i, c) in f.cache.iter().enumerate() {
        let Some(c) = *c else { continue };
        if f.types[i] != "string" && !f.types[i].is_empty() {
            continue;
        }
        if sel.checked[c].fetch_add(1, Ordering::Relaxed) >= sel.limit {
            continue;
        }
        p.cmd("GETRANGE").arg(raw[i].as_slice()).arg(0).arg(63);
        idx.push(i);
    }
    if !idx.is_empty() {
        let r = conn.pipe(&mut p, "GETRANGE").await?;
        f.round_trips += 1;
        for (i, v) in idx.into_iter().zip(r) {
            if let Some(b) = as_bytes(&v) {
                f.heads.insert(i, b.to_vec());
            }
        }
    }
    if memory_failed && !use_memory {
        f.memory_error = None;
    }
    Ok(f)
}

/// Folds one fetched batch into the snapshot and the top-K heap.
fn fold(
    f: Fetched,
    opts: &ScanOptions,
    sel: &CacheSel,
    snap: &mut ScanSnapshot,
    heap: &mut BinaryHeap<Reverse<KeyInfo>>,
    prefix_buf: &mut String,
) {
    snap.round_trips += f.round_trips;
    if let Some(e) = f.memory_error {
        snap.memory_unavailable.get_or_insert(e);
    }
    let counts_only = snap.memory_unavailable.is_some();
    for (i, key) in f.keys.into_iter().enumerate() {
        let t = &f.types[i];
        if t == "none" {
            continue; // expired between SCAN and TYPE
        }
        snap.scanned += 1;
        let size = f.sizes[i].unwrap_or(0);
        let ttl = f.ttls[i];
        let no_ttl = ttl == -1;
        snap.total_bytes += size;
        if no_ttl {
            snap.no_ttl_keys += 1;
            snap.no_ttl_bytes += size;
        }
        if size > opts.large_key_bytes {
            snap.large_keys += 1;
        }
        prefix_into(&key, opts.prefix_depth, prefix_buf);
        let ps = if let Some(ps) = snap.prefixes.get_mut(prefix_buf.as_str()) {
            ps
        } else if snap.prefixes.len() < opts.max_prefixes {
            snap.prefixes.entry(prefix_buf.clone()).or_default()
        } else {
            snap.prefixes.entry("(other)".to_string()).or_default()
        };
        ps.keys += 1;
        ps.bytes += size;
        if no_ttl {
            ps.no_ttl_keys += 1;
            ps.no_ttl_bytes += size;
        }
        if let Some((name, cfg)) = f.cache[i].and_then(|ci| sel.types.get(ci)) {
            let cfg_ttl_ms = cfg.ttl_s as i64 * 1000;
            let c = snap.cache_types.entry(name.to_string()).or_default();
            c.keys += 1;
            c.bytes += size;
            if no_ttl {
                c.no_ttl += 1;
                c.example_no_ttl.get_or_insert_with(|| key.clone());
            } else if ttl > cfg_ttl_ms {
                c.ttl_too_long += 1;
                c.example_ttl_too_long.get_or_insert_with(|| key.clone());
            }
            c.max_ttl_ms = c.max_ttl_ms.max(ttl);
            if let Some(h) = f.heads.get(&i) {
                c.compression_checked += 1;
                let comp = looks_compressed(h);
                if comp {
                    c.compressed += 1;
                }
                if comp != cfg.compress {
                    c.example_compression.get_or_insert_with(|| key.clone());
                }
            }
        }
        let enters =
            heap.len() < opts.top || heap.peek().is_some_and(|Reverse(min)| size > min.size);
        if enters {
            if heap.len() >= opts.top {
                heap.pop();
            }
            heap.push(Reverse(KeyInfo {
                size,
                key,
                key_type: t.clone(),
                elements: if counts_only { f.sizes[i] } else { None },
                ttl_ms: (!no_ttl).then_some(ttl),
            }));
        }
    }
}
