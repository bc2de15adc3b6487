use super::*;
use crate::collect::executor::schedule;
use crate::plan::Stage;
use proptest::prelude::*;
use std::time::Duration;

fn seq(text: &str) -> Vec<R> {
    parse_sequence(text).unwrap()
}

#[test]
fn reads_i_of_n_and_k6_segments() {
    let s = Share::parse("2/4", None).unwrap();
    assert_eq!(s.segment_text(), "1/4:1/2");
    assert_eq!(s.sequence_text(), "0,1/4,1/2,3/4,1");
    assert_eq!((s.index(), s.count()), (1, 4));
    let k = Share::parse("25%:50%", Some("0,0.25,0.5,1")).unwrap();
    assert_eq!(k.segment_text(), "1/4:1/2");
    assert_eq!(k.index(), 1);
    let d = Share::parse("0.5:1", None).unwrap();
    assert_eq!(d.sequence_text(), "0,1/2,1");
    assert!(Share::parse("1/1", None).unwrap().is_whole());
}

#[test]
fn bad_segments_name_the_flag_and_an_example() {
    let e = |s: &str, q: Option<&str>| Share::parse(s, q).unwrap_err().0;
    assert!(e("5/4", None).contains("neither i/n"), "{}", e("5/4", None));
    assert!(e("0/4", None).contains("e.g. 2/4"));
    assert!(e("1/2:1/4", None).contains("start must be below"));
    assert!(e("1/4:1/2", Some("0,1/3,2/3,1")).contains("not one of the segments"));
    assert!(e("1/4:1/2", Some("0,1/2,1/4,1")).contains("increase strictly"));
    assert!(e("1/4:1/2", Some("1/4,1/2,1")).contains("from 0 to 1"));
    assert!(e("2:3", None).contains("between 0 and 1"));
    assert!(e("1/4:x", None).contains("e.g. 1/4, 0.25, 25%"));
}

#[test]
fn stripes_like_k6() {
    // k6's example: sequence 0,1/2,3/4,1 → A owns 0,2,4,6…, B 1,5,9…, C 3,7,11….
    let owned = |i: usize| -> Vec<u64> {
        let s = Share::new(seq("0,1/2,3/4,1"), i).unwrap();
        (0..12).filter(|k| s.owns(*k)).collect()
    };
    assert_eq!(owned(0), [0, 2, 4, 6, 8, 10]);
    assert_eq!(owned(1), [1, 5, 9]);
    assert_eq!(owned(2), [3, 7, 11]);
    let s = Share::new(seq("0,1/2,3/4,1"), 1).unwrap();
    assert_eq!((0..3).map(|j| s.nth(j)).collect::<Vec<_>>(), [1, 5, 9]);
    // Thirds never lose a VU: 10 VUs → 4 + 3 + 3.
    let thirds: Vec<u64> = (0..3)
        .map(|i| Share::new(seq("0,1/3,2/3,1"), i).unwrap().scale(10))
        .collect();
    assert_eq!(thirds.iter().sum::<u64>(), 10);
    assert_eq!(thirds, [4, 3, 3]);
}

#[test]
fn too_fine_sequences_are_refused() {
    let e = Share::new(seq("0,1/99991,1/99989,1"), 0).unwrap_err().0;
    assert!(e.contains("common denominator exceeds"), "{e}");
}

#[test]
fn a_split_that_starves_a_segment_is_refused() {
    let mut p = plan(Executor::SharedIterations {
        vus: 2,
        iterations: 100,
        max_duration: Duration::from_secs(1),
    });
    let e = p.split(Share::parse("1/4", None).unwrap()).unwrap_err().0;
    assert!(
        e.contains("scenario `x`: split into 4 segments, segment 1/2:3/4 would get iterations but no VU; give vus at least 4"),
        "{e}"
    );
}

#[test]
fn the_plan_hash_ignores_the_segment_and_base_url_but_not_the_load() {
    let mut a = plan(Executor::ConstantVus {
        vus: 8,
        duration: Duration::from_secs(1),
    });
    let h = plan_hash(&a);
    assert!(h.starts_with("sha256:") && h.len() == 71, "{h}");
    a.options.base_url = Some("http://elsewhere".into());
    a.split(Share::parse("3/4", None).unwrap()).unwrap();
    let b = plan(Executor::ConstantVus {
        vus: 8,
        duration: Duration::from_secs(1),
    });
    assert_eq!(plan_hash(&b), h, "same plan");
    let c = plan(Executor::ConstantVus {
        vus: 9,
        duration: Duration::from_secs(1),
    });
    assert_ne!(plan_hash(&c), h);
}

fn plan(e: Executor) -> Plan {
    let mut p = Plan::from_toml_str(
        "[scenarios.x]\nendpoint_type = \"auth\"\nusers = 1\nduration = \"1s\"\n[[scenarios.x.steps]]\nurl = \"/\"\n",
        "p.toml",
    )
    .unwrap();
    p.scenarios[0].executor = e;
    p
}

/// A random sequence of 1 to 8 segments over denominators up to 24.
fn sequences() -> impl Strategy<Value = Vec<R>> {
    (1u64..=24, proptest::collection::btree_set(1u64..24, 0..8)).prop_map(|(d, cuts)| {
        let mut pts = vec![R::from_integer(0)];
        pts.extend(cuts.into_iter().filter(|c| *c < d).map(|c| R::new(c, d)));
        pts.push(R::from_integer(1));
        pts.dedup();
        pts
    })
}

fn executors() -> impl Strategy<Value = Executor> {
    let d = Duration::from_secs(2);
    prop_oneof![
        (1u32..5000).prop_map(move |vus| Executor::ConstantVus { vus, duration: d }),
        (1u32..500, 1u64..1000).prop_map(move |(vus, iterations)| Executor::PerVuIterations {
            vus,
            iterations,
            max_duration: d
        }),
        (1u32..500, 0u64..100_000).prop_map(move |(vus, iterations)| {
            Executor::SharedIterations {
                vus: vus.max(24),
                iterations,
                max_duration: d,
            }
        }),
        (0u32..300, proptest::collection::vec(0u32..300, 1..4)).prop_map(move |(s, t)| {
            Executor::RampingVus {
                start_vus: s,
                stages: t
                    .into_iter()
                    .map(|t| Stage {
                        duration: Duration::from_millis(700),
                        target: f64::from(t),
                    })
                    .collect(),
            }
        }),
        (1u32..2000, 24u32..400, 0u32..400).prop_map(move |(rate, max, pre)| {
            Executor::ConstantArrivalRate {
                rate: f64::from(rate),
                time_unit: Duration::from_secs(1),
                duration: d,
                pre_allocated_vus: pre.min(max),
                max_vus: max,
                max_backlog: 100,
            }
        }),
        (
            0u32..1000,
            proptest::collection::vec(0u32..1000, 1..4),
            24u32..400
        )
            .prop_map(move |(start, t, max)| Executor::RampingArrivalRate {
                start_rate: f64::from(start),
                time_unit: Duration::from_secs(1),
                stages: t
                    .into_iter()
                    .map(|t| Stage {
                        duration: Duration::from_millis(900),
                        target: f64::from(t),
                    })
                    .collect(),
                pre_allocated_vus: 24,
                max_vus: max,
                max_backlog: 100,
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn integers_split_exactly(points in sequences(), v in 0u64..1_000_000) {
        let shares: Vec<Share> = (0..points.len() - 1).map(|i| Share::new(points.clone(), i).unwrap()).collect();
        prop_assert_eq!(shares.iter().map(|s| s.scale(v)).sum::<u64>(), v);
        // Stable: a share never shrinks as the whole grows.
        for s in &shares {
            prop_assert!(s.scale(v) <= s.scale(v + 1));
        }
        // Every global index is owned by exactly one segment, and nth walks it.
        for k in 0..64u64 {
            prop_assert_eq!(shares.iter().filter(|s| s.owns(k)).count(), 1);
        }
        for s in &shares {
            let n = s.scale(64);
            let ids: Vec<u64> = (0..n).map(|j| s.nth(j)).collect();
            prop_assert!(ids.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(ids.iter().all(|k| s.owns(*k) && *k < 64));
        }
    }

    #[test]
    fn every_executor_splits_into_the_whole_plan(points in sequences(), e in executors()) {
        let whole = plan(e.clone());
        let n = points.len() - 1;
        let parts: Vec<Plan> = (0..n)
            .map(|i| {
                let mut p = whole.clone();
                p.split(Share::new(points.clone(), i).unwrap()).unwrap();
                p
            })
            .collect();
        let ex = |p: &Plan| p.scenarios[0].executor.clone();
        match &e {
            Executor::ConstantVus { vus, .. } => {
                let sum: u32 = parts.iter().map(|p| ex(p).max_vus()).sum();
                prop_assert_eq!(sum, *vus);
            }
            Executor::PerVuIterations { vus, iterations, .. } => {
                let sum: u32 = parts.iter().map(|p| ex(p).max_vus()).sum();
                prop_assert_eq!(sum, *vus);
                let its: u64 = parts.iter().map(|p| work(&ex(&whole), &p.segment).iterations).sum();
                prop_assert_eq!(its, u64::from(*vus) * iterations);
            }
            Executor::SharedIterations { vus, iterations, .. } => {
                let mut sv = 0u32;
                let mut si = 0u64;
                for p in &parts {
                    if let Executor::SharedIterations { vus, iterations, .. } = ex(p) {
                        sv += vus;
                        si += iterations;
                    }
                }
                prop_assert_eq!((sv, si), (*vus, *iterations));
            }
            Executor::RampingVus { start_vus, stages } => {
                // At every moment the segments' targets add up to the whole one.
                let mut targets: Vec<u64> = vec![u64::from(*start_vus)];
                targets.extend(stages.iter().map(|s| s.target as u64));
                for t in targets {
                    let sum: u64 = parts.iter().map(|p| p.segment.scale(t)).sum();
                    prop_assert_eq!(sum, t);
                }
            }
            Executor::ConstantArrivalRate { max_vus, pre_allocated_vus, .. }
            | Executor::RampingArrivalRate { max_vus, pre_allocated_vus, .. } => {
                let sum: u32 = parts.iter().map(|p| ex(p).max_vus()).sum();
                prop_assert_eq!(sum, *max_vus);
                let pre: u64 = parts.iter().map(|p| work(&ex(&whole), &p.segment).pre_allocated_vus).sum();
                prop_assert_eq!(pre, u64::from(*pre_allocated_vus));
                // Each global arrival is started by exactly one segment, at its time.
                let all: Vec<Duration> = schedule(&e).unwrap().collect();
                let mut union: Vec<(usize, Duration)> = Vec::new();
                for p in &parts {
                    union.extend(
                        schedule(&ex(p)).unwrap().enumerate().filter(|(k, _)| p.segment.owns(*k as u64)),
                    );
                }
                union.sort_by_key(|(k, _)| *k);
                prop_assert_eq!(union.len(), all.len());
                prop_assert!(union.iter().enumerate().all(|(i, (k, at))| *k == i && *at == all[i]));
            }
        }
    }
}
