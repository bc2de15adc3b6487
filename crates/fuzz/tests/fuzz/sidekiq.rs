//! Sidekiq's data as read from Redis (`powertune queues`): job payloads (JSON in
//! queue lists, the retry and dead sets, process `:work` hashes) and the replies
//! they come in (`powertune_redis::sidekiq::{decode, payload}`).

use powertune_redis::sidekiq::decode::{
    days, dead_newest, metrics, process, queue, retry_sample, type_ok,
};
use powertune_redis::sidekiq::payload::{job_class, parse_work, timestamp_secs};
use proptest::prelude::*;
use redis::Value;
use std::sync::Arc;

const TARGET: &str = "sidekiq";
const NOW: f64 = 1_700_000_100.0;

static TOKENS: &[&[u8]] = &[
    b"\"class\":",
    b"\"wrapped\":",
    b"\"jid\":",
    b"\"enqueued_at\":",
    b"\"created_at\":",
    b"\"run_at\":",
    b"\"retry_count\":",
    b"\"error_class\":",
    b"\"error_message\":",
    b"\"payload\":\"{\\\"class\\\":\\\"X\\\"}\"",
    b"\"payload\":",
    b"\"queue\":",
    b"\"weights\":{",
    b"\"concurrency\":",
    b"1700000000.5",
    b"1700000000123",
];

fn bulk(b: &[u8]) -> Value {
    Value::BulkString(b.to_vec())
}

/// Feeds `input` as a job payload, a work entry, process info and set members to
/// every decoder; each answers, and keeps its output within its bounds.
pub fn check(input: &[u8]) {
    if let Ok(job) = serde_json::from_slice::<serde_json::Value>(input) {
        let _ = job_class(&job);
        for k in ["enqueued_at", "created_at", "run_at", "failed_at"] {
            if let Some(v) = job.get(k) {
                let _ = timestamp_secs(v);
            }
        }
    }
    match queue("default", &Value::Int(3), &bulk(input), NOW) {
        Ok(q) => assert_eq!(q.size, 3),
        Err(e) => assert!(e.contains("queue:default"), "{e}"),
    }
    let fields = Value::Array(vec![
        bulk(input),
        bulk(b"2"),
        bulk(b"1700000099.5"),
        bulk(b"false"),
        bulk(b"1024"),
    ]);
    let work7 = Value::Map(vec![
        (bulk(b"tid-1"), bulk(input)),
        (bulk(b"tid-2"), bulk(input)),
    ]);
    let work6 = Value::Array(vec![bulk(b"tid-3"), bulk(input)]);
    if let Ok(Some(p)) = process("p1", &fields, &work7, &work6, NOW) {
        assert!(
            p.running.len() <= 3,
            "{} running jobs from 3 entries",
            p.running.len()
        );
    }
    let running = parse_work(&work7, NOW);
    assert!(running.len() <= 2);
    let members = Value::Array(vec![bulk(input), bulk(input), Value::Nil]);
    let r = retry_sample(&members, 3);
    assert!(r.sampled <= 2 && r.top_classes.len() <= 5 && r.top_errors.len() <= 5);
    let dead = dead_newest(&Value::Array(vec![bulk(input), bulk(b"1700000000123")]));
    assert!(dead.len() <= 1);
    for d in &dead {
        assert!(
            d.error_message.chars().count() <= 120,
            "{}",
            d.error_message
        );
    }
}

#[test]
fn corpus_replays_cleanly() {
    super::replay(TARGET, 8, check);
}

/// Sidekiq 7's metrics hashes may hold counters near `i64::MAX`; summing them per
/// class must not overflow (a debug build panicked on `attempt to add with overflow`).
#[test]
fn metrics_near_i64_max_do_not_overflow() {
    let h = Value::Array(vec![
        bulk(b"Job|ms"),
        Value::Int(i64::MAX),
        bulk(b"Job|p"),
        Value::Int(i64::MAX),
    ]);
    let m = metrics(&[h.clone(), h.clone(), h]).unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].total_ms, u64::MAX);
    assert_eq!(m[0].processed, u64::MAX);
}

/// Redis replies of any shape, with members drawn from the corpus and from the
/// strings the decoders look for.
fn reply(seeds: Arc<Vec<Vec<u8>>>) -> impl Strategy<Value = Value> {
    static STRINGS: &[&str] = &[
        "Job|ms",
        "Job|p",
        "Job|f",
        "Other|ms",
        "|",
        "a|b|p",
        "list",
        "zset",
        "hash",
        "none",
        "1700000000.5",
        "1700000000123",
        "-1",
        "18446744073709551616",
        "NaN",
        "{}",
        "[]",
        "null",
        "",
    ];
    let n = seeds.len().max(1);
    let seed =
        (0..n).prop_map(move |i| Value::BulkString(seeds.get(i).cloned().unwrap_or_default()));
    let leaf = prop_oneof![
        1 => Just(Value::Nil),
        1 => prop_oneof![any::<i64>(), Just(i64::MAX), Just(i64::MIN), Just(0i64), Just(-1i64)].prop_map(Value::Int),
        3 => seed,
        3 => proptest::sample::select(STRINGS).prop_map(|s| Value::BulkString(s.as_bytes().to_vec())),
        1 => proptest::sample::select(STRINGS).prop_map(|s| Value::SimpleString(s.to_string())),
        1 => proptest::collection::vec(any::<u8>(), 0..16).prop_map(Value::BulkString),
        1 => Just(Value::Okay),
        1 => any::<f64>().prop_map(Value::Double),
        1 => any::<bool>().prop_map(Value::Boolean),
    ];
    leaf.prop_recursive(3, 48, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::vec((inner.clone(), inner.clone()), 0..6).prop_map(Value::Map),
            proptest::collection::vec(inner, 0..4).prop_map(Value::Set),
        ]
    })
}

proptest! {
    #![proptest_config(powertune_fuzz::config(6000))]

    #[test]
    fn mutated_corpus_never_panics(input in powertune_fuzz::mutated(super::seeds(TARGET), TOKENS)) {
        check(&input);
    }

    /// Every decoder over replies of any shape.
    #[test]
    fn replies_of_any_shape_never_panic(
        a in reply(Arc::new(super::seeds(TARGET))),
        b in reply(Arc::new(super::seeds(TARGET))),
        c in reply(Arc::new(super::seeds(TARGET))),
        size in any::<u64>(),
    ) {
        let _ = type_ok(Some(&a), "list");
        let _ = queue("q", &a, &b, NOW);
        let _ = process("p", &a, &b, &c, NOW);
        let r = retry_sample(&a, size);
        prop_assert!(r.top_classes.len() <= 5);
        let _ = dead_newest(&b);
        let dates: Vec<chrono::NaiveDate> = (1..=7).filter_map(|d| chrono::NaiveDate::from_ymd_opt(2024, 1, d)).collect();
        let d = days(&c, &dates);
        prop_assert!(d.len() <= dates.len());
        let _ = metrics(&[a.clone(), b.clone(), c.clone()]);
        let _ = parse_work(&a, NOW);
    }
}
