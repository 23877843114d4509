//! File mode: reconcile a manifest directory into a rendered-config directory.
//!
//! `OUT/<app>/<dyno>.yaml` (mode 0600, written atomically, only when the
//! content changes) and `OUT/<app>/status.yaml`. An invalid or unreadable
//! manifest leaves the last good files untouched; a deleted one takes its
//! rendered files with it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use dynoscope_crds::observability::ObservabilityConfigStatus;
use dynoscope_crds::procfile::Procfile;
use dynoscope_crds::render::{self, RenderInput};
use dynoscope_crds::ObservabilityConfig;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fs::write_if_changed;
use crate::source::{self, SourceError};
use crate::status::{self, Outcome};

/// Name of the status file in each app directory.
pub const STATUS_FILE: &str = "status.yaml";

/// What `status.yaml` holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileStatus {
    /// `<namespace>/<name>` of the resource.
    pub resource: String,
    /// The manifest file it was read from.
    pub manifest: String,
    /// Hash of the spec, to count generations when `metadata.generation` is unset.
    pub spec_hash: String,
    /// The status proper, as Kubernetes mode writes it.
    #[serde(flatten)]
    pub status: ObservabilityConfigStatus,
}

/// Settings of file mode.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The manifest directory, or a single manifest file.
    pub manifests: PathBuf,
    /// The rendered-config directory.
    pub out: PathBuf,
    /// A Procfile for every resource; else `Procfile` beside the manifests, if any.
    pub procfile: Option<PathBuf>,
    /// Quantities over the spec's (`--formation`).
    pub formation: Option<BTreeMap<String, u32>>,
    /// `HEROKU_APP_NAME`, if set.
    pub heroku_app_name: Option<String>,
    /// Dynos share one host (`up`): give each ten listener ports from this one.
    pub local_agent_port: Option<u16>,
    /// `up`'s console: every dyno gets a `console` sink posting there.
    pub console_endpoint: Option<String>,
    /// `up --size`: dyno sizes over the manifest's (only where dynos share one host).
    pub sizes: dynoscope_crds::size::SizeOverrides,
}

/// What one reconcile did, for the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Files written.
    pub written: Vec<PathBuf>,
    /// Files removed.
    pub removed: Vec<PathBuf>,
    /// Problems, one line each.
    pub errors: Vec<String>,
}

/// File-mode reconciler; remembers which file held which resource so a file
/// that stops parsing still marks its resources invalid.
#[derive(Debug)]
pub struct FileReconciler {
    options: Options,
    /// Resource keys each manifest file held when it last parsed.
    keys_by_file: BTreeMap<PathBuf, Vec<String>>,
    /// Resource key → app directory, for every resource rendered before.
    apps: BTreeMap<String, String>,
}

impl FileReconciler {
    /// A reconciler that adopts what a previous run left in `out`.
    pub fn new(options: Options) -> Self {
        let mut apps = BTreeMap::new();
        let mut stale = crate::fs::remove_stale_temps(&options.out);
        if let Ok(entries) = std::fs::read_dir(&options.out) {
            for entry in entries.flatten() {
                stale.extend(crate::fs::remove_stale_temps(&entry.path()));
                if let Some(status) = read_status(&entry.path()) {
                    apps.insert(
                        status.resource,
                        entry.file_name().to_string_lossy().into_owned(),
                    );
                }
            }
        }
        for path in &stale {
            tracing::info!(
                "removed {}, left by a write that was interrupted",
                path.display()
            );
        }
        FileReconciler {
            options,
            keys_by_file: BTreeMap::new(),
            apps,
        }
    }

    /// Reads every manifest, renders, and brings `out` in line.
    pub fn reconcile(&mut self) -> Result<Report, SourceError> {
        let files = source::read(&self.options.manifests)?;
        let procfile = source::read_procfile(
            self.options.procfile.as_deref(),
            source::dir_of(&self.options.manifests),
        )?;
        let mut report = Report::default();
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut app_owner: BTreeMap<String, String> = BTreeMap::new();

        for file in &files {
            match &file.parsed {
                Ok(configs) => {
                    let keys = configs.iter().map(source::key).collect();
                    self.keys_by_file.insert(file.path.clone(), keys);
                    for config in configs {
                        let key = source::key(config);
                        if !seen.insert(key.clone()) {
                            report.errors.push(format!(
                                "{}: {key} is defined twice; the first definition wins",
                                file.path.display()
                            ));
                            continue;
                        }
                        self.reconcile_one(
                            config,
                            &file.path,
                            procfile.as_ref(),
                            &mut app_owner,
                            &mut report,
                        );
                    }
                }
                Err(err) => {
                    report.errors.push(err.to_string());
                    let keys = self
                        .keys_by_file
                        .get(&file.path)
                        .cloned()
                        .unwrap_or_default();
                    for key in keys {
                        seen.insert(key.clone());
                        if let Some(app) = self.apps.get(&key).cloned() {
                            let message = err.to_string();
                            self.write_status(
                                &app,
                                &key,
                                &file.path,
                                None,
                                None,
                                &Outcome::Unreadable(&message),
                                &mut report,
                            );
                        }
                    }
                }
            }
        }
        self.keys_by_file
            .retain(|path, _| files.iter().any(|f| &f.path == path));

        // Resources no manifest holds any more take their rendered files with them.
        let gone: Vec<(String, String)> = self
            .apps
            .iter()
            .filter(|(key, _)| !seen.contains(*key))
            .map(|(k, a)| (k.clone(), a.clone()))
            .collect();
        for (key, app) in gone {
            let dir = self.options.out.join(&app);
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => report.removed.push(dir),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => report
                    .errors
                    .push(format!("cannot remove {}: {err}", dir.display())),
            }
            self.apps.remove(&key);
        }
        Ok(report)
    }

    fn reconcile_one(
        &mut self,
        config: &ObservabilityConfig,
        manifest: &Path,
        procfile: Option<&Procfile>,
        app_owner: &mut BTreeMap<String, String>,
        report: &mut Report,
    ) {
        let key = source::key(config);
        let input = RenderInput {
            config,
            procfile,
            formation: self.options.formation.as_ref(),
            heroku_app_name: self.options.heroku_app_name.as_deref(),
        };
        let app = render::app_name(config, input.heroku_app_name);
        let spec_hash = spec_hash(config);
        if let Some(owner) = app_owner.get(&app) {
            report.errors.push(format!("{}: {key}: app `{app}` is already rendered from {owner}; give one of them another spec.app", manifest.display()));
            return;
        }
        app_owner.insert(app.clone(), key.clone());
        // The app was renamed: the old directory goes.
        if let Some(old) = self.apps.get(&key).filter(|old| **old != app).cloned() {
            let dir = self.options.out.join(old);
            if std::fs::remove_dir_all(&dir).is_ok() {
                report.removed.push(dir);
            }
        }
        self.apps.insert(key.clone(), app.clone());

        let rendered = match render::render(&input) {
            Ok(mut rendered) => {
                if let Some(base) = self.options.local_agent_port {
                    crate::up::ports::assign(&mut rendered, base);
                    crate::up::size::apply(&mut rendered, &self.options.sizes);
                }
                if let Some(endpoint) = &self.options.console_endpoint {
                    crate::console::add_sink(&mut rendered, endpoint);
                }
                rendered
            }
            Err(err) => {
                report.errors.push(format!(
                    "{}: {key}:\n  {}",
                    manifest.display(),
                    err.problems
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("\n  ")
                ));
                let outcome = Outcome::Invalid(&err.problems);
                self.write_status(
                    &app,
                    &key,
                    manifest,
                    Some(config),
                    Some(&spec_hash),
                    &outcome,
                    report,
                );
                return;
            }
        };
        let dir = self.options.out.join(&app);
        match write_dynos(&dir, &rendered, report) {
            Ok(()) => {
                let outcome = Outcome::Rendered(&rendered);
                self.write_status(
                    &app,
                    &key,
                    manifest,
                    Some(config),
                    Some(&spec_hash),
                    &outcome,
                    report,
                );
            }
            Err(err) => {
                let message = err.to_string();
                report.errors.push(message.clone());
                let outcome = Outcome::WriteFailed(&message);
                self.write_status(
                    &app,
                    &key,
                    manifest,
                    Some(config),
                    Some(&spec_hash),
                    &outcome,
                    report,
                );
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn write_status(
        &self,
        app: &str,
        key: &str,
        manifest: &Path,
        config: Option<&ObservabilityConfig>,
        spec_hash: Option<&str>,
        outcome: &Outcome<'_>,
        report: &mut Report,
    ) {
        let dir = self.options.out.join(app);
        let previous = read_status(&dir);
        let previous_hash = previous
            .as_ref()
            .map(|p| p.spec_hash.clone())
            .unwrap_or_default();
        let previous_generation = previous
            .as_ref()
            .and_then(|p| p.status.observed_generation)
            .unwrap_or(0);
        let spec_hash = spec_hash
            .map(str::to_owned)
            .unwrap_or(previous_hash.clone());
        let generation =
            config
                .and_then(|c| c.metadata.generation)
                .unwrap_or(if spec_hash == previous_hash {
                    previous_generation.max(1)
                } else {
                    previous_generation + 1
                });
        let status = status::next_status(
            previous.as_ref().map(|p| &p.status),
            generation,
            outcome,
            &status::now_rfc3339(),
        );
        let file = FileStatus {
            resource: key.to_owned(),
            manifest: manifest.display().to_string(),
            spec_hash,
            status,
        };
        let path = dir.join(STATUS_FILE);
        let text = serde_yaml::to_string(&file).unwrap_or_default();
        match write_if_changed(&path, text.as_bytes(), 0o644) {
            Ok(true) => report.written.push(path),
            Ok(false) => {}
            Err(err) => report
                .errors
                .push(format!("cannot write {}: {err}", path.display())),
        }
    }
}

/// Why the rendered configs of an app could not be brought in line.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A file operation in the app's directory failed.
    #[error("cannot {operation} {path}: {source}")]
    Io {
        /// `write`, `list` or `remove`.
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Writes each dyno's config if it changed and removes configs of dynos that no longer run.
fn write_dynos(
    dir: &Path,
    rendered: &render::Rendered,
    report: &mut Report,
) -> Result<(), WriteError> {
    let io = |operation, path: &Path| {
        let path = path.to_owned();
        move |source| WriteError::Io {
            operation,
            path,
            source,
        }
    };
    let mut wanted = BTreeSet::new();
    for dyno in &rendered.dynos {
        let name = format!("{}.yaml", dyno.dyno);
        let path = dir.join(&name);
        match write_if_changed(&path, dyno.to_yaml().as_bytes(), 0o600) {
            Ok(true) => report.written.push(path),
            Ok(false) => {}
            Err(err) => return Err(io("write", &path)(err)),
        }
        wanted.insert(name);
    }
    let entries = std::fs::read_dir(dir).map_err(io("list", dir))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = name.ends_with(".yaml")
            && name != STATUS_FILE
            && !name.starts_with('.')
            && !wanted.contains(&name);
        if stale {
            std::fs::remove_file(entry.path()).map_err(io("remove", &entry.path()))?;
            report.removed.push(entry.path());
        }
    }
    Ok(())
}

/// Reads `status.yaml` of an app directory.
pub fn read_status(app_dir: &Path) -> Option<FileStatus> {
    let text = std::fs::read_to_string(app_dir.join(STATUS_FILE)).ok()?;
    serde_yaml::from_str(&text).ok()
}

/// A stable hash of a resource's spec.
pub fn spec_hash(config: &ObservabilityConfig) -> String {
    let bytes = serde_json::to_vec(&config.spec).unwrap_or_default();
    hex::encode(&Sha256::digest(&bytes)[..8])
}
