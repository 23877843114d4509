//! The log drain: `spec.drain` as users write it, and what `dynoscope-sidecar drain` runs.
//!
//! Heroku's Logplex posts an app's log lines (router, runtime metrics,
//! add-ons, the app's own output) to an HTTPS drain; Fir's telemetry drains
//! post OTLP. The drain process turns those lines into `heroku.*` metrics,
//! events and log records and sends them through the same sinks as a dyno's
//! sidecar. It runs as its own process (a collector app's `web` dyno on
//! Heroku, a service in compose, a Deployment in Kubernetes), never inside
//! the app's dynos.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::buffer::ByteSize;
use crate::value::ValueSource;

/// The drain's port when neither `--listen`, `$PORT` nor `spec.drain.port` says.
pub const DRAIN_PORT: u16 = 8130;
/// The largest request body accepted: Logplex batches are ~100 KB, OTLP
/// exports a few MB at most.
pub const MAX_BODY_BYTES: u64 = 4 << 20;
/// How many recent `Logplex-Frame-Id`s are remembered to drop retried frames.
pub const DEDUPE_FRAMES: usize = 4096;

/// `spec.drain`: the Logplex (and Fir OTLP) drain endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DrainSpec {
    /// TCP port the drain listens on (all interfaces), unless `--listen`
    /// or `$PORT` (a Heroku web dyno's) says otherwise. Default: 8130.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// HTTP basic auth, as in `heroku drains:add https://user:pass@host/logs`.
    /// Default: none (see `tokens`; with neither, every request is accepted
    /// and the drain warns at start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<DrainBasicAuth>,
    /// Accepted drain tokens, by reference: Logplex's `Logplex-Drain-Token`
    /// header, or `Authorization: Bearer <token>` (a Fir telemetry drain's
    /// `--headers`). Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<ValueSource>,
    /// The largest request body; larger ones get 413. Default: `4Mi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<ByteSize>,
    /// Route patterns that become the `path` tag of `heroku.router.*`, e.g.
    /// `/orders/:id` (`:name` matches one segment, a trailing `*` the rest).
    /// A path matching none gets no `path` tag: raw paths would explode the
    /// number of series. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
    /// Which drained lines also become log records for the sinks that take
    /// logs: `app` (the app's own output and add-on lines), `all` (Heroku's
    /// router and platform lines too), `none`. Default: `app`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<DrainLogs>,
}

/// HTTP basic auth of the drain; the password by reference, never literal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DrainBasicAuth {
    /// The user name of the drain URL. Required.
    pub username: String,
    /// The password: `{fromEnv: DRAIN_PASSWORD}` or a `secretKeyRef`. Required.
    pub password: ValueSource,
}

/// Which drained lines become log records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DrainLogs {
    /// The app's own output (`app[web.1]`) and add-on lines.
    #[default]
    App,
    /// Every line, Heroku's router and platform lines included.
    All,
    /// None: the drain only makes metrics and events.
    None,
}

/// The drain as `dynoscope-sidecar drain` runs it; rendered into every
/// DynoConfig when `spec.drain` is set (only the drain process reads it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DrainConfig {
    /// TCP port on all interfaces, unless `--listen` or `$PORT` says otherwise.
    pub port: u16,
    /// Basic auth, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<DrainBasicAuth>,
    /// Accepted tokens, by reference.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<ValueSource>,
    /// The largest request body in bytes.
    pub max_body_bytes: u64,
    /// Route patterns for the `path` tag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
    /// Which lines become log records.
    pub logs: DrainLogs,
}

impl Default for DrainConfig {
    fn default() -> Self {
        DrainConfig {
            port: DRAIN_PORT,
            basic_auth: None,
            tokens: Vec::new(),
            max_body_bytes: MAX_BODY_BYTES,
            routes: Vec::new(),
            logs: DrainLogs::App,
        }
    }
}

impl DrainSpec {
    /// The drain's config: `None` when `spec.drain` is absent.
    pub fn render(spec: Option<&DrainSpec>) -> Option<DrainConfig> {
        let spec = spec?;
        let defaults = DrainConfig::default();
        Some(DrainConfig {
            port: spec
                .port
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(defaults.port),
            basic_auth: spec.basic_auth.clone(),
            tokens: spec.tokens.clone(),
            max_body_bytes: spec.max_body_bytes.map_or(defaults.max_body_bytes, |b| b.0),
            routes: spec.routes.clone(),
            logs: spec.logs.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_with_defaults_only_when_present() {
        assert_eq!(DrainSpec::render(None), None);
        assert_eq!(
            DrainSpec::render(Some(&DrainSpec::default())),
            Some(DrainConfig::default())
        );
        let spec: DrainSpec = serde_yaml::from_str(
            "{port: 9000, maxBodyBytes: 1Mi, logs: all, routes: ['/orders/:id'], \
             basicAuth: {username: heroku, password: {fromEnv: DRAIN_PASSWORD}}}",
        )
        .unwrap();
        let config = DrainSpec::render(Some(&spec)).unwrap();
        assert_eq!(config.port, 9000);
        assert_eq!(config.max_body_bytes, 1 << 20);
        assert_eq!(config.logs, DrainLogs::All);
        assert_eq!(
            config.basic_auth.unwrap().password,
            ValueSource::FromEnv("DRAIN_PASSWORD".into())
        );
    }
}
