//! Values that may be literal or come from the dyno's environment or a Kubernetes Secret.
//!
//! Secrets are only ever *references*: the operator renders the reference into
//! the DynoConfig and the sidecar resolves it from its own environment at run
//! time, so a password never lands in a file, a ConfigMap or a log line.

use std::borrow::Cow;
use std::fmt;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A key of a Kubernetes Secret in the resource's namespace.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeySelector {
    /// Name of the Secret.
    pub name: String,
    /// Key inside the Secret.
    pub key: String,
}

/// A string given literally (`"1.2.3"`), read from an environment variable of
/// the dyno (`{fromEnv: HEROKU_RELEASE_VERSION}`), or read from a Kubernetes
/// Secret (`{secretKeyRef: {name: datadog, key: api-key}}`).
///
/// In a Kubernetes pod a `secretKeyRef` reaches the sidecar as the environment
/// variable named by [`ValueSource::env_name`], which the chart wires up.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ValueSource {
    /// The value itself. Refused wherever a secret is expected.
    Literal(String),
    /// The name of an environment variable of the dyno.
    FromEnv(String),
    /// A key of a Kubernetes Secret.
    SecretKeyRef(SecretKeySelector),
}

impl ValueSource {
    /// Whether the value is written in the manifest itself.
    pub fn is_literal(&self) -> bool {
        matches!(self, ValueSource::Literal(_))
    }

    /// The environment variable the sidecar reads this value from, if any.
    ///
    /// A `secretKeyRef` is exposed to the sidecar container as
    /// `DYNOSCOPE_SECRET_<NAME>_<KEY>` (upper-cased, non-alphanumerics as `_`).
    pub fn env_name(&self) -> Option<Cow<'_, str>> {
        match self {
            ValueSource::Literal(_) => None,
            ValueSource::FromEnv(name) => Some(Cow::Borrowed(name)),
            ValueSource::SecretKeyRef(sel) => Some(Cow::Owned(secret_env_name(sel))),
        }
    }

    /// Resolves the value with `lookup` (normally `std::env::var`).
    pub fn resolve(&self, lookup: impl Fn(&str) -> Option<String>) -> Option<String> {
        match self {
            ValueSource::Literal(value) => Some(value.clone()),
            other => other.env_name().and_then(|name| lookup(&name)),
        }
    }

    /// A description safe for logs and status pages: never the value of a reference.
    pub fn describe(&self) -> String {
        match self {
            ValueSource::Literal(_) => "a literal value".to_owned(),
            ValueSource::FromEnv(name) => format!("environment variable {name}"),
            ValueSource::SecretKeyRef(sel) => format!("secret {}/{}", sel.name, sel.key),
        }
    }
}

/// The environment variable a Secret key is mounted as in the sidecar container.
pub fn secret_env_name(sel: &SecretKeySelector) -> String {
    let raw = format!("DYNOSCOPE_SECRET_{}_{}", sel.name, sel.key);
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

impl Serialize for ValueSource {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            ValueSource::Literal(value) => serializer.serialize_str(value),
            ValueSource::FromEnv(name) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("fromEnv", name)?;
                map.end()
            }
            ValueSource::SecretKeyRef(sel) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("secretKeyRef", sel)?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for ValueSource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SourceVisitor;

        impl<'de> Visitor<'de> for SourceVisitor {
            type Value = ValueSource;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, {fromEnv: VAR} or {secretKeyRef: {name, key}}")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<ValueSource, E> {
                Ok(ValueSource::Literal(v.to_owned()))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ValueSource, E> {
                Ok(ValueSource::Literal(v.to_string()))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ValueSource, E> {
                Ok(ValueSource::Literal(v.to_string()))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ValueSource, E> {
                Ok(ValueSource::Literal(v.to_string()))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ValueSource, A::Error> {
                let Some(key) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(
                        "empty map: write {fromEnv: VAR} or {secretKeyRef: {name, key}}",
                    ));
                };
                let source = match key.as_str() {
                    "fromEnv" => ValueSource::FromEnv(map.next_value()?),
                    "secretKeyRef" => ValueSource::SecretKeyRef(map.next_value()?),
                    other => {
                        return Err(de::Error::unknown_field(
                            other,
                            &["fromEnv", "secretKeyRef"],
                        ))
                    }
                };
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "unexpected field `{extra}`: give exactly one of fromEnv or secretKeyRef"
                    )));
                }
                Ok(source)
            }
        }

        deserializer.deserialize_any(SourceVisitor)
    }
}

impl JsonSchema for ValueSource {
    fn schema_name() -> Cow<'static, str> {
        "ValueSource".into()
    }

    // Kubernetes structural schemas cannot say "string or object", so the
    // API server accepts any value here and the operator's validation (which
    // runs the same Deserialize) gives the precise error.
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A literal string, {fromEnv: VAR} or {secretKeyRef: {name, key}}.",
            "x-kubernetes-preserve-unknown-fields": true
        })
    }

    fn inline_schema() -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_form() {
        let cases = [
            ("v42", ValueSource::Literal("v42".into())),
            ("42", ValueSource::Literal("42".into())),
            (
                "{fromEnv: DD_API_KEY}",
                ValueSource::FromEnv("DD_API_KEY".into()),
            ),
            (
                "{secretKeyRef: {name: datadog, key: api-key}}",
                ValueSource::SecretKeyRef(SecretKeySelector {
                    name: "datadog".into(),
                    key: "api-key".into(),
                }),
            ),
        ];
        for (yaml, want) in cases {
            let got: ValueSource = serde_yaml::from_str(yaml).unwrap();
            assert_eq!(got, want, "{yaml}");
            let back = serde_yaml::to_string(&got).unwrap();
            assert_eq!(serde_yaml::from_str::<ValueSource>(&back).unwrap(), want);
        }
    }

    #[test]
    fn rejects_unknown_and_double_keys() {
        let err = serde_yaml::from_str::<ValueSource>("{fromEnvv: X}").unwrap_err();
        assert!(err.to_string().contains("fromEnvv"), "{err}");
        let err =
            serde_yaml::from_str::<ValueSource>("{fromEnv: X, secretKeyRef: {name: a, key: b}}")
                .unwrap_err();
        assert!(err.to_string().contains("exactly one"), "{err}");
    }

    #[test]
    fn secret_env_name_is_a_valid_variable() {
        let sel = SecretKeySelector {
            name: "datadog-keys".into(),
            key: "api.key".into(),
        };
        assert_eq!(
            secret_env_name(&sel),
            "DYNOSCOPE_SECRET_DATADOG_KEYS_API_KEY"
        );
    }

    #[test]
    fn describe_never_shows_the_value() {
        let v = ValueSource::Literal("hunter2".into());
        assert!(!v.describe().contains("hunter2"));
    }
}
