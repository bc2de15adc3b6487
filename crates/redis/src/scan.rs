//! The key scan: SCAN with COUNT, then per batch one pipeline of TYPE, MEMORY USAGE and
//! PTTL (and element counts for big keys, or for all keys when MEMORY is disabled),
//! throttled to `rate` keys/s, optionally stopped after `sample` keys and
//! extrapolated. Memory is bounded by the options: a top-K heap of the biggest keys,
//! at most `max_prefixes` per-prefix aggregates (the rest fold into "(other)"), and
//! per-cache-type counters; never a list of keys.

use crate::conn::{as_array, as_bytes, as_int, as_string, server_error, Conn};
use crate::error::Error;
use crate::glob;
use crate::human_bytes;
use powertune_core::report::{table, truncate};
use powertune_core::targets::{CacheType, RedisTargets};
use powertune_core::{Finding, Verdict};
use redis::Value;
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What to scan and how gently.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// SCAN's COUNT hint (keys per SCAN call).
    pub count: u32,
    /// Only keys matching this glob (SCAN MATCH).
    pub pattern: Option<String>,
    /// Keys per second at most (None = as fast as the server answers).
    pub rate: Option<u32>,
    /// Stop after this many keys and extrapolate with DBSIZE.
    pub sample: Option<u64>,
    /// Biggest keys kept.
    pub top: usize,
    /// Prefix groups kept; the rest fold into "(other)".
    pub max_prefixes: usize,
    /// Key segments (split on ':') that make a prefix.
    pub prefix_depth: usize,
    /// Keys of a cache type whose value is read (first bytes) to check compression.
    pub compression_sample: u64,
    /// Cache types to check (name → type).
    pub cache_types: BTreeMap<String, CacheType>,
    /// Keys over this many bytes are "large".
    pub large_key_bytes: u64,
}

impl ScanOptions {
    pub fn new(t: &RedisTargets, cache: &BTreeMap<String, CacheType>) -> ScanOptions {
        ScanOptions {
            count: 1000,
            pattern: None,
            rate: None,
            sample: None,
            top: 20,
            max_prefixes: 1000,
            prefix_depth: 2,
            compression_sample: 200,
            cache_types: cache.clone(),
            large_key_bytes: t.large_key_bytes,
        }
    }

    /// Checks the options before any connection opens.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |input: &str, reason: &str, example: &str| {
            Err(Error::Input {
                input: input.to_string(),
                reason: reason.to_string(),
                example: example.to_string(),
            })
        };
        if self.count == 0 || self.count > 100_000 {
            return bad(
                &format!("--count {}", self.count),
                "must be 1..=100000",
                "--count 1000",
            );
        }
        if self.rate == Some(0) {
            return bad("--rate 0", "must be at least 1 key/s", "--rate 5000");
        }
        if self.sample == Some(0) {
            return bad("--sample 0", "must be at least 1 key", "--sample 100000");
        }
        if self.top == 0 || self.top > 10_000 {
            return bad(
                &format!("--top {}", self.top),
                "must be 1..=10000",
                "--top 20",
            );
        }
        if self.max_prefixes == 0 || self.max_prefixes > 100_000 {
            return bad(
                &format!("--max-prefixes {}", self.max_prefixes),
                "must be 1..=100000",
                "--max-prefixes 1000",
            );
        }
        if self.prefix_depth == 0 || self.prefix_depth > 8 {
            return bad(
                &format!("--prefix-depth {}", self.prefix_depth),
                "must be 1..=8",
                "--prefix-depth 2",
            );
        }
        Ok(())
    }
}

/// One key of the top-K.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct KeyInfo {
    /// Bytes (MEMORY USAGE), or the element count when MEMORY is unavailable (bytes
    /// for strings).
    pub size: u64,
    pub key: String,
    pub key_type: String,
    /// Elements (STRLEN bytes for strings, LLEN/HLEN/SCARD/ZCARD/XLEN otherwise).
    pub elements: Option<u64>,
    /// Remaining TTL in ms; None = no TTL.
    pub ttl_ms: Option<i64>,
}

/// Per-prefix totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PrefixStats {
    pub keys: u64,
    pub bytes: u64,
    pub no_ttl_keys: u64,
    pub no_ttl_bytes: u64,
}

/// Per-cache-type totals and problems.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CacheTypeStats {
    pub keys: u64,
    pub bytes: u64,
    pub no_ttl: u64,
    /// Keys whose remaining TTL exceeds the configured TTL.
    pub ttl_too_long: u64,
    pub max_ttl_ms: i64,
    /// Values read to check compression, and how many were compressed.
    pub compression_checked: u64,
    pub compressed: u64,
    pub example_no_ttl: Option<String>,
    pub example_ttl_too_long: Option<String>,
    pub example_compression: Option<String>,
}

/// What a scan found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ScanSnapshot {
    pub db: u32,
    pub dbsize: u64,
    pub scanned: u64,
    /// True when `--sample` stopped the scan early (figures are extrapolated).
    pub sampled: bool,
    pub pattern: Option<String>,
    /// MEMORY USAGE unavailable: sizes are element counts (bytes for strings).
    pub memory_unavailable: Option<String>,
    pub total_bytes: u64,
    pub no_ttl_keys: u64,
    pub no_ttl_bytes: u64,
    /// Biggest keys, biggest first.
    pub top: Vec<KeyInfo>,
    /// Keys over `large_key_bytes` (counted; the biggest are in `top`).
    pub large_keys: u64,
    pub large_key_bytes: u64,
    pub prefixes: BTreeMap<String, PrefixStats>,
    pub cache_types: BTreeMap<String, CacheTypeStats>,
    pub cache_config: BTreeMap<String, CacheType>,
    pub elapsed_s: f64,
    pub round_trips: u64,
}

impl ScanSnapshot {
    /// Factor to scale sampled counts to the whole database.
    pub fn extrapolation(&self) -> f64 {
        if self.sampled && self.scanned > 0 && self.pattern.is_none() {
            self.dbsize as f64 / self.scanned as f64
        } else {
            1.0
        }
    }
}

/// The prefix group of a key: its first `depth` ':'-separated segments (never the
/// whole key) followed by ":*"; keys without ':' are "(no prefix)"; Sidekiq's own
/// keys (`queues`, `queue:*`, `retry`, ...) are "(sidekiq)".
pub fn prefix_of(key: &str, depth: usize) -> String {
    if is_sidekiq_key(key) {
        return SIDEKIQ_GROUP.to_string();
    }
    let segs: Vec<&str> = key.split(':').collect();
    let n = depth.min(segs.len().saturating_sub(1));
    if n == 0 {
        return "(no prefix)".to_string();
    }
    let mut p = segs[..n].join(":");
    p.push_str(":*");
    p
}

/// [`prefix_of`] into a reused buffer (no allocation per key).
fn prefix_into(key: &str, depth: usize, buf: &mut String) {
    buf.clear();
    if is_sidekiq_key(key) {
        buf.push_str(SIDEKIQ_GROUP);
        return;
    }
    let mut end = None;
    for (seen, (i, _)) in key.match_indices(':').enumerate() {
        if seen + 1 > depth {
            break;
        }
        end = Some(i);
    }
    match end {
        None => buf.push_str("(no prefix)"),
        Some(e) => {
            buf.push_str(&key[..e]);
            buf.push_str(":*");
        }
    }
}

/// Whether a stored value is compressed: Rails' cache entry with its compressed flag, or
/// a zlib stream header in the first bytes.
pub fn looks_compressed(head: &[u8]) -> bool {
    // Rails 7.1+ cache coder: "\x00\x11" signature, then a type byte whose high bit
    // (0x80) flags a compressed payload.
    if head.len() >= 3 && head[0] == 0x00 && head[1] == 0x11 {
        return head[2] & 0x80 != 0;
    }
    // Older formats (Marshal of an Entry) hold the zlib stream itself: 0x78 then a
    // level byte that makes a valid zlib header (0x5e is left out: "x^" is text).
    head.windows(2)
        .any(|w| w[0] == 0x78 && matches!(w[1], 0x01 | 0x9c | 0xda))
}

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

/// The cache types in matching order ("default" last), shared with fetch tasks.
struct CacheSel {
    types: Vec<(String, CacheType)>,
    matchers: Vec<Matcher>,
    /// Values read so far per type for the compression check.
    checked: Vec<AtomicU64>,
    limit: u64,
}

impl CacheSel {
    fn new(types: &BTreeMap<String, CacheType>, limit: u64) -> CacheSel {
        let mut v: Vec<(String, CacheType)> = types
            .iter()
            .filter(|(n, _)| n.as_str() != "default")
            .map(|(n, c)| (n.clone(), c.clone()))
            .collect();
        v.extend(
            types
                .iter()
                .filter(|(n, _)| n.as_str() == "default")
                .map(|(n, c)| (n.clone(), c.clone())),
        );
        let checked = v.iter().map(|_| AtomicU64::new(0)).collect();
        let matchers = v.iter().map(|(_, c)| Matcher::new(&c.pattern)).collect();
        CacheSel {
            types: v,
            matchers,
            checked,
            limit,
        }
    }

    /// The first cache type whose pattern matches.
    fn of(&self, key: &str) -> Option<usize> {
        self.matchers.iter().position(|m| m.matches(key))
    }
}

/// A glob compiled to a substring or prefix test when it is one (`*text*`, `text*`).
enum Matcher {
    Contains(String),
    Prefix(String),
    Glob(String),
}

impl Matcher {
    fn new(pattern: &str) -> Matcher {
        let special = |s: &str| s.contains(['*', '?', '[', '\\']);
        if let Some(inner) = pattern.strip_prefix('*').and_then(|p| p.strip_suffix('*')) {
            if !inner.is_empty() && !special(inner) {
                return Matcher::Contains(inner.to_string());
            }
        }
        if let Some(head) = pattern.strip_suffix('*') {
            if !special(head) {
                return Matcher::Prefix(head.to_string());
            }
        }
        Matcher::Glob(pattern.to_string())
    }

    fn matches(&self, key: &str) -> bool {
        match self {
            Matcher::Contains(s) => key.contains(s.as_str()),
            Matcher::Prefix(s) => key.starts_with(s.as_str()),
            Matcher::Glob(p) => glob::matches(p, key),
        }
    }
}

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
) -> Result<ScanSnapshot, Error> {
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
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<ScanMsg, Error>>(IN_FLIGHT + 1);
    let producer = tokio::spawn(scan_keys(conn.clone(), opts.clone(), tx));
    let mut heap: BinaryHeap<Reverse<KeyInfo>> = BinaryHeap::new();
    let mut inflight: VecDeque<tokio::task::JoinHandle<Result<Fetched, Error>>> = VecDeque::new();
    let mut prefix_buf = String::new();
    let join_err = |e: tokio::task::JoinError| Error::Query {
        url: conn.url.redacted.clone(),
        command: "the key scan".into(),
        reason: format!("a worker task failed: {e}"),
    };
    let result: Result<(), Error> = async {
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
    tx: tokio::sync::mpsc::Sender<Result<ScanMsg, Error>>,
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
                .send(Err(Error::Parse {
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
) -> Result<Fetched, Error> {
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
        if let Some(ci) = f.cache[i] {
            let (name, cfg) = &sel.types[ci];
            let cfg_ttl_ms = cfg.ttl_s as i64 * 1000;
            let c = snap.cache_types.entry(name.clone()).or_default();
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

const AREA: &str = "redis";

/// Judges a scan: large keys, keys without TTL by prefix, cache types.
pub fn judge(s: &ScanSnapshot, t: &RedisTargets) -> Vec<Finding> {
    let mut out = Vec::new();
    let f = s.extrapolation();
    let est = |n: u64| {
        if s.sampled {
            format!("~{}", (n as f64 * f).round() as u64)
        } else {
            n.to_string()
        }
    };
    let unit = if s.memory_unavailable.is_some() {
        "elements"
    } else {
        "bytes"
    };
    // Large keys.
    let large: Vec<&KeyInfo> = s
        .top
        .iter()
        .filter(|k| k.size > t.large_key_bytes)
        .collect();
    for k in &large {
        out.push(
            Finding::new(AREA, "large_key", truncate(&k.key, 80), Verdict::Warn)
                .observed(if s.memory_unavailable.is_some() { format!("{} {unit}", k.size) } else { human_bytes(k.size) })
                .target(format!("<= {}", human_bytes(t.large_key_bytes)))
                .evidence(format!("{} with {} elements", k.key_type, k.elements.map_or("?".into(), |e| e.to_string())))
                .action("Compress the value at the application layer or restructure it (split into smaller keys)"),
        );
    }
    if (s.large_keys as usize) > large.len() {
        out.push(
            Finding::new(
                AREA,
                "large_key",
                format!("{} more large keys", s.large_keys as usize - large.len()),
                Verdict::Warn,
            )
            .observed(format!(
                "{} keys over {}",
                s.large_keys,
                human_bytes(t.large_key_bytes)
            ))
            .target("none")
            .action("Raise --top to list them; compress or restructure them"),
        );
    }
    if s.large_keys == 0 {
        out.push(
            Finding::new(
                AREA,
                "large_key",
                format!("{} keys scanned", s.scanned),
                Verdict::Pass,
            )
            .observed(format!(
                "largest {}",
                s.top
                    .first()
                    .map_or("-".into(), |k| if s.memory_unavailable.is_some() {
                        format!("{} {unit}", k.size)
                    } else {
                        human_bytes(k.size)
                    })
            ))
            .target(format!("<= {}", human_bytes(t.large_key_bytes))),
        );
    }
    // Keys without TTL, grouped by prefix (Sidekiq's own keys are meant to persist).
    let mut producers: Vec<(&String, &PrefixStats)> = s
        .prefixes
        .iter()
        .filter(|(p, ps)| ps.no_ttl_keys > 0 && !is_sidekiq_prefix(p))
        .collect();
    producers.sort_by_key(|b| std::cmp::Reverse(b.1.no_ttl_keys));
    for (p, ps) in producers.iter().take(10) {
        out.push(
            Finding::new(AREA, "no_ttl", format!("prefix {p}"), Verdict::Warn)
                .observed(format!("{} keys without TTL ({} {unit})", est(ps.no_ttl_keys), ps.no_ttl_bytes))
                .target("every cache key has a TTL")
                .evidence(format!("{} of {} keys under the prefix", ps.no_ttl_keys, ps.keys))
                .action("Audit the producers of these keys and add expires_in: to their Rails.cache.write calls"),
        );
    }
    if producers.is_empty() {
        out.push(
            Finding::new(AREA, "no_ttl", "keys without TTL", Verdict::Pass)
                .observed(format!("{} (Sidekiq keys excluded)", s.no_ttl_keys))
                .target("every cache key has a TTL"),
        );
    }
    // Cache types.
    for (name, c) in &s.cache_types {
        if c.keys == 0 {
            continue;
        }
        let Some(cfg) = s.cache_config.get(name) else {
            continue;
        };
        let subject = format!("cache type {name} ({})", cfg.pattern);
        if c.no_ttl > 0 || c.ttl_too_long > 0 {
            out.push(
                Finding::new(AREA, "cache_ttl", subject.clone(), Verdict::Warn)
                    .observed(format!("{} without TTL, {} with TTL over {}s (max left {}s)", c.no_ttl, c.ttl_too_long, cfg.ttl_s, c.max_ttl_ms.max(0) / 1000))
                    .target(format!("TTL <= {}s", cfg.ttl_s))
                    .evidence(c.example_no_ttl.clone().or_else(|| c.example_ttl_too_long.clone()).map(|k| format!("e.g. {k}")).unwrap_or_default())
                    .action("Write these keys with the cache type's expires_in (PerformanceCacheService CACHE_CONFIGS)"),
            );
        } else {
            out.push(
                Finding::new(AREA, "cache_ttl", subject.clone(), Verdict::Pass)
                    .observed(format!("{} keys, {} {unit}", est(c.keys), c.bytes))
                    .target(format!("TTL <= {}s", cfg.ttl_s)),
            );
        }
        if c.compression_checked > 0 {
            let wrong = if cfg.compress {
                c.compression_checked - c.compressed
            } else {
                c.compressed
            };
            out.push(
                Finding::new(
                    AREA,
                    "cache_compression",
                    subject,
                    if wrong > 0 {
                        Verdict::Warn
                    } else {
                        Verdict::Pass
                    },
                )
                .observed(format!(
                    "{} of {} values checked compressed",
                    c.compressed, c.compression_checked
                ))
                .target(if cfg.compress {
                    "compressed (compress: true)"
                } else {
                    "uncompressed (compress: false)"
                })
                .evidence(
                    c.example_compression
                        .clone()
                        .map(|k| format!("e.g. {k}"))
                        .unwrap_or_default(),
                )
                .action(if cfg.compress {
                    "Write this cache type with compress: true as CACHE_CONFIGS says"
                } else {
                    "Drop compression for this small, hot cache type (compress: false)"
                }),
            );
        }
    }
    out
}

fn is_sidekiq_prefix(p: &str) -> bool {
    p == SIDEKIQ_GROUP
}

/// The prefix group of Sidekiq's own keys (they are meant to persist).
pub const SIDEKIQ_GROUP: &str = "(sidekiq)";

fn is_sidekiq_key(key: &str) -> bool {
    matches!(
        key,
        "queues" | "processes" | "retry" | "dead" | "schedule" | "stat:processed" | "stat:failed"
    ) || key.starts_with("queue:")
}

/// The scan as tables: biggest keys, prefixes, cache types.
pub fn render(s: &ScanSnapshot) -> String {
    let unit = if s.memory_unavailable.is_some() {
        "size (elements)"
    } else {
        "memory"
    };
    let sz = |b: u64| {
        if s.memory_unavailable.is_some() {
            b.to_string()
        } else {
            human_bytes(b)
        }
    };
    let mut out = format!(
        "Scanned {} of {} keys in db{} in {:.1}s{}{}\n",
        s.scanned,
        s.dbsize,
        s.db,
        s.elapsed_s,
        if s.sampled {
            format!(
                " (sample: figures marked ~ are extrapolated ×{:.1})",
                s.extrapolation()
            )
        } else {
            String::new()
        },
        s.pattern
            .as_ref()
            .map(|p| format!(" matching {p}"))
            .unwrap_or_default()
    );
    if let Some(r) = &s.memory_unavailable {
        out.push_str(&format!(
            "MEMORY USAGE unavailable ({r}): sizes are element counts (bytes for strings)\n"
        ));
    }
    out.push_str(&format!(
        "{}: {}, without TTL: {} keys ({})\n\n",
        unit,
        sz(s.total_bytes),
        s.no_ttl_keys,
        sz(s.no_ttl_bytes)
    ));
    let mut rows = vec![vec![
        "key".to_string(),
        "type".into(),
        unit.into(),
        "elements".into(),
        "ttl".into(),
    ]];
    for k in &s.top {
        rows.push(vec![
            truncate(&k.key, 60),
            k.key_type.clone(),
            sz(k.size),
            k.elements.map_or("-".into(), |e| e.to_string()),
            k.ttl_ms.map_or("none".into(), |t| format!("{}s", t / 1000)),
        ]);
    }
    out.push_str(&format!(
        "Biggest keys (top {})\n{}\n",
        s.top.len(),
        table(&rows)
    ));
    let mut prefixes: Vec<(&String, &PrefixStats)> = s.prefixes.iter().collect();
    prefixes.sort_by(|a, b| b.1.bytes.cmp(&a.1.bytes).then(b.1.keys.cmp(&a.1.keys)));
    let mut rows = vec![vec![
        "prefix".to_string(),
        "keys".into(),
        unit.into(),
        "no TTL keys".into(),
        "no TTL".into(),
    ]];
    for (p, ps) in prefixes.iter().take(25) {
        rows.push(vec![
            truncate(p, 50),
            ps.keys.to_string(),
            sz(ps.bytes),
            ps.no_ttl_keys.to_string(),
            sz(ps.no_ttl_bytes),
        ]);
    }
    out.push_str(&format!(
        "Prefixes ({} groups, by {unit})\n{}",
        s.prefixes.len(),
        table(&rows)
    ));
    let used: Vec<(&String, &CacheTypeStats)> =
        s.cache_types.iter().filter(|(_, c)| c.keys > 0).collect();
    if !used.is_empty() {
        let mut rows = vec![vec![
            "cache type".to_string(),
            "keys".into(),
            unit.into(),
            "no TTL".into(),
            "TTL too long".into(),
            "compressed".into(),
        ]];
        for (n, c) in used {
            rows.push(vec![
                n.clone(),
                c.keys.to_string(),
                sz(c.bytes),
                c.no_ttl.to_string(),
                c.ttl_too_long.to_string(),
                format!("{}/{}", c.compressed, c.compression_checked),
            ]);
        }
        out.push_str(&format!("\nCache types\n{}", table(&rows)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(
            prefix_of("cache:user_profile:42", 2),
            "cache:user_profile:*"
        );
        assert_eq!(prefix_of("session:42", 2), "session:*");
        assert_eq!(prefix_of("plain", 2), "(no prefix)");
        assert_eq!(prefix_of("a:b:c:d", 1), "a:*");
        assert_eq!(prefix_of("queue:default", 2), SIDEKIQ_GROUP);
        let mut buf = String::new();
        for (k, d) in [
            ("cache:user_profile:42", 2),
            ("session:42", 2),
            ("plain", 2),
            ("a:b:c:d", 1),
            ("a:b:c:d", 3),
            ("queue:x", 2),
            ("a::b", 2),
        ] {
            prefix_into(k, d, &mut buf);
            assert_eq!(buf, prefix_of(k, d), "{k} {d}");
        }
    }

    #[test]
    fn matchers_agree_with_the_glob() {
        for p in [
            "*user_session*",
            "cache:*",
            "*",
            "a?c*",
            "*x[yz]*",
            "exact",
            "**",
        ] {
            let m = Matcher::new(p);
            for k in ["cache:user_session:1", "abc", "xz", "exact", "", "axyz"] {
                assert_eq!(m.matches(k), glob::matches(p, k), "{p} {k}");
            }
        }
    }

    #[test]
    fn compression_markers() {
        assert!(looks_compressed(&[0x04, 0x08, 0x78, 0x9c, 0x01]));
        assert!(!looks_compressed(b"{\"name\":\"x^y\"}"));
        assert!(looks_compressed(&[0x00, 0x11, 0x81, 0x00, 0x78]));
        assert!(!looks_compressed(&[0x00, 0x11, 0x01, 0x00, 0x78, 0x9c]));
    }

    fn snap() -> ScanSnapshot {
        let t = powertune_core::Targets::default();
        ScanSnapshot {
            scanned: 10,
            dbsize: 10,
            cache_config: t.cache.clone(),
            ..Default::default()
        }
    }

    #[test]
    fn judges_large_keys_ttl_and_cache_types() {
        let t = RedisTargets::default();
        let mut s = snap();
        let f = judge(&s, &t);
        assert!(f.iter().all(|x| x.verdict == Verdict::Pass), "{f:#?}");
        s.top.push(KeyInfo {
            size: 2 << 20,
            key: "blob".into(),
            key_type: "string".into(),
            elements: Some(2 << 20),
            ttl_ms: None,
        });
        s.large_keys = 1;
        s.prefixes.insert(
            "legacy:*".into(),
            PrefixStats {
                keys: 5,
                bytes: 500,
                no_ttl_keys: 5,
                no_ttl_bytes: 500,
            },
        );
        s.prefixes.insert(
            SIDEKIQ_GROUP.into(),
            PrefixStats {
                keys: 1,
                bytes: 50,
                no_ttl_keys: 1,
                no_ttl_bytes: 50,
            },
        );
        s.cache_types.insert(
            "user_profile".into(),
            CacheTypeStats {
                keys: 3,
                ttl_too_long: 1,
                compression_checked: 3,
                compressed: 1,
                ..Default::default()
            },
        );
        let f = judge(&s, &t);
        let by = |c: &str| {
            f.iter()
                .filter(|x| x.check == c)
                .map(|x| (x.subject.clone(), x.verdict))
                .collect::<Vec<_>>()
        };
        assert_eq!(by("large_key"), vec![("blob".to_string(), Verdict::Warn)]);
        assert_eq!(
            by("no_ttl"),
            vec![("prefix legacy:*".to_string(), Verdict::Warn)]
        );
        assert_eq!(by("cache_ttl")[0].1, Verdict::Warn);
        assert_eq!(by("cache_compression")[0].1, Verdict::Warn);
    }

    #[test]
    fn options_are_validated() {
        let t = powertune_core::Targets::default();
        let mut o = ScanOptions::new(&t.redis, &t.cache);
        assert!(o.validate().is_ok());
        o.rate = Some(0);
        assert!(o.validate().unwrap_err().to_string().contains("--rate"));
    }
}
