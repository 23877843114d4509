//! The `ObservabilityConfig` custom resource (`dynoscope.dev/v1alpha1`).
//!
//! Optional fields stay `Option` here: defaults are applied in one place, the
//! renderer, from the constants in [`crate::defaults`].

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::HumanDuration;
use crate::value::ValueSource;

pub use crate::sink::{SinkFieldError, SinkSpec};

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
    /// The Logplex (and Fir OTLP) drain endpoint run by `dynoscope-sidecar
    /// drain`: Heroku's router, runtime and add-on lines into `heroku.*`
    /// metrics. Default: none (the dynos' sidecars never serve it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<crate::drain::DrainSpec>,
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
    /// Heroku's dyno size, any case (`standard-1x`, `Standard-1X`); its memory is the
    /// dyno's quota under `up`, where R14 and R15 are reported against it. Sizes (MB and
    /// GB binary): `eco`, `basic`, `standard-1x` 512 MB; `standard-2x` 1 GB;
    /// `private-s`, `shield-s` 1 GB; `performance-m`, `private-m`, `shield-m` 2.5 GB;
    /// `performance-l`, `private-l`, `shield-l` 14 GB; `performance-l-ram`,
    /// `private-l-ram`, `shield-l-ram` 30 GB; `performance-xl`, `private-xl`,
    /// `shield-xl` 62 GB; `performance-2xl`, `private-2xl`, `shield-2xl` 126 GB. On
    /// Heroku and in containers the cgroup's limit stays the quota. Default: none (under
    /// `up`, `standard-1x`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
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
