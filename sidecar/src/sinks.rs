//! Sinks: where the pipeline writes telemetry.
//!
//! - [`stdout`]: Heroku l2met log lines (`sample#`, `count#`, `measure#`), the default.
//! - [`jsonl`]: every point, span, event and service check as one JSON object a
//!   line; its `write` only queues too: a thread of its own appends the bounded
//!   queue to the file and rotates the file by size.
//! - [`console`]: the local console's feed (`up`, compose): a lossy,
//!   bounded queue posted by a task of its own; never waits, never retries.
//! - [`datadog`], [`prometheus`], [`otlp`]: network sinks; their `write` only
//!   encodes into a bounded buffer that [`delivery`]'s task sends, batched,
//!   compressed and retried, so a slow backend never holds up the pipeline.
//!
//! A distribution (DogStatsD `d`) reaches every sink as the Agent's sketch
//! ([`Telemetry::Sketches`]) and each gives it the form its backend has:
//!
//! | sink | a distribution becomes |
//! | --- | --- |
//! | datadog | a `Dogsketch` on `/api/beta/sketches`, as the Agent sends it (merged across dynos in Datadog) |
//! | otlp | a delta ExponentialHistogram, scale 6 |
//! | prometheus | a summary: quantiles 0.5, 0.9, 0.95, 0.99 of the last bucket, `_sum` and `_count` running totals |
//! | jsonl | one `"kind":"sketch"` line: count, min, max, sum, avg, quantiles, the bins |
//! | stdout | `count#name.count` and `sample#name.p50/.p95/.p99` on one line |
//!
//! A reload rebuilds a sink only when its [`OwnConfig`] changed: its spec and
//! the parts of the pipeline's config it embeds. A rebuilt sink with the same
//! [`destination`] takes over its predecessor's [`Backlog`] (see
//! `pipeline::fanout`, which runs each sink as a task of its own).

pub mod console;
pub mod datadog;
pub mod delivery;
pub mod jsonl;
pub mod otlp;
pub mod prometheus;
pub mod stdout;

use dynoscope_crds::console::StdoutMetrics;
use dynoscope_crds::observability::SinkSpec;

use crate::config::PipelineConfig;
use crate::stats::SinkRegistry;
use crate::telemetry::{Telemetry, TracerTelemetry};

pub use delivery::Backlog;

/// A destination the pipeline writes batches to, from the sink's own task.
///
/// `write` and `forward_tracer_telemetry` must not wait on I/O: they encode
/// and queue. `flush` may block (up to the sink's flush wait); it runs on a
/// blocking thread, never on the pipeline's task.
pub trait Sink: Send + std::fmt::Debug {
    /// Writes one batch; the items are already tagged.
    fn write(&mut self, batch: &[Telemetry]) -> Result<(), SinkError>;

    /// Pushes out anything buffered: at shutdown, when the sink is removed,
    /// and before a successor without a hand-over writes to the same destination.
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Whether this sink forwards tracers' own telemetry (only the Datadog sink does).
    fn takes_tracer_telemetry(&self) -> bool {
        false
    }

    /// Queues a tracer's own telemetry for its intake; returns whether this
    /// sink took it. Only the Datadog sink does: the others ignore it.
    fn forward_tracer_telemetry(&mut self, _request: &TracerTelemetry) -> bool {
        false
    }

    /// Takes what is buffered and not yet sent, for a successor with the same
    /// destination; `None` when this sink cannot hand over (it is flushed instead).
    fn take_backlog(&mut self) -> Option<Backlog> {
        None
    }

    /// Queues a predecessor's backlog ahead of anything written since.
    fn accept_backlog(&mut self, backlog: Backlog) {
        // Unreached in practice: a predecessor with a backlog has the same kind.
        tracing::warn!(
            "a sink that cannot take over a buffer was given its predecessor's; {} entries dropped",
            backlog.len()
        );
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

/// Why a sink could not be built; the sink stays off until the config changes.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A referenced secret (environment variable, secret key) has no value.
    #[error("sink {sink}: {field} ({source_desc}) is not set; set it in the dyno's environment or point `{field}` at one that is")]
    MissingSecret {
        /// Which sink, e.g. `datadog datadoghq.com`.
        sink: String,
        /// The field, e.g. `apiKey` or `headers.authorization`.
        field: String,
        /// Where the value should come from, e.g. `environment variable DD_API_KEY`.
        source_desc: String,
    },
    /// A field's value cannot be used.
    #[error("sink {sink}: {field} {value:?} {problem}")]
    InvalidField {
        /// Which sink.
        sink: String,
        /// The field, e.g. `site` or `endpoint`.
        field: &'static str,
        /// The value as given (never a secret's value).
        value: String,
        /// What is wrong and what to write instead.
        problem: String,
    },
    /// A secret's value is not usable in an HTTP header (its value is not quoted).
    #[error("sink {sink}: the value of {field} ({source_desc}) is not a valid HTTP header value; check it for newlines or non-ASCII characters")]
    InvalidSecret {
        /// Which sink.
        sink: String,
        /// The field, e.g. `apiKey`.
        field: String,
        /// Where the value came from.
        source_desc: String,
    },
    /// The prometheus scrape endpoint could not listen.
    #[error("sink {sink}: cannot listen on {listen} for /metrics: {source}; set `listen` to a free address")]
    Listen {
        /// Which sink.
        sink: String,
        /// The address.
        listen: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// The delivery every network sink shares (its thread, the HTTP client
    /// and its TLS) could not be set up.
    #[error("sink {sink}: {source}")]
    Delivery {
        /// Which sink.
        sink: String,
        /// What failed.
        source: delivery::SetupError,
    },
    /// The sink was built outside a tokio runtime (a bug).
    #[error(
        "sink {sink}: built outside the async runtime ({source}); this is a bug, please report it"
    )]
    Runtime {
        /// Which sink.
        sink: String,
        /// What tokio said.
        source: tokio::runtime::TryCurrentError,
    },
    /// The jsonl file could not be opened.
    #[error(transparent)]
    Open(#[from] SinkError),
    /// [`build_network`] was given a sink that is not a network sink.
    #[error("sink {sink}: not a network sink")]
    NotNetwork {
        /// Which sink.
        sink: String,
    },
}

/// A sink's own configuration: what a reload compares to decide whether the
/// sink is rebuilt. Its spec, plus the parts of the pipeline's config the
/// sink embeds in what it sends; the tag set is applied by the pipeline
/// before the sinks, so only a sink that embeds tags depends on them.
#[derive(Clone, Debug, PartialEq)]
pub struct OwnConfig {
    /// The sink's spec as configured.
    pub spec: SinkSpec,
    /// `dyno` (stdout's `source=`), when the sink uses it.
    pub dyno: Option<String>,
    /// The host name of items without one (datadog, jsonl, otlp).
    pub hostname: Option<String>,
    /// The `env:` tag's value (datadog's payload env and `DD-Agent-Env`).
    pub env: Option<String>,
    /// The whole tag set (otlp's resource attributes).
    pub tags: Option<Vec<String>>,
}

/// The own configuration of the sink `spec` in `config`.
pub fn own_config(spec: &SinkSpec, config: &PipelineConfig) -> OwnConfig {
    let mut own = OwnConfig {
        spec: spec.clone(),
        dyno: None,
        hostname: None,
        env: None,
        tags: None,
    };
    match spec {
        SinkSpec::Stdout { .. } => own.dyno = Some(config.dyno.clone()),
        SinkSpec::Jsonl { .. } => own.hostname = Some(config.hostname.clone()),
        SinkSpec::Datadog { .. } => {
            own.hostname = Some(config.hostname.clone());
            own.env = Some(tag_value(&config.tags, "env").unwrap_or_default());
        }
        SinkSpec::Otlp { .. } => {
            own.hostname = Some(config.hostname.clone());
            own.tags = Some(config.tags.clone());
        }
        SinkSpec::Prometheus { .. } | SinkSpec::Console(_) => {}
    }
    own
}

/// Where a sink sends: its kind and the address that receives its data —
/// datadog: `endpoint`, else `site`; otlp: `endpoint`; prometheus: `listen`
/// and `remoteWrite`; jsonl: `path`; stdout: stdout. A rebuilt sink with the
/// same destination as a retired one takes over what that one still buffered
/// (credentials, buffer sizes, host name and tags may differ: the data was
/// accepted for this destination and is delivered there).
pub fn destination(spec: &SinkSpec) -> String {
    match spec {
        SinkSpec::Datadog { site, endpoint, .. } => format!(
            "datadog {}",
            endpoint
                .as_deref()
                .or(site.as_deref())
                .unwrap_or(datadog::DEFAULT_SITE)
        ),
        SinkSpec::Otlp { endpoint, .. } => format!("otlp {}", endpoint.trim_end_matches('/')),
        SinkSpec::Prometheus {
            listen,
            remote_write,
        } => format!(
            "prometheus {} {}",
            listen.as_deref().unwrap_or(prometheus::DEFAULT_LISTEN),
            remote_write.as_deref().unwrap_or("-")
        ),
        SinkSpec::Jsonl { path, .. } => format!("jsonl {path}"),
        SinkSpec::Stdout { .. } => "stdout".to_owned(),
        SinkSpec::Console(console) => format!("console {}", console.endpoint),
    }
}

/// Builds the sink `spec` of `config`, its stats registered in `registry`.
pub fn build(
    spec: &SinkSpec,
    config: &PipelineConfig,
    registry: &SinkRegistry,
) -> Result<Box<dyn Sink>, BuildError> {
    match spec {
        SinkSpec::Stdout { metrics } => Ok(Box::new(stdout::StdoutSink::new(
            &config.dyno,
            *metrics != Some(StdoutMetrics::None),
        ))),
        SinkSpec::Jsonl {
            path,
            max_bytes,
            max_files,
            buffer_bytes,
        } => {
            let options = jsonl::JsonlOptions::from_spec(*max_bytes, *max_files, *buffer_bytes);
            let sink = jsonl::JsonlSink::open(path.as_ref(), &config.hostname, options, registry)?;
            Ok(Box::new(sink))
        }
        SinkSpec::Console(console) => Ok(Box::new(console::ConsoleSink::start(
            &console.endpoint,
            &config.dyno,
            registry,
        )?)),
        network => build_network(network, config, |k| std::env::var(k).ok(), registry),
    }
}

/// Builds a datadog, prometheus or otlp sink; references are resolved with `env`.
pub fn build_network(
    spec: &SinkSpec,
    config: &PipelineConfig,
    env: impl Fn(&str) -> Option<String>,
    registry: &SinkRegistry,
) -> Result<Box<dyn Sink>, BuildError> {
    let delivery = delivery::DeliveryConfig::default();
    match spec {
        SinkSpec::Datadog {
            site,
            api_key,
            endpoint,
            buffer_bytes,
            buffer,
        } => {
            let site = site.as_deref().unwrap_or(datadog::DEFAULT_SITE);
            let api_key_source = api_key.describe();
            let Some(key) = api_key.resolve(&env).filter(|k| !k.is_empty()) else {
                return Err(BuildError::MissingSecret {
                    sink: destination(spec),
                    field: "apiKey".to_owned(),
                    source_desc: api_key_source,
                });
            };
            let options = datadog::DatadogOptions {
                site: site.to_owned(),
                endpoint: endpoint.clone(),
                api_key: key,
                api_key_source,
                hostname: config.hostname.clone(),
                env: tag_value(&config.tags, "env").unwrap_or_default(),
            };
            let delivery = delivery.with_buffer(*buffer_bytes, buffer.as_ref());
            Ok(Box::new(datadog::DatadogSink::start(
                &options, delivery, registry,
            )?))
        }
        SinkSpec::Prometheus {
            listen,
            remote_write,
        } => Ok(Box::new(prometheus::PrometheusSink::start(
            listen.as_deref().unwrap_or(prometheus::DEFAULT_LISTEN),
            remote_write.as_deref(),
            delivery,
            registry,
        )?)),
        SinkSpec::Otlp {
            endpoint,
            headers,
            buffer,
        } => {
            let delivery = delivery.with_buffer(None, buffer.as_ref());
            let mut resolved = std::collections::BTreeMap::new();
            for (name, value) in headers {
                let Some(v) = value.resolve(&env) else {
                    return Err(BuildError::MissingSecret {
                        sink: destination(spec),
                        field: format!("headers.{name}"),
                        source_desc: value.describe(),
                    });
                };
                resolved.insert(name.clone(), v);
            }
            Ok(Box::new(otlp::OtlpSink::start(
                endpoint,
                &resolved,
                &config.hostname,
                &config.tags,
                delivery,
                registry,
            )?))
        }
        SinkSpec::Stdout { .. } | SinkSpec::Jsonl { .. } | SinkSpec::Console(_) => {
            Err(BuildError::NotNetwork {
                sink: destination(spec),
            })
        }
    }
}

/// The value of the first `key:` tag.
fn tag_value(tags: &[String], key: &str) -> Option<String> {
    tags.iter()
        .find_map(|t| t.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
        .map(str::to_owned)
}
