//! OTLP log records → the sidecar's log records.
//!
//! The log record type of the telemetry (`Telemetry::Logs`, issue 16) is
//! being built beside this receiver. Until it lands, `/v1/logs` is decoded
//! and its records counted, and [`records`] turns a request into
//! [`OtlpLog`]s — the fields a log record needs, with the trace correlation
//! the Datadog Agent reads — but nothing reaches the pipeline:
//! [`to_telemetry`] is the one function to connect.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;

use super::common::{id128, id64, tags_of, text, Service};
use crate::telemetry::Telemetry;

/// One OTLP log record, flattened with its resource's service.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OtlpLog {
    /// Unix nanoseconds: the record's time, else when the SDK observed it.
    pub time_unix_nano: u64,
    /// `severity_text`, e.g. `ERROR`; empty when the SDK sent none.
    pub severity_text: String,
    /// `severity_number`, 1-24 (OpenTelemetry's scale); 0 unset.
    pub severity_number: i32,
    /// The body as text (a structured body as JSON).
    pub message: String,
    /// The trace id as (high, low) 64 bits, when the record was emitted in a span.
    pub trace_id: Option<(u64, u64)>,
    /// The span id, when the record was emitted in a span.
    pub span_id: Option<u64>,
    /// `service:`, `env:`, `version:` of the resource and the record's attributes as `key:value`.
    pub tags: Vec<String>,
}

/// Every record of `request`.
pub fn records(request: &ExportLogsServiceRequest) -> Vec<OtlpLog> {
    let mut out = Vec::new();
    for resource_logs in &request.resource_logs {
        let service = Service::of(resource_logs.resource.as_ref()).tags();
        for scope_logs in &resource_logs.scope_logs {
            for record in &scope_logs.log_records {
                let mut tags: Vec<String> = service
                    .iter()
                    .cloned()
                    .chain(tags_of(&record.attributes))
                    .collect();
                tags.sort_unstable();
                tags.dedup();
                out.push(OtlpLog {
                    time_unix_nano: if record.time_unix_nano != 0 {
                        record.time_unix_nano
                    } else {
                        record.observed_time_unix_nano
                    },
                    severity_text: record.severity_text.clone(),
                    severity_number: record.severity_number,
                    message: record
                        .body
                        .as_ref()
                        .and_then(|b| b.value.as_ref())
                        .map(text)
                        .unwrap_or_default(),
                    trace_id: id128(&record.trace_id).filter(|id| *id != (0, 0)),
                    span_id: id64(&record.span_id).filter(|id| *id != 0),
                    tags,
                });
            }
        }
    }
    out
}

/// Records in `request`, for counting without converting.
pub fn count(request: &ExportLogsServiceRequest) -> u64 {
    request
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len() as u64)
        .sum()
}

/// ISSUE 16 — connect here: the telemetry the pipeline gets for `request`.
///
/// `None` until `Telemetry::Logs(Vec<LogRecord>)` exists; then build one
/// `LogRecord` per [`records`] entry (message, time, status from the
/// severity, the trace and span ids for correlation, the tags) and return
/// `Some(Telemetry::Logs(..))`. The receiver already sends whatever this
/// returns, counts the records, and refuses (429) when the queue is full.
pub fn to_telemetry(request: &ExportLogsServiceRequest) -> Option<Telemetry> {
    let _ = request;
    None
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;

    use super::*;
    use crate::receivers::otlp::decode::{decode, Encoding};

    #[test]
    fn records_keep_their_trace_ids_body_and_service() {
        let json = r#"{"resourceLogs":[{
            "resource":{"attributes":[{"key":"service.name","value":{"stringValue":"shop"}}]},
            "scopeLogs":[{"logRecords":[
              {"timeUnixNano":"1700000000000000000","severityText":"ERROR","severityNumber":17,
               "body":{"stringValue":"payment failed"},
               "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
               "attributes":[{"key":"order","value":{"intValue":"42"}}]},
              {"observedTimeUnixNano":"1700000000000000001","body":{"kvlistValue":{"values":[
               {"key":"a","value":{"boolValue":true}}]}}}]}]}]}"#;
        let request: ExportLogsServiceRequest =
            decode(json.as_bytes(), Encoding::Json).unwrap_or_default();
        assert_eq!(count(&request), 2);
        let logs = records(&request);
        assert_eq!(logs.len(), 2);
        assert_eq!(logs[0].message, "payment failed");
        assert_eq!(logs[0].severity_text, "ERROR");
        assert_eq!(
            logs[0].trace_id,
            Some((0x5b8e_fff7_9803_8103, 0xd269_b633_813f_c60c))
        );
        assert_eq!(logs[0].span_id, Some(0xeee1_9b7e_c3c1_b174));
        assert_eq!(logs[0].tags, ["order:42", "service:shop"]);
        assert_eq!(logs[1].message, r#"{"a":true}"#);
        assert_eq!(logs[1].time_unix_nano, 1_700_000_000_000_000_001);
        assert_eq!(logs[1].trace_id, None);
    }
}
