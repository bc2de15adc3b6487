//! Checks a report's metrics payload against its schema in `docs/schema/`.
//!
//! Each metrics type derives `schemars::JsonSchema`; its schema is generated, checked in
//! as `docs/schema/NAME.json`, and a test per command calls [`check`] with real output:
//! the checked-in file must equal the generated schema (so the docs cannot drift from
//! the code) and the output must validate against it. `POWERTUNE_BLESS=1` rewrites the
//! file instead of failing when it differs.

use std::path::PathBuf;

/// The workspace's `docs/schema/` folder.
pub fn schema_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/schema")
}

/// Generates `T`'s schema, compares it with `docs/schema/{name}.json`, and validates
/// `output` (a real payload of that type, as JSON) against it.
pub fn check<T: schemars::JsonSchema>(name: &str, output: &serde_json::Value) {
    let mut generated = serde_json::to_value(schemars::schema_for!(T))
        .unwrap_or_else(|e| panic!("schema of {name}: {e}"));
    if let Some(obj) = generated.as_object_mut() {
        obj.insert(
            "$id".into(),
            serde_json::Value::String(format!("https://powertune.dev/schema/{name}.json")),
        );
    }
    let path = schema_dir().join(format!("{name}.json"));
    let text = serde_json::to_string_pretty(&generated).unwrap() + "\n";
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    if on_disk != text {
        if std::env::var_os("POWERTUNE_BLESS").is_some() {
            std::fs::write(&path, &text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        } else {
            panic!(
                "{} differs from the schema generated from the code; run the test with POWERTUNE_BLESS=1 to rewrite it and review the diff",
                path.display()
            );
        }
    }
    let validator = jsonschema::validator_for(&generated)
        .unwrap_or_else(|e| panic!("{name} schema does not compile: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(output)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{name}: real output does not match the schema: {errors:#?}"
    );
}
