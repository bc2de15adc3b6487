//! Saved EXPLAIN (FORMAT JSON) output and psql's printout of it (`powertune db
//! explain --plan FILE`): `parse_plan_text`, then everything the command does with
//! the plan (flags, findings, the tree, the metrics payload).

use powertune_core::Targets;
use powertune_db::explain::{
    analyze, filter_columns, findings, in_list_len, parse_plan_text, parse_plan_value, render_tree,
    ExplainMetrics, PlanThresholds,
};
use proptest::prelude::*;
use serde_json::{json, Value};

const TARGET: &str = "explain";

static TOKENS: &[&[u8]] = &[
    b"\"Plans\": [",
    b"{\"Node Type\": \"Nested Loop\", \"Plans\": [",
    b"\"Node Type\": \"Seq Scan\"",
    b"\"Actual Rows\": ",
    b"\"Plan Rows\": ",
    b"\"Actual Loops\": 0",
    b"\"Rows Removed by Filter\": ",
    b"\"Sort Space Type\": \"Disk\"",
    b"\"Filter\": \"((a = 1) AND (b = ANY ('{1,2}'::int[])))\"",
    b"\"Index Cond\": \"(id = ANY (ARRAY[",
    b"'{",
    b"}'",
    b"+\n",
    b" QUERY PLAN\n",
    b"(1 row)\n",
    b"-----+-----\n",
];

pub fn check_text(text: &str) {
    let targets = Targets::default();
    let th = PlanThresholds::from_targets(&targets);
    if let Ok(doc) = parse_plan_text(text) {
        let flags = analyze(&doc, &th);
        let tree = render_tree(&doc, &flags);
        assert!(!tree.is_empty());
        let f = findings(&doc, &flags, &targets);
        for finding in &f {
            let _ = serde_json::to_string(finding).unwrap();
        }
        let m = ExplainMetrics::new(&doc, &flags, text);
        let _ = serde_json::to_value(&m).unwrap();
    }
    let _ = filter_columns(text);
    let _ = in_list_len(text);
}

pub fn check(input: &[u8]) {
    check_text(&super::text(input));
}

#[test]
fn corpus_replays_cleanly() {
    super::replay(TARGET, 8, check);
}

/// A row estimate below `i64::MIN` overflowed negating it when the tree was drawn
/// (`attempt to negate with overflow` in a debug build; `--9,223,...` in release).
#[test]
fn huge_negative_row_counts_render() {
    let text = std::fs::read_to_string(
        powertune_fuzz::corpus_dir(TARGET).join("crash-fmt-rows-negative.json"),
    )
    .unwrap();
    let doc = parse_plan_text(&text).unwrap();
    let targets = Targets::default();
    let flags = analyze(&doc, &PlanThresholds::from_targets(&targets));
    let tree = render_tree(&doc, &flags);
    assert!(tree.contains("-9,223,372,036,854,775,808"), "{tree}");
    check_text(&text);
}

/// Plans nested past serde_json's recursion limit and past the analyzer's own
/// depth limit are refused, not a stack overflow.
#[test]
fn deep_plans_are_refused() {
    let mut v = json!({"Node Type": "Seq Scan"});
    for _ in 0..1_000 {
        v = json!({"Node Type": "Nested Loop", "Plans": [v]});
    }
    let doc = json!([{ "Plan": v }]);
    assert!(parse_plan_value(&doc).is_err());
    // Dropping a Value recurses: take the tree apart level by level.
    let mut v = doc;
    loop {
        let ptr = if v.is_array() { "/0/Plan" } else { "/Plans/0" };
        match v.pointer_mut(ptr).map(Value::take) {
            Some(next) => v = next,
            None => break,
        }
    }
}

/// Plan nodes with any keys the analyzer reads and any values.
fn node(depth: u32) -> impl Strategy<Value = Value> {
    static NODE_TYPES: &[&str] = &[
        "Seq Scan",
        "Index Scan",
        "Index Only Scan",
        "Bitmap Heap Scan",
        "Nested Loop",
        "Hash Join",
        "Merge Join",
        "Sort",
        "Limit",
        "Aggregate",
        "Hash",
        "Gather",
        "",
        "Weird",
    ];
    static KEYS: &[&str] = &[
        "Plan Rows",
        "Actual Rows",
        "Actual Loops",
        "Actual Total Time",
        "Actual Startup Time",
        "Total Cost",
        "Startup Cost",
        "Rows Removed by Filter",
        "Rows Removed by Index Recheck",
        "Shared Hit Blocks",
        "Shared Read Blocks",
        "Temp Read Blocks",
        "Temp Written Blocks",
        "Sort Space Used",
        "Sort Method",
        "Sort Space Type",
        "Workers Planned",
        "Workers Launched",
    ];
    static CONDS: &[&str] = &[
        "Filter",
        "Index Cond",
        "Recheck Cond",
        "Hash Cond",
        "Join Filter",
        "Relation Name",
        "Index Name",
        "Alias",
        "Sort Key",
    ];
    let number = prop_oneof![
        any::<f64>().prop_map(|f| json!(f)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<i64>().prop_map(|n| json!(n)),
        Just(json!(0)),
        Just(json!("12")),
        Just(Value::Null),
    ];
    let cond = prop_oneof![
        "[a-z_ ()=<>'{},:\\[\\]0-9.]{0,40}",
        Just("(id = ANY ('{1,2,3}'::integer[]))".to_string()),
        Just("((status)::text = ANY ('{a,b}'::text[]))".to_string()),
        Just("(a.id = b.a_id)".to_string()),
    ];
    let leaf = (
        proptest::sample::select(NODE_TYPES),
        proptest::collection::vec((proptest::sample::select(KEYS), number), 0..8),
        proptest::collection::vec((proptest::sample::select(CONDS), cond), 0..3),
    )
        .prop_map(|(t, nums, conds)| {
            let mut m = serde_json::Map::new();
            m.insert("Node Type".into(), json!(t));
            for (k, v) in nums {
                m.insert(k.to_string(), v);
            }
            for (k, v) in conds {
                m.insert(k.to_string(), json!(v));
            }
            Value::Object(m)
        });
    leaf.prop_recursive(depth, 32, 3, |inner| {
        (inner.clone(), proptest::collection::vec(inner, 0..3)).prop_map(|(mut n, kids)| {
            if let Value::Object(m) = &mut n {
                m.insert("Plans".into(), Value::Array(kids));
            }
            n
        })
    })
}

/// psql's aligned printout of a JSON text: header, ` +` continuations, row count.
fn psql(json: &str) -> String {
    let mut out = String::from("                 QUERY PLAN\n-----------------------------\n");
    let lines: Vec<&str> = json.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        out.push(' ');
        out.push_str(l);
        if i + 1 < lines.len() {
            out.push_str(" +");
        }
        out.push('\n');
    }
    out.push_str("(1 row)\n");
    out
}

proptest! {
    #![proptest_config(powertune_fuzz::config(1500))]

    #[test]
    fn mutated_corpus_never_panics(input in powertune_fuzz::mutated(super::seeds(TARGET), TOKENS)) {
        check(&input);
    }

    /// Any plan tree: as JSON it parses, and psql's printout of it parses the same.
    #[test]
    fn generated_plans_parse_as_json_and_as_psql_text(root in node(5), exec in proptest::option::of(any::<f64>())) {
        let mut top = json!({ "Plan": root });
        if let Some(e) = exec {
            top["Execution Time"] = json!(e);
        }
        let text = serde_json::to_string_pretty(&json!([top])).unwrap();
        let doc = parse_plan_text(&text);
        prop_assert!(doc.is_ok(), "{:?}", doc.err());
        check_text(&text);
        let printed = psql(&text);
        let again = parse_plan_text(&printed);
        prop_assert!(again.is_ok(), "{:?}\n{printed}", again.err());
        prop_assert_eq!(format!("{:?}", doc.unwrap()), format!("{:?}", again.unwrap()));
        check_text(&printed);
    }
}
