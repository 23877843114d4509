//! The jsonl sink: one JSON object a line, for tests and for people reading what flows.
//!
//! Each line has a `kind` (`point`, `span`, `event`, `service_check`), the
//! item's fields as the telemetry types serialise them, and `host`:
//! `{"kind":"point","name":…,"type":…,"value":…,"timestamp":…,"interval":…,"tags":[…],"host":…}`.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Sink, SinkError};
use crate::telemetry::{Span, Telemetry};

/// Appends JSON lines to a file.
#[derive(Debug)]
pub struct JsonlSink {
    /// The file, for error messages.
    path: PathBuf,
    /// `host` of items that carry no host name of their own.
    hostname: String,
    out: BufWriter<File>,
}

#[derive(Serialize)]
struct Line<'a, T: Serialize> {
    kind: &'static str,
    #[serde(flatten)]
    item: &'a T,
    host: &'a str,
}

#[derive(Serialize)]
struct SpanLine<'a> {
    kind: &'static str,
    #[serde(flatten)]
    span: &'a Span,
    priority: Option<i32>,
    host: &'a str,
}

impl JsonlSink {
    /// Opens (creating, appending to) `path`.
    pub fn open(path: &Path, hostname: &str) -> Result<Self, SinkError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| SinkError::Io {
                sink: format!("jsonl {}", path.display()),
                source,
            })?;
        Ok(JsonlSink {
            path: path.to_owned(),
            hostname: hostname.to_owned(),
            out: BufWriter::new(file),
        })
    }

    fn error(&self, source: std::io::Error) -> SinkError {
        SinkError::Io {
            sink: format!("jsonl {}", self.path.display()),
            source,
        }
    }
}

/// The JSON lines of one item, each without its newline.
pub fn lines(item: &Telemetry, hostname: &str) -> Vec<String> {
    let encode = |value: Result<String, serde_json::Error>| value.unwrap_or_default();
    match item {
        Telemetry::Points(points) => points
            .iter()
            .map(|p| {
                encode(serde_json::to_string(&Line {
                    kind: "point",
                    item: p,
                    host: hostname,
                }))
            })
            .collect(),
        Telemetry::Traces(chunks) => chunks
            .iter()
            .flat_map(|chunk| chunk.spans.iter().map(move |span| (chunk.priority, span)))
            .map(|(priority, span)| {
                encode(serde_json::to_string(&SpanLine {
                    kind: "span",
                    span,
                    priority,
                    host: hostname,
                }))
            })
            .collect(),
        Telemetry::Event(event) => {
            let host = event.hostname.as_deref().unwrap_or(hostname);
            vec![encode(serde_json::to_string(&Line {
                kind: "event",
                item: event,
                host,
            }))]
        }
        Telemetry::ServiceCheck(check) => {
            let host = check.hostname.as_deref().unwrap_or(hostname);
            vec![encode(serde_json::to_string(&Line {
                kind: "service_check",
                item: check,
                host,
            }))]
        }
    }
}

impl Sink for JsonlSink {
    fn write(&mut self, batch: &[Telemetry]) -> Result<(), SinkError> {
        for item in batch {
            for line in lines(item, &self.hostname) {
                if let Err(err) = writeln!(self.out, "{line}") {
                    return Err(self.error(err));
                }
            }
        }
        // Readers (people, tests) see a batch as soon as it is written.
        self.flush()
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(|err| self.error(err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{MetricType, Point, ServiceCheck, TraceChunk};

    #[test]
    fn a_point_line_has_every_field_in_order() {
        let point = Point {
            name: "app.memory.rss".into(),
            metric_type: MetricType::Gauge,
            value: 1024.0,
            timestamp: 1_700_000_000,
            interval: 0,
            tags: vec!["dyno:web.1".into()],
        };
        let got = lines(&Telemetry::Points(vec![point]), "shop.web.1");
        assert_eq!(
            got,
            [
                r#"{"kind":"point","name":"app.memory.rss","type":"gauge","value":1024.0,"timestamp":1700000000,"interval":0,"tags":["dyno:web.1"],"host":"shop.web.1"}"#
            ]
        );
    }

    #[test]
    fn spans_and_checks_carry_their_kind_and_host() {
        let chunk = TraceChunk {
            priority: Some(1),
            spans: vec![Span {
                name: "web.request".into(),
                ..Span::default()
            }],
        };
        let span_line = lines(&Telemetry::Traces(vec![chunk]), "h").concat();
        assert!(
            span_line.starts_with(r#"{"kind":"span","service":"","name":"web.request""#),
            "{span_line}"
        );
        assert!(
            span_line.ends_with(r#""priority":1,"host":"h"}"#),
            "{span_line}"
        );
        let check = ServiceCheck {
            name: "postgres.can_connect".into(),
            status: 0,
            timestamp: 1,
            hostname: Some("db-host".into()),
            message: None,
            tags: vec![],
        };
        let check_line = lines(&Telemetry::ServiceCheck(check), "h").concat();
        assert!(
            check_line.starts_with(r#"{"kind":"service_check","name":"postgres.can_connect""#),
            "{check_line}"
        );
        assert!(check_line.ends_with(r#""host":"db-host"}"#), "{check_line}");
    }
}
