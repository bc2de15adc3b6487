//! Threshold expressions (`p(95)<500`), metric selectors
//! (`http_req_duration{scenario:login}`) and the `--threshold` flag form
//! (`powertune_core::threshold`).

use powertune_core::threshold::{parse_expr, parse_selector, Threshold};
use proptest::prelude::*;

const TARGET: &str = "threshold";

static TOKENS: &[&[u8]] = &[
    b"p(",
    b")",
    b"avg",
    b"min",
    b"max",
    b"med",
    b"count",
    b"rate",
    b"value",
    b"<",
    b"<=",
    b">",
    b">=",
    b"==",
    b"{",
    b"}",
    b":",
    b",",
    b" ",
    b"\t",
    b"\xc2\xa0",
    b"\xd9\xa5",
    b"\xc3\xa9",
    b"http_req_duration",
    b"99999999999999999999999999999999999999999999999999",
];

/// A parse error's column falls within the text (1-based, one past the end at most).
fn column_ok(e: &powertune_core::threshold::ParseError, text: &str) -> bool {
    e.column >= 1 && e.column <= text.chars().count() + 1
}

pub fn check_text(text: &str) {
    match parse_expr(text) {
        Ok(e) => {
            assert!(e.value.is_finite(), "{text:?} gave the limit {}", e.value);
            // What a report prints parses back to the same expression.
            assert_eq!(
                parse_expr(&e.to_string()).as_ref(),
                Ok(&e),
                "{text:?} printed as {e}"
            );
        }
        Err(e) => assert!(column_ok(&e, text), "{text:?}: column {}", e.column),
    }
    match parse_selector(text) {
        Ok(s) => assert!(!s.name.is_empty()),
        Err(e) => assert!(column_ok(&e, text), "{text:?}: column {}", e.column),
    }
    match Threshold::parse_flag(text, "http_req_duration") {
        Ok(t) => {
            assert!(t.expr.value.is_finite());
            let again = Threshold::parse_flag(&t.to_string(), "http_req_duration");
            assert_eq!(
                again.as_ref().map(|a| &a.expr),
                Ok(&t.expr),
                "{text:?} printed as {t}"
            );
        }
        Err(e) => assert!(e.column >= 1, "{text:?}: column {}", e.column),
    }
}

pub fn check(input: &[u8]) {
    check_text(&super::text(input));
}

#[test]
fn corpus_replays_cleanly() {
    super::replay(TARGET, 10, check);
}

/// A limit of 400 digits is past f64's range: it was read as infinity, a threshold
/// that always passes and prints as `p(95)<inf` (and as `null` in JSON reports).
#[test]
fn a_limit_past_f64s_range_is_refused() {
    let text = format!("p(95)<{}", "9".repeat(400));
    let e = parse_expr(&text).unwrap_err();
    assert_eq!(e.column, 7, "{e:?}");
    assert!(
        Threshold::parse_flag(&format!("http_req_failed: rate<{}", "1".repeat(320)), "x").is_err()
    );
    assert!(
        parse_expr("p(95)<1e3").is_err(),
        "no exponents in the grammar"
    );
}

/// Text close to the grammar: an aggregation, a comparison and a number, each
/// sometimes broken.
fn near_grammar() -> impl Strategy<Value = String> {
    let agg = prop_oneof![
        proptest::sample::select(
            &["avg", "min", "max", "med", "count", "rate", "value", "avgx", ""][..]
        )
        .prop_map(str::to_string),
        "p\\( ?[-+]?[0-9]{0,4}(\\.[0-9]{0,4})? ?\\)?",
    ];
    let op = proptest::sample::select(&["<", "<=", ">", ">=", "==", "=", "=<", ""][..]);
    let number = prop_oneof![
        "[-+]?[0-9]{0,6}(\\.[0-9]{0,6})?",
        "[0-9]{300,400}",
        "[-+]?\\.?[0-9]?\\.?",
        any::<f64>().prop_map(|f| f.to_string()),
    ];
    let metric = prop_oneof![
        Just(String::new()),
        "[a-z_.]{1,12}(\\{([a-z]{0,4}:[a-zA-Z /]{0,6},?){0,3}\\}?)?: ?",
    ];
    (metric, agg, " {0,2}", op, " {0,2}", number, "[ a-z]{0,2}")
        .prop_map(|(m, a, w1, o, w2, n, tail)| format!("{m}{a}{w1}{o}{w2}{n}{tail}"))
}

proptest! {
    #![proptest_config(powertune_fuzz::config(12000))]

    #[test]
    fn mutated_corpus_never_panics(input in powertune_fuzz::mutated(super::seeds(TARGET), TOKENS)) {
        check(&input);
    }

    #[test]
    fn near_grammar_text_parses_or_says_where(text in near_grammar()) {
        check_text(&text);
    }

    #[test]
    fn any_text_parses_or_says_where(text in "\\PC{0,40}") {
        check_text(&text);
    }
}
