//! The `ObservabilityConfig` custom resource (`dynoscope.dev/v1alpha1`).
//!
//! Optional fields stay `Option` here: defaults are applied in one place, the
//! renderer, from the constants in [`crate::defaults`].

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::buffer::BufferSpec;
use crate::console::{ConsoleSinkSpec, StdoutMetrics};
use crate::duration::HumanDuration;
use crate::value::ValueSource;

/// What to observe in an app's dynos, and where to send it.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "dynoscope.dev",
    version = "v1alpha1",
    kind = "ObservabilityConfig",
    plural = "observabilityconfigs",
    shortname = "obs",
    namespaced,
    status = "ObservabilityConfigStatus",
    printcolumn = r#"{"name":"App","type":"string","jsonPath":".spec.app"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Dynos","type":"integer","jsonPath":".status.dynoCount"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObservabilityConfigSpec {
    /// The app's name, used in hostnames and the `appname:` tag.
    /// Default: the `HEROKU_APP_NAME` environment variable, else `metadata.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// Unified service tagging: the `service:` tag and `DD_SERVICE`. Default: the app name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Unified service tagging: the `env:` tag and `DD_ENV`. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// Unified service tagging: the `version:` tag and `DD_VERSION`, literal or
    /// `{fromEnv: HEROKU_RELEASE_VERSION}`. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<ValueSource>,
    /// Extra tags on every metric and span, `key:value` or `value`. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Hostname reported for each dyno: `dyno` gives `<app>.<dyno>` (as the
    /// Datadog buildpack's `DD_DYNO_HOST`), anything else is used literally. Default: `dyno`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Process types and how many dynos of each run, as in `heroku ps:scale`.
    /// Default: the Procfile's process types, one `web` dyno and no others.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub formation: BTreeMap<String, ProcessSpec>,
    /// Grace period between SIGTERM and SIGKILL when a dyno stops. Default: `30s` (Heroku's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period: Option<HumanDuration>,
    /// The sidecar's loopback admin endpoint (`/status`). Default: port 8127.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminSpec>,
    /// The trace receiver (Datadog agent API). Default: enabled on port 8126.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apm: Option<ApmSpec>,
    /// The DogStatsD receiver. Default: enabled on UDP port 8125.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dogstatsd: Option<DogStatsdSpec>,
    /// The OTLP receiver (OpenTelemetry SDKs). Default: disabled; when
    /// enabled, OTLP/HTTP on port 4318.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp: Option<crate::otlp::OtlpSpec>,
    /// The dyno memory sampler (cgroup + process tree). Default: enabled, every 20s, log lines on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_metrics: Option<ProcessMetricsSpec>,
    /// Checks of the app's backing services; each runs on exactly one dyno. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub integrations: Vec<IntegrationSpec>,
    /// A check configuration directory in the Datadog Agent's layout, as the
    /// Datadog buildpack reads it (`datadog/conf.d`), so an app migrates
    /// without rewriting its checks. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf_d: Option<ConfDSpec>,
    /// The app's stdout and stderr as log records. Default: off (passed through only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<crate::logs::LogsSpec>,
    /// Where telemetry goes. Default: one `stdout` sink.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sinks: Vec<SinkSpec>,
    /// Per-process-type changes, e.g. `run: {enabled: false}` for one-off dynos. Default: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overrides: BTreeMap<String, OverrideSpec>,
}

/// One process type of the formation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcessSpec {
    /// How many dynos of this type run. Default: 1 for `web`, 0 for other types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<i64>,
    /// The command the dyno runs. Default: this type's line of the Procfile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

/// A Datadog Agent `conf.d` directory whose `postgres`, `redisdb` and `mcache`
/// instances run as integration checks, read by the sidecar at run time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfDSpec {
    /// The directory, relative to the app's root (the dyno's working
    /// directory), holding `<check>.yaml` or `<check>.d/*.yaml`. Required.
    pub path: String,
    /// The dyno that runs its checks. Default: the first dyno with
    /// observability enabled, as for `integrations`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dyno: Option<String>,
}

/// The sidecar's admin endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdminSpec {
    /// Loopback port serving `/status`; 0 turns it off. Default: 8127.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
}

/// The trace receiver.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApmSpec {
    /// Receive traces. Default: true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// TCP port of the trace receiver. Default: 8126.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// Also listen on this unix socket, e.g. `/var/run/datadog/apm.socket`. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
    /// Forward chunks whose sampling priority is <= 0 (they always count in stats). Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_rejected: Option<bool>,
}

/// The DogStatsD receiver.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DogStatsdSpec {
    /// Receive DogStatsD. Default: true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// UDP port. Default: 8125.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// Also listen on this unix datagram socket, e.g. `/var/run/datadog/dsd.socket`. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
    /// Percentiles emitted for histograms and timers, each in (0, 1). Default: `[0.95]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram_percentiles: Option<Vec<f64>>,
    /// Aggregates emitted for histograms and timers (`max`, `min`, `median`,
    /// `avg`, `sum`, `count`). Default: `[max, median, avg, count]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram_aggregates: Option<Vec<String>>,
    /// Rename metrics by regular expression and turn captures into tags. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mappings: Vec<MappingSpec>,
}

/// A DogStatsD name mapping, as the Agent's `dogstatsd_mapper_profiles`.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MappingSpec {
    /// A regular expression matched against the whole metric name.
    #[serde(rename = "match")]
    pub pattern: String,
    /// The new metric name; `$1`… refer to captures.
    pub name: String,
    /// Tags to add; values may refer to captures (`$1`). Default: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// The memory sampler.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcessMetricsSpec {
    /// Sample memory. Default: true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Time between samples. Default: `20s` (as Heroku's log-runtime-metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<HumanDuration>,
    /// Print Heroku's log-runtime-metrics lines (and R14 lines) to stdout. Default: true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_lines: Option<bool>,
}

/// The kind of backing service a check talks to.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum IntegrationType {
    /// PostgreSQL, from a `postgres://` URL.
    Postgres,
    /// Redis, from a `redis://` or `rediss://` URL.
    Redis,
    /// Memcached, from a `host:port,host:port` list and optional SASL credentials.
    Memcached,
}

/// A check of a backing service. Credentials are always names of environment
/// variables, read by the sidecar at run time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IntegrationSpec {
    /// `postgres`, `redis` or `memcached`.
    #[serde(rename = "type")]
    pub type_: IntegrationType,
    /// postgres, redis: the environment variable holding the URL.
    /// Default: `DATABASE_URL` (postgres), `REDIS_URL` (redis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_from: Option<String>,
    /// memcached: the environment variable holding `host:port,host:port`.
    /// Default: `MEMCACHEDCLOUD_SERVERS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servers_from: Option<String>,
    /// memcached: the environment variable holding the SASL username. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_from: Option<String>,
    /// memcached: the environment variable holding the SASL password. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_from: Option<String>,
    /// postgres: also report the largest tables' sizes and scans. Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relations: Option<bool>,
    /// postgres, redis: verify the server's TLS certificate. Default: false
    /// (Heroku Postgres and Heroku Redis use self-signed certificates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_verify: Option<bool>,
    /// Time between runs. Default: `15s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<HumanDuration>,
    /// Time one run may take. Default: `5s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    /// The dyno that runs this check, e.g. `worker.1`. Default: the first dyno of
    /// the first process type (`web` first, then alphabetical).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dyno: Option<String>,
}

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

/// Changes for one process type.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OverrideSpec {
    /// `false` runs only the app: no receivers, sampler, checks or sinks. Default: true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Extra tags for this process type. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Fields of `apm` to change. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apm: Option<ApmSpec>,
    /// Fields of `dogstatsd` to change. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dogstatsd: Option<DogStatsdSpec>,
    /// Fields of `processMetrics` to change. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_metrics: Option<ProcessMetricsSpec>,
    /// Fields of `logs` to change. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<crate::logs::LogsSpec>,
    /// Grace period for this process type. Default: the spec's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period: Option<HumanDuration>,
}

/// What the operator last did with the resource.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObservabilityConfigStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `InvalidSpec`, `Degraded`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Every rendered dyno and the hash of its config.
    #[serde(default)]
    pub dynos: Vec<DynoStatus>,
    /// How many dynos have a config (for `kubectl get`'s Dynos column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dyno_count: Option<i64>,
}

/// A condition in the Kubernetes style.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `InvalidSpec` or `Degraded`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// One CamelCase word a program can match on.
    pub reason: String,
    /// What happened and what to do, for a person.
    pub message: String,
    /// When `status` last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

/// One rendered dyno.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DynoStatus {
    /// The dyno, e.g. `web.1`.
    pub name: String,
    /// Hash of its rendered DynoConfig.
    pub config_hash: String,
    /// The integration checks assigned to it.
    #[serde(default)]
    pub integrations: Vec<String>,
}

impl IntegrationType {
    /// The type's name as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            IntegrationType::Postgres => "postgres",
            IntegrationType::Redis => "redis",
            IntegrationType::Memcached => "memcached",
        }
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
