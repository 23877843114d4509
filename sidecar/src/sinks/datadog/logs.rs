//! Log records as Datadog's logs intake takes them (`POST /api/v2/logs`, a
//! JSON array): `message`, `status`, `timestamp` (ms), `hostname`, `service`,
//! `ddsource`, `ddtags`, the correlation attributes under `dd`
//! (`dd.trace_id` as ddtrace writes it, `dd.span_id` in decimal), the stream
//! under `logger.stream`, and a JSON line's own attributes.
//!
//! Limits (HEROKU.md §5): at most 1 000 entries a request (the endpoint's
//! `max_entries`), 5 MB a request (the delivery's batch is smaller), 1 MB an
//! entry: a longer record's message is cut with `...TRUNCATED...`.

use serde_json::{json, Map, Value};

use crate::receivers::logs::group::TRUNCATED;
use crate::sinks::delivery::Entry;
use crate::telemetry::LogRecord;

/// The most entries of one request.
pub const MAX_ENTRIES: usize = 1000;

/// The largest entry the intake takes whole, in bytes.
pub const MAX_ENTRY_BYTES: usize = 1_000_000;

/// Fields the sidecar sets; a JSON line's attributes of the same name give way.
const RESERVED: [&str; 8] = [
    "message",
    "status",
    "timestamp",
    "hostname",
    "service",
    "ddsource",
    "ddtags",
    "dd",
];

/// The record as one intake entry (also the body of a jsonl `"kind":"log"` line).
pub fn entry_json(record: &LogRecord, hostname: &str) -> Map<String, Value> {
    let mut entry = Map::new();
    for (key, value) in &record.attributes {
        if !RESERVED.contains(&key.as_str()) {
            entry.insert(key.clone(), value.clone());
        }
    }
    entry.insert("message".into(), record.message.clone().into());
    entry.insert("status".into(), record.status.as_str().into());
    entry.insert("timestamp".into(), record.timestamp_ms.into());
    entry.insert("hostname".into(), hostname.into());
    if let Some(service) = &record.service {
        entry.insert("service".into(), service.clone().into());
    }
    if let Some(source) = &record.source {
        entry.insert("ddsource".into(), source.clone().into());
    }
    entry.insert("ddtags".into(), record.tags.join(",").into());
    let mut dd = Map::new();
    if let Some(trace_id) = record.dd_trace_id() {
        dd.insert("trace_id".into(), trace_id.into());
    }
    if let Some(span_id) = record.span_id {
        dd.insert("span_id".into(), span_id.to_string().into());
    }
    for (key, value) in [("env", &record.env), ("version", &record.version)] {
        if let Some(value) = value {
            dd.insert(key.into(), value.clone().into());
        }
    }
    if !dd.is_empty() {
        entry.insert("dd".into(), Value::Object(dd));
    }
    if let Some(stream) = record.stream {
        entry.insert("logger".into(), json!({"stream": stream.as_str()}));
    }
    entry
}

/// The record as an entry of `/api/v2/logs`, at most [`MAX_ENTRY_BYTES`].
pub fn log_entry(record: &LogRecord, hostname: &str) -> Entry {
    let mut entry = entry_json(record, hostname);
    let mut bytes = serde_json::to_vec(&entry).unwrap_or_default();
    if bytes.len() > MAX_ENTRY_BYTES {
        let over = bytes.len() - MAX_ENTRY_BYTES + TRUNCATED.len();
        let message = &record.message;
        let mut keep = message.len().saturating_sub(over);
        while !message.is_char_boundary(keep) {
            keep -= 1;
        }
        let cut = format!("{}{TRUNCATED}", &message[..keep]);
        entry.insert("message".into(), cut.into());
        bytes = serde_json::to_vec(&entry).unwrap_or_default();
        if bytes.len() > MAX_ENTRY_BYTES {
            // The attributes alone are too large: keep what the intake needs.
            entry.retain(|key, _| RESERVED.contains(&key.as_str()) || key == "logger");
            bytes = serde_json::to_vec(&entry).unwrap_or_default();
        }
    }
    Entry { bytes, items: 1 }
}
