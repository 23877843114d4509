//! `spec.sinks`: each sink's fields, secrets by reference, buffers.

use super::{buffer, check_env_name, check_url, console, Problems};
use crate::defaults;
use crate::observability::{ObservabilityConfigSpec, SinkSpec};
use crate::value::ValueSource;

pub(super) fn check_sinks(p: &mut Problems, spec: &ObservabilityConfigSpec) {
    for (i, sink) in spec.sinks.iter().enumerate() {
        let field = format!("spec.sinks[{i}]");
        match sink {
            SinkSpec::Datadog {
                site,
                api_key,
                endpoint,
                buffer_bytes,
                buffer,
            } => {
                check_secret(
                    p,
                    &format!("{field}.apiKey"),
                    api_key,
                    "{fromEnv: DD_API_KEY}",
                );
                if let Some(site) = site {
                    if site.contains("://") || site.contains('/') || site.trim().is_empty() {
                        p.error(format!("{field}.site"), format!("{site:?} is not a Datadog site: write e.g. datadoghq.com or datadoghq.eu (use endpoint for a URL)"));
                    }
                }
                if let Some(endpoint) = endpoint {
                    check_url(p, &format!("{field}.endpoint"), endpoint);
                }
                check_buffer(p, &format!("{field}.bufferBytes"), *buffer_bytes);
                if let Some(buffer) = buffer {
                    buffer::check(p, &field, *buffer_bytes, buffer);
                }
            }
            SinkSpec::Prometheus { remote_write, .. } => {
                if let Some(url) = remote_write {
                    check_url(p, &format!("{field}.remoteWrite"), url);
                }
            }
            SinkSpec::Otlp {
                endpoint,
                headers,
                buffer,
            } => {
                check_url(p, &format!("{field}.endpoint"), endpoint);
                if let Some(buffer) = buffer {
                    buffer::check(p, &field, None, buffer);
                }
                for (name, value) in headers {
                    let sensitive = ["authorization", "api-key", "apikey", "token", "dd-api-key"]
                        .iter()
                        .any(|s| name.to_ascii_lowercase().contains(s));
                    if sensitive {
                        check_secret(
                            p,
                            &format!("{field}.headers.{name}"),
                            value,
                            "{fromEnv: OTLP_TOKEN}",
                        );
                    }
                }
            }
            SinkSpec::Stdout { .. } => {}
            SinkSpec::Console(console) => console::check(p, &field, console),
            SinkSpec::Jsonl {
                path,
                max_bytes,
                max_files,
                buffer_bytes,
            } => {
                if path.trim().is_empty() {
                    p.error(
                        format!("{field}.path"),
                        "is empty: give a file path such as /tmp/telemetry.jsonl",
                    );
                }
                if let Some(bytes) = max_bytes.filter(|&b| b < 1) {
                    p.error(
                        format!("{field}.maxBytes"),
                        format!("is {bytes}: give the size in bytes a file may reach before it is rotated, e.g. 104857600 (100 MiB), or remove it for that default"),
                    );
                }
                let limit = i64::from(defaults::JSONL_MAX_FILES_LIMIT);
                if let Some(files) = max_files.filter(|f| !(1..=limit).contains(f)) {
                    p.error(
                        format!("{field}.maxFiles"),
                        format!("is {files}: keep 1 to {limit} rotated files (path.1 … path.N), or remove it for the default {}", defaults::JSONL_MAX_FILES),
                    );
                }
                check_buffer(p, &format!("{field}.bufferBytes"), *buffer_bytes);
            }
        }
    }
}

fn check_buffer(p: &mut Problems, field: &str, bytes: Option<i64>) {
    if let Some(bytes) = bytes.filter(|&b| b < 64 * 1024) {
        p.error(
            field,
            format!(
                "is {bytes}: must be at least 65536 bytes; remove it for the default {}",
                defaults::SINK_BUFFER_BYTES
            ),
        );
    }
}

pub(super) fn check_secret(p: &mut Problems, field: &str, value: &ValueSource, example: &str) {
    if value.is_literal() {
        p.error(
            field,
            format!("is a literal secret: never write secrets in the manifest; put it in an environment variable or a Kubernetes Secret and reference it, e.g. {example}"),
        );
    } else if let ValueSource::FromEnv(name) = value {
        check_env_name(p, field, name);
    }
}
