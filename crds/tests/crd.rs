//! The committed CRD matches the code, and the example manifests match the CRD's schema.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn committed_crd_matches_the_code() {
    let path = repo().join("crds/observabilityconfig.yaml");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == dynoscope_crds::crd_yaml(),
        "{} is stale: run `cargo run -p dynoscope-crds --bin crdgen > crds/observabilityconfig.yaml` and commit it",
        path.display()
    );
}

fn crd_validator() -> jsonschema::Validator {
    let crd: serde_json::Value = serde_yaml::from_str(&dynoscope_crds::crd_yaml()).unwrap();
    let mut schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
    // OpenAPI's `nullable` is not JSON Schema; express it as a type union.
    add_null_types(&mut schema);
    jsonschema::draft4::new(&schema).unwrap()
}

fn add_null_types(schema: &mut serde_json::Value) {
    match schema {
        serde_json::Value::Object(map) => {
            if map.get("nullable") == Some(&serde_json::Value::Bool(true)) {
                if let Some(serde_json::Value::String(t)) = map.get("type").cloned() {
                    map.insert("type".into(), serde_json::json!([t, "null"]));
                }
            }
            map.values_mut().for_each(add_null_types);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(add_null_types),
        _ => {}
    }
}

fn example_manifests() -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![repo().join("examples")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                let text = std::fs::read_to_string(&path).unwrap();
                if text.contains("kind: ObservabilityConfig") {
                    found.push(path);
                }
            }
        }
    }
    found.sort();
    found
}

#[test]
fn example_manifests_validate_against_the_crd_schema() {
    let validator = crd_validator();
    let examples = example_manifests();
    assert!(
        !examples.is_empty(),
        "no example manifests found under examples/"
    );
    for path in examples {
        let text = std::fs::read_to_string(&path).unwrap();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value: serde_json::Value = serde::Deserialize::deserialize(document).unwrap();
            if value.is_null() {
                continue;
            }
            let errors: Vec<String> = validator
                .iter_errors(&value)
                .map(|e| format!("{}: {e}", e.instance_path()))
                .collect();
            assert!(errors.is_empty(), "{}: {errors:?}", path.display());
            // And our own reader and validation accept it.
            let label = path.display().to_string();
            dynoscope_crds::manifest::parse_documents(&text, &label).unwrap();
        }
    }
}

#[test]
fn the_schema_refuses_what_it_should() {
    let validator = crd_validator();
    let bad = serde_json::json!({
        "apiVersion": "dynoscope.dev/v1alpha1", "kind": "ObservabilityConfig",
        "metadata": {"name": "x"},
        "spec": {"apm": {"port": "eighty"}, "sinks": [{"type": "kafka"}], "processMetrics": {"interval": "20 seconds"}}
    });
    let errors: Vec<String> = validator
        .iter_errors(&bad)
        .map(|e| e.instance_path().to_string())
        .collect();
    for want in [
        "/spec/apm/port",
        "/spec/sinks/0/type",
        "/spec/processMetrics/interval",
    ] {
        assert!(
            errors.iter().any(|e| e == want),
            "{want} not refused: {errors:?}"
        );
    }
}

#[test]
fn dyno_config_has_a_json_schema() {
    let schema = dynoscope_crds::DynoConfig::json_schema();
    let required = schema["required"].as_array().unwrap();
    for field in ["schemaVersion", "dyno", "tags", "configHash", "sinks"] {
        assert!(required.iter().any(|r| r == field), "{field} not required");
    }
}
