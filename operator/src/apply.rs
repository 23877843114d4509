//! `apply` and `delete` against a manifest directory, answering as kubectl does.

use std::path::{Path, PathBuf};

use dynoscope_crds::render::{self, RenderInput};
use dynoscope_crds::validate::{Problem, Severity};
use dynoscope_crds::ObservabilityConfig;

use crate::fs::write_atomic;
use crate::source::{self, ManifestFile};

/// The resource's name as kubectl prints it.
pub const RESOURCE: &str = "observabilityconfig.dynoscope.dev";

/// Why `apply` or `delete` refused.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The file does not parse.
    #[error("{0}")]
    Manifest(#[from] dynoscope_crds::manifest::ManifestError),
    /// A resource is invalid; nothing was written.
    #[error("{}\nnothing was applied", .0.join("\n"))]
    Invalid(Vec<String>),
    /// The resource lives in a file with others.
    #[error("{key} is defined in {path} together with other resources; edit that file instead")]
    Shared {
        /// `<namespace>/<name>`.
        key: String,
        /// The file.
        path: PathBuf,
    },
    /// `delete` of something that is not there.
    #[error("Error from server (NotFound): observabilityconfigs.dynoscope.dev \"{0}\" not found")]
    NotFound(String),
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The directory could not be read.
    #[error(transparent)]
    Source(#[from] source::SourceError),
}

/// What happened to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// It did not exist.
    Created,
    /// Its spec or labels changed.
    Configured,
    /// Nothing changed; nothing was written.
    Unchanged,
    /// It was removed.
    Deleted,
}

impl std::fmt::Display for Applied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Applied::Created => "created",
            Applied::Configured => "configured",
            Applied::Unchanged => "unchanged",
            Applied::Deleted => "deleted",
        })
    }
}

/// Validates every resource of `text` (all must pass), then writes each into `dir`.
pub fn apply(
    text: &str,
    label: &str,
    dir: &Path,
    procfile_dir: &Path,
) -> Result<Vec<(String, Applied)>, ApplyError> {
    let configs = dynoscope_crds::manifest::parse_documents(text, label)?;
    let procfile = source::read_procfile(None, procfile_dir)?;
    let mut refused = Vec::new();
    for config in &configs {
        let input = RenderInput {
            config,
            procfile: procfile.as_ref(),
            formation: None,
            heroku_app_name: None,
        };
        if let Err(err) = render::render(&input) {
            refused.push(format!(
                "{label}: {}:\n  {}",
                source::key(config),
                list(&err.problems)
            ));
        }
    }
    if !refused.is_empty() {
        return Err(ApplyError::Invalid(refused));
    }
    let existing = source::read_dir(dir)?;
    configs
        .into_iter()
        .map(|config| apply_one(config, dir, &existing))
        .collect()
}

fn list(problems: &[Problem]) -> String {
    let mut sorted: Vec<&Problem> = problems.iter().collect();
    sorted.sort_by_key(|p| p.severity != Severity::Error);
    sorted
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n  ")
}

fn apply_one(
    mut config: ObservabilityConfig,
    dir: &Path,
    existing: &[ManifestFile],
) -> Result<(String, Applied), ApplyError> {
    let key = source::key(&config);
    let name = config.metadata.name.clone().unwrap_or_default();
    let found = find(existing, &key)?;
    let (path, outcome) = match found {
        Some((path, old)) => {
            let same = old.spec == config.spec
                && old.metadata.labels == config.metadata.labels
                && old.metadata.annotations == config.metadata.annotations;
            if same {
                return Ok((name, Applied::Unchanged));
            }
            config.metadata.generation = Some(old.metadata.generation.unwrap_or(1) + 1);
            (path, Applied::Configured)
        }
        None => {
            config.metadata.generation = Some(1);
            let file = match config.metadata.namespace.as_deref() {
                None | Some("default") => format!("{name}.yaml"),
                Some(ns) => format!("{ns}-{name}.yaml"),
            };
            (dir.join(file), Applied::Created)
        }
    };
    // The status belongs to the operator, not to what is applied.
    config.status = None;
    let text = serde_yaml::to_string(&config).unwrap_or_default();
    write_atomic(&path, text.as_bytes(), 0o644).map_err(|source| ApplyError::Io {
        path: path.clone(),
        source,
    })?;
    Ok((name, outcome))
}

/// The file holding `key`, and the resource as it is there.
fn find(
    existing: &[ManifestFile],
    key: &str,
) -> Result<Option<(PathBuf, ObservabilityConfig)>, ApplyError> {
    for file in existing {
        let Ok(configs) = &file.parsed else { continue };
        if let Some(found) = configs.iter().find(|c| source::key(c) == key) {
            if configs.len() > 1 {
                return Err(ApplyError::Shared {
                    key: key.to_owned(),
                    path: file.path.clone(),
                });
            }
            return Ok(Some((file.path.clone(), found.clone())));
        }
    }
    Ok(None)
}

/// Removes every resource of `text` from `dir`.
pub fn delete(text: &str, label: &str, dir: &Path) -> Result<Vec<(String, Applied)>, ApplyError> {
    let configs = dynoscope_crds::manifest::parse_documents(text, label)?;
    let existing = source::read_dir(dir)?;
    let mut done = Vec::new();
    for config in configs {
        let key = source::key(&config);
        let name = config.metadata.name.clone().unwrap_or_default();
        let Some((path, _)) = find(&existing, &key)? else {
            return Err(ApplyError::NotFound(name));
        };
        std::fs::remove_file(&path).map_err(|source| ApplyError::Io {
            path: path.clone(),
            source,
        })?;
        done.push((name, Applied::Deleted));
    }
    Ok(done)
}
