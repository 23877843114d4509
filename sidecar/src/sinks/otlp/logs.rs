//! Log records as OTLP logs (`/v1/logs`): one `resource_logs` entry per
//! service of a batch, the dyno's resource with the record's service as
//! `service.name`. A record becomes a `LogRecord` with its time, severity
//! number and text, the message as the body, `trace_id` (16 bytes, big-endian)
//! and `span_id` (8 bytes), and attributes: `log.iostream` (`stdout`/`stderr`),
//! `ddsource`, `dd.env` and `dd.version` when the line said them, and a JSON
//! line's fields (nested objects flattened to dotted keys, arrays of scalars
//! kept as arrays).

use std::collections::BTreeMap;

use prost::Message as _;
use serde_json::Value;

use super::{scope, string};
use crate::proto::otlp as pb;
use crate::proto::otlp_logs as logs_pb;
use crate::sinks::delivery::Entry;
use crate::telemetry::LogRecord;

/// The `resource_logs` entries (field 1 of the request) of a batch of records.
pub fn log_entries(records: &[LogRecord], resource: &[pb::KeyValue]) -> Vec<Entry> {
    let mut by_service: BTreeMap<Option<&str>, Vec<logs_pb::LogRecord>> = BTreeMap::new();
    for record in records {
        by_service
            .entry(record.service.as_deref())
            .or_default()
            .push(convert(record));
    }
    by_service
        .into_iter()
        .map(|(service, log_records)| {
            let mut attributes: Vec<pb::KeyValue> = resource.to_vec();
            if let Some(service) = service {
                attributes.retain(|kv| kv.key != "service.name");
                attributes.push(string("service.name", service));
            }
            let items = log_records.len() as u64;
            let message = logs_pb::ResourceLogs {
                resource: Some(pb::Resource { attributes }),
                scope_logs: vec![logs_pb::ScopeLogs {
                    scope: scope(),
                    log_records,
                }],
            };
            let mut bytes = Vec::with_capacity(message.encoded_len() + 8);
            prost::encoding::message::encode(1, &message, &mut bytes);
            Entry { bytes, items }
        })
        .collect()
}

/// One record as an OTLP `LogRecord`.
pub fn convert(record: &LogRecord) -> logs_pb::LogRecord {
    let nanos = u64::try_from(record.timestamp_ms)
        .unwrap_or(0)
        .saturating_mul(1_000_000);
    let mut attributes = Vec::new();
    if let Some(stream) = record.stream {
        attributes.push(string("log.iostream", stream.as_str()));
    }
    for (key, value) in [
        ("ddsource", &record.source),
        ("dd.env", &record.env),
        ("dd.version", &record.version),
    ] {
        if let Some(value) = value {
            attributes.push(string(key, value));
        }
    }
    for (key, value) in &record.attributes {
        flatten(key, value, &mut attributes);
    }
    logs_pb::LogRecord {
        time_unix_nano: nanos,
        severity_number: record.status.severity_number(),
        severity_text: record.status.as_str().to_owned(),
        body: Some(text(&record.message)),
        attributes,
        trace_id: record
            .trace_id
            .map(|id| id.to_be_bytes().to_vec())
            .unwrap_or_default(),
        span_id: record
            .span_id
            .map(|id| id.to_be_bytes().to_vec())
            .unwrap_or_default(),
        observed_time_unix_nano: nanos,
    }
}

fn text(value: &str) -> pb::AnyValue {
    pb::AnyValue {
        value: Some(pb::any_value::Value::StringValue(value.to_owned())),
    }
}

/// A JSON value as attributes under `key`: objects flattened to `key.member`.
fn flatten(key: &str, value: &Value, out: &mut Vec<pb::KeyValue>) {
    if let Value::Object(members) = value {
        for (member, value) in members {
            flatten(&format!("{key}.{member}"), value, out);
        }
        return;
    }
    out.push(pb::KeyValue {
        key: key.to_owned(),
        value: scalar(value),
    });
}

fn scalar(value: &Value) -> Option<pb::AnyValue> {
    use pb::any_value::Value as V;
    let value = match value {
        Value::Null => return None,
        Value::Bool(b) => V::BoolValue(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => V::IntValue(i),
            None => V::DoubleValue(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => V::StringValue(s.clone()),
        Value::Array(items) => V::ArrayValue(pb::ArrayValue {
            values: items.iter().filter_map(scalar).collect(),
        }),
        Value::Object(_) => V::StringValue(value.to_string()),
    };
    Some(pb::AnyValue { value: Some(value) })
}
