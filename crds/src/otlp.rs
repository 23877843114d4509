//! The OTLP receiver: `spec.otlp` as users write it, and what one dyno runs.
//!
//! Apps instrumented with an OpenTelemetry SDK send OTLP/HTTP to the sidecar
//! as they would to a collector (`OTEL_EXPORTER_OTLP_ENDPOINT`, set for the
//! app by the sidecar). Off unless enabled: like the Datadog Agent's OTLP
//! ingest, it takes ports (4318) an app may already use for a collector of its own.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// OTLP/HTTP port, as the OpenTelemetry Collector's.
pub const OTLP_HTTP_PORT: u16 = 4318;
/// OTLP/gRPC port, as the OpenTelemetry Collector's.
pub const OTLP_GRPC_PORT: u16 = 4317;

/// `spec.otlp`: the OTLP receiver.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OtlpSpec {
    /// Receive OTLP (traces, metrics, logs) from OpenTelemetry SDKs on
    /// 127.0.0.1, and point the app's `OTEL_EXPORTER_OTLP_ENDPOINT` there. Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// TCP port of OTLP/HTTP (`/v1/traces`, `/v1/metrics`, `/v1/logs`). Default: 4318.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// TCP port of OTLP/gRPC. Not served yet: the sidecar speaks OTLP/HTTP
    /// only, and a value here is refused with a warning. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_port: Option<i64>,
}

/// The OTLP receiver of one dyno; present in a DynoConfig only when enabled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OtlpConfig {
    /// TCP port of OTLP/HTTP on 127.0.0.1.
    pub port: u16,
}

impl OtlpSpec {
    /// The dyno's receiver: `None` when disabled.
    pub fn render(spec: Option<&OtlpSpec>) -> Option<OtlpConfig> {
        let spec = spec?;
        if !spec.enabled.unwrap_or(false) {
            return None;
        }
        let port = spec
            .port
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(OTLP_HTTP_PORT);
        Some(OtlpConfig { port })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_only_when_enabled_with_the_default_port() {
        let on = |port| OtlpSpec {
            enabled: Some(true),
            port,
            grpc_port: None,
        };
        assert_eq!(OtlpSpec::render(None), None);
        assert_eq!(OtlpSpec::render(Some(&OtlpSpec::default())), None);
        assert_eq!(
            OtlpSpec::render(Some(&on(None))),
            Some(OtlpConfig { port: 4318 })
        );
        assert_eq!(
            OtlpSpec::render(Some(&on(Some(14318)))),
            Some(OtlpConfig { port: 14318 })
        );
    }
}
