//! `spec.otlp`: ports in range, not shared with another TCP listener of the
//! dyno, and no gRPC port (not served yet).

use super::Problems;
use crate::defaults;
use crate::observability::{ObservabilityConfigSpec, SinkSpec};
use crate::otlp::OTLP_HTTP_PORT;

/// Adds the problems of `spec.otlp` to `p`.
pub(super) fn check(p: &mut Problems, spec: &ObservabilityConfigSpec) {
    let Some(otlp) = &spec.otlp else {
        return;
    };
    for (field, port) in [
        ("spec.otlp.port", otlp.port),
        ("spec.otlp.grpcPort", otlp.grpc_port),
    ] {
        if let Some(port) = port.filter(|port| !(1..=65535).contains(port)) {
            p.error(field, format!("{port} is not a port: use 1-65535"));
        }
    }
    if otlp.grpc_port.is_some() {
        p.warning(
            "spec.otlp.grpcPort",
            "OTLP/gRPC is not served yet: set the SDK's exporter to http/protobuf \
             (OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf, the sidecar sets it) and remove grpcPort",
        );
    }
    if !otlp.enabled.unwrap_or(false) {
        return;
    }
    let port = otlp.port.unwrap_or(i64::from(OTLP_HTTP_PORT));
    for (field, other) in tcp_listeners(spec) {
        if other == port {
            p.error(
                "spec.otlp.port",
                format!("port {port} is already used by {field}: give each listener its own port"),
            );
        }
    }
}

/// The dyno's other TCP listeners: field and port.
fn tcp_listeners(spec: &ObservabilityConfigSpec) -> Vec<(String, i64)> {
    let mut listeners = Vec::new();
    let admin = spec
        .admin
        .as_ref()
        .and_then(|a| a.port)
        .unwrap_or(i64::from(defaults::ADMIN_PORT));
    if admin != 0 {
        listeners.push(("spec.admin.port".to_owned(), admin));
    }
    let apm = spec.apm.as_ref();
    if apm.and_then(|a| a.enabled).unwrap_or(true) {
        let port = apm
            .and_then(|a| a.port)
            .unwrap_or(i64::from(defaults::APM_PORT));
        listeners.push(("spec.apm.port".to_owned(), port));
    }
    for (i, sink) in spec.sinks.iter().enumerate() {
        if let SinkSpec::Prometheus { listen, .. } = sink {
            let listen = listen.as_deref().unwrap_or(defaults::PROMETHEUS_LISTEN);
            if let Some(port) = listen.rsplit_once(':').and_then(|(_, p)| p.parse().ok()) {
                listeners.push((format!("spec.sinks[{i}].listen"), port));
            }
        }
    }
    listeners
}

#[cfg(test)]
mod tests {
    use crate::validate::{problems_under, Severity};

    fn problems(spec: &str) -> Vec<(Severity, String, String)> {
        problems_under(spec, "spec.otlp")
    }

    #[test]
    fn a_port_out_of_range_is_an_error_naming_the_field() {
        let found = problems("otlp: {enabled: true, port: 70000}");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, Severity::Error);
        assert_eq!(found[0].1, "spec.otlp.port");
        assert!(found[0].2.contains("70000 is not a port"), "{found:?}");
    }

    #[test]
    fn a_port_taken_by_the_trace_receiver_is_an_error() {
        let found = problems("apm: {port: 4318}\notlp: {enabled: true}");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].2.contains("spec.apm.port"), "{found:?}");
        // Off, it takes no port.
        assert!(problems("apm: {port: 4318}\notlp: {enabled: false}").is_empty());
    }

    #[test]
    fn a_grpc_port_is_a_warning_until_grpc_is_served() {
        let found = problems("otlp: {enabled: true, grpcPort: 4317}");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, Severity::Warning);
        assert_eq!(found[0].1, "spec.otlp.grpcPort");
    }

    #[test]
    fn the_defaults_are_fine() {
        assert!(problems("otlp: {enabled: true}").is_empty());
        assert!(problems("otlp: {}").is_empty());
    }
}
