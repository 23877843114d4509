//! Sinks: where the pipeline writes telemetry.
//!
//! - [`stdout`]: Heroku l2met log lines (`sample#`, `count#`, `measure#`), the default.
//! - [`jsonl`]: every point, span, event and service check as one JSON object a
//!   line; its `write` only queues too: a thread of its own appends the bounded
//!   queue to the file and rotates the file by size.
//! - [`datadog`], [`prometheus`], [`otlp`]: network sinks; their `write` only
//!   encodes into a bounded buffer that [`delivery`]'s task sends, batched,
//!   compressed and retried, so a slow backend never holds up the pipeline.

pub mod datadog;
pub mod delivery;
pub mod jsonl;
pub mod otlp;
pub mod prometheus;
pub mod stdout;

use dynoscope_crds::observability::SinkSpec;

use crate::pipeline::PipelineConfig;
use crate::telemetry::{Telemetry, TracerTelemetry};

/// A destination the pipeline writes batches to, from its own task.
pub trait Sink: Send + std::fmt::Debug {
    /// Writes one batch; the items are already tagged.
    fn write(&mut self, batch: &[Telemetry]) -> Result<(), SinkError>;

    /// Pushes out anything buffered (before a reconfiguration and at shutdown).
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Queues a tracer's own telemetry for its intake; returns whether this
    /// sink took it. Only the Datadog sink does: the others ignore it.
    fn forward_tracer_telemetry(&mut self, _request: &TracerTelemetry) -> bool {
        false
    }
}

/// Why a sink could not write.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A file or stream failed.
    #[error("sink {sink}: {source}")]
    Io {
        /// Which sink, e.g. `jsonl /tmp/telemetry.jsonl`.
        sink: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Builds the sinks of `config`; a sink that cannot start is logged and left out.
pub fn build(config: &PipelineConfig) -> Vec<Box<dyn Sink>> {
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    for spec in &config.sinks {
        match spec {
            SinkSpec::Stdout {} => sinks.push(Box::new(stdout::StdoutSink::new(&config.dyno))),
            SinkSpec::Jsonl {
                path,
                max_bytes,
                max_files,
                buffer_bytes,
            } => {
                let options = jsonl::JsonlOptions::from_spec(*max_bytes, *max_files, *buffer_bytes);
                match jsonl::JsonlSink::open(path.as_ref(), &config.hostname, options) {
                    Ok(sink) => sinks.push(Box::new(sink)),
                    Err(err) => {
                        tracing::error!("{err}; this sink stays off until the config changes")
                    }
                }
            }
            network => match build_network(network, config, |k| std::env::var(k).ok()) {
                Ok(sink) => sinks.push(sink),
                Err(err) => tracing::error!("{err}; this sink stays off until the config changes"),
            },
        }
    }
    sinks
}

/// Builds a datadog, prometheus or otlp sink; references are resolved with `env`.
pub fn build_network(
    spec: &SinkSpec,
    config: &PipelineConfig,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Box<dyn Sink>, String> {
    let delivery = delivery::DeliveryConfig::default();
    match spec {
        SinkSpec::Datadog {
            site,
            api_key,
            endpoint,
            buffer_bytes,
        } => {
            let site = site.as_deref().unwrap_or(datadog::DEFAULT_SITE);
            let api_key_source = api_key.describe();
            let Some(key) = api_key.resolve(&env).filter(|k| !k.is_empty()) else {
                return Err(format!(
                    "sink datadog {}: the API key ({api_key_source}) is not set",
                    endpoint.as_deref().unwrap_or(site)
                ));
            };
            let options = datadog::DatadogOptions {
                site: site.to_owned(),
                endpoint: endpoint.clone(),
                api_key: key,
                api_key_source,
                hostname: config.hostname.clone(),
                env: tag_value(&config.tags, "env").unwrap_or_default(),
            };
            let delivery = delivery::DeliveryConfig {
                buffer_bytes: buffer_bytes
                    .and_then(|b| u64::try_from(b).ok())
                    .filter(|&b| b > 0)
                    .unwrap_or(delivery::DEFAULT_BUFFER_BYTES),
                ..delivery
            };
            Ok(Box::new(datadog::DatadogSink::start(&options, delivery)?))
        }
        SinkSpec::Prometheus {
            listen,
            remote_write,
        } => Ok(Box::new(prometheus::PrometheusSink::start(
            listen.as_deref().unwrap_or(prometheus::DEFAULT_LISTEN),
            remote_write.as_deref(),
            delivery,
        )?)),
        SinkSpec::Otlp { endpoint, headers } => {
            let mut resolved = std::collections::BTreeMap::new();
            for (name, value) in headers {
                let Some(v) = value.resolve(&env) else {
                    return Err(format!(
                        "sink otlp {endpoint}: header {name} ({}) is not set",
                        value.describe()
                    ));
                };
                resolved.insert(name.clone(), v);
            }
            Ok(Box::new(otlp::OtlpSink::start(
                endpoint,
                &resolved,
                &config.hostname,
                &config.tags,
                delivery,
            )?))
        }
        SinkSpec::Stdout {} | SinkSpec::Jsonl { .. } => {
            Err(format!("sink {}: not a network sink", spec.kind()))
        }
    }
}

/// The value of the first `key:` tag.
fn tag_value(tags: &[String], key: &str) -> Option<String> {
    tags.iter()
        .find_map(|t| t.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
        .map(str::to_owned)
}
