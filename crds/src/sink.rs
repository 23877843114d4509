//! A destination for telemetry in the resource: [`SinkSpec`], read through
//! one flat schema so a field of another sink type is refused by name.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::buffer::BufferSpec;
use crate::console::{ConsoleSinkSpec, StdoutMetrics};
use crate::value::ValueSource;

/// A destination for telemetry.
///
/// Read through [`SinkSchema`] (see its [`TryFrom`]), so a field of another
/// sink type is refused with a message saying whose field it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SinkSpec {
    /// Datadog's intake (metrics, sketches, traces, events, service checks).
    Datadog {
        /// Datadog site. Default: `datadoghq.com`.
        #[serde(skip_serializing_if = "Option::is_none")]
        site: Option<String>,
        /// The API key: `{fromEnv: DD_API_KEY}` or a `secretKeyRef`, never a literal.
        #[serde(rename = "apiKey")]
        api_key: ValueSource,
        /// Send here instead of the site's hosts (a proxy, or a test). Default: none.
        #[serde(skip_serializing_if = "Option::is_none")]
        endpoint: Option<String>,
        /// Buffer size in bytes before the oldest data is dropped, at least 65536.
        /// Default: 8388608 (8 MiB).
        #[serde(rename = "bufferBytes", skip_serializing_if = "Option::is_none")]
        buffer_bytes: Option<i64>,
        /// The buffer: memory budget, shares per kind, optional disk buffer.
        #[serde(skip_serializing_if = "Option::is_none")]
        buffer: Option<BufferSpec>,
    },
    /// Prometheus: a scrape endpoint and optional remote write.
    Prometheus {
        /// Address serving `/metrics`. Default: `127.0.0.1:9464`.
        #[serde(skip_serializing_if = "Option::is_none")]
        listen: Option<String>,
        /// Remote-write URL, e.g. `http://prom:9090/api/v1/write`. Default: none.
        #[serde(rename = "remoteWrite", skip_serializing_if = "Option::is_none")]
        remote_write: Option<String>,
    },
    /// OTLP/HTTP protobuf (`/v1/metrics`, `/v1/traces`).
    Otlp {
        /// Base URL of the collector, e.g. `http://collector:4318`.
        endpoint: String,
        /// Extra HTTP headers, each value literal or a reference. Default: none.
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        headers: BTreeMap<String, ValueSource>,
        /// The buffer: memory budget, shares per kind, optional disk buffer.
        #[serde(skip_serializing_if = "Option::is_none")]
        buffer: Option<BufferSpec>,
    },
    /// Heroku-style log lines (`count#`, `measure#`, `sample#`) on stdout.
    Stdout {
        /// `all` prints every point every 10 s; `none` prints none. Default:
        /// `all`, but `none` under `up`, whose console shows them.
        #[serde(skip_serializing_if = "Option::is_none")]
        metrics: Option<StdoutMetrics>,
    },
    /// Every point, span, event and service check as one JSON object a line.
    Jsonl {
        /// File to append to.
        path: String,
        /// Size in bytes the file may reach: a batch that would take it past
        /// this goes to a fresh file, and the full one becomes `path.1`.
        /// Default: 104857600 (100 MiB).
        #[serde(rename = "maxBytes", skip_serializing_if = "Option::is_none")]
        max_bytes: Option<i64>,
        /// Rotated files kept, `path.1` (newest) … `path.N`; older ones are
        /// removed. 1 to 1000. Default: 5.
        #[serde(rename = "maxFiles", skip_serializing_if = "Option::is_none")]
        max_files: Option<i64>,
        /// Memory in bytes for lines not yet written, at least 65536; when it
        /// is full the oldest batches are dropped (counted in `/status`).
        /// Default: 8388608 (8 MiB).
        #[serde(rename = "bufferBytes", skip_serializing_if = "Option::is_none")]
        buffer_bytes: Option<i64>,
    },
    /// The local console (`up`'s, or the compose operator's): the formation's
    /// memory, APM stats, traces and checks, best effort (see [`crate::console`]).
    Console(ConsoleSinkSpec),
}

// The schema of `SinkSpec` as Kubernetes needs it: one flat object (a
// structural schema cannot hold an internally tagged union). Serde reads this
// shape too; `TryFrom` then enforces which field belongs to which type, and
// validation checks the values.
/// A destination for telemetry: `type` picks the sink; each other field names
/// the types it belongs to.
#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SinkSchema {
    /// `datadog`, `prometheus`, `otlp`, `stdout`, `jsonl` or `console`.
    #[serde(rename = "type")]
    type_: SinkType,
    /// datadog: Datadog site. Default: `datadoghq.com`.
    site: Option<String>,
    /// datadog: the API key, `{fromEnv: DD_API_KEY}` or a `secretKeyRef`, never a literal.
    api_key: Option<ValueSource>,
    /// datadog: send here instead of the site's hosts; otlp: the collector's
    /// base URL; console: the console's base URL.
    endpoint: Option<String>,
    /// datadog, jsonl: buffer in bytes before the oldest data is dropped, at
    /// least 65536. Default: 8388608 (8 MiB).
    buffer_bytes: Option<i64>,
    /// datadog, otlp: the buffer (memory budget, shares per kind, optional disk buffer).
    buffer: Option<BufferSpec>,
    /// prometheus: address serving `/metrics`. Default: `127.0.0.1:9464`.
    listen: Option<String>,
    /// prometheus: remote-write URL. Default: none.
    remote_write: Option<String>,
    /// otlp: extra HTTP headers. Default: none.
    headers: Option<BTreeMap<String, ValueSource>>,
    /// jsonl: the file to append to.
    path: Option<String>,
    /// jsonl: size in bytes the file may reach before it is rotated to
    /// `path.1`. Default: 104857600 (100 MiB).
    max_bytes: Option<i64>,
    /// jsonl: rotated files kept (`path.1` … `path.N`), 1 to 1000. Default: 5.
    max_files: Option<i64>,
    /// stdout: `all` prints every metric point every 10 s, `none` none.
    /// Default: `all`; `none` under `up`, whose console shows them.
    metrics: Option<StdoutMetrics>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum SinkType {
    Datadog,
    Prometheus,
    Otlp,
    Stdout,
    Jsonl,
    Console,
}

impl SinkType {
    const ALL: [SinkType; 6] = [
        SinkType::Datadog,
        SinkType::Prometheus,
        SinkType::Otlp,
        SinkType::Stdout,
        SinkType::Jsonl,
        SinkType::Console,
    ];

    fn as_str(self) -> &'static str {
        match self {
            SinkType::Datadog => "datadog",
            SinkType::Prometheus => "prometheus",
            SinkType::Otlp => "otlp",
            SinkType::Stdout => "stdout",
            SinkType::Jsonl => "jsonl",
            SinkType::Console => "console",
        }
    }

    /// The fields this type takes besides `type`, as manifests spell them.
    fn fields(self) -> &'static [&'static str] {
        match self {
            SinkType::Datadog => &["site", "apiKey", "endpoint", "bufferBytes", "buffer"],
            SinkType::Prometheus => &["listen", "remoteWrite"],
            SinkType::Otlp => &["endpoint", "headers", "buffer"],
            SinkType::Stdout => &["metrics"],
            SinkType::Jsonl => &["path", "maxBytes", "maxFiles", "bufferBytes"],
            SinkType::Console => &["endpoint"],
        }
    }
}

/// Why a sink's fields do not make a [`SinkSpec`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkFieldError {
    /// A field of another sink type.
    #[error("`{field}` is not a field of {kind} sinks (only of {owners}): remove it, or set `type` to the sink it is meant for")]
    Foreign {
        /// The field, e.g. `maxBytes`.
        field: &'static str,
        /// The sink's type.
        kind: &'static str,
        /// The types that have the field, e.g. `jsonl`.
        owners: String,
    },
    /// A required field is absent.
    #[error("missing field `{field}`: a {kind} sink needs it, e.g. {field}: {example}")]
    Missing {
        /// The field, e.g. `path`.
        field: &'static str,
        /// The sink's type.
        kind: &'static str,
        /// A value to show.
        example: &'static str,
    },
}

impl TryFrom<SinkSchema> for SinkSpec {
    type Error = SinkFieldError;

    fn try_from(f: SinkSchema) -> Result<Self, SinkFieldError> {
        let kind = f.type_;
        let set = [
            ("site", f.site.is_some()),
            ("apiKey", f.api_key.is_some()),
            ("endpoint", f.endpoint.is_some()),
            ("bufferBytes", f.buffer_bytes.is_some()),
            ("buffer", f.buffer.is_some()),
            ("listen", f.listen.is_some()),
            ("remoteWrite", f.remote_write.is_some()),
            ("headers", f.headers.is_some()),
            ("path", f.path.is_some()),
            ("maxBytes", f.max_bytes.is_some()),
            ("maxFiles", f.max_files.is_some()),
            ("metrics", f.metrics.is_some()),
        ];
        if let Some(&(field, _)) = set
            .iter()
            .find(|(field, is_set)| *is_set && !kind.fields().contains(field))
        {
            let owners: Vec<&str> = SinkType::ALL
                .into_iter()
                .filter(|t| t.fields().contains(&field))
                .map(SinkType::as_str)
                .collect();
            return Err(SinkFieldError::Foreign {
                field,
                kind: kind.as_str(),
                owners: owners.join(", "),
            });
        }
        let missing = |field, example| SinkFieldError::Missing {
            field,
            kind: kind.as_str(),
            example,
        };
        Ok(match kind {
            SinkType::Datadog => SinkSpec::Datadog {
                site: f.site,
                api_key: f
                    .api_key
                    .ok_or_else(|| missing("apiKey", "{fromEnv: DD_API_KEY}"))?,
                endpoint: f.endpoint,
                buffer_bytes: f.buffer_bytes,
                buffer: f.buffer,
            },
            SinkType::Prometheus => SinkSpec::Prometheus {
                listen: f.listen,
                remote_write: f.remote_write,
            },
            SinkType::Otlp => SinkSpec::Otlp {
                endpoint: f
                    .endpoint
                    .ok_or_else(|| missing("endpoint", "http://collector:4318"))?,
                headers: f.headers.unwrap_or_default(),
                buffer: f.buffer,
            },
            SinkType::Stdout => SinkSpec::Stdout { metrics: f.metrics },
            SinkType::Jsonl => SinkSpec::Jsonl {
                path: f
                    .path
                    .ok_or_else(|| missing("path", "/tmp/telemetry.jsonl"))?,
                max_bytes: f.max_bytes,
                max_files: f.max_files,
                buffer_bytes: f.buffer_bytes,
            },
            SinkType::Console => SinkSpec::Console(ConsoleSinkSpec {
                endpoint: f
                    .endpoint
                    .ok_or_else(|| missing("endpoint", "http://127.0.0.1:5050"))?,
            }),
        })
    }
}

impl<'de> Deserialize<'de> for SinkSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fields = SinkSchema::deserialize(deserializer)?;
        SinkSpec::try_from(fields).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for SinkSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SinkSpec".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        SinkSchema::json_schema(generator)
    }
}

impl SinkSpec {
    /// The sink's type name.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkSpec::Datadog { .. } => "datadog",
            SinkSpec::Prometheus { .. } => "prometheus",
            SinkSpec::Otlp { .. } => "otlp",
            SinkSpec::Stdout { .. } => "stdout",
            SinkSpec::Jsonl { .. } => "jsonl",
            SinkSpec::Console(_) => "console",
        }
    }
}
