//! A record's text into a [`LogRecord`]: its status, a JSON line's attributes
//! and message, and the trace it was written in.
//!
//! - JSON objects (`{…}`): `message`, `msg` or `log` is the message (else the
//!   whole line); `level`, `severity`, `status` or `levelname` the status
//!   (names, or pino/bunyan numbers); `dd.trace_id`, `dd.span_id`,
//!   `dd.service`, `dd.env`, `dd.version` as flat keys or under `dd`; every
//!   other field stays an attribute, nested objects kept.
//! - Text: logfmt `level=` / `at=`, else a level word (`ERROR`, `[WARN]`,
//!   `INFO:`) among the first words; ddtrace's injected
//!   `[dd.service=… dd.env=… dd.version=… dd.trace_id=… dd.span_id=…]`.
//! - No level: `info` on stdout, `error` on stderr (what the Datadog Agent
//!   does with a container's streams).
//!
//! Trace ids come as ddtrace writes them: 32 lowercase hex digits for a
//! 128-bit id, else the decimal low 64 bits; `0` is no trace.

use serde_json::{Map, Value};

use crate::telemetry::{LogRecord, LogStatus, LogStream};

/// The first bytes of a line searched for a level word.
const LEVEL_PREFIX: usize = 96;

/// The first words of a line searched for a level word.
const LEVEL_WORDS: usize = 6;

/// The correlation fields of a JSON line: flat (`dd.trace_id`), and their names under `dd`.
const DD_KEYS: [(&str, &str); 5] = [
    ("dd.trace_id", "trace_id"),
    ("dd.span_id", "span_id"),
    ("dd.service", "service"),
    ("dd.env", "env"),
    ("dd.version", "version"),
];

/// A line that looked structured but was not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseFailure {
    /// Began with `{` but is not a JSON object.
    Json,
}

impl ParseFailure {
    /// The counter's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ParseFailure::Json => "json",
        }
    }
}

/// The record of `text` read from `stream` at `at_ms`; a failed JSON parse
/// leaves a text record and says so.
pub fn parse(
    text: String,
    stream: Option<LogStream>,
    at_ms: i64,
) -> (LogRecord, Option<ParseFailure>) {
    let mut failure = None;
    if text.starts_with('{') {
        match serde_json::from_str::<Map<String, Value>>(&text) {
            Ok(object) => return (json_record(text, object, stream, at_ms), None),
            Err(_) => failure = Some(ParseFailure::Json),
        }
    }
    let status = text_status(&text);
    let mut record = LogRecord::new(at_ms, String::new());
    record.stream = stream;
    record.status = status.unwrap_or_else(|| default_status(stream));
    if let Some(fields) = dd_text_fields(&text) {
        for (key, value) in fields {
            set_dd(&mut record, key, value);
        }
    }
    record.message = text;
    (record, failure)
}

fn default_status(stream: Option<LogStream>) -> LogStatus {
    match stream {
        Some(LogStream::Stderr) => LogStatus::Error,
        _ => LogStatus::Info,
    }
}

fn json_record(
    text: String,
    mut object: Map<String, Value>,
    stream: Option<LogStream>,
    at_ms: i64,
) -> LogRecord {
    let mut record = LogRecord::new(at_ms, String::new());
    record.stream = stream;
    record.status = ["level", "severity", "status", "levelname"]
        .iter()
        .find_map(|key| object.get(*key).and_then(json_status))
        .unwrap_or_else(|| default_status(stream));
    record.message = ["message", "msg", "log"]
        .iter()
        .find_map(|key| match object.get(*key) {
            Some(Value::String(_)) => match object.remove(*key) {
                Some(Value::String(message)) => Some(message),
                _ => None,
            },
            _ => None,
        })
        .unwrap_or(text);
    for (flat, key) in DD_KEYS {
        if let Some(value) = object.remove(flat) {
            set_dd_json(&mut record, key, &value);
        }
    }
    if let Some(Value::Object(mut dd)) = object.remove("dd") {
        for (_, key) in DD_KEYS {
            if let Some(value) = dd.remove(key) {
                set_dd_json(&mut record, key, &value);
            }
        }
        if !dd.is_empty() {
            object.insert("dd".to_owned(), Value::Object(dd));
        }
    }
    record.attributes = object;
    record
}

/// [`set_dd`] with a JSON value: strings as they are, numbers written out.
fn set_dd_json(record: &mut LogRecord, key: &str, value: &Value) {
    match value {
        Value::String(s) => set_dd(record, key, s),
        other => set_dd(record, key, &other.to_string()),
    }
}

fn json_status(value: &Value) -> Option<LogStatus> {
    match value {
        Value::String(level) => LogStatus::from_level(level),
        // pino and bunyan: 10 trace, 20 debug, 30 info, 40 warn, 50 error, 60 fatal.
        Value::Number(n) => n.as_u64().and_then(|n| match n {
            0..=29 => Some(LogStatus::Debug),
            30..=39 => Some(LogStatus::Info),
            40..=49 => Some(LogStatus::Warning),
            50..=59 => Some(LogStatus::Error),
            60..=69 => Some(LogStatus::Critical),
            _ => None,
        }),
        _ => None,
    }
}

/// The status a text line states: logfmt `level=`/`at=`, else a level word
/// in capitals among its first words.
pub fn text_status(text: &str) -> Option<LogStatus> {
    let head = &text[..floor_boundary(text, LEVEL_PREFIX)];
    // One pass: a logfmt level anywhere in the head wins over a level word.
    let mut word_status = None;
    for (index, word) in head.split_ascii_whitespace().enumerate() {
        if let Some(value) = word
            .strip_prefix("level=")
            .or_else(|| word.strip_prefix("at="))
        {
            if let Some(status) = LogStatus::from_level(value.trim_matches('"')) {
                return Some(status);
            }
        }
        if word_status.is_none() && index < LEVEL_WORDS {
            word_status = level_word(word.trim_matches(|c: char| {
                matches!(c, '[' | ']' | '(' | ')' | ':' | '<' | '>' | ',' | '-')
            }));
        }
    }
    word_status
}

/// A level word as loggers write it: in capitals, spelled out.
fn level_word(word: &str) -> Option<LogStatus> {
    Some(match word {
        "TRACE" | "DEBUG" | "VERBOSE" => LogStatus::Debug,
        "INFO" => LogStatus::Info,
        "NOTICE" => LogStatus::Notice,
        "WARN" | "WARNING" => LogStatus::Warning,
        "ERROR" | "ERR" => LogStatus::Error,
        "CRITICAL" | "CRIT" | "FATAL" => LogStatus::Critical,
        "ALERT" => LogStatus::Alert,
        "EMERG" | "EMERGENCY" | "PANIC" => LogStatus::Emergency,
        _ => return None,
    })
}

/// The key-value pairs of ddtrace's `[dd.service=… dd.trace_id=…]`, without `dd.`.
fn dd_text_fields(text: &str) -> Option<impl Iterator<Item = (&str, &str)>> {
    let start = text.find("[dd.")? + 1;
    let end = start + text[start..].find(']')?;
    Some(
        text[start..end]
            .split_ascii_whitespace()
            .filter_map(|pair| {
                let (key, value) = pair.split_once('=')?;
                Some((key.strip_prefix("dd.")?, value))
            }),
    )
}

/// Sets one `dd.*` correlation field; ids that do not parse, `0` and empty
/// values (ddtrace writes `dd.env=` when unset) are left unset.
fn set_dd(record: &mut LogRecord, key: &str, value: &str) {
    let value = value.trim_matches('"');
    let text = || (!value.is_empty() && value != "None").then(|| value.to_owned());
    match key {
        "trace_id" => record.trace_id = trace_id(value),
        "span_id" => record.span_id = value.parse().ok().filter(|&id| id != 0),
        "service" => record.service = text(),
        "env" => record.env = text(),
        "version" => record.version = text(),
        _ => {}
    }
}

/// A trace id as ddtrace writes it in logs: 32 hex digits, or decimal.
pub fn trace_id(value: &str) -> Option<u128> {
    let id = if value.len() == 32 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        u128::from_str_radix(value, 16).ok()
    } else {
        value.parse::<u128>().ok()
    };
    id.filter(|&id| id != 0)
}

/// The largest char boundary of `text` at or below `at`.
fn floor_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}
