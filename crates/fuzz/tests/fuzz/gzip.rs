//! gzip bodies: the receiver's decompression path (`powertune_apm::decode::gunzip`,
//! capped at 8 × `--max-body`), then the body decoders.

use flate2::write::GzEncoder;
use flate2::Compression;
use powertune_apm::decode::{decode_json, gunzip, is_gzip, DecodeError};
use powertune_apm::wire::read_request;
use proptest::prelude::*;
use std::io::Write;

const TARGET: &str = "gzip";

/// Limits tried on every input: none, tiny, and the receiver's default
/// (8 × the 16 MiB `--max-body`) stands in at 1 MiB to keep the budget small.
const LIMITS: [usize; 5] = [0, 1, 1024, 64 * 1024, 1 << 20];

static TOKENS: &[&[u8]] = &[
    b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff",
    b"\x1f\x8b\x08\x1f",
    b"\x1f\x8b\x09",
    b"\x03\x00",
    b"\x00\x00\xff\xff",
    b"\xff\xff\xff\xff",
    b"\x00\x00\x00\x00",
];

fn gz(data: &[u8], level: u32) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::new(level));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Decompresses `input` under each limit: never more than the limit comes out,
/// and the same input gives the same answer under every limit it fits.
pub fn check(input: &[u8]) {
    let mut fitted: Option<Vec<u8>> = None;
    for limit in LIMITS {
        match gunzip(input, limit) {
            Ok(out) => {
                assert!(
                    out.len() <= limit,
                    "{} bytes out under a {limit}-byte limit",
                    out.len()
                );
                if let Some(prev) = &fitted {
                    assert_eq!(prev, &out);
                }
                fitted = Some(out);
            }
            Err(DecodeError::TooLarge { limit: l }) => {
                assert_eq!(l, limit);
                assert!(fitted.is_none(), "fit a smaller limit, not {limit}");
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.starts_with("body is not valid gzip"), "{msg}");
            }
        }
    }
    // The receiver's path: a JSON body recognised by its magic number, a protobuf
    // body as announced; whatever comes out goes to the decoders.
    if is_gzip(input) {
        if let Ok(plain) = gunzip(input, 1 << 20) {
            let _ = decode_json(&plain);
            let (mut ok, mut bad) = (Vec::new(), Vec::new());
            let _ = read_request(&plain, &mut ok, &mut bad);
        }
    }
}

#[test]
fn corpus_replays_cleanly() {
    super::replay(TARGET, 5, check);
}

/// The 16 MiB-of-zeros bomb (16 KiB on the wire) stops at the limit.
#[test]
fn a_bomb_stops_at_the_limit() {
    let bomb =
        std::fs::read(powertune_fuzz::corpus_dir(TARGET).join("hostile-bomb-16MiB-zeros.gz"))
            .unwrap();
    assert!(bomb.len() < 64 * 1024);
    assert!(
        matches!(gunzip(&bomb, 1 << 20), Err(DecodeError::TooLarge { limit }) if limit == 1 << 20)
    );
    assert_eq!(gunzip(&bomb, 16 << 20).unwrap().len(), 16 << 20);
}

proptest! {
    #![proptest_config(powertune_fuzz::config(2000))]

    #[test]
    fn mutated_corpus_never_panics(input in powertune_fuzz::mutated(super::seeds(TARGET), TOKENS)) {
        check(&input);
    }
}

proptest! {
    #![proptest_config(powertune_fuzz::config(800))]

    /// Members of any content and level: the result is their concatenation when it
    /// fits the limit, `TooLarge` exactly when it does not.
    #[test]
    fn generated_members_decompress_exactly(
        members in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..3000), 0u32..10, 0usize..4000), 1..4),
        limit in 0usize..10_000,
    ) {
        let mut body = Vec::new();
        let mut plain = Vec::new();
        for (data, level, zeros) in &members {
            let mut d = data.clone();
            d.extend(std::iter::repeat_n(0u8, *zeros));
            body.extend(gz(&d, *level));
            plain.extend(d);
        }
        match gunzip(&body, limit) {
            Ok(out) => {
                prop_assert!(plain.len() <= limit);
                prop_assert_eq!(out, plain);
            }
            Err(DecodeError::TooLarge { .. }) => prop_assert!(plain.len() > limit),
            Err(e) => prop_assert!(false, "{e}"),
        }
        check(&body);
    }
}
