//! OTLP log records → the sidecar's log records.
//!
//! `/v1/logs`: [`records`] turns a request into [`OtlpLog`]s (the fields a
//! log record needs, with the trace correlation the Datadog Agent reads) and
//! [`to_telemetry`] into the pipeline's log records (`Telemetry::Logs`),
//! which every sink that takes logs forwards.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;

use super::common::{id128, id64, tags_of, text, Service};
use crate::telemetry::{LogRecord, LogStatus, Telemetry};

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

/// The request's records as log records (issue 16): message, time, the
/// status from the severity (OpenTelemetry's number, else its text), the
/// trace and span ids for correlation, the service, and the tags.
pub fn to_telemetry(request: &ExportLogsServiceRequest) -> Option<Telemetry> {
    let logs: Vec<LogRecord> = records(request).into_iter().map(log_record).collect();
    (!logs.is_empty()).then_some(Telemetry::Logs(logs))
}

fn log_record(log: OtlpLog) -> LogRecord {
    let millis = i64::try_from(log.time_unix_nano / 1_000_000).unwrap_or(i64::MAX);
    let mut record = LogRecord::new(millis, log.message);
    record.status = status(log.severity_number, &log.severity_text);
    record.trace_id = log
        .trace_id
        .map(|(high, low)| (u128::from(high) << 64) | u128::from(low));
    record.span_id = log.span_id;
    record.source = Some("otlp".to_owned());
    record.service = log
        .tags
        .iter()
        .find_map(|t| t.strip_prefix("service:"))
        .map(str::to_owned);
    record.tags = log.tags;
    record
}

/// OpenTelemetry's severity number (1-24 in six ranges) as a status; the text when the number is unset.
fn status(number: i32, text: &str) -> LogStatus {
    match number {
        1..=8 => LogStatus::Debug,
        9..=12 => LogStatus::Info,
        13..=16 => LogStatus::Warning,
        17..=20 => LogStatus::Error,
        21..=24 => LogStatus::Critical,
        _ => LogStatus::from_level(text).unwrap_or(LogStatus::Info),
    }
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
        let Some(Telemetry::Logs(records)) = to_telemetry(&request) else {
            panic!("no log records")
        };
        assert_eq!(records[0].status, LogStatus::Error);
        assert_eq!(
            records[0].trace_id,
            Some(0x5b8e_fff7_9803_8103_d269_b633_813f_c60c)
        );
        assert_eq!(records[0].service.as_deref(), Some("shop"));
        assert_eq!(records[0].timestamp_ms, 1_700_000_000_000);
        assert_eq!(records[1].status, LogStatus::Info);
    }
}
