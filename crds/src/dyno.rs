//! `DynoConfig`: everything one sidecar needs, fully resolved — the operator → sidecar contract.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::duration::HumanDuration;
use crate::observability::{IntegrationType, MappingSpec, SinkSpec};
use crate::value::ValueSource;

/// The version of this format; a sidecar refuses configs of another version.
pub const SCHEMA_VERSION: u32 = 1;

/// The rendered configuration of one dyno.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DynoConfig {
    /// Format version, [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// `<namespace>/<name>` of the ObservabilityConfig this was rendered from.
    pub source: String,
    /// The app's name.
    pub app: String,
    /// The dyno, e.g. `web.1`.
    pub dyno: String,
    /// The dyno's process type, e.g. `web`.
    pub dyno_type: String,
    /// `false`: the sidecar runs only the app (an override such as `run: {enabled: false}`).
    pub enabled: bool,
    /// The command of this process type, when known (Procfile or formation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The host name reported with every point and span.
    pub hostname: String,
    /// `DD_SERVICE` and the `service:` tag.
    pub service: String,
    /// `DD_ENV` and the `env:` tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// `DD_VERSION` and the `version:` tag; a reference is resolved by the sidecar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<ValueSource>,
    /// Every tag, sorted and de-duplicated (`version:` only when it is a literal).
    pub tags: Vec<String>,
    /// Time between SIGTERM and SIGKILL.
    pub grace_period: HumanDuration,
    /// Loopback port of `/status`; 0 is off.
    pub admin_port: u16,
    /// The trace receiver.
    pub apm: ApmConfig,
    /// The DogStatsD receiver.
    pub dogstatsd: DogStatsdConfig,
    /// The OTLP receiver; absent when off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp: Option<crate::otlp::OtlpConfig>,
    /// The drain endpoint, for `dynoscope-sidecar drain`; absent without `spec.drain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<crate::drain::DrainConfig>,
    /// The memory sampler.
    pub process_metrics: ProcessMetricsConfig,
    /// The dyno's size and its memory quota; absent when none is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<SizeConfig>,
    /// The integration checks this dyno (and no other) runs.
    pub integrations: Vec<IntegrationConfig>,
    /// A Datadog Agent `conf.d` directory whose checks this dyno (and no
    /// other) runs, relative to its working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf_d: Option<String>,
    /// The app's output as log records; absent when logs are off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<crate::logs::LogsConfig>,
    /// Where telemetry goes, with defaults filled in.
    pub sinks: Vec<SinkSpec>,
    /// Hash of everything above; changes exactly when the content does.
    pub config_hash: String,
}

/// The trace receiver of one dyno.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApmConfig {
    /// Receive traces.
    pub enabled: bool,
    /// TCP port.
    pub port: u16,
    /// Optional unix socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
    /// Forward chunks with sampling priority <= 0.
    pub keep_rejected: bool,
}

/// The DogStatsD receiver of one dyno.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DogStatsdConfig {
    /// Receive DogStatsD.
    pub enabled: bool,
    /// UDP port.
    pub port: u16,
    /// Optional unix datagram socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
    /// Percentiles of histograms and timers.
    pub histogram_percentiles: Vec<f64>,
    /// Aggregates of histograms and timers.
    pub histogram_aggregates: Vec<String>,
    /// Name mappings, applied in order; the first match wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mappings: Vec<MappingSpec>,
}

/// The memory sampler of one dyno.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcessMetricsConfig {
    /// Sample memory.
    pub enabled: bool,
    /// Time between samples.
    pub interval: HumanDuration,
    /// Print Heroku's log-runtime-metrics lines.
    pub log_lines: bool,
    /// Where the dyno's memory is read: `cgroup` (Heroku, containers) or
    /// `processTree` (`up`, where dynos share the host's cgroup).
    #[serde(default, skip_serializing_if = "MemoryFrom::is_cgroup")]
    pub memory_from: MemoryFrom,
}

/// Where a dyno's memory figures come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum MemoryFrom {
    /// The dyno's memory cgroup (its limit is the quota); without one, the process tree.
    #[default]
    Cgroup,
    /// The sidecar and the app's process tree, against [`DynoConfig::size`]'s quota:
    /// dynos that share one host (`up`) also share its cgroup, which says nothing of one dyno.
    ProcessTree,
}

impl MemoryFrom {
    /// Whether this is the default, [`MemoryFrom::Cgroup`].
    pub fn is_cgroup(&self) -> bool {
        *self == MemoryFrom::Cgroup
    }
}

/// A dyno's size (`formation.<type>.size` or `up --size`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SizeConfig {
    /// Heroku's name, lower case, e.g. `standard-1x`.
    pub name: String,
    /// The size's memory: R14 above it, R15 (the dyno is killed) far above it.
    pub memory_quota_bytes: u64,
    /// The memory at which Heroku logs R15 and kills the dyno (2 × the quota; 1.2 × for
    /// `-l-ram`, `-xl` and `-2xl` sizes).
    pub memory_kill_bytes: u64,
}

impl SizeConfig {
    /// The config of a size of the table.
    pub fn of(size: &crate::size::DynoSize) -> Self {
        SizeConfig {
            name: size.name.to_owned(),
            memory_quota_bytes: size.memory_bytes,
            memory_kill_bytes: size.r15_bytes(),
        }
    }
}

/// One integration check, with every default resolved. Credentials stay names of variables.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IntegrationConfig {
    /// A stable name: the type, plus `:<VARIABLE>` when it is not the default variable.
    pub name: String,
    /// The service type.
    #[serde(rename = "type")]
    pub type_: IntegrationType,
    /// postgres, redis: the variable holding the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_from: Option<String>,
    /// memcached: the variable holding the server list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servers_from: Option<String>,
    /// memcached: the variable holding the SASL username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_from: Option<String>,
    /// memcached: the variable holding the SASL password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_from: Option<String>,
    /// postgres: report the largest tables.
    pub relations: bool,
    /// Verify the server's TLS certificate.
    pub tls_verify: bool,
    /// Time between runs.
    pub interval: HumanDuration,
    /// Time one run may take.
    pub timeout: HumanDuration,
    /// Tags added to this check's points and service checks (from a `conf.d` instance).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl IntegrationConfig {
    /// A check called `name` of `type_` with every default: no credentials named yet,
    /// no relations, no TLS verification, the default interval and timeout, no tags.
    pub fn new(name: impl Into<String>, type_: IntegrationType) -> Self {
        IntegrationConfig {
            name: name.into(),
            type_,
            url_from: None,
            servers_from: None,
            username_from: None,
            password_from: None,
            relations: false,
            tls_verify: false,
            interval: crate::defaults::CHECK_INTERVAL,
            timeout: crate::defaults::CHECK_TIMEOUT,
            tags: Vec::new(),
        }
    }
}

/// Why a DynoConfig could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DynoConfigError {
    /// Not YAML, or a field of the wrong shape.
    #[error("{path}: field `{field}`: {message}")]
    Invalid {
        /// Where the config came from.
        path: String,
        /// The field, e.g. `apm.port`.
        field: String,
        /// The parser's message.
        message: String,
    },
    /// Written by a newer or older operator.
    #[error("{path}: schemaVersion {found} is not supported (this sidecar reads {SCHEMA_VERSION}); upgrade the sidecar and the operator together")]
    Version {
        /// Where the config came from.
        path: String,
        /// The version in the file.
        found: u32,
    },
    /// The hash does not match the content (edited by hand, or truncated).
    #[error("{path}: configHash {found} does not match the content ({computed}); re-render it with dynoscope-operator")]
    Hash {
        /// Where the config came from.
        path: String,
        /// The hash in the file.
        found: String,
        /// The hash of the content.
        computed: String,
    },
}

impl DynoConfig {
    /// The hash of the content, ignoring `config_hash` itself: 16 hex digits of SHA-256.
    pub fn compute_hash(&self) -> String {
        let mut unhashed = self.clone();
        unhashed.config_hash.clear();
        // serde_json of a struct is deterministic: fields in declaration
        // order, maps are BTreeMaps, lists already sorted by the renderer.
        let bytes = serde_json::to_vec(&unhashed).unwrap_or_default();
        let digest = Sha256::digest(&bytes);
        hex::encode(&digest[..8])
    }

    /// Fills in `config_hash`.
    pub fn seal(mut self) -> Self {
        self.config_hash = self.compute_hash();
        self
    }

    /// The YAML written to disk or into a ConfigMap.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_default()
    }

    /// Reads a config, checking its version and hash. `path` only labels errors.
    pub fn from_yaml(text: &str, path: &str) -> Result<Self, DynoConfigError> {
        let de = serde_yaml::Deserializer::from_str(text);
        let config: DynoConfig =
            serde_path_to_error::deserialize(de).map_err(|err| DynoConfigError::Invalid {
                path: path.to_owned(),
                field: display_path(err.path()),
                message: err.inner().to_string(),
            })?;
        if config.schema_version != SCHEMA_VERSION {
            return Err(DynoConfigError::Version {
                path: path.to_owned(),
                found: config.schema_version,
            });
        }
        let computed = config.compute_hash();
        if computed != config.config_hash {
            return Err(DynoConfigError::Hash {
                path: path.to_owned(),
                found: config.config_hash,
                computed,
            });
        }
        Ok(config)
    }

    /// The JSON schema of this format, generated from the type.
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(DynoConfig)).unwrap_or_default()
    }
}

/// `a.b[2].c` from a serde path; `.` for the root.
pub(crate) fn display_path(path: &serde_path_to_error::Path) -> String {
    let text = path.to_string();
    if text.is_empty() {
        ".".to_owned()
    } else {
        text
    }
}
