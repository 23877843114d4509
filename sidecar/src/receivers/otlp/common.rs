//! What spans, metrics and logs share: attribute values as text, ids, and
//! the resource's unified service tags.

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;

/// The service of a resource without `service.name`, as the Datadog Agent names it.
pub const NO_SERVICE: &str = "otlpresourcenoservicename";

/// The value of `key` among `attributes`, if any.
pub fn find<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

/// The value of the first of `keys` set among `attributes`, as text; empty strings skipped.
pub fn find_text(attributes: &[KeyValue], keys: &[&str]) -> Option<String> {
    keys.iter()
        .filter_map(|key| find(attributes, key))
        .map(text)
        .find(|s| !s.is_empty())
}

/// A value as text: strings as they are, numbers and booleans as written,
/// bytes as hex, arrays and maps as JSON.
pub fn text(value: &Value) -> String {
    match value {
        Value::StringValue(s) => s.clone(),
        other => json(other).to_string().trim_matches('"').to_owned(),
    }
}

/// A value as JSON.
pub fn json(value: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        Value::StringValue(s) => J::String(s.clone()),
        Value::BoolValue(b) => J::Bool(*b),
        Value::IntValue(i) => J::from(*i),
        Value::DoubleValue(d) => serde_json::Number::from_f64(*d).map_or(J::Null, J::Number),
        Value::BytesValue(b) => J::String(b.iter().map(|x| format!("{x:02x}")).collect()),
        Value::ArrayValue(a) => J::Array(a.values.iter().map(any_json).collect()),
        Value::KvlistValue(kv) => J::Object(
            kv.values
                .iter()
                .map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(J::Null, any_json)))
                .collect(),
        ),
        Value::StringValueStrindex(_) => J::Null,
    }
}

fn any_json(value: &AnyValue) -> serde_json::Value {
    value.value.as_ref().map_or(serde_json::Value::Null, json)
}

/// A 64-bit id from its 8 big-endian bytes; `None` when it is not 8 bytes.
pub fn id64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// A 128-bit trace id from its 16 big-endian bytes as (high, low); `None`
/// when it is not 16 bytes.
pub fn id128(bytes: &[u8]) -> Option<(u64, u64)> {
    let id = u128::from_be_bytes(bytes.try_into().ok()?);
    Some(((id >> 64) as u64, id as u64))
}

/// A resource's unified service tagging, as the Datadog Agent reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Service {
    /// `service.name`.
    pub name: Option<String>,
    /// `deployment.environment.name`, or the older `deployment.environment`.
    pub env: Option<String>,
    /// `service.version`.
    pub version: Option<String>,
}

impl Service {
    /// The unified service tags of `resource`.
    pub fn of(resource: Option<&Resource>) -> Self {
        let attributes = resource.map_or(&[][..], |r| &r.attributes);
        Service {
            name: find_text(attributes, &["service.name"]),
            env: find_text(
                attributes,
                &["deployment.environment.name", "deployment.environment"],
            ),
            version: find_text(attributes, &["service.version"]),
        }
    }

    /// `service:`, `env:` and `version:` tags for what is set.
    pub fn tags(&self) -> Vec<String> {
        [
            ("service", &self.name),
            ("env", &self.env),
            ("version", &self.version),
        ]
        .into_iter()
        .filter_map(|(key, value)| Some(format!("{key}:{}", value.as_ref()?)))
        .collect()
    }
}

/// Attributes as `key:value` tags (a value that is empty leaves `key` alone).
pub fn tags_of(attributes: &[KeyValue]) -> impl Iterator<Item = String> + '_ {
    attributes.iter().map(|kv| {
        let value = kv
            .value
            .as_ref()
            .and_then(|v| v.value.as_ref())
            .map(text)
            .unwrap_or_default();
        if value.is_empty() {
            kv.key.clone()
        } else {
            format!("{}:{value}", kv.key)
        }
    })
}
