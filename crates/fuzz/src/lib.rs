//! The fuzzing harness behind `crates/fuzz/tests/fuzz.rs`: corpus files, a budget,
//! and a mutator that proptest drives (and shrinks).
//!
//! cargo-fuzz (libFuzzer) needs a nightly toolchain, which neither CI nor the
//! development machines have; so every parser of outside input is fuzzed here by
//! proptest on stable Rust, in two passes per target:
//!
//! 1. replay every file of `corpus/<target>/` (real inputs from the project's
//!    fixtures and tests, hostile ones, and every crash found so far);
//! 2. mutate corpus entries (bit flips, byte sets, deletions, truncation, splicing
//!    of two entries, insertion of interesting tokens, repeats that deepen nesting)
//!    and generate structured inputs, asserting that the parser returns `Ok` or a
//!    clean `Err`, never panics, and keeps its output within its bounds.
//!
//! The number of cases of each proptest run is [`cases`]: the target's default
//! (a few seconds on a debug build), or `POWERTUNE_FUZZ_CASES` to run longer.

use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The variable that overrides every target's case count.
pub const CASES_ENV: &str = "POWERTUNE_FUZZ_CASES";

/// Longest input the mutator builds; longer results are cut here.
pub const MAX_INPUT: usize = 256 * 1024;

/// Cases for one proptest run: `POWERTUNE_FUZZ_CASES` when it is a positive number,
/// else `default`.
pub fn cases(default: u32) -> u32 {
    cases_from(std::env::var(CASES_ENV).ok().as_deref(), default)
}

/// [`cases`] over the variable's value.
fn cases_from(value: Option<&str>, default: u32) -> u32 {
    value
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

/// The proptest configuration of a target: [`cases`] cases, no regression files
/// written into the source tree (a crash found becomes a corpus file and a named
/// test instead), bounded shrinking.
pub fn config(default_cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(default_cases),
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..ProptestConfig::default()
    }
}

/// One corpus file.
#[derive(Debug, Clone)]
pub struct Seed {
    /// The file name inside the target's directory.
    pub name: String,
    pub bytes: Vec<u8>,
}

/// `crates/fuzz/corpus/<target>`.
pub fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
}

/// Every file of a target's corpus, sorted by name.
pub fn corpus(target: &str) -> Result<Vec<Seed>, String> {
    let dir = corpus_dir(target);
    let rd = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut seeds = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        seeds.push(Seed {
            name: entry.file_name().to_string_lossy().into_owned(),
            bytes,
        });
    }
    seeds.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(seeds)
}

/// Bytes that often matter to parsers.
const INTERESTING_BYTES: &[u8] = &[
    0x00, 0x01, 0x7f, 0x80, 0xff, 0xc0, 0xe2, b'"', b'\\', b'{', b'}', b'[', b']', b'\n', b'\r',
    b':', b',', b'=', b' ', b'0', b'9', b'-', b'.', b'#', b'+',
];

/// Tokens every target gets, besides its own dictionary.
pub const COMMON_TOKENS: &[&[u8]] = &[
    b"0",
    b"-1",
    b"1e308",
    b"1e999",
    b"-1e999",
    b"18446744073709551616",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"4294967296",
    b"0.000000000000000000000000001",
    b"NaN",
    b"inf",
    b"null",
    b"true",
    b"\"\"",
    b"{}",
    b"[]",
    b"\\u0000",
    b"\\ud800",
    b"\xf0\x9f\x92\xa9",
    b"\xff\xfe",
    b"\r\n",
    b"\n\n",
    b"\r\n\r\n",
];

/// One edit of an input. Positions (and picks) are taken modulo the input's length,
/// so every edit applies to every input, and shrinks towards the start.
#[derive(Debug, Clone)]
pub enum Mutation {
    FlipBit {
        at: usize,
        bit: u8,
    },
    SetByte {
        at: usize,
        byte: u8,
    },
    Delete {
        at: usize,
        len: u8,
    },
    Truncate {
        at: usize,
    },
    Token {
        at: usize,
        token: usize,
    },
    Bytes {
        at: usize,
        bytes: Vec<u8>,
    },
    Splice {
        at: usize,
        seed: usize,
        from: usize,
        len: u16,
    },
    Repeat {
        at: usize,
        len: u8,
        times: u8,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        2 => (
            any::<usize>(),
            prop_oneof![proptest::sample::select(INTERESTING_BYTES), any::<u8>()]
        )
            .prop_map(|(at, byte)| Mutation::SetByte { at, byte }),
        2 => (any::<usize>(), 1u8..64).prop_map(|(at, len)| Mutation::Delete { at, len }),
        1 => any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        4 => (any::<usize>(), any::<usize>()).prop_map(|(at, token)| Mutation::Token { at, token }),
        1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Bytes { at, bytes }),
        2 => (any::<usize>(), any::<usize>(), any::<usize>(), 1u16..512)
            .prop_map(|(at, seed, from, len)| Mutation::Splice { at, seed, from, len }),
        1 => (any::<usize>(), 1u8..32, 2u8..=255)
            .prop_map(|(at, len, times)| Mutation::Repeat { at, len, times }),
    ]
}

/// Applies `m` to `input`; `seeds` feed splices, `tokens` insertions.
pub fn apply(input: &mut Vec<u8>, m: &Mutation, seeds: &[Vec<u8>], tokens: &[&[u8]]) {
    let pos = |at: &usize, len: usize| at % (len + 1);
    match m {
        Mutation::FlipBit { at, bit } => {
            if !input.is_empty() {
                let i = at % input.len();
                input[i] ^= 1 << (bit % 8);
            }
        }
        Mutation::SetByte { at, byte } => {
            if !input.is_empty() {
                let i = at % input.len();
                input[i] = *byte;
            }
        }
        Mutation::Delete { at, len } => {
            let i = pos(at, input.len());
            let end = (i + usize::from(*len)).min(input.len());
            input.drain(i..end);
        }
        Mutation::Truncate { at } => {
            let i = pos(at, input.len());
            input.truncate(i);
        }
        Mutation::Token { at, token } => {
            let all = tokens.len() + COMMON_TOKENS.len();
            let k = token % all;
            let t = if k < tokens.len() {
                tokens[k]
            } else {
                COMMON_TOKENS[k - tokens.len()]
            };
            let i = pos(at, input.len());
            input.splice(i..i, t.iter().copied());
        }
        Mutation::Bytes { at, bytes } => {
            let i = pos(at, input.len());
            input.splice(i..i, bytes.iter().copied());
        }
        Mutation::Splice {
            at,
            seed,
            from,
            len,
        } => {
            if seeds.is_empty() {
                return;
            }
            let other = &seeds[seed % seeds.len()];
            if other.is_empty() {
                return;
            }
            let f = from % other.len();
            let end = (f + usize::from(*len)).min(other.len());
            let i = pos(at, input.len());
            input.splice(i..i, other[f..end].iter().copied());
        }
        Mutation::Repeat { at, len, times } => {
            if input.is_empty() {
                return;
            }
            let i = at % input.len();
            let end = (i + usize::from(*len)).min(input.len());
            let chunk = input[i..end].to_vec();
            let mut rep = Vec::with_capacity(chunk.len() * usize::from(*times));
            for _ in 0..*times {
                rep.extend_from_slice(&chunk);
            }
            input.splice(end..end, rep);
        }
    }
    input.truncate(MAX_INPUT);
}

/// Corpus entries edited by 1 to 8 [`Mutation`]s.
pub fn mutated(
    seeds: Vec<Vec<u8>>,
    tokens: &'static [&'static [u8]],
) -> impl Strategy<Value = Vec<u8>> {
    let seeds = Arc::new(seeds);
    (any::<usize>(), proptest::collection::vec(mutation(), 1..8)).prop_map(move |(which, muts)| {
        if seeds.is_empty() {
            return Vec::new();
        }
        let mut input = seeds[which % seeds.len()].clone();
        for m in &muts {
            apply(&mut input, m, &seeds, tokens);
        }
        input
    })
}

/// Any JSON value up to `depth` levels deep; object keys are drawn from `keys`
/// (the names a parser looks for) or are random, strings from `strings` or random.
pub fn json_value(
    keys: &'static [&'static str],
    strings: &'static [&'static str],
    depth: u32,
) -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        proptest::sample::select(&[0i64, 1, -1, 2, 100, 1_000_000][..]).prop_map(Value::from),
        proptest::sample::select(strings).prop_map(|s| Value::String(s.to_string())),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(depth, 64, 8, move |inner| {
        let key = prop_oneof![
            4 => proptest::sample::select(keys).prop_map(str::to_string),
            1 => "[a-z_]{0,8}",
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key, inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Deterministic cut points for feeding `len` bytes in pieces of about `step`.
pub fn pieces(len: usize, step: usize) -> Vec<std::ops::Range<usize>> {
    let step = step.max(1);
    let mut out = Vec::new();
    let mut at = 0;
    while at < len {
        let end = (at + step).min(len);
        out.push(at..end);
        at = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mutation_stays_within_the_input_cap() {
        let seeds = vec![b"{\"a\":1}".to_vec(), Vec::new()];
        let big = Mutation::Repeat {
            at: 0,
            len: 31,
            times: 255,
        };
        let mut input = vec![b'['; MAX_INPUT];
        apply(&mut input, &big, &seeds, &[]);
        assert_eq!(input.len(), MAX_INPUT);
        let mut empty = Vec::new();
        for m in [
            Mutation::FlipBit { at: 3, bit: 9 },
            Mutation::Delete { at: 3, len: 9 },
            Mutation::Truncate { at: 3 },
            Mutation::Repeat {
                at: 3,
                len: 2,
                times: 3,
            },
        ] {
            apply(&mut empty, &m, &seeds, &[]);
        }
        assert!(empty.is_empty());
    }

    #[test]
    fn a_token_is_inserted_where_asked() {
        let mut input = b"ab".to_vec();
        let m = Mutation::Token { at: 0, token: 0 };
        apply(&mut input, &m, &[], &[b"XY"]);
        assert_eq!(input, b"XYab");
    }

    #[test]
    fn pieces_cover_the_input_in_order() {
        let p = pieces(10, 4);
        assert_eq!(p, vec![0..4, 4..8, 8..10]);
        assert!(pieces(0, 4).is_empty());
    }

    #[test]
    fn the_case_count_is_a_positive_number_or_the_default() {
        assert_eq!(cases_from(None, 17), 17);
        assert_eq!(cases_from(Some(" 500 "), 17), 500);
        assert_eq!(cases_from(Some("0"), 17), 17);
        assert_eq!(cases_from(Some("-3"), 17), 17);
        assert_eq!(cases_from(Some("lots"), 17), 17);
    }
}
