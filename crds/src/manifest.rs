//! Reading ObservabilityConfig manifests: one or several YAML documents a file,
//! unknown fields refused with the path of the field.

use serde::Deserialize;

use crate::dyno::display_path;
use crate::observability::ObservabilityConfig;

/// `apiVersion` of the resource.
pub const API_VERSION: &str = "dynoscope.dev/v1alpha1";
/// `kind` of the resource.
pub const KIND: &str = "ObservabilityConfig";
const TOP_LEVEL: &[&str] = &["apiVersion", "kind", "metadata", "spec", "status"];

/// Why a manifest could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The text is not YAML.
    #[error("{file}: invalid YAML: {message}")]
    Syntax {
        /// The file (or `-`).
        file: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A document of the wrong shape.
    #[error("{file}: document {document}: {field}: {message}")]
    Field {
        /// The file.
        file: String,
        /// 1-based index of the document in the file.
        document: usize,
        /// The field, e.g. `spec.sinks[0].apiKey`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// Parses every ObservabilityConfig in `text`; `file` labels errors. Empty
/// documents are skipped; documents of another kind are refused.
pub fn parse_documents(text: &str, file: &str) -> Result<Vec<ObservabilityConfig>, ManifestError> {
    let mut configs = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let number = index + 1;
        let value =
            serde_yaml::Value::deserialize(document).map_err(|err| ManifestError::Syntax {
                file: file.to_owned(),
                message: err.to_string(),
            })?;
        if value.is_null() {
            continue;
        }
        configs.push(parse_document(value, file, number)?);
    }
    Ok(configs)
}

fn parse_document(
    value: serde_yaml::Value,
    file: &str,
    document: usize,
) -> Result<ObservabilityConfig, ManifestError> {
    let field_error = |field: &str, message: String| ManifestError::Field {
        file: file.to_owned(),
        document,
        field: field.to_owned(),
        message,
    };
    let Some(map) = value.as_mapping() else {
        return Err(field_error(
            ".",
            "expected a mapping with apiVersion, kind, metadata and spec".into(),
        ));
    };
    for key in map.keys() {
        let name = key.as_str().unwrap_or_default();
        if !TOP_LEVEL.contains(&name) {
            return Err(field_error(
                name,
                format!("unknown field; expected one of {}", TOP_LEVEL.join(", ")),
            ));
        }
    }
    let api_version = map
        .get("apiVersion")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    let kind = map.get("kind").and_then(|v| v.as_str()).unwrap_or_default();
    if kind != KIND {
        return Err(field_error(
            "kind",
            format!("is {kind:?}; this file may only hold {KIND} resources"),
        ));
    }
    if api_version != API_VERSION {
        return Err(field_error(
            "apiVersion",
            format!("is {api_version:?}; write {API_VERSION}"),
        ));
    }
    if map.get("spec").is_none() {
        return Err(field_error(
            "spec",
            "is missing: write `spec: {}` for all defaults".into(),
        ));
    }
    let config: ObservabilityConfig = serde_path_to_error::deserialize(value)
        .map_err(|err| field_error(&display_path(err.path()), err.inner().to_string()))?;
    match config.metadata.name.as_deref() {
        Some(name) if valid_name(name) => Ok(config),
        Some(name) => Err(field_error(
            "metadata.name",
            format!("{name:?} is not a valid name: use lower-case letters, digits and `-` (a DNS label)"),
        )),
        None => Err(field_error("metadata.name", "is missing: every resource needs a name".into())),
    }
}

/// A Kubernetes DNS-1123 label.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = "apiVersion: dynoscope.dev/v1alpha1\nkind: ObservabilityConfig\nmetadata: {name: shop}\nspec: {}\n";

    #[test]
    fn reads_several_documents() {
        let text = format!("{OK}---\n---\n{}", OK.replace("shop", "blog"));
        let configs = parse_documents(&text, "a.yaml").unwrap();
        let names: Vec<_> = configs
            .iter()
            .map(|c| c.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["shop", "blog"]);
    }

    #[test]
    fn errors_name_the_file_document_and_field() {
        let cases = [
            (
                OK.replace("spec: {}", "spec: {apm: {prot: 1}}"),
                "document 1: spec.apm.prot: unknown field `prot`, expected one of",
            ),
            (
                OK.replace("spec: {}", "spec: {sinks: [{type: stdout}, {type: kafka}]}"),
                "spec.sinks[1]",
            ),
            (
                OK.replace("spec: {}", "spec: {formation: {web: {quantity: many}}}"),
                "spec.formation.web.quantity",
            ),
            (
                OK.replace("kind: ObservabilityConfig", "kind: Deployment"),
                "kind: is \"Deployment\"",
            ),
            (OK.replace("v1alpha1", "v1"), "apiVersion"),
            (format!("{OK}specs: {{}}\n"), "specs: unknown field"),
            (OK.replace("name: shop", "name: Shop_1"), "metadata.name"),
            ("spec: [".to_owned(), "invalid YAML"),
        ];
        for (text, want) in cases {
            let err = parse_documents(&text, "m.yaml").unwrap_err().to_string();
            assert!(err.starts_with("m.yaml: "), "{err}");
            assert!(err.contains(want), "want {want:?} in {err}");
        }
    }
}
