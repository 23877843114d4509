//! Where the sidecar's DynoConfig comes from and what it means for the app.
//!
//! A [`ConfigSource`] is a rendered DynoConfig file (`--config`), a manifest the sidecar
//! renders itself for `$DYNO` (`--manifest`, Heroku), or nothing. [`ConfigSource::load`]
//! reads and validates it; [`diff`] names what changed between two configs;
//! [`app_env`] is the unified-service-tagging environment the app starts with.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dynoscope_crds::dyno::DynoConfigError;
use dynoscope_crds::manifest::{self, ManifestError};
use dynoscope_crds::observability::SinkSpec;
use dynoscope_crds::procfile::{Procfile, ProcfileError};
use dynoscope_crds::render::{self, RenderError, RenderInput};
use dynoscope_crds::{defaults, DynoConfig};

/// Where the config comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// No config: the sidecar only runs the app.
    None,
    /// A DynoConfig rendered by the operator.
    File(PathBuf),
    /// An ObservabilityConfig manifest (and the app's Procfile) rendered here for `dyno`.
    Manifest {
        /// The manifest, e.g. `observability.yaml`.
        manifest: PathBuf,
        /// The Procfile, when there is one.
        procfile: Option<PathBuf>,
        /// The dyno to render, from `$DYNO`.
        dyno: String,
    },
}

/// Why no valid config could be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The DynoConfig is invalid.
    #[error(transparent)]
    Dyno(#[from] DynoConfigError),
    /// The manifest is invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The Procfile is invalid.
    #[error("{path}: {source}")]
    Procfile {
        /// The Procfile.
        path: PathBuf,
        /// What is wrong.
        source: ProcfileError,
    },
    /// The manifest holds no resource, or several.
    #[error("{path}: holds {count} ObservabilityConfig resources; the sidecar renders exactly one: keep one in this file")]
    Count {
        /// The manifest.
        path: PathBuf,
        /// How many it holds.
        count: usize,
    },
    /// The resource does not render.
    #[error("{path}: {source}")]
    Render {
        /// The manifest.
        path: PathBuf,
        /// Every problem found.
        source: RenderError,
    },
}

/// What one input file held when it was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileRead {
    /// Its text.
    Text(String),
    /// It could not be read: kept as a state, so that a file that stays missing
    /// is reported once, and one that comes back is noticed.
    Failed {
        /// The kind of I/O error (`NotFound`, `PermissionDenied`…).
        kind: std::io::ErrorKind,
        /// The OS error's text.
        message: String,
    },
}

/// What the inputs of a config held when read; equal contents mean nothing to reload.
pub type Contents = Vec<FileRead>;

impl ConfigSource {
    /// For logs and `/status`.
    pub fn describe(&self) -> String {
        match self {
            ConfigSource::None => "none".to_owned(),
            ConfigSource::File(path) => format!("file {}", path.display()),
            ConfigSource::Manifest {
                manifest,
                procfile,
                dyno,
            } => {
                let procfile = procfile
                    .as_ref()
                    .map(|p| format!(" + {}", p.display()))
                    .unwrap_or_default();
                format!("manifest {}{procfile} for dyno {dyno}", manifest.display())
            }
        }
    }

    /// The files whose changes mean a reload.
    pub fn files(&self) -> Vec<&Path> {
        match self {
            ConfigSource::None => Vec::new(),
            ConfigSource::File(path) => vec![path],
            ConfigSource::Manifest {
                manifest, procfile, ..
            } => std::iter::once(manifest.as_path())
                .chain(procfile.as_deref())
                .collect(),
        }
    }

    /// Reads the inputs; errors are kept as contents too (a file that stays missing is one state).
    pub fn read(&self) -> Contents {
        self.files()
            .into_iter()
            .map(|path| match std::fs::read_to_string(path) {
                Ok(text) => FileRead::Text(text),
                Err(err) => FileRead::Failed {
                    kind: err.kind(),
                    message: err.to_string(),
                },
            })
            .collect()
    }

    /// Parses and validates what [`ConfigSource::read`] returned. `None` for [`ConfigSource::None`].
    pub fn parse(&self, contents: &Contents) -> Option<Result<DynoConfig, ConfigError>> {
        let files = self.files();
        let text = |index: usize| -> Result<&str, ConfigError> {
            let path = files.get(index).copied().unwrap_or(Path::new("?"));
            match contents.get(index) {
                Some(FileRead::Text(text)) => Ok(text),
                Some(FileRead::Failed { kind, message }) => Err(ConfigError::Read {
                    path: path.to_owned(),
                    source: std::io::Error::new(*kind, message.clone()),
                }),
                None => Err(ConfigError::Read {
                    path: path.to_owned(),
                    source: std::io::ErrorKind::NotFound.into(),
                }),
            }
        };
        match self {
            ConfigSource::None => None,
            ConfigSource::File(path) => Some(text(0).and_then(|t| {
                DynoConfig::from_yaml(t, &path.display().to_string()).map_err(ConfigError::from)
            })),
            ConfigSource::Manifest {
                manifest,
                procfile,
                dyno,
            } => Some((|| {
                let procfile =
                    match procfile {
                        Some(path) => Some(Procfile::parse(text(1)?).map_err(|source| {
                            ConfigError::Procfile {
                                path: path.clone(),
                                source,
                            }
                        })?),
                        None => None,
                    };
                render_manifest(manifest, text(0)?, procfile.as_ref(), dyno)
            })()),
        }
    }

    /// Reads and parses.
    pub fn load(&self) -> (Contents, Option<Result<DynoConfig, ConfigError>>) {
        let contents = self.read();
        let parsed = self.parse(&contents);
        (contents, parsed)
    }
}

/// Renders the one resource of a manifest for `dyno`, with the renderer the operator uses.
fn render_manifest(
    path: &Path,
    text: &str,
    procfile: Option<&Procfile>,
    dyno: &str,
) -> Result<DynoConfig, ConfigError> {
    let mut resources = manifest::parse_documents(text, &path.display().to_string())?;
    if resources.len() != 1 {
        return Err(ConfigError::Count {
            path: path.to_owned(),
            count: resources.len(),
        });
    }
    let resource = resources.remove(0);
    let heroku_app_name = std::env::var("HEROKU_APP_NAME").ok();
    let input = RenderInput {
        config: &resource,
        procfile,
        formation: None,
        heroku_app_name: heroku_app_name.as_deref(),
    };
    let (config, warnings) =
        render::render_dyno(&input, dyno).map_err(|source| ConfigError::Render {
            path: path.to_owned(),
            source,
        })?;
    for warning in warnings {
        tracing::warn!("{}: {warning}", path.display());
    }
    Ok(config)
}

/// The sections of the config that differ, by their field names in the file.
pub fn diff(old: Option<&DynoConfig>, new: Option<&DynoConfig>) -> Vec<String> {
    let (Some(old), Some(new)) = (old, new) else {
        return if old.is_some() == new.is_some() {
            Vec::new()
        } else {
            vec!["all".to_owned()]
        };
    };
    let sections: [(&str, bool); 13] = [
        ("enabled", old.enabled != new.enabled),
        ("dyno", old.dyno != new.dyno || old.app != new.app),
        ("hostname", old.hostname != new.hostname),
        (
            "service",
            old.service != new.service || old.env != new.env || old.version != new.version,
        ),
        ("tags", old.tags != new.tags),
        ("gracePeriod", old.grace_period != new.grace_period),
        ("adminPort", old.admin_port != new.admin_port),
        ("apm", old.apm != new.apm),
        ("dogstatsd", old.dogstatsd != new.dogstatsd),
        ("processMetrics", old.process_metrics != new.process_metrics),
        ("integrations", old.integrations != new.integrations),
        ("sinks", old.sinks != new.sinks),
        (
            "command",
            old.command != new.command || old.source != new.source,
        ),
    ];
    sections
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// The grace period: the flag, else the config's, else Heroku's 30 s.
pub fn grace_period(config: Option<&DynoConfig>, flag: Option<Duration>) -> Duration {
    flag.or(config.map(|c| c.grace_period.get()))
        .unwrap_or(defaults::GRACE_PERIOD.get())
}

/// The admin port: the flag, else the config's, else the default; 0 is off.
pub fn admin_port(config: Option<&DynoConfig>, flag: Option<u16>) -> u16 {
    flag.or(config.map(|c| c.admin_port))
        .unwrap_or(defaults::ADMIN_PORT)
}

/// The variables the app starts with so that unmodified Datadog clients find the sidecar and
/// tag consistently; a variable the user already set (`is_set`) is left alone. Empty when
/// observability is off.
pub fn app_env(
    config: Option<&DynoConfig>,
    env: impl Fn(&str) -> Option<String>,
) -> Vec<(&'static str, String)> {
    let Some(config) = config.filter(|c| c.enabled) else {
        return Vec::new();
    };
    let mut vars = vec![("DD_SERVICE", config.service.clone())];
    if let Some(value) = &config.env {
        vars.push(("DD_ENV", value.clone()));
    }
    if let Some(version) = config.version.as_ref().and_then(|v| v.resolve(&env)) {
        vars.push(("DD_VERSION", version));
    }
    // env, service and version travel in their own variables.
    let tags: Vec<&str> = config
        .tags
        .iter()
        .map(String::as_str)
        .filter(|t| {
            !["env:", "service:", "version:"]
                .iter()
                .any(|p| t.starts_with(p))
        })
        .collect();
    if !tags.is_empty() {
        vars.push(("DD_TAGS", tags.join(",")));
    }
    if config.apm.enabled || config.dogstatsd.enabled {
        vars.push(("DD_AGENT_HOST", "127.0.0.1".to_owned()));
    }
    if config.apm.enabled {
        vars.push(("DD_TRACE_AGENT_PORT", config.apm.port.to_string()));
    }
    if config.dogstatsd.enabled {
        vars.push(("DD_DOGSTATSD_PORT", config.dogstatsd.port.to_string()));
    }
    if config.logs.is_some() {
        // ddtrace writes `dd.trace_id` and `dd.span_id` into each log line.
        vars.push(("DD_LOGS_INJECTION", "true".to_owned()));
    }
    vars.retain(|(name, _)| env(name).is_none());
    vars.extend(crate::receivers::otlp::env::app_env(config, &env));
    vars
}

/// What the pipeline needs from the dyno's config; derived with [`PipelineConfig::from_dyno`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PipelineConfig {
    /// The dyno, e.g. `web.1`: the `source=` of Heroku log lines.
    pub dyno: String,
    /// Host name of points and spans that carry none.
    pub hostname: String,
    /// Tags added to every point, event and service check, sorted and de-duplicated.
    pub tags: Vec<String>,
    /// Where telemetry goes; empty means it is dropped after counting.
    pub sinks: Vec<SinkSpec>,
}

impl PipelineConfig {
    /// No tags, no sinks: observability is off.
    pub fn off() -> Self {
        Self::default()
    }

    /// The pipeline's part of a DynoConfig, with a `version:` reference resolved by `env`.
    pub fn from_dyno(config: &DynoConfig, env: impl Fn(&str) -> Option<String>) -> Self {
        if !config.enabled {
            return Self::off();
        }
        let mut tags = config.tags.clone();
        // A literal version is already among the tags; a reference is the sidecar's to resolve.
        if let Some(version) = config
            .version
            .as_ref()
            .filter(|v| !v.is_literal())
            .and_then(|v| v.resolve(&env))
        {
            tags.push(format!("version:{version}"));
            tags.sort_unstable();
            tags.dedup();
        }
        PipelineConfig {
            dyno: config.dyno.clone(),
            hostname: config.hostname.clone(),
            tags,
            sinks: config.sinks.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str =
        "apiVersion: dynoscope.dev/v1alpha1\nkind: ObservabilityConfig\nmetadata: {name: shop}\n\
        spec: {env: production, version: {fromEnv: MY_RELEASE}, tags: ['team:pay']}\n";

    fn rendered(text: &str) -> DynoConfig {
        let mut resources = manifest::parse_documents(text, "m.yaml").unwrap_or_default();
        let resource = resources.remove(0);
        let input = RenderInput {
            config: &resource,
            procfile: None,
            formation: None,
            heroku_app_name: None,
        };
        render::render_dyno(&input, "web.1")
            .map(|(c, _)| c)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn app_env_sets_unified_tagging_unless_the_user_did() {
        let config = rendered(MANIFEST);
        let lookup = |name: &str| match name {
            "MY_RELEASE" => Some("v42".to_owned()),
            "DD_DOGSTATSD_PORT" => Some("9999".to_owned()),
            _ => None,
        };
        let vars = app_env(Some(&config), lookup);
        let get = |name: &str| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("DD_SERVICE"), Some("shop"));
        assert_eq!(get("DD_ENV"), Some("production"));
        assert_eq!(get("DD_VERSION"), Some("v42"));
        assert_eq!(
            get("DD_TAGS"),
            Some("appname:shop,dyno:web.1,dynotype:web,team:pay")
        );
        assert_eq!(get("DD_AGENT_HOST"), Some("127.0.0.1"));
        assert_eq!(get("DD_TRACE_AGENT_PORT"), Some("8126"));
        assert_eq!(get("DD_DOGSTATSD_PORT"), None, "the user's own value wins");
        assert!(app_env(None, lookup).is_empty());
    }

    #[test]
    fn diff_names_the_changed_sections() {
        let old = rendered(MANIFEST);
        let new = rendered(
            &MANIFEST
                .replace("team:pay", "team:ops")
                .replace("env: production", "env: staging"),
        );
        assert_eq!(diff(Some(&old), Some(&new)), ["service", "tags"]);
        assert!(diff(Some(&old), Some(&old)).is_empty());
        assert_eq!(diff(None, Some(&old)), ["all"]);
    }

    #[test]
    fn manifest_source_renders_for_the_dyno_and_reports_bad_files() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let manifest = dir.path().join("observability.yaml");
        let procfile = dir.path().join("Procfile");
        std::fs::write(&manifest, MANIFEST).unwrap_or_default();
        std::fs::write(&procfile, "web: python app.py\nworker: python w.py\n").unwrap_or_default();
        let source = ConfigSource::Manifest {
            manifest: manifest.clone(),
            procfile: Some(procfile.clone()),
            dyno: "worker.1".into(),
        };
        let config = source
            .load()
            .1
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("renders"));
        assert_eq!(config.dyno, "worker.1");
        assert_eq!(config.command.as_deref(), Some("python w.py"));

        std::fs::write(&procfile, "web python\n").unwrap_or_default();
        let err = source
            .load()
            .1
            .and_then(Result::err)
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("Procfile") && err.contains("line 1"), "{err}");

        let missing = ConfigSource::File(dir.path().join("nope.yaml"));
        let err = missing
            .load()
            .1
            .and_then(Result::err)
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with("cannot read ") && err.contains("nope.yaml"),
            "{err}"
        );
    }
}
